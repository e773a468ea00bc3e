//! The `sqlite` destination through the `Destination` trait, checked by reading the file.

use std::path::Path;
use std::sync::Arc;

use etl::base::event::{Cell, Change};
use etl::base::schema::{ColumnSchema, ReplicaIdentity};
use etl::destinations::sqlite::SqliteDestination;
use etl::engine::destination::{Destination, Error};
use rusqlite::types::Value;

use crate::common::TestDatabase;
use crate::helpers::*;

fn open(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open the sqlite file")
}

fn query(path: &Path, sql: &str) -> Vec<Vec<Value>> {
    let conn = open(path);
    let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let width = statement.column_count();
    statement
        .query_map([], |row| {
            (0..width).map(|i| row.get::<_, Value>(i)).collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn texts(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    query(path, sql)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::Integer(i) => Some(i.to_string()),
                    Value::Text(t) => Some(t),
                    other => Some(format!("{other:?}")),
                })
                .collect()
        })
        .collect()
}

/// Counts every row-level write to `table` in an `audit` table (SQLite triggers), so a test can
/// tell "applied once" from "applied twice with the same result".
fn audit(path: &Path, table: &str) {
    let t = format!("\"{}\"", table.replace('"', "\"\""));
    open(path)
        .execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS audit (op TEXT, id INTEGER);
             CREATE TRIGGER audit_i AFTER INSERT ON {t} BEGIN INSERT INTO audit VALUES ('i', new.id); END;
             CREATE TRIGGER audit_u AFTER UPDATE ON {t} BEGIN INSERT INTO audit VALUES ('u', new.id); END;
             CREATE TRIGGER audit_d AFTER DELETE ON {t} BEGIN INSERT INTO audit VALUES ('d', old.id); END;"
        ))
        .expect("install audit triggers");
}

fn audit_count(path: &Path) -> i64 {
    open(path)
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn every_postgres_type_keeps_its_exact_value_in_sqlite() {
    let db = TestDatabase::create("dest_sqlite_types").await;
    let pool = source_pool(&db).await;
    exec(&pool, ALL_TYPES).await;
    let schema = table_schema(&pool, "public.all_types").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data/etl.db");
    let destination = SqliteDestination::open(&file).unwrap();
    destination.prepare_table(&schema).await.unwrap();
    destination.begin_copy(&schema).await.unwrap();
    let chunk = copy_chunk(&pool, "select * from all_types").await;
    destination.write_copy_rows(&schema, chunk).await.unwrap();
    destination.finish_copy(&schema).await.unwrap();

    let columns = query(
        &file,
        "SELECT source_column, sqlite_affinity, pg_type FROM etl_columns ORDER BY position",
    );
    assert_eq!(columns.len(), schema.columns.len());
    let mut checked = 0;
    for column in &columns {
        let [
            Value::Text(name),
            Value::Text(affinity),
            Value::Text(pg_type),
        ] = &column[..]
        else {
            panic!("etl_columns row {column:?}")
        };
        // What Postgres says the value is, in the form the affinity promises.
        let expected_sql = match affinity.as_str() {
            "INTEGER" if pg_type == "bool" => format!("\"{name}\"::int::text"),
            "INTEGER" => format!("\"{name}\"::text"),
            "REAL" => format!("\"{name}\"::float8::text"),
            "BLOB" => format!("encode(\"{name}\", 'hex')"),
            // The output function's text (a cast to text would trim char(n) padding).
            _ => {
                format!("case when \"{name}\" is null then null else format('%s', \"{name}\") end")
            }
        };
        let expected: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select {expected_sql} from all_types order by id"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        let stored = query(
            &file,
            &format!("SELECT \"{name}\" FROM \"public.all_types\" ORDER BY id"),
        );
        for (row, (value, expected)) in stored.iter().map(|r| &r[0]).zip(&expected).enumerate() {
            let got = match (value, affinity.as_str()) {
                (Value::Null, _) => None,
                (Value::Integer(i), "INTEGER") => Some(i.to_string()),
                (Value::Real(f), "REAL") => Some(f.to_string()),
                (Value::Text(t), "REAL") if t == "NaN" => Some(t.clone()),
                (Value::Blob(b), "BLOB") => {
                    Some(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                }
                (Value::Text(t), "TEXT") => Some(t.clone()),
                (other, _) => panic!("column {name} row {row}: {other:?} under {affinity}"),
            };
            let expected = match (affinity.as_str(), expected) {
                // Compare floats as numbers (Rust and Postgres print them differently).
                ("REAL", Some(e)) if e != "NaN" => {
                    let parsed: f64 = match e.as_str() {
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        _ => e.parse().unwrap(),
                    };
                    Some(parsed.to_string())
                }
                (_, e) => e.clone(),
            };
            assert_eq!(got, expected, "column {name} ({pg_type}) row {row}");
            checked += 1;
        }
    }
    assert_eq!(checked, schema.columns.len() * 4);
    let types: Vec<Vec<Option<String>>> = texts(
        &file,
        "SELECT source_column, pg_type, sqlite_affinity FROM etl_columns \
         WHERE source_column IN ('n2', 'vc', 'ai', 'by', 'e', 'ts') ORDER BY position",
    );
    let strings = |r: &[&str]| r.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        types,
        vec![
            strings(&["n2", "numeric(12,2)", "TEXT"]),
            strings(&["vc", "character varying(10)", "TEXT"]),
            strings(&["by", "bytea", "BLOB"]),
            strings(&["ts", "timestamp(3)", "TEXT"]),
            strings(&[
                "e",
                &format!("user type {}", schema.columns[29].type_oid),
                "TEXT"
            ]),
            strings(&["ai", "int4[]", "TEXT"]),
        ]
    );
    assert_eq!(
        texts(&file, "PRAGMA journal_mode"),
        vec![vec![Some("wal".to_owned())]]
    );
    db.drop_database().await;
}

