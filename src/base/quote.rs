//! Quoting of SQL identifiers and string literals, for every SQL text we build (the source's
//! Postgres, the replication protocol's commands, the Postgres and SQLite destinations: both
//! dialects double the quote character). The one place that does it, so a name with quotes,
//! spaces, capitals or unicode is handled the same way everywhere.

/// Quotes an SQL identifier: `Weird "Name"` → `"Weird ""Name"""`.
pub fn quote_identifier(identifier: &str) -> String {
    let mut out = String::with_capacity(identifier.len() + 2);
    out.push('"');
    for c in identifier.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes an SQL string literal: `it's` → `'it''s'`.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
