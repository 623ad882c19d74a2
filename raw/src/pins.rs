//! Snapshot pins, of two kinds. A reader that will continue from a snapshot (the marts'
//! checkpoint) pins it [`PinKind::From`]: lake maintenance keeps that snapshot and every snapshot
//! after it, so the reader's next incremental read finds its whole range. A retained publication
//! pins the snapshots it was computed from [`PinKind::Exactly`]: maintenance keeps those
//! snapshots, so its time travel and provenance still read them, and nothing else because of it.
//!
//! Pins live next to the SQL catalog, in the catalog's Postgres database
//! (`tributary_snapshot_pins`), one row per (table, holder). A pin is a lease: a holder that
//! stops refreshing it (a marts database nobody runs any more) stops holding the lake's history
//! back once the pin is older than the lander's `maintenance.pin_max_age_s`.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::OnceCell;
use tributary_common::LakeSettings;

use crate::error::{RawError, redact_uri};

/// The pins table, in the catalog database (the statements below name it).
pub const PINS_TABLE: &str = "tributary_snapshot_pins";

const CREATE_SQL: &str = "CREATE TABLE IF NOT EXISTS tributary_snapshot_pins (
    catalog_name text NOT NULL,
    table_namespace text NOT NULL,
    table_name text NOT NULL,
    holder text NOT NULL,
    snapshot_id bigint NOT NULL,
    snapshot_ms bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL DEFAULT 'from',
    PRIMARY KEY (catalog_name, table_namespace, table_name, holder)
);
ALTER TABLE tributary_snapshot_pins ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'from'";

const PIN_SQL: &str = "INSERT INTO tributary_snapshot_pins
    (catalog_name, table_namespace, table_name, holder, snapshot_id, snapshot_ms, kind)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (catalog_name, table_namespace, table_name, holder) DO UPDATE
SET snapshot_id = EXCLUDED.snapshot_id, snapshot_ms = EXCLUDED.snapshot_ms,
    kind = EXCLUDED.kind, updated_at = now()";

const PINS_SQL: &str = "SELECT holder, snapshot_id, snapshot_ms, kind,
    greatest(extract(epoch FROM now() - updated_at), 0)::float8 AS age_s
FROM tributary_snapshot_pins
WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
ORDER BY snapshot_ms, holder";

const RELEASE_SQL: &str = "DELETE FROM tributary_snapshot_pins
WHERE catalog_name = $1 AND table_namespace = $2 AND holder = $3";

const RELEASE_OTHERS_SQL: &str = "DELETE FROM tributary_snapshot_pins
WHERE catalog_name = $1 AND table_namespace = $2 AND starts_with(holder, $3)
  AND NOT (holder = ANY($4))";

const REFRESH_SQL: &str = "UPDATE tributary_snapshot_pins SET updated_at = now()
WHERE catalog_name = $1 AND table_namespace = $2 AND starts_with(holder, $3)";

/// What a pin keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// The snapshot and every later one (a reader that continues from it).
    From,
    /// That snapshot only (a publication computed from it).
    Exactly,
}

impl PinKind {
    fn as_str(self) -> &'static str {
        match self {
            PinKind::From => "from",
            PinKind::Exactly => "exactly",
        }
    }

    fn parse(text: &str) -> Self {
        // Rows written before kinds existed are `from` (the column's default).
        if text == "exactly" {
            PinKind::Exactly
        } else {
            PinKind::From
        }
    }
}

/// One holder's pin on one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Who holds it (`marts:marts_state_marts`).
    pub holder: String,
    /// The pinned snapshot.
    pub snapshot_id: i64,
    /// Its commit time, epoch milliseconds (maintenance keeps every snapshot from it on).
    pub snapshot_ms: i64,
    /// What it keeps.
    pub kind: PinKind,
    /// Time since the holder last refreshed it.
    pub age: Duration,
}

/// The pins of one lake (catalog database, catalog name), connected on first use.
pub struct SnapshotPins {
    uri: String,
    catalog_name: String,
    /// One lazily connected session (reconnects by itself).
    pool: PgPool,
    /// Set once the table is known to exist.
    created: OnceCell<()>,
}

impl std::fmt::Debug for SnapshotPins {
    // The URI may hold a password: printed redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotPins")
            .field("uri", &redact_uri(&self.uri))
            .field("catalog_name", &self.catalog_name)
            .finish_non_exhaustive()
    }
}

fn pins_err(action: &'static str) -> impl FnOnce(sqlx::Error) -> RawError {
    move |source| RawError::Pins {
        action,
        source: Box::new(source),
    }
}

