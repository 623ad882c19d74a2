//! The one integration-test binary of `tributary-lake`: one module per area (every extra file
//! directly under `tests/` would be another executable linking the whole dependency tree).

mod catalog_it;
mod common;
mod lander_it;
mod maintenance_it;
