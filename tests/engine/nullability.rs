//! `ALTER COLUMN … DROP NOT NULL` and `SET NOT NULL` while streaming. pgoutput's Relation
//! message does not say whether a column takes NULL, so the engine reads it from the source
//! catalog whenever the server describes the table again; a mirror that enforces NOT NULL
//! (postgres) follows, so a NULL the source now accepts never stops the table.

use etl::base::event::Cell;
use etl::engine::Destination;

use crate::feature_destinations::{
    Mirror, start_one_table, test_in_every_destination, wait_mirrored,
};

const COLUMNS: &[&str] = &["id", "v"];

async fn nullability_follows_the_source<D: Destination + Clone>(
    prefix: &str,
    mirror: &Mirror,
    destination: D,
) {
    let (source, running) = start_one_table(
        prefix,
        "pub_nullability",
        "create table t (id int primary key, v text not null);
             insert into t select g, 'row ' || g from generate_series(1, 50) g;
             create publication pub_nullability for table t",
        destination,
    )
    .await;
    wait_mirrored(&source, mirror, "t", COLUMNS, "the copy").await;
    // SQLite mirrors declare no NOT NULL (SQLite cannot change it later without rebuilding
    // the table); the others hold what the source says.
    let holds = !matches!(mirror, Mirror::Sqlite { .. });
    let expect = |not_null: bool| Some(holds && not_null);
    assert_eq!(mirror.not_null("t", "v").await, expect(true), "copied");

    source
        .exec(
            "alter table t alter column v drop not null;
             insert into t values (1001, null);
             update t set v = null where id = 1",
        )
        .await;
    wait_mirrored(&source, mirror, "t", COLUMNS, "NULLs after DROP NOT NULL").await;
    let rows = source.rows("t", COLUMNS, "id").await;
    assert_eq!(rows[0][1], Cell::Null);
    assert_eq!(mirror.not_null("t", "v").await, expect(false), "relaxed");

    // The NULLs are gone from the mirror before the source refuses them again (the catalog is
    // read when the stream describes the table, which may be ahead of the rows applied).
    source
        .exec("update t set v = 'filled' where v is null")
        .await;
    wait_mirrored(&source, mirror, "t", COLUMNS, "NULLs filled").await;
    source
        .exec(
            "alter table t alter column v set not null;
             insert into t values (1002, 'after set not null')",
        )
        .await;
    wait_mirrored(&source, mirror, "t", COLUMNS, "rows after SET NOT NULL").await;
    assert_eq!(
        mirror.not_null("t", "v").await,
        expect(true),
        "tightened again"
    );
    running.stop().await;
    source.drop().await;
}

test_in_every_destination!(
    nullability_follows_the_source,
    "nullability",
    drop_and_set_not_null_follow_the_source_in_memory,
    drop_and_set_not_null_follow_the_source_in_sqlite,
    drop_and_set_not_null_follow_the_source_in_postgres
);
