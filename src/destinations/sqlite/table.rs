//! One mirrored table as the SQLite destination sees it: the source schema, the SQLite table and
//! column names chosen for it, and the SQL statements that write its rows.

use std::borrow::Cow;

use crate::base::schema::{ReplicaIdentity, TableSchema};
use crate::destinations::mirror::on_conflict;

use super::naming::{self, quote};
use super::types::Affinity;

/// A source table and its SQLite counterpart.
#[derive(Debug, Clone)]
pub struct MirrorTable {
    pub schema: TableSchema,
    /// The SQLite table name (see [`naming`]).
    pub name: String,
    /// SQLite column names, one per `schema.columns`.
    pub columns: Vec<String>,
    /// Indexes of the key columns, in key order (empty: no primary key).
    pub key: Vec<usize>,
    /// A name of the rowid that no column shadows (used to match rows of keyless tables).
    pub rowid: &'static str,
    /// [`MirrorTable::insert_sql`] of every column and [`MirrorTable::delete_sql`] by key, built
    /// once: most changes use one of them.
    insert_all: String,
    delete_by_key: String,
}

impl MirrorTable {
    pub fn new(schema: TableSchema, name: String) -> MirrorTable {
        let columns = naming::column_names(schema.columns.iter().map(|c| c.name.as_str()));
        let rowid = ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|alias| !columns.iter().any(|c| c.eq_ignore_ascii_case(alias)))
            .unwrap_or("rowid");
        let mut table = MirrorTable {
            key: schema.key_columns(),
            schema,
            name,
            columns,
            rowid,
            insert_all: String::new(),
            delete_by_key: String::new(),
        };
        let all: Vec<usize> = (0..table.columns.len()).collect();
        table.insert_all = table.build_insert_sql(&all);
        table.delete_by_key = table.build_delete_sql(&[]);
        table
    }

    pub fn quoted(&self) -> String {
        quote(&self.name)
    }

    /// Rows of this table can be found by their full old value (`REPLICA IDENTITY FULL`).
    pub fn matches_full_rows(&self) -> bool {
        self.schema.replica_identity == ReplicaIdentity::Full
    }

    pub fn affinity(&self, column: usize) -> Affinity {
        Affinity::of(self.schema.columns[column].type_oid)
    }

    /// `CREATE TABLE` for this table under `name`.
    pub fn create_sql(&self, name: &str) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} {}", quote(c), self.affinity(i).sql()))
            .collect();
        if !self.key.is_empty() {
            parts.push(format!("PRIMARY KEY ({})", self.column_list(&self.key)));
        }
        format!("CREATE TABLE {} ({})", quote(name), parts.join(", "))
    }

    fn column_list(&self, indexes: &[usize]) -> String {
        indexes
            .iter()
            .map(|&i| quote(&self.columns[i]))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `INSERT` of the given columns; on a keyed table an upsert that overwrites the other given
    /// columns of an existing row with the same key.
    pub fn insert_sql(&self, columns: &[usize]) -> Cow<'_, str> {
        if columns.len() == self.columns.len() {
            // Column indexes are distinct, so these are all of them.
            Cow::Borrowed(&self.insert_all)
        } else {
            Cow::Owned(self.build_insert_sql(columns))
        }
    }

    fn build_insert_sql(&self, columns: &[usize]) -> String {
        let placeholders = vec!["?"; columns.len()].join(", ");
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.quoted(),
            self.column_list(columns),
            placeholders
        );
        if !self.key.is_empty() {
            let key: Vec<String> = self.key.iter().map(|&i| quote(&self.columns[i])).collect();
            let updated: Vec<String> = columns
                .iter()
                .filter(|i| !self.key.contains(i))
                .map(|&i| quote(&self.columns[i]))
                .collect();
            sql.push_str(&on_conflict(&key, &updated));
        }
        sql
    }

    /// `SET a = ?, b = ?` for the given columns.
    fn set_list(&self, columns: &[usize]) -> String {
        columns
            .iter()
            .map(|&i| format!("{} = ?", quote(&self.columns[i])))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The row-matching condition: key columns by `=`, or the given columns by `IS` (NULL-safe)
    /// for one row picked by its rowid.
    fn row_condition(&self, matched: &[usize]) -> String {
        if !self.key.is_empty() {
            return self
                .key
                .iter()
                .map(|&i| format!("{} = ?", quote(&self.columns[i])))
                .collect::<Vec<_>>()
                .join(" AND ");
        }
        let condition = if matched.is_empty() {
            "1".to_owned()
        } else {
            matched
                .iter()
                .map(|&i| format!("{} IS ?", quote(&self.columns[i])))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        format!(
            "{rowid} = (SELECT {rowid} FROM {table} WHERE {condition} LIMIT 1)",
            rowid = self.rowid,
            table = self.quoted()
        )
    }

    /// `UPDATE` of `set` columns of the row matched by the key (keyed tables) or by the `matched`
    /// old values (keyless `FULL` tables). `OR REPLACE` lets a key change overwrite a row that
    /// already holds the new key, as the source's state implies.
    pub fn update_sql(&self, set: &[usize], matched: &[usize]) -> String {
        format!(
            "UPDATE OR REPLACE {} SET {} WHERE {}",
            self.quoted(),
            self.set_list(set),
            self.row_condition(matched)
        )
    }

    pub fn delete_sql(&self, matched: &[usize]) -> Cow<'_, str> {
        if self.key.is_empty() {
            Cow::Owned(self.build_delete_sql(matched))
        } else {
            Cow::Borrowed(&self.delete_by_key)
        }
    }

    fn build_delete_sql(&self, matched: &[usize]) -> String {
        format!(
            "DELETE FROM {} WHERE {}",
            self.quoted(),
            self.row_condition(matched)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::schema::{ColumnSchema, TableId, TableName};

    fn schema(keyed: bool, identity: ReplicaIdentity) -> TableSchema {
        let column = |name: &str, key: Option<u16>| ColumnSchema {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            nullable: key.is_none(),
            primary_key_position: key,
            existing_rows_value: None,
        };
        TableSchema {
            id: TableId(7),
            name: TableName::new("public", "t"),
            columns: vec![column("id", keyed.then_some(1)), column("rowid", None)],
            replica_identity: identity,
        }
    }

    #[test]
    fn keyed_tables_upsert_and_match_by_key() {
        let table = MirrorTable::new(schema(true, ReplicaIdentity::Default), "public.t".into());
        assert_eq!(
            table.insert_sql(&[0, 1]),
            "INSERT INTO \"public.t\" (\"id\", \"rowid\") VALUES (?, ?) \
             ON CONFLICT (\"id\") DO UPDATE SET \"rowid\" = excluded.\"rowid\""
        );
        assert_eq!(
            table.delete_sql(&[]),
            "DELETE FROM \"public.t\" WHERE \"id\" = ?"
        );
    }

    #[test]
    fn keyless_full_tables_match_one_row_by_a_rowid_no_column_shadows() {
        let table = MirrorTable::new(schema(false, ReplicaIdentity::Full), "public.t".into());
        assert_eq!(table.rowid, "_rowid_");
        assert_eq!(
            table.delete_sql(&[0, 1]),
            "DELETE FROM \"public.t\" WHERE _rowid_ = (SELECT _rowid_ FROM \"public.t\" \
             WHERE \"id\" IS ? AND \"rowid\" IS ? LIMIT 1)"
        );
        assert_eq!(
            table.insert_sql(&[0, 1]),
            "INSERT INTO \"public.t\" (\"id\", \"rowid\") VALUES (?, ?)"
        );
    }
}
