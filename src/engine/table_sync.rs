//! The table-sync worker: copies one table under a consistent snapshot and catches its own slot
//! up with the apply worker (DESIGN.md §2, steps 1-4):
//!
//! slot (temporary, snapshot `use`, or `export` for a parallel copy) → schema (in the snapshot)
//! → COPY (one connection, or CTID ranges over several) → `finished_copy` → ask the apply worker
//! for a catch-up target → stream the slot from the copy's consistent point to that target,
//! applying only this table's changes → `sync_done(lsn)`.
//!
//! A crash or transient failure before `sync_done` redoes the copy from scratch (the temporary
//! slot dies with its session, and `begin_copy` empties the destination table).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::sync::{mpsc, oneshot};

use sqlx::PgPool;

use super::catalog::{self, PublishedTable};
use super::destination::{self, Destination};
use super::error::Error;
use super::retry::Backoff;
use super::router::{OnlyTable, Routed, Router};
use super::source::{PgOutputOptions, ReplicationClient, ReplicationMessage, SnapshotAction};
use super::state::slots::sync_slot_name;
use super::state::{StateWriter, TableState};
use super::table_copy::{self, PARALLEL_COPY_MIN_PAGES};
use super::visibility;
use crate::base::error_chain;
use crate::base::event::ChangeEvent;
use crate::base::lsn::Lsn;
use crate::base::schema::TableSchema;
use crate::config::{BatchConfig, PgConnection, RetryConfig};
use crate::shutdown::Shutdown;

/// A table-sync worker asks the apply worker where to catch up to.
#[derive(Debug)]
pub(crate) struct CatchupRequest {
    pub reply: oneshot::Sender<CatchupGrant>,
}

/// The apply worker's answer: its current position, and where to report `sync_done`. The apply
/// worker waits (applying nothing) until `done` is sent or dropped.
#[derive(Debug)]
pub(crate) struct CatchupGrant {
    pub target: Lsn,
    pub done: oneshot::Sender<SyncDone>,
}

/// The table caught up to `lsn` with this schema; its state is persisted.
#[derive(Debug)]
pub(crate) struct SyncDone {
    pub lsn: Lsn,
    pub schema: Arc<TableSchema>,
}

/// What every table-sync worker of a pipeline shares.
#[derive(Clone)]
pub(crate) struct SyncContext<D> {
    pub pipeline_id: u64,
    pub connection: PgConnection,
    /// An ordinary connection pool to the source (catalog queries).
    pub pool: PgPool,
    pub publication: String,
    pub destination: D,
    /// Records this table's transitions.
    pub states: StateWriter,
    pub copy_connections: u16,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub catchup: mpsc::UnboundedSender<CatchupRequest>,
    pub shutdown: Shutdown,
}

/// Syncs `table` until it is `sync_done` or `errored`, retrying transient failures; returns the
/// final state, or an error that stops the pipeline (fatal destination or source failures).
/// Returns `Ok(None)` when shut down first.
#[tracing::instrument(name = "table_sync", skip_all,
    fields(pipeline_id = ctx.pipeline_id, table_id = %table.id, table = %table.name))]
pub(crate) async fn run<D: Destination + Clone>(
    ctx: SyncContext<D>,
    table: PublishedTable,
) -> Result<Option<TableState>, Error> {
    let mut backoff = Backoff::new(&ctx.retry);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let attempt = tokio::select! {
            result = sync_once(&ctx, &table) => result,
            () = shutdown.wait() => return Ok(None),
        };
        let error = match attempt {
            Ok(state) => return Ok(state),
            Err(error) => error,
        };
        if error.is_transient() {
            let delay = backoff.next_delay();
            tracing::warn!(table = %table.name, error = %error_chain(&error), ?delay,
                "table copy failed, retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => continue,
                () = shutdown.wait() => return Ok(None),
            }
        }
        match table_error(&error) {
            Some(reason) => {
                let state = TableState::errored(
                    reason,
                    "fix the cause, then roll the table back (its previous state is kept) \
                     or remove and re-add it to the publication",
                );
                ctx.states.record(table.id, &table.name, &state).await?;
                return Ok(Some(state));
            }
            None => return Err(error),
        }
    }
}

