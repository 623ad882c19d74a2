//! The one integration-test binary of `tributary-api`: one module per area (every extra file
//! directly under `tests/` would be another executable linking the whole dependency tree).

mod api_clickhouse;
mod api_time_travel;
mod lineage_retention;
mod profile;
mod stall_proxy;
