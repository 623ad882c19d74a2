//! The kept state in Postgres: a schema of its own (`marts_state_<clickhouse database>` by
//! default) with a `sale` table keyed by (source, sale_id) and a one-row `checkpoint` table.
//!
//! Sales are read and upserted in batches through `unnest` of array parameters: one round trip
//! per few thousand sales. The checkpoint is a JSON document (it is small; see the module above).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Row};

use super::{Checkpoint, StateStore};
use crate::error::MartsError;
use crate::fold::{CityKey, Resolved, SaleKey, SaleRecord, SaleRefs};

/// Sales per statement: large enough to make round trips rare, small enough to keep each
/// statement's parameters a few megabytes.
const BATCH: usize = 5_000;

/// Columns of `sale`, in the order [`row_to_record`] reads them.
const SALE_COLUMNS: &str = "source, sale_id, ord_a, ord_b, ord_c, deleted, salesman_id, \
    salesman_code, city_id, city_name_key, city_state_key, amount_cents, sold_at_micros, \
    salesman_resolved, salesman_pending, city_resolved, city_pending";

/// [`StateStore`] on Postgres.
pub struct PostgresState {
    url: String,
    schema: String,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresState {
    // The URL may hold a password: not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresState")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn pg_err(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> MartsError {
    let action = action.into();
    move |source| MartsError::State { action, source }
}

impl PostgresState {
    /// A store in `schema` of the database at `url` (connected on first use). `schema` must be
    /// a plain identifier.
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Result<Self, MartsError> {
        let schema = schema.into();
        if tributary_rankings::schema::validate_database(&schema).is_err() {
            return Err(MartsError::CorruptState(format!(
                "state schema name {schema:?} is not a plain identifier"
            )));
        }
        Ok(Self {
            url: url.into(),
            schema,
            client: Mutex::new(None),
        })
    }

    /// The schema the state lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connected client, connecting (and creating the schema) when there is none or the
    /// connection dropped.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, MartsError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(pg_err("connect to the state database"))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "marts state connection closed");
                }
            });
            let s = &self.schema;
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {s};
                     CREATE TABLE IF NOT EXISTS {s}.sale (
                         source text NOT NULL,
                         sale_id text NOT NULL,
                         ord_a bigint NOT NULL,
                         ord_b bigint NOT NULL,
                         ord_c bigint NOT NULL,
                         deleted boolean NOT NULL,
                         salesman_id bigint,
                         salesman_code text,
                         city_id bigint,
                         city_name_key text,
                         city_state_key text,
                         amount_cents bigint NOT NULL,
                         sold_at_micros bigint,
                         salesman_resolved bigint,
                         salesman_pending boolean NOT NULL,
                         city_resolved bigint,
                         city_pending boolean NOT NULL,
                         deleted_at timestamptz,
                         PRIMARY KEY (source, sale_id)
                     );
                     ALTER TABLE {s}.sale ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
                     CREATE INDEX IF NOT EXISTS sale_tombstones ON {s}.sale (deleted_at) WHERE deleted;
                     CREATE INDEX IF NOT EXISTS sale_by_salesman_code ON {s}.sale (salesman_code)
                         WHERE salesman_id IS NULL AND salesman_code IS NOT NULL;
                     CREATE INDEX IF NOT EXISTS sale_by_city_key ON {s}.sale (city_name_key, city_state_key)
                         WHERE city_id IS NULL AND city_name_key IS NOT NULL;
                     CREATE TABLE IF NOT EXISTS {s}.checkpoint (
                         id smallint PRIMARY KEY CHECK (id = 1),
                         generation bigint NOT NULL,
                         body text NOT NULL,
                         updated_at timestamptz NOT NULL DEFAULT now()
                     );"
                ))
                .await
                .map_err(pg_err(format!("create state schema {s}")))?;
            *guard = Some(client);
        }
        Ok(guard)
    }
}

fn resolved_to_columns(r: Resolved) -> (Option<i64>, bool) {
    match r {
        Resolved::None => (None, false),
        Resolved::Id(id) => (Some(id), false),
        Resolved::Pending => (None, true),
    }
}

fn resolved_from_columns(id: Option<i64>, pending: bool) -> Resolved {
    match (id, pending) {
        (Some(id), _) => Resolved::Id(id),
        (None, true) => Resolved::Pending,
        (None, false) => Resolved::None,
    }
}

