//! The `etl serve-api`, `etl api rotate-key` and `etl api generate-key` subcommands: read the
//! `api` and `database` sections, refuse to start without keys, then run.

use anyhow::Context as _;

use super::crypto::Encryptor;
use super::rotate;
use super::startup::{self, Application};
use crate::config::{
    ApiConfig, Config, ConfigError, DatabaseConfig, Environment, KubernetesConfig,
};
use crate::shutdown;

/// The validated `api` section; errors name the key and where its value came from. In `dev`
/// the network policy protects nothing unless `api.network_policy.protect` says otherwise (the
/// walkthrough's source is the control plane's own local Postgres); elsewhere the default
/// classes apply.
pub fn api_settings(config: &Config) -> Result<ApiConfig, ConfigError> {
    let Some(mut settings) = config.optional_section::<ApiConfig>("api")? else {
        return Err(config.invalid(
            "api",
            "the `api` section is missing: add api_keys and encryption_keys \
             (APP_API__API_KEYS, APP_API__ENCRYPTION_KEYS; see the README, Control plane)",
        ));
    };
    settings
        .validate()
        .map_err(|(key, message)| config.invalid(&format!("api.{key}"), message))?;
    if config.environment() == Environment::Dev {
        settings.network_policy.protect.get_or_insert_with(Vec::new);
    }
    Ok(settings)
}

fn database(config: &Config) -> Result<crate::config::PgConnection, ConfigError> {
    config
        .section::<DatabaseConfig>("database")?
        .resolve()
        .map_err(|e| config.invalid("database", e.to_string()))
}

/// `etl serve-api`: serves until SIGTERM or SIGINT.
pub async fn serve(config: &Config) -> anyhow::Result<()> {
    let settings = api_settings(config)?;
    let connection = database(config)?;
    let kubernetes = config.optional_section::<KubernetesConfig>("kubernetes")?;
    let pool = startup::connect_database(&connection).await?;
    let runtime = startup::build_runtime(&settings, config.environment(), kubernetes).await?;
    let kind = runtime.kind();
    let app = Application::build(&settings, pool, runtime).await?;
    let addr = app.local_addr().context("cannot read the listen address")?;
    let (trigger, shutdown) = shutdown::channel();
    shutdown::on_signals(trigger).context("cannot install signal handlers")?;
    tracing::info!(%addr, runtime = kind, "control plane listening");
    app.run_until_stopped(shutdown)
        .await
        .context("the HTTP server failed")?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// `etl api rotate-key`: re-encrypts every stored secret with the newest key.
pub async fn rotate_key(config: &Config) -> anyhow::Result<String> {
    let settings = config
        .optional_section::<ApiConfig>("api")?
        .filter(|s| !s.encryption_keys.is_empty())
        .ok_or_else(|| config.invalid("api.encryption_keys", "no encryption key is configured"))?;
    let encryptor = Encryptor::new(&settings.encryption_keys)
        .map_err(|e| config.invalid("api.encryption_keys", e.to_string()))?;
    let pool = startup::connect_database(&database(config)?).await?;
    let report = rotate::rotate(&pool, &encryptor)
        .await
        .context("key rotation failed; nothing was changed")?;
    Ok(format!(
        "re-encrypted {} secret value(s) in {} row(s) with key {}; every secret now uses key {}",
        report.values, report.rows, report.key_id, report.key_id
    ))
}
