//! The raw tables' columns, in one place: the Iceberg schemas the lander creates, the Arrow
//! schemas it writes, and the column names `marts` reads all come from here.
//!
//! Every change table (`pg_sale`, `pg_salesman`, `pg_city`) is
//! `op` + the typed row image + `before_json`/`after_json` + provenance. Field ids are assigned
//! in declaration order starting at 1, which is also what Iceberg assigns when it creates a
//! table, so the ids in the catalog equal the ones here.

use std::sync::Arc;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

use tributary_common::names;

/// Column names shared by the tables. Use these instead of string literals.
pub mod col {
    /// Debezium operation: `c` create, `u` update, `d` delete, `r` snapshot read.
    pub const OP: &str = "op";
    /// Primary key of the source row (every change table).
    pub const ID: &str = "id";
    /// Raw JSON text of Debezium's `before` image (null when absent).
    pub const BEFORE_JSON: &str = "before_json";
    /// Raw JSON text of Debezium's `after` image (null for deletes).
    pub const AFTER_JSON: &str = "after_json";
    /// `source.lsn`: Postgres WAL position of the change.
    pub const SOURCE_LSN: &str = "source_lsn";
    /// `source.ts_ms`: commit time of the change in the source database.
    pub const SOURCE_TS: &str = "source_ts";
    /// `source.txId`: Postgres transaction id.
    pub const SOURCE_TXID: &str = "source_txid";
    /// Kafka topic the record was read from.
    pub const KAFKA_TOPIC: &str = "kafka_topic";
    /// Kafka partition the record was read from.
    pub const KAFKA_PARTITION: &str = "kafka_partition";
    /// Kafka offset of the record.
    pub const KAFKA_OFFSET: &str = "kafka_offset";
    /// When the lander read the record.
    pub const INGEST_TIME: &str = "ingest_time";
    /// W3C trace id (32 hex digits) of the ingest batch that produced the record, from its
    /// `traceparent` header (null when the producer sent none, e.g. Debezium).
    pub const TRACE_ID: &str = "trace_id";
    /// `pg_sale.salesman_id`.
    pub const SALESMAN_ID: &str = "salesman_id";
    /// `pg_sale.city_id` / `pg_salesman.city_id`.
    pub const CITY_ID: &str = "city_id";
    /// `pg_sale.amount`, decimal(18,2).
    pub const AMOUNT: &str = "amount";
    /// `pg_sale.sold_at`.
    pub const SOLD_AT: &str = "sold_at";
    /// `pg_sale.updated_at`.
    pub const UPDATED_AT: &str = "updated_at";
    /// `pg_salesman.code`.
    pub const CODE: &str = "code";
    /// `pg_salesman.name` / `pg_city.name`.
    pub const NAME: &str = "name";
    /// `pg_city.state`.
    pub const STATE: &str = "state";
    /// `dead_letters.kafka_key`: the record key, UTF-8 text or base64 (see `kafka_key_encoding`).
    pub const KAFKA_KEY: &str = "kafka_key";
    /// `utf8` or `base64` (null when the record had no key).
    pub const KAFKA_KEY_ENCODING: &str = "kafka_key_encoding";
    /// `dead_letters.kafka_value`: the record value, UTF-8 text or base64.
    pub const KAFKA_VALUE: &str = "kafka_value";
    /// `utf8` or `base64` (null when the record had no value).
    pub const KAFKA_VALUE_ENCODING: &str = "kafka_value_encoding";
    /// Why the record could not be landed, for a human.
    pub const REASON: &str = "reason";
    /// Machine-readable class of the failure (see `decode::ErrorKind`).
    pub const ERROR_KIND: &str = "error_kind";
    /// Sale-event tables: `u` (upsert) or `d` (withdrawn / cancelled) is in `op`; the source's sale id.
    pub const SALE_ID: &str = "sale_id";
    /// Partner (files) or ERP system name.
    pub const ORIGIN: &str = "origin";
    /// Source order of the version, coarse part (file sequence, ERP change sequence).
    pub const VERSION_MAJOR: &str = "version_major";
    /// Source order of the version, fine part (record ordinal in the file).
    pub const VERSION_MINOR: &str = "version_minor";
    /// Salesman natural key.
    pub const SALESMAN_CODE: &str = "salesman_code";
    /// City natural key, name part.
    pub const CITY_NAME: &str = "city_name";
    /// City natural key, state part.
    pub const CITY_STATE: &str = "city_state";
    /// ISO 4217 currency as sent.
    pub const CURRENCY: &str = "currency";
    /// When the ingestor produced the event.
    pub const PRODUCED_AT: &str = "produced_at";
    /// The event's provenance object (object URL, record; or endpoint, cursor, request id), JSON.
    pub const PROVENANCE_JSON: &str = "provenance_json";
}

