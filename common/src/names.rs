//! Names shared across services: topics, lake tables, mart tables. Changing one here changes it
//! everywhere, which is the point.

/// Debezium's `topic.prefix`; topics are `<prefix>.<schema>.<table>`.
pub const DEBEZIUM_TOPIC_PREFIX: &str = "salesdb";
/// Debezium topic carrying `public.sale` changes.
pub const TOPIC_PG_SALE: &str = "salesdb.public.sale";
/// Debezium topic carrying `public.salesman` changes.
pub const TOPIC_PG_SALESMAN: &str = "salesdb.public.salesman";
/// Debezium topic carrying `public.city` changes.
pub const TOPIC_PG_CITY: &str = "salesdb.public.city";

/// Iceberg namespace holding the append-only raw tables (one per source stream).
pub const LAKE_NAMESPACE: &str = "raw";
/// Raw table of `public.sale` change events.
pub const TABLE_PG_SALE: &str = "pg_sale";
/// Raw table of `public.salesman` change events.
pub const TABLE_PG_SALESMAN: &str = "pg_salesman";
/// Raw table of `public.city` change events.
pub const TABLE_PG_CITY: &str = "pg_city";
/// Records the lander could not decode, with the reason and their provenance.
pub const TABLE_DEAD_LETTERS: &str = "dead_letters";

/// ClickHouse database holding the marts.
pub const MARTS_DATABASE: &str = "marts";

/// Sale events from partner files (see `sale_event::SaleEvent`).
pub const TOPIC_FILE_SALES: &str = "raw.files.sales";
/// Partner-file records the file ingestor rejected (see `sale_event::RejectedRecord`).
pub const TOPIC_FILE_DEAD_LETTERS: &str = "raw.files.dead_letters";
/// The file ingestor's progress (compacted, written in the same transactions as the events).
pub const TOPIC_FILE_PROGRESS: &str = "tributary.files.progress";
/// Sale events and cancellations from the legacy ERP's SOAP service.
pub const TOPIC_ERP_SALES: &str = "raw.ws.sales";
/// ERP records the WS ingestor rejected.
pub const TOPIC_ERP_DEAD_LETTERS: &str = "raw.ws.dead_letters";
/// The WS ingestor's progress: its cursor (compacted, transactional like the events).
pub const TOPIC_ERP_PROGRESS: &str = "tributary.ws.progress";

/// Raw table of sale events from partner files.
pub const TABLE_FILE_SALE: &str = "file_sale";
/// Raw table of sale events (and cancellations) from the ERP.
pub const TABLE_ERP_SALE: &str = "erp_sale";
