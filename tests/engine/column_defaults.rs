//! `ALTER TABLE … ADD COLUMN … DEFAULT x` while streaming: Postgres gives the rows already in
//! the table `x` without writing WAL for them (it keeps `x` in `pg_attribute.attmissingval`), so
//! nothing in the stream carries it; the engine reads it from the source catalog and every mirror
//! gives its old rows the same value. A volatile default rewrites the table instead, also without
//! WAL: old rows stay NULL in the mirror (documented), new rows carry their values.
//! Old rows are never updated after the ALTER here, which would hide a missing default.

use etl::base::event::{Cell, Row};
use etl::destinations::memory::MemoryDestination;
use etl::engine::Destination;
use std::sync::Arc;

use crate::feature_destinations::{Mirror, read_until};
use crate::helpers::{Source, dest_rows};

const COLUMNS: &[&str] = &["id", "v", "c", "s", "ts", "big"];

/// Streams a table through `ADD COLUMN … DEFAULT` changes into `destination`; `read` gives the
/// destination's rows of `public.t` in `COLUMNS` order, then `r` (the volatile column).
async fn defaults_reach_existing_rows<D, F, Fut>(prefix: &str, destination: D, read: F)
where
    D: Destination + Clone,
    F: Fn(Vec<&'static str>) -> Fut,
    Fut: std::future::Future<Output = Vec<Row>>,
{
    let source = Source::create(prefix, "pub_defaults").await;
    source
        .exec(
            "create table t (id int primary key, v text);
             insert into t select g, 'row ' || g from generate_series(1, 200) g;
             create publication pub_defaults for table t",
        )
        .await;
    let running = source.start_with(destination, false);
    source.wait_ready(1).await;
    source
        .exec(
            "alter table t add column c int default 7;
             alter table t add column s text not null default 'it''s';
             alter table t add column ts timestamptz default now();
             alter table t add column big numeric(30,2) default 12345678901234567890.5;
             insert into t (id, v) values (1001, 'after the alter')",
        )
        .await;
    let expected = source.rows("t", COLUMNS, "id").await;
    assert_eq!(
        expected[0][2..4],
        [Cell::Text("7".into()), Cell::Text("it's".into())]
    );
    let actual = read_until(
        "the mirror to hold the row after the alter",
        || read(COLUMNS.to_vec()),
        |rows| rows.len() == 201,
    )
    .await;
    assert_eq!(
        actual, expected,
        "old rows read the added columns' defaults"
    );

    // A volatile default: the source rewrites every row with its own value, and no WAL says so.
    source
        .exec(
            "alter table t add column r float8 default random();
             insert into t (id, v) values (1002, 'after the volatile alter')",
        )
        .await;
    let with_r = read_until(
        "the mirror to hold the row after the volatile alter",
        || read(vec!["id", "r"]),
        |rows| rows.len() == 202,
    )
    .await;
    let old_rows_null = with_r[..201].iter().all(|row| row[1] == Cell::Null);
    assert!(old_rows_null, "rows before a volatile default stay NULL");
    assert_ne!(with_r[201][1], Cell::Null, "a new row carries its value");
    running.stop().await;
    source.drop().await;
}

/// The scenario into a mirror destination, read back from the mirror itself.
async fn in_mirror<D: Destination + Clone>(prefix: &str, mirror: Mirror, destination: D) {
    let mirror = Arc::new(mirror);
    let reader = mirror.clone();
    defaults_reach_existing_rows(prefix, destination, move |columns| {
        let reader = reader.clone();
        async move { reader.rows("t", &columns).await }
    })
    .await;
    if let Ok(mirror) = Arc::try_unwrap(mirror) {
        mirror.drop().await;
    }
}

#[tokio::test]
async fn a_column_added_with_a_default_gives_old_rows_the_default_in_sqlite() {
    let (mirror, destination) = Mirror::sqlite();
    in_mirror("defaults_sqlite", mirror, destination).await;
}

#[tokio::test]
async fn a_column_added_with_a_default_gives_old_rows_the_default_in_postgres() {
    let (mirror, destination) = Mirror::postgres("defaults_pg_target").await;
    in_mirror("defaults_pg", mirror, destination).await;
}

#[tokio::test]
async fn a_column_added_with_a_default_gives_old_rows_the_default_in_memory() {
    let destination = Arc::new(MemoryDestination::new());
    let reader = destination.clone();
    defaults_reach_existing_rows("defaults_memory", destination, move |columns| {
        let all = ["id", "v", "c", "s", "ts", "big", "r"];
        let rows = dest_rows(&reader, "public", "t");
        let picked: Vec<Row> = rows
            .into_iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|c| {
                        let i = all.iter().position(|a| a == c).unwrap_or(usize::MAX);
                        row.get(i).cloned().unwrap_or(Cell::Null)
                    })
                    .collect()
            })
            .collect();
        async move { picked }
    })
    .await;
}
