//! Reads a replication slot's health from `pg_replication_slots` over an ordinary connection:
//! confirmed and restart positions, `wal_status` and `safe_wal_size`, and how many bytes of WAL
//! the slot's consumer is behind. The engine uses it to detect an invalidated slot and to feed the
//! lag metrics; the control plane reports it as a pipeline's replication status.

use serde::Serialize;
use sqlx::PgPool;

use crate::base::lsn::{InvalidLsn, Lsn};

/// One slot as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// Up to where the consumer confirmed it has everything (`None` until it first confirms, and
    /// for physical slots).
    pub confirmed_flush_lsn: Option<Lsn>,
    /// The oldest WAL position the slot still needs.
    pub restart_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+).
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before the slot risks invalidation; `None` when
    /// `max_slot_wal_keep_size` is unlimited or the slot is lost.
    pub safe_wal_size: Option<i64>,
    /// `pg_current_wal_lsn() - confirmed_flush_lsn` in bytes (never negative).
    pub lag_bytes: Option<u64>,
    /// A session is streaming from the slot right now.
    pub active: bool,
}

impl SlotInfo {
    /// The server removed WAL the slot needs (`wal_status = 'lost'`): it can never stream again.
    pub fn is_invalidated(&self) -> bool {
        self.wal_status.as_deref() == Some("lost")
    }
}

/// The slot could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("reading replication slot `{slot}` from pg_replication_slots")]
    Query {
        slot: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("replication slot `{slot}` reports an unreadable position")]
    Position {
        slot: String,
        #[source]
        source: InvalidLsn,
    },
}

/// On a standby (PostgreSQL 16+ allows logical slots there) the current position is the last WAL
/// received.
const READ_SLOT: &str = "\
with current as (
    select case when pg_is_in_recovery() then pg_last_wal_receive_lsn()
                else pg_current_wal_lsn() end as lsn
)
select s.confirmed_flush_lsn::text,
       s.restart_lsn::text,
       s.wal_status,
       s.safe_wal_size,
       greatest(pg_wal_lsn_diff(current.lsn, s.confirmed_flush_lsn), 0)::int8,
       s.active
from pg_replication_slots s, current
where s.slot_name = $1";

type SlotRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    bool,
);

/// The slot named `slot`, or `None` when no such slot exists.
pub async fn read_slot(pool: &PgPool, slot: &str) -> Result<Option<SlotInfo>, Error> {
    let row: Option<SlotRow> = sqlx::query_as(READ_SLOT)
        .bind(slot)
        .fetch_optional(pool)
        .await
        .map_err(|source| Error::Query {
            slot: slot.to_owned(),
            source,
        })?;
    let Some((confirmed, restart, wal_status, safe_wal_size, lag, active)) = row else {
        return Ok(None);
    };
    let position = |text: Option<String>| {
        text.map(|t| t.parse::<Lsn>())
            .transpose()
            .map_err(|source| Error::Position {
                slot: slot.to_owned(),
                source,
            })
    };
    Ok(Some(SlotInfo {
        confirmed_flush_lsn: position(confirmed)?,
        restart_lsn: position(restart)?,
        wal_status,
        safe_wal_size,
        lag_bytes: lag.map(|bytes| bytes.unsigned_abs()),
        active,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_slot_is_invalidated() {
        let slot = |status: Option<&str>| SlotInfo {
            confirmed_flush_lsn: None,
            restart_lsn: None,
            wal_status: status.map(str::to_owned),
            safe_wal_size: None,
            lag_bytes: None,
            active: false,
        };
        assert!(slot(Some("lost")).is_invalidated());
        for status in [None, Some("reserved"), Some("extended"), Some("unreserved")] {
            assert!(!slot(status).is_invalidated(), "{status:?}");
        }
    }
}
