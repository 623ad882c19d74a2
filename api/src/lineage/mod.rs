//! The API's Marquez-compatible lineage service: the event store (`POST /api/v1/lineage`), the
//! lineage and column-lineage graphs computed from it, and the lineage page. The jobs only emit
//! events (`tributary-lineage`); reading them back as a graph is the API's.

pub mod graph;
pub mod page;
pub mod store;
