//! Does a destination hold exactly the source's rows? One check per destination, each returning
//! a description of the first difference (`None`: equal), so callers can poll or assert.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use etl::destinations::jsonl::encode;
use rusqlite::types::Value as SqlValue;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{copy_chunk, table_schema};

/// `(schema, name)` of a source table given as SQL (`public.t`, `"My ""S"""."T"`).
pub async fn source_name(pool: &PgPool, table: &str) -> (String, String) {
    sqlx::query_as(
        "select n.nspname::text, c.relname::text from pg_class c \
         join pg_namespace n on n.oid = c.relnamespace where c.oid = $1::regclass",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("{table}: {e}"))
}

/// A Postgres expression giving `column`'s value in the form SQLite stores it under
/// `affinity`, as text.
fn sqlite_expected_sql(column: &str, affinity: &str, pg_type: &str) -> String {
    match affinity {
        "INTEGER" if pg_type == "bool" => format!("{column}::int::text"),
        "INTEGER" => format!("{column}::text"),
        "REAL" => format!("{column}::float8::text"),
        "BLOB" => format!("encode({column}, 'hex')"),
        // The output function's text (a cast to text would trim char(n) padding).
        _ => format!("case when {column} is null then null else format('%s', {column}) end"),
    }
}

/// Floats compared as numbers (Rust and Postgres print them differently); `NaN` as text.
fn canonical_real(text: &str) -> String {
    match text {
        "NaN" => "NaN".into(),
        "Infinity" => f64::INFINITY.to_string(),
        "-Infinity" => f64::NEG_INFINITY.to_string(),
        _ => text
            .parse::<f64>()
            .map_or(text.to_owned(), |f| f.to_string()),
    }
}

