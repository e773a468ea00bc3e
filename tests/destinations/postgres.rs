//! The `postgres` destination through the `Destination` trait: a source database and a target
//! database on the test cluster, compared with `EXCEPT ALL` both ways (the target's rows are
//! copied back next to the source table first, since a query cannot span two databases).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use etl::base::event::{Cell, Change, ChangeEvent};
use etl::base::schema::TableSchema;
use etl::config::PgConnectionConfig;
use etl::destinations::postgres::PostgresDestination;
use etl::engine::destination::{Destination, Error};
use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt;

use crate::common::TestDatabase;
use crate::helpers::*;

struct Pair {
    source_db: TestDatabase,
    target_db: TestDatabase,
    source: PgPool,
    target: PgPool,
}

impl Pair {
    async fn create(prefix: &str) -> Pair {
        let source_db = TestDatabase::create(&format!("{prefix}_src")).await;
        let target_db = TestDatabase::create(&format!("{prefix}_dst")).await;
        Pair {
            source: source_pool(&source_db).await,
            target: source_pool(&target_db).await,
            source_db,
            target_db,
        }
    }

    async fn destination(&self, schema: Option<&str>) -> PostgresDestination {
        PostgresDestination::connect(
            &PgConnectionConfig::from_url(self.target_db.url.clone()),
            schema.map(str::to_owned),
        )
        .await
        .expect("connect the destination")
    }

    /// Fails unless `target_table` holds exactly the rows of `source_table` (as multisets of
    /// their text output).
    async fn assert_mirrored(&self, source_table: &str, target_table: &str) {
        static SCRATCH: AtomicU32 = AtomicU32::new(0);
        let scratch = format!("mirror_copy_{}", SCRATCH.fetch_add(1, Ordering::Relaxed));
        exec(
            &self.source,
            &format!("create table {scratch} (like {source_table})"),
        )
        .await;
        let chunk = copy_chunk(&self.target, &format!("select * from {target_table}")).await;
        let mut copy = self
            .source
            .copy_in_raw(&format!("COPY {scratch} FROM STDIN"))
            .await
            .unwrap();
        copy.send(chunk.raw()).await.unwrap();
        copy.finish().await.unwrap();
        for (a, b) in [
            (source_table, scratch.as_str()),
            (scratch.as_str(), source_table),
        ] {
            let extra: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select row(a_row.*)::text from {a} a_row except all select row(b_row.*)::text from {b} b_row"
            )))
            .fetch_all(&self.source)
            .await
            .unwrap();
            assert!(extra.is_empty(), "rows of {a} missing from {b}: {extra:?}");
        }
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from {source_table}"
        )))
        .fetch_one(&self.source)
        .await
        .unwrap();
        assert!(count > 0, "{source_table} is empty: nothing was compared");
        exec(&self.source, &format!("drop table {scratch}")).await;
    }

    /// Counts every row-level write into `table` of the target (a trigger into `audit`).
    async fn audit(&self, table: &str) {
        exec(
            &self.target,
            &format!(
                "create table if not exists public.audit (op text, id int);
                 create or replace function public.audit() returns trigger language plpgsql as $$
                 begin
                   insert into public.audit values (left(tg_op, 1),
                     case when tg_op = 'DELETE' then old.id else new.id end);
                   return null;
                 end $$;
                 create trigger audit after insert or update or delete on {table}
                   for each row execute function public.audit();"
            ),
        )
        .await;
    }

    async fn audit_counts(&self) -> Vec<(String, i64)> {
        sqlx::query_as("select op, count(*) from public.audit group by op order by op")
            .fetch_all(&self.target)
            .await
            .unwrap()
    }

    async fn drop(self) {
        self.source.close().await;
        self.target.close().await;
        self.source_db.drop_database().await;
        self.target_db.drop_database().await;
    }
}

