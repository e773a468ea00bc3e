//! Shared helpers: connection settings for a test database, slot names, slot cleanup.

use std::sync::atomic::{AtomicU32, Ordering};

use etl::config::{PgConnection, PgConnectionConfig};
use etl::engine::source::ReplicationClient;

use crate::common::TestDatabase;

/// Connection settings of `db` as the engine would resolve them.
pub fn connection(db: &TestDatabase) -> PgConnection {
    PgConnectionConfig::from_url(db.url.clone())
        .resolve()
        .expect("test database URL resolves")
}

pub async fn connect(db: &TestDatabase) -> ReplicationClient {
    ReplicationClient::connect(&connection(db))
        .await
        .expect("replication connection")
}

static SLOTS: AtomicU32 = AtomicU32::new(0);

/// A slot name unique across test processes.
pub fn slot_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        SLOTS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drops `slot` from a fresh session, waiting for it to be released.
pub async fn drop_slot(db: &TestDatabase, slot: &str) {
    let mut client = connect(db).await;
    client.drop_slot(slot, true).await.expect("drop slot");
}

/// `confirmed_flush_lsn` of `slot`.
pub async fn confirmed_flush(pool: &sqlx::PgPool, slot: &str) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(
        "select confirmed_flush_lsn::text from pg_replication_slots where slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .expect("read pg_replication_slots")
    .flatten()
}
