//! Waiting until a transaction the stream delivered is visible to new snapshots of the source.
//!
//! The walsender sends a transaction once its commit record is flushed, which is a moment
//! before the committing backend leaves the process array: a snapshot taken in between still
//! sees the transaction as running. The catalog reads that follow a schema change in the
//! stream (a column's default for the rows already there, its nullability) must see the
//! change's transaction, or a busy server hands them the table as it was before.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::error::Error;

/// How long a delivered transaction may still look in progress before the read goes ahead
/// anyway (it is normally a matter of microseconds; a warning says so if it ever is not).
const LIMIT: Duration = Duration::from_secs(10);

/// Waits until `xid` (32 bits, as pgoutput gives it) is no longer in progress in a new
/// snapshot of `pool`'s server.
pub async fn wait_visible(pool: &PgPool, xid: u32) -> Result<(), Error> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        // `xid8` carries the epoch in its high 32 bits; pgoutput's xid is the low ones. Its
        // full value is the one nearest the snapshot's `xmax`; at or past `xmax` it still runs.
        let running: bool = sqlx::query_scalar(
            "with s as (select pg_current_snapshot() as s), \
                  m as (select s, pg_snapshot_xmax(s)::text::numeric as xmax from s), \
                  f as (select s, xmax, xmax + ((($1::bigint - xmax % 4294967296) + 6442450944) \
                                                % 4294967296 - 2147483648) as xid from m) \
             select xid >= xmax or not pg_visible_in_snapshot(xid::text::xid8, s) from f",
        )
        .bind(i64::from(xid))
        .fetch_one(pool)
        .await
        .map_err(Error::query(
            "checking that a streamed transaction is visible",
        ))?;
        if !running {
            return Ok(());
        }
        if start.elapsed() >= LIMIT {
            tracing::warn!(
                xid,
                "a transaction the stream delivered still looks in progress on the source; \
                 reading the catalog anyway"
            );
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
