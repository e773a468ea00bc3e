//! One mirrored table in the target database: its name, its columns' SQL types, and the
//! set-based statements that write many rows at once. Values travel as `text[]` parameters
//! (one array per column, NULL elements for NULL) and are cast to the column types in SQL, so
//! the source's text form is parsed by the target itself and nothing is lost on the way.

use crate::base::quote::quote_identifier;
use crate::base::schema::{TableName, TableSchema};
use crate::destinations::mirror::on_conflict;

/// A source table and its mirror in the target.
#[derive(Debug, Clone)]
pub struct TargetTable {
    pub schema: TableSchema,
    pub name: TableName,
    /// SQL type of each column in the target (`format_type` of the source type, or `text`).
    pub types: Vec<String>,
    /// Key column indexes in key order.
    pub key: Vec<usize>,
}

impl TargetTable {
    pub fn new(schema: TableSchema, name: TableName, types: Vec<String>) -> TargetTable {
        TargetTable {
            key: schema.key_columns(),
            schema,
            name,
            types,
        }
    }

    pub fn quoted(&self) -> String {
        self.name.quoted()
    }

    fn column(&self, index: usize) -> String {
        quote_identifier(&self.schema.columns[index].name)
    }

    fn column_list(&self, columns: &[usize]) -> String {
        columns
            .iter()
            .map(|&i| self.column(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `CREATE TABLE` with the source's types, NOT NULLs and key.
    pub fn create_sql(&self) -> String {
        let mut parts: Vec<String> = self
            .schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let not_null = if c.nullable { "" } else { " NOT NULL" };
                format!("{} {}{not_null}", self.column(i), self.types[i])
            })
            .collect();
        if !self.key.is_empty() {
            parts.push(format!("PRIMARY KEY ({})", self.column_list(&self.key)));
        }
        format!("CREATE TABLE {} ({})", self.quoted(), parts.join(", "))
    }

    /// `COPY … FROM STDIN` of every column, in source order (the form the source's COPY has).
    pub fn copy_sql(&self) -> String {
        let all: Vec<usize> = (0..self.schema.columns.len()).collect();
        format!(
            "COPY {} ({}) FROM STDIN",
            self.quoted(),
            self.column_list(&all)
        )
    }

    /// `unnest($1::text[], …) AS u(v1, …)` over `count` parameters starting at `$first`.
    fn unnest(first: usize, count: usize) -> String {
        let arrays: Vec<String> = (0..count)
            .map(|i| format!("${}::text[]", first + i))
            .collect();
        let names: Vec<String> = (0..count).map(|i| format!("v{}", first + i)).collect();
        format!("unnest({}) AS u({})", arrays.join(", "), names.join(", "))
    }

    /// `u.v<param>::type` for column `index` bound at parameter `param`.
    fn cast(&self, param: usize, index: usize) -> String {
        format!("u.v{param}::{}", self.types[index])
    }

    /// Inserts rows of `columns` (one array parameter each); on a keyed table an upsert that
    /// overwrites the given non-key columns.
    pub fn upsert_sql(&self, columns: &[usize]) -> String {
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(p, &i)| self.cast(p + 1, i))
            .collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}",
            self.quoted(),
            self.column_list(columns),
            values.join(", "),
            Self::unnest(1, columns.len())
        );
        if !self.key.is_empty() {
            let key: Vec<String> = self.key.iter().map(|&i| self.column(i)).collect();
            let updated: Vec<String> = columns
                .iter()
                .filter(|i| !self.key.contains(i))
                .map(|&i| self.column(i))
                .collect();
            sql.push_str(&on_conflict(&key, &updated));
        }
        sql
    }

    /// `WHERE` matching the key columns bound from parameter `first` on.
    fn key_condition(&self, first: usize) -> String {
        self.key
            .iter()
            .enumerate()
            .map(|(p, &i)| format!("t.{} = {}", self.column(i), self.cast(first + p, i)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Updates `set` columns (parameters 1..) of the rows whose key matches (parameters after).
    pub fn update_by_key_sql(&self, set: &[usize]) -> String {
        let assignments: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(p, &i)| format!("{} = {}", self.column(i), self.cast(p + 1, i)))
            .collect();
        format!(
            "UPDATE {} AS t SET {} FROM {} WHERE {}",
            self.quoted(),
            assignments.join(", "),
            Self::unnest(1, set.len() + self.key.len()),
            self.key_condition(set.len() + 1)
        )
    }

    /// Deletes the rows whose key matches (one array parameter per key column).
    pub fn delete_by_key_sql(&self) -> String {
        format!(
            "DELETE FROM {} AS t USING {} WHERE {}",
            self.quoted(),
            Self::unnest(1, self.key.len()),
            self.key_condition(1)
        )
    }

    /// The condition picking one row whose `matched` columns print as the given texts
    /// (parameters from `first`); text comparison works for every type, json included.
    fn full_row_condition(&self, matched: &[usize], first: usize) -> String {
        let condition = matched
            .iter()
            .enumerate()
            .map(|(p, &i)| {
                format!(
                    "{}::text IS NOT DISTINCT FROM ${}::text",
                    self.column(i),
                    first + p
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let condition = if condition.is_empty() {
            "true".to_owned()
        } else {
            condition
        };
        format!(
            "ctid = (SELECT ctid FROM {} WHERE {condition} LIMIT 1)",
            self.quoted()
        )
    }

    /// Updates `set` columns (scalar parameters 1..) of one row equal to the old row.
    pub fn update_full_row_sql(&self, set: &[usize], matched: &[usize]) -> String {
        let assignments: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(p, &i)| format!("{} = ${}::text::{}", self.column(i), p + 1, self.types[i]))
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {}",
            self.quoted(),
            assignments.join(", "),
            self.full_row_condition(matched, set.len() + 1)
        )
    }

    pub fn delete_full_row_sql(&self, matched: &[usize]) -> String {
        format!(
            "DELETE FROM {} WHERE {}",
            self.quoted(),
            self.full_row_condition(matched, 1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId};

    fn table() -> TargetTable {
        let column = |name: &str, key: Option<u16>| ColumnSchema {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            nullable: key.is_none(),
            primary_key_position: key,
            existing_rows_value: None,
        };
        let schema = TableSchema {
            id: TableId(1),
            name: TableName::new("s", "t"),
            columns: vec![column("id", Some(1)), column("Va\"l", None)],
            replica_identity: ReplicaIdentity::Default,
        };
        TargetTable::new(
            schema,
            TableName::new("m", "t"),
            vec!["integer".into(), "text".into()],
        )
    }

    #[test]
    fn statements_cast_text_arrays_to_the_column_types() {
        let t = table();
        assert_eq!(
            t.upsert_sql(&[0, 1]),
            "INSERT INTO \"m\".\"t\" (\"id\", \"Va\"\"l\") SELECT u.v1::integer, u.v2::text \
             FROM unnest($1::text[], $2::text[]) AS u(v1, v2) \
             ON CONFLICT (\"id\") DO UPDATE SET \"Va\"\"l\" = excluded.\"Va\"\"l\""
        );
        assert_eq!(
            t.update_by_key_sql(&[1]),
            "UPDATE \"m\".\"t\" AS t SET \"Va\"\"l\" = u.v1::text \
             FROM unnest($1::text[], $2::text[]) AS u(v1, v2) WHERE t.\"id\" = u.v2::integer"
        );
        assert_eq!(
            t.delete_by_key_sql(),
            "DELETE FROM \"m\".\"t\" AS t USING unnest($1::text[]) AS u(v1) \
             WHERE t.\"id\" = u.v1::integer"
        );
        assert_eq!(
            t.create_sql(),
            "CREATE TABLE \"m\".\"t\" (\"id\" integer NOT NULL, \"Va\"\"l\" text, PRIMARY KEY (\"id\"))"
        );
    }
}