impl SnapshotPins {
    /// The pins of the lake in `settings`.
    pub fn new(settings: &LakeSettings) -> Result<Self, RawError> {
        Ok(Self {
            uri: settings.catalog_uri.clone(),
            catalog_name: settings.catalog_name.clone(),
            pool: PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy(&settings.catalog_uri)
                .map_err(pins_err("configure the catalog database connection"))?,
            created: OnceCell::new(),
        })
    }

    /// The pool, with the pins table created.
    async fn pool(&self) -> Result<&PgPool, RawError> {
        self.created
            .get_or_try_init(|| async {
                sqlx::raw_sql(CREATE_SQL)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(pins_err("create the pins table"))
            })
            .await?;
        Ok(&self.pool)
    }

    /// Records that `holder` continues from these snapshots of tables of `namespace`:
    /// `(table name, snapshot id, snapshot commit time in epoch ms)`, as [`PinKind::From`].
    /// Replaces the holder's earlier pin of each table and refreshes its lease. One transaction.
    pub async fn pin(
        &self,
        holder: &str,
        namespace: &str,
        pins: &[(&str, i64, i64)],
    ) -> Result<(), RawError> {
        self.pin_as(PinKind::From, holder, namespace, pins).await
    }

    /// Records that `holder` (a publication) was computed from exactly these snapshots, as
    /// [`PinKind::Exactly`]; otherwise as [`SnapshotPins::pin`].
    pub async fn pin_exactly(
        &self,
        holder: &str,
        namespace: &str,
        pins: &[(&str, i64, i64)],
    ) -> Result<(), RawError> {
        self.pin_as(PinKind::Exactly, holder, namespace, pins).await
    }

    async fn pin_as(
        &self,
        kind: PinKind,
        holder: &str,
        namespace: &str,
        pins: &[(&str, i64, i64)],
    ) -> Result<(), RawError> {
        let mut tx = self
            .pool()
            .await?
            .begin()
            .await
            .map_err(pins_err("begin the pin transaction"))?;
        for (table, snapshot_id, snapshot_ms) in pins {
            sqlx::query(PIN_SQL)
                .bind(self.catalog_name.clone())
                .bind(namespace.to_string())
                .bind(table.to_string())
                .bind(holder.to_string())
                .bind(snapshot_id)
                .bind(snapshot_ms)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await
                .map_err(pins_err("record a pin"))?;
        }
        tx.commit().await.map_err(pins_err("commit the pins"))
    }

    /// Every pin on `namespace.table`, oldest snapshot first, with its age.
    pub async fn pins(&self, namespace: &str, table: &str) -> Result<Vec<Pin>, RawError> {
        let rows = sqlx::query(PINS_SQL)
            .bind(self.catalog_name.clone())
            .bind(namespace.to_string())
            .bind(table.to_string())
            .fetch_all(self.pool().await?)
            .await
            .map_err(pins_err("read the pins"))?;
        Ok(rows
            .iter()
            .map(|row| Pin {
                holder: row.get("holder"),
                snapshot_id: row.get("snapshot_id"),
                snapshot_ms: row.get("snapshot_ms"),
                kind: PinKind::parse(row.get("kind")),
                age: Duration::from_secs_f64(row.get::<f64, _>("age_s")),
            })
            .collect())
    }

    /// Removes every pin of `holder` in `namespace` (a marts database that is dropped).
    pub async fn release(&self, holder: &str, namespace: &str) -> Result<u64, RawError> {
        let done = sqlx::query(RELEASE_SQL)
            .bind(self.catalog_name.clone())
            .bind(namespace.to_string())
            .bind(holder.to_string())
            .execute(self.pool().await?)
            .await
            .map_err(pins_err("release pins"))?;
        Ok(done.rows_affected())
    }

    /// Of the holders in `namespace` whose name starts with `prefix`, releases every pin of
    /// those not in `keep` and refreshes the lease of the rest (the publications a marts
    /// database still retains). One transaction; returns the pins released.
    pub async fn retain_holders(
        &self,
        namespace: &str,
        prefix: &str,
        keep: &[String],
    ) -> Result<u64, RawError> {
        let mut tx = self
            .pool()
            .await?
            .begin()
            .await
            .map_err(pins_err("begin the release transaction"))?;
        let released = sqlx::query(RELEASE_OTHERS_SQL)
            .bind(self.catalog_name.clone())
            .bind(namespace.to_string())
            .bind(prefix.to_string())
            .bind(keep.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(pins_err("release pins"))?
            .rows_affected();
        sqlx::query(REFRESH_SQL)
            .bind(self.catalog_name.clone())
            .bind(namespace.to_string())
            .bind(prefix.to_string())
            .execute(&mut *tx)
            .await
            .map_err(pins_err("refresh pins"))?;
        tx.commit().await.map_err(pins_err("commit the release"))?;
        Ok(released)
    }
}
