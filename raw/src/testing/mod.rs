//! Raw change events for tests, in any crate: Arrow batches with the lake's exact schemas
//! ([`crate::schema`]), landed in an iceberg `MemoryCatalog` (or any catalog) as real appends.
//! Hidden from the docs; never used by a binary.

use std::collections::HashMap;
use std::sync::Arc;

use crate::schema::RawTable;
use arrow::array::{
    ArrayRef, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use iceberg::memory::{MEMORY_CATALOG_WAREHOUSE, MemoryCatalogBuilder};
use iceberg::spec::DataFileFormat;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use parquet::file::properties::WriterProperties;

/// A typed value of a row-image column.
#[derive(Debug, Clone, Copy)]
pub enum Val {
    /// A `long`.
    I(i64),
    /// A `string`.
    S(&'static str),
    /// A `decimal(18,2)`, in cents.
    Cents(i64),
    /// A `timestamptz`, microseconds since the epoch.
    Micros(i64),
}

/// One change event: op, key, source position and the row image.
#[derive(Debug, Clone)]
pub struct Ev {
    pub op: &'static str,
    pub id: i64,
    pub lsn: i64,
    pub offset: i64,
    pub values: HashMap<&'static str, Val>,
}

impl Ev {
    /// The same event with `sold_at` set (RFC 3339, e.g. `2026-01-31T23:30:00Z`).
    pub fn sold_at(mut self, rfc3339: &str) -> Self {
        let micros = chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("an RFC 3339 time")
            .timestamp_micros();
        self.values.insert("sold_at", Val::Micros(micros));
        self
    }
}

/// A `pg_sale` event.
pub fn sale(
    op: &'static str,
    id: i64,
    (lsn, offset): (i64, i64),
    salesman_id: Option<i64>,
    city_id: Option<i64>,
    cents: Option<i64>,
) -> Ev {
    let mut values = HashMap::new();
    if let Some(v) = salesman_id {
        values.insert("salesman_id", Val::I(v));
    }
    if let Some(v) = city_id {
        values.insert("city_id", Val::I(v));
    }
    if let Some(v) = cents {
        values.insert("amount", Val::Cents(v));
    }
    Ev {
        op,
        id,
        lsn,
        offset,
        values,
    }
}

/// A `pg_salesman` event.
pub fn salesman(
    op: &'static str,
    id: i64,
    (lsn, offset): (i64, i64),
    code: &'static str,
    name: &'static str,
) -> Ev {
    Ev {
        op,
        id,
        lsn,
        offset,
        values: HashMap::from([("code", Val::S(code)), ("name", Val::S(name))]),
    }
}

/// A `pg_city` event.
pub fn city(
    op: &'static str,
    id: i64,
    (lsn, offset): (i64, i64),
    name: &'static str,
    state: &'static str,
) -> Ev {
    Ev {
        op,
        id,
        lsn,
        offset,
        values: HashMap::from([("name", Val::S(name)), ("state", Val::S(state))]),
    }
}

/// Lands the master data most tests sell against: salesman 100, `S1` "Ana", and city 7,
/// "Campinas", SP (one snapshot each, at LSN 1).
pub async fn land_ana_in_campinas(catalog: &dyn Catalog) {
    land(
        catalog,
        RawTable::PgSalesman,
        &[salesman("r", 100, (1, 0), "S1", "Ana")],
    )
    .await;
    land(
        catalog,
        RawTable::PgCity,
        &[city("r", 7, (1, 0), "Campinas", "SP")],
    )
    .await;
}

/// The Arrow schema the lander writes for `table`.
pub fn arrow_schema(table: RawTable) -> SchemaRef {
    Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&table.iceberg_schema())
            .expect("raw schemas convert to arrow"),
    )
}

/// A batch of `events` with the exact schema of `table`; provenance columns the marts ignore
/// get fixed values.
pub fn batch(table: RawTable, events: &[Ev]) -> RecordBatch {
    let schema = arrow_schema(table);
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| {
            let name = field.name().as_str();
            match field.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from_iter(events.iter().map(|e| {
                    match (name, e.values.get(name)) {
                        ("op", _) => Some(e.op.to_string()),
                        ("kafka_topic", _) => Some(format!("test.{table}")),
                        (_, Some(Val::S(s))) => Some(s.to_string()),
                        _ => None,
                    }
                }))) as ArrayRef,
                DataType::Int64 => Arc::new(Int64Array::from_iter(events.iter().map(|e| {
                    match (name, e.values.get(name)) {
                        ("id", _) => Some(e.id),
                        ("source_lsn", _) => Some(e.lsn),
                        ("kafka_offset", _) => Some(e.offset),
                        (_, Some(Val::I(v))) => Some(*v),
                        _ => None,
                    }
                }))),
                DataType::Int32 => Arc::new(Int32Array::from(vec![0; events.len()])),
                DataType::Decimal128(p, s) => Arc::new(
                    Decimal128Array::from_iter(events.iter().map(|e| match e.values.get(name) {
                        Some(Val::Cents(c)) => Some(i128::from(*c)),
                        _ => None,
                    }))
                    .with_precision_and_scale(*p, *s)
                    .expect("decimal(18,2)"),
                ),
                DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
                    TimestampMicrosecondArray::from_iter(events.iter().map(|e| {
                        match e.values.get(name) {
                            Some(Val::Micros(v)) => Some(*v),
                            _ => (!field.is_nullable()).then_some(1_700_000_000_000_000 + e.lsn),
                        }
                    }))
                    .with_timezone_opt(tz.clone()),
                ),
                other => new_null_array(other, events.len()),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("test batch matches the raw schema")
}

