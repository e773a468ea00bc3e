//! What changed between two shapes of one source table, in the terms a mirror destination acts
//! on: columns added, dropped, renamed or retyped, and whether the key or the table name changed.
//!
//! pgoutput's Relation message carries no column numbers, so a rename is recognised the way
//! Postgres lays columns out: `RENAME COLUMN` keeps a column's position and type, `ADD COLUMN`
//! appends, `DROP COLUMN` removes. A new name that sits where an old name disappeared (between
//! the same matched neighbours) with the same type is taken as a rename; anything else is a drop
//! plus an add (the added column starts empty, as Postgres would send it from then on). A drop
//! and an add of the same type at the same place, seen in one schema change, look like a rename
//! and are treated as one.

use crate::base::schema::TableSchema;

/// The column-level difference between `old` and `new` (indexes into their `columns`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaDiff {
    /// For each new column, the old column whose values it continues (same name, or renamed).
    pub source_of: Vec<Option<usize>>,
    /// New columns with no old counterpart.
    pub added: Vec<usize>,
    /// Old columns with no new counterpart.
    pub dropped: Vec<usize>,
    /// `(old, new)` pairs whose name changed.
    pub renamed: Vec<(usize, usize)>,
    /// `(old, new)` pairs whose type or type modifier changed.
    pub retyped: Vec<(usize, usize)>,
    /// New columns (continuing an old one) that now take NULL or now refuse it.
    pub nullability: Vec<usize>,
    /// The key columns (names, in key order) differ.
    pub key_changed: bool,
    /// The schema-qualified table name differs.
    pub table_renamed: bool,
}

impl SchemaDiff {
    pub fn between(old: &TableSchema, new: &TableSchema) -> SchemaDiff {
        let position =
            |schema: &TableSchema, name: &str| schema.columns.iter().position(|c| c.name == name);
        let mut source_of: Vec<Option<usize>> =
            new.columns.iter().map(|c| position(old, &c.name)).collect();
        let mut used: Vec<bool> = (0..old.columns.len())
            .map(|o| source_of.contains(&Some(o)))
            .collect();
        for index in 0..new.columns.len() {
            if source_of[index].is_some() {
                continue;
            }
            // Candidates: the unmatched old columns right after the old counterpart of the
            // previous matched new column, up to the next matched old column.
            let start = source_of[..index]
                .iter()
                .rev()
                .find_map(|s| *s)
                .map_or(0, |previous| previous + 1);
            let renamed = (start..old.columns.len())
                .take_while(|&o| !used[o])
                .find(|&o| old.columns[o].type_oid == new.columns[index].type_oid);
            if let Some(o) = renamed {
                used[o] = true;
                source_of[index] = Some(o);
            }
        }
        let mut diff = SchemaDiff::default();
        for (new_index, source) in source_of.iter().enumerate() {
            match source {
                None => diff.added.push(new_index),
                Some(old_index) => {
                    let (o, n) = (&old.columns[*old_index], &new.columns[new_index]);
                    if o.name != n.name {
                        diff.renamed.push((*old_index, new_index));
                    }
                    if o.type_oid != n.type_oid || o.type_modifier != n.type_modifier {
                        diff.retyped.push((*old_index, new_index));
                    }
                    if o.nullable != n.nullable {
                        diff.nullability.push(new_index);
                    }
                }
            }
        }
        diff.dropped = (0..old.columns.len())
            .filter(|i| !source_of.contains(&Some(*i)))
            .collect();
        let key_names = |schema: &TableSchema| {
            schema
                .key_columns()
                .into_iter()
                .map(|i| schema.columns[i].name.clone())
                .collect::<Vec<_>>()
        };
        let old_key: Vec<String> = key_names(old);
        let new_key: Vec<String> = key_names(new);
        // A renamed key column is the same key.
        let old_key_renamed: Vec<String> = old_key
            .iter()
            .map(|name| {
                diff.renamed
                    .iter()
                    .find(|(o, _)| old.columns[*o].name == *name)
                    .map(|(_, n)| new.columns[*n].name.clone())
                    .unwrap_or_else(|| name.clone())
            })
            .collect();
        diff.key_changed = old_key_renamed != new_key;
        diff.table_renamed = old.name != new.name;
        diff.source_of = source_of;
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName};

