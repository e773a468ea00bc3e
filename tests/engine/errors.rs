//! A table the destination rejects is marked errored with a reason; the others keep going.

use std::time::Duration;

use etl::base::schema::TableId;
use etl::engine::state::{StateStore, TableState};

use crate::helpers::{Source, public, wait_equal, wait_for};

#[tokio::test]
async fn an_errored_table_does_not_stop_the_others() {
    let source = Source::create("eng_errored", "pub_errored").await;
    source
        .exec(
            "create table good (id int primary key, v text); \
               create table bad (id int primary key, v text); \
               insert into good values (1, 'a'); insert into bad values (1, 'a'); \
               create publication pub_errored for table good, bad",
        )
        .await;
    let (dest, running) = source.start_ready(2).await;
    dest.fail_writes_for(public("bad"), "value too wide for the destination");
    source
        .exec(
            "begin; insert into bad values (2, 'b'); insert into good values (2, 'b'); commit; \
               insert into good values (3, 'c');",
        )
        .await;
    wait_for("bad errored", Duration::from_secs(30), || async {
        source
            .states()
            .await
            .iter()
            .any(|(name, state)| name == "bad" && state == "errored")
    })
    .await;
    wait_equal(&source, &dest, &public("good"), &["id", "v"]).await;
    let reason: String = sqlx::query_scalar(
        "select error->>'reason' from etl.replication_state where pipeline_id = $1 \
         and is_current and state = 'errored'",
    )
    .bind(source.config.id as i64)
    .fetch_one(&source.pool)
    .await
    .unwrap();
    assert!(reason.contains("value too wide"), "{reason}");
    source
        .exec("insert into good values (4, 'd'); insert into bad values (3, 'while errored')")
        .await;
    wait_equal(&source, &dest, &public("good"), &["id", "v"]).await;
    running.stop().await;

    // Back to `ready` would lose the changes skipped while errored: refused. Back to `init`
    // copies the table again, with them.
    let store = StateStore::new(source.pool.clone(), source.config.id);
    let bad: i64 = sqlx::query_scalar("select 'public.bad'::regclass::oid::int8")
        .fetch_one(&source.pool)
        .await
        .unwrap();
    let bad = TableId(u32::try_from(bad).unwrap());
    let refused = store.rollback_table(bad).await.unwrap_err();
    assert!(
        matches!(
            refused,
            etl::engine::state::Error::RollbackWouldSkipChanges { .. }
        ),
        "{refused}"
    );
    store.set_table_state(bad, &TableState::Init).await.unwrap();
    dest.stop_failing(&public("bad"));
    let running = source.start(dest.clone());
    wait_equal(&source, &dest, &public("bad"), &["id", "v"]).await;
    wait_equal(&source, &dest, &public("good"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}
