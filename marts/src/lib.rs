//! tributary-marts
