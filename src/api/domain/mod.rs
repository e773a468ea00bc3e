//! The control plane's vocabulary: request and response shapes of every resource (with their
//! OpenAPI schemas) and the validation of user input. Pure code, no database.
//!
//! - [`tenant`]: tenant ids and tenants; [`image`]: replicator images;
//! - [`source`]: source connection settings (plain in, sealed at rest, redacted out);
//! - [`destination`]: destination configs, validated against the replicator's own
//!   [`crate::config::DestinationConfig`];
//! - [`pipeline`]: pipelines, their settings and status shapes.

pub mod destination;
pub mod image;
pub mod pipeline;
pub mod source;
pub mod tenant;
