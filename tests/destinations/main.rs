//! Integration tests of the `sqlite`, `postgres`, `jsonl` and `iceberg` destinations, driven through the
//! `Destination` trait against a real SQLite file, a second database on the shared test
//! cluster (`ETL_TEST_DATABASE_URL`), and real files. Values come from Postgres itself (COPY
//! and text output of a table holding every type), not from hand-written strings.

#[path = "../common/mod.rs"]
mod common;

mod compare;
mod helpers;
mod targets;

mod end_to_end;
mod iceberg;
mod identity;
mod jsonl;
mod kafka;
mod kafka_crashes;
mod kafka_tls;
mod kafka_trait;
mod nats;
mod nats_crashes;
mod nats_trait;
mod postgres;
mod servers;
mod sqlite;
mod stream_crashes;
