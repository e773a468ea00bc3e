//! Folding one table's batch of changes per key into what a mirror commit writes: the rows that
//! survive the batch (new data) and the stored rows they replace or delete (position deletes).
//! A row inserted and changed within the batch is written once, in its last form; an update's
//! unchanged TOAST values come from the row it replaces (a row of the batch, or a stored row
//! read at commit time).

use std::collections::HashMap;

use super::EventKeys;
use super::index::{KeyIndex, Loc};
use crate::base::event::{Cell, Change, ChangeEvent, Row};
use crate::base::schema::{ReplicaIdentity, TableSchema};
use crate::engine::destination::{Error, Result};

/// A row to append.
#[derive(Debug)]
pub struct NewRow {
    pub key: String,
    pub cells: Row,
    /// The stored row whose values fill this row's `Cell::Unchanged` cells.
    pub fill: Option<Loc>,
    /// False once a later change of the batch replaced or deleted it.
    pub live: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Plan {
    pub rows: Vec<NewRow>,
    /// Stored rows to delete.
    pub deletes: Vec<Loc>,
    /// The batch truncated the table: no stored row survives.
    pub truncated: bool,
    /// The live rows of [`Plan::rows`] per key.
    live: HashMap<String, Vec<usize>>,
}

/// A row removed by a change.
enum Removed {
    /// A row of this batch (index into [`Plan::rows`]).
    Batch(usize),
    Stored(Loc),
}

impl Plan {
    fn remove(&mut self, key: &str, index: &mut KeyIndex) -> Option<Removed> {
        if let Some(rows) = self.live.get_mut(key)
            && let Some(i) = rows.pop()
        {
            if rows.is_empty() {
                self.live.remove(key);
            }
            self.rows[i].live = false;
            return Some(Removed::Batch(i));
        }
        let loc = index.take(key)?;
        self.deletes.push(loc);
        Some(Removed::Stored(loc))
    }

