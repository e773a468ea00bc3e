//! Unit tests of [`ApplyCore::step`] on the in-memory state store and a recording destination:
//! no Postgres, no stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::core::{ApplyCore, Input, Outcome};
use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableName, TableSchema};
use crate::config::BatchConfig;
use crate::engine::catalog::PublishedTable;
use crate::engine::destination::{self, Destination};
use crate::engine::observer::Observer;
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
    let core = ApplyCore::new(destination.clone(), tables, [], limits, Lsn(1));
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

#[tokio::test]
async fn a_caught_up_table_applies_from_its_point_and_is_ready_once_durable() {
    let (mut core, destination, store) = core_with(&[1], 100).await;
    // Table 2 is being copied: its changes are not applied.
    store
        .set_table_state(TableId(2), &TableState::FinishedCopy)
        .await
        .unwrap();
    core.forget_removed(&published(&[1, 2]), &HashSet::new())
        .await
        .unwrap();
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
    let schema = Arc::new(crate::engine::changes::relation_schema(
        2,
        "public",
        "t2",
        b'd',
        &[],
        None,
    ));
    core.step(Input::SyncDone(SyncDone {
        lsn: Lsn(30),
        schema,
    }))
    .await
    .unwrap();
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
