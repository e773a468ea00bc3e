//! Replicator container images (the `kubernetes` runtime runs them); exactly one is the default
//! that new pipelines use.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Image {
    pub id: i64,
    /// e.g. `ramsup/etl-replicator:1.0`
    pub name: String,
    pub is_default: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    pub name: String,
    /// Make this the default (the first image always is).
    #[serde(default)]
    pub is_default: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateImage {
    #[serde(default)]
    pub name: Option<String>,
    /// `true` makes this the default; `false` is refused for the default image (make another
    /// one the default instead).
    #[serde(default)]
    pub is_default: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Images {
    pub images: Vec<Image>,
}
