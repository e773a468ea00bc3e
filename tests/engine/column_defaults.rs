//! `ALTER TABLE … ADD COLUMN … DEFAULT x` while streaming: Postgres gives the rows already in
//! the table `x` without writing WAL for them (it keeps `x` in `pg_attribute.attmissingval`), so
//! nothing in the stream carries it; the engine reads it from the source catalog and every mirror
//! gives its old rows the same value. A volatile default rewrites the table instead, also without
//! WAL: old rows stay NULL in the mirror (documented), new rows carry their values.
//! Old rows are never updated after the ALTER here, which would hide a missing default.

use etl::base::event::Cell;
use etl::engine::Destination;

use crate::feature_destinations::{Mirror, read_until, start_one_table, test_in_every_destination};

const COLUMNS: &[&str] = &["id", "v", "c", "s", "ts", "big"];

/// Streams a table through `ADD COLUMN … DEFAULT` changes into `destination`, read back
/// through `mirror`.
async fn defaults_reach_existing_rows<D: Destination + Clone>(
    prefix: &str,
    mirror: &Mirror,
    destination: D,
) {
    let (source, running) = start_one_table(
        prefix,
        "pub_defaults",
        "create table t (id int primary key, v text);
             insert into t select g, 'row ' || g from generate_series(1, 200) g;
             create publication pub_defaults for table t",
        destination,
    )
    .await;
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
        || mirror.rows("t", COLUMNS),
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
        || mirror.rows("t", &["id", "r"]),
        |rows| rows.len() == 202,
    )
    .await;
    let old_rows_null = with_r[..201].iter().all(|row| row[1] == Cell::Null);
    assert!(old_rows_null, "rows before a volatile default stay NULL");
    assert_ne!(with_r[201][1], Cell::Null, "a new row carries its value");
    running.stop().await;
    source.drop().await;
}

test_in_every_destination!(
    defaults_reach_existing_rows,
    "defaults",
    a_column_added_with_a_default_gives_old_rows_the_default_in_memory,
    a_column_added_with_a_default_gives_old_rows_the_default_in_sqlite,
    a_column_added_with_a_default_gives_old_rows_the_default_in_postgres
);
