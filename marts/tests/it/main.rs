//! The one integration-test binary of `tributary-marts`: one module per area (every extra file
//! directly under `tests/` would be another executable linking the whole dependency tree).

mod announce_it;
mod maintenance_it;
mod retention_it;
mod schema_it;
mod state_contract;
