//! Tables added to and removed from the publication while the pipeline runs.

use std::time::Duration;

use etl::base::event::Cell;

use crate::helpers::{Source, dest_rows, public, wait_equal, wait_for};

#[tokio::test]
async fn a_table_added_at_runtime_is_copied_then_streamed_and_a_removed_one_stops() {
    let source = Source::create("eng_pubchange", "pub_change").await;
    source
        .exec(
            "create table first (id int primary key, v text); \
               create table later (id int primary key, v text); \
               insert into first values (1, 'a'); insert into later values (1, 'copied'); \
               create publication pub_change for table first",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;

    source
        .exec(
            "alter publication pub_change add table later; \
               insert into later values (2, 'streamed')",
        )
        .await;
    source.wait_ready(2).await;
    source
        .exec("insert into later values (3, 'after ready')")
        .await;
    wait_equal(&source, &dest, &public("later"), &["id", "v"]).await;

    source
        .exec("alter publication pub_change drop table first")
        .await;
    wait_for("first forgotten", Duration::from_secs(30), || async {
        source
            .states()
            .await
            .iter()
            .all(|(name, _)| name != "first")
    })
    .await;
    source
        .exec(
            "insert into first values (2, 'not replicated'); \
               insert into later values (4, 'still streamed')",
        )
        .await;
    wait_equal(&source, &dest, &public("later"), &["id", "v"]).await;
    let first = dest_rows(&dest, "public", "first");
    assert_eq!(
        first,
        vec![vec![Cell::Text("1".into()), Cell::Text("a".into())]]
    );
    assert!(dest.rows(&public("first")).is_some());
    running.stop().await;
    source.drop().await;
}
