//! The `nats` destination through the `Destination` trait against a real `nats-server`:
//! replays are skipped (also by a new instance that only has the stream to go by, and for a
//! change whose messages were cut in two), a re-copy purges the table's subject, the identity
//! and the copied tables are kept in the stream, and the flat `json` format.

use std::sync::Arc;

use etl::base::schema::{ReplicaIdentity, TableId};
use etl::config::NatsDestinationConfig;
use etl::destinations::nats::NatsDestination;
use etl::engine::Destination;
use etl::engine::destination::PipelineIdentity;
use serde_json::Value;

use crate::helpers::*;
use crate::nats::{NatsServer, ops, read_stream, repeated_ids};

fn config(url: &str, format: &str) -> NatsDestinationConfig {
    serde_yaml::from_str(&format!(
        "{{url: '{url}', subject_prefix: 'unit.{format}', stream: UNIT_{}, format: {format}}}",
        format.to_uppercase()
    ))
    .unwrap()
}

#[tokio::test]
async fn replays_are_skipped_and_a_recopy_purges_the_subject() {
    let Some(server) = NatsServer::nats("trait") else {
        return;
    };
    let config = config(&server.address, "debezium_json");
    let table = Arc::new(simple_table(
        16_500,
        "public",
        "people",
        ReplicaIdentity::Default,
        true,
    ));
    let subject = "unit.debezium_json.public.people";
    let destination = NatsDestination::connect(&config, "shopdb").await.unwrap();
    assert_eq!(destination.read_identity().await.unwrap(), None);
    assert_eq!(
        destination.copied_tables().await.unwrap(),
        Some(Default::default())
    );

    destination.begin_copy(&table).await.unwrap();
    let chunk = etl::base::event::CopyChunk::new(bytes::Bytes::from("1\tann\t\\N\n2\tbob\tx\n"), 2);
    destination.write_copy_rows(&table, chunk).await.unwrap();
    destination.finish_copy(&table).await.unwrap();
    let batch = vec![
        event(
            &table,
            1_000,
            0,
            insert(row(&[Some("3"), Some("cy"), None])),
        ),
        event(&table, 1_000, 1, delete(row(&[Some("1"), None, None]))),
        event(
            &table,
            2_000,
            0,
            update(None, row(&[Some("2"), Some("bo"), None])),
        ),
    ];
    destination.write_events(batch.clone()).await.unwrap();
    // The engine replays after a crash: the same events, to this instance and to a new one.
    destination.write_events(batch.clone()).await.unwrap();
    let restarted = NatsDestination::connect(&config, "shopdb").await.unwrap();
    assert_eq!(
        restarted.copied_tables().await.unwrap(),
        Some([TableId(16_500)].into())
    );
    restarted.write_events(batch[1..].to_vec()).await.unwrap();
    restarted
        .write_events(vec![event(
            &table,
            3_000,
            0,
            delete(row(&[Some("2"), None, None])),
        )])
        .await
        .unwrap();

    // A crash between the two messages of a delete: the first is in the stream (published
    // here by hand), a new instance adds only the tombstone.
    let cut = event(&table, 4_000, 0, delete(row(&[Some("3"), None, None])));
    let client = async_nats::connect(&server.address).await.unwrap();
    let context = async_nats::jetstream::new(client);
    let ack = context
        .send_publish(
            subject,
            async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes::Bytes::from_static(b"{\"op\":\"d\"}"))
                .message_id(format!("16500:{:016X}:0:1:2", 4_000)),
        )
        .await
        .unwrap();
    ack.await.unwrap();
    let third = NatsDestination::connect(&config, "shopdb").await.unwrap();
    third.write_events(vec![cut]).await.unwrap();

    let messages = read_stream(&server.address, &config.stream_name())
        .await
        .unwrap();
    assert_eq!(repeated_ids(&messages), Vec::<String>::new());
    assert_eq!(
        ops(&messages, subject),
        [
            "t",
            "r",
            "r",
            "c",
            "d",
            "tombstone",
            "u",
            "d",
            "tombstone",
            "d",
            "tombstone"
        ]
    );
    let first_delete = messages
        .iter()
        .find(|m| m.subject == subject && m.id.ends_with(":1:1:2"))
        .unwrap();
    assert_eq!(first_delete.key.as_deref(), Some("{\"id\":1}"));
    let value: Value = serde_json::from_slice(&first_delete.payload).unwrap();
    assert_eq!(value["source"]["db"], "shopdb");
    assert_eq!(value["source"]["name"], "unit.debezium_json");
    assert_eq!(value["before"], serde_json::json!({"id": 1}));

    // `restarted` did not see what `third` wrote: its next publish expects an older last
    // sequence and the server refuses it (a transient error, as for a stale writer after a
    // reconnect); it reads the stream again and the retry goes through.
    let stale = restarted.begin_copy(&table).await.unwrap_err();
    assert!(stale.is_transient(), "{stale}");
    // A recopy: the subject is purged and starts again with `t`.
    restarted.begin_copy(&table).await.unwrap();
    assert_eq!(
        restarted.copied_tables().await.unwrap(),
        Some(Default::default())
    );
    let messages = read_stream(&server.address, &config.stream_name())
        .await
        .unwrap();
    assert_eq!(ops(&messages, subject), ["t"]);

    let identity = PipelineIdentity::new(7, "source-system".into(), restarted.describe());
    restarted.write_identity(&identity).await.unwrap();
    assert_eq!(destination.read_identity().await.unwrap(), Some(identity));
}

