//! Checks a source Postgres before replication starts: everything that would make `etl replicate`
//! fail later (or silently lose updates) is reported up front as a [`Finding`] with a message and
//! a hint that says how to fix it.
//!
//! [`check`] reads the facts from the server ([`ServerFacts`]), [`evaluate`] turns them into a
//! [`Report`] without touching the network, so the rules are unit-tested for settings the test
//! cluster cannot have. `etl replicate` calls [`check`] at start-up and stops on a critical finding;
//! the control plane's `POST /sources/validate` calls it without a publication.

use std::fmt;

use serde::Serialize;
use sqlx::PgPool;

use crate::base::quote::quote_identifier;
use crate::base::schema::TableName;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Replication cannot work until this is fixed.
    Critical,
    /// Replication works, but something will go wrong under some circumstances.
    Warning,
}

/// One problem found on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// Stable identifier of the check, e.g. `wal_level` (the README lists them under "What the source needs").
    pub code: &'static str,
    /// What is wrong, naming the setting, role, publication or table.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Critical => "critical",
            Level::Warning => "warning",
        };
        write!(
            f,
            "{level} [{}]: {} (hint: {})",
            self.code, self.message, self.hint
        )
    }
}

/// Every finding of one [`check`], critical ones first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// No critical finding: replication can start (warnings may remain).
    pub fn is_ok(&self) -> bool {
        self.critical().next().is_none()
    }

    pub fn critical(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Critical)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Warning)
    }

    /// The finding with `code`, if any (the first one for per-table codes).
    pub fn find(&self, code: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.code == code)
    }
}

impl fmt::Display for Report {
    /// One finding per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, finding) in self.findings.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}

/// The checks could not be run (the facts could not be read).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("reading {what} from the source database")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// What [`evaluate`] judges, as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub database: String,
    pub wal_level: String,
    pub role: String,
    pub is_superuser: bool,
    /// The REPLICATION attribute, or membership of Amazon RDS's `rds_replication` role.
    pub can_replicate: bool,
    pub slots_in_use: i64,
    pub max_replication_slots: i64,
    pub wal_senders_in_use: i64,
    pub max_wal_senders: i64,
    /// The raw setting (`-1`, `10GB`, …); `None` before PostgreSQL 13, which has no such limit.
    pub max_slot_wal_keep_size: Option<String>,
    pub publication: Option<PublicationFacts>,
}

/// The publication the pipeline would replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationFacts {
    pub name: String,
    pub exists: bool,
    pub tables: Vec<PublishedTable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTable {
    pub name: TableName,
    /// Updates and deletes carry a key: a primary key (replica identity default), a replica
    /// identity index, or REPLICA IDENTITY FULL.
    pub keyed: bool,
}

/// Reads the facts of the server behind `pool` and judges them. `publication`: the publication the
/// pipeline replicates; `None` checks only the server and role.
pub async fn check(pool: &PgPool, publication: Option<&str>) -> Result<Report, Error> {
    let facts = read_facts(pool, publication).await?;
    Ok(evaluate(&facts))
}

const SERVER_FACTS: &str = "\
select current_database()::text,
       current_setting('wal_level'),
       current_user::text,
       r.rolsuper,
       r.rolreplication or (exists (select 1 from pg_roles where rolname = 'rds_replication')
                            and pg_has_role(current_user, 'rds_replication', 'member')),
       (select count(*) from pg_replication_slots),
       current_setting('max_replication_slots')::int8,
       (select count(*) from pg_stat_replication),
       current_setting('max_wal_senders')::int8,
       current_setting('max_slot_wal_keep_size', true)
from pg_roles r
where r.rolname = current_user";

const PUBLICATION_EXISTS: &str = "select exists (select 1 from pg_publication where pubname = $1)";

/// Published tables and whether their updates and deletes carry a key. A replica identity index
/// that was dropped leaves the table with no identity, as Postgres treats it.
const PUBLISHED_TABLES: &str = "\
select n.nspname::text, c.relname::text,
       c.relreplident = 'f'
       or (c.relreplident = 'd' and exists (select 1 from pg_index i
                                            where i.indrelid = c.oid and i.indisprimary))
       or (c.relreplident = 'i' and exists (select 1 from pg_index i
                                            where i.indrelid = c.oid and i.indisreplident))
from pg_publication_tables pt
join pg_namespace n on n.nspname = pt.schemaname
join pg_class c on c.relnamespace = n.oid and c.relname = pt.tablename
where pt.pubname = $1
order by 1, 2";

