//! The two embedded migration sets: `migrations/api/` (control-plane schema `app`) and
//! `migrations/replicator/` (replicator state schema `etl`).
//!
//! Each set keeps its own history table inside its own schema (`app._sqlx_migrations`,
//! `etl._sqlx_migrations`), so both can live in one database or in two. We drive sqlx's
//! [`Migrate`] steps ourselves instead of calling `Migrator::run` so that each applied migration
//! is reported as it happens and `--dry-run` can list what is pending.

use sqlx::migrate::{Migrate, MigrateError, Migration, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// Which migration set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationSet {
    Api,
    Replicator,
}

impl MigrationSet {
    /// The schema the set creates and keeps its history in.
    pub fn schema(self) -> &'static str {
        match self {
            MigrationSet::Api => "app",
            MigrationSet::Replicator => "etl",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MigrationSet::Api => "api",
            MigrationSet::Replicator => "replicator",
        }
    }

    /// The embedded migrator, set up for its own schema and history table.
    pub fn migrator(self) -> Migrator {
        let mut migrator = match self {
            MigrationSet::Api => sqlx::migrate!("./migrations/api"),
            MigrationSet::Replicator => sqlx::migrate!("./migrations/replicator"),
        };
        migrator.create_schema(self.schema());
        migrator.dangerous_set_table_name(format!("{}._sqlx_migrations", self.schema()));
        migrator
    }
}

/// A migration failure, naming the set and the step.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{set} migrations failed")]
    Migrate {
        set: &'static str,
        #[source]
        source: MigrateError,
    },
}

/// One migration that was (or, in a dry run, would be) applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub version: i64,
    pub description: String,
}

/// Applies the pending migrations of `set`, calling `progress` after each one; with `dry_run`
/// only lists them. Idempotent: applied migrations are skipped (after checking their checksum).
pub async fn run(
    set: MigrationSet,
    options: &PgConnectOptions,
    dry_run: bool,
    mut progress: impl FnMut(&Step),
) -> Result<Vec<Step>, MigrationError> {
    let target = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let mut conn: PgConnection = options
        .connect()
        .await
        .map_err(|source| MigrationError::Connect { target, source })?;
    let migrator = set.migrator();
    let result = apply(&migrator, &mut conn, dry_run, &mut progress).await;
    result.map_err(|source| MigrationError::Migrate {
        set: set.name(),
        source,
    })
}

async fn apply(
    migrator: &Migrator,
    conn: &mut PgConnection,
    dry_run: bool,
    progress: &mut impl FnMut(&Step),
) -> Result<Vec<Step>, MigrateError> {
    conn.lock().await?;
    let outcome = apply_locked(migrator, conn, dry_run, progress).await;
    conn.unlock().await?;
    outcome
}

async fn apply_locked(
    migrator: &Migrator,
    conn: &mut PgConnection,
    dry_run: bool,
    progress: &mut impl FnMut(&Step),
) -> Result<Vec<Step>, MigrateError> {
    let table = migrator.table_name.as_ref();
    let applied = if dry_run && !history_exists(conn, table).await? {
        Vec::new()
    } else {
        if !dry_run {
            for schema in migrator.create_schemas.iter() {
                conn.create_schema_if_not_exists(schema).await?;
            }
            conn.ensure_migrations_table(table).await?;
        }
        if let Some(version) = conn.dirty_version(table).await? {
            return Err(MigrateError::Dirty(version));
        }
        conn.list_applied_migrations(table).await?
    };
    let mut steps = Vec::new();
    for migration in pending(migrator) {
        match applied.iter().find(|a| a.version == migration.version) {
            Some(done) if done.checksum != migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => continue,
            None => {}
        }
        if !dry_run {
            conn.apply(table, migration).await?;
        }
        let step = Step {
            version: migration.version,
            description: migration.description.to_string(),
        };
        progress(&step);
        steps.push(step);
    }
    Ok(steps)
}

fn pending(migrator: &Migrator) -> impl Iterator<Item = &Migration> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

async fn history_exists(conn: &mut PgConnection, table: &str) -> Result<bool, MigrateError> {
    let exists: Option<String> = sqlx::query_scalar("select to_regclass($1)::text")
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .map_err(MigrateError::Execute)?;
    Ok(exists.is_some())
}
