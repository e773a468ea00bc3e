//! The `local` runtime: each pipeline's replicator is an `etl replicate` child process of this
//! machine, started with a generated config directory and its secrets as `APP_` variables.
//!
//! Per pipeline, under `{state_dir}/pipeline-{id}/`: `config/{env}.yaml` (no secrets),
//! `replicator.pid`, `replicator.log` (stdout and stderr, appended) and `last-exit` (why the
//! last run ended, when it was not asked to). The pid file is what lets a restarted API find
//! its replicators again; a pid is only trusted while `/proc/{pid}/cmdline` still names the
//! pipeline's config dir, so a recycled pid is never mistaken for a replicator.
//!
//! A live replicator is `starting` until its log (since this start; `log-offset` records where
//! that begins) shows `resuming from LSN`, the line it writes once its replication session is
//! up, and `started` from then on.
//!
//! Replicators run in their own process group and outlive the API: stopping the API (or a
//! Ctrl-C in its terminal) does not stop replication. A replicator that crashes is reported as
//! `failed` with its exit and the last line of its log; the API itself is unaffected.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::{LaunchSpec, PipelineRuntime, ReplicatorTarget, RuntimeError, RuntimeStatus};
use crate::config::{Environment, LocalRuntimeConfig};

/// How often a stop checks whether a replicator it did not start has exited.
const POLL: Duration = Duration::from_millis(50);
/// How long a stop waits after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// What `etl replicate` logs once its replication session is up.
const STREAMING_MARKER: &[u8] = b"resuming from LSN";
/// How much of a run's log is searched for the marker (it comes within the first lines).
const MARKER_SEARCH_BYTES: u64 = 4 << 20;
/// How much of the end of a log is searched for the failure reason (a backtrace can follow it).
const REASON_SEARCH_BYTES: u64 = 256 << 10;

