//! Creating mirrored tables and making them follow the source's schema changes.
//!
//! Added columns and renames (of columns or of the table) are done in place with `ALTER TABLE`;
//! an added column whose source rows read a default (`ADD COLUMN … DEFAULT x`) gets that value
//! in the rows already here.
//! Everything else (a dropped column, a type change that changes the affinity, a different key)
//! rebuilds the table: a new table of the new shape is filled from the old one inside the same
//! transaction, which then replaces it. Kept values are copied as stored; under a new affinity
//! SQLite converts them where it can (`'42'` → `42`), so rows written before a type change keep
//! their old form until the source changes them again.

use rusqlite::Connection;

use crate::base::schema::TableSchema;
use crate::destinations::schema_diff::SchemaDiff;

use super::metadata;
use super::naming::quote;
use super::table::MirrorTable;
use super::types::to_sqlite;

/// The name a rebuild fills before it replaces the table (no dot: cannot be a mirrored table).
const REBUILD_NAME: &str = "etl_rebuild";

/// Creates the SQLite table of a source table that has none yet, and records it.
pub fn create(conn: &Connection, schema: &TableSchema) -> Result<MirrorTable, rusqlite::Error> {
    let name = metadata::choose_name(conn, schema, None)?;
    let table = MirrorTable::new(schema.clone(), name);
    conn.execute_batch(&table.create_sql(&table.name))?;
    metadata::save_table(conn, &table)?;
    Ok(table)
}

/// Changes `old`'s SQLite table to the shape of `new`; returns the table as it now is.
pub fn alter(
    conn: &Connection,
    old: &MirrorTable,
    new: &TableSchema,
) -> Result<MirrorTable, rusqlite::Error> {
    let diff = SchemaDiff::between(&old.schema, new);
    let mut name = old.name.clone();
    if diff.table_renamed {
        let candidate = metadata::choose_name(conn, new, Some(&old.name))?;
        if candidate != old.name {
            conn.execute_batch(&format!(
                "ALTER TABLE {} RENAME TO {}",
                quote(&old.name),
                quote(&candidate)
            ))?;
            name = candidate;
        }
    }
    let table = MirrorTable::new(new.clone(), name);
    if let Some(renames) = in_place_renames(old, &table, &diff) {
        for (from, to) in renames {
            conn.execute_batch(&format!(
                "ALTER TABLE {} RENAME COLUMN {} TO {}",
                table.quoted(),
                quote(&from),
                quote(&to)
            ))?;
        }
        for &index in &diff.added {
            conn.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                table.quoted(),
                quote(&table.columns[index]),
                table.affinity(index).sql()
            ))?;
        }
    } else {
        rebuild(conn, old, &table, &diff)?;
    }
    fill_existing_rows(conn, &table, &diff.added)?;
    metadata::save_table(conn, &table)?;
    Ok(table)
}

/// Gives the rows already in the table the value the source's old rows read in each added
/// column that has one (`ADD COLUMN … DEFAULT x`), instead of NULL.
fn fill_existing_rows(
    conn: &Connection,
    table: &MirrorTable,
    added: &[usize],
) -> Result<(), rusqlite::Error> {
    for &index in added {
        let column = &table.schema.columns[index];
        let Some(text) = &column.existing_rows_value else {
            continue;
        };
        let value = to_sqlite(column.type_oid, text)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        conn.execute(
            &format!(
                "UPDATE {} SET {} = ?1",
                table.quoted(),
                quote(&table.columns[index])
            ),
            [value],
        )?;
    }
    Ok(())
}

/// The column renames that turn `old` into `new` in place, or `None` when the change needs a
/// rebuild (a drop, an affinity change, a key change, or renames that would pass through a name
/// still in use).
fn in_place_renames(
    old: &MirrorTable,
    new: &MirrorTable,
    diff: &SchemaDiff,
) -> Option<Vec<(String, String)>> {
    if !diff.dropped.is_empty() || diff.key_changed {
        return None;
    }
    if diff
        .retyped
        .iter()
        .any(|&(o, n)| old.affinity(o) != new.affinity(n))
    {
        return None;
    }
    let mut renames = Vec::new();
    for (index, source) in diff.source_of.iter().enumerate() {
        let Some(source) = *source else { continue };
        let (from, to) = (&old.columns[source], &new.columns[index]);
        if from == to {
            continue;
        }
        let collides = old
            .columns
            .iter()
            .enumerate()
            .any(|(i, c)| i != source && c.eq_ignore_ascii_case(to));
        if collides {
            return None;
        }
        renames.push((from.clone(), to.clone()));
    }
    let added_collides = diff.added.iter().any(|&index| {
        old.columns
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&new.columns[index]))
    });
    (!added_collides).then_some(renames)
}

/// Replaces the table by one of the new shape holding the same rows.
fn rebuild(
    conn: &Connection,
    old: &MirrorTable,
    new: &MirrorTable,
    diff: &SchemaDiff,
) -> Result<(), rusqlite::Error> {
    let kept: Vec<(usize, usize)> = diff
        .source_of
        .iter()
        .enumerate()
        .filter_map(|(n, source)| source.map(|o| (o, n)))
        .collect();
    let target: Vec<String> = kept.iter().map(|&(_, n)| quote(&new.columns[n])).collect();
    let source: Vec<String> = kept.iter().map(|&(o, _)| quote(&old.columns[o])).collect();
    let mut sql = format!(
        "DROP TABLE IF EXISTS {rebuild}; {create};",
        rebuild = quote(REBUILD_NAME),
        create = new.create_sql(REBUILD_NAME)
    );
    if !kept.is_empty() {
        // `OR IGNORE`: a new key that the old rows repeat keeps the first of them.
        sql.push_str(&format!(
            "INSERT OR IGNORE INTO {} ({}) SELECT {} FROM {};",
            quote(REBUILD_NAME),
            target.join(", "),
            source.join(", "),
            quote(&new.name)
        ));
    }
    sql.push_str(&format!(
        "DROP TABLE {}; ALTER TABLE {} RENAME TO {};",
        quote(&new.name),
        quote(REBUILD_NAME),
        quote(&new.name)
    ));
    conn.execute_batch(&sql)
}
