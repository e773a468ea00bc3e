//! Names inside the stream: the subject of each table, the destination's own control subjects,
//! and the `Nats-Msg-Id` of each message, which is derived from the change's position so a
//! replay carries the same id and the destination can tell, from the last message of a
//! subject, how far that table got.

use crate::base::lsn::Lsn;
use crate::base::schema::TableName;

pub use crate::destinations::debezium::message_id::{change_id, copy_id};

/// `{prefix}.{schema}.{table}`. Characters a subject token cannot hold (whitespace, `.`, `*`,
/// `>`) and `%` itself are written `%XX` (their UTF-8 bytes in hex), so every table has its own
/// subject and the name can be read back; an empty name is `%`.
pub fn table_subject(prefix: &str, name: &TableName) -> String {
    format!("{prefix}.{}.{}", token(&name.schema), token(&name.name))
}

/// Control subjects have one token after the prefix, table subjects two, so they never meet.
pub fn control_subject(prefix: &str, what: &str) -> String {
    format!("{prefix}._etl_{what}")
}

fn token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '%') {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How far a table's subject got, read from the id of its last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// No message, or the last is of the initial copy: no change of the table was written.
    Nothing,
    /// Messages `1..=part` of the `parts` messages of the change at `(commit_lsn, ordinal)`.
    Change {
        commit_lsn: Lsn,
        ordinal: u32,
        part: u32,
        parts: u32,
    },
}

/// What the id of a table subject's last message says; `None` when it is none of ours.
pub fn parse_id(id: &str) -> Option<Applied> {
    let mut fields = id.split(':');
    let _table: u32 = fields.next()?.parse().ok()?;
    let second = fields.next()?;
    if second == "copy" {
        return Some(Applied::Nothing);
    }
    let commit_lsn = Lsn(u64::from_str_radix(second, 16).ok()?);
    let ordinal = fields.next()?.parse().ok()?;
    let part = fields.next()?.parse().ok()?;
    let parts = fields.next()?.parse().ok()?;
    if fields.next().is_some() || part == 0 || part > parts {
        return None;
    }
    Some(Applied::Change {
        commit_lsn,
        ordinal,
        part,
        parts,
    })
}

impl Applied {
    /// How many of the `parts` messages of the change at `position` are already in the
    /// stream: all of them for changes before the last one written, none after it.
    pub fn written(&self, position: (Lsn, u32), parts: u32) -> u32 {
        match *self {
            Applied::Nothing => 0,
            Applied::Change {
                commit_lsn,
                ordinal,
                part,
                ..
            } => match position.cmp(&(commit_lsn, ordinal)) {
                std::cmp::Ordering::Less => parts,
                std::cmp::Ordering::Equal => part.min(parts),
                std::cmp::Ordering::Greater => 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::schema::TableId;

    #[test]
    fn weird_names_become_distinct_valid_subjects() {
        let weird = TableName::new("Weird \"Schema\"", "Ta ble ü");
        assert_eq!(
            table_subject("shop", &weird),
            "shop.Weird%20\"Schema\".Ta%20ble%20ü"
        );
        let dotted = TableName::new("a.b", "c");
        let split = TableName::new("a", "b.c");
        assert_eq!(table_subject("p", &dotted), "p.a%2Eb.c");
        assert_ne!(table_subject("p", &dotted), table_subject("p", &split));
        assert_eq!(
            table_subject("p", &TableName::new("s", "%>*")),
            "p.s.%25%3E%2A"
        );
        assert_eq!(table_subject("p", &TableName::new("", "t\n")), "p.%.t%0A");
    }

    #[test]
    fn ids_carry_the_position_and_read_back() {
        let id = change_id(TableId(16_384), Lsn(0x1_A2B3_C400), 7, 2, 3);
        assert_eq!(id, "16384:00000001A2B3C400:7:2:3");
        let applied = parse_id(&id).unwrap();
        assert_eq!(
            applied,
            Applied::Change {
                commit_lsn: Lsn(0x1_A2B3_C400),
                ordinal: 7,
                part: 2,
                parts: 3
            }
        );
        assert_eq!(
            parse_id(&copy_id(TableId(1), 0xabc, 5)),
            Some(Applied::Nothing)
        );
        assert_eq!(parse_id("garbage"), None);
        assert_eq!(parse_id("1:00:1:0:1"), None);
    }

    #[test]
    fn written_counts_the_parts_already_in_the_stream() {
        let applied = Applied::Change {
            commit_lsn: Lsn(100),
            ordinal: 4,
            part: 1,
            parts: 2,
        };
        assert_eq!(applied.written((Lsn(90), 9), 3), 3);
        assert_eq!(applied.written((Lsn(100), 3), 2), 2);
        assert_eq!(applied.written((Lsn(100), 4), 2), 1);
        assert_eq!(applied.written((Lsn(100), 5), 2), 0);
        assert_eq!(applied.written((Lsn(101), 0), 1), 0);
        assert_eq!(Applied::Nothing.written((Lsn(1), 0), 2), 0);
    }
}
