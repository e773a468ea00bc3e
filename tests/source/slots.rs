//! Slots and snapshots: a temporary slot with `SNAPSHOT 'use'` gives the copy exactly the rows
//! committed before its consistent point (and the stream everything after); an exported snapshot
//! can be imported by another session.

use std::time::Duration;

use etl::base::event::Cell;
use etl::base::lsn::Lsn;
use etl::engine::source::{
    Error, PgOutputMessage, PgOutputOptions, ReplicationMessage, SnapshotAction, TupleData,
};
use sqlx::Connection;

use crate::common::TestDatabase;
use crate::helpers::{connect, drop_slot, slot_name};

#[tokio::test]
async fn copy_in_a_used_snapshot_sees_exactly_the_rows_before_the_consistent_point() {
    let db = TestDatabase::create("src_snapuse").await;
    let pool = db.pool().await;
    sqlx::query("create table items (id int primary key, label text)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("insert into items select g, 'before ' || g from generate_series(1, 5000) g")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("create publication snap_pub for table items")
        .execute(&pool)
        .await
        .unwrap();

    let mut client = connect(&db).await;
    client
        .simple_query("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let slot = slot_name("snapuse");
    let created = client
        .create_slot(&slot, true, SnapshotAction::Use)
        .await
        .unwrap();
    assert_eq!(created.name, slot);
    assert!(created.snapshot_name.is_none());
    assert!(!created.consistent_point.is_zero());

    // Committed after the consistent point: invisible to the copy, delivered by the stream.
    sqlx::query("insert into items select g, 'after ' || g from generate_series(5001, 5010) g")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("update items set label = 'changed' where id = 1")
        .execute(&pool)
        .await
        .unwrap();

    let mut copied = Vec::new();
    let mut chunks = 0;
    {
        let mut copy = client
            .copy_out("COPY public.items (id, label) TO STDOUT")
            .await
            .unwrap();
        while let Some(chunk) = copy.next_chunk().await.unwrap() {
            assert!(chunk.raw().ends_with(b"\n"));
            assert!(
                chunk.raw().len() < 64 * 1024 + 100,
                "chunks stay near 64 KiB"
            );
            chunks += 1;
            copied.extend(chunk.rows(2).unwrap());
        }
        assert_eq!(copy.rows_read(), 5000);
    }
    assert!(chunks >= 2, "5000 rows of ~15 bytes span several chunks");
    let expected: Vec<Vec<Cell>> = (1..=5000)
        .map(|i| vec![Cell::Text(i.to_string()), Cell::Text(format!("before {i}"))])
        .collect();
    assert_eq!(copied, expected);
    client.simple_query("COMMIT").await.unwrap();

    // The same session streams the slot: exactly the later changes, none of the copied rows.
    let options = PgOutputOptions {
        publication_names: vec!["snap_pub".into()],
        proto_version: 1,
        messages: false,
        streaming: false,
    };
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options)
        .await
        .unwrap();
    let mut inserted = Vec::new();
    let mut updated = Vec::new();
    let mut commits = 0;
    while commits < 2 {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("stream delivers the changes")
            .unwrap()
            .expect("stream open");
        let ReplicationMessage::XLogData { message, .. } = message else {
            continue;
        };
        match message {
            PgOutputMessage::Insert { new, .. } => inserted.push(new),
            PgOutputMessage::Update { new, .. } => updated.push(new),
            PgOutputMessage::Commit { commit_lsn, .. } => {
                assert!(commit_lsn > created.consistent_point);
                commits += 1;
            }
            _ => {}
        }
    }
    let text = |s: String| TupleData::Text(s.into());
    let expected: Vec<Vec<TupleData>> = (5001..=5010)
        .map(|i| vec![text(i.to_string()), text(format!("after {i}"))])
        .collect();
    assert_eq!(inserted, expected);
    assert_eq!(
        updated,
        vec![vec![text("1".into()), text("changed".into())]]
    );
    stream.finish().await.unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn an_exported_snapshot_is_importable_by_another_session() {
    let db = TestDatabase::create("src_snapexp").await;
    let pool = db.pool().await;
    sqlx::query("create table t (id int primary key)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("insert into t select generate_series(1, 10)")
        .execute(&pool)
        .await
        .unwrap();

    let mut client = connect(&db).await;
    let slot = slot_name("snapexp");
    let created = client
        .create_slot(&slot, false, SnapshotAction::Export)
        .await
        .unwrap();
    let snapshot = created
        .snapshot_name
        .clone()
        .expect("exported snapshot name");

    sqlx::query("insert into t select generate_series(11, 20)")
        .execute(&pool)
        .await
        .unwrap();

    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("begin isolation level repeatable read")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "set transaction snapshot '{snapshot}'"
    )))
    .execute(&mut other)
    .await
    .unwrap();
    let ids: Vec<i32> = sqlx::query_scalar("select id from t order by id")
        .fetch_all(&mut other)
        .await
        .unwrap();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    sqlx::query("commit").execute(&mut other).await.unwrap();

    // A second replication session imports it too and copies a CTID range inside it (how a
    // large table is copied over several connections).
    let mut copier = connect(&db).await;
    copier
        .simple_query(&format!(
            "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'"
        ))
        .await
        .unwrap();
    let mut rows = Vec::new();
    {
        let mut copy = copier
            .copy_out("COPY (select id from t where ctid >= '(0,0)'::tid order by id) TO STDOUT")
            .await
            .unwrap();
        while let Some(chunk) = copy.next_chunk().await.unwrap() {
            rows.extend(chunk.rows(1).unwrap());
        }
    }
    copier.simple_query("COMMIT").await.unwrap();
    let expected: Vec<Vec<Cell>> = (1..=10).map(|i| vec![Cell::Text(i.to_string())]).collect();
    assert_eq!(rows, expected);

    // The slot is permanent: it survives this session and shows its consistent point.
    client.close().await.unwrap();
    let restart: String = sqlx::query_scalar(
        "select confirmed_flush_lsn::text from pg_replication_slots where slot_name = $1",
    )
    .bind(&slot)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(restart.parse::<Lsn>().unwrap(), created.consistent_point);
    drop_slot(&db, &slot).await;
    let left: i64 =
        sqlx::query_scalar("select count(*) from pg_replication_slots where slot_name = $1")
            .bind(&slot)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn creating_an_existing_slot_fails_with_the_slot_name() {
    let db = TestDatabase::create("src_dupslot").await;
    let mut client = connect(&db).await;
    let slot = slot_name("dup");
    client
        .create_slot(&slot, false, SnapshotAction::Nothing)
        .await
        .unwrap();
    let err = client
        .create_slot(&slot, false, SnapshotAction::Nothing)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("42710"));
    assert!(err.to_string().contains(&slot), "{err}");
    assert!(client.drop_slot(&slot, false).await.unwrap());
    assert!(!client.drop_slot(&slot, false).await.unwrap());

    // An error on a walsender session drops that session's temporary slots (server behaviour
    // callers must know about).
    let temporary = slot_name("dup_tmp");
    client
        .create_slot(&temporary, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    assert!(client.simple_query("select 1/0").await.is_err());
    assert!(!client.drop_slot(&temporary, false).await.unwrap());
    let err = client
        .create_slot("Bad Name", true, SnapshotAction::Nothing)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Bad Name"), "{err}");
    db.drop_database().await;
}

#[tokio::test]
async fn an_abandoned_copy_makes_the_session_refuse_further_commands() {
    let db = TestDatabase::create("src_abandon").await;
    let mut client = connect(&db).await;
    {
        let mut copy = client
            .copy_out("COPY (select generate_series(1, 100000)) TO STDOUT")
            .await
            .unwrap();
        let first = copy.next_chunk().await.unwrap().unwrap();
        assert!(first.row_count() > 0);
    }
    let err = client.simple_query("select 1").await.unwrap_err();
    assert!(matches!(err, Error::Unusable { .. }), "{err:?}");
    assert!(err.to_string().contains("COPY"), "{err}");
    db.drop_database().await;
}

#[tokio::test]
async fn a_failed_copy_leaves_the_session_usable() {
    let db = TestDatabase::create("src_copyerr").await;
    let mut client = connect(&db).await;
    let err = client
        .copy_out("COPY no_such_table TO STDOUT")
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), Some("42P01"));
    // An error in the middle of the data (division by zero at row 3).
    {
        let mut copy = client
            .copy_out("COPY (select 10 / (3 - g) from generate_series(1, 5) g) TO STDOUT")
            .await
            .unwrap();
        let mut result = Ok(());
        loop {
            match copy.next_chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        assert_eq!(result.unwrap_err().code(), Some("22012"));
    }
    let rows = client.simple_query("select 'still here'").await.unwrap();
    assert_eq!(rows, vec![vec![Some("still here".to_owned())]]);
    db.drop_database().await;
}

