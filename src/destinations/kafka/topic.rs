//! Topic names: one per table, `{prefix}.{schema}.{table}`, and the destination's own state
//! topic, `{prefix}._etl-state`.
//!
//! A topic name holds only ASCII letters, digits, `.`, `_` and `-`, at most 249 characters.
//! Any other character of a schema or table name, and `-` and `.` themselves, is written `-XX`
//! (its UTF-8 bytes in hex), so every table has its own topic and the name can be read back:
//! `public.order_items` stays as it is, `"Weird Schema"."a.b"` becomes `Weird-20Schema.a-2Eb`.
//! An empty name is `-`.

use crate::base::schema::TableName;

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

/// `{prefix}.{schema}.{table}`, escaped (see the module documentation).
pub fn table_topic(prefix: &str, name: &TableName) -> String {
    format!("{prefix}.{}.{}", part(&name.schema), part(&name.name))
}

/// The compacted topic holding the destination's identity, copied tables and positions. Its
/// last part has a `-` that is not an escape, which no table part has, so it never meets a
/// table topic, whatever the prefix.
pub fn state_topic(prefix: &str) -> String {
    format!("{prefix}._etl-state")
}

fn part(text: &str) -> String {
    if text.is_empty() {
        return "-".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("-{byte:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_stay_readable() {
        let name = TableName::new("public", "order_items");
        assert_eq!(table_topic("shop", &name), "shop.public.order_items");
    }

    #[test]
    fn weird_names_become_distinct_valid_topics() {
        let weird = TableName::new("Weird \"Schema\"", "Ta-ble ü");
        let topic = table_topic("shop", &weird);
        assert_eq!(topic, "shop.Weird-20-22Schema-22.Ta-2Dble-20-C3-BC");
        assert!(crate::config::kafka::is_topic_text(&topic));
        let dotted = TableName::new("a.b", "c");
        let split = TableName::new("a", "b.c");
        assert_ne!(table_topic("p", &dotted), table_topic("p", &split));
        assert_eq!(table_topic("p", &TableName::new("", "x")), "p.-.x");
        assert_ne!(
            table_topic("p", &TableName::new("s", "_etl-state")),
            state_topic("p.s")
        );
    }
}
