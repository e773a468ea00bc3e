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

use super::catalog::{self, PublishedTable};
use super::changes::{self, Transaction};
use super::destination::{self, Destination};
use super::error::Error;
use super::retry::Backoff;
use super::source::{
    PgOutputMessage, PgOutputOptions, ReplicationClient, ReplicationMessage, SnapshotAction,
};
use super::state::{RetryPolicy, StateStore, TableError, TableState};
use super::table_copy::{self, PARALLEL_COPY_MIN_PAGES};
use crate::base::error_chain;
use crate::base::event::{Change, ChangeEvent};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableSchema};
use crate::config::{BatchConfig, PgConnection, RetryConfig};
use crate::shutdown::Shutdown;

/// The slot name of a table-sync worker.
pub fn sync_slot_name(pipeline_id: u64, table: TableId) -> String {
    format!("etl_sync_{pipeline_id}_{}", table.0)
}

/// A table-sync worker asks the apply worker where to catch up to.
#[derive(Debug)]
pub(crate) struct CatchupRequest {
    pub table: TableId,
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
    pub publication: String,
    pub destination: D,
    pub store: StateStore,
    pub copy_connections: u16,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub catchup: mpsc::UnboundedSender<CatchupRequest>,
    pub shutdown: Shutdown,
    pub observer: super::Observer,
}

/// Syncs `table` until it is `sync_done` or `errored`, retrying transient failures; returns the
/// final state, or an error that stops the pipeline (fatal destination or source failures).
/// Returns `Ok(None)` when shut down first.
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
                tracing::error!(table = %table.name, error = %reason, "table errored");
                let state = TableState::Errored(TableError {
                    reason,
                    hint: "fix the cause, then roll the table back (its previous state is kept) \
                           or remove and re-add it to the publication"
                        .into(),
                    retry: RetryPolicy::Manual,
                });
                ctx.store.set_table_state(table.id, &state).await?;
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
    let pool = ctx.store.pool();
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
    ctx.store
        .set_table_state(table.id, &TableState::DataSync)
        .await?;
    ctx.observer.table_state(&table.name, "data_sync");
    let pages = catalog::table_pages(ctx.store.pool(), table.id).await?;
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
            .ok_or_else(|| Error::Precondition("the server exported no snapshot".into()))?;
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
    ctx.store.store_schema(&schema).await?;
    ctx.destination.prepare_table(&schema).await?;
    ctx.destination.begin_copy(&schema).await?;
    tracing::info!(table = %schema.name, consistent_point = %slot.consistent_point,
        connections = helpers.len().max(1), "copy started");
    let estimate = catalog::estimated_rows(ctx.store.pool(), table.id).await?;
    let counter = ctx.observer.copy_counter(&schema.name, estimate);
    let on_rows = |rows: u64| counter.add(rows);

    let filter = snapshot_schema.row_filter.as_deref();
    let rows = if parallel {
        let ranges = table_copy::split_pages(pages, helpers.len() as u16);
        let copies = helpers.iter_mut().zip(ranges).map(|(client, range)| {
            let sql = table_copy::copy_statement(&schema, filter, Some(range));
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
        let sql = table_copy::copy_statement(&schema, filter, None);
        let rows =
            table_copy::copy_into(&mut main, &sql, &schema, &ctx.destination, &on_rows).await?;
        main.simple_query("COMMIT").await?;
        rows
    };
    for client in helpers {
        let _ = client.close().await;
    }
    ctx.destination.finish_copy(&schema).await?;
    ctx.store
        .set_table_state(table.id, &TableState::FinishedCopy)
        .await?;
    ctx.observer.table_state(&table.name, "finished_copy");
    counter.finish();
    tracing::info!(table = %schema.name, rows, "rows copied");

    // Hand-off: the apply worker says where to stop, and waits for us.
    let (reply, grant) = oneshot::channel();
    let request = CatchupRequest {
        table: table.id,
        reply,
    };
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
    ctx.store
        .set_table_state(table.id, &TableState::SyncDone(lsn))
        .await?;
    ctx.observer.table_state(&table.name, "sync_done");
    tracing::info!(table = %schema.name, %lsn, "caught up");
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
    mut schema: Arc<TableSchema>,
) -> Result<Arc<TableSchema>, Error> {
    let options = PgOutputOptions {
        publication_names: vec![ctx.publication.clone()],
        proto_version: 1,
        messages: false,
        streaming: false,
    };
    let mut stream = client.start_replication(slot, start, &options).await?;
    let table = schema.id.0;
    let mut tx: Option<Transaction> = None;
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
                if tx.is_none() && wal_end >= target {
                    break;
                }
                continue;
            }
            ReplicationMessage::XLogData {
                wal_start, message, ..
            } => (wal_start, message),
        };
        match message {
            PgOutputMessage::Begin {
                final_lsn,
                xid,
                commit_time,
            } => {
                if final_lsn >= target {
                    break;
                }
                tx = Some(Transaction::new(final_lsn, xid, commit_time));
            }
            PgOutputMessage::Commit { end_lsn, .. } => {
                tx = None;
                if batch.len() >= ctx.batch.max_size || bytes >= ctx.batch.max_bytes {
                    ctx.destination
                        .write_events(std::mem::take(&mut batch))
                        .await?;
                    bytes = 0;
                }
                if end_lsn >= target {
                    break;
                }
            }
            PgOutputMessage::Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
                ..
            } if id == table => {
                let new = changes::relation_schema(
                    id,
                    &namespace,
                    &name,
                    replica_identity,
                    &columns,
                    Some(&schema),
                );
                if !changes::same_shape(&schema, &new) {
                    if !batch.is_empty() {
                        ctx.destination
                            .write_events(std::mem::take(&mut batch))
                            .await?;
                        bytes = 0;
                    }
                    ctx.destination.alter_table(&schema, &new).await?;
                    ctx.store.store_schema(&new).await?;
                    tracing::info!(table = %new.name, "schema changed");
                    schema = Arc::new(new);
                }
            }
            PgOutputMessage::Truncate { relations, .. } => {
                let Some(tx) = tx.as_mut() else { continue };
                for relation in relations {
                    if relation == table {
                        batch.push(tx.event(schema.clone(), wal_start, Change::Truncate));
                    } else {
                        tx.skip();
                    }
                }
            }
            message => {
                let (Some(relation), Some(tx)) = (changes::relation_of(&message), tx.as_mut())
                else {
                    continue;
                };
                if relation != table {
                    tx.skip();
                    continue;
                }
                if let Some(result) = changes::data_change(message, &mut bytes) {
                    let (_, change) = result.map_err(|e| Error::Decode {
                        lsn: wal_start,
                        message: e.to_string(),
                    })?;
                    batch.push(tx.event(schema.clone(), wal_start, change));
                }
            }
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
    Ok(schema)
}