#[tokio::test]
async fn copy_chunks_hold_whole_rows_even_when_a_row_exceeds_the_chunk_size() {
    let db = TestDatabase::create("src_chunks").await;
    let mut client = connect(&db).await;
    // 300 rows of 1 KB, one row of 200 KB in the middle, then 300 more.
    let sql = "COPY (select g, case when g = 301 then repeat('B', 200000) \
               else repeat('s', 1000) end from generate_series(1, 601) g) TO STDOUT";
    let mut copy = client.copy_out(sql).await.unwrap();
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    while let Some(chunk) = copy.next_chunk().await.unwrap() {
        let lines = chunk.raw().iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines, chunk.row_count(), "one line per row");
        assert!(chunk.raw().ends_with(b"\n"));
        sizes.push(chunk.raw().len());
        for row in chunk.rows(2).unwrap() {
            let Cell::Text(id) = &row[0] else { panic!() };
            let Cell::Text(text) = &row[1] else { panic!() };
            let id: usize = id.parse().unwrap();
            assert_eq!(text.len(), if id == 301 { 200_000 } else { 1000 });
            ids.push(id);
        }
    }
    assert_eq!(ids, (1..=601).collect::<Vec<_>>());
    assert!(sizes.iter().any(|&size| size > 200_000), "{sizes:?}");
    // Every chunk but the last reaches the target size, and only by less than one row.
    for &size in &sizes[..sizes.len() - 1] {
        assert!(size >= 64 * 1024, "{sizes:?}");
        assert!(size < 64 * 1024 + 201_000, "{sizes:?}");
    }
    drop(copy);
    // Read to the end: the session is usable again.
    assert_eq!(
        client.simple_query("select 1").await.unwrap(),
        vec![vec![Some("1".to_owned())]]
    );
    db.drop_database().await;
}
