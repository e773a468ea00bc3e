//! Turning pgoutput messages into the engine's vocabulary: tuples into rows, Relation messages
//! into table schemas, data messages into [`Change`]s. Shared by the apply worker and the
//! table-sync workers' catch-up.

use std::sync::Arc;

use super::source::{DecodeError, OldTuple, PgOutputMessage, RelationColumn, TupleData};
use crate::base::event::{Cell, Change, ChangeEvent, Row};
use crate::base::lsn::Lsn;
use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName, TableSchema};

/// The transaction being received (from its Begin).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transaction {
    pub final_lsn: Lsn,
    pub xid: u32,
    pub commit_time: i64,
    /// Changes seen so far in this transaction (of every table, so positions are stable).
    pub ordinal: u32,
}

impl Transaction {
    pub fn new(final_lsn: Lsn, xid: u32, commit_time: i64) -> Self {
        Self {
            final_lsn,
            xid,
            commit_time,
            ordinal: 0,
        }
    }

    /// The event for `change` of `table` at `lsn`; advances the ordinal.
    pub fn event(&mut self, table: Arc<TableSchema>, lsn: Lsn, change: Change) -> ChangeEvent {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        ChangeEvent {
            table,
            lsn,
            commit_lsn: self.final_lsn,
            xid: self.xid,
            commit_time: self.commit_time,
            ordinal,
            change,
        }
    }

    /// A change of a table that is not applied here still takes its place in the order.
    pub fn skip(&mut self) {
        self.ordinal += 1;
    }
}

/// A tuple's cells; `bytes` grows by the size of the values (for batch size limits).
pub(crate) fn row(tuple: Vec<TupleData>, bytes: &mut usize) -> Result<Row, DecodeError> {
    let mut row = Vec::with_capacity(tuple.len());
    for value in tuple {
        let cell = value.into_cell()?;
        if let Cell::Text(text) = &cell {
            *bytes += text.len();
        }
        row.push(cell);
    }
    *bytes += 16 * row.len();
    Ok(row)
}

/// The relation a data message (Insert, Update, Delete) is about.
pub(crate) fn relation_of(message: &PgOutputMessage) -> Option<u32> {
    match message {
        PgOutputMessage::Insert { relation, .. }
        | PgOutputMessage::Update { relation, .. }
        | PgOutputMessage::Delete { relation, .. } => Some(*relation),
        _ => None,
    }
}

/// The relation OID and change of a data message; `None` for other messages.
pub(crate) fn data_change(
    message: PgOutputMessage,
    bytes: &mut usize,
) -> Option<Result<(u32, Change), DecodeError>> {
    let result = match message {
        PgOutputMessage::Insert { relation, new, .. } => {
            row(new, bytes).map(|new| (relation, Change::Insert { new }))
        }
        PgOutputMessage::Update {
            relation, old, new, ..
        } => (|| {
            let old = old.map(|old| row(old.into_columns(), bytes)).transpose()?;
            let new = row(new, bytes)?;
            Ok((relation, Change::Update { old, new }))
        })(),
        PgOutputMessage::Delete { relation, old, .. } => {
            row(OldTuple::into_columns(old), bytes).map(|old| (relation, Change::Delete { old }))
        }
        _ => return None,
    };
    Some(result)
}

/// The table schema a Relation message describes. Nullability and key order come from `known`
/// (the stored schema) where a column of the same name exists; for tables with
/// `REPLICA IDENTITY FULL` every column is flagged as key, so keys come only from `known`.
pub(crate) fn relation_schema(
    id: u32,
    namespace: &str,
    name: &str,
    replica_identity: u8,
    columns: &[RelationColumn],
    known: Option<&TableSchema>,
) -> TableSchema {
    let identity = ReplicaIdentity::from_code(replica_identity).unwrap_or(ReplicaIdentity::Default);
    let mut next_key = 0u16;
    let columns = columns
        .iter()
        .map(|column| {
            let previous = known.and_then(|k| k.columns.iter().find(|c| c.name == column.name));
            let key = match identity {
                ReplicaIdentity::Full | ReplicaIdentity::Nothing => {
                    previous.and_then(|p| p.primary_key_position)
                }
                _ if column.is_key() => {
                    next_key += 1;
                    previous
                        .and_then(|p| p.primary_key_position)
                        .or(Some(next_key))
                }
                _ => None,
            };
            ColumnSchema {
                name: column.name.clone(),
                type_oid: column.type_oid,
                type_modifier: column.type_modifier,
                nullable: previous.is_none_or(|p| p.nullable),
                primary_key_position: key,
                existing_rows_value: None,
            }
        })
        .collect();
    TableSchema {
        id: TableId(id),
        name: TableName::new(namespace, name),
        columns,
        replica_identity: identity,
    }
}

/// Whether two schemas describe the same replicated shape (names, types and identity), so the
/// destination needs no `alter_table`.
pub(crate) fn same_shape(a: &TableSchema, b: &TableSchema) -> bool {
    a.name == b.name
        && a.replica_identity == b.replica_identity
        && a.columns.len() == b.columns.len()
        && a.columns.iter().zip(&b.columns).all(|(x, y)| {
            x.name == y.name && x.type_oid == y.type_oid && x.type_modifier == y.type_modifier
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, key: bool) -> RelationColumn {
        RelationColumn {
            flags: u8::from(key),
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
        }
    }

    #[test]
    fn a_relation_keeps_known_nullability_and_flags_new_columns() {
        let known = relation_schema(1, "public", "t", b'd', &[column("id", true)], None);
        let mut known = known;
        known.columns[0].nullable = false;
        let new = relation_schema(
            1,
            "public",
            "t",
            b'd',
            &[column("id", true), column("extra", false)],
            Some(&known),
        );
        assert!(!new.columns[0].nullable);
        assert_eq!(new.columns[0].primary_key_position, Some(1));
        assert!(new.columns[1].nullable);
        assert!(!same_shape(&known, &new));
        assert!(same_shape(&new, &new.clone()));
    }

    #[test]
    fn ordinals_count_skipped_changes() {
        let mut tx = Transaction::new(Lsn(10), 7, 0);
        tx.skip();
        let schema = Arc::new(relation_schema(1, "s", "t", b'd', &[], None));
        let event = tx.event(schema, Lsn(5), Change::Truncate);
        assert_eq!(event.position(), (Lsn(10), 1));
    }
}
