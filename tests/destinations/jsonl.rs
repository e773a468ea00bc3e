//! The `jsonl` destination through the `Destination` trait, checked by parsing the lines.

use std::path::Path;
use std::sync::Arc;

use etl::base::event::{Cell, Change};
use etl::base::schema::ReplicaIdentity;
use etl::destinations::jsonl::JsonlDestination;
use etl::engine::Destination;
use serde_json::{Value, json};

use crate::common::TestDatabase;
use crate::helpers::*;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn every_change_is_one_json_object_with_values_typed_where_json_is_exact() {
    let db = TestDatabase::create("dest_jsonl_types").await;
    let pool = source_pool(&db).await;
    exec(&pool, ALL_TYPES).await;
    let schema = Arc::new(table_schema(&pool, "public.all_types").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/changes.jsonl");
    let destination = JsonlDestination::file(&path, None).unwrap();
    destination.prepare_table(&schema).await.unwrap();
    destination.begin_copy(&schema).await.unwrap();
    let chunk = copy_chunk(&pool, "select * from all_types where id <= 2 order by id").await;
    destination.write_copy_rows(&schema, chunk).await.unwrap();
    destination.finish_copy(&schema).await.unwrap();
    let width = schema.columns.len();
    let row3 = rows(&pool, "select * from all_types where id = 3", width)
        .await
        .remove(0);
    let mut row3_toast = row3.clone();
    row3_toast[8] = Cell::Unchanged; // `t` not sent
    let key3 = row(&[Some("3")])
        .into_iter()
        .chain(std::iter::repeat_n(Cell::Null, width - 1))
        .collect::<Vec<_>>();
    destination
        .write_events(vec![
            event(&schema, 0x1_0000_0100, 0, insert(row3.clone())),
            event(&schema, 0x1_0000_0100, 1, update(None, row3_toast)),
            event(&schema, 0x1_0000_0200, 0, delete(key3)),
            event(&schema, 0x1_0000_0300, 0, Change::Truncate),
        ])
        .await
        .unwrap();
    let lines = lines(&path);
    let ops: Vec<&str> = lines.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "truncate", "read", "read", "insert", "update", "delete", "truncate"
        ]
    );
    for line in &lines {
        assert_eq!(line["schema"], "public");
        assert_eq!(line["table"], "all_types");
        let fields: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 12, "every field on every line: {fields:?}");
    }
    // The copy starts with a truncate without positions; reads have none either.
    assert_eq!(lines[0]["commit_lsn"], Value::Null);
    assert_eq!(lines[1]["lsn"], Value::Null);
    let read = &lines[1]["new"];
    assert_eq!(lines[1]["key"], json!({"id": 1}));
    assert_eq!(read["b"], json!(true));
    assert_eq!(read["i8"], json!(9_223_372_036_854_775_807i64));
    assert_eq!(read["f4"].to_string(), "1.1");
    assert_eq!(read["f8"].to_string(), "3.141592653589793");
    assert_eq!(
        read["n"],
        json!("12345678901234567890.123456789012345678901234567890")
    );
    assert_eq!(read["n2"], json!("1.10"));
    assert_eq!(
        read["t"],
        json!("tab\there\nnewline \\ backslash \"quote\" 'single' é 💡")
    );
    assert_eq!(read["c"], json!("ab "));
    assert_eq!(read["by"], json!("AP8Q"));
    assert_eq!(read["u"], json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_eq!(read["jb"]["z"], json!({"y": null}));
    assert_eq!(read["tstz"], json!("2024-02-29 11:45:06.5+00"));
    assert_eq!(read["o"], json!(4_294_967_295u32));
    assert_eq!(read["e"], json!("happy"));
    assert_eq!(
        read["dom"],
        json!("7"),
        "domains carry their OID, not the base type's: text"
    );
    assert_eq!(read["ai"], json!([1, null, 3]));
    assert_eq!(read["at"], json!(["a b", "c\"d", null, "NULL", ""]));
    assert_eq!(read["a2"], json!([[1, 2], [3, 4]]));
    assert_eq!(read["af"][0], json!("NaN"));
    assert_eq!(read["af"][1], json!("Infinity"));
    assert_eq!(read["af"][2].as_f64(), Some(0.0));
    assert_eq!(read["af"][3].as_f64(), Some(1e-300));
    assert_eq!(read["an"], json!(["1.50", "NaN"]));
    assert_eq!(read["aj"], json!([{"k": 1}]));
    let second = &lines[2]["new"];
    assert_eq!(second["f4"], json!("NaN"));
    assert_eq!(second["f8"], json!("-Infinity"));
    assert_eq!(second["by"], json!(""));
    assert_eq!(second["a2"], json!("[0:1]={5,6}"));
    assert_eq!(second["d"], json!("0044-03-15 BC"));
    // The json column keeps its text exactly (duplicate keys and spacing included).
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(
        raw.contains(r#""j":{"b": 1, "a": [1, 2.50], "b": 2}"#),
        "{raw}"
    );
    assert!(raw.contains(r#""a": 12345678901234567890123"#), "{raw}");

    let insert = &lines[3];
    assert_eq!(insert["commit_lsn"], json!("1/100"));
    assert_eq!(insert["ordinal"], json!(0));
    assert_eq!(insert["old"], Value::Null);
    assert_eq!(insert["commit_time"].as_str().unwrap().len(), 27);
    let update = &lines[4];
    assert_eq!(update["ordinal"], json!(1));
    assert!(
        update["new"].get("t").is_none(),
        "an unchanged TOAST column is left out"
    );
    assert_eq!(update["unchanged"], json!(["t"]), "and named");
    assert_eq!(insert["unchanged"], Value::Null);
    assert_eq!(update["new"]["f4"], json!("Infinity"));
    let delete = &lines[5];
    assert_eq!(delete["key"], json!({"id": 3}));
    assert_eq!(delete["old"], json!({"id": 3}));
    assert_eq!(delete["new"], Value::Null);
    assert_eq!(lines[6]["commit_lsn"], json!("1/300"));
    db.drop_database().await;
}

#[tokio::test]
async fn full_identity_deletes_carry_the_whole_old_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.jsonl");
    let destination = JsonlDestination::file(&path, None).unwrap();
    let table = Arc::new(simple_table(16_500, "s", "t", ReplicaIdentity::Full, false));
    let old = row(&[Some("1"), Some("a"), None]);
    destination
        .write_events(vec![
            event(
                &table,
                0x10,
                0,
                update(Some(old.clone()), row(&[Some("1"), Some("b"), None])),
            ),
            event(&table, 0x10, 1, delete(row(&[Some("1"), Some("b"), None]))),
        ])
        .await
        .unwrap();
    let lines = lines(&path);
    assert_eq!(lines[0]["key"], Value::Null, "no key columns");
    assert_eq!(lines[0]["old"], json!({"id": 1, "name": "a", "note": null}));
    assert_eq!(lines[1]["old"], json!({"id": 1, "name": "b", "note": null}));
}

#[tokio::test]
async fn files_rotate_by_size_without_splitting_lines_and_replays_can_be_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.jsonl");
    let table = Arc::new(simple_table(
        16_501,
        "public",
        "t",
        ReplicaIdentity::Default,
        true,
    ));
    let max = 2_000u64;
    let batch = |start: u32| -> Vec<_> {
        (start..start + 10)
            .map(|i| {
                let id = i.to_string();
                event(
                    &table,
                    0x100 + u64::from(i / 4) * 0x10,
                    i % 4,
                    insert(row(&[Some(&id), Some("name"), Some("note")])),
                )
            })
            .collect()
    };
    {
        let destination = JsonlDestination::file(&path, Some(max)).unwrap();
        for start in (0..100).step_by(10) {
            destination.write_events(batch(start)).await.unwrap();
        }
    }
    // A crash mid-line leaves a partial object; reopening removes it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"op\":\"ins"))
        .unwrap();
    {
        let destination = JsonlDestination::file(&path, Some(max)).unwrap();
        // After the "restart", the last batch is replayed, then new changes follow.
        destination.write_events(batch(90)).await.unwrap();
        destination.write_events(batch(100)).await.unwrap();
    }
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &path)
        .collect();
    files.sort();
    files.push(path.clone());
    assert!(files.len() > 5, "{files:?}");
    let mut seen = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= max, "{} is {size} bytes", file.display());
        if file != &path {
            assert!(
                file.to_string_lossy()
                    .ends_with(&format!(".{:06}", index + 1)),
                "{}",
                file.display()
            );
        }
        for line in lines(file) {
            seen.push((
                line["commit_lsn"].as_str().unwrap().to_owned(),
                line["ordinal"].as_u64().unwrap(),
                line["new"]["id"].as_u64().unwrap(),
            ));
        }
    }
    assert_eq!(seen.len(), 120, "110 changes, 10 of them written twice");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup_by(|a, b| (&a.0, a.1) == (&b.0, b.1));
    let ids: Vec<u64> = unique.iter().map(|(_, _, id)| *id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..110).collect::<Vec<_>>(),
        "(commit_lsn, ordinal) tells replays apart"
    );
}
