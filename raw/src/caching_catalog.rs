//! The SQL catalog, keeping each table's parsed metadata while the catalog still names it.
//!
//! Loading a table from iceberg's SQL catalog asks Postgres twice (does it exist, where is its
//! metadata), `GET`s the metadata file from the object store and parses it, and the file grows
//! with the snapshots a table keeps. One lander commit loaded its table three times: its own
//! fence, iceberg's refresh before applying the append, and the catalog's look before its
//! compare-and-swap. A metadata file is never rewritten (every commit writes a new one) and the
//! catalog row names the current one, so a table whose row still names the file parsed last
//! time *is* that table: one indexed `SELECT` answers a load instead of two queries, a `GET` and
//! a parse. Commits take the same compare-and-swap on the row as iceberg's SQL catalog does
//! (`UPDATE … WHERE metadata_location = <the one the commit was built on>`), so a concurrent
//! writer still meets a conflict, never a lost update.
//!
//! The cached [`Table`] keeps its manifest cache (iceberg's `ObjectCache`, at most 32 MiB a
//! table), so readers that load a table each run stop re-reading manifests they have read.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, TableCommit,
    TableCreation, TableIdent,
};
use iceberg_catalog_sql::SqlCatalog;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The catalog table iceberg's SQL catalog (and Java's `JdbcCatalog`) keeps tables in; the
/// names below are theirs.
const WHERE_TABLE: &str = "catalog_name = $1 AND table_namespace = $2 AND table_name = $3
     AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)";

/// [`SqlCatalog`] with [`Catalog::load_table`] answered from memory while the table's metadata
/// file is still the current one (module docs).
#[derive(Debug)]
pub struct CachingCatalog {
    inner: SqlCatalog,
    /// The catalog's name: its rows in `iceberg_tables` carry it.
    name: String,
    /// A connection of our own to the catalog database, for the location lookups and the swap.
    pool: PgPool,
    tables: Mutex<HashMap<TableIdent, Table>>,
}

impl CachingCatalog {
    /// Wraps `inner`, named `name`, whose database is at `uri` (Postgres). Connects lazily.
    pub fn new(inner: SqlCatalog, name: String, uri: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            // As the SQL catalog's own pool: a catalog nobody uses holds no connection.
            .idle_timeout(std::time::Duration::from_secs(10))
            .connect_lazy(uri)
            .map_err(|e| sql_error("open the catalog connection", e))?;
        Ok(Self {
            inner,
            name,
            pool,
            tables: Mutex::new(HashMap::new()),
        })
    }

    /// The metadata file the catalog names for `table` now, `None` if there is no such table.
    async fn current_location(&self, table: &TableIdent) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = sqlx::query_as(&format!(
            "SELECT metadata_location FROM iceberg_tables WHERE {WHERE_TABLE}"
        ))
        .bind(&self.name)
        .bind(table.namespace().join("."))
        .bind(table.name())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql_error("read the table's metadata location", e))?;
        Ok(row.and_then(|(location,)| location))
    }

    fn cached(&self, table: &TableIdent, location: &str) -> Option<Table> {
        let tables = self.tables.lock().expect("cache lock");
        tables
            .get(table)
            .filter(|t| t.metadata_location() == Some(location))
            .cloned()
    }

    fn remember(&self, table: &Table) {
        let mut tables = self.tables.lock().expect("cache lock");
        tables.insert(table.identifier().clone(), table.clone());
    }

    fn forget(&self, table: &TableIdent) {
        self.tables.lock().expect("cache lock").remove(table);
    }
}

fn sql_error(action: &str, error: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("catalog: {action}")).with_source(error)
}

#[async_trait]
impl Catalog for CachingCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let table = self.inner.create_table(namespace, creation).await?;
        self.remember(&table);
        Ok(table)
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        match self.current_location(table).await? {
            Some(location) => {
                if let Some(cached) = self.cached(table, &location) {
                    return Ok(cached);
                }
            }
            // The SQL catalog's own answer for a missing table (its kind and message).
            None => self.forget(table),
        }
        let loaded = self.inner.load_table(table).await?;
        self.remember(&loaded);
        Ok(loaded)
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.forget(table);
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.forget(table);
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.forget(src);
        self.forget(dest);
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.forget(table);
        self.inner.register_table(table, metadata_location).await
    }

    /// What [`SqlCatalog`] does (apply the commit's requirements and updates to the current
    /// table, write the new metadata file, swap the row only if it still names the file the
    /// commit was built on), with the current table from memory when it still is current.
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let current = self.load_table(&ident).await?;
        let base_location = current.metadata_location_result()?.to_string();
        let staged = commit.apply(current)?;
        let staged_location = MetadataLocation::from_str(staged.metadata_location_result()?)?;
        staged
            .metadata()
            .write_to(staged.file_io(), &staged_location)
            .await?;
        let swapped = swap_metadata_location(
            &self.pool,
            &self.name,
            &ident,
            &base_location,
            &staged_location.to_string(),
        )
        .await
        .map_err(|e| sql_error("swap the table's metadata location", e))?;
        if !swapped {
            return Err(Error::new(
                ErrorKind::CatalogCommitConflicts,
                format!("Commit conflicted for table: {ident}"),
            )
            .with_retryable(true));
        }
        self.remember(&staged);
        Ok(staged)
    }
}

/// Points `table`'s catalog row at the metadata file `new` if it still names `expected`: the
/// compare-and-swap every commit to the lake ends with. False when another commit moved the
/// row first (nothing changed then).
pub async fn swap_metadata_location<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    catalog: &str,
    table: &TableIdent,
    expected: &str,
    new: &str,
) -> std::result::Result<bool, sqlx::Error> {
    let swapped = sqlx::query(&format!(
        "UPDATE iceberg_tables SET metadata_location = $4, previous_metadata_location = $5
         WHERE {WHERE_TABLE} AND metadata_location = $5"
    ))
    .bind(catalog)
    .bind(table.namespace().join("."))
    .bind(table.name())
    .bind(new)
    .bind(expected)
    .execute(executor)
    .await?;
    Ok(swapped.rows_affected() == 1)
}
