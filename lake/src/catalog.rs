//! Opening the lake: the Iceberg SQL catalog in Postgres over an S3 or local-folder warehouse,
//! the raw tables, reading them back, and the writer lock that keeps one lander per namespace.
//!
//! `marts` uses this module as a library: [`open`], [`table_ident`], [`load_table`],
//! [`snapshot_offsets`] and [`read_table`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use iceberg::io::{
    S3_ACCESS_KEY_ID, S3_DISABLE_CONFIG_LOAD, S3_DISABLE_EC2_METADATA, S3_ENDPOINT,
    S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY, StorageFactory,
};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlCatalog, SqlCatalogBuilder,
};
use iceberg_storage_opendal::OpenDalStorageFactory;
use sqlx::Connection;
use tributary_common::LakeSettings;

use crate::error::{LakeError, redact_uri};
use crate::offsets::{OFFSETS_PROPERTY, OffsetMap};
use crate::schema::RawTable;

/// Where the table files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warehouse {
    /// `s3://bucket[/prefix]` on the configured S3-compatible store, no trailing slash.
    S3(String),
    /// An absolute local folder.
    Local(PathBuf),
}

impl Warehouse {
    /// The location string the catalog records (`s3://…` or an absolute path).
    pub fn location(&self) -> String {
        match self {
            Warehouse::S3(url) => url.clone(),
            Warehouse::Local(path) => path.to_string_lossy().into_owned(),
        }
    }
}

/// Interprets `LakeSettings.warehouse`: `s3://…` is S3; `file://…` or a plain path is a local
/// folder, made absolute against `cwd`. Pure.
pub fn warehouse(settings: &LakeSettings, cwd: &Path) -> Result<Warehouse, LakeError> {
    let raw = settings.warehouse.trim();
    let problem = |p: &str| LakeError::Warehouse {
        warehouse: settings.warehouse.clone(),
        problem: p.to_string(),
    };
    if raw.is_empty() {
        return Err(problem("must not be empty"));
    }
    if let Some(rest) = raw.strip_prefix("s3://") {
        // A trailing slash makes every location `…//…`.
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.starts_with('/') {
            return Err(problem("s3:// needs a bucket, e.g. s3://warehouse"));
        }
        return Ok(Warehouse::S3(format!("s3://{rest}")));
    }
    let trimmed = raw.trim_end_matches('/');
    let path = match trimmed.strip_prefix("file://") {
        Some(p) => PathBuf::from(p),
        None if trimmed.contains("://") => {
            return Err(problem("only s3:// and local folders are supported"));
        }
        None if trimmed.is_empty() => PathBuf::from("/"),
        None => PathBuf::from(trimmed),
    };
    let absolute = if path.is_absolute() {
        path
    } else {
        cwd.join(path)
    };
    Ok(Warehouse::Local(normalize(&absolute)))
}

/// Removes `.` and `..` components without touching the file system (the folder may not exist).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The catalog properties for `settings` and its resolved `warehouse`. Pure.
pub fn catalog_properties(
    settings: &LakeSettings,
    warehouse: &Warehouse,
) -> HashMap<String, String> {
    let mut props = HashMap::from([
        (
            SQL_CATALOG_PROP_URI.to_string(),
            settings.catalog_uri.clone(),
        ),
        (SQL_CATALOG_PROP_WAREHOUSE.to_string(), warehouse.location()),
    ]);
    if let Warehouse::S3(_) = warehouse {
        let s3 = &settings.s3;
        props.extend([
            (S3_ENDPOINT.to_string(), s3.endpoint.clone()),
            (S3_ACCESS_KEY_ID.to_string(), s3.access_key_id.clone()),
            (
                S3_SECRET_ACCESS_KEY.to_string(),
                s3.secret_access_key.clone(),
            ),
            (S3_REGION.to_string(), s3.region.clone()),
            // S3-compatible stores on one host (SeaweedFS, s3s-fs, MinIO) want path-style URLs.
            (S3_PATH_STYLE_ACCESS.to_string(), "true".to_string()),
            // Never pick up ~/.aws or instance credentials instead of the configured ones.
            (S3_DISABLE_CONFIG_LOAD.to_string(), "true".to_string()),
            (S3_DISABLE_EC2_METADATA.to_string(), "true".to_string()),
        ]);
    }
    props
}