/// How a file or ERP sale names its salesman or city.
#[derive(Debug, Clone, Copy)]
pub enum Ref {
    /// By id.
    Id(i64),
    /// By natural key (salesman code; city `name|state`).
    Key(&'static str),
}

/// A `file_sale` event of partner `origin`, version `(major, minor)`.
pub fn file_sale(
    op: &'static str,
    (origin, sale_id): (&'static str, &'static str),
    (major, minor): (i64, i64),
    salesman: Ref,
    city: Ref,
    cents: Option<i64>,
) -> Ev {
    let mut values = HashMap::from([
        ("origin", Val::S(origin)),
        ("sale_id", Val::S(sale_id)),
        ("version_major", Val::I(major)),
        ("version_minor", Val::I(minor)),
        ("provenance_json", Val::S("{}")),
    ]);
    match salesman {
        Ref::Id(id) => values.insert("salesman_id", Val::I(id)),
        Ref::Key(code) => values.insert("salesman_code", Val::S(code)),
    };
    match city {
        Ref::Id(id) => {
            values.insert("city_id", Val::I(id));
        }
        Ref::Key(key) => {
            let (name, state) = key.split_once('|').expect("city key is name|state");
            values.insert("city_name", Val::S(name));
            values.insert("city_state", Val::S(state));
        }
    }
    if let Some(v) = cents {
        values.insert("amount", Val::Cents(v));
    }
    Ev {
        op,
        id: 0,
        lsn: major * 1_000_000 + minor,
        offset: major * 1_000_000 + minor,
        values,
    }
}

/// An in-memory Iceberg catalog with the `raw` namespace and, for each of `tables`, an empty
/// raw table.
pub async fn memory_lake(tables: &[RawTable]) -> Arc<dyn Catalog> {
    let catalog = MemoryCatalogBuilder::default()
        .load(
            "tributary",
            HashMap::from([(
                MEMORY_CATALOG_WAREHOUSE.to_string(),
                "memory://warehouse".to_string(),
            )]),
        )
        .await
        .expect("memory catalog");
    let ns = NamespaceIdent::new("raw".to_string());
    catalog
        .create_namespace(&ns, HashMap::new())
        .await
        .expect("namespace");
    for table in tables {
        let creation = TableCreation::builder()
            .name(table.name().to_string())
            .schema(table.iceberg_schema())
            .build();
        catalog
            .create_table(&ns, creation)
            .await
            .expect("create raw table");
    }
    Arc::new(catalog)
}

/// Lands `events` into `raw.<table>` as one append (one new snapshot); returns its id.
pub async fn land(catalog: &dyn Catalog, table: RawTable, events: &[Ev]) -> i64 {
    land_in(catalog, "raw", table, events).await
}

/// Same, into `<namespace>.<table>` (integration tests use a namespace of their own).
pub async fn land_in(
    catalog: &dyn Catalog,
    namespace: &str,
    table: RawTable,
    events: &[Ev],
) -> i64 {
    let ident = TableIdent::new(NamespaceIdent::new(namespace.into()), table.name().into());
    let t = catalog.load_table(&ident).await.expect("load table");
    let parquet = ParquetWriterBuilder::new(
        WriterProperties::default(),
        t.metadata().current_schema().clone(),
    );
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        parquet,
        t.file_io().clone(),
        DefaultLocationGenerator::new(t.metadata()).expect("location generator"),
        DefaultFileNameGenerator::new(
            "test".into(),
            Some(uuid::Uuid::now_v7().to_string()),
            DataFileFormat::Parquet,
        ),
    );
    let mut writer = DataFileWriterBuilder::new(rolling)
        .build(None)
        .await
        .expect("writer");
    writer.write(batch(table, events)).await.expect("write");
    let files = writer.close().await.expect("close");
    let tx = Transaction::new(&t);
    let tx = tx
        .fast_append()
        .add_data_files(files)
        .apply(tx)
        .expect("append");
    let t = tx.commit(catalog).await.expect("commit");
    t.metadata()
        .current_snapshot()
        .expect("a snapshot after append")
        .snapshot_id()
}

mod workload;
pub use workload::{Rng, Workload};