/// Precision of money columns (Iceberg/Arrow `decimal(18,2)`).
pub const MONEY_PRECISION: u8 = 18;
/// Scale of money columns.
pub const MONEY_SCALE: i8 = 2;

/// Logical type of a column, as the lander decodes and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// 64-bit integer (Iceberg `long`).
    Long,
    /// 32-bit integer (Iceberg `int`).
    Int,
    /// UTF-8 text.
    String,
    /// `decimal(18,2)`.
    Money,
    /// Microseconds since the epoch, UTC (Iceberg `timestamptz`).
    Timestamptz,
}

impl ColumnType {
    /// The Iceberg type of the column.
    pub fn iceberg(self) -> Type {
        Type::Primitive(match self {
            ColumnType::Long => PrimitiveType::Long,
            ColumnType::Int => PrimitiveType::Int,
            ColumnType::String => PrimitiveType::String,
            ColumnType::Money => PrimitiveType::Decimal {
                precision: MONEY_PRECISION as u32,
                scale: MONEY_SCALE as u32,
            },
            ColumnType::Timestamptz => PrimitiveType::Timestamptz,
        })
    }
}

/// One column of a raw table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: &'static str,
    /// Logical type.
    pub ty: ColumnType,
    /// Whether the column is never null.
    pub required: bool,
    /// Column documentation, stored in the Iceberg schema.
    pub doc: &'static str,
}

const fn req(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        required: true,
        doc,
    }
}

const fn opt(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        required: false,
        doc,
    }
}

use ColumnType::{Int, Long, Money, String as Str, Timestamptz};

const OP_COLUMN: Column = req(col::OP, Str, "Debezium op: c, u, d or r");

/// Columns after the typed image in every change table (then [`KAFKA_TAIL`]).
const CHANGE_TAIL: &[Column] = &[
    opt(col::BEFORE_JSON, Str, "raw JSON of Debezium's before image"),
    opt(col::AFTER_JSON, Str, "raw JSON of Debezium's after image"),
    req(
        col::SOURCE_LSN,
        Long,
        "Postgres LSN of the change (source.lsn)",
    ),
    req(
        col::SOURCE_TS,
        Timestamptz,
        "source commit time (source.ts_ms)",
    ),
    opt(
        col::SOURCE_TXID,
        Long,
        "Postgres transaction id (source.txId)",
    ),
];

const SALE_IMAGE: &[Column] = &[
    req(col::ID, Long, "sale id"),
    opt(col::SALESMAN_ID, Long, "salesman id"),
    opt(col::CITY_ID, Long, "city id"),
    opt(col::AMOUNT, Money, "sale amount"),
    opt(col::SOLD_AT, Timestamptz, "when the sale happened"),
    opt(
        col::UPDATED_AT,
        Timestamptz,
        "last update of the source row",
    ),
];

const SALESMAN_IMAGE: &[Column] = &[
    req(col::ID, Long, "salesman id"),
    opt(col::CODE, Str, "salesman code (natural key)"),
    opt(col::NAME, Str, "salesman name"),
    opt(col::CITY_ID, Long, "home city id"),
];

const CITY_IMAGE: &[Column] = &[
    req(col::ID, Long, "city id"),
    opt(col::NAME, Str, "city name"),
    opt(col::STATE, Str, "state (UF)"),
];