/// Child processes on this machine.
pub struct LocalRuntime {
    binary: PathBuf,
    state_dir: PathBuf,
    environment: Environment,
    stop_timeout: Duration,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Pipelines whose replicator is being stopped on purpose.
    stopping: Mutex<HashSet<i64>>,
    /// Pipelines whose replicator (this pid) was seen streaming.
    streaming: Mutex<HashMap<i64, i32>>,
    /// Exit notifications of the children this process started (true once reaped).
    children: Mutex<HashMap<i64, watch::Receiver<bool>>>,
    /// One start/stop at a time per pipeline.
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalRuntime {
    /// A runtime for `environment` (the replicators load `{env}.yaml`).
    pub fn new(
        config: &LocalRuntimeConfig,
        environment: Environment,
    ) -> Result<Self, RuntimeError> {
        let binary = match &config.replicator_binary {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(|e| {
                RuntimeError::Failed(format!(
                    "cannot find the running executable to start replicators with \
                     (set api.local.replicator_binary): {e}"
                ))
            })?,
        };
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            RuntimeError::Failed(format!(
                "cannot create api.local.state_dir {}: {e}",
                config.state_dir.display()
            ))
        })?;
        // Absolute, so pid checks against /proc/{pid}/cmdline compare like with like.
        let state_dir = std::fs::canonicalize(&config.state_dir)
            .map_err(|e| RuntimeError::Failed(format!("{}: {e}", config.state_dir.display())))?;
        Ok(Self {
            binary,
            state_dir,
            environment,
            stop_timeout: Duration::from_secs(config.stop_timeout_seconds),
            shared: Arc::new(Shared::default()),
        })
    }

    /// The directory of one pipeline's files.
    pub fn pipeline_dir(&self, pipeline_id: i64) -> PathBuf {
        self.state_dir.join(format!("pipeline-{pipeline_id}"))
    }

    fn files(&self, pipeline_id: i64) -> Files {
        let dir = self.pipeline_dir(pipeline_id);
        Files {
            config_dir: dir.join("config"),
            pid: dir.join("replicator.pid"),
            log: dir.join("replicator.log"),
            last_exit: dir.join("last-exit"),
            log_offset: dir.join("log-offset"),
            dir,
        }
    }

    fn lock(&self, pipeline_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.shared.locks);
        locks.entry(pipeline_id).or_default().clone()
    }

    /// The pid of the pipeline's live replicator, if any.
    fn live_pid(&self, files: &Files) -> Option<i32> {
        let pid = read_pid(&files.pid)?;
        is_replicator(pid, &files.config_dir).then_some(pid)
    }

    async fn start_locked(&self, spec: &LaunchSpec) -> Result<(), RuntimeError> {
        let id = spec.target.pipeline_id;
        let files = self.files(id);
        if self.live_pid(&files).is_some() {
            self.stop_locked(id).await?;
        }
        let io = |what: &str, path: &Path, e: std::io::Error| {
            RuntimeError::Failed(format!("cannot {what} {}: {e}", path.display()))
        };
        std::fs::create_dir_all(&files.config_dir)
            .map_err(|e| io("create", &files.config_dir, e))?;
        let config_file = files.config_dir.join(format!("{}.yaml", self.environment));
        std::fs::write(&config_file, &spec.config_yaml)
            .map_err(|e| io("write", &config_file, e))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&files.log)
            .map_err(|e| io("open", &files.log, e))?;
        let log_err = log.try_clone().map_err(|e| io("open", &files.log, e))?;
        let offset = log.metadata().map_err(|e| io("read", &files.log, e))?.len();
        write_atomically(&files.log_offset, &offset.to_string())
            .map_err(|e| io("write", &files.log_offset, e))?;

        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("--env")
            .arg(self.environment.as_str())
            .arg("--config-dir")
            .arg(&files.config_dir)
            .arg("replicate")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        // The API's own `APP_` settings must not leak into the replicator's configuration.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("APP_") {
                command.env_remove(&name);
            }
        }
        for (name, value) in &spec.secrets {
            command.env(name, value.expose());
        }
        let mut child = command.spawn().map_err(|e| {
            RuntimeError::Failed(format!(
                "cannot start the replicator {}: {e}",
                self.binary.display()
            ))
        })?;
        let pid = child
            .id()
            .ok_or_else(|| RuntimeError::Failed("the replicator exited at once".into()))?;
        let _ = std::fs::remove_file(&files.last_exit);
        write_atomically(&files.pid, &pid.to_string()).map_err(|e| io("write", &files.pid, e))?;
        tracing::info!(pipeline_id = id, pid, "replicator started");

        let (exited_tx, exited_rx) = watch::channel(false);
        lock(&self.shared.children).insert(id, exited_rx);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let outcome = child.wait().await;
            let requested = lock(&shared.stopping).contains(&id);
            let _ = remove_if_holds(&files.pid, pid);
            match outcome {
                Ok(status) if status.success() || requested => {
                    tracing::info!(pipeline_id = id, pid, %status, "replicator exited");
                }
                Ok(status) => {
                    let reason = describe_exit(&status);
                    tracing::warn!(pipeline_id = id, pid, %reason, "replicator failed");
                    let _ = std::fs::write(&files.last_exit, reason);
                }
                Err(e) => {
                    let _ = std::fs::write(&files.last_exit, format!("cannot wait for it: {e}"));
                }
            }
            let _ = exited_tx.send(true);
        });
        Ok(())
    }

    async fn stop_locked(&self, pipeline_id: i64) -> Result<(), RuntimeError> {
        let files = self.files(pipeline_id);
        let Some(pid) = self.live_pid(&files) else {
            // Nothing runs: forget a stale pid file and a past failure.
            let _ = std::fs::remove_file(&files.pid);
            let _ = std::fs::remove_file(&files.last_exit);
            return Ok(());
        };
        lock(&self.shared.stopping).insert(pipeline_id);
        let result = self.terminate(pipeline_id, pid, &files).await;
        let _ = remove_if_holds(&files.pid, pid as u32);
        let _ = std::fs::remove_file(&files.last_exit);
        lock(&self.shared.stopping).remove(&pipeline_id);
        result
    }

    /// SIGTERM, wait up to the stop timeout, then SIGKILL.
    async fn terminate(
        &self,
        pipeline_id: i64,
        pid: i32,
        files: &Files,
    ) -> Result<(), RuntimeError> {
        tracing::info!(pipeline_id, pid, "stopping replicator");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if self
            .wait_exit(pipeline_id, pid, files, self.stop_timeout)
            .await
        {
            return Ok(());
        }
        tracing::warn!(pipeline_id, pid, "replicator ignored SIGTERM; killing it");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if self.wait_exit(pipeline_id, pid, files, KILL_WAIT).await {
            return Ok(());
        }
        Err(RuntimeError::Failed(format!(
            "replicator of pipeline {pipeline_id} (pid {pid}) does not exit"
        )))
    }

    async fn wait_exit(&self, pipeline_id: i64, pid: i32, files: &Files, limit: Duration) -> bool {
        let child = lock(&self.shared.children).get(&pipeline_id).cloned();
        match child {
            // Our own child: wait until the reaper task has seen it exit.
            Some(mut exited) if !*exited.borrow() => tokio::time::timeout(limit, async {
                let _ = exited.wait_for(|done| *done).await;
            })
            .await
            .is_ok(),
            // Started by an earlier API process: poll.
            _ => {
                let deadline = tokio::time::Instant::now() + limit;
                while is_replicator(pid, &files.config_dir) {
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                    tokio::time::sleep(POLL).await;
                }
                true
            }
        }
    }

    fn status_now(&self, pipeline_id: i64) -> RuntimeStatus {
        if lock(&self.shared.stopping).contains(&pipeline_id) {
            return RuntimeStatus::Stopping;
        }
        let files = self.files(pipeline_id);
        if let Some(pid) = self.live_pid(&files) {
            let mut streaming = lock(&self.shared.streaming);
            if streaming.get(&pipeline_id) == Some(&pid) {
                return RuntimeStatus::Started;
            }
            if logged_streaming(&files) {
                streaming.insert(pipeline_id, pid);
                return RuntimeStatus::Started;
            }
            return RuntimeStatus::Starting;
        }
        let reason = match (
            std::fs::read_to_string(&files.last_exit),
            read_pid(&files.pid),
        ) {
            (Ok(reason), _) => reason,
            // A pid file without a live process: it ended while no API was watching.
            (Err(_), Some(pid)) => format!("the replicator (pid {pid}) is gone"),
            (Err(_), None) => return RuntimeStatus::Stopped,
        };
        let mut reason = reason.trim().to_owned();
        if let Some(line) = last_log_line(&files.log) {
            reason.push_str(&format!("; last log line: {line}"));
        }
        RuntimeStatus::Failed { reason }
    }
}

