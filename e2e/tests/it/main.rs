//! The one integration-test binary of `tributary-e2e`: one module per area (every extra file
//! directly under `tests/` would be another executable linking the whole dependency tree).

mod api_detail;
mod cdc_slot;
mod compose;
mod crashes;
mod disruption;
mod erp;
mod files;
mod freshness;
mod interop;
mod lander_sigkill;
mod lineage;
mod lineage_store;
mod marts_lineage;
mod monthly;
mod oracle;
mod pipeline;
mod prometheus;
mod readiness;
mod records_trail;
mod status_page;
mod tracing;
