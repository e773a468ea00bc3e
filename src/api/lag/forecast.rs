//! The arithmetic of lag history, kept free of I/O so it is tested on its own: how many seconds
//! a slot is behind ([`lag_seconds`], interpolated between samples of the server's WAL
//! position), how fast WAL grows ([`rate`]) and when the slot's WAL budget runs out
//! ([`forecast`]).
//!
//! The forecast: `safe_wal_size` is what the server may still write before it invalidates the
//! slot (`max_slot_wal_keep_size` minus the WAL the slot retains). It shrinks at the rate the
//! slot's retained WAL (`current − restart_lsn`) grows, so "invalidated in" is
//! `safe_wal_size / retained growth rate`. A pipeline that keeps up retains a constant amount
//! and never runs out; for it the forecast also gives the worst case, if it stopped now:
//! `safe_wal_size / WAL rate`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Below this many seconds until invalidation the forecast is `critical`.
pub const CRITICAL_SECONDS: f64 = 6.0 * 3600.0;
/// Below this many seconds it is `warning`.
pub const WARNING_SECONDS: f64 = 48.0 * 3600.0;
/// Retained WAL growing slower than this (bytes per second) counts as not growing: the
/// standby status updates of a pipeline that keeps up move `restart_lsn` in steps.
pub const STEADY_BYTES_PER_SECOND: f64 = 1.0;

/// One sample of the server's WAL position and the slot's positions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub at: f64,
    pub wal_lsn: i64,
    pub restart_lsn: Option<i64>,
}

/// How many seconds ago the server wrote the WAL at `confirmed`: the time is interpolated
/// between the two samples (`history` ascending, then `(now, current)`) whose WAL positions
/// enclose it. `Some(0)` when the slot confirmed everything; `None` when `confirmed` is older
/// than the oldest sample.
pub fn lag_seconds(history: &[Point], now: f64, current: i64, confirmed: i64) -> Option<f64> {
    if confirmed >= current {
        return Some(0.0);
    }
    let mut later = (now, current);
    for point in history.iter().rev() {
        let (at, lsn) = (point.at, point.wal_lsn);
        if lsn <= confirmed {
            let span = (later.1 - lsn) as f64;
            let fraction = if span > 0.0 {
                (confirmed - lsn) as f64 / span
            } else {
                0.0
            };
            let written = at + fraction * (later.0 - at);
            return Some((now - written).max(0.0));
        }
        later = (at, lsn);
    }
    None
}

/// Bytes per second of `value` between the first and the last point (`None` with fewer than
/// two points or less than a second between them).
pub fn rate(points: &[Point], value: impl Fn(&Point) -> Option<i64>) -> Option<f64> {
    let with: Vec<(f64, i64)> = points
        .iter()
        .filter_map(|p| value(p).map(|v| (p.at, v)))
        .collect();
    let (first, last) = (with.first()?, with.last()?);
    let seconds = last.0 - first.0;
    (seconds >= 1.0).then(|| (last.1 - first.1) as f64 / seconds)
}

/// `max_slot_wal_keep_size` as the forecast needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalLimit {
    /// In bytes.
    Bounded(i64),
    /// `-1`: the slot may retain WAL until the disk is full.
    Unbounded,
    /// Not read (the source was not reached).
    Unknown,
}

/// What the forecast starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastInput {
    pub slot_exists: bool,
    pub wal_status: Option<String>,
    pub safe_wal_size: Option<i64>,
    pub limit: WalLimit,
    /// Recent samples, ascending.
    pub recent: Vec<Point>,
}

/// How close the slot is to being invalidated, as a colour.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ForecastLevel {
    Ok,
    Warning,
    Critical,
    /// `max_slot_wal_keep_size = -1`: never invalidated, may fill the source's disk.
    Unbounded,
    /// No slot, or not enough samples yet.
    Unknown,
}

/// The slot's WAL budget and when it runs out (`replication-status` field `wal_forecast`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WalForecast {
    pub level: ForecastLevel,
    /// One sentence for people, e.g. "at this rate the slot is invalidated in ~5.2 h".
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_wal_size: Option<i64>,
    /// `max_slot_wal_keep_size` in bytes; absent when it is -1 or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slot_wal_keep_size_bytes: Option<i64>,
    /// How fast the server writes WAL, over the recent samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_rate_bytes_per_second: Option<f64>,
    /// How fast the WAL the slot retains grows (0 or less: the pipeline keeps up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_growth_bytes_per_second: Option<f64>,
    /// `safe_wal_size / retained growth`, when it grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidated_in_seconds: Option<f64>,
    /// `safe_wal_size / WAL rate`: the worst case, if the slot stopped advancing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidated_if_stopped_in_seconds: Option<f64>,
}

