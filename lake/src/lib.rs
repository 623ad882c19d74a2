//! tributary-lake