/// The primary key definition of `table` in `pool`'s database.
async fn primary_key(pool: &PgPool, table: &str) -> String {
    sqlx::query_scalar(
        "select pg_get_constraintdef(oid) from pg_constraint \
         where conrelid = $1::regclass and contype = 'p'",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Events for `rows` of `table`, one transaction at `commit_lsn`.
fn transaction(
    table: &Arc<TableSchema>,
    commit_lsn: u64,
    changes: Vec<Change>,
) -> Vec<ChangeEvent> {
    changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| event(table, commit_lsn, i as u32, change))
        .collect()
}

#[tokio::test]
async fn every_type_is_copied_through_copy_and_equals_the_source() {
    let pair = Pair::create("dest_pg_types").await;
    exec(&pair.source, ALL_TYPES).await;
    let schema = table_schema(&pair.source, "public.all_types").await;
    let destination = pair.destination(None).await;
    destination.prepare_table(&schema).await.unwrap();
    destination.begin_copy(&schema).await.unwrap();
    // Two chunks, as parallel COPY streams would deliver them.
    for range in ["id <= 2", "id > 2"] {
        let chunk = copy_chunk(
            &pair.source,
            &format!("select * from all_types where {range}"),
        )
        .await;
        destination.write_copy_rows(&schema, chunk).await.unwrap();
    }
    destination.finish_copy(&schema).await.unwrap();
    pair.assert_mirrored("all_types", "public.all_types").await;

    let types = "select attname::text, format_type(atttypid, atttypmod) from pg_attribute \
                 where attrelid = 'public.all_types'::regclass and attnum > 0 order by attnum";
    let source: Vec<(String, String)> =
        sqlx::query_as(types).fetch_all(&pair.source).await.unwrap();
    let target: Vec<(String, String)> =
        sqlx::query_as(types).fetch_all(&pair.target).await.unwrap();
    for ((name, source_type), (target_name, target_type)) in source.iter().zip(&target) {
        assert_eq!(name, target_name);
        let expected = match source_type.as_str() {
            "mood" | "posint" => "text",
            other => other,
        };
        assert_eq!(target_type, expected, "column {name}");
    }
    assert_eq!(
        primary_key(&pair.target, "public.all_types").await,
        "PRIMARY KEY (id)"
    );
    drop(destination);
    pair.drop().await;
}

#[tokio::test]
async fn changes_are_applied_exactly_once_even_when_replayed() {
    let pair = Pair::create("dest_pg_changes").await;
    exec(
        &pair.source,
        "create table items (id int primary key, name text, big text, price numeric(10,2));
         insert into items select i, 'item ' || i, repeat('x', 3000) || i, i * 1.5
           from generate_series(1, 100) i;",
    )
    .await;
    let schema = Arc::new(table_schema(&pair.source, "public.items").await);
    let destination = pair.destination(None).await;
    destination.prepare_table(&schema).await.unwrap();
    destination.begin_copy(&schema).await.unwrap();
    destination.finish_copy(&schema).await.unwrap();
    pair.audit("public.items").await;
    let width = schema.columns.len();

    // Transaction 1: the inserts (as a stream would see them).
    let inserted = rows(&pair.source, "select * from items order by id", width).await;
    let mut events = transaction(&schema, 0x1000, inserted.into_iter().map(insert).collect());
    // Transaction 2: updates that leave the TOASTed `big` column unchanged.
    exec(
        &pair.source,
        "update items set name = name || '!', price = price + 1 where id % 3 = 0",
    )
    .await;
    let updated = rows(
        &pair.source,
        "select * from items where id % 3 = 0 order by id",
        width,
    )
    .await;
    events.extend(transaction(
        &schema,
        0x2000,
        updated
            .into_iter()
            .map(|mut row| {
                row[2] = Cell::Unchanged;
                update(None, row)
            })
            .collect(),
    ));
    // Transaction 3: deletes, a key change, and the same row changed twice.
    exec(
        &pair.source,
        "delete from items where id % 5 = 0;
         update items set id = 1001 where id = 1;
         update items set name = 'twice' where id = 2;
         update items set name = 'thrice' where id = 2;",
    )
    .await;
    let mut changes: Vec<Change> = rows(
        &pair.source,
        "select id, null, null, null from generate_series(5, 100, 5) id",
        width,
    )
    .await
    .into_iter()
    .map(delete)
    .collect();
    let moved = rows(&pair.source, "select * from items where id = 1001", width).await;
    changes.push(update(
        Some(row(&[Some("1"), None, None, None])),
        moved[0].clone(),
    ));
    let mut twice = rows(&pair.source, "select * from items where id = 2", width).await[0].clone();
    twice[1] = text("twice");
    changes.push(update(None, twice));
    changes.extend(
        rows(&pair.source, "select * from items where id = 2", width)
            .await
            .into_iter()
            .map(|new| update(None, new)),
    );
    events.extend(transaction(&schema, 0x3000, changes));
    let total = events.len();

    // Applied in uneven batches, then everything replayed after a "restart".
    for batch in events.chunks(37) {
        destination.write_events(batch.to_vec()).await.unwrap();
    }
    drop(destination);
    let destination = pair.destination(None).await;
    destination.prepare_table(&schema).await.unwrap();
    destination.write_events(events.clone()).await.unwrap();
    destination
        .write_events(events[..50].to_vec())
        .await
        .unwrap();

    pair.assert_mirrored("items", "public.items").await;
    // 100 inserts; 33 updates + the key change + the two updates of id 2, which share a batch
    // and collapse into one write; 20 deletes. The replays wrote nothing.
    assert_eq!(total, 156);
    let expected = vec![
        ("D".to_owned(), 20),
        ("I".to_owned(), 100),
        ("U".to_owned(), 35),
    ];
    assert_eq!(pair.audit_counts().await, expected);
    destination.write_events(events).await.unwrap();
    assert_eq!(
        pair.audit_counts().await,
        expected,
        "a replay changes nothing"
    );
    let progress: (String, i64) =
        sqlx::query_as("select commit_lsn::text, ordinal from etl_destination.progress")
            .fetch_one(&pair.target)
            .await
            .unwrap();
    assert_eq!(progress.0, "0/3000");
    drop(destination);
    pair.drop().await;
}

#[tokio::test]
async fn keyless_replica_identity_full_tables_match_rows_by_their_old_text() {
    let pair = Pair::create("dest_pg_full").await;
    exec(
        &pair.source,
        "create table events (kind text, payload json, at timestamptz);
         alter table events replica identity full;
         insert into events values ('a', '{\"x\": 1}', '2024-01-01 00:00:00+00'),
                                   ('a', '{\"x\": 1}', '2024-01-01 00:00:00+00'),
                                   ('b', null, null);",
    )
    .await;
    let schema = Arc::new(table_schema(&pair.source, "public.events").await);
    let destination = pair.destination(None).await;
    destination.prepare_table(&schema).await.unwrap();
    destination.begin_copy(&schema).await.unwrap();
    let chunk = copy_chunk(&pair.source, "select * from events").await;
    destination.write_copy_rows(&schema, chunk).await.unwrap();
    destination.finish_copy(&schema).await.unwrap();
    let old_a = rows(
        &pair.source,
        "select * from events where kind = 'a' limit 1",
        3,
    )
    .await;
    let old_b = rows(&pair.source, "select * from events where kind = 'b'", 3).await;
    exec(
        &pair.source,
        "update events set kind = 'c' where ctid = (select ctid from events where kind = 'a' limit 1);
         delete from events where kind = 'b';",
    )
    .await;
    let new_c = rows(&pair.source, "select * from events where kind = 'c'", 3).await;
    destination
        .write_events(transaction(
            &schema,
            0x100,
            vec![
                update(Some(old_a[0].clone()), new_c[0].clone()),
                delete(old_b[0].clone()),
            ],
        ))
        .await
        .unwrap();
    pair.assert_mirrored("events", "public.events").await;
    drop(destination);
    pair.drop().await;
}

#[tokio::test]
async fn columns_added_dropped_renamed_and_retyped_follow_in_the_target() {
    let pair = Pair::create("dest_pg_alter").await;
    exec(
        &pair.source,
        "create table t (id int primary key, a text, b int, c text);
         insert into t select i, 'a' || i, i, 'c' || i from generate_series(1, 10) i;",
    )
    .await;
    let v1 = Arc::new(table_schema(&pair.source, "public.t").await);
    let destination = pair.destination(None).await;
    destination.prepare_table(&v1).await.unwrap();
    destination.begin_copy(&v1).await.unwrap();
    let chunk = copy_chunk(&pair.source, "select * from t").await;
    destination.write_copy_rows(&v1, chunk).await.unwrap();
    destination.finish_copy(&v1).await.unwrap();

    exec(
        &pair.source,
        "alter table t rename column a to \"A new\";
         alter table t drop column c;
         alter table t alter column b type numeric(8,2);
         alter table t add column d timestamptz;
         update t set b = b + 0.25, d = now() where id <= 3;",
    )
    .await;
    let v2 = Arc::new(table_schema(&pair.source, "public.t").await);
    destination.alter_table(&v1, &v2).await.unwrap();
    let changed = rows(&pair.source, "select * from t where id <= 3", 4).await;
    destination
        .write_events(transaction(
            &v2,
            0x500,
            changed.into_iter().map(|r| update(None, r)).collect(),
        ))
        .await
        .unwrap();
    pair.assert_mirrored("t", "public.t").await;

    // A new primary key.
    exec(
        &pair.source,
        "alter table t drop constraint t_pkey; alter table t add primary key (\"A new\")",
    )
    .await;
    let v3 = Arc::new(table_schema(&pair.source, "public.t").await);
    destination.alter_table(&v2, &v3).await.unwrap();
    assert_eq!(
        primary_key(&pair.target, "public.t").await,
        "PRIMARY KEY (\"A new\")"
    );
    drop(destination);
    pair.drop().await;
}

#[tokio::test]
async fn weird_identifiers_a_target_schema_and_name_collisions() {
    let pair = Pair::create("dest_pg_names").await;
    exec(
        &pair.source,
        "create schema \"Sch ema\"; create schema other;
         create table \"Sch ema\".\"Ta\"\"ble ü\" (\"Id\" int primary key, \"we ird\" text);
         insert into \"Sch ema\".\"Ta\"\"ble ü\" values (1, 'x'), (2, null);
         create table other.\"Ta\"\"ble ü\" (id int primary key);
         insert into other.\"Ta\"\"ble ü\" values (1);",
    )
    .await;
    let weird = table_schema(&pair.source, "\"Sch ema\".\"Ta\"\"ble ü\"").await;
    let other = table_schema(&pair.source, "other.\"Ta\"\"ble ü\"").await;
    let destination = pair.destination(Some("Mirror")).await;
    destination.prepare_table(&weird).await.unwrap();
    destination.begin_copy(&weird).await.unwrap();
    let chunk = copy_chunk(&pair.source, "select * from \"Sch ema\".\"Ta\"\"ble ü\"").await;
    destination.write_copy_rows(&weird, chunk).await.unwrap();
    destination.finish_copy(&weird).await.unwrap();
    pair.assert_mirrored("\"Sch ema\".\"Ta\"\"ble ü\"", "\"Mirror\".\"Ta\"\"ble ü\"")
        .await;
    // Both source tables would land on Mirror."Ta""ble ü".
    let err = destination.prepare_table(&other).await.unwrap_err();
    assert!(
        matches!(&err, Error::Table { message, .. } if message.contains("already mirrors") && message.contains("Sch ema")),
        "{err}"
    );
    // A table etl did not create is not taken over.
    exec(
        &pair.target,
        "create schema other; create table other.\"Ta\"\"ble ü\" (id int)",
    )
    .await;
    let plain = pair.destination(None).await;
    let err = plain.prepare_table(&other).await.unwrap_err();
    assert!(err.to_string().contains("etl did not create it"), "{err}");
    drop(destination);
    drop(plain);
    pair.drop().await;
}

#[tokio::test]
async fn truncate_and_a_restarted_copy_empty_the_mirror() {
    let pair = Pair::create("dest_pg_truncate").await;
    exec(
        &pair.source,
        "create table t (id int primary key, v text);
         insert into t select i, 'v' from generate_series(1, 5) i;",
    )
    .await;
    let schema = Arc::new(table_schema(&pair.source, "public.t").await);
    let destination = pair.destination(None).await;
    destination.prepare_table(&schema).await.unwrap();
    destination.begin_copy(&schema).await.unwrap();
    let chunk = copy_chunk(&pair.source, "select * from t").await;
    destination
        .write_copy_rows(&schema, chunk.clone())
        .await
        .unwrap();
    // A crash mid-copy: the copy starts over and must not duplicate rows.
    destination.begin_copy(&schema).await.unwrap();
    destination.write_copy_rows(&schema, chunk).await.unwrap();
    destination.finish_copy(&schema).await.unwrap();
    pair.assert_mirrored("t", "public.t").await;
    destination
        .write_events(vec![event(&schema, 0x10, 0, Change::Truncate)])
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("select count(*) from public.t")
        .fetch_one(&pair.target)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let finished: bool =
        sqlx::query_scalar("select copy_finished_at is not null from etl_destination.tables")
            .fetch_one(&pair.target)
            .await
            .unwrap();
    assert!(finished);
    drop(destination);
    pair.drop().await;
}

#[tokio::test]
async fn a_wrong_password_is_fatal_and_an_unreachable_server_transient() {
    let db = TestDatabase::create("dest_pg_auth").await;
    let mut config = PgConnectionConfig::from_url(db.url.clone());
    config.password = Some(etl::config::Secret::new("definitely-wrong"));
    config.username = Some("etl_no_such_user".into());
    let err = PostgresDestination::connect(&config, None)
        .await
        .expect_err("must fail");
    assert!(matches!(err, Error::Fatal { .. }), "{err}");
    let closed =
        PgConnectionConfig::from_url("postgres://postgres@127.0.0.1:1/postgres?sslmode=disable");
    let err = PostgresDestination::connect(&closed, None)
        .await
        .expect_err("must fail");
    assert!(err.is_transient(), "{err}");
    db.drop_database().await;
}
