//! Test helpers of the marts' unit tests: the raw events and in-memory lake of
//! `tributary_raw::testing`, and the same events as DataFusion `MemTable`s.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use tributary_raw::schema::RawTable;
pub use tributary_raw::testing::*;

/// A session with `pg_sale`, `pg_salesman` and `pg_city` as in-memory tables (and empty
/// `file_sale`, `erp_sale`).
pub fn memtable_context(sales: &[Ev], salesmen: &[Ev], cities: &[Ev]) -> SessionContext {
    memtable_context_with_files(sales, salesmen, cities, &[])
}

/// Same, with `file_sale` events.
pub fn memtable_context_with_files(
    sales: &[Ev],
    salesmen: &[Ev],
    cities: &[Ev],
    file_sales: &[Ev],
) -> SessionContext {
    let ctx = SessionContext::new();
    for (table, events) in [
        (RawTable::PgSale, sales),
        (RawTable::PgSalesman, salesmen),
        (RawTable::PgCity, cities),
        (RawTable::FileSale, file_sales),
        (RawTable::ErpSale, &[]),
    ] {
        // Two partitions, the newest events first, so nothing depends on arrival order.
        let mut reversed = events.to_vec();
        reversed.reverse();
        let (a, b) = reversed.split_at(reversed.len() / 2);
        let mem = MemTable::try_new(
            arrow_schema(table),
            vec![vec![batch(table, a)], vec![batch(table, b)]],
        )
        .expect("memtable");
        ctx.register_table(table.name(), Arc::new(mem))
            .expect("register");
    }
    ctx
}
