//! Source table identity and shape: [`TableId`] (the relation OID), [`TableName`] (always quoted
//! when rendered to SQL) and [`TableSchema`] with its columns, as read from the copy snapshot or a
//! pgoutput Relation message.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::quote::quote_identifier;

/// A source table's OID, stable across renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId(pub u32);

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A schema-qualified table name. `Display` is for humans (`schema.table`); use
/// [`TableName::quoted`] in SQL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `"schema"."name"` with embedded quotes doubled.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            quote_identifier(&self.schema),
            quote_identifier(&self.name)
        )
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One replicated column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    /// Postgres type OID (`pg_type.oid`); for domains, the domain's OID.
    pub type_oid: u32,
    /// `atttypmod` (e.g. varchar length, numeric precision/scale); -1 when none.
    pub type_modifier: i32,
    pub nullable: bool,
    /// 1-based position in the primary key (or the replica identity index); `None` otherwise.
    pub primary_key_position: Option<u16>,
    /// In a schema change that adds this column: the value the rows that existed before read
    /// (text form), when the source knows one. `ADD COLUMN … DEFAULT x` with a non-volatile
    /// default does not rewrite the table nor write WAL: Postgres keeps `x` aside
    /// (`pg_attribute.attmissingval`) and old rows read it, so a mirror must fill it in itself.
    /// `None` everywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_rows_value: Option<String>,
}

/// `REPLICA IDENTITY` of a table: which old values updates and deletes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaIdentity {
    /// Primary key columns (`d`).
    Default,
    /// Every column (`f`): rows are keyed by their full old value.
    Full,
    /// Columns of a chosen unique index (`i`).
    Index,
    /// No old values (`n`): updates and deletes cannot be keyed.
    Nothing,
}

impl ReplicaIdentity {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            b'd' => ReplicaIdentity::Default,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            b'n' => ReplicaIdentity::Nothing,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
            ReplicaIdentity::Nothing => b'n',
        }
    }
}

/// The replicated shape of a source table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub id: TableId,
    pub name: TableName,
    /// The replicated columns in source order (a publication column list may leave some out).
    pub columns: Vec<ColumnSchema>,
    pub replica_identity: ReplicaIdentity,
}

impl TableSchema {
    /// Indexes (into `columns`) of the key columns in key order; empty when the table has none.
    pub fn key_columns(&self) -> Vec<usize> {
        let mut keyed: Vec<(u16, usize)> = self
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.primary_key_position.map(|p| (p, i)))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, i)| i).collect()
    }

    /// Whether updates and deletes of this table can be matched to a destination row.
    pub fn has_row_identity(&self) -> bool {
        self.replica_identity == ReplicaIdentity::Full || !self.key_columns().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::quote::quote_literal;

    #[test]
    fn identifiers_with_quotes_are_escaped() {
        let name = TableName::new("my schema", "Weird \"Name\"");
        assert_eq!(name.quoted(), "\"my schema\".\"Weird \"\"Name\"\"\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
