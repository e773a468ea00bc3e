//! The replication stream against a real walsender: every change kind decodes to the values
//! Postgres holds, an unchanged TOAST column stays distinct from NULL, keepalives asking for a
//! reply are answered, and a standby status update moves the slot's `confirmed_flush_lsn`.

use std::time::Duration;

use etl::base::event::Cell;
use etl::base::lsn::Lsn;
use etl::engine::source::{
    OldTuple, PgOutputMessage, PgOutputOptions, ReplicationMessage, ReplicationStream,
    SnapshotAction, TupleData,
};

use crate::common::TestDatabase;
use crate::helpers::{confirmed_flush, connect, drop_slot, slot_name};

fn options(publication: &str) -> PgOutputOptions {
    PgOutputOptions {
        publication_names: vec![publication.to_owned()],
        proto_version: 1,
        messages: true,
        streaming: false,
    }
}

/// Reads XLogData messages until `commits` transactions have been seen.
async fn collect(stream: &mut ReplicationStream, commits: usize) -> Vec<PgOutputMessage> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the stream delivers within 30 s")
            .expect("stream error")
            .expect("stream still open");
        if let ReplicationMessage::XLogData { message, .. } = message {
            if matches!(message, PgOutputMessage::Commit { .. }) {
                seen += 1;
            }
            out.push(message);
        }
    }
    out
}

