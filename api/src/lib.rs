//! tributary-api
