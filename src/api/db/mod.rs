//! Queries on the control-plane schema `app`, one module per resource. Every tenant-scoped
//! query filters by tenant id, so another tenant's objects are simply not found. Queries are
//! checked at run time (no offline metadata to keep in sync).

pub mod configured;
pub mod images;
pub mod pipelines;
pub mod tenants;
