//! The one integration-test binary of `tributary-rankings`: the store contract suite
//! (`contract.rs`) run on the in-memory store (`memory.rs`) and on a real ClickHouse
//! (`clickhouse.rs`, the local stack's; fails, never skips, when it is not running), and on the
//! served store that answers from memory over each (`served.rs`).

mod clickhouse;
mod contract;
mod memory;
mod served;