impl PipelineRuntime for LocalRuntime {
    fn kind(&self) -> &'static str {
        "local"
    }

    /// Off: several replicators on one machine would fight over one port.
    fn metrics_address(&self) -> Option<String> {
        None
    }

    fn start<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let lock = self.lock(spec.target.pipeline_id);
            let _guard = lock.lock().await;
            self.start_locked(spec).await
        }
        .boxed()
    }

    fn stop<'a>(&'a self, target: &'a ReplicatorTarget) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let lock = self.lock(target.pipeline_id);
            let _guard = lock.lock().await;
            self.stop_locked(target.pipeline_id).await
        }
        .boxed()
    }

    fn status<'a>(
        &'a self,
        target: &'a ReplicatorTarget,
    ) -> BoxFuture<'a, Result<RuntimeStatus, RuntimeError>> {
        async move {
            let id = target.pipeline_id;
            // A child of ours that just exited: let the reaper record why before reporting.
            let child = lock(&self.shared.children).get(&id).cloned();
            if let Some(mut exited) = child
                && !*exited.borrow()
                && self.live_pid(&self.files(id)).is_none()
            {
                let _ = tokio::time::timeout(Duration::from_secs(1), exited.wait_for(|done| *done))
                    .await;
            }
            Ok(self.status_now(id))
        }
        .boxed()
    }

    fn forget<'a>(
        &'a self,
        target: &'a ReplicatorTarget,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let dir = self.pipeline_dir(target.pipeline_id);
            lock(&self.shared.children).remove(&target.pipeline_id);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(RuntimeError::Failed(format!(
                    "cannot remove {}: {e}",
                    dir.display()
                ))),
            }
        }
        .boxed()
    }
}

