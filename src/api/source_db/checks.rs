//! `POST /v1/sources/validate`: the prerequisites of logical replication on a source, each
//! failure a [`Finding`] with a level, a code, what is wrong and how to fix it.

use sqlx::PgConnection;

use crate::api::domain::source::{Finding, FindingLevel};
use crate::api::error::ApiError;

fn finding(level: FindingLevel, code: &str, message: String, hint: &str) -> Finding {
    Finding {
        level,
        code: code.to_owned(),
        message,
        hint: hint.to_owned(),
    }
}

/// Settings and counts read in one query.
#[derive(sqlx::FromRow)]
struct Facts {
    wal_level: String,
    can_replicate: bool,
    max_slots: i64,
    used_slots: i64,
    max_senders: i64,
    used_senders: i64,
    max_slot_wal_keep_size: i64,
}

/// Checks a reachable source; `publication`, when given, must exist and hold tables.
pub async fn run(
    conn: &mut PgConnection,
    publication: Option<&str>,
) -> Result<Vec<Finding>, ApiError> {
    let facts: Facts = sqlx::query_as(
        "select current_setting('wal_level') as wal_level, \
           (select rolreplication or rolsuper from pg_roles where rolname = current_user) \
             as can_replicate, \
           current_setting('max_replication_slots')::int8 as max_slots, \
           (select count(*) from pg_replication_slots) as used_slots, \
           current_setting('max_wal_senders')::int8 as max_senders, \
           (select count(*) from pg_stat_replication) as used_senders, \
           current_setting('max_slot_wal_keep_size')::int8 as max_slot_wal_keep_size",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| super::source_error("cannot read the source's settings", e))?;

    let mut out = Vec::new();
    if facts.wal_level != "logical" {
        out.push(finding(
            FindingLevel::Critical,
            "wal_level",
            format!("wal_level is `{}`, not `logical`", facts.wal_level),
            "set wal_level = logical in postgresql.conf and restart the server",
        ));
    }
    if !facts.can_replicate {
        out.push(finding(
            FindingLevel::Critical,
            "replication_role",
            "the user has neither the REPLICATION attribute nor superuser".into(),
            "ALTER ROLE <user> WITH REPLICATION",
        ));
    }
    for (code, what, max, used, setting) in [
        (
            "replication_slots",
            "replication slots",
            facts.max_slots,
            facts.used_slots,
            "max_replication_slots",
        ),
        (
            "wal_senders",
            "WAL senders",
            facts.max_senders,
            facts.used_senders,
            "max_wal_senders",
        ),
    ] {
        let free = max - used;
        // One for the apply worker plus at least one table copy at a time.
        if free < 2 {
            out.push(finding(
                if free < 1 {
                    FindingLevel::Critical
                } else {
                    FindingLevel::Warning
                },
                code,
                format!("{free} of {max} {what} free; a pipeline needs at least 2"),
                &format!("raise {setting} (needs a restart) or drop unused ones"),
            ));
        }
    }
    if facts.max_slot_wal_keep_size < 0 {
        out.push(finding(
            FindingLevel::Warning,
            "max_slot_wal_keep_size",
            "max_slot_wal_keep_size is -1: a stalled pipeline can keep WAL until the disk is full"
                .into(),
            "set max_slot_wal_keep_size to a size the disk can hold",
        ));
    }
    if let Some(name) = publication {
        let tables: Option<i64> = sqlx::query_scalar(
            "select (select count(*) from pg_publication_tables t where t.pubname = p.pubname) \
             from pg_publication p where p.pubname = $1",
        )
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| super::source_error("cannot read publications", e))?;
        match tables {
            None => out.push(finding(
                FindingLevel::Critical,
                "publication_missing",
                format!("publication `{name}` does not exist"),
                "create it (POST /v1/sources/{id}/publications or CREATE PUBLICATION)",
            )),
            Some(0) => out.push(finding(
                FindingLevel::Warning,
                "publication_empty",
                format!("publication `{name}` has no tables"),
                "add tables to it; nothing is replicated until then",
            )),
            Some(_) => {}
        }
    }
    Ok(out)
}

/// The finding for a source that cannot be reached at all.
pub fn unreachable(message: String) -> Finding {
    finding(
        FindingLevel::Critical,
        "unreachable",
        message,
        "check host, port, database, user, password and TLS settings, and that the server \
         accepts connections from the replicator's network",
    )
}
