//! Manifests as YAML text that every Kubernetes tool reads the same way.
//!
//! `serde_yaml` writes YAML 1.2, where `2026-01-01T00:00:00Z` is a plain string. kubectl and
//! other Go tools read YAML 1.1, where the same unquoted text is a *timestamp*; they then hand
//! the API server a re-formatted time, or refuse it where a string is expected (an annotation
//! such as `etl/restarted-at`). [`to_yaml`] therefore single-quotes every plain scalar a YAML 1.1
//! reader would take for a timestamp, and checks that doing so changed nothing a YAML 1.2 reader
//! sees. Block scalars (a ConfigMap's `{env}.yaml`) are left exactly as written.
//!
//! What the objects contain is [`super::resources`]' business; this module only writes them.

use serde::Serialize;

use super::K8sError;

/// `object` as YAML, the way `kubectl apply -f` reads it: strings that look like YAML 1.1
/// timestamps are quoted.
pub fn to_yaml(object: &impl Serialize) -> Result<String, K8sError> {
    let invalid = |message: String| K8sError::InvalidSpec {
        field: "manifest".into(),
        message,
    };
    let plain = serde_yaml::to_string(object)
        .map_err(|e| invalid(format!("cannot render as YAML: {e}")))?;
    let quoted = quote_timestamps(&plain);
    if quoted != plain {
        let read = |text: &str| serde_yaml::from_str::<serde_yaml::Value>(text);
        match (read(&plain), read(&quoted)) {
            (Ok(before), Ok(after)) if before == after => {}
            _ => {
                return Err(invalid(
                    "quoting timestamp-like strings would change the manifest".into(),
                ));
            }
        }
    }
    Ok(quoted)
}