/// Leading columns of a sale-event table (`file_sale`, `erp_sale`): the canonical
/// `SaleEvent`, flattened. The Kafka provenance columns follow.
const SALE_EVENT_COLUMNS: &[Column] = &[
    req(
        col::OP,
        Str,
        "u: this version of the sale; d: withdrawn or cancelled",
    ),
    req(col::SALE_ID, Str, "the sale's id in its source"),
    req(col::ORIGIN, Str, "partner (files) or ERP system"),
    req(
        col::VERSION_MAJOR,
        Long,
        "source order: file sequence or ERP change sequence",
    ),
    req(
        col::VERSION_MINOR,
        Long,
        "source order within major: record ordinal",
    ),
    opt(
        col::SALESMAN_ID,
        Long,
        "salesman id, when the source gives it",
    ),
    opt(
        col::SALESMAN_CODE,
        Str,
        "salesman code, when the source gives it",
    ),
    opt(col::CITY_ID, Long, "city id, when the source gives it"),
    opt(
        col::CITY_NAME,
        Str,
        "city name (natural key with city_state)",
    ),
    opt(col::CITY_STATE, Str, "city state"),
    opt(col::AMOUNT, Money, "sale amount"),
    opt(col::CURRENCY, Str, "currency as sent"),
    opt(col::SOLD_AT, Timestamptz, "when the sale happened"),
    req(
        col::PRODUCED_AT,
        Timestamptz,
        "when the ingestor produced the event",
    ),
    req(col::PROVENANCE_JSON, Str, "where the event came from, JSON"),
];

/// The Kafka provenance columns ending every data table.
const KAFKA_TAIL: &[Column] = &[
    req(col::KAFKA_TOPIC, Str, "Kafka topic"),
    req(col::KAFKA_PARTITION, Int, "Kafka partition"),
    req(col::KAFKA_OFFSET, Long, "Kafka offset"),
    req(
        col::INGEST_TIME,
        Timestamptz,
        "when the lander read the record",
    ),
    opt(
        col::TRACE_ID,
        Str,
        "trace id of the producing ingest batch (traceparent header)",
    ),
];

const DEAD_LETTER_COLUMNS: &[Column] = &[
    req(col::KAFKA_TOPIC, Str, "Kafka topic"),
    req(col::KAFKA_PARTITION, Int, "Kafka partition"),
    req(col::KAFKA_OFFSET, Long, "Kafka offset"),
    opt(col::KAFKA_KEY, Str, "record key (see kafka_key_encoding)"),
    opt(col::KAFKA_KEY_ENCODING, Str, "utf8 or base64"),
    opt(
        col::KAFKA_VALUE,
        Str,
        "record value (see kafka_value_encoding)",
    ),
    opt(col::KAFKA_VALUE_ENCODING, Str, "utf8 or base64"),
    req(col::REASON, Str, "why the record was rejected"),
    req(col::ERROR_KIND, Str, "class of the failure"),
    req(
        col::INGEST_TIME,
        Timestamptz,
        "when the lander read the record",
    ),
    opt(
        col::TRACE_ID,
        Str,
        "trace id of the producing ingest batch (traceparent header)",
    ),
];

/// The tables the lander writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RawTable {
    /// `raw.pg_sale`: change events of `salesdb.public.sale`.
    PgSale,
    /// `raw.pg_salesman`: change events of `salesdb.public.salesman`.
    PgSalesman,
    /// `raw.pg_city`: change events of `salesdb.public.city`.
    PgCity,
    /// `raw.file_sale`: sale events from partner files.
    FileSale,
    /// `raw.erp_sale`: sale events and cancellations from the ERP.
    ErpSale,
    /// `raw.dead_letters`: records the lander could not decode, and records the ingestors
    /// rejected.
    DeadLetters,
}

impl RawTable {
    /// Every raw table, data tables first.
    pub const ALL: [RawTable; 6] = [
        RawTable::PgSale,
        RawTable::PgSalesman,
        RawTable::PgCity,
        RawTable::FileSale,
        RawTable::ErpSale,
        RawTable::DeadLetters,
    ];
    /// The data tables: every table but `dead_letters`, each fed by one topic.
    pub const DATA_TABLES: [RawTable; 5] = [
        RawTable::PgSale,
        RawTable::PgSalesman,
        RawTable::PgCity,
        RawTable::FileSale,
        RawTable::ErpSale,
    ];

