//! [`AppState`]: what every handler shares.

use std::sync::Arc;

use sqlx::PgPool;

use super::crypto::Encryptor;
use super::metrics::Metrics;
use super::runtime::PipelineRuntime;
use super::tenant_files::TenantFiles;
use crate::netpolicy::NetworkPolicy;

#[derive(Clone)]
pub struct AppState {
    /// The control-plane database (schema `app`).
    pub pool: PgPool,
    pub encryptor: Arc<Encryptor>,
    pub runtime: Arc<dyn PipelineRuntime>,
    pub metrics: Arc<Metrics>,
    /// Where tenants' sources and destinations may point.
    pub policy: Arc<NetworkPolicy>,
    /// Where tenants' file destinations write.
    pub files: Arc<TenantFiles>,
}