    fn table(columns: &[(&str, u32, Option<u16>)]) -> TableSchema {
        TableSchema {
            id: TableId(1),
            name: TableName::new("public", "t"),
            columns: columns
                .iter()
                .map(|(name, type_oid, key)| ColumnSchema {
                    name: (*name).into(),
                    type_oid: *type_oid,
                    type_modifier: -1,
                    nullable: key.is_none(),
                    primary_key_position: *key,
                    existing_rows_value: None,
                })
                .collect(),
            replica_identity: ReplicaIdentity::Default,
        }
    }

    #[test]
    fn an_appended_column_is_an_addition() {
        let old = table(&[("id", 23, Some(1)), ("a", 25, None)]);
        let new = table(&[("id", 23, Some(1)), ("a", 25, None), ("b", 20, None)]);
        let diff = SchemaDiff::between(&old, &new);
        assert_eq!(diff.added, vec![2]);
        assert_eq!(diff.source_of, vec![Some(0), Some(1), None]);
        assert!(diff.dropped.is_empty() && diff.renamed.is_empty() && !diff.key_changed);
    }

    #[test]
    fn a_new_name_at_the_same_position_and_type_is_a_rename() {
        let old = table(&[("id", 23, Some(1)), ("a", 25, None)]);
        let new = table(&[("id", 23, Some(1)), ("b", 25, None)]);
        let diff = SchemaDiff::between(&old, &new);
        assert_eq!(diff.renamed, vec![(1, 1)]);
        assert!(diff.added.is_empty() && diff.dropped.is_empty());
    }

    #[test]
    fn a_rename_next_to_a_drop_is_still_a_rename() {
        let old = table(&[
            ("id", 23, Some(1)),
            ("a", 25, None),
            ("b", 25, None),
            ("c", 20, None),
        ]);
        let new = table(&[("id", 23, Some(1)), ("x", 25, None), ("c", 20, None)]);
        let diff = SchemaDiff::between(&old, &new);
        assert_eq!(diff.renamed, vec![(1, 1)]);
        assert_eq!(diff.dropped, vec![2]);
        let appended = table(&[
            ("id", 23, Some(1)),
            ("b", 25, None),
            ("c", 20, None),
            ("d", 25, None),
        ]);
        let diff = SchemaDiff::between(&old, &appended);
        assert_eq!((diff.dropped, diff.added), (vec![1], vec![3]));
    }

    #[test]
    fn a_renamed_key_column_keeps_the_key() {
        let old = table(&[("id", 23, Some(1)), ("a", 25, None)]);
        let new = table(&[("ident", 23, Some(1)), ("a", 25, None)]);
        let diff = SchemaDiff::between(&old, &new);
        assert_eq!(diff.renamed, vec![(0, 0)]);
        assert!(!diff.key_changed);
    }

    #[test]
    fn a_dropped_column_and_a_different_type_are_not_renames() {
        let old = table(&[("id", 23, Some(1)), ("a", 25, None), ("b", 25, None)]);
        let new = table(&[("id", 23, Some(1)), ("b", 25, None)]);
        let diff = SchemaDiff::between(&old, &new);
        assert_eq!(diff.dropped, vec![1]);
        assert_eq!(diff.source_of, vec![Some(0), Some(2)]);

        let old = table(&[("id", 23, Some(1)), ("a", 25, None)]);
        let new = table(&[("id", 23, Some(1)), ("b", 20, None)]);
        let diff = SchemaDiff::between(&old, &new);
        assert_eq!((diff.dropped, diff.added), (vec![1], vec![1]));
    }

    #[test]
    fn retyped_columns_and_key_changes_are_reported() {
        let old = table(&[("id", 23, Some(1)), ("a", 25, None)]);
        let new = table(&[("id", 20, None), ("a", 25, Some(1))]);
        let diff = SchemaDiff::between(&old, &new);
        assert_eq!(diff.retyped, vec![(0, 0)]);
        assert!(diff.key_changed);
        assert_eq!(
            SchemaDiff::between(&old, &old).source_of,
            vec![Some(0), Some(1)]
        );
        assert!(!SchemaDiff::between(&old, &old).key_changed);
    }
}
