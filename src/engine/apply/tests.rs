//! Unit tests of [`ApplyCore::step`] on the in-memory state store and a recording destination:
//! no Postgres, no stream.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::core::{ApplyCore, Input, Outcome};
use super::spill::Spill;
use crate::base::event::{Cell, Change, ChangeEvent, CopyChunk};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableName, TableSchema};
use crate::config::BatchConfig;
use crate::engine::catalog::PublishedTable;
use crate::engine::destination::{self, Destination};
use crate::engine::identity::PipelineIdentity;
use crate::engine::observer::Observer;
use crate::engine::source::{PgOutputMessage, ReplicationMessage};
use crate::engine::state::{StateStore, StateWriter, TableState, TableStates};
use crate::engine::table_sync::SyncDone;
use crate::engine::test_messages::*;

/// What the destination was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Prepare(TableId, usize),
    Alter(TableId, usize, usize),
    /// The events of one write, as (table, commit LSN, ordinal).
    Write(Vec<(u32, u64, u32)>),
}

#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    failing: Arc<Mutex<HashSet<TableId>>>,
    /// The first value of every inserted row written, with its commit LSN.
    inserted: Arc<Mutex<Vec<(u64, String)>>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }

    fn inserted(&self) -> Vec<(u64, String)> {
        self.inserted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, table: TableId) {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table);
    }
}

impl Destination for Recorder {
    fn kind(&self) -> &'static str {
        "recorder"
    }

    fn describe(&self) -> String {
        "recorder".into()
    }

    fn keeps_identity(&self) -> bool {
        false
    }

    async fn read_identity(&self) -> destination::Result<Option<PipelineIdentity>> {
        Ok(None)
    }

    async fn write_identity(&self, _identity: &PipelineIdentity) -> destination::Result<()> {
        Ok(())
    }

    async fn copied_tables(&self) -> destination::Result<Option<BTreeSet<TableId>>> {
        Ok(None)
    }

    async fn prepare_table(&self, schema: &TableSchema) -> destination::Result<()> {
        self.record(Call::Prepare(schema.id, schema.columns.len()));
        Ok(())
    }

    async fn begin_copy(&self, _schema: &TableSchema) -> destination::Result<()> {
        Ok(())
    }

    async fn write_copy_rows(
        &self,
        _schema: &TableSchema,
        _chunk: CopyChunk,
    ) -> destination::Result<()> {
        Ok(())
    }

    async fn finish_copy(&self, _schema: &TableSchema) -> destination::Result<()> {
        Ok(())
    }

    async fn alter_table(&self, old: &TableSchema, new: &TableSchema) -> destination::Result<()> {
        self.record(Call::Alter(new.id, old.columns.len(), new.columns.len()));
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> destination::Result<()> {
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(event) = events.iter().find(|e| failing.contains(&e.table.id)) {
            return Err(destination::Error::table(
                &event.table,
                "value out of range",
            ));
        }
        for event in &events {
            if let Change::Insert { new } = &event.change
                && let Some(Cell::Text(first)) = new.first()
            {
                self.inserted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((event.commit_lsn.0, first.clone()));
            }
        }
        self.record(Call::Write(
            events
                .iter()
                .map(|e| (e.table.id.0, e.commit_lsn.0, e.ordinal))
                .collect(),
        ));
        Ok(())
    }
}

fn published(ids: &[u32]) -> Vec<PublishedTable> {
    ids.iter()
        .map(|id| PublishedTable {
            id: TableId(*id),
            name: TableName::new("public", format!("t{id}")),
        })
        .collect()
}

/// A core whose tables `ready` are streamed, with a batch of at most `max_size` events.
async fn core_with(ready: &[u32], max_size: usize) -> (ApplyCore<Recorder>, Recorder, StateStore) {
    core_spilling(ready, max_size, 1 << 30).await
}

/// Like [`core_with`], with at most `spill_bytes` in its spill directory.
async fn core_spilling(
    ready: &[u32],
    max_size: usize,
    spill_bytes: u64,
) -> (ApplyCore<Recorder>, Recorder, StateStore) {
    let store = StateStore::memory();
    for id in ready {
        store
            .set_table_state(TableId(*id), &TableState::Ready)
            .await
            .unwrap();
    }
    let writer = StateWriter::new(store.clone(), Observer::default());
    let tables = TableStates::load(writer, &published(ready)).await.unwrap();
    let destination = Recorder::default();
    let limits = BatchConfig {
        max_size,
        max_fill_ms: 1_000,
        max_bytes: usize::MAX,
    };
    let spill_dir = tempfile::tempdir().unwrap().keep();
    let spill = Spill::open(spill_dir, spill_bytes).unwrap();
    let core = ApplyCore::new(destination.clone(), tables, [], limits, Lsn(1), spill, None);
    (core, destination, store)
}