    fn push(&mut self, row: NewRow) {
        self.live
            .entry(row.key.clone())
            .or_default()
            .push(self.rows.len());
        self.rows.push(row);
    }
}

/// Folds `events` (with their `keys`) against `index`, which loses the rows the plan deletes.
pub fn plan(
    schema: &TableSchema,
    events: &[&ChangeEvent],
    keys: &EventKeys,
    index: &mut KeyIndex,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let missing = || Error::table(schema, "a change without its key (internal)");
    let full = schema.replica_identity == ReplicaIdentity::Full;
    for (e, event) in events.iter().enumerate() {
        match &event.change {
            Change::Truncate => {
                plan.rows.clear();
                plan.live.clear();
                plan.deletes.clear();
                plan.truncated = true;
                index.clear();
            }
            Change::Insert { new } => {
                let key = keys.new[e].clone().ok_or_else(missing)?;
                plan.push(NewRow {
                    key,
                    cells: new.clone(),
                    fill: None,
                    live: true,
                });
            }
            Change::Update { old, new } => {
                let key = keys.new[e].clone().ok_or_else(missing)?;
                let old_key = keys.old[e].as_deref().unwrap_or(&key);
                let removed = plan.remove(old_key, index);
                let mut cells = new.clone();
                // A full old row (`REPLICA IDENTITY FULL`; otherwise the old row is the old key
                // only) holds the unchanged values itself.
                if let Some(old) = old.as_ref().filter(|_| full) {
                    for (cell, before) in cells.iter_mut().zip(old) {
                        if *cell == Cell::Unchanged && *before != Cell::Unchanged {
                            *cell = before.clone();
                        }
                    }
                }
                let mut fill = None;
                if cells.contains(&Cell::Unchanged) {
                    match removed {
                        Some(Removed::Batch(i)) => {
                            let before = &plan.rows[i];
                            for (cell, old) in cells.iter_mut().zip(&before.cells) {
                                if *cell == Cell::Unchanged {
                                    *cell = old.clone();
                                }
                            }
                            fill = before.fill;
                        }
                        Some(Removed::Stored(loc)) => fill = Some(loc),
                        None => {
                            return Err(Error::table(
                                schema,
                                "an update that kept a TOASTed value unchanged, of a row the \
                                 Iceberg table does not hold; recopy the table (etl tables resync)",
                            ));
                        }
                    }
                }
                plan.push(NewRow {
                    key,
                    cells,
                    fill,
                    live: true,
                });
            }
            Change::Delete { .. } => {
                let key = keys.old[e].as_deref().ok_or_else(missing)?;
                plan.remove(key, index);
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::base::lsn::Lsn;
    use crate::base::schema::{TableId, TableName};
    use crate::destinations::iceberg::mirror::index::FileOf;

    fn schema() -> Arc<TableSchema> {
        with_identity(ReplicaIdentity::Default)
    }

    fn with_identity(replica_identity: ReplicaIdentity) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            id: TableId(1),
            name: TableName::new("public", "t"),
            columns: Vec::new(),
            replica_identity,
        })
    }

    fn event(change: Change, ordinal: u32) -> ChangeEvent {
        ChangeEvent {
            table: schema(),
            lsn: Lsn(1),
            commit_lsn: Lsn(1),
            xid: 1,
            commit_time: 0,
            ordinal,
            change,
        }
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    #[test]
    fn a_batch_folds_to_the_last_form_of_each_key() {
        let mut index = KeyIndex::default();
        index.add_file(
            FileOf::unpartitioned("f", 2),
            ["1".to_owned(), "2".to_owned()],
        );
        let events = [
            // stored 1 updated, keeping its TOASTed second column
            event(
                Change::Update {
                    old: None,
                    new: vec![text("1"), Cell::Unchanged],
                },
                0,
            ),
            // and again: the fill is inherited
            event(
                Change::Update {
                    old: None,
                    new: vec![text("1"), Cell::Unchanged],
                },
                1,
            ),
            // 3 inserted then deleted within the batch
            event(
                Change::Insert {
                    new: vec![text("3"), text("x")],
                },
                2,
            ),
            event(
                Change::Delete {
                    old: vec![text("3"), Cell::Null],
                },
                3,
            ),
            // stored 2's key changed to 4
            event(
                Change::Update {
                    old: Some(vec![text("2"), Cell::Null]),
                    new: vec![text("4"), text("y")],
                },
                4,
            ),
        ];
        let refs: Vec<&ChangeEvent> = events.iter().collect();
        let keys = EventKeys {
            new: vec![
                Some("1".into()),
                Some("1".into()),
                Some("3".into()),
                None,
                Some("4".into()),
            ],
            old: vec![None, None, None, Some("3".into()), Some("2".into())],
        };
        let plan = plan(&schema(), &refs, &keys, &mut index).expect("plan");
        let live: Vec<(&str, Option<Loc>)> = plan
            .rows
            .iter()
            .filter(|r| r.live)
            .map(|r| (r.key.as_str(), r.fill))
            .collect();
        let stored_1 = Loc { file: 0, pos: 0 };
        let stored_2 = Loc { file: 0, pos: 1 };
        assert_eq!(live, vec![("1", Some(stored_1)), ("4", None)]);
        assert_eq!(plan.deletes, vec![stored_1, stored_2]);
        assert!(!plan.truncated);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn a_truncate_drops_what_came_before_it() {
        let mut index = KeyIndex::default();
        index.add_file(FileOf::unpartitioned("f", 1), ["1".to_owned()]);
        let events = [
            event(
                Change::Delete {
                    old: vec![text("1")],
                },
                0,
            ),
            event(Change::Truncate, 1),
            event(
                Change::Insert {
                    new: vec![text("5")],
                },
                2,
            ),
        ];
        let refs: Vec<&ChangeEvent> = events.iter().collect();
        let keys = EventKeys {
            new: vec![None, None, Some("5".into())],
            old: vec![Some("1".into()), None, None],
        };
        let plan = plan(&schema(), &refs, &keys, &mut index).expect("plan");
        assert!(plan.truncated);
        assert!(plan.deletes.is_empty());
        assert_eq!(plan.rows.len(), 1);
    }

    #[test]
    fn a_full_old_row_fills_unchanged_values_and_a_key_only_one_does_not() {
        for (identity, filled) in [
            (ReplicaIdentity::Full, Some(text("big"))),
            (ReplicaIdentity::Default, None),
        ] {
            let mut index = KeyIndex::default();
            index.add_file(FileOf::unpartitioned("f", 1), ["1".to_owned()]);
            let old = match identity {
                ReplicaIdentity::Full => vec![text("1"), text("big")],
                _ => vec![text("1"), Cell::Null],
            };
            let events = [event(
                Change::Update {
                    old: Some(old),
                    new: vec![text("1"), Cell::Unchanged],
                },
                0,
            )];
            let refs: Vec<&ChangeEvent> = events.iter().collect();
            let keys = EventKeys {
                new: vec![Some("1".into())],
                old: vec![Some("1".into())],
            };
            let plan = plan(&with_identity(identity), &refs, &keys, &mut index).expect("plan");
            let row = &plan.rows[0];
            match filled {
                // the old row holds the value: no stored row to read
                Some(value) => assert_eq!((&row.cells[1], row.fill), (&value, None)),
                None => assert_eq!(
                    (&row.cells[1], row.fill),
                    (&Cell::Unchanged, Some(Loc { file: 0, pos: 0 }))
                ),
            }
        }
    }

    #[test]
    fn an_unchanged_value_of_an_unknown_row_errors_the_table() {
        let mut index = KeyIndex::default();
        let events = [event(
            Change::Update {
                old: None,
                new: vec![text("9"), Cell::Unchanged],
            },
            0,
        )];
        let refs: Vec<&ChangeEvent> = events.iter().collect();
        let keys = EventKeys {
            new: vec![Some("9".into())],
            old: vec![None],
        };
        let error = plan(&schema(), &refs, &keys, &mut index).expect_err("no stored row");
        assert!(error.to_string().contains("resync"), "{error}");
    }
}