fn sqlite_text(value: SqlValue, affinity: &str) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Integer(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(f.to_string()),
        SqlValue::Text(t) if affinity == "REAL" => Some(canonical_real(&t)),
        SqlValue::Text(t) => Some(t),
        SqlValue::Blob(b) => Some(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

/// Compares the SQLite mirror of `table` (as recorded in `etl_tables`/`etl_columns`) with the
/// source, as multisets of rows.
pub async fn sqlite_differences(pool: &PgPool, file: &Path, table: &str) -> Option<String> {
    let (schema, name) = source_name(pool, table).await;
    let conn = rusqlite::Connection::open(file).expect("open sqlite");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let mapped: Result<(i64, String), _> = conn.query_row(
        "SELECT table_id, sqlite_table FROM etl_tables WHERE source_schema = ?1 AND source_table = ?2",
        [&schema, &name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    let Ok((table_id, sqlite_table)) = mapped else {
        return Some(format!("{table} is not in etl_tables"));
    };
    let mut statement = conn
        .prepare(
            "SELECT source_column, sqlite_column, sqlite_affinity, pg_type FROM etl_columns \
             WHERE table_id = ?1 ORDER BY position",
        )
        .unwrap();
    let columns: Vec<(String, String, String, String)> = statement
        .query_map([table_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let quote = etl::base::quote::quote_identifier;
    let expected_sql: Vec<String> = columns
        .iter()
        .map(|(source, _, affinity, pg_type)| {
            sqlite_expected_sql(&quote(source), affinity, pg_type)
        })
        .collect();
    let expected_rows: Result<Vec<Vec<Option<String>>>, _> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select array[{}]::text[] from {table}",
            expected_sql.join(", ")
        )))
        .fetch_all(pool)
        .await;
    let Ok(expected_rows) = expected_rows else {
        return Some(format!(
            "{table}: the mirror's columns {columns:?} are not the source's"
        ));
    };
    let mut expected: Vec<Vec<Option<String>>> = expected_rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .zip(&columns)
                .map(|(v, (_, _, affinity, _))| {
                    v.map(|v| {
                        if affinity == "REAL" {
                            canonical_real(&v)
                        } else {
                            v
                        }
                    })
                })
                .collect()
        })
        .collect();
    let select: Vec<String> = columns.iter().map(|(_, c, _, _)| quote(c)).collect();
    let mut statement = conn
        .prepare(&format!(
            "SELECT {} FROM {}",
            select.join(", "),
            quote(&sqlite_table)
        ))
        .unwrap();
    let mut actual: Vec<Vec<Option<String>>> = statement
        .query_map([], |row| {
            (0..columns.len())
                .map(|i| Ok(sqlite_text(row.get::<_, SqlValue>(i)?, &columns[i].2)))
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    expected.sort();
    actual.sort();
    differences(table, expected, actual)
}

fn differences<T: std::fmt::Debug + PartialEq>(
    table: &str,
    expected: Vec<T>,
    actual: Vec<T>,
) -> Option<String> {
    if expected.is_empty() {
        return Some(format!(
            "{table} is empty in the source: nothing was compared"
        ));
    }
    if expected == actual {
        return None;
    }
    if expected.len() != actual.len() {
        return Some(format!(
            "{table}: {} rows in the source, {} in the destination",
            expected.len(),
            actual.len()
        ));
    }
    let (e, a) = expected
        .iter()
        .zip(&actual)
        .find(|(e, a)| e != a)
        .expect("a differing row");
    Some(format!(
        "{table}: source row {e:?} vs destination row {a:?}"
    ))
}

/// Compares a Postgres mirror with the source table: the target's rows are copied into a
/// temporary table beside the source, then `EXCEPT ALL` both ways on the rows' text.
pub async fn mirror_differences(
    source: &PgPool,
    target: &PgPool,
    source_table: &str,
    target_table: &str,
) -> Option<String> {
    let mut conn = source.acquire().await.expect("source connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop table if exists pg_temp.mirror_copy; \
         create temp table mirror_copy (like {source_table})"
    )))
    .execute(&mut *conn)
    .await
    .expect("scratch table");
    let chunk = copy_chunk(target, &format!("select * from {target_table}")).await;
    let mut copy = match conn
        .copy_in_raw("COPY pg_temp.mirror_copy FROM STDIN")
        .await
    {
        Ok(copy) => copy,
        Err(e) => return Some(format!("{target_table}: {e}")),
    };
    copy.send(chunk.raw()).await.expect("copy data");
    if let Err(e) = copy.finish().await {
        return Some(format!(
            "{target_table} does not have the source's shape: {e}"
        ));
    }
    let mut found = None;
    for (a, b) in [
        (source_table, "pg_temp.mirror_copy"),
        ("pg_temp.mirror_copy", source_table),
    ] {
        let extra: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select row(a_row.*)::text from {a} a_row except all \
             select row(b_row.*)::text from {b} b_row limit 3"
        )))
        .fetch_all(&mut *conn)
        .await
        .expect("except query");
        if !extra.is_empty() && found.is_none() {
            found = Some(format!("rows of {a} missing from {b}: {extra:?}"));
        }
    }
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from {source_table}"
    )))
    .fetch_one(&mut *conn)
    .await
    .expect("count");
    if count == 0 && found.is_none() {
        found = Some(format!("{source_table} is empty: nothing was compared"));
    }
    found
}

/// The JSON-lines files of a destination in write order (rotated ones, then the active one).
pub fn jsonl_files(active: &Path) -> Vec<PathBuf> {
    let dir = active.parent().expect("a directory");
    let base = active
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{base}.")))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.push(active.to_owned());
    files
}

/// One table as a consumer of the lines holds it: rows by key (keyed tables) or a multiset
/// of rows (keyless tables, identified by the whole old row), and the positions seen.
#[derive(Default)]
struct ReplayedTable {
    keyed: HashMap<String, Value>,
    keyless: Vec<Value>,
    seen: HashSet<(String, u64)>,
}

impl ReplayedTable {
    fn into_rows(self) -> Vec<Value> {
        let mut rows = self.keyless;
        rows.extend(self.keyed.into_values());
        rows
    }
}

/// The row after a change: `new`, plus the held values of the columns it names `unchanged`
/// (TOAST the source did not send). Held columns missing from `new` otherwise were dropped.
fn changed_row(held: Option<Value>, line: &Value) -> Value {
    let mut row = line["new"].clone();
    if let (Some(held), Some(unchanged)) = (held, line["unchanged"].as_array()) {
        for column in unchanged {
            let column = column.as_str().unwrap();
            row[column] = held.get(column).cloned().unwrap_or(Value::Null);
        }
    }
    row
}

/// The text identifying a row by `key` (an object of key columns) with values from `row`.
fn key_of(key: &serde_json::Map<String, Value>, row: &Value) -> String {
    let values: Vec<&Value> = key
        .keys()
        .map(|k| row.get(k).unwrap_or(&Value::Null))
        .collect();
    serde_json::to_string(&values).unwrap()
}