/// Opens the SQL catalog `settings.catalog_name` (the same tables Java's JdbcCatalog uses).
/// A local warehouse folder is created if missing.
pub async fn open(settings: &LakeSettings) -> Result<SqlCatalog, LakeError> {
    let cwd = std::env::current_dir().map_err(|e| LakeError::Warehouse {
        warehouse: settings.warehouse.clone(),
        problem: format!("cannot read the working directory: {e}"),
    })?;
    let warehouse = warehouse(settings, &cwd)?;
    let factory: Arc<dyn StorageFactory> = match &warehouse {
        Warehouse::S3(_) => Arc::new(OpenDalStorageFactory::S3 {
            customized_credential_load: None,
        }),
        Warehouse::Local(path) => {
            std::fs::create_dir_all(path).map_err(|e| LakeError::Warehouse {
                warehouse: settings.warehouse.clone(),
                problem: format!("cannot create {}: {e}", path.display()),
            })?;
            Arc::new(OpenDalStorageFactory::Fs)
        }
    };
    // The catalog reaches Postgres through sqlx's `Any` driver, which needs the drivers
    // registered; the catalog does it too, but doing it here keeps that fact next to the
    // `postgres` feature this crate enables for it.
    sqlx::any::install_default_drivers();
    let mut attempt = 1;
    loop {
        let result = SqlCatalogBuilder::default()
            .with_storage_factory(factory.clone())
            .load(
                settings.catalog_name.clone(),
                catalog_properties(settings, &warehouse),
            )
            .await;
        match result {
            Ok(catalog) => return Ok(catalog),
            // Two processes opening a fresh catalog database race on its `CREATE TABLE IF NOT
            // EXISTS` (Postgres reports a duplicate type): the loser just tries again.
            Err(e) if attempt < 3 && is_create_race(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(source) => {
                return Err(LakeError::OpenCatalog {
                    catalog: settings.catalog_name.clone(),
                    uri: redact_uri(&settings.catalog_uri),
                    source: Box::new(source),
                });
            }
        }
    }
}

fn is_create_race(error: &iceberg::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("duplicate key value") || text.contains("already exists")
}

/// `namespace.table` of a raw table.
pub fn table_ident(namespace: &str, table: RawTable) -> TableIdent {
    TableIdent::new(
        NamespaceIdent::new(namespace.to_string()),
        table.name().to_string(),
    )
}

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

/// Loads `namespace.table`.
pub async fn load_table(
    catalog: &dyn Catalog,
    namespace: &str,
    table: RawTable,
) -> Result<Table, LakeError> {
    let ident = table_ident(namespace, table);
    catalog
        .load_table(&ident)
        .await
        .map_err(|source| LakeError::Iceberg {
            action: "load_table",
            table: ident.to_string(),
            source: Box::new(source),
        })
}

/// The offset map stored in the table's current snapshot (empty for a table never committed to).
pub fn snapshot_offsets(table: &Table) -> Result<OffsetMap, LakeError> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(OffsetMap::new());
    };
    OffsetMap::from_summary(&snapshot.summary().additional_properties).map_err(|source| {
        LakeError::BadOffsets {
            table: table.identifier().to_string(),
            snapshot_id: snapshot.snapshot_id(),
            source,
        }
    })
}

/// The W3C `traceparent` of the lander commit span that wrote a snapshot, from its summary
/// properties (`snapshot.summary().additional_properties`); `None` for snapshots written before
/// tracing or by another writer. Link a span to it with `tributary_common::telemetry::link_span`.
pub fn snapshot_traceparent(properties: &HashMap<String, String>) -> Option<&str> {
    properties
        .get(crate::offsets::TRACEPARENT_PROPERTY)
        .map(String::as_str)
}

/// Whether a snapshot summary was written by the lander (carries an offset map).
pub fn has_offsets(properties: &HashMap<String, String>) -> bool {
    properties.contains_key(OFFSETS_PROPERTY)
}

/// Reads every row of `table` as of `snapshot_id` (the current snapshot when `None`).
///
/// For tests, tools and small tables; `marts` reads through DataFusion or plans files itself.
pub async fn read_table(
    table: &Table,
    snapshot_id: Option<i64>,
) -> Result<Vec<RecordBatch>, LakeError> {
    let scan_error = |source| LakeError::Iceberg {
        action: "scan",
        table: table.identifier().to_string(),
        source: Box::new(source),
    };
    let snapshot_id = match snapshot_id.or_else(|| table.metadata().current_snapshot_id()) {
        Some(id) => id,
        None => return Ok(Vec::new()),
    };
    let scan = table
        .scan()
        .select_all()
        .snapshot_id(snapshot_id)
        .build()
        .map_err(scan_error)?;
    let stream = scan.to_arrow().await.map_err(scan_error)?;
    stream.try_collect().await.map_err(scan_error)
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

    fn settings(warehouse: &str) -> LakeSettings {
        LakeSettings {
            warehouse: warehouse.to_string(),
            ..LakeSettings::default()
        }
    }

    #[test]
    fn warehouse_locations() {
        let cwd = Path::new("/work/main");
        assert_eq!(
            warehouse(&settings("s3://warehouse/"), cwd).unwrap(),
            Warehouse::S3("s3://warehouse".into())
        );
        assert_eq!(
            warehouse(&settings(".stack/warehouse"), cwd).unwrap(),
            Warehouse::Local("/work/main/.stack/warehouse".into())
        );
        assert_eq!(
            warehouse(&settings("../x/./lake/"), cwd).unwrap(),
            Warehouse::Local("/work/x/lake".into())
        );
        assert_eq!(
            warehouse(&settings("file:///tmp/lake"), cwd).unwrap(),
            Warehouse::Local("/tmp/lake".into())
        );
        assert!(warehouse(&settings("gs://b"), cwd).is_err());
        assert!(warehouse(&settings("s3://"), cwd).is_err());
        assert!(warehouse(&settings(""), cwd).is_err());
    }

    #[test]
    fn s3_properties_force_path_style_and_configured_credentials() {
        let s = settings("s3://warehouse");
        let w = warehouse(&s, Path::new("/")).unwrap();
        let props = catalog_properties(&s, &w);
        assert_eq!(props["warehouse"], "s3://warehouse");
        assert_eq!(props["s3.path-style-access"], "true");
        assert_eq!(props["s3.endpoint"], "http://127.0.0.1:9000");
        assert_eq!(props["s3.access-key-id"], "tributary");
        assert_eq!(props["s3.disable-config-load"], "true");
        let local = catalog_properties(&s, &Warehouse::Local("/tmp/w".into()));
        assert!(!local.contains_key("s3.endpoint"));
    }

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

        use crate::schema::col;

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