    /// Whether the table holds canonical sale events (files, ERP) rather than Debezium changes.
    pub fn is_sale_events(self) -> bool {
        matches!(self, RawTable::FileSale | RawTable::ErpSale)
    }

    /// Table name inside the namespace.
    pub fn name(self) -> &'static str {
        match self {
            RawTable::PgSale => names::TABLE_PG_SALE,
            RawTable::PgSalesman => names::TABLE_PG_SALESMAN,
            RawTable::PgCity => names::TABLE_PG_CITY,
            RawTable::FileSale => names::TABLE_FILE_SALE,
            RawTable::ErpSale => names::TABLE_ERP_SALE,
            RawTable::DeadLetters => names::TABLE_DEAD_LETTERS,
        }
    }

    /// The typed row-image columns of a Debezium change table (empty for the others).
    pub fn image_columns(self) -> &'static [Column] {
        match self {
            RawTable::PgSale => SALE_IMAGE,
            RawTable::PgSalesman => SALESMAN_IMAGE,
            RawTable::PgCity => CITY_IMAGE,
            RawTable::FileSale | RawTable::ErpSale | RawTable::DeadLetters => &[],
        }
    }

    /// All columns in table order.
    pub fn columns(self) -> Vec<Column> {
        match self {
            RawTable::DeadLetters => DEAD_LETTER_COLUMNS.to_vec(),
            RawTable::FileSale | RawTable::ErpSale => SALE_EVENT_COLUMNS
                .iter()
                .chain(KAFKA_TAIL)
                .copied()
                .collect(),
            change => std::iter::once(OP_COLUMN)
                .chain(change.image_columns().iter().copied())
                .chain(CHANGE_TAIL.iter().copied())
                .chain(KAFKA_TAIL.iter().copied())
                .collect(),
        }
    }

    /// The Iceberg schema, field ids from 1 in column order.
    pub fn iceberg_schema(self) -> Schema {
        let fields = self.columns().into_iter().zip(1..).map(|(c, id)| {
            let field = if c.required {
                NestedField::required(id, c.name, c.ty.iceberg())
            } else {
                NestedField::optional(id, c.name, c.ty.iceberg())
            };
            Arc::new(field.with_doc(c.doc))
        });
        Schema::builder()
            .with_fields(fields)
            .build()
            .expect("the raw table schemas are valid by construction")
    }
}

impl std::fmt::Display for RawTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, TimeUnit};

    use super::*;

    #[test]
    fn arrow_schema_has_the_types_iceberg_writes() {
        let arrow =
            iceberg::arrow::schema_to_arrow_schema(&RawTable::PgSale.iceberg_schema()).unwrap();
        assert_eq!(
            arrow.field_with_name(col::AMOUNT).unwrap().data_type(),
            &DataType::Decimal128(18, 2)
        );
        assert_eq!(
            arrow.field_with_name(col::SOLD_AT).unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        );
        assert!(!arrow.field_with_name(col::ID).unwrap().is_nullable());
        assert!(
            arrow
                .field_with_name(col::SALESMAN_ID)
                .unwrap()
                .is_nullable()
        );
        assert_eq!(
            arrow
                .field_with_name(col::KAFKA_PARTITION)
                .unwrap()
                .data_type(),
            &DataType::Int32
        );
    }

    #[test]
    fn field_ids_follow_column_order() {
        let schema = RawTable::PgCity.iceberg_schema();
        let names: Vec<_> = RawTable::PgCity.columns().iter().map(|c| c.name).collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(schema.field_by_name(name).unwrap().id, i as i32 + 1);
        }
        assert_eq!(names[0], col::OP);
        assert_eq!(names[1], col::ID);
    }

    #[test]
    fn every_table_has_unique_column_names() {
        for table in RawTable::ALL {
            let mut names: Vec<_> = table.columns().iter().map(|c| c.name).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "{table}");
        }
    }
}