#[tokio::test]
async fn the_json_format_writes_the_jsonl_line_without_tombstones() {
    let Some(server) = NatsServer::nats("json") else {
        return;
    };
    let config = config(&server.address, "json");
    let table = Arc::new(simple_table(
        16_501,
        "public",
        "t",
        ReplicaIdentity::Default,
        true,
    ));
    let destination = NatsDestination::connect(&config, "db").await.unwrap();
    destination
        .write_events(vec![
            event(&table, 1_000, 0, insert(row(&[Some("1"), Some("a"), None]))),
            event(&table, 1_000, 1, delete(row(&[Some("1"), None, None]))),
        ])
        .await
        .unwrap();
    let messages = read_stream(&server.address, &config.stream_name())
        .await
        .unwrap();
    let lines: Vec<Value> = messages
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["op"], "insert");
    assert_eq!(
        lines[0]["new"],
        serde_json::json!({"id": 1, "name": "a", "note": null})
    );
    assert_eq!(lines[1]["op"], "delete");
    assert_eq!(messages[1].key.as_deref(), Some("{\"id\":1}"));
}

/// What the README says of the duplicate window against nats-server 2.15: a message whose
/// expected last sequence is out of date is refused (`wrong last sequence`) before its id is
/// looked at; with the right one, an id the stream holds is acknowledged as a duplicate and
/// not stored.
#[tokio::test]
async fn a_stale_expected_sequence_is_refused_and_a_known_id_is_a_duplicate() {
    let Some(server) = NatsServer::nats("dedup") else {
        return;
    };
    let config = config(&server.address, "json");
    let table = Arc::new(simple_table(
        16_502,
        "public",
        "t",
        ReplicaIdentity::Default,
        true,
    ));
    let destination = NatsDestination::connect(&config, "db").await.unwrap();
    let events: Vec<_> = (0..3)
        .map(|i| event(&table, 1_000, i, insert(row(&[Some("1"), None, None]))))
        .collect();
    destination.write_events(events).await.unwrap();
    let client = async_nats::connect(&server.address).await.unwrap();
    let context = async_nats::jetstream::new(client);
    let republish = |expected: u64| {
        let context = &context;
        async move {
            context
                .send_publish(
                    "unit.json.public.t",
                    async_nats::jetstream::message::PublishMessage::build()
                        .payload(bytes::Bytes::from_static(b"{}"))
                        .message_id(format!("16502:{:016X}:0:1:1", 1_000))
                        .expected_last_sequence(expected),
                )
                .await
                .unwrap()
                .await
        }
    };
    let stale = republish(0).await.unwrap_err();
    assert_eq!(
        stale.kind(),
        async_nats::jetstream::context::PublishErrorKind::WrongLastSequence
    );
    let current = republish(3).await.unwrap();
    assert!(current.duplicate, "{current:?}");
    let messages = read_stream(&server.address, &config.stream_name())
        .await
        .unwrap();
    assert_eq!(messages.len(), 3);
}

/// Only every 200th message (and a call's last) asks for an acknowledgement. A message in the
/// middle that the server refuses without saying so (here: larger than the stream's
/// `max_msg_size`) still fails the call, because every later message expects it in the stream;
/// the retry acknowledges each message, so its error names the real cause; and once the cause
/// is gone the stream holds every change exactly once, in order.
#[tokio::test]
async fn a_silently_refused_message_fails_the_call_and_the_retry_names_it() {
    let Some(server) = NatsServer::nats("refused") else {
        return;
    };
    let config = config(&server.address, "json");
    let table = Arc::new(simple_table(
        16_503,
        "public",
        "t",
        ReplicaIdentity::Default,
        true,
    ));
    let destination = NatsDestination::connect(&config, "db").await.unwrap();
    let first = event(&table, 1_000, 0, insert(row(&[Some("0"), None, None])));
    destination.write_events(vec![first]).await.unwrap();

    let client = async_nats::connect(&server.address).await.unwrap();
    let context = async_nats::jetstream::new(client);
    let mut stream = context.get_stream(config.stream_name()).await.unwrap();
    let mut stream_config = stream.info().await.unwrap().config.clone();
    stream_config.max_message_size = 2_000;
    context.update_stream(&stream_config).await.unwrap();

    let big = "x".repeat(3_000);
    let events: Vec<_> = (1..=500u32)
        .map(|i| {
            let id = i.to_string();
            let note = (i == 300).then_some(big.as_str());
            event(&table, 2_000, i, insert(row(&[Some(&id), None, note])))
        })
        .collect();
    let error = destination.write_events(events.clone()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let error = destination.write_events(events.clone()).await.unwrap_err();
    let error = etl::base::error_chain(&error);
    assert!(
        error.contains("maximum"),
        "the retry names the cause: {error}"
    );
    let held = read_stream(&server.address, &config.stream_name())
        .await
        .unwrap();
    assert_eq!(
        held.len(),
        300,
        "the first change and the 299 before the big one"
    );

    stream_config.max_message_size = -1;
    context.update_stream(&stream_config).await.unwrap();
    destination.write_events(events).await.unwrap();
    let held = read_stream(&server.address, &config.stream_name())
        .await
        .unwrap();
    assert_eq!(held.len(), 501);
    assert!(repeated_ids(&held).is_empty());
    let ids: Vec<String> = held
        .iter()
        .map(|m| {
            let line: Value = serde_json::from_slice(&m.payload).unwrap();
            line["new"]["id"].to_string()
        })
        .collect();
    let expected: Vec<String> = (0..=500).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
}
