//! [`TableStates`]: the per-table state map of a running pipeline and every transition of it,
//! in one place. A transition is persisted (in the [`StateStore`]), told to the observer (by the
//! state's own name) and logged once, then the map follows. [`StateWriter`] is the part a
//! table-sync worker holds: it records its own table's transitions, and the apply worker adopts
//! the result into its map when the worker reports back.

use std::collections::{BTreeMap, HashSet};

use super::{Error, StateName, StateStore, TableState};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableName};
use crate::engine::catalog::PublishedTable;
use crate::engine::observer::Observer;

/// Records table transitions: persist, observe, log. Cheap to clone.
#[derive(Clone)]
pub struct StateWriter {
    store: StateStore,
    observer: Observer,
}

impl StateWriter {
    pub fn new(store: StateStore, observer: Observer) -> Self {
        Self { store, observer }
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// Makes `state` the table's current state.
    pub async fn record(
        &self,
        table: TableId,
        name: &TableName,
        state: &TableState,
    ) -> Result<(), Error> {
        self.store.set_table_state(table, state).await?;
        self.observe(name, state);
        match state {
            TableState::Errored(error) => tracing::error!(table = %name, reason = %error.reason,
                hint = %error.hint, "table errored; the other tables continue"),
            TableState::SyncDone(lsn) => {
                tracing::info!(table = %name, %lsn, "table state: sync_done")
            }
            other => tracing::info!(table = %name, "table state: {}", other.kind()),
        }
        Ok(())
    }

    fn observe(&self, name: &TableName, state: &TableState) {
        self.observer.table_state(name, state.kind());
    }
}

/// The state of every table of a pipeline, with the transitions between them.
pub struct TableStates {
    writer: StateWriter,
    states: BTreeMap<TableId, TableState>,
    names: BTreeMap<TableId, TableName>,
}

impl TableStates {
    /// The stored states, matched against the tables of the publication: a table new to it
    /// starts at `init`, a table no longer in it is forgotten.
    pub async fn load(writer: StateWriter, published: &[PublishedTable]) -> Result<Self, Error> {
        let states = writer.store.table_states().await?;
        let mut tables = Self {
            writer,
            states,
            names: BTreeMap::new(),
        };
        tables.reconcile(published, &HashSet::new()).await?;
        for (id, state) in &tables.states {
            if let Some(name) = tables.names.get(id) {
                tables.writer.observe(name, state);
            }
        }
        Ok(tables)
    }

    /// Adds the tables new in `published` (at `init`) and forgets those no longer in it,
    /// except the ones in `busy` (a worker is still copying them; the next refresh removes
    /// them). Returns the ids of the removed tables.
    pub async fn reconcile(
        &mut self,
        published: &[PublishedTable],
        busy: &HashSet<TableId>,
    ) -> Result<Vec<TableId>, Error> {
        for table in published {
            self.names.insert(table.id, table.name.clone());
            if !self.states.contains_key(&table.id) {
                self.set(table.id, TableState::Init).await?;
            }
        }
        let listed: HashSet<TableId> = published.iter().map(|t| t.id).collect();
        let removed: Vec<TableId> = self
            .states
            .keys()
            .filter(|id| !listed.contains(id) && !busy.contains(id))
            .copied()
            .collect();
        for id in &removed {
            self.writer.store.remove_table(*id).await?;
            self.states.remove(id);
            if let Some(name) = self.names.remove(id) {
                tracing::info!(table = %name, "table removed from the publication; no longer replicated");
            }
        }
        Ok(removed)
    }

    pub fn writer(&self) -> &StateWriter {
        &self.writer
    }

    pub fn get(&self, table: TableId) -> Option<&TableState> {
        self.states.get(&table)
    }

    pub fn name(&self, table: TableId) -> Option<&TableName> {
        self.names.get(&table)
    }