/// The forecast for one slot.
pub fn forecast(input: &ForecastInput) -> WalForecast {
    let wal_rate = rate(&input.recent, |p| Some(p.wal_lsn));
    let retained = rate(&input.recent, |p| p.restart_lsn.map(|r| p.wal_lsn - r));
    let mut out = WalForecast {
        level: ForecastLevel::Unknown,
        summary: String::new(),
        safe_wal_size: input.safe_wal_size,
        max_slot_wal_keep_size_bytes: match input.limit {
            WalLimit::Bounded(bytes) => Some(bytes),
            _ => None,
        },
        wal_rate_bytes_per_second: wal_rate,
        retained_growth_bytes_per_second: retained,
        invalidated_in_seconds: None,
        invalidated_if_stopped_in_seconds: None,
    };
    if !input.slot_exists {
        out.summary = "no slot yet: the pipeline has not started replicating".into();
        return out;
    }
    if input.wal_status.as_deref() == Some("lost") {
        out.level = ForecastLevel::Critical;
        out.summary = "the slot is invalidated (wal_status lost): the pipeline must copy \
                       everything again (reset)"
            .into();
        return out;
    }
    match input.limit {
        WalLimit::Unbounded => {
            out.level = ForecastLevel::Unbounded;
            out.summary = "not bounded: max_slot_wal_keep_size is -1 (the slot is never \
                           invalidated, but may fill the source's disk)"
                .into();
            return out;
        }
        WalLimit::Unknown => {
            out.summary = "unknown: max_slot_wal_keep_size could not be read".into();
            return out;
        }
        WalLimit::Bounded(_) => {}
    }
    let Some(safe) = input.safe_wal_size else {
        out.summary = "unknown: the server reports no safe_wal_size".into();
        return out;
    };
    let safe = safe.max(0) as f64;
    out.invalidated_if_stopped_in_seconds = wal_rate.filter(|r| *r > 0.0).map(|r| safe / r);
    let Some(growth) = retained else {
        out.summary = "not enough samples yet to measure the WAL rate".into();
        return out;
    };
    let unreserved = input.wal_status.as_deref() == Some("unreserved");
    if growth > STEADY_BYTES_PER_SECOND {
        let seconds = safe / growth;
        out.invalidated_in_seconds = Some(seconds);
        out.level = level_of(seconds, unreserved);
        out.summary = format!(
            "at this rate the slot is invalidated in {}",
            approx_duration(seconds)
        );
    } else {
        out.level = if unreserved {
            ForecastLevel::Critical
        } else {
            // Keeping up, but a stop would use the budget up this fast.
            match out.invalidated_if_stopped_in_seconds {
                Some(s) if s < CRITICAL_SECONDS => ForecastLevel::Warning,
                _ => ForecastLevel::Ok,
            }
        };
        out.summary = match out.invalidated_if_stopped_in_seconds {
            Some(s) => format!(
                "the slot keeps up; if it stopped, it would be invalidated in {}",
                approx_duration(s)
            ),
            None => "the slot keeps up and the server writes no WAL".into(),
        };
    }
    out
}

fn level_of(seconds: f64, unreserved: bool) -> ForecastLevel {
    if unreserved || seconds < CRITICAL_SECONDS {
        ForecastLevel::Critical
    } else if seconds < WARNING_SECONDS {
        ForecastLevel::Warning
    } else {
        ForecastLevel::Ok
    }
}