fn row_to_record(row: &Row) -> SaleRecord {
    let city_key = match (
        row.get::<_, Option<String>>(9),
        row.get::<_, Option<String>>(10),
    ) {
        (Some(name), Some(state)) => Some(CityKey { name, state }),
        _ => None,
    };
    SaleRecord {
        key: SaleKey {
            source: row.get(0),
            sale_id: row.get(1),
        },
        order: [row.get(2), row.get(3), row.get(4)],
        deleted: row.get(5),
        refs: SaleRefs {
            salesman_id: row.get(6),
            salesman_code: row.get(7),
            city_id: row.get(8),
            city_key,
        },
        amount_cents: row.get(11),
        sold_at_micros: row.get(12),
        salesman: resolved_from_columns(row.get(13), row.get(14)),
        city: resolved_from_columns(row.get(15), row.get(16)),
    }
}

#[async_trait]
impl StateStore for PostgresState {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, MartsError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let row = client
            .query_opt(
                &format!("SELECT body FROM {}.checkpoint WHERE id = 1", self.schema),
                &[],
            )
            .await
            .map_err(pg_err("read the checkpoint"))?;
        row.map(|row| {
            let body: String = row.get(0);
            serde_json::from_str(&body)
                .map_err(|e| MartsError::CorruptState(format!("checkpoint: {e}")))
        })
        .transpose()
    }

    async fn sales(&self, keys: &[SaleKey]) -> Result<Vec<SaleRecord>, MartsError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let sql = format!(
            "SELECT {SALE_COLUMNS} FROM unnest($1::text[], $2::text[]) AS k(source, sale_id)
             JOIN {}.sale USING (source, sale_id)",
            self.schema
        );
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let sources: Vec<&str> = chunk.iter().map(|k| k.source.as_str()).collect();
            let ids: Vec<&str> = chunk.iter().map(|k| k.sale_id.as_str()).collect();
            let rows = client
                .query(&sql, &[&sources, &ids])
                .await
                .map_err(pg_err("read kept sales"))?;
            out.extend(rows.iter().map(row_to_record));
        }
        Ok(out)
    }

    async fn sales_naming(
        &self,
        codes: &[String],
        cities: &[CityKey],
    ) -> Result<Vec<SaleRecord>, MartsError> {
        if codes.is_empty() && cities.is_empty() {
            return Ok(Vec::new());
        }
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let names: Vec<&str> = cities.iter().map(|k| k.name.as_str()).collect();
        let states: Vec<&str> = cities.iter().map(|k| k.state.as_str()).collect();
        let sql = format!(
            "SELECT {SALE_COLUMNS} FROM {s}.sale
             WHERE NOT deleted AND source <> 'pg' AND (
                 (salesman_id IS NULL AND salesman_code IS NOT NULL AND salesman_code = ANY($1))
                 OR (city_id IS NULL AND city_name_key IS NOT NULL
                     AND (city_name_key, city_state_key) IN
                         (SELECT * FROM unnest($2::text[], $3::text[])))
             )",
            s = self.schema
        );
        let rows = client
            .query(&sql, &[&codes, &names, &states])
            .await
            .map_err(pg_err("read sales naming changed natural keys"))?;
        Ok(rows.iter().map(row_to_record).collect())
    }

    async fn commit(
        &self,
        base: Option<u64>,
        sales: &[SaleRecord],
        checkpoint: &Checkpoint,
    ) -> Result<(), MartsError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let s = &self.schema;
        let tx = client
            .transaction()
            .await
            .map_err(pg_err("begin the state commit"))?;
        let found: Option<i64> = tx
            .query_opt(
                &format!("SELECT generation FROM {s}.checkpoint WHERE id = 1 FOR UPDATE"),
                &[],
            )
            .await
            .map_err(pg_err("lock the checkpoint"))?
            .map(|row| row.get(0));
        let found = found.map(|g| u64::try_from(g).unwrap_or(0));
        if found != base {
            return Err(MartsError::StateConflict {
                expected: base.unwrap_or(0),
                found: found.unwrap_or(0),
            });
        }
        let upsert = format!(
            "INSERT INTO {s}.sale ({SALE_COLUMNS}, deleted_at)
             SELECT u.*, CASE WHEN u.deleted THEN now() END FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                 $6::boolean[], $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::text[],
                 $12::bigint[], $13::bigint[], $14::bigint[], $15::boolean[], $16::bigint[],
                 $17::boolean[]) AS u({SALE_COLUMNS})
             ON CONFLICT (source, sale_id) DO UPDATE SET
                 ord_a = EXCLUDED.ord_a, ord_b = EXCLUDED.ord_b, ord_c = EXCLUDED.ord_c,
                 deleted = EXCLUDED.deleted, salesman_id = EXCLUDED.salesman_id,
                 salesman_code = EXCLUDED.salesman_code, city_id = EXCLUDED.city_id,
                 city_name_key = EXCLUDED.city_name_key, city_state_key = EXCLUDED.city_state_key,
                 amount_cents = EXCLUDED.amount_cents, sold_at_micros = EXCLUDED.sold_at_micros,
                 salesman_resolved = EXCLUDED.salesman_resolved,
                 salesman_pending = EXCLUDED.salesman_pending,
                 city_resolved = EXCLUDED.city_resolved, city_pending = EXCLUDED.city_pending,
                 deleted_at = CASE WHEN EXCLUDED.deleted
                     THEN coalesce({s}.sale.deleted_at, EXCLUDED.deleted_at) END"
        );
        let statement = tx
            .prepare(&upsert)
            .await
            .map_err(pg_err("prepare the sale upsert"))?;
        for chunk in sales.chunks(BATCH) {
            let col = |f: &dyn Fn(&SaleRecord) -> i64| chunk.iter().map(f).collect::<Vec<i64>>();
            let sources: Vec<&str> = chunk.iter().map(|r| r.key.source.as_str()).collect();
            let ids: Vec<&str> = chunk.iter().map(|r| r.key.sale_id.as_str()).collect();
            let (ord_a, ord_b, ord_c) = (
                col(&|r| r.order[0]),
                col(&|r| r.order[1]),
                col(&|r| r.order[2]),
            );
            let deleted: Vec<bool> = chunk.iter().map(|r| r.deleted).collect();
            let salesman_id: Vec<Option<i64>> = chunk.iter().map(|r| r.refs.salesman_id).collect();
            let salesman_code: Vec<Option<&str>> = chunk
                .iter()
                .map(|r| r.refs.salesman_code.as_deref())
                .collect();
            let city_id: Vec<Option<i64>> = chunk.iter().map(|r| r.refs.city_id).collect();
            let city_name: Vec<Option<&str>> = chunk
                .iter()
                .map(|r| r.refs.city_key.as_ref().map(|k| k.name.as_str()))
                .collect();
            let city_state: Vec<Option<&str>> = chunk
                .iter()
                .map(|r| r.refs.city_key.as_ref().map(|k| k.state.as_str()))
                .collect();
            let amount = col(&|r| r.amount_cents);
            let sold_at: Vec<Option<i64>> = chunk.iter().map(|r| r.sold_at_micros).collect();
            let (salesman_resolved, salesman_pending): (Vec<Option<i64>>, Vec<bool>) = chunk
                .iter()
                .map(|r| resolved_to_columns(r.salesman))
                .unzip();
            let (city_resolved, city_pending): (Vec<Option<i64>>, Vec<bool>) =
                chunk.iter().map(|r| resolved_to_columns(r.city)).unzip();
            tx.execute(
                &statement,
                &[
                    &sources,
                    &ids,
                    &ord_a,
                    &ord_b,
                    &ord_c,
                    &deleted,
                    &salesman_id,
                    &salesman_code,
                    &city_id,
                    &city_name,
                    &city_state,
                    &amount,
                    &sold_at,
                    &salesman_resolved,
                    &salesman_pending,
                    &city_resolved,
                    &city_pending,
                ],
            )
            .await
            .map_err(pg_err("upsert kept sales"))?;
        }
        let body = serde_json::to_string(checkpoint)
            .map_err(|e| MartsError::CorruptState(format!("checkpoint does not serialize: {e}")))?;
        let generation = i64::try_from(checkpoint.generation).unwrap_or(i64::MAX);
        tx.execute(
            &format!(
                "INSERT INTO {s}.checkpoint (id, generation, body) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET generation = EXCLUDED.generation,
                     body = EXCLUDED.body, updated_at = now()"
            ),
            &[&generation, &body],
        )
        .await
        .map_err(pg_err("write the checkpoint"))?;
        tx.commit().await.map_err(pg_err("commit the state"))?;
        Ok(())
    }

    async fn reset(&self) -> Result<(), MartsError> {
        let mut guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let s = &self.schema;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            .await
            .map_err(pg_err(format!("drop state schema {s}")))?;
        // Reconnect on next use, which recreates the schema.
        *guard = None;
        Ok(())
    }

    async fn forget_tombstones(&self, before: DateTime<Utc>) -> Result<u64, MartsError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let s = &self.schema;
        client
            .execute(
                &format!(
                    "DELETE FROM {s}.sale WHERE deleted AND deleted_at < $1::text::timestamptz"
                ),
                &[&before.to_rfc3339()],
            )
            .await
            .map_err(pg_err("forget old tombstones"))
    }
}