type ServerRow = (
    String,
    String,
    String,
    bool,
    bool,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

/// Reads [`ServerFacts`] (a few catalog queries, no writes).
pub async fn read_facts(pool: &PgPool, publication: Option<&str>) -> Result<ServerFacts, Error> {
    let query = |what| move |source| Error::Query { what, source };
    let row: ServerRow = sqlx::query_as(SERVER_FACTS)
        .fetch_one(pool)
        .await
        .map_err(query("server settings and role attributes"))?;
    let publication = match publication {
        None => None,
        Some(name) => {
            let exists: bool = sqlx::query_scalar(PUBLICATION_EXISTS)
                .bind(name)
                .fetch_one(pool)
                .await
                .map_err(query("the publication"))?;
            let rows: Vec<(String, String, bool)> = sqlx::query_as(PUBLISHED_TABLES)
                .bind(name)
                .fetch_all(pool)
                .await
                .map_err(query("the published tables"))?;
            let tables = rows
                .into_iter()
                .map(|(schema, table, keyed)| PublishedTable {
                    name: TableName::new(schema, table),
                    keyed,
                })
                .collect();
            Some(PublicationFacts {
                name: name.to_owned(),
                exists,
                tables,
            })
        }
    };
    let (database, wal_level, role, is_superuser, can_replicate) =
        (row.0, row.1, row.2, row.3, row.4);
    Ok(ServerFacts {
        database,
        wal_level,
        role,
        is_superuser,
        can_replicate,
        slots_in_use: row.5,
        max_replication_slots: row.6,
        wal_senders_in_use: row.7,
        max_wal_senders: row.8,
        max_slot_wal_keep_size: row.9,
        publication,
    })
}

/// Judges `facts`: critical findings first, then warnings, each in a fixed order.
pub fn evaluate(facts: &ServerFacts) -> Report {
    let mut findings = Vec::new();
    let mut critical = |code, message: String, hint: String| {
        findings.push(Finding {
            level: Level::Critical,
            code,
            message,
            hint,
        })
    };
    if facts.wal_level != "logical" {
        critical(
            "wal_level",
            format!(
                "wal_level is `{}`, logical replication needs `logical`",
                facts.wal_level
            ),
            "run ALTER SYSTEM SET wal_level = logical (on a managed service set its parameter, \
             e.g. rds.logical_replication = 1 on Amazon RDS) and restart the server"
                .into(),
        );
    }
    if !facts.is_superuser && !facts.can_replicate {
        let role = quote_identifier(&facts.role);
        critical(
            "replication_role",
            format!(
                "role {role} has neither the REPLICATION attribute nor superuser, so it cannot \
                 open a replication connection"
            ),
            format!(
                "run ALTER ROLE {role} WITH REPLICATION as a superuser (on Amazon RDS: GRANT \
                 rds_replication TO {role}), or connect as a role that has it"
            ),
        );
    }
    if let Some(publication) = &facts.publication {
        let quoted = quote_identifier(&publication.name);
        if !publication.exists {
            critical(
                "publication_missing",
                format!(
                    "publication {quoted} does not exist in database {}",
                    quote_identifier(&facts.database)
                ),
                format!(
                    "create it in that database (CREATE PUBLICATION {quoted} FOR TABLE …, or FOR \
                     ALL TABLES), or set pipeline.publication_name to an existing publication"
                ),
            );
        } else if publication.tables.is_empty() {
            critical(
                "publication_empty",
                format!("publication {quoted} publishes no tables"),
                format!("add tables with ALTER PUBLICATION {quoted} ADD TABLE …"),
            );
        }
    }
    if facts.slots_in_use >= facts.max_replication_slots {
        critical(
            "no_free_replication_slot",
            format!(
                "all replication slots are in use ({} of max_replication_slots = {})",
                facts.slots_in_use, facts.max_replication_slots
            ),
            "drop slots nobody uses (SELECT pg_drop_replication_slot(slot_name) FROM \
             pg_replication_slots WHERE NOT active — check them first) or raise \
             max_replication_slots and restart the server; a pipeline needs one slot, plus one \
             per table while it is being copied"
                .into(),
        );
    }
    if facts.wal_senders_in_use >= facts.max_wal_senders {
        critical(
            "no_free_wal_sender",
            format!(
                "all WAL senders are busy ({} of max_wal_senders = {})",
                facts.wal_senders_in_use, facts.max_wal_senders
            ),
            "stop replication clients nobody needs (see pg_stat_replication) or raise \
             max_wal_senders and restart the server; a pipeline needs one sender, plus one per \
             table while it is being copied"
                .into(),
        );
    }
    if facts.max_slot_wal_keep_size.as_deref() == Some("-1") {
        findings.push(Finding {
            level: Level::Warning,
            code: "slot_wal_unbounded",
            message: "max_slot_wal_keep_size is -1: a replication slot that stops advancing \
                      (a stopped or stuck pipeline) keeps WAL without limit and can fill the \
                      source's disk"
                .into(),
            hint: "set a limit, e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT \
                   pg_reload_conf(); and alert on the etl_slot_safe_wal_size_bytes metric"
                .into(),
        });
    }
    if let Some(publication) = &facts.publication {
        for table in publication.tables.iter().filter(|t| !t.keyed) {
            let quoted = table.name.quoted();
            findings.push(Finding {
                level: Level::Warning,
                code: "table_without_key",
                message: format!(
                    "table {quoted} has no primary key and is not REPLICA IDENTITY FULL: its \
                     updates and deletes cannot be keyed (Postgres also rejects UPDATE and \
                     DELETE on it while the publication publishes them)"
                ),
                hint: format!(
                    "add a primary key (ALTER TABLE {quoted} ADD PRIMARY KEY (…)) or run ALTER \
                     TABLE {quoted} REPLICA IDENTITY FULL"
                ),
            });
        }
    }
    Report { findings }
}

/// What [`evaluate_failover`] judges: the primary's side of failover slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverFacts {
    /// `server_version_num / 10000`.
    pub server_major: u32,
    /// The names in `synchronized_standby_slots` (PostgreSQL 17+; empty when unset).
    pub synchronized_standby_slots: Vec<String>,
    /// The physical replication slots that exist.
    pub physical_slots: Vec<String>,
}

