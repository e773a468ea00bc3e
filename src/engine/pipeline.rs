//! [`run`]: one pipeline from start to stop. Connects to the source, applies the `etl`
//! migrations, makes sure the apply slot exists (created before any table is copied, so no
//! change can fall between a copy and the stream), reconciles the stored table states with the
//! publication, and hands over to the apply worker, which runs (and restarts) everything else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::apply::{ApplySetup, ApplyWorker, apply_slot_name};
use super::catalog;
use super::destination::Destination;
use super::error::Error;
use super::observer::Observer;
use super::retry::Backoff;
use super::source::{ReplicationClient, SnapshotAction};
use super::state::postgres::{PgStateStore, TableRetries};
use super::state::{StateStore, StateWriter, TableState, TableStates};
use super::{identity, preconditions, slot_monitor};
use crate::base::error_chain;
use crate::base::lsn::Lsn;
use crate::config::{InvalidatedSlotBehavior, PgConnection, PipelineConfig};
use crate::migrate::{self, MigrationSet};
use crate::shutdown::Shutdown;

/// How long the first connection to the source may take.
const SOURCE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How [`run`] runs.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Stop (successfully) once every table is copied and everything committed before streaming
    /// started is applied and acknowledged.
    pub once: bool,
    pub observer: Observer,
}

/// Runs the pipeline until `shutdown` fires (or, with [`RunOptions::once`], until caught up).
/// `connection` is the source, already resolved from `config.pg_connection`
/// ([`PipelineConfig::source`]). Transient failures are retried with backoff; the error
/// returned is fatal.
pub async fn run<D: Destination + Clone>(
    config: &PipelineConfig,
    connection: &PgConnection,
    destination: D,
    shutdown: Shutdown,
    options: RunOptions,
) -> Result<(), Error> {
    // Columns added with a default need the source catalog to fill in the rows already there.
    let catalog_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy_with(connection.sqlx_options());
    let destination = catalog::WithSourceDefaults::new(destination, catalog_pool);
    loop {
        let mut backoff = Backoff::new(&config.retry);
        let mut stop = shutdown.clone();
        let setup = loop {
            let attempt = prepare(config, connection, &destination, &shutdown, &options).await;
            match attempt {
                Ok(setup) => break setup,
                Err(error) if error.is_transient() => {
                    if options.once && backoff.attempts() + 1 >= config.retry.once_attempts {
                        return Err(Error::GaveUp {
                            attempts: backoff.attempts() + 1,
                            last: Box::new(error),
                        });
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %error_chain(&error), ?delay, "cannot start, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.wait() => return Ok(()),
                    }
                }
                Err(error) => return Err(error),
            }
        };
        match ApplyWorker::new(setup).run().await {
            // Start over: `prepare` drops the lost slot and resets every table.
            Err(Error::SlotInvalidated { slot })
                if config.invalidated_slot_behavior == InvalidatedSlotBehavior::Recreate =>
            {
                tracing::warn!(slot, "the apply slot was invalidated while streaming");
            }
            outcome => return outcome,
        }
    }
}

async fn prepare<D: Destination + Clone>(
    config: &PipelineConfig,
    connection: &PgConnection,
    destination: &D,
    shutdown: &Shutdown,
    options: &RunOptions,
) -> Result<ApplySetup<D>, Error> {
    // One connection first: a refused or silent source is reported with its real cause in
    // seconds (a pool only says it timed out, after its acquire timeout).
    let first = tokio::time::timeout(
        SOURCE_CONNECT_TIMEOUT,
        <sqlx::PgConnection as sqlx::Connection>::connect_with(&connection.sqlx_options()),
    )
    .await
    .map_err(|_| Error::SourceTimeout {
        target: connection.describe(),
        seconds: SOURCE_CONNECT_TIMEOUT.as_secs(),
    })?
    .map_err(Error::query("connecting to the source"))?;
    let _ = sqlx::Connection::close(first).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(connection.sqlx_options())
        .await
        .map_err(Error::query("connecting to the source"))?;
    if config.run_migrations {
        migrate::run(
            MigrationSet::Replicator,
            &connection.sqlx_options(),
            false,
            |_| {},
        )
        .await?;
    }
    let mut report = preconditions::check(&pool, Some(&config.publication_name)).await?;
    if config.failover_slot {
        report
            .findings
            .extend(preconditions::check_failover(&pool).await?);
    }
    for warning in report.warnings() {
        tracing::warn!(code = warning.code, hint = %warning.hint, "{}", warning.message);
    }
    if !report.is_ok() {
        let problems = report.critical().map(ToString::to_string).collect();
        return Err(Error::SourceNotReady { problems });
    }
    let store = StateStore::Postgres(PgStateStore::new(pool.clone(), config.id).with_retries(
        TableRetries {
            max_attempts: config.table_errors.max_attempts,
            delay_secs: config.table_errors.retry_delay_secs,
        },
    ));
    identity::check(config.id, &pool, &store, destination).await?;
    let published = catalog::publication_tables(&pool, &config.publication_name).await?;
    if published.is_empty() {
        tracing::warn!(publication = %config.publication_name,
            "the publication has no tables yet; waiting for tables to be added");
    }
    let writer = StateWriter::new(store.clone(), options.observer.clone());
    let mut tables = TableStates::load(writer, &published).await?;
    let slot = apply_slot_name(config.id);
    let confirmed = ensure_apply_slot(config, connection, &pool, &mut tables, &slot).await?;
    identity::recopy_lost_tables(destination, &mut tables, config.lost_copy).await?;
    let schemas = store.table_schemas().await?;
    let mut shapes = Vec::new();
    for (id, state) in tables.iter() {
        if matches!(state, TableState::Ready | TableState::SyncDone(_))
            && let Some(schema) = schemas.get(id)
        {
            destination.prepare_table(schema).await?;
        }
    }
    for (id, schema) in schemas {
        shapes.push((id, Arc::new(schema)));
    }
    let progress = store.progress().await?.unwrap_or(Lsn::ZERO);
    let resume = confirmed.max(progress);
    let once_target = if options.once {
        let lsn: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(&pool)
            .await
            .map_err(Error::query("reading the current WAL position"))?;
        Some(lsn.parse().map_err(Error::BadLsn)?)
    } else {
        None
    };
    let counts: BTreeMap<&str, usize> = tables
        .counts()
        .into_iter()
        .map(|(name, count)| (name.as_str(), count))
        .collect();
    tracing::info!(tables = tables.len(), ?counts, "table states loaded");
    Ok(ApplySetup {
        config: config.clone(),
        connection: connection.clone(),
        pool,
        destination: destination.clone(),
        shutdown: shutdown.clone(),
        tables,
        schemas: shapes,
        resume,
        once_target,
        give_up_after: options.once.then_some(config.retry.once_attempts),
    })
}

