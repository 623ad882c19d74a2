//! Opening the lake: the Iceberg SQL catalog in Postgres over an S3 or local-folder warehouse,
//! naming and loading the raw tables, reading a snapshot's offsets and rows.
//!
//! Creating and evolving the tables, and the writer lock, are the lander's (`tributary-lake`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use iceberg::io::{
    S3_ACCESS_KEY_ID, S3_DISABLE_CONFIG_LOAD, S3_DISABLE_EC2_METADATA, S3_ENDPOINT,
    S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY, StorageFactory,
};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableIdent};
use iceberg_catalog_sql::{SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalStorageFactory;
use tributary_common::LakeSettings;

use crate::caching_catalog::CachingCatalog;
use crate::error::{RawError, redact_uri};
use crate::ledger::Ledger;
use crate::offsets::{OFFSETS_PROPERTY, OffsetMap, TopicPartition};
use crate::schema::{RawTable, col};

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
pub fn warehouse(settings: &LakeSettings, cwd: &Path) -> Result<Warehouse, RawError> {
    let raw = settings.warehouse.trim();
    let problem = |p: &str| RawError::Warehouse {
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

/// Opens the SQL catalog `settings.catalog_name` (the same tables Java's JdbcCatalog uses),
/// loading a table from memory while its metadata file is still the current one
/// ([`CachingCatalog`]). A local warehouse folder is created if missing.
pub async fn open(settings: &LakeSettings) -> Result<CachingCatalog, RawError> {
    let cwd = std::env::current_dir().map_err(|e| RawError::Warehouse {
        warehouse: settings.warehouse.clone(),
        problem: format!("cannot read the working directory: {e}"),
    })?;
    let warehouse = warehouse(settings, &cwd)?;
    let factory: Arc<dyn StorageFactory> = match &warehouse {
        Warehouse::S3(_) => Arc::new(OpenDalStorageFactory::S3 {
            customized_credential_load: None,
        }),
        Warehouse::Local(path) => {
            std::fs::create_dir_all(path).map_err(|e| RawError::Warehouse {
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
            Ok(catalog) => {
                return CachingCatalog::new(
                    catalog,
                    settings.catalog_name.clone(),
                    &settings.catalog_uri,
                )
                .map_err(|source| RawError::OpenCatalog {
                    catalog: settings.catalog_name.clone(),
                    uri: redact_uri(&settings.catalog_uri),
                    source: Box::new(source),
                });
            }
            // Two processes opening a fresh catalog database race on its `CREATE TABLE IF NOT
            // EXISTS` (Postgres reports a duplicate type): the loser just tries again.
            Err(e) if attempt < 3 && is_create_race(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(source) => {
                return Err(RawError::OpenCatalog {
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

/// Loads `namespace.table`.
pub async fn load_table(
    catalog: &dyn Catalog,
    namespace: &str,
    table: RawTable,
) -> Result<Table, RawError> {
    let ident = table_ident(namespace, table);
    catalog
        .load_table(&ident)
        .await
        .map_err(|source| RawError::iceberg("load_table", ident.to_string(), source))
}

/// The offset map stored in the table's current snapshot (empty for a table never committed to).
pub fn snapshot_offsets(table: &Table) -> Result<OffsetMap, RawError> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(OffsetMap::new());
    };
    OffsetMap::from_summary(&snapshot.summary().additional_properties).map_err(|source| {
        RawError::BadOffsets {
            table: table.identifier().to_string(),
            snapshot_id: snapshot.snapshot_id(),
            source,
        }
    })
}

/// The offset-coverage ledger stored in the table's current snapshot (empty for a table never
/// committed to by a ledger-keeping lander).
pub fn snapshot_ledger(table: &Table) -> Result<Ledger, RawError> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Ledger::new());
    };
    Ledger::from_summary(&snapshot.summary().additional_properties).map_err(|source| {
        RawError::BadLedger {
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
) -> Result<Vec<RecordBatch>, RawError> {
    let scan_error = |source| RawError::iceberg("scan", table.identifier().to_string(), source);
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

/// `columns` of every row of `table` at its current snapshot (none for a table never committed
/// to), in that order.
pub async fn read_columns(table: &Table, columns: &[&str]) -> Result<Vec<RecordBatch>, RawError> {
    let scan_error = |source| RawError::iceberg("scan", table.identifier().to_string(), source);
    let Some(snapshot_id) = table.metadata().current_snapshot_id() else {
        return Ok(Vec::new());
    };
    let scan = table
        .scan()
        .select(columns.iter().copied())
        .snapshot_id(snapshot_id)
        .build()
        .map_err(scan_error)?;
    let stream = scan.to_arrow().await.map_err(scan_error)?;
    stream.try_collect().await.map_err(scan_error)
}

/// The Kafka offsets of `table`'s rows at its current snapshot, per topic partition: the
/// three provenance columns only, for checking the ledger ([`crate::ledger`]) against the rows.
pub async fn row_offsets(table: &Table) -> Result<BTreeMap<TopicPartition, Vec<i64>>, RawError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};

    let mut offsets: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    let columns = [col::KAFKA_TOPIC, col::KAFKA_PARTITION, col::KAFKA_OFFSET];
    for batch in read_columns(table, &columns).await? {
        let topics = batch.column(0).as_string::<i32>();
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let rows = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if topics.is_null(i) || partitions.is_null(i) || rows.is_null(i) {
                continue;
            }
            let tp = TopicPartition::new(topics.value(i), partitions.value(i));
            offsets.entry(tp).or_default().push(rows.value(i));
        }
    }
    Ok(offsets)
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
}
