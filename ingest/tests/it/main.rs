//! The one integration-test binary of `tributary-ingest`: one module per area (every extra file
//! directly under `tests/` would be another executable linking the whole dependency tree).

mod erp_ingest;
mod erp_safety;
mod erp_schema;
mod erp_sim;
mod files_it;