#[tokio::test]
async fn changes_are_mirrored_by_key_and_unchanged_toast_keeps_the_stored_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etl.db");
    let destination = SqliteDestination::open(&file).unwrap();
    let table = Arc::new(simple_table(
        16_400,
        "public",
        "people",
        ReplicaIdentity::Default,
        true,
    ));
    destination.prepare_table(&table).await.unwrap();
    destination.begin_copy(&table).await.unwrap();
    destination.finish_copy(&table).await.unwrap();
    let long = "x".repeat(10_000);
    destination
        .write_events(vec![
            event(
                &table,
                100,
                0,
                insert(row(&[Some("1"), Some("ann"), Some(&long)])),
            ),
            event(&table, 100, 1, insert(row(&[Some("2"), Some("bob"), None]))),
            event(
                &table,
                100,
                2,
                insert(row(&[Some("3"), Some("cy"), Some("c")])),
            ),
        ])
        .await
        .unwrap();
    destination
        .write_events(vec![
            // The TOASTed note was not sent: it must stay.
            event(
                &table,
                200,
                0,
                update(None, vec![text("1"), text("anne"), Cell::Unchanged]),
            ),
            // The key changed (old key sent), with an unchanged column too.
            event(
                &table,
                200,
                1,
                update(
                    Some(row(&[Some("2"), None, None])),
                    vec![text("20"), text("bobby"), Cell::Unchanged],
                ),
            ),
            event(&table, 200, 2, delete(row(&[Some("3"), None, None]))),
            event(
                &table,
                200,
                3,
                insert(row(&[Some("4"), Some("dee"), Some("\t\n\\")])),
            ),
        ])
        .await
        .unwrap();
    let rows = texts(
        &file,
        "SELECT id, name, note FROM \"public.people\" ORDER BY id",
    );
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("anne".into()), Some(long.clone())],
            vec![Some("4".into()), Some("dee".into()), Some("\t\n\\".into())],
            vec![Some("20".into()), Some("bobby".into()), None],
        ]
    );
    destination
        .write_events(vec![event(&table, 300, 0, Change::Truncate)])
        .await
        .unwrap();
    assert!(texts(&file, "SELECT * FROM \"public.people\"").is_empty());
    assert_eq!(
        texts(&file, "SELECT commit_lsn_text, ordinal FROM etl_progress"),
        vec![vec![Some("0/12C".into()), Some("0".into())]]
    );
}

