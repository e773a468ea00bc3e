//! [`Router`]: the one place that turns a pgoutput message into what to apply. Both the apply
//! worker and a table-sync worker's catch-up feed it their stream; a [`Rule`] says which
//! tables apply at which commit position (the apply worker: tables `ready` or `sync_done`
//! before the commit; a catch-up: its own table). The router tracks the transaction (so change
//! ordinals count skipped changes too), the relations as the stream describes them, and the
//! shape the destination has of each table, so it can say when a table must be altered before
//! its next change. It does no I/O: the caller writes, alters and stores.

use std::collections::HashMap;
use std::sync::Arc;

use super::changes::{self, Transaction};
use super::source::{DecodeError, PgOutputMessage};
use crate::base::event::{Change, ChangeEvent};
use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableSchema};

/// Which tables' changes apply, for a transaction committing at `commit_lsn`.
pub(crate) trait Rule {
    fn applies(&self, table: TableId, commit_lsn: Lsn) -> bool;
}

/// A catch-up applies one table only.
pub(crate) struct OnlyTable(pub TableId);

impl Rule for OnlyTable {
    fn applies(&self, table: TableId, _commit_lsn: Lsn) -> bool {
        table == self.0
    }
}

/// The destination must change a table's shape before the change that follows: `old` is what
/// it has (`None`: it has nothing yet), `new` what the stream now describes. A table described
/// again with the same columns is a *refresh*: pgoutput describes a table again after any
/// `ALTER TABLE`, and what its Relation message does not carry (whether a column takes NULL)
/// may have changed; the destination's [`super::catalog::WithSourceDefaults`] reads it then.
#[derive(Debug, Clone)]
pub(crate) struct Reshape {
    pub old: Option<Arc<TableSchema>>,
    pub new: Arc<TableSchema>,
}

impl Reshape {
    /// The same columns, types and identity described again.
    pub fn is_refresh(&self) -> bool {
        self.old
            .as_deref()
            .is_some_and(|old| changes::same_shape(old, &self.new))
    }
}

/// Logs a reshape the destination was given: a schema change at info level, a refresh (the
/// table described again, e.g. after `VACUUM` or a nullability change) at debug level.
pub(crate) fn log_reshape(reshape: &Reshape) {
    if reshape.is_refresh() {
        tracing::debug!(table = %reshape.new.name, "table described again");
    } else {
        tracing::info!(table = %reshape.new.name, "schema changed");
    }
}

/// One change to apply, after the reshape it needs (if any).
#[derive(Debug)]
pub(crate) struct Applied {
    pub reshape: Option<Reshape>,
    pub event: ChangeEvent,
    /// Size of the values, for batch limits.
    pub bytes: usize,
}

/// What a message means for the caller.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Nothing to do (a skipped change, a Relation or Type message, a change outside a
    /// transaction).
    Nothing,
    Begin {
        final_lsn: Lsn,
    },
    Commit {
        end_lsn: Lsn,
    },
    Change(Applied),
    /// A TRUNCATE of several tables: one event per applied table.
    Truncate(Vec<Applied>),
}

/// A relation as the stream last described it.
struct Relation {
    schema: Arc<TableSchema>,
    /// The destination is known to have this shape.
    checked: bool,
}

/// Routes the messages of one stream. [`Router::new_session`] forgets what a stream told
/// (relations, the open transaction) and keeps what the destination has.
#[derive(Default)]
pub(crate) struct Router {
    relations: HashMap<u32, Relation>,
    /// The shape the destination has of each table.
    shapes: HashMap<TableId, Arc<TableSchema>>,
    tx: Option<Transaction>,
}

impl Router {
    /// A router for a destination that has these shapes.
    pub fn new(shapes: impl IntoIterator<Item = (TableId, Arc<TableSchema>)>) -> Self {
        Self {
            shapes: shapes.into_iter().collect(),
            ..Self::default()
        }
    }

    /// A new stream starts (after a reconnect): it describes every relation again.
    pub fn new_session(&mut self) {
        self.relations.clear();
        self.tx = None;
    }

    /// Whether a transaction is open (between Begin and Commit).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// The shape the destination has of `table`.
    pub fn shape(&self, table: TableId) -> Option<&Arc<TableSchema>> {
        self.shapes.get(&table)
    }

    /// The destination now has `schema` (after `alter_table`/`prepare_table`, or a copy); the
    /// next change of the table is checked against it.
    pub fn set_shape(&mut self, schema: Arc<TableSchema>) {
        if let Some(relation) = self.relations.get_mut(&schema.id.0) {
            relation.checked = Arc::ptr_eq(&relation.schema, &schema);
        }
        self.shapes.insert(schema.id, schema);
    }

