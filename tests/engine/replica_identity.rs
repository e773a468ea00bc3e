//! `REPLICA IDENTITY USING INDEX` and `NOTHING`, into each destination. With a unique index as
//! the identity (no primary key), updates and deletes carry the index columns and every mirror
//! keys its rows by them, a change of those columns included. With `NOTHING`, Postgres refuses
//! updates and deletes while a publication publishes them; a publication of inserts (and
//! truncates) only lets them happen on the source, unpublished: the mirror keeps what was
//! inserted.

use etl::base::event::Cell;
use etl::engine::Destination;

use crate::feature_destinations::{
    Mirror, read_until, start_one_table, test_in_every_destination, wait_mirrored,
};

const COLUMNS: &[&str] = &["id", "code", "v"];

async fn using_index_keys_updates_and_deletes<D: Destination + Clone>(
    prefix: &str,
    mirror: &Mirror,
    destination: D,
) {
    let (source, running) = start_one_table(
        prefix,
        "pub_ri",
        "create table ri (id int not null, code text not null, v text);
             create unique index ri_key on ri (code, id);
             alter table ri replica identity using index ri_key;
             insert into ri select g, 'c' || g, 'v' || g from generate_series(1, 500) g;
             create publication pub_ri for table ri",
        destination,
    )
    .await;
    wait_mirrored(&source, mirror, "ri", COLUMNS, "the copy").await;
    source
        .exec(
            "update ri set v = 'changed' where id <= 10;
             update ri set code = code || '-moved' where id between 20 and 25;
             delete from ri where id between 30 and 35;
             insert into ri values (1001, 'new', 'inserted')",
        )
        .await;
    wait_mirrored(
        &source,
        mirror,
        "ri",
        COLUMNS,
        "the changes keyed by the index",
    )
    .await;
    running.stop().await;
    source.drop().await;
}

async fn nothing_replicates_inserts_only<D: Destination + Clone>(
    prefix: &str,
    mirror: &Mirror,
    destination: D,
) {
    let (source, running) = start_one_table(
        prefix,
        "pub_rn",
        "create table rn (id int primary key, v text);
             alter table rn replica identity nothing;
             insert into rn select g, 'v' || g from generate_series(1, 100) g;
             create publication pub_rn for table rn with (publish = 'insert, truncate')",
        destination,
    )
    .await;
    source
        .exec(
            "insert into rn select g, 'v' || g from generate_series(101, 110) g;
             update rn set v = 'changed' where id <= 5;
             delete from rn where id = 6;
             insert into rn values (111, 'last')",
        )
        .await;
    let rows = read_until(
        "the inserts",
        || mirror.rows("rn", &["id", "v"]),
        |rows| rows.len() == 111,
    )
    .await;
    assert_eq!(
        rows[0][1],
        Cell::Text("v1".into()),
        "updates are not published"
    );
    assert_eq!(
        rows[5][0],
        Cell::Text("6".into()),
        "deletes are not published"
    );

    // With a publication of updates, the source itself refuses them.
    source
        .exec("create publication pub_rn_all for table rn")
        .await;
    let refused = sqlx::query("update rn set v = 'x' where id = 1")
        .execute(&source.pool)
        .await
        .expect_err("Postgres refuses the update");
    assert!(
        refused.to_string().contains("replica identity"),
        "{refused}"
    );
    running.stop().await;
    source.drop().await;
}

test_in_every_destination!(
    using_index_keys_updates_and_deletes,
    "ri_index",
    replica_identity_using_index_keys_changes_in_memory,
    replica_identity_using_index_keys_changes_in_sqlite,
    replica_identity_using_index_keys_changes_in_postgres
);

test_in_every_destination!(
    nothing_replicates_inserts_only,
    "ri_nothing",
    replica_identity_nothing_replicates_inserts_only_in_memory,
    replica_identity_nothing_replicates_inserts_only_in_sqlite,
    replica_identity_nothing_replicates_inserts_only_in_postgres
);