#[tokio::test]
async fn replayed_changes_are_skipped_so_each_is_applied_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etl.db");
    let table = Arc::new(simple_table(
        16_401,
        "public",
        "counted",
        ReplicaIdentity::Default,
        true,
    ));
    let batch_one = vec![
        event(&table, 100, 0, insert(row(&[Some("1"), Some("a"), None]))),
        event(&table, 100, 1, insert(row(&[Some("2"), Some("b"), None]))),
        event(
            &table,
            150,
            0,
            update(None, row(&[Some("1"), Some("a2"), None])),
        ),
    ];
    let batch_two = vec![
        event(
            &table,
            200,
            0,
            update(None, row(&[Some("2"), Some("b2"), None])),
        ),
        event(&table, 200, 1, delete(row(&[Some("1"), None, None]))),
    ];
    {
        let destination = SqliteDestination::open(&file).unwrap();
        destination.prepare_table(&table).await.unwrap();
        destination.begin_copy(&table).await.unwrap();
        destination.finish_copy(&table).await.unwrap();
        audit(&file, "public.counted");
        destination.write_events(batch_one.clone()).await.unwrap();
    }
    assert_eq!(audit_count(&file), 3);
    // A restart replays from an older acknowledged position: the first batch again, then more.
    let destination = SqliteDestination::open(&file).unwrap();
    destination.prepare_table(&table).await.unwrap();
    let mut replay = batch_one.clone();
    replay.extend(batch_two.clone());
    destination.write_events(replay).await.unwrap();
    destination.write_events(batch_two).await.unwrap();
    destination
        .write_events(batch_one[2..].to_vec())
        .await
        .unwrap();
    assert_eq!(
        texts(&file, "SELECT op, id FROM audit ORDER BY rowid"),
        [("i", 1), ("i", 2), ("u", 1), ("u", 2), ("d", 1)]
            .iter()
            .map(|(op, id)| vec![Some(op.to_string()), Some(id.to_string())])
            .collect::<Vec<_>>(),
        "every change applied exactly once"
    );
    assert_eq!(
        texts(&file, "SELECT id, name FROM \"public.counted\""),
        vec![vec![Some("2".into()), Some("b2".into())]]
    );
    // A new copy forgets the position: the same positions apply again afterwards.
    destination.begin_copy(&table).await.unwrap();
    destination.finish_copy(&table).await.unwrap();
    destination.write_events(batch_one).await.unwrap();
    assert_eq!(
        texts(&file, "SELECT id, name FROM \"public.counted\" ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("a2".into())],
            vec![Some("2".into()), Some("b".into())]
        ]
    );
}

#[tokio::test]
async fn replica_identity_full_tables_without_a_key_match_rows_by_their_old_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etl.db");
    let destination = SqliteDestination::open(&file).unwrap();
    let table = Arc::new(simple_table(
        16_402,
        "public",
        "log",
        ReplicaIdentity::Full,
        false,
    ));
    destination.prepare_table(&table).await.unwrap();
    let dup = row(&[Some("1"), Some("same"), None]);
    destination
        .write_events(vec![
            event(&table, 100, 0, insert(dup.clone())),
            event(&table, 100, 1, insert(dup.clone())),
            event(
                &table,
                100,
                2,
                insert(row(&[Some("2"), Some("other"), Some("n")])),
            ),
            // One of two identical rows changes; a NULL old value matches a NULL.
            event(
                &table,
                200,
                0,
                update(Some(dup.clone()), row(&[Some("1"), Some("changed"), None])),
            ),
            event(
                &table,
                200,
                1,
                delete(row(&[Some("2"), Some("other"), Some("n")])),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        texts(
            &file,
            "SELECT id, name, note FROM \"public.log\" ORDER BY name"
        ),
        vec![
            vec![Some("1".into()), Some("changed".into()), None],
            vec![Some("1".into()), Some("same".into()), None],
        ]
    );
    // A keyless table that is not FULL cannot take updates.
    let plain = Arc::new(simple_table(
        16_403,
        "public",
        "plain",
        ReplicaIdentity::Default,
        false,
    ));
    destination.prepare_table(&plain).await.unwrap();
    let err = destination
        .write_events(vec![event(
            &plain,
            300,
            0,
            delete(row(&[Some("1"), None, None])),
        )])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Table { table, name, message } if *table == plain.id && name.ends_with(".plain") && message.contains("REPLICA IDENTITY FULL")),
        "{err}"
    );
}

