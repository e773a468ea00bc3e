//! How source tables and columns are named in the SQLite file.
//!
//! A source table `schema.table` becomes the SQLite table `schema.table` (one identifier that
//! contains a dot: `select * from "public.orders"`). In the schema part, `%` and `.` are
//! written as `%25` and `%2E` (and a leading `sqlite_`, which SQLite reserves, as `%73qlite_`),
//! so the first dot always separates schema from table and two source tables never get the same
//! name. The tables etl keeps for itself (`etl_tables`, `etl_columns`, `etl_progress`) contain no
//! dot, so they cannot collide with a replicated table either.
//!
//! SQLite compares identifiers without regard to ASCII case, Postgres does not: when a name is
//! already taken by another table or column that differs only in case, the later one gets the
//! suffix `~N` (tables: `N` is the source table OID; columns: the 1-based column position).
//! The metadata tables record every mapping, so readers never need to guess.

/// The SQLite table name for a source table, before any case-collision suffix.
pub fn table_name(schema: &str, table: &str) -> String {
    let mut out = String::with_capacity(schema.len() + table.len() + 1);
    for (index, c) in schema.char_indices() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            's' | 'S' if index == 0 && schema[..].to_ascii_lowercase().starts_with("sqlite_") => {
                out.push_str(if c == 's' { "%73" } else { "%53" })
            }
            c => out.push(c),
        }
    }
    out.push('.');
    out.push_str(table);
    out
}

/// `name~suffix`, the form a name takes when it collides in SQLite.
pub fn with_suffix(name: &str, suffix: impl std::fmt::Display) -> String {
    format!("{name}~{suffix}")
}

/// SQLite column names for source columns: the source name, or `name~position` when an earlier
/// column already has the same name in another ASCII case.
pub fn column_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (index, name) in names.into_iter().enumerate() {
        let taken = |candidate: &str| out.iter().any(|n| n.eq_ignore_ascii_case(candidate));
        let mut candidate = name.to_owned();
        if taken(&candidate) {
            candidate = with_suffix(name, index + 1);
        }
        out.push(candidate);
    }
    out
}

/// An SQLite identifier in double quotes (embedded quotes doubled).
pub fn quote(identifier: &str) -> String {
    crate::base::quote::quote_identifier(identifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_dots_and_percents_are_escaped_so_names_cannot_collide() {
        assert_eq!(table_name("public", "orders"), "public.orders");
        assert_eq!(table_name("a.b", "c"), "a%2Eb.c");
        assert_eq!(table_name("a", "b.c"), "a.b.c");
        assert_ne!(table_name("a%2Eb", "c"), table_name("a.b", "c"));
        assert_eq!(table_name("sqlite_x", "t"), "%73qlite_x.t");
        assert_eq!(table_name("SQLite_x", "t"), "%53QLite_x.t");
        assert_eq!(table_name("my sqlite_x", "t"), "my sqlite_x.t");
    }

    #[test]
    fn columns_differing_only_in_case_get_a_position_suffix() {
        assert_eq!(
            column_names(["id", "Name", "name", "NAME~3"]),
            vec!["id", "Name", "name~3", "NAME~3~4"]
        );
    }
}
