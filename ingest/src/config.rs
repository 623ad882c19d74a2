//! Settings of the ingest binary.

use serde::{Deserialize, Serialize};

/// Configuration of `tributary-ingest`, loaded by [`tributary_common::load`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Connection string of the store system's database (`salesdb`).
    pub salesdb_url: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            salesdb_url:
                "host=127.0.0.1 port=5432 user=tributary password=tributary dbname=salesdb".into(),
        }
    }
}