fn text(s: &str) -> TupleData {
    TupleData::Text(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

async fn oid(pool: &sqlx::PgPool, table: &str) -> u32 {
    let oid: i64 = sqlx::query_scalar("select $1::regclass::oid::bigint")
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
    oid as u32
}

#[tokio::test]
async fn insert_update_delete_truncate_and_messages_decode_to_the_source_values() {
    let db = TestDatabase::create("src_stream").await;
    let pool = db.pool().await;
    sqlx::raw_sql(
        "create table t (id int primary key, label text, amount numeric(10,2));
         create table u (k text primary key);
         create table full_t (a int, b text);
         alter table full_t replica identity full;
         create publication stream_pub for table t, u, full_t",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (t, u, full_t) = (
        oid(&pool, "t").await,
        oid(&pool, "u").await,
        oid(&pool, "full_t").await,
    );

    let mut client = connect(&db).await;
    let slot = slot_name("stream");
    let created = client
        .create_slot(&slot, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options("stream_pub"))
        .await
        .unwrap();

    for sql in [
        "insert into t values (1, E'tab\\there', 12.50), (2, null, null)",
        "update t set label = 'new' where id = 1",
        "update t set id = 10 where id = 2",
        "delete from t where id = 10",
        "insert into full_t values (1, 'x'); update full_t set b = 'y'; delete from full_t",
        "truncate t, u",
        "select pg_logical_emit_message(true, 'etl-test', 'hello')",
    ] {
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    }
    let messages = collect(&mut stream, 7).await;

    // Relation messages describe the columns, with the key flag on the primary key.
    let relation = messages
        .iter()
        .find_map(|m| match m {
            PgOutputMessage::Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
                ..
            } if *id == t => Some((namespace, name, *replica_identity, columns)),
            _ => None,
        })
        .expect("relation message for t");
    assert_eq!((relation.0.as_str(), relation.1.as_str()), ("public", "t"));
    assert_eq!(relation.2, b'd');
    let columns: Vec<(&str, u32, i32, bool)> = relation
        .3
        .iter()
        .map(|c| (c.name.as_str(), c.type_oid, c.type_modifier, c.is_key()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("id", 23, -1, true),
            ("label", 25, -1, false),
            ("amount", 1700, (10 << 16 | 2) + 4, false)
        ]
    );

    let changes: Vec<&PgOutputMessage> = messages
        .iter()
        .filter(|m| {
            matches!(
                m,
                PgOutputMessage::Insert { .. }
                    | PgOutputMessage::Update { .. }
                    | PgOutputMessage::Delete { .. }
                    | PgOutputMessage::Truncate { .. }
                    | PgOutputMessage::Message { .. }
            )
        })
        .collect();
    let expected = vec![
        PgOutputMessage::Insert {
            xid: None,
            relation: t,
            new: vec![text("1"), text("tab\there"), text("12.50")],
        },
        PgOutputMessage::Insert {
            xid: None,
            relation: t,
            new: vec![text("2"), TupleData::Null, TupleData::Null],
        },
        PgOutputMessage::Update {
            xid: None,
            relation: t,
            old: None,
            new: vec![text("1"), text("new"), text("12.50")],
        },
        PgOutputMessage::Update {
            xid: None,
            relation: t,
            old: Some(OldTuple::Key(vec![
                text("2"),
                TupleData::Null,
                TupleData::Null,
            ])),
            new: vec![text("10"), TupleData::Null, TupleData::Null],
        },
        PgOutputMessage::Delete {
            xid: None,
            relation: t,
            old: OldTuple::Key(vec![text("10"), TupleData::Null, TupleData::Null]),
        },
        PgOutputMessage::Insert {
            xid: None,
            relation: full_t,
            new: vec![text("1"), text("x")],
        },
        PgOutputMessage::Update {
            xid: None,
            relation: full_t,
            old: Some(OldTuple::Full(vec![text("1"), text("x")])),
            new: vec![text("1"), text("y")],
        },
        PgOutputMessage::Delete {
            xid: None,
            relation: full_t,
            old: OldTuple::Full(vec![text("1"), text("y")]),
        },
        PgOutputMessage::Truncate {
            xid: None,
            options: 0,
            relations: vec![t, u],
        },
    ];
    assert_eq!(
        changes[..expected.len()],
        expected.iter().collect::<Vec<_>>()[..]
    );
    match changes.get(expected.len()) {
        Some(PgOutputMessage::Message {
            transactional,
            prefix,
            content,
            ..
        }) => {
            assert!(*transactional);
            assert_eq!(prefix, "etl-test");
            assert_eq!(content.as_ref(), b"hello");
        }
        other => panic!("expected the logical message, got {other:?}"),
    }

    // Begin and Commit pair up: same final LSN, increasing commit LSNs.
    let mut last_commit = created.consistent_point;
    let mut open: Option<Lsn> = None;
    for message in &messages {
        match message {
            PgOutputMessage::Begin { final_lsn, xid, .. } => {
                assert!(open.is_none());
                assert!(*xid > 0);
                open = Some(*final_lsn);
            }
            PgOutputMessage::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                assert_eq!(Some(*commit_lsn), open.take());
                assert!(*commit_lsn > last_commit && end_lsn > commit_lsn);
                last_commit = *commit_lsn;
            }
            _ => {}
        }
    }
    stream.finish().await.unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn unchanged_toast_column_is_not_decoded_as_null() {
    let db = TestDatabase::create("src_toast").await;
    let pool = db.pool().await;
    sqlx::raw_sql(
        "create table docs (id int primary key, body text, counter int, note text);
         alter table docs alter column body set storage external;
         create publication toast_pub for table docs;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let body: String = sqlx::query_scalar(
        "select string_agg(md5(random()::text), '') from generate_series(1, 200)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(body.len(), 6400);

    let mut client = connect(&db).await;
    let slot = slot_name("toast");
    let created = client
        .create_slot(&slot, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options("toast_pub"))
        .await
        .unwrap();
    sqlx::query("insert into docs values (1, $1, 0, null)")
        .bind(&body)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("update docs set counter = counter + 1 where id = 1")
        .execute(&pool)
        .await
        .unwrap();
    let messages = collect(&mut stream, 2).await;
    let rows: Vec<&Vec<TupleData>> = messages
        .iter()
        .filter_map(|m| match m {
            PgOutputMessage::Insert { new, .. } | PgOutputMessage::Update { new, .. } => Some(new),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        &vec![text("1"), text(&body), text("0"), TupleData::Null]
    );
    assert_eq!(
        rows[1],
        &vec![
            text("1"),
            TupleData::UnchangedToast,
            text("1"),
            TupleData::Null
        ]
    );
    let cells: Vec<Cell> = rows[1]
        .iter()
        .cloned()
        .map(|value| value.into_cell().unwrap())
        .collect();
    assert_eq!(
        cells,
        vec![
            Cell::Text("1".into()),
            Cell::Unchanged,
            Cell::Text("1".into()),
            Cell::Null
        ]
    );
    stream.finish().await.unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn keepalives_asking_for_a_reply_are_answered() {
    let db = TestDatabase::create("src_keepalive").await;
    let pool = db.pool().await;
    sqlx::raw_sql("create table k (id int primary key); create publication ka_pub for table k")
        .execute(&pool)
        .await
        .unwrap();
    let mut client = connect(&db).await;
    // The walsender asks for a reply after half of this timeout without one, and ends the
    // stream after the whole timeout.
    client
        .simple_query("SET wal_sender_timeout = '2s'")
        .await
        .unwrap();
    let slot = slot_name("keepalive");
    let created = client
        .create_slot(&slot, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options("ka_pub"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut requested = 0;
    // Three times the timeout: without replies the server would have closed the stream.
    while started.elapsed() < Duration::from_secs(6) {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("keepalives keep coming")
            .expect("the stream stays up")
            .expect("the stream stays open");
        if let ReplicationMessage::Keepalive {
            reply_requested: true,
            ..
        } = message
        {
            requested += 1;
        }
    }
    assert!(
        requested >= 2,
        "the server asked {requested} times in 6 s with a 2 s timeout"
    );
    let replied: bool = sqlx::query_scalar(
        "select r.reply_time is not null and r.reply_time > now() - interval '3 s' \
         from pg_stat_replication r join pg_replication_slots s on s.active_pid = r.pid \
         where s.slot_name = $1",
    )
    .bind(&slot)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(replied, "pg_stat_replication shows a recent reply");

    // A status update asking for a reply gets a keepalive back.
    let position = stream.last_received();
    stream
        .send_status(position, Lsn::ZERO, Lsn::ZERO, true)
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(answer, ReplicationMessage::Keepalive { .. }),
        "{answer:?}"
    );
    stream.finish().await.unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn status_update_moves_the_slots_confirmed_flush_lsn() {
    let db = TestDatabase::create("src_flush").await;
    let pool = db.pool().await;
    sqlx::raw_sql("create table f (id int primary key); create publication f_pub for table f")
        .execute(&pool)
        .await
        .unwrap();
    let mut client = connect(&db).await;
    let slot = slot_name("flush");
    let created = client
        .create_slot(&slot, false, SnapshotAction::Nothing)
        .await
        .unwrap();
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options("f_pub"))
        .await
        .unwrap();
    sqlx::query("insert into f values (1)")
        .execute(&pool)
        .await
        .unwrap();
    let messages = collect(&mut stream, 1).await;
    let end = messages
        .iter()
        .find_map(|m| match m {
            PgOutputMessage::Commit { end_lsn, .. } => Some(*end_lsn),
            _ => None,
        })
        .unwrap();
    assert!(end > created.consistent_point);
    let before: Lsn = confirmed_flush(&pool, &slot)
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(before < end);

    stream.send_status(end, end, end, false).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let confirmed = loop {
        let confirmed: Lsn = confirmed_flush(&pool, &slot)
            .await
            .unwrap()
            .parse()
            .unwrap();
        if confirmed >= end || std::time::Instant::now() > deadline {
            break confirmed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(confirmed, end);
    stream.finish().await.unwrap();
    drop_slot(&db, &slot).await;
    db.drop_database().await;
}

#[tokio::test]
async fn next_is_cancel_safe_under_select_with_status_updates() {
    let db = TestDatabase::create("src_cancel").await;
    let pool = db.pool().await;
    sqlx::raw_sql(
        "create table c (id int primary key, pad text); create publication c_pub for table c",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut client = connect(&db).await;
    let slot = slot_name("cancel");
    let created = client
        .create_slot(&slot, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options("c_pub"))
        .await
        .unwrap();
    // The rows arrive only after the loop has started, so `next` is pending (and gets
    // interrupted) before the data comes, whatever the machine's speed.
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("insert into c select g, repeat('x', 500) from generate_series(1, 3000) g")
            .execute(&pool)
            .await
            .map(|_| ())
    });

    // Interrupt `next` constantly and send status updates in between.
    let mut ids = Vec::new();
    let mut interrupted = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut commit = None;
    while commit.is_none() && std::time::Instant::now() < deadline {
        tokio::select! {
            message = stream.next() => {
                match message.unwrap().unwrap() {
                    ReplicationMessage::XLogData { message: PgOutputMessage::Insert { new, .. }, .. } => {
                        let TupleData::Text(id) = &new[0] else { panic!("{new:?}") };
                        ids.push(std::str::from_utf8(id).unwrap().parse::<i32>().unwrap());
                    }
                    ReplicationMessage::XLogData { message: PgOutputMessage::Commit { end_lsn, .. }, .. } => {
                        commit = Some(end_lsn);
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep(Duration::from_micros(50)) => {
                interrupted += 1;
                let position = stream.last_received();
                stream.send_status(position, Lsn::ZERO, Lsn::ZERO, false).await.unwrap();
            }
        }
    }
    writer.await.unwrap().unwrap();
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>());
    assert!(
        interrupted > 0,
        "the select interrupted `next` at least once"
    );
    // The session still speaks the protocol: a flush position is accepted.
    let end = commit.unwrap();
    stream.send_status(end, end, end, true).await.unwrap();
    stream.finish().await.unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn a_terminated_walsender_is_a_transient_error() {
    let db = TestDatabase::create("src_term").await;
    let pool = db.pool().await;
    sqlx::raw_sql("create table z (id int primary key); create publication z_pub for table z")
        .execute(&pool)
        .await
        .unwrap();
    let mut client = connect(&db).await;
    let slot = slot_name("term");
    let created = client
        .create_slot(&slot, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options("z_pub"))
        .await
        .unwrap();
    let terminated: bool = sqlx::query_scalar(
        "select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1",
    )
    .bind(&slot)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(terminated);
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream ends promptly")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a terminated walsender is not a clean end"),
            Err(err) => break err,
        }
    };
    assert!(err.is_transient(), "{err:?}");
    db.drop_database().await;
}

#[tokio::test]
async fn protocol_v2_streams_large_transactions_in_progress() {
    let db = TestDatabase::create("src_v2").await;
    let pool = db.pool().await;
    sqlx::raw_sql(
        "create table big (id int primary key, pad text); create publication v2_pub for table big",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut client = connect(&db).await;
    // The smallest budget, so a few thousand rows are streamed before they commit.
    client
        .simple_query("SET logical_decoding_work_mem = '64kB'")
        .await
        .unwrap();
    let slot = slot_name("v2");
    let created = client
        .create_slot(&slot, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    let options = PgOutputOptions {
        publication_names: vec!["v2_pub".into()],
        proto_version: 2,
        messages: false,
        streaming: true,
    };
    let mut stream = client
        .start_replication(&slot, created.consistent_point, &options)
        .await
        .unwrap();

    let mut state = V2State::default();
    // A transaction still open: its rows arrive in stream blocks before it ends...
    let mut open = pool.begin().await.unwrap();
    sqlx::query("insert into big select g, repeat('r', 200) from generate_series(1, 5000) g")
        .execute(&mut *open)
        .await
        .unwrap();
    while state.rows.is_empty() || state.open_xid.is_some() {
        state.step(&mut stream).await;
    }
    let in_progress = *state.rows.keys().next().unwrap();
    // ... and its rollback arrives as Stream Abort.
    open.rollback().await.unwrap();
    sqlx::query("insert into big select g, repeat('c', 200) from generate_series(1, 5000) g")
        .execute(&pool)
        .await
        .unwrap();
    while state.committed.is_none() {
        state.step(&mut stream).await;
    }
    let committed = state.committed.unwrap();
    assert_eq!(state.aborted, Some(in_progress));
    assert_ne!(in_progress, committed);
    assert!(state.starts >= 2, "{} stream blocks", state.starts);
    assert_eq!(state.rows.get(&committed), Some(&5000));
    assert!(state.rows[&in_progress] > 0);
    stream.finish().await.unwrap();
    db.drop_database().await;
}

/// What a protocol v2 stream showed so far, checking the block structure on the way.
#[derive(Default)]
struct V2State {
    open_xid: Option<u32>,
    starts: usize,
    rows: std::collections::HashMap<u32, usize>,
    aborted: Option<u32>,
    committed: Option<u32>,
}

impl V2State {
    async fn step(&mut self, stream: &mut ReplicationStream) {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("the streamed transaction arrives")
            .unwrap()
            .unwrap();
        let ReplicationMessage::XLogData { message, .. } = message else {
            return;
        };
        match message {
            PgOutputMessage::StreamStart { xid, first_segment } => {
                assert!(self.open_xid.is_none(), "stream blocks do not nest");
                assert_eq!(first_segment, !self.rows.contains_key(&xid));
                self.starts += 1;
                self.open_xid = Some(xid);
            }
            PgOutputMessage::StreamStop => {
                assert!(self.open_xid.take().is_some());
            }
            PgOutputMessage::Insert { xid, new, .. } => {
                let xid = xid.expect("inserts of a streamed transaction carry its xid");
                assert_eq!(Some(xid), self.open_xid);
                assert_eq!(new.len(), 2);
                *self.rows.entry(xid).or_default() += 1;
            }
            PgOutputMessage::Relation { xid, .. } => {
                assert_eq!(
                    xid, self.open_xid,
                    "a relation inside a block carries the xid"
                );
            }
            PgOutputMessage::StreamAbort { xid, subxid } => {
                assert_eq!(xid, subxid, "the top-level transaction aborted");
                self.aborted = Some(xid);
            }
            PgOutputMessage::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                ..
            } => {
                assert!(end_lsn > commit_lsn);
                self.committed = Some(xid);
            }
            PgOutputMessage::Begin { .. } | PgOutputMessage::Commit { .. } => {
                panic!("a 1 MB transaction must be streamed with a 64 kB budget: {message:?}")
            }
            _ => {}
        }
    }
}
