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
