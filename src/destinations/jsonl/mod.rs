//! The `jsonl` destination: every change as one JSON object per line, to stdout (for
//! `etl replicate … | jq`) or to a file rotated by size.
//!
//! - [`encode`]: the line format and how values are typed;
//! - [`output`]: stdout, or the rotating file.
//!
//! Delivery is at-least-once: after a crash, changes since the last acknowledged commit are
//! written again, with the same `commit_lsn` and `ordinal`, which together identify a change, so
//! a consumer drops lines whose `(commit_lsn, ordinal)` it has already seen. A table's initial
//! copy starts with a `truncate` line whose positions are `null` (a restarted copy starts over,
//! so a consumer discards the table's earlier `read` rows), then one `read` line per row.
//! Change batches are synced to disk before the call returns; copy rows are synced when the
//! table's copy finishes.
//!
//! The pipeline identity of a file output is kept beside it, in the hidden file
//! `.<name>.etl-identity` of the same directory (JSON, replaced atomically; [`identity_path`]).
//! On stdout there is nowhere to keep one: the engine then only compares the description
//! (`jsonl stdout`). A consumer deduplicates by position, so the destination does not track
//! finished copies ([`Destination::copied_tables`] is `None`).

pub mod encode;
pub mod output;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::schema::{TableId, TableSchema};
use crate::engine::destination::{Destination, Error, PipelineIdentity, Result};

use output::{Output, RotatingFile};

/// Writes change events as JSON lines.
pub struct JsonlDestination {
    output: Arc<Mutex<Output>>,
    describe: String,
    /// Where the pipeline identity is kept (`None`: stdout).
    identity_path: Option<PathBuf>,
}

/// The description of a jsonl output (`jsonl stdout`, `jsonl /var/log/etl/changes.jsonl`).
pub fn describe(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("jsonl {}", path.display()),
        None => "jsonl stdout".to_owned(),
    }
}

/// The file beside `path` that keeps the pipeline identity: hidden, and not named
/// `<path>.…` like the rotated files a consumer reads (`dir/.changes.jsonl.etl-identity`).
pub fn identity_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or(path.as_os_str()));
    name.push(".etl-identity");
    path.with_file_name(name)
}

impl std::fmt::Debug for JsonlDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlDestination")
            .field("output", &self.describe)
            .finish_non_exhaustive()
    }
}

impl JsonlDestination {
    /// Lines to standard output.
    pub fn stdout() -> Self {
        JsonlDestination {
            output: Arc::new(Mutex::new(Output::Stdout)),
            describe: "stdout".into(),
            identity_path: None,
        }
    }

    /// Lines to `path`, rotated when it would exceed `max_file_bytes` (`None`: never).
    pub fn file(path: &Path, max_file_bytes: Option<u64>) -> Result<Self> {
        let file = RotatingFile::open(path, max_file_bytes)
            .map_err(|e| Error::fatal(format!("cannot open jsonl file {}", path.display()), e))?;
        Ok(JsonlDestination {
            output: Arc::new(Mutex::new(Output::File(file))),
            describe: path.display().to_string(),
            identity_path: Some(identity_path(path)),
        })
    }

    /// Writes `lines` and, if `sync`, makes them durable; on a blocking thread.
    async fn write(&self, lines: Vec<u8>, sync: bool) -> Result<()> {
        let output = Arc::clone(&self.output);
        let describe = self.describe.clone();
        tokio::task::spawn_blocking(move || {
            let mut output = output.lock().map_err(|_| Error::Fatal {
                message: "jsonl destination is unusable after a panic in an earlier write".into(),
                source: None,
            })?;
            let result = output
                .write_lines(&lines)
                .and_then(|()| if sync { output.sync() } else { Ok(()) });
            result.map_err(|e| Error::fatal(format!("writing jsonl to {describe}"), e))
        })
        .await
        .map_err(|e| Error::fatal("jsonl write task failed", e))?
    }
}

impl Destination for JsonlDestination {
    fn kind(&self) -> &'static str {
        "jsonl"
    }

    fn describe(&self) -> String {
        match &self.identity_path {
            Some(_) => format!("jsonl {}", self.describe),
            None => describe(None),
        }
    }

    fn keeps_identity(&self) -> bool {
        self.identity_path.is_some()
    }

    async fn read_identity(&self) -> Result<Option<PipelineIdentity>> {
        let Some(path) = self.identity_path.clone() else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || output::read_json(&path))
            .await
            .map_err(|e| Error::fatal("jsonl identity task failed", e))?
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> Result<()> {
        let Some(path) = self.identity_path.clone() else {
            return Ok(());
        };
        let identity = identity.clone();
        tokio::task::spawn_blocking(move || output::replace_json(&path, &identity))
            .await
            .map_err(|e| Error::fatal("jsonl identity task failed", e))?
    }

    async fn copied_tables(&self) -> Result<Option<BTreeSet<TableId>>> {
        Ok(None)
    }

    async fn prepare_table(&self, _schema: &TableSchema) -> Result<()> {
        Ok(())
    }

    async fn begin_copy(&self, schema: &TableSchema) -> Result<()> {
        let mut lines = Vec::new();
        encode::copy_start_line(&mut lines, schema);
        self.write(lines, true).await
    }

    async fn write_copy_rows(&self, schema: &TableSchema, chunk: CopyChunk) -> Result<()> {
        let rows = chunk
            .rows(schema.columns.len())
            .map_err(|e| Error::table(schema, format!("initial copy: {e}")))?;
        let mut lines = Vec::with_capacity(chunk.raw().len() * 2);
        for row in &rows {
            encode::read_line(&mut lines, schema, row);
        }
        self.write(lines, false).await
    }

    async fn finish_copy(&self, _schema: &TableSchema) -> Result<()> {
        self.write(Vec::new(), true).await
    }

    async fn alter_table(&self, _old: &TableSchema, _new: &TableSchema) -> Result<()> {
        // Every line names its columns; nothing to change.
        Ok(())
    }

    async fn write_events(&self, events: Vec<ChangeEvent>) -> Result<()> {
        let mut lines = Vec::with_capacity(events.len() * 200);
        for event in &events {
            encode::change_line(&mut lines, event);
        }
        self.write(lines, true).await
    }
}