const FAILOVER_FACTS: &str = "\
select current_setting('server_version_num')::int / 10000,
       coalesce(current_setting('synchronized_standby_slots', true), ''),
       array(select slot_name::text from pg_replication_slots where slot_type = 'physical')";

/// Reads and judges what `pipeline.failover_slot: true` needs from the source.
pub async fn check_failover(pool: &PgPool) -> Result<Vec<Finding>, Error> {
    let (server_major, standby_slots, physical_slots): (i32, String, Vec<String>) =
        sqlx::query_as(FAILOVER_FACTS)
            .fetch_one(pool)
            .await
            .map_err(|source| Error::Query {
                what: "the failover slot settings",
                source,
            })?;
    let facts = FailoverFacts {
        server_major: server_major.max(0) as u32,
        synchronized_standby_slots: standby_slots
            .split(',')
            .map(|name| name.trim().trim_matches('"').to_owned())
            .filter(|name| !name.is_empty())
            .collect(),
        physical_slots,
    };
    Ok(evaluate_failover(&facts))
}

/// Judges the primary for a failover apply slot. The standby's side (`sync_replication_slots =
/// on`, `hot_standby_feedback = on`, `primary_slot_name`, a `dbname` in `primary_conninfo`) is
/// not visible from here; the README lists it.
pub fn evaluate_failover(facts: &FailoverFacts) -> Vec<Finding> {
    if facts.server_major < 17 {
        return vec![Finding {
            level: Level::Critical,
            code: "failover_slot_unsupported",
            message: format!(
                "pipeline.failover_slot needs PostgreSQL 17 or later (slots with FAILOVER), the \
                 source runs {}",
                facts.server_major
            ),
            hint: "upgrade the source, or set pipeline.failover_slot: false".into(),
        }];
    }
    let mut findings = Vec::new();
    for missing in facts
        .synchronized_standby_slots
        .iter()
        .filter(|name| !facts.physical_slots.contains(name))
    {
        findings.push(Finding {
            level: Level::Critical,
            code: "failover_standby_slot_missing",
            message: format!(
                "synchronized_standby_slots names `{missing}`, which is not a physical \
                 replication slot here: logical decoding waits for it forever"
            ),
            hint: format!(
                "create it (SELECT pg_create_physical_replication_slot('{missing}')) and point \
                 the standby's primary_slot_name at it, or remove it from \
                 synchronized_standby_slots"
            ),
        });
    }
    if facts.synchronized_standby_slots.is_empty() {
        findings.push(Finding {
            level: Level::Warning,
            code: "failover_standby_slots_unset",
            message: "synchronized_standby_slots is empty: the pipeline may receive changes \
                      a standby does not have yet, and after a failover to it the slot there \
                      would be behind what was already delivered"
                .into(),
            hint: "ALTER SYSTEM SET synchronized_standby_slots = '<the standby's physical \
                   slot>'; SELECT pg_reload_conf();"
                .into(),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> ServerFacts {
        ServerFacts {
            database: "app".into(),
            wal_level: "logical".into(),
            role: "etl".into(),
            is_superuser: false,
            can_replicate: true,
            slots_in_use: 1,
            max_replication_slots: 10,
            wal_senders_in_use: 1,
            max_wal_senders: 10,
            max_slot_wal_keep_size: Some("10GB".into()),
            publication: Some(PublicationFacts {
                name: "pub".into(),
                exists: true,
                tables: vec![PublishedTable {
                    name: TableName::new("public", "orders"),
                    keyed: true,
                }],
            }),
        }
    }

    fn codes(report: &Report) -> Vec<&'static str> {
        report.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_healthy_server_has_no_findings() {
        let report = evaluate(&healthy());
        assert!(report.is_ok());
        assert_eq!(report.findings, vec![]);
    }

    #[test]
    fn wal_level_replica_is_critical() {
        let facts = ServerFacts {
            wal_level: "replica".into(),
            ..healthy()
        };
        let report = evaluate(&facts);
        assert!(!report.is_ok());
        assert_eq!(codes(&report), ["wal_level"]);
        assert!(report.findings[0].message.contains("`replica`"));
        assert!(report.findings[0].hint.contains("wal_level = logical"));
    }

    #[test]
    fn superuser_without_replication_attribute_may_replicate() {
        let facts = ServerFacts {
            is_superuser: true,
            can_replicate: false,
            ..healthy()
        };
        assert!(evaluate(&facts).is_ok());
    }

    #[test]
    fn exhausted_slots_and_senders_are_critical_and_warnings_follow() {
        let facts = ServerFacts {
            slots_in_use: 10,
            wal_senders_in_use: 12,
            max_slot_wal_keep_size: Some("-1".into()),
            ..healthy()
        };
        let report = evaluate(&facts);
        assert_eq!(
            codes(&report),
            [
                "no_free_replication_slot",
                "no_free_wal_sender",
                "slot_wal_unbounded"
            ]
        );
        assert!(report.findings[0].message.contains("10 of"));
    }

    #[test]
    fn only_warnings_leave_the_report_ok() {
        let facts = ServerFacts {
            max_slot_wal_keep_size: Some("-1".into()),
            ..healthy()
        };
        let report = evaluate(&facts);
        assert!(report.is_ok());
        assert_eq!(report.warnings().count(), 1);
    }

    #[test]
    fn no_publication_skips_the_publication_checks() {
        let facts = ServerFacts {
            publication: None,
            ..healthy()
        };
        assert_eq!(evaluate(&facts).findings, vec![]);
    }

    #[test]
    fn failover_needs_17_and_the_standby_slots_to_exist() {
        let facts = |major, standby: &[&str], physical: &[&str]| FailoverFacts {
            server_major: major,
            synchronized_standby_slots: standby.iter().map(|s| s.to_string()).collect(),
            physical_slots: physical.iter().map(|s| s.to_string()).collect(),
        };
        let codes = |findings: Vec<Finding>| findings.iter().map(|f| f.code).collect::<Vec<_>>();
        assert_eq!(
            codes(evaluate_failover(&facts(16, &[], &[]))),
            ["failover_slot_unsupported"]
        );
        assert_eq!(
            codes(evaluate_failover(&facts(17, &[], &["s1"]))),
            ["failover_standby_slots_unset"]
        );
        assert_eq!(
            codes(evaluate_failover(&facts(18, &["s1", "gone"], &["s1"]))),
            ["failover_standby_slot_missing"]
        );
        assert!(evaluate_failover(&facts(17, &["s1"], &["s1"])).is_empty());
    }

    #[test]
    fn findings_serialize_with_lowercase_levels() {
        let facts = ServerFacts {
            wal_level: "minimal".into(),
            ..healthy()
        };
        let json = serde_json::to_value(evaluate(&facts)).unwrap();
        assert_eq!(json["findings"][0]["level"], "critical");
        assert_eq!(json["findings"][0]["code"], "wal_level");
    }
}