async fn feed(
    core: &mut ApplyCore<Recorder>,
    messages: Vec<crate::engine::source::ReplicationMessage>,
) -> Outcome {
    let mut last = Outcome::Nothing;
    for message in messages {
        let outcome = core.step(Input::Message(message)).await.unwrap();
        if outcome != Outcome::Nothing {
            last = outcome;
        }
    }
    last
}

/// Waits for the write in flight and feeds its result back.
async fn finish_write(core: &mut ApplyCore<Recorder>) -> Outcome {
    let handle = core.inflight_mut().expect("a write in flight");
    let result = handle.await;
    core.step(Input::Written(result)).await.unwrap()
}

fn writes(calls: &[Call]) -> Vec<Vec<(u32, u64, u32)>> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Write(events) => Some(events.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_commit_is_acknowledged_only_after_its_write_is_durable() {
    let (mut core, destination, _) = core_with(&[1], 100).await;
    let outcome = feed(
        &mut core,
        vec![
            at(10, relation(1, "t1", &[("id", true)])),
            at(11, begin(20, 5)),
            at(12, insert(1, &["1"])),
            at(13, insert(1, &["2"])),
            at(20, commit(20, 21)),
        ],
    )
    .await;
    assert_eq!(outcome, Outcome::Nothing, "nothing durable before a write");
    assert!(!core.in_transaction());
    assert!(core.has_flushable());
    assert_eq!(core.step(Input::Flush).await.unwrap(), Outcome::Nothing);
    assert!(core.writing());
    assert_eq!(core.durable(), Lsn(1), "in flight is not durable");
    assert_eq!(finish_write(&mut core).await, Outcome::Durable(Lsn(21)));
    assert_eq!(
        writes(&destination.calls()),
        vec![vec![(1, 20, 0), (1, 20, 1)]]
    );
}

#[tokio::test]
async fn a_full_batch_is_written_mid_transaction_but_acknowledged_at_the_commit() {
    let (mut core, destination, _) = core_with(&[1], 2).await;
    feed(
        &mut core,
        vec![
            at(10, relation(1, "t1", &[("id", true)])),
            at(11, begin(20, 5)),
            at(12, insert(1, &["1"])),
            at(13, insert(1, &["2"])),
        ],
    )
    .await;
    assert!(core.writing(), "the full batch went out at once");
    assert_eq!(
        finish_write(&mut core).await,
        Outcome::Nothing,
        "no commit yet"
    );
    feed(
        &mut core,
        vec![at(14, insert(1, &["3"])), at(20, commit(20, 21))],
    )
    .await;
    assert!(!core.writing(), "one event does not fill the batch");
    core.step(Input::Flush).await.unwrap();
    assert_eq!(finish_write(&mut core).await, Outcome::Durable(Lsn(21)));
    assert_eq!(
        writes(&destination.calls()),
        vec![vec![(1, 20, 0), (1, 20, 1)], vec![(1, 20, 2)]]
    );
}

#[tokio::test]
async fn a_schema_change_mid_batch_writes_the_earlier_changes_first() {
    let (mut core, destination, store) = core_with(&[1], 100).await;
    feed(
        &mut core,
        vec![
            at(10, relation(1, "t1", &[("id", true)])),
            at(11, begin(20, 5)),
            at(12, insert(1, &["1"])),
            at(13, relation(1, "t1", &[("id", true), ("extra", false)])),
            at(14, insert(1, &["2", "x"])),
            at(20, commit(20, 21)),
        ],
    )
    .await;
    core.step(Input::Flush).await.unwrap();
    finish_write(&mut core).await;
    assert_eq!(
        destination.calls(),
        vec![
            Call::Prepare(TableId(1), 1),
            Call::Write(vec![(1, 20, 0)]),
            Call::Alter(TableId(1), 1, 2),
            Call::Write(vec![(1, 20, 1)]),
        ]
    );
    let stored = store.table_schemas().await.unwrap();
    assert_eq!(
        stored[&TableId(1)].columns.len(),
        2,
        "the new shape is stored"
    );
}

#[tokio::test]
async fn a_table_errored_mid_transaction_stops_alone_and_is_skipped_on_replay() {
    let (mut core, destination, store) = core_with(&[1, 2], 100).await;
    destination.fail(TableId(2));
    let stream = || {
        vec![
            at(10, relation(1, "t1", &[("id", true)])),
            at(10, relation(2, "t2", &[("id", true)])),
            at(11, begin(20, 5)),
            at(12, insert(1, &["1"])),
            at(13, insert(2, &["1"])),
            at(20, commit(20, 21)),
        ]
    };
    feed(&mut core, stream()).await;
    core.step(Input::Flush).await.unwrap();
    let handle = core.inflight_mut().expect("a write in flight");
    let result = handle.await;
    let error = core.step(Input::Written(result)).await.unwrap_err();
    assert!(core.contain(&error).await.unwrap(), "{error}");
    assert!(matches!(
        store.table_states().await.unwrap()[&TableId(2)],
        TableState::Errored(_)
    ));
    assert_eq!(
        core.durable(),
        Lsn(1),
        "the failed write acknowledged nothing"
    );
    // The next session replays the transaction without the errored table.
    core.new_session().await;
    feed(&mut core, stream()).await;
    core.step(Input::Flush).await.unwrap();
    assert_eq!(finish_write(&mut core).await, Outcome::Durable(Lsn(21)));
    let writes = writes(&destination.calls());
    assert_eq!(writes.last(), Some(&vec![(1, 20, 0)]));
    assert!(
        writes.iter().flatten().all(|(table, _, _)| *table == 1),
        "nothing of the errored table was written: {writes:?}"
    );
}

/// Table `id` (beside table 1) is being copied: its changes are not applied yet.
async fn copying(core: &mut ApplyCore<Recorder>, store: &StateStore, id: u32) {
    store
        .set_table_state(TableId(id), &TableState::FinishedCopy)
        .await
        .unwrap();
    core.forget_removed(&published(&[1, id]), &HashSet::new())
        .await
        .unwrap();
}

/// The table-sync worker of table `id` caught up to `lsn` and hands the table over.
async fn caught_up(core: &mut ApplyCore<Recorder>, id: u32, lsn: u64) {
    let schema = Arc::new(crate::engine::changes::relation_schema(
        id,
        "public",
        &format!("t{id}"),
        b'd',
        &[],
        None,
    ));
    core.step(Input::SyncDone(SyncDone {
        lsn: Lsn(lsn),
        schema,
    }))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_caught_up_table_applies_from_its_point_and_is_ready_once_durable() {
    let (mut core, destination, store) = core_with(&[1], 100).await;
    // Table 2 is being copied: its changes are not applied.
    copying(&mut core, &store, 2).await;
    feed(
        &mut core,
        vec![
            at(10, relation(2, "t2", &[("id", true)])),
            at(11, begin(20, 5)),
            at(12, insert(2, &["1"])),
            at(20, commit(20, 21)),
        ],
    )
    .await;
    assert!(writes(&destination.calls()).is_empty());
    // The table-sync worker caught up to 30: transactions committing from 30 on apply.
    caught_up(&mut core, 2, 30).await;
    feed(
        &mut core,
        vec![
            at(22, begin(25, 6)),
            at(23, insert(2, &["2"])),
            at(25, commit(25, 26)),
            at(31, begin(40, 7)),
            at(32, insert(2, &["3"])),
            at(40, commit(40, 41)),
        ],
    )
    .await;
    core.step(Input::Flush).await.unwrap();
    assert_eq!(
        core.tables.get(TableId(2)),
        Some(&TableState::SyncDone(Lsn(30))),
        "not ready before its catch-up point is durable"
    );
    assert_eq!(finish_write(&mut core).await, Outcome::Durable(Lsn(41)));
    assert_eq!(writes(&destination.calls()), vec![vec![(2, 40, 0)]]);
    assert_eq!(core.tables.get(TableId(2)), Some(&TableState::Ready));
    assert_eq!(
        store.table_states().await.unwrap()[&TableId(2)],
        TableState::Ready
    );
}

#[tokio::test]
async fn an_idle_stream_follows_the_servers_wal_only_when_nothing_is_pending() {
    let (mut core, _, _) = core_with(&[1], 100).await;
    assert_eq!(
        core.step(Input::Message(keepalive(50))).await.unwrap(),
        Outcome::Durable(Lsn(50))
    );
    feed(
        &mut core,
        vec![
            at(60, relation(1, "t1", &[("id", true)])),
            at(61, begin(70, 5)),
            at(62, insert(1, &["1"])),
        ],
    )
    .await;
    assert_eq!(
        core.step(Input::Message(keepalive(80))).await.unwrap(),
        Outcome::Nothing,
        "inside a transaction the keepalive moves nothing"
    );
    feed(&mut core, vec![at(70, commit(70, 71))]).await;
    assert_eq!(
        core.step(Input::Message(keepalive(90))).await.unwrap(),
        Outcome::Nothing,
        "a commit waits for its write"
    );
    core.step(Input::Flush).await.unwrap();
    assert_eq!(finish_write(&mut core).await, Outcome::Durable(Lsn(71)));
}

// Protocol 2: streamed (in-progress) transactions.

fn stream_start(wal: u64, xid: u32) -> ReplicationMessage {
    at(
        wal,
        PgOutputMessage::StreamStart {
            xid,
            first_segment: false,
        },
    )
}

fn stream_stop(wal: u64) -> ReplicationMessage {
    at(wal, PgOutputMessage::StreamStop)
}

fn stream_commit(wal: u64, xid: u32, commit_lsn: u64, end_lsn: u64) -> ReplicationMessage {
    at(
        wal,
        PgOutputMessage::StreamCommit {
            xid,
            flags: 0,
            commit_lsn: Lsn(commit_lsn),
            end_lsn: Lsn(end_lsn),
            commit_time: 0,
        },
    )
}

fn stream_abort(wal: u64, xid: u32, subxid: u32) -> ReplicationMessage {
    at(wal, PgOutputMessage::StreamAbort { xid, subxid })
}

/// An insert of (sub)transaction `xid` inside a stream block.
fn streamed_insert(wal: u64, xid: u32, relation: u32, value: &str) -> ReplicationMessage {
    let PgOutputMessage::Insert { relation, new, .. } = insert(relation, &[value]) else {
        unreachable!("insert builds an Insert");
    };
    at(
        wal,
        PgOutputMessage::Insert {
            xid: Some(xid),
            relation,
            new,
        },
    )
}

/// Drives the replay of a committed streamed transaction to its end, waiting for writes the
/// way the session does, then writes what is left; returns the last durable position.
async fn apply_streamed(core: &mut ApplyCore<Recorder>) -> Option<Lsn> {
    apply_streamed_acks(core).await.last().copied()
}

/// Like [`apply_streamed`], returning every durable position on the way.
async fn apply_streamed_acks(core: &mut ApplyCore<Recorder>) -> Vec<Lsn> {
    let mut durable = Vec::new();
    let mut steps = 0;
    while core.replaying() || core.writing() || core.has_flushable() {
        steps += 1;
        assert!(steps < 10_000, "the replay makes no progress");
        let outcome = if core.writing() && (core.batch_is_full() || !core.replaying()) {
            finish_write(core).await
        } else if core.replaying() {
            core.step(Input::Replay).await.unwrap()
        } else {
            core.step(Input::Flush).await.unwrap()
        };
        if let Outcome::Durable(lsn) = outcome {
            durable.push(lsn);
        }
    }
    durable
}

#[tokio::test]
async fn a_streamed_transaction_reaches_the_destination_only_at_its_commit_with_the_commit_lsn() {
    let (mut core, destination, _) = core_with(&[1], 100).await;
    feed(
        &mut core,
        vec![
            stream_start(10, 7),
            at(11, relation(1, "t1", &[("id", true)])),
            streamed_insert(12, 7, 1, "a"),
            streamed_insert(13, 7, 1, "b"),
            stream_stop(14),
        ],
    )
    .await;
    assert!(core.spilled_bytes() > 0);
    let gauge = |core: &ApplyCore<Recorder>, name: &str| -> Option<u64> {
        let text = core.tables.writer().observer().metrics().encode();
        let line = text.lines().find(|l| l.starts_with(&format!("{name} ")))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    assert_eq!(gauge(&core, "etl_spill_bytes"), Some(core.spilled_bytes()));
    assert_eq!(gauge(&core, "etl_spill_transactions"), Some(1));
    assert!(core.is_idle(), "nothing gathered for the destination");
    assert!(destination.calls().is_empty());
    feed(
        &mut core,
        vec![
            stream_start(15, 7),
            streamed_insert(16, 7, 1, "c"),
            stream_stop(17),
        ],
    )
    .await;
    feed(&mut core, vec![stream_commit(40, 7, 40, 41)]).await;
    assert!(core.replaying());
    assert!(core.in_transaction(), "no catch-up hand-off in the middle");
    assert_eq!(apply_streamed(&mut core).await, Some(Lsn(41)));
    assert_eq!(
        destination.inserted(),
        vec![(40, "a".into()), (40, "b".into()), (40, "c".into())]
    );
    assert_eq!(
        writes(&destination.calls()),
        vec![vec![(1, 40, 0), (1, 40, 1), (1, 40, 2)]]
    );
    assert_eq!(core.spilled_bytes(), 0, "the file is gone");
    assert_eq!(gauge(&core, "etl_spill_bytes"), Some(0));
    assert_eq!(gauge(&core, "etl_spill_transactions"), Some(0));
    assert!(!core.in_transaction());
}

#[tokio::test]
async fn interleaved_streamed_transactions_apply_in_commit_order_beside_small_ones() {
    let (mut core, destination, _) = core_with(&[1], 100).await;
    feed(
        &mut core,
        vec![
            stream_start(10, 7),
            at(10, relation(1, "t1", &[("id", true)])),
            streamed_insert(11, 7, 1, "7a"),
            stream_stop(12),
            stream_start(13, 8),
            at(13, relation(1, "t1", &[("id", true)])),
            streamed_insert(14, 8, 1, "8a"),
            stream_stop(15),
            // A small transaction committed meanwhile is applied at once.
            at(16, relation(1, "t1", &[("id", true)])),
            at(17, begin(20, 9)),
            at(18, insert(1, &["small"])),
            at(20, commit(20, 21)),
        ],
    )
    .await;
    assert_eq!(apply_streamed(&mut core).await, Some(Lsn(21)));
    assert_eq!(destination.inserted(), vec![(20, "small".into())]);
    feed(
        &mut core,
        vec![
            stream_start(22, 7),
            streamed_insert(23, 7, 1, "7b"),
            stream_stop(24),
            stream_commit(30, 8, 30, 31),
        ],
    )
    .await;
    assert_eq!(apply_streamed(&mut core).await, Some(Lsn(31)));
    feed(&mut core, vec![stream_commit(40, 7, 40, 41)]).await;
    assert_eq!(apply_streamed(&mut core).await, Some(Lsn(41)));
    assert_eq!(
        destination.inserted(),
        vec![
            (20, "small".into()),
            (30, "8a".into()),
            (40, "7a".into()),
            (40, "7b".into())
        ]
    );
}

#[tokio::test]
async fn a_subtransaction_abort_drops_exactly_its_changes() {
    let (mut core, destination, _) = core_with(&[1], 100).await;
    feed(
        &mut core,
        vec![
            stream_start(10, 7),
            at(10, relation(1, "t1", &[("id", true)])),
            streamed_insert(11, 7, 1, "kept-1"),
            // SAVEPOINT s1; insert; SAVEPOINT s2 (a child); insert; ROLLBACK TO s1.
            streamed_insert(12, 70, 1, "gone-1"),
            streamed_insert(13, 71, 1, "gone-2"),
            stream_stop(14),
            stream_abort(15, 7, 70),
            stream_start(16, 7),
            // SAVEPOINT s3; insert; RELEASE; then a rolled back savepoint with no change.
            streamed_insert(17, 72, 1, "kept-2"),
            stream_stop(18),
            stream_abort(19, 7, 73),
            stream_commit(40, 7, 40, 41),
        ],
    )
    .await;
    assert_eq!(apply_streamed(&mut core).await, Some(Lsn(41)));
    assert_eq!(
        destination.inserted(),
        vec![(40, "kept-1".into()), (40, "kept-2".into())]
    );
    assert_eq!(
        writes(&destination.calls()),
        vec![vec![(1, 40, 0), (1, 40, 1)]],
        "ordinals count only what committed"
    );
}

#[tokio::test]
async fn a_top_level_abort_deletes_the_transaction_and_lets_the_position_move() {
    let (mut core, destination, _) = core_with(&[1], 100).await;
    feed(
        &mut core,
        vec![
            stream_start(10, 7),
            at(10, relation(1, "t1", &[("id", true)])),
            streamed_insert(11, 7, 1, "a"),
            stream_stop(12),
        ],
    )
    .await;
    assert!(core.spilled_bytes() > 0);
    feed(&mut core, vec![stream_abort(13, 7, 7)]).await;
    assert_eq!(core.spilled_bytes(), 0);
    assert_eq!(
        core.step(Input::Message(keepalive(50))).await.unwrap(),
        Outcome::Durable(Lsn(50))
    );
    assert!(destination.calls().is_empty());
}

#[tokio::test]
async fn a_large_streamed_commit_is_written_in_batches_and_acknowledged_once_at_the_end() {
    let (mut core, destination, _) = core_with(&[1], 3).await;
    let mut messages = vec![
        stream_start(10, 7),
        at(10, relation(1, "t1", &[("id", true)])),
    ];
    for i in 0..10u32 {
        messages.push(streamed_insert(11 + u64::from(i), 7, 1, &i.to_string()));
    }
    messages.push(stream_stop(30));
    messages.push(stream_commit(40, 7, 40, 41));
    feed(&mut core, messages).await;
    let durable = apply_streamed_acks(&mut core).await;
    assert_eq!(durable, vec![Lsn(41)], "acknowledged only at the commit");
    let writes = writes(&destination.calls());
    assert!(writes.iter().all(|w| w.len() <= 3), "{writes:?}");
    assert_eq!(writes.concat().len(), 10);
    let ordinals: Vec<u32> = writes.concat().iter().map(|(_, _, o)| *o).collect();
    assert_eq!(ordinals, (0..10).collect::<Vec<_>>(), "in stream order");
}

#[tokio::test]
async fn a_streamed_transaction_past_the_spill_bound_is_an_error_that_applied_nothing() {
    let (mut core, destination, _) = core_spilling(&[1], 100, 200).await;
    let mut error = None;
    let mut messages = vec![
        stream_start(10, 7),
        at(10, relation(1, "t1", &[("id", true)])),
    ];
    for i in 0..20u32 {
        messages.push(streamed_insert(11 + u64::from(i), 7, 1, "0123456789"));
    }
    for message in messages {
        if let Err(e) = core.step(Input::Message(message)).await {
            error = Some(e);
            break;
        }
    }
    assert!(
        matches!(
            error,
            Some(crate::engine::error::Error::Spill(
                super::SpillError::Full { xid: 7, .. }
            ))
        ),
        "{error:?}"
    );
    assert!(destination.calls().is_empty());
    assert_eq!(core.durable(), Lsn(1));
}

#[tokio::test]
async fn a_new_session_forgets_streamed_transactions_the_server_sends_again() {
    let (mut core, destination, _) = core_with(&[1], 100).await;
    let first_half = || {
        vec![
            stream_start(10, 7),
            at(10, relation(1, "t1", &[("id", true)])),
            streamed_insert(11, 7, 1, "a"),
            stream_stop(12),
        ]
    };
    feed(&mut core, first_half()).await;
    core.new_session().await;
    core.clear_spill().unwrap();
    assert_eq!(core.spilled_bytes(), 0);
    // The new stream starts the transaction over.
    feed(&mut core, first_half()).await;
    feed(&mut core, vec![stream_commit(40, 7, 40, 41)]).await;
    assert_eq!(apply_streamed(&mut core).await, Some(Lsn(41)));
    assert_eq!(destination.inserted(), vec![(40, "a".into())]);
}

#[tokio::test]
async fn a_streamed_transaction_applies_to_a_caught_up_table_only_if_it_commits_after_its_point() {
    let (mut core, destination, store) = core_with(&[1], 100).await;
    copying(&mut core, &store, 2).await;
    // Both transactions stream while table 2 is still being copied.
    feed(
        &mut core,
        vec![
            stream_start(10, 7),
            at(10, relation(2, "t2", &[("id", true)])),
            streamed_insert(11, 7, 2, "before"),
            stream_stop(12),
            stream_start(13, 8),
            at(13, relation(2, "t2", &[("id", true)])),
            streamed_insert(14, 8, 2, "after"),
            stream_stop(15),
        ],
    )
    .await;
    caught_up(&mut core, 2, 30).await;
    // The catch-up applied what committed before 30; the apply worker what commits after.
    feed(&mut core, vec![stream_commit(25, 7, 25, 26)]).await;
    apply_streamed(&mut core).await;
    feed(&mut core, vec![stream_commit(40, 8, 40, 41)]).await;
    assert_eq!(apply_streamed(&mut core).await, Some(Lsn(41)));
    assert_eq!(destination.inserted(), vec![(40, "after".into())]);
    assert_eq!(core.tables.get(TableId(2)), Some(&TableState::Ready));
}
