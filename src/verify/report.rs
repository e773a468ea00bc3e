//! What `etl verify` and `POST /v1/pipelines/{id}/verify` report: per table, equal, drift (the
//! key buckets and keys that differ, with row counts) or why it was not verified.

use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

pub use super::compare::DiffKind;

/// The outcome of one verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub pipeline_id: u64,
    /// The destination as its description names it (`sqlite data/etl.db`).
    pub destination: String,
    pub tables: Vec<TableReport>,
}

impl Report {
    /// The tables that drifted.
    pub fn drifted(&self) -> impl Iterator<Item = &TableReport> {
        self.tables
            .iter()
            .filter(|t| t.status == TableStatus::Drift)
    }
}

/// One table's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// Every row equal at a position the destination had reached.
    Equal,
    /// Rows differ, and kept differing while the source did not change them.
    Drift,
    /// Not compared: see `reason`.
    NotVerified,
}

/// One table of the pipeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TableReport {
    /// `schema.name` on the source.
    pub table: String,
    /// The table's OID on the source (as in `replication-status`).
    pub table_id: u32,
    pub status: TableStatus,
    /// Why it was not verified (`not_verified`), e.g. it is being copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Rows in the source snapshot and in the destination, when compared.
    pub source_rows: i64,
    pub destination_rows: i64,
    /// The key buckets (rows whose `md5` of the key text starts with `bucket`) that differ.
    pub ranges: Vec<RangeDrift>,
    /// The keys that differ (at most [`super::MAX_ROWS_SHOWN`]; empty when too many buckets
    /// differ to list their keys).
    pub rows: Vec<RowDrift>,
    /// Differing keys not listed in `rows`.
    pub more_rows: u64,
    /// Keys or buckets the source kept changing during every re-check: not counted as drift.
    pub unsettled: u64,
    /// Re-check rounds run (0 when the first comparison found every bucket equal).
    pub rechecks: u32,
    /// `--repair`: the table was sent back to `init` to be copied again.
    pub repaired: bool,
}

/// A key bucket that differs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RangeDrift {
    /// Hex prefix of `md5(key text)` shared by the bucket's keys.
    pub bucket: String,
    pub source_rows: i64,
    pub destination_rows: i64,
}

/// One key that differs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RowDrift {
    /// The key, e.g. `id=7` or `(a=1, b=x)`.
    pub key: String,
    #[schema(value_type = String, example = "missing")]
    pub kind: DiffKind,
}

impl TableReport {
    pub fn not_verified(table: String, table_id: u32, reason: impl Into<String>) -> Self {
        TableReport {
            table,
            table_id,
            status: TableStatus::NotVerified,
            reason: Some(reason.into()),
            source_rows: 0,
            destination_rows: 0,
            ranges: Vec::new(),
            rows: Vec::new(),
            more_rows: 0,
            unsettled: 0,
            rechecks: 0,
            repaired: false,
        }
    }
}

impl fmt::Display for DiffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiffKind::Missing => "missing in the destination",
            DiffKind::Extra => "extra in the destination",
            DiffKind::Changed => "changed",
        })
    }
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.table;
        match self.status {
            TableStatus::NotVerified => write!(
                f,
                "{t}: not verified: {}",
                self.reason.as_deref().unwrap_or("")
            )?,
            TableStatus::Equal if self.rechecks > 0 => write!(
                f,
                "{t}: equal ({} rows; {} re-check round(s) of rows that changed meanwhile)",
                self.source_rows, self.rechecks
            )?,
            TableStatus::Equal => write!(f, "{t}: equal ({} rows)", self.source_rows)?,
            TableStatus::Drift => {
                write!(
                    f,
                    "{t}: DRIFT in {} key bucket(s) (source {} rows, destination {} rows)",
                    self.ranges.len(),
                    self.source_rows,
                    self.destination_rows
                )?;
                for range in &self.ranges {
                    write!(
                        f,
                        "\n  bucket {}: source {} rows, destination {} rows",
                        range.bucket, range.source_rows, range.destination_rows
                    )?;
                }
                for row in &self.rows {
                    write!(f, "\n  {}: {}", row.key, row.kind)?;
                }
                if self.more_rows > 0 {
                    write!(f, "\n  … and {} more key(s)", self.more_rows)?;
                }
                if self.repaired {
                    write!(
                        f,
                        "\n  repair: sent back to init, copied again by the replicator"
                    )?;
                }
            }
        }
        if self.unsettled > 0 {
            write!(
                f,
                "\n  {} key(s) or bucket(s) changed on the source during every re-check (not counted)",
                self.unsettled
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pipeline {} against {}:",
            self.pipeline_id, self.destination
        )?;
        for table in &self.tables {
            write!(f, "\n{table}")?;
        }
        Ok(())
    }
}