/// Makes sure the apply slot exists and is usable; returns its confirmed position.
async fn ensure_apply_slot(
    config: &PipelineConfig,
    connection: &PgConnection,
    pool: &PgPool,
    tables: &mut TableStates,
    slot: &str,
) -> Result<Lsn, Error> {
    let info = slot_monitor::read_slot(pool, slot).await?;
    let mut recreate = false;
    if let Some(info) = &info {
        if info.is_invalidated() {
            match config.invalidated_slot_behavior {
                InvalidatedSlotBehavior::Error => {
                    return Err(Error::SlotInvalidated {
                        slot: slot.to_owned(),
                    });
                }
                InvalidatedSlotBehavior::Recreate => {
                    tracing::warn!(
                        slot,
                        "the apply slot was invalidated; recreating it and \
                        copying every table again"
                    );
                    drop_slot(connection, pool, slot).await?;
                    recreate = true;
                }
            }
        } else if let Some(confirmed) = info.confirmed_flush_lsn {
            set_slot_failover(config, connection, pool, slot).await?;
            return Ok(confirmed);
        }
    }
    if !recreate && tables.iter().any(|(_, s)| !matches!(s, TableState::Init)) {
        tracing::warn!(
            slot,
            "the apply slot is missing but tables were already copied; \
            copying every table again"
        );
    }
    tables.reset_all().await?;
    tables.writer().store().clear_progress().await?;
    let mut client = ReplicationClient::connect(connection).await?;
    let created = client
        .create_slot_with(slot, false, SnapshotAction::Nothing, config.failover_slot)
        .await?;
    let _ = client.close().await;
    tracing::info!(slot, lsn = %created.consistent_point, "apply slot created");
    Ok(created.consistent_point)
}

/// Makes an existing apply slot's `FAILOVER` flag follow `pipeline.failover_slot` (PostgreSQL
/// 17+; before 17 no slot has the flag and the preconditions refuse `failover_slot: true`).
async fn set_slot_failover(
    config: &PipelineConfig,
    connection: &PgConnection,
    pool: &PgPool,
    slot: &str,
) -> Result<(), Error> {
    let failover: Option<bool> = sqlx::query_scalar(
        "select (to_jsonb(s) ->> 'failover')::bool from pg_replication_slots s \
         where slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .map_err(Error::query("reading the slot's failover flag"))?
    .flatten();
    if failover.is_none_or(|failover| failover == config.failover_slot) {
        return Ok(());
    }
    let mut client = ReplicationClient::connect(connection).await?;
    client
        .alter_slot_failover(slot, config.failover_slot)
        .await?;
    let _ = client.close().await;
    tracing::info!(
        slot,
        failover = config.failover_slot,
        "apply slot failover flag changed"
    );
    Ok(())
}

/// Drops `slot`, first terminating a session still using it.
pub(crate) async fn drop_slot(
    connection: &PgConnection,
    pool: &PgPool,
    slot: &str,
) -> Result<(), Error> {
    sqlx::query(
        "select pg_terminate_backend(active_pid) from pg_replication_slots \
         where slot_name = $1 and active_pid is not null",
    )
    .bind(slot)
    .execute(pool)
    .await
    .map_err(Error::query("terminating the slot's session"))?;
    let mut client = ReplicationClient::connect(connection).await?;
    client.drop_slot(slot, true).await?;
    let _ = client.close().await;
    Ok(())
}
