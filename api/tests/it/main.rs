//! The one integration-test binary of `tributary-api`: one module per area (every extra file
//! directly under `tests/` would be another executable linking the whole dependency tree).

mod api_clickhouse;
mod api_time_travel;
mod lineage_retention;
mod profile;
// One implementation for both crates (tributary-e2e's slowdowns use it too).
#[path = "../../../e2e/src/proxy.rs"]
// Not every helper is used here (the e2e crate uses the rest).
#[allow(dead_code)]
mod stall_proxy;