#[tokio::test]
async fn columns_added_dropped_renamed_and_retyped_in_the_source_follow_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etl.db");
    let destination = SqliteDestination::open(&file).unwrap();
    let v1 = Arc::new(simple_table(
        16_404,
        "app",
        "items",
        ReplicaIdentity::Default,
        true,
    ));
    destination.prepare_table(&v1).await.unwrap();
    destination
        .write_events(vec![event(
            &v1,
            100,
            0,
            insert(row(&[Some("1"), Some("a"), Some("n")])),
        )])
        .await
        .unwrap();
    // Add a column: in place; old rows have NULL.
    let mut v2 = (*v1).clone();
    v2.columns.push(ColumnSchema {
        name: "Price".into(),
        type_oid: 1700,
        type_modifier: -1,
        nullable: true,
        primary_key_position: None,
        existing_rows_value: None,
    });
    destination.alter_table(&v1, &v2).await.unwrap();
    let v2 = Arc::new(v2);
    destination
        .write_events(vec![event(
            &v2,
            200,
            0,
            insert(row(&[Some("2"), Some("b"), None, Some("9.90")])),
        )])
        .await
        .unwrap();
    // Rename `name` → `title`, drop `note` (a rebuild), and an event of the new shape arrives
    // without an explicit alter_table call: the table still follows.
    let mut v3 = (*v2).clone();
    v3.columns[1].name = "title".into();
    v3.columns.remove(2);
    let v3 = Arc::new(v3);
    destination
        .write_events(vec![event(
            &v3,
            300,
            0,
            update(None, row(&[Some("1"), Some("a3"), Some("1.00")])),
        )])
        .await
        .unwrap();
    assert_eq!(
        texts(&file, "SELECT * FROM \"app.items\" ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("a3".into()), Some("1.00".into())],
            vec![Some("2".into()), Some("b".into()), Some("9.90".into())],
        ]
    );
    assert_eq!(
        texts(
            &file,
            "SELECT source_column, sqlite_column FROM etl_columns ORDER BY position"
        ),
        vec![
            vec![Some("id".into()), Some("id".into())],
            vec![Some("title".into()), Some("title".into())],
            vec![Some("Price".into()), Some("Price".into())],
        ]
    );
    // Retype id int4 → text (affinity change → rebuild; the key survives).
    let mut v4 = (*v3).clone();
    v4.columns[0].type_oid = 25;
    let v4 = Arc::new(v4);
    destination.alter_table(&v3, &v4).await.unwrap();
    destination
        .write_events(vec![event(
            &v4,
            400,
            0,
            update(None, row(&[Some("007"), Some("bond"), None])),
        )])
        .await
        .unwrap();
    assert_eq!(
        texts(
            &file,
            "SELECT id, typeof(id) FROM \"app.items\" ORDER BY id"
        ),
        vec![
            vec![Some("007".into()), Some("text".into())],
            vec![Some("1".into()), Some("text".into())],
            vec![Some("2".into()), Some("text".into())],
        ]
    );
    // The schema survives a restart: no alter on reopen, positions kept.
    drop(destination);
    let destination = SqliteDestination::open(&file).unwrap();
    destination.prepare_table(&v4).await.unwrap();
    destination
        .write_events(vec![event(
            &v4,
            400,
            0,
            delete(row(&[Some("007"), None, None])),
        )])
        .await
        .unwrap();
    assert_eq!(
        texts(&file, "SELECT count(*) FROM \"app.items\"")[0][0].as_deref(),
        Some("3")
    );
}

