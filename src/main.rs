//! The `etl` binary: parse the command line, install logging, load the shared configuration,
//! run the subcommand and turn its outcome into an exit code and one readable error line.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use etl::cli::{
    ApiCommand, Cli, Command, ConfigCommand, K8sCommand, LogFormatArg, MigrateArgs, MigrateCommand,
    PipelineCommand, TablesCommand,
};
use etl::config::{
    Config, ConfigError, DatabaseConfig, Environment, KubernetesConfig, PgConnectionConfig,
    PipelineConfig,
};
use etl::exit::{self, UsageError};
use etl::migrate::{self, MigrationSet};
use etl::telemetry::{self, LogFormat};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", exit::render(&error));
            let backtrace = error.backtrace();
            if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
                eprintln!("{backtrace}");
            }
            exit::code_for(&error)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let variable = std::env::var("APP_ENVIRONMENT").ok();
    let environment = Environment::select(cli.env.as_deref(), variable.as_deref())
        .map_err(UsageError::from_std)?;
    telemetry::init(match cli.log_format {
        Some(LogFormatArg::Human) => LogFormat::Human,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None if environment == Environment::Dev => LogFormat::Human,
        None => LogFormat::Json,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let load = || Config::load(&cli.config_dir, environment).map_err(UsageError::from);
    match cli.command {
        Command::Config(ConfigCommand::Show) => {
            let config = load()?;
            let rendered = etl::config::show::render(&config);
            print!("{}", rendered.text);
            match rendered.errors.into_iter().next() {
                Some(error) => Err(UsageError::from(error).into()),
                None => Ok(()),
            }
        }
        Command::Migrate(command) => {
            let (set, args) = match command {
                MigrateCommand::Api(args) => (MigrationSet::Api, args),
                MigrateCommand::Replicator(args) => (MigrationSet::Replicator, args),
            };
            let connection = migration_target(set, &args, load)?;
            runtime.block_on(run_migrations(set, connection, args.dry_run))
        }
        Command::Replicate(args) => runtime.block_on(etl::replicate::run(load()?, args.once)),
        Command::Pipeline(PipelineCommand::Reset(args)) => {
            runtime.block_on(etl::reset::run(load()?, args.yes))
        }
        Command::Tables(TablesCommand::Resync(args)) => {
            runtime.block_on(etl::tables::resync(load()?, &args.table, args.yes))
        }
        Command::Verify(args) => runtime.block_on(etl::verify::command::run(
            load()?,
            etl::verify::Options {
                tables: args.table,
                repair: args.repair,
                wait: std::time::Duration::from_secs(args.wait_secs),
            },
        )),
        Command::K8s(K8sCommand::Bootstrap(args)) => {
            // Bootstrap needs no config dir: without one, the `kubernetes` defaults apply.
            let settings = match Config::load(&cli.config_dir, environment) {
                Ok(config) => {
                    let settings = config
                        .optional_section::<KubernetesConfig>("kubernetes")
                        .map_err(UsageError::from)?
                        .unwrap_or_default();
                    config
                        .checked("kubernetes", settings.validate())
                        .map_err(UsageError::from)?;
                    settings
                }
                Err(ConfigError::MissingDirectory(_)) => KubernetesConfig::default(),
                Err(e) => return Err(UsageError::from(e).into()),
            };
            runtime.block_on(etl::k8s::bootstrap::run(args, settings))
        }
        Command::ServeApi => runtime.block_on(etl::api::command::serve(&load()?)),
        Command::Api(ApiCommand::RotateKey) => {
            println!(
                "{}",
                runtime.block_on(etl::api::command::rotate_key(&load()?))?
            );
            Ok(())
        }
        Command::Api(ApiCommand::GenerateKey) => {
            println!("{}", etl::config::api::generate_key());
            Ok(())
        }
    }
}

/// `--database-url` (or `DATABASE_URL`), else the configuration: `database` for the API,
/// `pipeline.pg_connection` (the source) for the replicator.
fn migration_target(
    set: MigrationSet,
    args: &MigrateArgs,
    load: impl FnOnce() -> Result<Config, UsageError>,
) -> anyhow::Result<etl::config::PgConnection> {
    if let Some(url) = &args.database_url {
        return PgConnectionConfig::from_url(url.clone())
            .resolve()
            .map_err(|e| UsageError(anyhow::anyhow!("--database-url / DATABASE_URL: {e}")).into());
    }
    let config = load()?;
    let (key, connection) = match set {
        MigrationSet::Api => ("database", config.section::<DatabaseConfig>("database")?),
        MigrationSet::Replicator => (
            "pipeline.pg_connection",
            config.section::<PipelineConfig>("pipeline")?.pg_connection,
        ),
    };
    connection
        .resolve()
        .map_err(|e| UsageError::from(config.invalid(key, e.to_string())).into())
}

async fn run_migrations(
    set: MigrationSet,
    connection: etl::config::PgConnection,
    dry_run: bool,
) -> anyhow::Result<()> {
    let target = connection.describe();
    let verb = if dry_run { "pending" } else { "applied" };
    let steps = migrate::run(set, &connection.sqlx_options(), dry_run, |step| {
        println!(
            "{verb} {} migration {} {}",
            set.name(),
            step.version,
            step.description
        );
    })
    .await?;
    if steps.is_empty() {
        println!(
            "{} migrations ({}) are up to date on {target}",
            set.name(),
            set.schema()
        );
    } else if dry_run {
        println!(
            "{} {} migration(s) pending on {target} (dry run: nothing applied)",
            steps.len(),
            set.name()
        );
    } else {
        println!(
            "{} {} migration(s) applied on {target}",
            steps.len(),
            set.name()
        );
    }
    Ok(())
}
