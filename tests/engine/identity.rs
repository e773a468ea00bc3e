//! Pipeline identity at start-up (issue 19), with the engine and memory destinations: a state
//! whose tables were copied is never streamed into a destination that holds no copy, nor into one
//! holding another pipeline's copy, and the slot is left where it was; a table whose copy the
//! destination lost is copied again.

use std::sync::Arc;
use std::time::Duration;

use etl::destinations::memory::MemoryDestination;
use etl::engine::{self, IdentityError, RunOptions};

use crate::helpers::{Source, pipeline_id, public, wait_equal};

/// Runs the pipeline of `config` into `destination` and expects it to refuse at start-up.
async fn refused(
    config: &etl::config::PipelineConfig,
    destination: Arc<MemoryDestination>,
) -> IdentityError {
    let (_trigger, shutdown) = etl::shutdown::channel();
    let source = config.source().expect("source connection");
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        engine::run(
            config,
            &source,
            destination,
            shutdown,
            RunOptions::default(),
        ),
    )
    .await
    .expect("a refused start returns at once");
    match outcome {
        Err(engine::Error::Identity(error)) => error,
        other => panic!("expected an identity refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_copied_state_is_not_streamed_into_a_destination_without_the_copy() {
    let source = Source::create("eng_identity_new", "pub_identity_new").await;
    source
        .exec(
            "create table t (id int primary key, v text); \
             insert into t select g, 'x' from generate_series(1, 50) g; \
             create publication pub_identity_new for table t",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    running.stop().await;
    source
        .exec("insert into t values (51, 'while stopped')")
        .await;
    let acknowledged = source.confirmed_flush().await;

    let error = refused(&source.config, Arc::new(MemoryDestination::new())).await;
    assert!(
        matches!(error, IdentityError::DestinationHoldsNoCopy { pipeline_id, .. } if pipeline_id == source.config.id),
        "{error:?}"
    );
    let message = error.to_string();
    for part in [
        &format!("pipeline {}", source.config.id),
        "`memory`",
        "etl pipeline reset",
        "/reset",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    assert_eq!(
        source.confirmed_flush().await,
        acknowledged,
        "nothing was streamed"
    );

    // The destination that holds the copy resumes and misses nothing.
    let survivor = Arc::new(dest.clone_contents());
    let running = source.start(survivor.clone());
    wait_equal(&source, &survivor, &public("t"), &["id", "v"]).await;
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn a_destination_holding_another_pipelines_copy_is_refused() {
    let source = Source::create("eng_identity_other", "pub_identity_other").await;
    source
        .exec(
            "create table t (id int primary key); insert into t values (1), (2); \
             create publication pub_identity_other for table t",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    running.stop().await;

    let mut other = source.config.clone();
    other.id = pipeline_id();
    let error = refused(&other, dest.clone()).await;
    match &error {
        IdentityError::DestinationOfAnotherPipeline {
            pipeline_id,
            holder_pipeline,
            ..
        } => {
            assert_eq!(*pipeline_id, other.id);
            assert_eq!(*holder_pipeline, source.config.id);
        }
        other => panic!("{other:?}"),
    }
    let slots: i64 =
        sqlx::query_scalar("select count(*) from pg_replication_slots where slot_name = $1")
            .bind(engine::apply_slot_name(other.id))
            .fetch_one(&source.pool)
            .await
            .unwrap();
    assert_eq!(slots, 0, "a refused pipeline creates no slot");
    source.drop().await;
}

#[tokio::test]
async fn a_table_the_destination_lost_is_copied_again() {
    let source = Source::create("eng_identity_lost", "pub_identity_lost").await;
    source
        .exec(
            "create table t (id int primary key, v text); create table u (id int primary key, v text); \
             insert into t select g, 't' from generate_series(1, 30) g; \
             insert into u select g, 'u' from generate_series(1, 30) g; \
             create publication pub_identity_lost for table t, u",
        )
        .await;
    let (dest, running) = source.start_ready(2).await;
    running.stop().await;
    dest.lose_table(&public("t"));
    source
        .exec("insert into t values (31, 'after'); insert into u values (31, 'after')")
        .await;
    let running = source.start(dest.clone());
    source.wait_ready(2).await;
    wait_equal(&source, &dest, &public("t"), &["id", "v"]).await;
    wait_equal(&source, &dest, &public("u"), &["id", "v"]).await;
    assert_eq!(dest.copied_rows(&public("t")), 31, "t was copied again");
    assert_eq!(dest.copied_rows(&public("u")), 30, "u was only streamed");
    running.stop().await;
    source.drop().await;
}
