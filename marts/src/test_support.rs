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
    fill(SessionContext::new(), sales, salesmen, cities, file_sales)
}

/// Same as [`memtable_context`], in a session whose memory pool holds `limit` bytes.
pub fn memtable_context_limited(
    limit: usize,
    sales: &[Ev],
    salesmen: &[Ev],
    cities: &[Ev],
) -> SessionContext {
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(limit, 1.0)
        .build_arc()
        .expect("runtime");
    let ctx = SessionContext::new_with_config_rt(Default::default(), runtime);
    fill(ctx, sales, salesmen, cities, &[])
}

fn fill(
    ctx: SessionContext,
    sales: &[Ev],
    salesmen: &[Ev],
    cities: &[Ev],
    file_sales: &[Ev],
) -> SessionContext {
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