    /// The table is now called `name` (a Relation message said so).
    pub fn rename(&mut self, table: TableId, name: TableName) {
        self.names.insert(table, name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TableId, &TableState)> {
        self.states.iter()
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Whether the apply worker applies `table`'s changes of a transaction committing at
    /// `commit_lsn` (see [`TableState::applies_at`]).
    pub fn applies(&self, table: TableId, commit_lsn: Lsn) -> bool {
        self.states
            .get(&table)
            .is_some_and(|state| state.applies_at(commit_lsn))
    }

    /// Persists and applies a transition.
    pub async fn set(&mut self, table: TableId, state: TableState) -> Result<(), Error> {
        let name = self.display_name(table);
        self.writer.record(table, &name, &state).await?;
        self.states.insert(table, state);
        Ok(())
    }

    /// Takes a transition a table-sync worker already recorded.
    pub fn adopt(&mut self, table: TableId, state: TableState) {
        self.states.insert(table, state);
    }

    /// Stops `table` with `reason`; the others continue.
    pub async fn mark_errored(
        &mut self,
        table: TableId,
        reason: impl Into<String>,
        hint: impl Into<String>,
    ) -> Result<(), Error> {
        self.set(table, TableState::errored(reason, hint)).await
    }

    /// Everything up to `durable` is written: every `sync_done` table caught up by then is
    /// `ready`.
    pub async fn mark_ready_up_to(&mut self, durable: Lsn) -> Result<(), Error> {
        let ready: Vec<TableId> = self
            .states
            .iter()
            .filter(|(_, s)| matches!(s, TableState::SyncDone(at) if *at <= durable))
            .map(|(id, _)| *id)
            .collect();
        for table in ready {
            self.set(table, TableState::Ready).await?;
        }
        Ok(())
    }

    /// Re-reads the stored states and takes the resyncs someone else recorded while the
    /// pipeline runs (`etl tables resync`, the control plane's resync or rollback to `init`):
    /// a table this map has as `ready`, `sync_done` or `errored` whose stored state is `init`
    /// becomes `init` here too, so the apply worker stops applying it and a table-sync worker
    /// copies it again. Tables a worker is copying are left alone (their worker owns them).
    /// Returns the tables taken.
    pub async fn take_resyncs(&mut self) -> Result<Vec<TableId>, Error> {
        let stored = self.writer.store.table_states().await?;
        Ok(self.adopt_resyncs(&stored))
    }

    /// [`Self::take_resyncs`] on already read states.
    pub fn adopt_resyncs(&mut self, stored: &BTreeMap<TableId, TableState>) -> Vec<TableId> {
        let mut taken = Vec::new();
        for (id, state) in &mut self.states {
            let settled = matches!(
                state,
                TableState::Ready | TableState::SyncDone(_) | TableState::Errored(_)
            );
            if settled && stored.get(id) == Some(&TableState::Init) {
                *state = TableState::Init;
                if let Some(name) = self.names.get(id) {
                    self.writer.observe(name, state);
                    tracing::info!(table = %name, "table resync requested: copying it again");
                }
                taken.push(*id);
            }
        }
        taken
    }

    /// Every table goes back to `init` (the apply slot was lost or recreated: every copy is
    /// redone).
    pub async fn reset_all(&mut self) -> Result<(), Error> {
        let copied: Vec<TableId> = self
            .states
            .iter()
            .filter(|(_, s)| !matches!(s, TableState::Init))
            .map(|(id, _)| *id)
            .collect();
        for table in copied {
            self.set(table, TableState::Init).await?;
        }
        Ok(())
    }

    /// Tables waiting for a table-sync worker, in id order.
    pub fn needing_sync(&self) -> impl Iterator<Item = TableId> + '_ {
        self.states
            .iter()
            .filter(|(_, s)| s.needs_sync())
            .map(|(id, _)| *id)
    }

    /// Whether every table is `ready` or `errored`.
    pub fn all_settled(&self) -> bool {
        self.states.values().all(TableState::is_settled)
    }

    /// How many tables are in each state.
    pub fn counts(&self) -> BTreeMap<StateName, usize> {
        let mut counts = BTreeMap::new();
        for state in self.states.values() {
            *counts.entry(state.kind()).or_default() += 1;
        }
        counts
    }

    /// The table's name, or its id when the publication no longer lists it.
    fn display_name(&self, table: TableId) -> TableName {
        self.names
            .get(&table)
            .cloned()
            .unwrap_or_else(|| TableName::new("", format!("relation {table}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::StateStore;

    fn table(id: u32, name: &str) -> PublishedTable {
        PublishedTable {
            id: TableId(id),
            name: TableName::new("public", name),
        }
    }

    fn writer() -> StateWriter {
        StateWriter::new(StateStore::memory(), Observer::default())
    }

    #[tokio::test]
    async fn loading_matches_the_stored_tables_against_the_publication() {
        let writer = writer();
        writer
            .store()
            .set_table_state(TableId(1), &TableState::Ready)
            .await
            .unwrap();
        writer
            .store()
            .set_table_state(TableId(9), &TableState::Ready)
            .await
            .unwrap();
        let tables = TableStates::load(writer.clone(), &[table(1, "a"), table(2, "b")])
            .await
            .unwrap();
        assert_eq!(tables.get(TableId(1)), Some(&TableState::Ready));
        assert_eq!(tables.get(TableId(2)), Some(&TableState::Init));
        assert_eq!(
            tables.get(TableId(9)),
            None,
            "no longer published: forgotten"
        );
        let stored = writer.store().table_states().await.unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored.get(&TableId(2)), Some(&TableState::Init));
    }

    #[tokio::test]
    async fn sync_done_tables_become_ready_once_durable_passes_them() {
        let mut tables = TableStates::load(writer(), &[table(1, "a"), table(2, "b")])
            .await
            .unwrap();
        tables
            .set(TableId(1), TableState::SyncDone(Lsn(100)))
            .await
            .unwrap();
        tables
            .set(TableId(2), TableState::SyncDone(Lsn(300)))
            .await
            .unwrap();
        assert!(!tables.applies(TableId(1), Lsn(99)));
        assert!(tables.applies(TableId(1), Lsn(100)));
        tables.mark_ready_up_to(Lsn(200)).await.unwrap();
        assert_eq!(tables.get(TableId(1)), Some(&TableState::Ready));
        assert_eq!(
            tables.get(TableId(2)),
            Some(&TableState::SyncDone(Lsn(300)))
        );
        assert!(!tables.all_settled());
    }

    #[tokio::test]
    async fn a_resync_recorded_in_the_store_is_taken_by_settled_tables_only() {
        let mut tables = TableStates::load(
            writer(),
            &[table(1, "a"), table(2, "b"), table(3, "c"), table(4, "d")],
        )
        .await
        .unwrap();
        tables.set(TableId(1), TableState::Ready).await.unwrap();
        tables.mark_errored(TableId(2), "bad", "fix").await.unwrap();
        tables.set(TableId(3), TableState::DataSync).await.unwrap();
        tables.set(TableId(4), TableState::Ready).await.unwrap();
        assert!(tables.take_resyncs().await.unwrap().is_empty());
        let store = tables.writer().store().clone();
        for id in [1, 2, 3] {
            store
                .set_table_state(TableId(id), &TableState::Init)
                .await
                .unwrap();
        }
        assert_eq!(
            tables.take_resyncs().await.unwrap(),
            vec![TableId(1), TableId(2)]
        );
        assert_eq!(tables.get(TableId(1)), Some(&TableState::Init));
        assert_eq!(tables.get(TableId(2)), Some(&TableState::Init));
        assert_eq!(
            tables.get(TableId(3)),
            Some(&TableState::DataSync),
            "its worker owns it"
        );
        assert_eq!(tables.get(TableId(4)), Some(&TableState::Ready));
        assert!(!tables.applies(TableId(1), Lsn(u64::MAX)));
        assert_eq!(
            tables.needing_sync().collect::<Vec<_>>(),
            vec![TableId(1), TableId(2), TableId(3)]
        );
    }

    #[test]
    fn only_ready_or_errored_tables_can_be_resynced() {
        for (state, allowed) in [
            ("ready", true),
            ("errored", true),
            ("init", false),
            ("data_sync", false),
            ("finished_copy", false),
            ("sync_done", false),
        ] {
            let checked = StateName::check_resync(TableId(7), state);
            assert_eq!(checked.is_ok(), allowed, "{state}: {checked:?}");
        }
    }

    #[tokio::test]
    async fn a_table_errored_while_streamed_cannot_be_rolled_back_to_ready() {
        let mut tables = TableStates::load(writer(), &[table(1, "a")]).await.unwrap();
        tables.set(TableId(1), TableState::Ready).await.unwrap();
        tables
            .mark_errored(TableId(1), "bad value", "fix it")
            .await
            .unwrap();
        let store = tables.writer().store().clone();
        let refused = store.rollback_table(TableId(1)).await;
        assert!(
            matches!(
                refused,
                Err(Error::RollbackWouldSkipChanges { table: 1, .. })
            ),
            "{refused:?}"
        );
        // Errored during its copy: going back to the copy is fine.
        let mut tables = TableStates::load(writer(), &[table(2, "b")]).await.unwrap();
        tables.set(TableId(2), TableState::DataSync).await.unwrap();
        tables.mark_errored(TableId(2), "x", "y").await.unwrap();
        let restored = tables
            .writer()
            .store()
            .rollback_table(TableId(2))
            .await
            .unwrap();
        assert_eq!(restored, Some(TableState::DataSync));
    }
}
