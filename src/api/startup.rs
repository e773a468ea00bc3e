//! [`Application`]: the one place that wires the control plane (database pool, encryption keys,
//! network policy, tenants' file root, pipeline runtime, router) and binds its listener. Before
//! serving it seals the secrets of rows written before secrets were bound to their place
//! ([`rotate::bind_unbound`]). `etl serve-api` and the tests both build it;
//! tests only change the config (port 0, a fresh database, a temporary state dir).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

use super::auth::ApiKeys;
use super::console::{self, ConsoleState};
use super::crypto::{CryptoError, Encryptor};
use super::lag;
use super::metrics::Metrics;
use super::rotate::{self, RotationError};
use super::routes;
use super::runtime::kubernetes::KubernetesRuntime;
use super::runtime::local::LocalRuntime;
use super::runtime::{PipelineRuntime, RuntimeError};
use super::state::AppState;
use super::tenant_files::TenantFiles;
use crate::config::api::LagHistoryConfig;
use crate::config::{ApiConfig, Environment, KubernetesConfig, PgConnection, RuntimeKind};
use crate::netpolicy::{self, NetworkPolicy};
use crate::shutdown::Shutdown;

/// Why the control plane cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot connect to the control-plane database {target}")]
    Database {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the control-plane database {target} has no `app` schema: run `etl migrate api` first")]
    NotMigrated { target: String },
    #[error("api.encryption_keys: {0}")]
    Keys(#[from] CryptoError),
    #[error("cannot seal the stored secrets bound to their place (nothing was changed)")]
    Reseal(#[from] RotationError),
    #[error("api.local.data_dir: {0}")]
    DataDir(std::io::Error),
    #[error("pipeline runtime `{kind}`: {message}")]
    Runtime { kind: &'static str, message: String },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A built control plane, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The lag sampler's inputs, started with the server.
    sampler: (AppState, LagHistoryConfig),
}

/// Connects a pool to the control-plane database and checks it is migrated.
pub async fn connect_database(connection: &PgConnection) -> Result<PgPool, StartupError> {
    let target = connection.describe();
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(connection.sqlx_options())
        .await
        .map_err(|source| StartupError::Database {
            target: target.clone(),
            source,
        })?;
    let migrated: bool = sqlx::query_scalar("select to_regclass('app.pipelines') is not null")
        .fetch_one(&pool)
        .await
        .map_err(|source| StartupError::Database {
            target: target.clone(),
            source,
        })?;
    if !migrated {
        return Err(StartupError::NotMigrated { target });
    }
    Ok(pool)
}

/// The runtime the config asks for.
pub async fn build_runtime(
    config: &ApiConfig,
    environment: Environment,
    kubernetes: Option<KubernetesConfig>,
) -> Result<Arc<dyn PipelineRuntime>, StartupError> {
    let failed = |kind, e: RuntimeError| StartupError::Runtime {
        kind,
        message: e.to_string(),
    };
    Ok(match config.runtime {
        RuntimeKind::Local => {
            Arc::new(LocalRuntime::new(&config.local, environment).map_err(|e| failed("local", e))?)
        }
        RuntimeKind::Kubernetes => {
            let connection =
                crate::k8s::connect(None)
                    .await
                    .map_err(|e| StartupError::Runtime {
                        kind: "kubernetes",
                        message: e.to_string(),
                    })?;
            let settings = kubernetes.unwrap_or_default();
            let metrics_port = settings.metrics_port;
            let manager = crate::k8s::ReplicatorManager::new(connection.client, settings);
            Arc::new(KubernetesRuntime::new(manager, environment, metrics_port))
        }
    })
}

impl Application {
    /// Wires the application and binds `config.listen` (port 0 picks a free port).
    pub async fn build(
        config: &ApiConfig,
        pool: PgPool,
        runtime: Arc<dyn PipelineRuntime>,
    ) -> Result<Self, StartupError> {
        let encryptor = Arc::new(Encryptor::new(&config.encryption_keys)?);
        let bound = rotate::bind_unbound(&pool, &encryptor).await?;
        if bound.rows > 0 {
            tracing::info!(
                rows = bound.rows,
                values = bound.values,
                "sealed stored secrets bound to their tenant, object and field"
            );
        }
        let database = pool.connect_options();
        let control_plane =
            netpolicy::control_plane_addresses(database.get_host(), database.get_port()).await;
        let policy = Arc::new(NetworkPolicy::new(
            &config.network_policy,
            false,
            &control_plane,
        ));
        let files =
            Arc::new(TenantFiles::new(&config.local.data_dir).map_err(StartupError::DataDir)?);
        let addr = config
            .listen_addr()
            .map_err(|(_, message)| StartupError::Runtime {
                kind: "listen",
                message,
            })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen { addr, source })?;
        let state = AppState {
            pool,
            encryptor,
            runtime,
            metrics: Arc::new(Metrics::default()),
            policy,
            files,
        };
        let keys = ApiKeys::new(config.api_keys.clone(), &config.tenant_keys);
        let mut router = routes::router(state.clone(), keys.clone(), config.max_body_bytes);
        if config.console.enabled {
            router = router.merge(console::router(ConsoleState {
                app: state.clone(),
                keys,
                config: config.console.clone(),
                app_body_limit: config.max_body_bytes,
            }));
        }
        Ok(Self {
            listener,
            router,
            sampler: (state, config.lag_history.clone()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves (and samples lag) until `shutdown` fires, then finishes the requests in flight.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        let (state, history) = self.sampler;
        let sampler = tokio::spawn(lag::sampler::run(state, history, shutdown.clone()));
        let mut stop = shutdown;
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await;
        sampler.abort();
        served
    }
}