/// The state a consumer of the lines reaches: per `schema.table`, the current rows (`new`
/// objects, completed by the held values of their `unchanged` columns), deduplicated by
/// `(commit_lsn, ordinal)`. A `truncate` without positions starts a
/// table's copy over, so it also forgets the positions seen for that table. Rows are found by
/// key in a map, so a replay is linear in the number of lines.
pub fn replay_jsonl(files: &[PathBuf]) -> HashMap<String, Vec<Value>> {
    let mut tables: HashMap<String, ReplayedTable> = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let table = format!(
                "{}.{}",
                line["schema"].as_str().unwrap(),
                line["table"].as_str().unwrap()
            );
            let state = tables.entry(table).or_default();
            if let Some(commit_lsn) = line["commit_lsn"].as_str() {
                let position = (commit_lsn.to_owned(), line["ordinal"].as_u64().unwrap());
                if !state.seen.insert(position) {
                    continue;
                }
            }
            let op = line["op"].as_str().unwrap();
            if op == "truncate" {
                state.keyed.clear();
                state.keyless.clear();
                if line["commit_lsn"].is_null() {
                    state.seen.clear();
                }
                continue;
            }
            let new = &line["new"];
            let Some(key) = line["key"].as_object() else {
                // Keyless: `old` is the whole old row.
                let old = (op == "update" || op == "delete")
                    .then(|| state.keyless.iter().position(|row| row == &line["old"]))
                    .flatten()
                    .map(|i| state.keyless.swap_remove(i));
                if op != "delete" {
                    state.keyless.push(changed_row(old, &line));
                }
                continue;
            };
            // `key` holds the key before the change (the old key when an update changed it).
            let old = state
                .keyed
                .remove(&key_of(key, &Value::Object(key.clone())));
            match op {
                "read" | "insert" => {
                    state.keyed.insert(key_of(key, new), new.clone());
                }
                "update" => {
                    let row = changed_row(old, &line);
                    state.keyed.insert(key_of(key, &row), row);
                }
                "delete" => {}
                other => panic!("unknown op {other}"),
            }
        }
    }
    tables
        .into_iter()
        .map(|(name, table)| (name, table.into_rows()))
        .collect()
}

/// Changes (not copy rows) in the lines: for `schema.table`, per op letter (`D`, `I`, `U`) how
/// many distinct positions `(commit_lsn, ordinal)`; and over every table, how many lines
/// repeated a position (the at-least-once redeliveries after a crash).
pub fn jsonl_change_counts(files: &[PathBuf], table: &str) -> (Vec<(String, i64)>, usize) {
    let mut seen: HashSet<(String, String, u64)> = HashSet::new();
    let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
    let mut repeated = 0;
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let Some(commit_lsn) = line["commit_lsn"].as_str() else {
                continue;
            };
            let name = format!(
                "{}.{}",
                line["schema"].as_str().unwrap(),
                line["table"].as_str().unwrap()
            );
            let ordinal = line["ordinal"].as_u64().unwrap();
            if !seen.insert((name.clone(), commit_lsn.to_owned(), ordinal)) {
                repeated += 1;
                continue;
            }
            let op = line["op"].as_str().unwrap();
            if name == table && op != "truncate" {
                *counts.entry(op[..1].to_uppercase()).or_default() += 1;
            }
        }
    }
    (counts.into_iter().collect(), repeated)
}

/// Compares the replayed state of `table` with the source rows encoded as `read` lines.
pub async fn jsonl_differences(
    pool: &PgPool,
    state: &HashMap<String, Vec<Value>>,
    table: &str,
) -> Option<String> {
    let (schema_name, name) = source_name(pool, table).await;
    let schema = table_schema(pool, table).await;
    let rows = crate::helpers::rows(
        pool,
        &format!("select * from {table}"),
        schema.columns.len(),
    )
    .await;
    let mut expected: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut line = Vec::new();
            encode::read_line(&mut line, &schema, row);
            let line: Value = serde_json::from_slice(&line).unwrap();
            line["new"].to_string()
        })
        .collect();
    let mut actual: Vec<String> = state
        .get(&format!("{schema_name}.{name}"))
        .map(|rows| rows.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    expected.sort();
    actual.sort();
    differences(table, expected, actual)
}