struct Files {
    #[allow(dead_code)]
    dir: PathBuf,
    config_dir: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    last_exit: PathBuf,
    log_offset: PathBuf,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these plain maps leaves them consistent; keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Removes the pid file if it still names `pid` (a newer start may have replaced it).
fn remove_if_holds(path: &Path, pid: u32) -> std::io::Result<()> {
    if read_pid(path) == Some(pid as i32) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Whether `pid` is alive (not a zombie) and is the replicator reading `config_dir`.
fn is_replicator(pid: i32, config_dir: &Path) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
        // `pid (comm) S …`: the state follows the last `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim().chars().next());
        if matches!(state, Some('Z') | Some('X')) {
            return false;
        }
    }
    match std::fs::read(proc_dir.join("cmdline")) {
        Ok(cmdline) => {
            let wanted = config_dir.as_os_str().as_encoded_bytes();
            cmdline.split(|b| *b == 0).any(|arg| arg == wanted)
        }
        // No /proc (not Linux): trust the pid file.
        Err(_) => !proc_dir.exists(),
    }
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the replicator exited with code {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| signal.to_string());
            format!("the replicator was killed by {name}")
        }
        _ => format!("the replicator ended: {status}"),
    }
}

/// Whether the log of the current run (from `log-offset`) holds the streaming marker.
fn logged_streaming(files: &Files) -> bool {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let offset = std::fs::read_to_string(&files.log_offset)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let Ok(mut file) = std::fs::File::open(&files.log) else {
        return false;
    };
    let mut run = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err()
        || file
            .take(MARKER_SEARCH_BYTES)
            .read_to_end(&mut run)
            .is_err()
    {
        return false;
    }
    run.windows(STREAMING_MARKER.len())
        .any(|window| window == STREAMING_MARKER)
}

/// The last line of the log that says something (not blank, not a frame of the backtrace
/// `etl` prints after its error line when `RUST_BACKTRACE` is set), shortened.
fn last_log_line(path: &Path) -> Option<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(REASON_SEARCH_BYTES)))
        .ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let line = text.lines().rev().find(|l| !is_noise(l))?.trim();
    Some(line.chars().take(500).collect())
}

/// A blank line or a line of a printed backtrace (`stack backtrace:`, `  12: etl::main`,
/// `      at ./src/main.rs:9:5`, `note: … RUST_BACKTRACE …`).
fn is_noise(line: &str) -> bool {
    let line = line.trim();
    let frame = line
        .split_once(": ")
        .is_some_and(|(index, _)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()));
    line.is_empty()
        || frame
        || line.starts_with("at ")
        || line == "stack backtrace:"
        || (line.starts_with("note: ") && line.contains("RUST_BACKTRACE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_reason_is_the_error_line_not_a_backtrace_frame() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("replicator.log");
        let mut text = String::from(
            "INFO replicator starting\nerror: pipeline 1 stopped: connection refused\n",
        );
        for i in 0..200 {
            text.push_str(&format!(
                "  {i:>2}: etl::engine::frame_{i}\n             at ./src/engine/mod.rs:{i}:5\n"
            ));
        }
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            last_log_line(&log).as_deref(),
            Some("error: pipeline 1 stopped: connection refused")
        );
    }
}