/// Quotes plain scalars that are YAML 1.1 timestamps, outside block scalars. Works on the block
/// style `serde_yaml` emits: one `key: value` or `- value` per line.
fn quote_timestamps(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 16);
    // Indentation of the line that opened the block scalar we are inside, if any.
    let mut block_opener: Option<usize> = None;
    for line in yaml.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let indent = content.len() - content.trim_start_matches(' ').len();
        if let Some(opener) = block_opener {
            if content.trim().is_empty() || indent > opener {
                out.push_str(line);
                continue;
            }
            block_opener = None;
        }
        let value_start = value_start(content);
        let value = &content[value_start..];
        if is_block_scalar_header(value) {
            block_opener = Some(indent);
            out.push_str(line);
        } else if value_start > 0 && is_yaml11_timestamp(value) {
            out.push_str(&content[..value_start]);
            out.push('\'');
            out.push_str(value);
            out.push('\'');
            out.push_str(&line[content.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Where the scalar value of a `key: value` or `- value` line starts (0 when there is none).
fn value_start(line: &str) -> usize {
    if let Some(colon) = line.rfind(": ") {
        return colon + 2;
    }
    let trimmed = line.trim_start_matches(' ');
    if let Some(rest) = trimmed.strip_prefix("- ") {
        return line.len() - rest.len();
    }
    0
}

/// `|`, `|-`, `>+`, `|2-`, …: the header of a literal or folded block scalar.
fn is_block_scalar_header(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some('|' | '>'))
        && chars.all(|c| c.is_ascii_digit() || c == '-' || c == '+')
}

/// Whether a YAML 1.1 reader resolves `value` to a timestamp
/// (`yyyy-mm-dd`, or `yyyy-m-d` + `T`/spaces + `h:mm:ss[.frac][zone]`).
fn is_yaml11_timestamp(value: &str) -> bool {
    let mut cursor = Cursor(value.as_bytes());
    if !(cursor.digits(4, 4) && cursor.byte(b'-')) {
        return false;
    }
    let month = cursor.digits(1, 2);
    let day = month && cursor.byte(b'-') && cursor.digits(1, 2);
    if !day {
        return false;
    }
    if cursor.is_empty() {
        // The date-only form needs two-digit month and day.
        return value.len() == 10;
    }
    let separated = cursor.byte(b'T') || cursor.byte(b't') || cursor.spaces() > 0;
    let time = separated
        && cursor.digits(1, 2)
        && cursor.byte(b':')
        && cursor.digits(2, 2)
        && cursor.byte(b':')
        && cursor.digits(2, 2);
    if !time {
        return false;
    }
    if cursor.byte(b'.') {
        cursor.digits(0, usize::MAX);
    }
    cursor.spaces();
    if cursor.is_empty() || cursor.byte(b'Z') {
        return cursor.is_empty();
    }
    (cursor.byte(b'+') || cursor.byte(b'-'))
        && cursor.digits(1, 2)
        && (cursor.is_empty() || (cursor.byte(b':') && cursor.digits(2, 2)))
        && cursor.is_empty()
}

/// A position in the bytes of a scalar, consumed from the front.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Consumes `expected` if it comes next.
    fn byte(&mut self, expected: u8) -> bool {
        match self.0.split_first() {
            Some((&b, rest)) if b == expected => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    /// Consumes between `min` and `max` ASCII digits; false (consuming nothing) when fewer than
    /// `min` come next.
    fn digits(&mut self, min: usize, max: usize) -> bool {
        let count = self
            .0
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if count < min {
            return false;
        }
        self.0 = &self.0[count..];
        true
    }

    /// Consumes spaces and tabs; returns how many.
    fn spaces(&mut self) -> usize {
        let count = self
            .0
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        self.0 = &self.0[count..];
        count
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn yaml11_timestamps_are_recognised_and_other_strings_are_not() {
        for (value, timestamp) in [
            ("2026-01-01", true),
            ("2026-01-01T00:00:00Z", true),
            ("2026-01-01T00:00:00.000000001Z", true),
            ("2026-1-1t1:00:00", true),
            ("2001-12-14 21:59:43.10 -5", true),
            ("2001-12-14T21:59:43+05:30", true),
            ("2026-1-1", false),
            ("2026-01-01T00:00", false),
            ("2026-01-01T00:00:00Zulu", false),
            ("20260101", false),
            ("first", false),
            ("v2026-01-01", false),
            ("2026-01-01x", false),
        ] {
            assert_eq!(is_yaml11_timestamp(value), timestamp, "{value:?}");
        }
    }

    #[test]
    fn a_timestamp_annotation_is_quoted() {
        let object = BTreeMap::from([(
            "annotations",
            BTreeMap::from([("etl/restarted-at", "2026-01-01T00:00:00.000000001Z")]),
        )]);
        assert_eq!(
            to_yaml(&object).unwrap(),
            "annotations:\n  etl/restarted-at: '2026-01-01T00:00:00.000000001Z'\n"
        );
    }

    #[test]
    fn timestamps_in_sequences_are_quoted_but_block_scalars_are_left_alone() {
        let object = BTreeMap::from([
            (
                "dates",
                serde_yaml::to_value(["2026-01-01", "later"]).unwrap(),
            ),
            (
                "file",
                serde_yaml::Value::String("since: 2026-01-01\nuntil: 2027-01-01\n".into()),
            ),
        ]);
        assert_eq!(
            to_yaml(&object).unwrap(),
            "dates:\n- '2026-01-01'\n- later\nfile: |\n  since: 2026-01-01\n  until: 2027-01-01\n"
        );
    }

    #[test]
    fn quoting_keeps_every_value_as_it_was() {
        let object = BTreeMap::from([
            ("at", "2026-01-01 10:00:00"),
            ("colon", "a: 2026-01-01"),
            ("number", "007"),
        ]);
        let yaml = to_yaml(&object).unwrap();
        let back: BTreeMap<String, String> = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back["at"], "2026-01-01 10:00:00");
        assert_eq!(back["colon"], "a: 2026-01-01");
        assert_eq!(back["number"], "007");
        assert!(yaml.contains("at: '2026-01-01 10:00:00'"), "{yaml}");
    }
}