#[tokio::test]
async fn weird_and_colliding_identifiers_get_distinct_sqlite_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etl.db");
    let destination = SqliteDestination::open(&file).unwrap();
    let mut weird = simple_table(
        16_405,
        "My \"Schema\"",
        "Ta.ble ü",
        ReplicaIdentity::Default,
        true,
    );
    weird.columns[1].name = "Name".into();
    weird.columns[2].name = "name".into(); // differs from `Name` only in case
    let a = Arc::new(weird);
    // `a.b`.`c` and `a`.`b.c` would both be `a.b.c` without escaping.
    let b = Arc::new(simple_table(
        16_406,
        "a.b",
        "c",
        ReplicaIdentity::Default,
        true,
    ));
    let c = Arc::new(simple_table(
        16_407,
        "a",
        "b.c",
        ReplicaIdentity::Default,
        true,
    ));
    // Same name as `c` in another case: a suffix.
    let d = Arc::new(simple_table(
        16_408,
        "A",
        "B.C",
        ReplicaIdentity::Default,
        true,
    ));
    let e = Arc::new(simple_table(
        16_409,
        "sqlite_master",
        "t",
        ReplicaIdentity::Default,
        true,
    ));
    for table in [&a, &b, &c, &d, &e] {
        destination.prepare_table(table).await.unwrap();
        destination
            .write_events(vec![event(
                table,
                100,
                0,
                insert(row(&[Some("1"), Some("x"), Some("y")])),
            )])
            .await
            .unwrap();
    }
    assert_eq!(
        texts(
            &file,
            "SELECT source_schema, source_table, sqlite_table FROM etl_tables ORDER BY table_id"
        ),
        [
            ("My \"Schema\"", "Ta.ble ü", "My \"Schema\".Ta.ble ü"),
            ("a.b", "c", "a%2Eb.c"),
            ("a", "b.c", "a.b.c"),
            ("A", "B.C", "A.B.C~16408"),
            ("sqlite_master", "t", "%73qlite_master.t"),
        ]
        .iter()
        .map(|(s, t, n)| vec![
            Some(s.to_string()),
            Some(t.to_string()),
            Some(n.to_string())
        ])
        .collect::<Vec<_>>()
    );
    assert_eq!(
        texts(
            &file,
            "SELECT \"Name\", \"name~3\" FROM \"My \"\"Schema\"\".Ta.ble ü\""
        ),
        vec![vec![Some("x".into()), Some("y".into())]]
    );
    assert_eq!(
        texts(&file, "SELECT count(*) FROM \"A.B.C~16408\"")[0][0].as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn another_process_reads_the_file_while_changes_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etl.db");
    let destination = Arc::new(SqliteDestination::open(&file).unwrap());
    let table = Arc::new(simple_table(
        16_410,
        "public",
        "busy",
        ReplicaIdentity::Default,
        true,
    ));
    destination.prepare_table(&table).await.unwrap();
    let writer = {
        let destination = Arc::clone(&destination);
        let table = Arc::clone(&table);
        tokio::spawn(async move {
            for batch in 0..200u32 {
                let events = (0..50u32)
                    .map(|i| {
                        let id = (batch * 50 + i).to_string();
                        event(
                            &table,
                            100 + u64::from(batch) * 16,
                            i,
                            insert(row(&[Some(&id), Some("v"), None])),
                        )
                    })
                    .collect();
                destination.write_events(events).await.unwrap();
            }
        })
    };
    // The `sqlite3` CLI when installed, otherwise this test binary's own SQLite in a child.
    let mut last = 0;
    let mut reads = 0;
    while !writer.is_finished() || reads < 3 {
        let output = read_from_another_process(&file, "SELECT count(*) FROM \"public.busy\"").await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let count: u32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        assert!(
            count >= last && count.is_multiple_of(50),
            "a reader sees whole batches: {count}"
        );
        last = count;
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads >= 3);
    let output = read_from_another_process(&file, "SELECT count(*) FROM \"public.busy\"").await;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "10000");
}

/// Runs `sql` on the file in another process: the `sqlite3` CLI, or Python's sqlite3 module.
async fn read_from_another_process(file: &Path, sql: &str) -> std::process::Output {
    let cli = tokio::process::Command::new("sqlite3")
        .arg(file)
        .arg(sql)
        .output()
        .await;
    match cli {
        Ok(output) => output,
        Err(_) => tokio::process::Command::new("python3")
            .arg("-c")
            .arg("import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])")
            .arg(file)
            .arg(sql)
            .output()
            .await
            .expect("neither the sqlite3 CLI nor python3 is installed"),
    }
}

#[tokio::test]
async fn an_unusable_path_is_a_fatal_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let err = SqliteDestination::open(blocker.join("etl.db")).expect_err("must fail");
    assert!(matches!(err, Error::Fatal { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let err = SqliteDestination::open(&garbage).expect_err("must fail");
    assert!(err.to_string().contains("garbage.db"), "{err}");
}
