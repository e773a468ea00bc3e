//! The comparison itself, free of I/O: which entries (key buckets or single keys) of the source
//! and the destination differ, and whether a difference is real drift or a change in flight.
//!
//! An entry maps a name (a bucket's hex prefix, or a key's canonical text) to its fingerprint
//! (row count and hash) and, on the source, a stamp that changes whenever the entry is written
//! (for keys, the row version's `xmin`; for buckets, the fingerprint itself). One round looks at
//! the source in snapshot `S_r`, the destination read after it had applied everything `S_r`
//! holds, and the source again in a later snapshot `S_r+1` taken after that read. An entry
//! equal in `S_r` and the destination is settled. One that differs while the source kept it
//! unchanged from `S_r` to `S_r+1` (same fingerprint and stamp) cannot be explained by a change
//! in flight: the destination was read between the two snapshots, after every change up to
//! `S_r`, and there was none after. It counts as drift once that happened in
//! [`CONFIRMATIONS`] rounds in a row (which also rules out a row inserted and deleted again
//! between two snapshots). An entry the source changed meanwhile is checked again next round.

use std::collections::{BTreeMap, BTreeSet};

/// Rounds in a row in which a stable difference must be seen to count as drift.
pub const CONFIRMATIONS: u32 = 2;

/// One entry on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rows: i64,
    /// Compared between the sides.
    pub fingerprint: String,
    /// Compared between two source snapshots (empty on the destination).
    pub stamp: String,
}

pub type Entries = BTreeMap<String, Entry>;

/// How an entry differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// In the source, not in the destination.
    Missing,
    /// In the destination, not in the source.
    Extra,
    /// In both, with other values (or, for a bucket, other rows).
    Changed,
}

fn kind(source: Option<&Entry>, destination: Option<&Entry>) -> DiffKind {
    match (source, destination) {
        (Some(_), None) => DiffKind::Missing,
        (None, Some(_)) => DiffKind::Extra,
        _ => DiffKind::Changed,
    }
}

/// The names whose fingerprints differ between the two sides.
pub fn differing(source: &Entries, destination: &Entries) -> BTreeSet<String> {
    source
        .keys()
        .chain(destination.keys())
        .filter(|name| {
            source.get(*name).map(|e| (&e.fingerprint, e.rows))
                != destination.get(*name).map(|e| (&e.fingerprint, e.rows))
        })
        .cloned()
        .collect()
}

/// A confirmed difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub name: String,
    pub kind: DiffKind,
    pub source_rows: i64,
    pub destination_rows: i64,
}

/// The state of a multi-round check of some suspect entries.
#[derive(Debug, Default)]
pub struct Rounds {
    /// Entries still being checked, with how many rounds in a row they differed stably.
    pending: BTreeMap<String, u32>,
    confirmed: Vec<Drift>,
}

impl Rounds {
    pub fn new(suspects: impl IntoIterator<Item = String>) -> Rounds {
        Rounds {
            pending: suspects.into_iter().map(|name| (name, 0)).collect(),
            confirmed: Vec::new(),
        }
    }

    /// Entries still to check.
    pub fn pending(&self) -> impl Iterator<Item = &String> {
        self.pending.keys()
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// One round: the source at `S_r`, the destination read after it reached `S_r`, the source
    /// at `S_r+1`. Entries not named in any of them are absent on every side (settled).
    pub fn round(&mut self, before: &Entries, destination: &Entries, after: &Entries) {
        let mut still = BTreeMap::new();
        for (name, seen) in std::mem::take(&mut self.pending) {
            let (s, d, a) = (before.get(&name), destination.get(&name), after.get(&name));
            let equal = s.map(|e| (&e.fingerprint, e.rows)) == d.map(|e| (&e.fingerprint, e.rows));
            if equal {
                continue;
            }
            if s != a {
                // Changed on the source while the destination was read: look again.
                still.insert(name, 0);
                continue;
            }
            if seen + 1 >= CONFIRMATIONS {
                self.confirmed.push(Drift {
                    kind: kind(s, d),
                    source_rows: s.map_or(0, |e| e.rows),
                    destination_rows: d.map_or(0, |e| e.rows),
                    name,
                });
            } else {
                still.insert(name, seen + 1);
            }
        }
        self.pending = still;
    }

    /// The confirmed drift, and the entries that kept changing (not counted as drift).
    pub fn finish(self) -> (Vec<Drift>, Vec<String>) {
        (self.confirmed, self.pending.into_keys().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fingerprint: &str, stamp: &str) -> Entry {
        Entry {
            rows: 1,
            fingerprint: fingerprint.into(),
            stamp: stamp.into(),
        }
    }

    fn entries(items: &[(&str, &str, &str)]) -> Entries {
        items
            .iter()
            .map(|(name, fp, stamp)| (name.to_string(), entry(fp, stamp)))
            .collect()
    }

    #[test]
    fn differing_names_cover_both_sides() {
        let source = entries(&[("a", "1", ""), ("b", "2", ""), ("c", "3", "")]);
        let destination = entries(&[("a", "1", ""), ("b", "x", ""), ("d", "4", "")]);
        let names: Vec<_> = differing(&source, &destination).into_iter().collect();
        assert_eq!(names, ["b", "c", "d"]);
    }

    #[test]
    fn a_stable_difference_is_drift_after_two_rounds() {
        let source = entries(&[("k", "1", "x1"), ("m", "2", "x2")]);
        let destination = entries(&[("k", "changed", ""), ("e", "9", "")]);
        let mut rounds = Rounds::new(["k".to_string(), "m".into(), "e".into()]);
        rounds.round(&source, &destination, &source);
        assert!(!rounds.is_done(), "one round is not enough");
        rounds.round(&source, &destination, &source);
        let (drift, unsettled) = rounds.finish();
        let kinds: Vec<_> = drift.iter().map(|d| (d.name.as_str(), d.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("e", DiffKind::Extra),
                ("k", DiffKind::Changed),
                ("m", DiffKind::Missing)
            ]
        );
        assert!(unsettled.is_empty());
    }

    #[test]
    fn a_difference_the_source_is_changing_is_never_drift() {
        let mut rounds = Rounds::new(["k".to_string()]);
        for i in 0..5 {
            let before = entries(&[("k", "v", &format!("x{i}"))]);
            let after = entries(&[("k", "v2", &format!("x{}", i + 1))]);
            let destination = entries(&[("k", "old", "")]);
            rounds.round(&before, &destination, &after);
        }
        let (drift, unsettled) = rounds.finish();
        assert!(drift.is_empty());
        assert_eq!(unsettled, ["k"]);
    }

    #[test]
    fn a_difference_that_catches_up_is_settled() {
        let mut rounds = Rounds::new(["k".to_string()]);
        let source = entries(&[("k", "v", "x1")]);
        rounds.round(&source, &entries(&[("k", "old", "")]), &source);
        rounds.round(&source, &source, &source);
        assert!(rounds.is_done());
        assert_eq!(rounds.finish(), (Vec::new(), Vec::new()));
    }
}
