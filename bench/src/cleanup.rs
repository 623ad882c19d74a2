//! Removing what a benchmark's runs wrote on the shared stack, so that runs do not pile up
//! (a 5 K/s CDC run wrote ~3 M ranking rows and 200 MB of kept state; a marts run over 10 M
//! events, a lake of that size). Best effort: a failure is printed, never fatal, since the
//! results are already in hand.

use iceberg::Catalog;
use tributary_common::{ClickHouseSettings, LakeSettings};

/// Drops the ClickHouse database `database` on the server of `clickhouse` (its HTTP interface).
pub async fn drop_clickhouse_database(clickhouse: &ClickHouseSettings, database: &str) {
    let dropped = reqwest::Client::new()
        .post(&clickhouse.url)
        .basic_auth(&clickhouse.user, Some(&clickhouse.password))
        .body(format!("DROP DATABASE IF EXISTS {database}"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    if let Err(e) = dropped {
        eprintln!("could not drop the ClickHouse database {database}: {e}");
    }
}

/// Drops the Postgres schema `schema` (a marts' kept state) in the database of `url`.
pub async fn drop_postgres_schema(url: &str, schema: &str) {
    let dropped = async {
        let db = crate::load::connect(url).await?;
        db.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = dropped.await {
        eprintln!("could not drop the schema {schema}: {e:#}");
    }
}

/// Drops every raw table of the lake namespace `lake.namespace` with its files (iceberg's
/// `purge_table`), then the namespace.
pub async fn drop_lake_namespace(lake: &LakeSettings) {
    let namespace = &lake.namespace;
    let catalog = match tributary_raw::catalog::open(lake).await {
        Ok(catalog) => catalog,
        Err(e) => return eprintln!("could not open the catalog to drop {namespace}: {e}"),
    };
    for table in tributary_raw::RawTable::ALL {
        let ident = tributary_raw::catalog::table_ident(namespace, table);
        if catalog.table_exists(&ident).await.unwrap_or(false)
            && let Err(e) = catalog.purge_table(&ident).await
        {
            eprintln!("could not drop {ident}: {e}");
        }
    }
    let ident = iceberg::NamespaceIdent::new(namespace.to_string());
    if let Err(e) = catalog.drop_namespace(&ident).await {
        eprintln!("could not drop the lake namespace {namespace}: {e}");
    }
}
