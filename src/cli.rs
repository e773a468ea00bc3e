//! Command-line definitions (clap derive) for the one `etl` binary. Only the shape of what the
//! user typed lives here; `main.rs` turns it into loaded configuration and runs the command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Replicate PostgreSQL through logical replication, run its control plane and migrations.
#[derive(Debug, Parser)]
#[command(name = "etl", version, about, propagate_version = true)]
pub struct Cli {
    /// Environment whose `config/{env}.yaml` is loaded: dev, staging or prod
    /// (default: `APP_ENVIRONMENT`, else prod).
    #[arg(long, global = true, value_name = "ENV")]
    pub env: Option<String>,

    /// Directory holding `base.yaml` and `{env}.yaml`.
    #[arg(
        long,
        global = true,
        env = "APP_CONFIG_DIR",
        default_value = "config",
        value_name = "DIR"
    )]
    pub config_dir: PathBuf,

    /// Log format (default: human in dev, JSON lines in staging and prod).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded database migrations.
    #[command(subcommand)]
    Migrate(MigrateCommand),

    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Prepare a Kubernetes cluster for replicators.
    #[command(subcommand)]
    K8s(K8sCommand),

    /// Copy the publication's tables, then stream their changes into the destination until
    /// SIGTERM/SIGINT.
    ///
    /// Example: etl --env dev replicate --once
    Replicate(ReplicateArgs),

    /// Maintain a pipeline's state on its source (same configuration as `etl replicate`).
    #[command(subcommand)]
    Pipeline(PipelineCommand),

    /// Act on one table of a pipeline, through its state on the source (same configuration as
    /// `etl replicate`; a running replicator picks the change up).
    #[command(subcommand)]
    Tables(TablesCommand),

    /// Compare every streaming table of the pipeline's destination with its source, at a
    /// position the destination has reached (same configuration as `etl replicate`; the
    /// replicator must be running). Exit code 0: equal, 3: drift found.
    ///
    /// Example: etl --env dev verify --table public.orders --repair
    Verify(VerifyArgs),

    /// Run the REST control plane (sections `api` and `database`).
    ///
    /// Example: APP_ENVIRONMENT=dev etl serve-api
    ServeApi,

    /// Control-plane maintenance: keys.
    #[command(subcommand)]
    Api(ApiCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Re-encrypt every stored secret with the newest `api.encryption_keys` entry.
    ///
    /// Example: APP_ENVIRONMENT=prod etl api rotate-key
    RotateKey,

    /// Print a new random key (base64 of 32 bytes) for `api.api_keys` or `api.encryption_keys`.
    GenerateKey,
}

#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// Copy, stream until everything committed before streaming started is applied, then exit 0.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Drop the pipeline's replication slots and state (table states, position, identity) on
    /// the source, so that the next `etl replicate` copies every table again.
    ///
    /// Example: etl --env dev pipeline reset --yes
    Reset(ResetArgs),
}

#[derive(Debug, Subcommand)]
pub enum TablesCommand {
    /// Copy a `ready` or `errored` table again under a fresh snapshot and hand it back to
    /// streaming, while the other tables keep streaming.
    ///
    /// Example: etl --env dev tables resync --table public.orders --yes
    Resync(ResyncArgs),
}

#[derive(Debug, Args)]
pub struct ResyncArgs {
    /// The table, as in SQL: `schema.name` (quote mixed-case names: `'"Sales"."Orders"'`).
    #[arg(long, value_name = "SCHEMA.NAME")]
    pub table: String,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify only this table, as in SQL: `schema.name` (repeatable; default: every table).
    #[arg(long, value_name = "SCHEMA.NAME")]
    pub table: Vec<String>,

    /// Resync (copy again, online) every table found to differ.
    #[arg(long)]
    pub repair: bool,

    /// Seconds to wait for the destination to reach the source's position.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub wait_secs: u64,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Apply the control-plane migrations (schema `app`).
    ///
    /// Example: etl migrate api --database-url postgres://postgres:postgres@localhost:5430/postgres
    Api(MigrateArgs),

    /// Apply the replicator state migrations (schema `etl`) on the source database.
    ///
    /// Example: etl migrate replicator --database-url postgres://postgres:postgres@localhost:5430/postgres
    Replicator(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Database to migrate (default: `DATABASE_URL`, else the configuration).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// List the pending migrations without applying them.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as YAML, secrets redacted, with where each value came from.
    ///
    /// Example: APP_ENVIRONMENT=dev etl config show
    Show,
}

#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Apply (server-side, idempotent) the data-plane namespace, the `etl-replicator` service
    /// account and the `trusted-root-certs-config` ConfigMap.
    ///
    /// Example: etl k8s bootstrap --context kind-etl --ca-file /etc/ssl/certs/ca-certificates.crt
    Bootstrap(BootstrapArgs),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// Print the YAML that would be applied and touch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// PEM bundle of trusted root certificates (default: `kubernetes.ca_file`).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}