/// `~45 s`, `~12 min`, `~5.2 h`, `~3.1 d`.
pub fn approx_duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("~{} s", seconds.round() as i64)
    } else if seconds < 5400.0 {
        format!("~{} min", (seconds / 60.0).round() as i64)
    } else if seconds < 2.0 * 86400.0 {
        format!("~{:.1} h", seconds / 3600.0)
    } else {
        format!("~{:.1} d", seconds / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: f64, wal_lsn: i64, restart: i64) -> Point {
        Point {
            at,
            wal_lsn,
            restart_lsn: Some(restart),
        }
    }

    #[test]
    fn lag_seconds_interpolates_between_the_samples_around_the_confirmed_position() {
        // WAL at 100 bytes/s: position 1000 at t=10, 2000 at t=20, now (t=30) 3000.
        let history = [point(10.0, 1000, 0), point(20.0, 2000, 0)];
        assert_eq!(lag_seconds(&history, 30.0, 3000, 3000), Some(0.0));
        assert_eq!(lag_seconds(&history, 30.0, 3000, 2500), Some(5.0));
        assert_eq!(lag_seconds(&history, 30.0, 3000, 1500), Some(15.0));
        assert_eq!(lag_seconds(&history, 30.0, 3000, 1000), Some(20.0));
        // Older than anything sampled: unknown, not a guess.
        assert_eq!(lag_seconds(&history, 30.0, 3000, 999), None);
        assert_eq!(lag_seconds(&[], 30.0, 3000, 2000), None);
    }

    #[test]
    fn rates_need_two_points_a_second_apart() {
        assert_eq!(rate(&[point(0.0, 0, 0)], |p| Some(p.wal_lsn)), None);
        assert_eq!(
            rate(&[point(0.0, 0, 0), point(0.5, 10, 0)], |p| Some(p.wal_lsn)),
            None
        );
        let points = [point(0.0, 0, 0), point(5.0, 300, 0), point(10.0, 1000, 0)];
        assert_eq!(rate(&points, |p| Some(p.wal_lsn)), Some(100.0));
    }

    fn input(limit: WalLimit, safe: Option<i64>, recent: Vec<Point>) -> ForecastInput {
        ForecastInput {
            slot_exists: true,
            wal_status: Some("reserved".into()),
            safe_wal_size: safe,
            limit,
            recent,
        }
    }

    #[test]
    fn a_slot_that_falls_behind_is_invalidated_when_its_growth_uses_up_safe_wal_size() {
        // WAL at 1000 B/s, the slot does not move: retained WAL grows at 1000 B/s.
        let recent = vec![point(0.0, 10_000, 5_000), point(100.0, 110_000, 5_000)];
        let gib = 1 << 30;
        let f = forecast(&input(WalLimit::Bounded(gib), Some(36_000_000), recent));
        assert_eq!(f.retained_growth_bytes_per_second, Some(1000.0));
        assert_eq!(f.invalidated_in_seconds, Some(36_000.0));
        assert_eq!(f.level, ForecastLevel::Warning);
        assert_eq!(f.summary, "at this rate the slot is invalidated in ~10.0 h");
        assert_eq!(f.max_slot_wal_keep_size_bytes, Some(gib));
        // Three times faster: under six hours is critical.
        let recent = vec![point(0.0, 0, 0), point(100.0, 300_000, 0)];
        let f = forecast(&input(WalLimit::Bounded(gib), Some(36_000_000), recent));
        assert_eq!(f.invalidated_in_seconds, Some(12_000.0));
        assert_eq!(f.level, ForecastLevel::Critical);
        // A week away is fine.
        let recent = vec![point(0.0, 0, 0), point(100.0, 100, 0)];
        let f = forecast(&input(WalLimit::Bounded(gib), Some(100_000_000), recent));
        assert_eq!(f.level, ForecastLevel::Ok);
    }

    #[test]
    fn a_slot_that_keeps_up_is_not_invalidated_and_the_worst_case_is_given() {
        // WAL at 1000 B/s and restart_lsn follows it.
        let recent = vec![point(0.0, 10_000, 9_000), point(100.0, 110_000, 109_000)];
        let f = forecast(&input(WalLimit::Bounded(1 << 30), Some(7_200_000), recent));
        assert_eq!(f.invalidated_in_seconds, None);
        assert_eq!(f.invalidated_if_stopped_in_seconds, Some(7200.0));
        // Keeping up, but a stop would use the budget up within six hours: a warning.
        assert_eq!(f.level, ForecastLevel::Warning);
        assert!(f.summary.starts_with("the slot keeps up"), "{}", f.summary);
        assert!(f.summary.contains("~2.0 h"), "{}", f.summary);
        let recent = vec![point(0.0, 10_000, 9_000), point(100.0, 110_000, 109_000)];
        let f = forecast(&input(
            WalLimit::Bounded(1 << 30),
            Some(720_000_000),
            recent,
        ));
        assert_eq!(f.level, ForecastLevel::Ok);
    }

    #[test]
    fn unbounded_lost_missing_and_unsampled_slots_say_so() {
        let recent = vec![point(0.0, 0, 0), point(10.0, 1000, 0)];
        let f = forecast(&input(WalLimit::Unbounded, None, recent.clone()));
        assert_eq!(f.level, ForecastLevel::Unbounded);
        assert!(
            f.summary
                .starts_with("not bounded: max_slot_wal_keep_size is -1"),
            "{}",
            f.summary
        );
        let mut lost = input(WalLimit::Bounded(1 << 30), None, recent.clone());
        lost.wal_status = Some("lost".into());
        assert_eq!(forecast(&lost).level, ForecastLevel::Critical);
        let mut missing = input(WalLimit::Bounded(1 << 30), None, recent);
        missing.slot_exists = false;
        assert_eq!(forecast(&missing).level, ForecastLevel::Unknown);
        let f = forecast(&input(WalLimit::Bounded(1 << 30), Some(10), Vec::new()));
        assert_eq!(f.level, ForecastLevel::Unknown);
        assert!(f.summary.contains("not enough samples"), "{}", f.summary);
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(approx_duration(42.0), "~42 s");
        assert_eq!(approx_duration(600.0), "~10 min");
        assert_eq!(approx_duration(5.2 * 3600.0), "~5.2 h");
        assert_eq!(approx_duration(3.0 * 86400.0), "~3.0 d");
    }
}