    /// The caller applied `reshape`: the destination has the new shape.
    pub fn reshaped(&mut self, reshape: &Reshape) {
        self.shapes.insert(reshape.new.id, reshape.new.clone());
        if let Some(relation) = self.relations.get_mut(&reshape.new.id.0) {
            relation.checked = true;
        }
    }

    /// Forgets a table (no longer published).
    pub fn forget(&mut self, table: TableId) {
        self.shapes.remove(&table);
    }

    /// What `message`, received at `wal_start`, means under `rule`.
    pub fn route(
        &mut self,
        wal_start: Lsn,
        message: PgOutputMessage,
        rule: &impl Rule,
    ) -> Result<Routed, RouteError> {
        match message {
            PgOutputMessage::Begin {
                final_lsn,
                xid,
                commit_time,
            } => {
                self.tx = Some(Transaction::new(final_lsn, xid, commit_time));
                Ok(Routed::Begin { final_lsn })
            }
            PgOutputMessage::Commit { end_lsn, .. } => {
                self.tx = None;
                Ok(Routed::Commit { end_lsn })
            }
            PgOutputMessage::Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
                ..
            } => {
                let known = self
                    .relations
                    .get(&id)
                    .map(|r| r.schema.clone())
                    .or_else(|| self.shapes.get(&TableId(id)).cloned());
                let schema = changes::relation_schema(
                    id,
                    &namespace,
                    &name,
                    replica_identity,
                    &columns,
                    known.as_deref(),
                );
                let relation = Relation {
                    schema: Arc::new(schema),
                    checked: false,
                };
                self.relations.insert(id, relation);
                Ok(Routed::Nothing)
            }
            PgOutputMessage::Truncate { relations, .. } => {
                let Some(final_lsn) = self.tx.as_ref().map(|t| t.final_lsn) else {
                    return Ok(Routed::Nothing);
                };
                let mut applied = Vec::new();
                for id in relations {
                    if !rule.applies(TableId(id), final_lsn) {
                        self.skip();
                        continue;
                    }
                    let (schema, reshape) = self.checked(id, wal_start)?;
                    if let Some(tx) = self.tx.as_mut() {
                        let event = tx.event(schema, wal_start, Change::Truncate);
                        applied.push(Applied {
                            reshape,
                            event,
                            bytes: 0,
                        });
                    }
                }
                Ok(Routed::Truncate(applied))
            }
            message => {
                let Some(relation) = changes::relation_of(&message) else {
                    return Ok(Routed::Nothing);
                };
                let Some(final_lsn) = self.tx.as_ref().map(|t| t.final_lsn) else {
                    return Ok(Routed::Nothing);
                };
                if !rule.applies(TableId(relation), final_lsn) {
                    self.skip();
                    return Ok(Routed::Nothing);
                }
                let (schema, reshape) = self.checked(relation, wal_start)?;
                let mut bytes = 0;
                let Some(decoded) = changes::data_change(message, &mut bytes) else {
                    return Ok(Routed::Nothing);
                };
                let (_, change) = decoded.map_err(|source| RouteError::Decode {
                    lsn: wal_start,
                    source,
                })?;
                let Some(tx) = self.tx.as_mut() else {
                    return Ok(Routed::Nothing);
                };
                let event = tx.event(schema, wal_start, change);
                Ok(Routed::Change(Applied {
                    reshape,
                    event,
                    bytes,
                }))
            }
        }
    }

    /// A change not applied here still takes its place in the transaction's order.
    fn skip(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.skip();
        }
    }

    /// The relation's schema, and the reshape the destination needs first (if its shape
    /// differs from what the stream describes).
    fn checked(
        &mut self,
        id: u32,
        lsn: Lsn,
    ) -> Result<(Arc<TableSchema>, Option<Reshape>), RouteError> {
        // pgoutput always describes a relation before its first change in a stream.
        let relation = self
            .relations
            .get_mut(&id)
            .ok_or(RouteError::UnknownRelation { lsn, relation: id })?;
        let schema = relation.schema.clone();
        if relation.checked {
            return Ok((schema, None));
        }
        let reshape = Reshape {
            old: self.shapes.get(&TableId(id)).cloned(),
            new: schema.clone(),
        };
        Ok((schema, Some(reshape)))
    }
}

/// A message the router cannot make sense of.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("the change at {lsn} cannot be decoded")]
    Decode {
        lsn: Lsn,
        #[source]
        source: DecodeError,
    },
    #[error("the change at {lsn} is of relation {relation}, which the stream never described")]
    UnknownRelation { lsn: Lsn, relation: u32 },
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
