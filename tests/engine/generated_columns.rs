//! Stored generated columns. Before PostgreSQL 18 pgoutput never publishes them, so the copy
//! leaves them out too and the destination has no such column. PostgreSQL 18 publishes them
//! with `publish_generated_columns = stored`: then copy and stream both carry their values, and
//! mirrors hold them as ordinary columns.

use etl::engine::Destination;

use crate::feature_destinations::{
    Mirror, start_one_table, test_in_every_destination, wait_mirrored,
};
use crate::helpers::Source;
use crate::versions::requires;

const SETUP: &str = "create table gc (id int primary key, a int,
                         g int generated always as (a * 2) stored);
                     insert into gc (id, a) select g, g from generate_series(1, 300) g;";

const CHANGES: &str = "update gc set a = a + 1000 where id <= 10;
                       insert into gc (id, a) values (1001, 7);
                       delete from gc where id = 20;";

/// Copies and streams `gc` into `mirror`; `columns` are what it must hold, equal to the source.
async fn copy_and_stream_agree(source: &Source, mirror: &Mirror, columns: &[&str]) {
    wait_mirrored(source, mirror, "gc", columns, "the copy").await;
    source.exec(CHANGES).await;
    wait_mirrored(source, mirror, "gc", columns, "the streamed changes").await;
}

#[tokio::test]
async fn stored_generated_columns_are_left_out_of_copy_and_stream_unless_published() {
    let (mirror, destination) = Mirror::memory();
    let setup = format!("{SETUP} create publication pub_gc for table gc");
    let (source, running) = start_one_table("gen_unpublished", "pub_gc", &setup, destination).await;
    copy_and_stream_agree(&source, &mirror, &["id", "a"]).await;
    let Mirror::Memory(memory) = &mirror else {
        unreachable!("a memory mirror")
    };
    let schema = memory
        .schema(&crate::helpers::public("gc"))
        .expect("the table is replicated");
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "a"], "no generated column");
    running.stop().await;
    source.drop().await;
}

async fn published_generated_columns_are_copied_and_streamed_alike<D: Destination + Clone>(
    prefix: &str,
    mirror: &Mirror,
    destination: D,
) {
    let probe = Source::create(prefix, "unused").await;
    let test = "published_generated_columns_are_copied_and_streamed_alike";
    let supported = requires(&probe, 18, test, "publish_generated_columns").await;
    probe.drop().await;
    if !supported {
        return;
    }
    let setup = format!(
        "{SETUP} create publication pub_gc for table gc with (publish_generated_columns = stored)"
    );
    let (source, running) = start_one_table(prefix, "pub_gc", &setup, destination).await;
    copy_and_stream_agree(&source, mirror, &["id", "a", "g"]).await;
    running.stop().await;
    source.drop().await;
}

test_in_every_destination!(
    published_generated_columns_are_copied_and_streamed_alike,
    "gen_published",
    published_generated_columns_reach_memory_alike,
    published_generated_columns_reach_sqlite_alike,
    published_generated_columns_reach_postgres_alike
);