/// The text of a table-level failure, or `None` when the error concerns the whole pipeline.
pub(crate) fn table_error(error: &Error) -> Option<String> {
    match error {
        Error::Destination(destination::Error::Table { .. }) | Error::Schema { .. } => {
            Some(error_chain(error))
        }
        // A SQL error while copying this table (dropped, no privilege, bad row filter).
        Error::Source(e) if e.server_error().is_some() && !e.is_transient() => {
            Some(error_chain(error))
        }
        _ => None,
    }
}

/// Terminates a session still holding a leftover slot of this table (a crashed run) and drops
/// the slot.
async fn drop_leftover_slot(ctx: &SyncContext<impl Destination>, slot: &str) -> Result<(), Error> {
    let pool = &ctx.pool;
    let active: Option<i32> = sqlx::query_scalar(
        "select pg_terminate_backend(active_pid)::int from pg_replication_slots \
         where slot_name = $1 and active_pid is not null",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .map_err(Error::query("terminating a leftover table-sync session"))?;
    let exists: Option<i32> =
        sqlx::query_scalar("select 1 from pg_replication_slots where slot_name = $1")
            .bind(slot)
            .fetch_optional(pool)
            .await
            .map_err(Error::query("looking for a leftover slot"))?;
    if active.is_some() || exists.is_some() {
        let mut client = ReplicationClient::connect(&ctx.connection).await?;
        client.drop_slot(slot, true).await?;
        let _ = client.close().await;
    }
    Ok(())
}

async fn sync_once<D: Destination + Clone>(
    ctx: &SyncContext<D>,
    table: &PublishedTable,
) -> Result<Option<TableState>, Error> {
    let slot_name = sync_slot_name(ctx.pipeline_id, table.id);
    drop_leftover_slot(ctx, &slot_name).await?;
    ctx.states
        .record(table.id, &table.name, &TableState::DataSync)
        .await?;
    let pages = catalog::table_pages(&ctx.pool, table.id).await?;
    let parallel = ctx.copy_connections > 1 && pages >= PARALLEL_COPY_MIN_PAGES;

    let mut main = ReplicationClient::connect(&ctx.connection).await?;
    let mut helpers = Vec::new();
    let slot = if parallel {
        let slot = main
            .create_slot(&slot_name, true, SnapshotAction::Export)
            .await?;
        let snapshot = slot
            .snapshot_name
            .clone()
            .ok_or_else(|| Error::NoExportedSnapshot {
                table: table.name.clone(),
            })?;
        for _ in 0..ctx.copy_connections {
            let mut client = ReplicationClient::connect(&ctx.connection).await?;
            client
                .simple_query("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ")
                .await?;
            client
                .simple_query(&format!(
                    "SET TRANSACTION SNAPSHOT {}",
                    crate::base::quote::quote_literal(&snapshot)
                ))
                .await?;
            helpers.push(client);
        }
        slot
    } else {
        main.simple_query("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ")
            .await?;
        main.create_slot(&slot_name, true, SnapshotAction::Use)
            .await?
    };

    // The schema, inside the snapshot.
    let reader = helpers.first_mut().unwrap_or(&mut main);
    let snapshot_schema = catalog::read_table_schema(reader, table.id, &ctx.publication).await?;
    let schema = Arc::new(snapshot_schema.schema);
    if !schema.has_row_identity() {
        tracing::warn!(table = %schema.name,
            "table has no primary key and no REPLICA IDENTITY FULL: its inserts are replicated, \
             but the source rejects (or does not publish) its updates and deletes");
    }
    ctx.states.store().store_schema(&schema).await?;
    ctx.destination.prepare_table(&schema).await?;
    ctx.destination.begin_copy(&schema).await?;
    tracing::info!(table = %schema.name, consistent_point = %slot.consistent_point,
        connections = helpers.len().max(1), "copy started");
    let estimate = catalog::estimated_rows(&ctx.pool, table.id).await?;
    let counter = ctx.states.observer().copy_counter(&schema.name, estimate);
    let on_rows = |rows: u64| counter.add(rows);

    let source = &snapshot_schema.source;
    let rows = if parallel {
        let ranges = table_copy::split_pages(pages, helpers.len() as u16);
        let copies = helpers.iter_mut().zip(ranges).map(|(client, range)| {
            let sql = table_copy::copy_statement(&schema, source, Some(range));
            let schema = schema.clone();
            let destination = &ctx.destination;
            let on_rows = &on_rows;
            async move {
                let rows =
                    table_copy::copy_into(client, &sql, &schema, destination, on_rows).await?;
                client.simple_query("COMMIT").await?;
                Ok::<u64, Error>(rows)
            }
        });
        try_join_all(copies).await?.into_iter().sum()
    } else {
        let sql = table_copy::copy_statement(&schema, source, None);
        let rows =
            table_copy::copy_into(&mut main, &sql, &schema, &ctx.destination, &on_rows).await?;
        main.simple_query("COMMIT").await?;
        rows
    };
    for client in helpers {
        let _ = client.close().await;
    }
    ctx.destination.finish_copy(&schema).await?;
    ctx.states
        .record(table.id, &table.name, &TableState::FinishedCopy)
        .await?;
    counter.finish();
    tracing::info!(table = %schema.name, rows, "rows copied");

    // Hand-off: the apply worker says where to stop, and waits for us.
    let (reply, grant) = oneshot::channel();
    let request = CatchupRequest { reply };
    if ctx.catchup.send(request).is_err() {
        return Ok(None);
    }
    let Ok(grant) = grant.await else {
        // The apply worker stopped (shutdown); the copy is redone next time.
        return Ok(None);
    };
    let (lsn, schema) = if slot.consistent_point >= grant.target {
        (slot.consistent_point, schema)
    } else {
        let schema = catch_up(
            ctx,
            main,
            &slot.name,
            slot.consistent_point,
            grant.target,
            schema,
        )
        .await?;
        (grant.target, schema)
    };
    ctx.states
        .record(table.id, &table.name, &TableState::SyncDone(lsn))
        .await?;
    let _ = grant.done.send(SyncDone { lsn, schema });
    Ok(Some(TableState::SyncDone(lsn)))
}

/// Streams the table-sync slot from `start` until every transaction committed before `target`
/// is applied (for this table only); returns the table's schema at that point.
async fn catch_up<D: Destination>(
    ctx: &SyncContext<D>,
    client: ReplicationClient,
    slot: &str,
    start: Lsn,
    target: Lsn,
    schema: Arc<TableSchema>,
) -> Result<Arc<TableSchema>, Error> {
    let options = PgOutputOptions {
        publication_names: vec![ctx.publication.clone()],
        proto_version: 1,
        messages: false,
        streaming: false,
    };
    let mut stream = client.start_replication(slot, start, &options).await?;
    let table = schema.id;
    let rule = OnlyTable(table);
    let mut router = Router::new([(table, schema.clone())]);
    let mut batch: Vec<ChangeEvent> = Vec::new();
    let mut bytes = 0usize;
    loop {
        let Some(message) = stream.next().await? else {
            // The server ended the stream (shutting down): transient, the copy is redone.
            return Err(Error::Source(super::source::Error::Closed {
                target: ctx.connection.describe(),
            }));
        };
        let (wal_start, message) = match message {
            ReplicationMessage::Keepalive { wal_end, .. } => {
                if !router.in_transaction() && wal_end >= target {
                    break;
                }
                continue;
            }
            ReplicationMessage::XLogData {
                wal_start, message, ..
            } => (wal_start, message),
        };
        let applied = match router.route(wal_start, message, &rule)? {
            Routed::Nothing => Vec::new(),
            Routed::Begin { final_lsn } => {
                if final_lsn >= target {
                    break;
                }
                Vec::new()
            }
            Routed::Commit { end_lsn } => {
                if end_lsn >= target {
                    break;
                }
                Vec::new()
            }
            Routed::Change(applied) => vec![applied],
            Routed::Truncate(applied) => applied,
        };
        for applied in applied {
            if let Some(reshape) = &applied.reshape {
                if !batch.is_empty() {
                    ctx.destination
                        .write_events(std::mem::take(&mut batch))
                        .await?;
                    bytes = 0;
                }
                visibility::wait_visible(&ctx.pool, applied.event.xid).await?;
                match &reshape.old {
                    Some(old) => ctx.destination.alter_table(old, &reshape.new).await?,
                    None => ctx.destination.prepare_table(&reshape.new).await?,
                }
                ctx.states.store().store_schema(&reshape.new).await?;
                crate::engine::router::log_reshape(reshape);
                router.reshaped(reshape);
            }
            bytes += applied.bytes;
            batch.push(applied.event);
        }
        if batch.len() >= ctx.batch.max_size || bytes >= ctx.batch.max_bytes {
            ctx.destination
                .write_events(std::mem::take(&mut batch))
                .await?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        ctx.destination.write_events(batch).await?;
    }
    // The temporary slot goes with the session.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.finish()).await;
    Ok(router.shape(table).cloned().unwrap_or(schema))
}
