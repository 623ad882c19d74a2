//! The lander's side of the catalog: creating and evolving the raw tables, and the writer lock
//! that keeps one lander per namespace. Opening the catalog and reading the tables are
//! `tributary_raw::catalog`'s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation};
use sqlx::Connection;
use tributary_raw::catalog::{load_table, table_ident};
use tributary_raw::schema::RawTable;

use tributary_common::LakeSettings;

use crate::error::LakeError;

/// Creates the namespace and every raw table that does not exist yet. Safe to race with
/// another process doing the same.
pub async fn ensure_tables(catalog: &dyn Catalog, namespace: &str) -> Result<(), LakeError> {
    let ns = NamespaceIdent::new(namespace.to_string());
    let iceberg = |action, source| LakeError::Iceberg {
        action,
        table: namespace.to_string(),
        source: Box::new(source),
    };
    if !catalog
        .namespace_exists(&ns)
        .await
        .map_err(|e| iceberg("namespace_exists", e))?
    {
        match catalog.create_namespace(&ns, HashMap::new()).await {
            Ok(_) => tracing::info!(namespace, "created namespace"),
            Err(e) if e.kind() == iceberg::ErrorKind::NamespaceAlreadyExists => {}
            Err(e) => return Err(iceberg("create_namespace", e)),
        }
    }
    for table in RawTable::ALL {
        let ident = table_ident(namespace, table);
        let exists = catalog
            .table_exists(&ident)
            .await
            .map_err(|source| LakeError::Iceberg {
                action: "table_exists",
                table: ident.to_string(),
                source: Box::new(source),
            })?;
        if exists {
            add_missing_columns(catalog, namespace, table).await?;
            continue;
        }
        let creation = TableCreation::builder()
            .name(table.name().to_string())
            .schema(table.iceberg_schema())
            .properties([(
                "write.parquet.compression-codec".to_string(),
                "zstd".to_string(),
            )])
            .build();
        match catalog.create_table(&ns, creation).await {
            Ok(_) => tracing::info!(table = %ident, "created table"),
            Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => {}
            Err(source) => {
                return Err(LakeError::Iceberg {
                    action: "create_table",
                    table: ident.to_string(),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(())
}

/// Brings an existing table up to [`RawTable::columns`]: the optional columns a newer lander
/// writes (e.g. `trace_id`) are added at the end, with a schema update committed through the
/// catalog, so their field ids are the ones a new table would get. Old data files keep reading
/// (the column is null in them); a snapshot keeps the schema it was written with.
///
/// Only additions of optional columns are automatic. A column the table lacks that is required
/// is [`LakeError::SchemaDrift`]: rows already written have no value for it.
async fn add_missing_columns(
    catalog: &dyn Catalog,
    namespace: &str,
    table: RawTable,
) -> Result<(), LakeError> {
    let current = load_table(catalog, namespace, table).await?;
    let schema = current.metadata().current_schema();
    let missing: Vec<_> = table
        .columns()
        .into_iter()
        .filter(|c| schema.field_by_name(c.name).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if let Some(required) = missing.iter().find(|c| c.required) {
        return Err(LakeError::SchemaDrift {
            table: table_ident(namespace, table).to_string(),
            column: required.name.to_string(),
        });
    }
    let mut update = Transaction::new(&current).update_schema();
    for column in &missing {
        update = update.add_column(
            AddColumn::builder()
                .name(column.name)
                .field_type(column.ty.iceberg())
                .doc(column.doc)
                .build(),
        );
    }
    let iceberg = |action, source| LakeError::Iceberg {
        action,
        table: table_ident(namespace, table).to_string(),
        source: Box::new(source),
    };
    let tx = update
        .apply(Transaction::new(&current))
        .map_err(|e| iceberg("update_schema", e))?;
    match tx.commit(catalog).await {
        Ok(_) => {
            let names: Vec<_> = missing.iter().map(|c| c.name).collect();
            tracing::info!(table = %table_ident(namespace, table), columns = ?names, "added columns");
            Ok(())
        }
        // Another lander evolved it first: fine if it now has the columns.
        Err(e) if e.kind() == iceberg::ErrorKind::CatalogCommitConflicts => {
            let again = load_table(catalog, namespace, table).await?;
            let schema = again.metadata().current_schema();
            if missing
                .iter()
                .all(|c| schema.field_by_name(c.name).is_some())
            {
                Ok(())
            } else {
                Err(iceberg("update_schema", e))
            }
        }
        Err(e) => Err(iceberg("update_schema", e)),
    }
}

/// FNV-1a, 64 bits: a stable hash (unlike `DefaultHasher`, fixed across Rust versions) for lock
/// keys and file names.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A Postgres session-level advisory lock on `(catalog, namespace)`, held for the lander's
/// lifetime: a second lander on the same namespace fails at start instead of interleaving
/// commits (two appends from the same base both succeed in iceberg-rust 0.10, so nothing else
/// would stop it). Released when the session ends, including when the process dies.
///
/// Catalogs that are not on Postgres get no lock (tests on the in-memory catalog).
#[derive(Debug)]
pub struct WriterLock {
    session: Option<sqlx::PgConnection>,
    key: i64,
    namespace: String,
}

impl WriterLock {
    /// The lock key of `(catalog, namespace)`.
    pub fn key(catalog: &str, namespace: &str) -> i64 {
        fnv1a64(format!("tributary-lander/{catalog}/{namespace}").as_bytes()) as i64
    }

    /// A lock that guards nothing, for catalogs without Postgres.
    pub fn none(namespace: &str) -> Self {
        Self {
            session: None,
            key: 0,
            namespace: namespace.to_string(),
        }
    }

    /// Takes the lock, waiting up to `wait` for a previous holder to go away.
    pub async fn acquire(
        settings: &LakeSettings,
        namespace: &str,
        wait: Duration,
    ) -> Result<Self, LakeError> {
        if !settings.catalog_uri.starts_with("postgres") {
            return Ok(Self::none(namespace));
        }
        let lock_error = |source| LakeError::WriterLock {
            namespace: namespace.to_string(),
            source,
        };
        let mut session = sqlx::PgConnection::connect(&settings.catalog_uri)
            .await
            .map_err(lock_error)?;
        let key = Self::key(&settings.catalog_name, namespace);
        let started = Instant::now();
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut session)
                .await
                .map_err(lock_error)?;
            if locked {
                tracing::info!(namespace, key, "writer lock taken");
                return Ok(Self {
                    session: Some(session),
                    key,
                    namespace: namespace.to_string(),
                });
            }
            if started.elapsed() >= wait {
                return Err(LakeError::WriterLockBusy {
                    catalog: settings.catalog_name.clone(),
                    namespace: namespace.to_string(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            tracing::info!(namespace, "writer lock held by another lander, waiting");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Fails if the lock's session is gone (then another lander may hold the lock now).
    pub async fn check(&mut self) -> Result<(), LakeError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        session
            .ping()
            .await
            .map_err(|source| LakeError::WriterLock {
                namespace: self.namespace.clone(),
                source,
            })
    }

    /// Announces a commit to the namespace on the lock's session
    /// ([`tributary_raw::commits`]): the marts start a run at once.
    pub async fn announce_commit(&mut self) {
        if let Some(session) = self.session.as_mut() {
            tributary_raw::commits::announce(session, &self.namespace).await;
        }
    }

    /// Releases the lock now rather than when the session times out.
    pub async fn release(mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut session)
                .await;
            let _ = session.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_namespace_and_are_stable() {
        assert_ne!(
            WriterLock::key("tributary", "raw"),
            WriterLock::key("tributary", "raw_it")
        );
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// A table created by a lander before `trace_id` existed gets the column on the next start,
    /// with the field id a new table gives it; its old rows read it as null.
    #[tokio::test]
    async fn an_older_table_gets_the_new_optional_columns() {
        use iceberg::CatalogBuilder;
        use iceberg::memory::{MEMORY_CATALOG_WAREHOUSE, MemoryCatalogBuilder};
        use iceberg::spec::Schema;

        use tributary_raw::schema::col;

        let catalog = MemoryCatalogBuilder::default()
            .load(
                "memory",
                HashMap::from([(
                    MEMORY_CATALOG_WAREHOUSE.to_string(),
                    "memory:///lake".to_string(),
                )]),
            )
            .await
            .unwrap();
        let ns = NamespaceIdent::new("raw".into());
        catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
        let table = RawTable::PgSale;
        let current = table.iceberg_schema();
        let old_fields: Vec<_> = current
            .as_struct()
            .fields()
            .iter()
            .filter(|f| f.name != col::TRACE_ID)
            .cloned()
            .collect();
        let old = Schema::builder().with_fields(old_fields).build().unwrap();
        let creation = TableCreation::builder()
            .name(table.name().into())
            .schema(old)
            .build();
        catalog.create_table(&ns, creation).await.unwrap();

        ensure_tables(&catalog, "raw").await.unwrap();
        let evolved = load_table(&catalog, "raw", table).await.unwrap();
        let schema = evolved.metadata().current_schema();
        let trace_id = schema.field_by_name(col::TRACE_ID).expect("trace_id added");
        assert_eq!(
            trace_id.id,
            current.field_by_name(col::TRACE_ID).unwrap().id
        );
        assert!(!trace_id.required);
        assert_eq!(schema.as_struct().fields().len(), table.columns().len());
        // Idempotent: a second start changes nothing.
        ensure_tables(&catalog, "raw").await.unwrap();
        let again = load_table(&catalog, "raw", table).await.unwrap();
        assert_eq!(again.metadata().current_schema_id(), schema.schema_id());
    }
}
