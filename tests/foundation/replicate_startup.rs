//! What `etl replicate` does before it reaches the source, as a newcomer running it sees it: log
//! lines written to a pipe carry no colour codes, two pipelines started with the shipped
//! `config/dev.yaml` on one machine each get their own metrics port (and say which), and a taken
//! metrics port elsewhere still stops the start. The source is a closed port, so nothing here
//! needs a database.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `etl replicate` in `env`, stderr piped and read line by line on a thread.
struct Replicator {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Replicator {
    fn start(config_dir: &Path, env: &str, vars: &[(&str, String)]) -> Replicator {
        let mut command = Command::new(env!("CARGO_BIN_EXE_etl"));
        command
            .arg("--config-dir")
            .arg(config_dir)
            .args(["--env", env, "replicate"])
            .env_remove("APP_ENVIRONMENT")
            .env_remove("NO_COLOR")
            .env_remove("RUST_BACKTRACE")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start etl replicate");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Replicator {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line containing `needle`, within 30 s; panics with everything seen otherwise.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with `{needle}`; stderr so far:\n{}",
            self.seen.join("\n")
        );
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `addr=` field of a `serving metrics` line.
fn metrics_address(line: &str) -> SocketAddr {
    let field = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line:?}"));
    field
        .parse()
        .unwrap_or_else(|e| panic!("{field:?} in {line:?}: {e}"))
}

fn get_metrics(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn log_lines_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dev.yaml"),
        format!(
            "pipeline:\n  id: 1\n  publication_name: p\n  pg_connection: {{url: \
             'postgres://u:p@127.0.0.1:{}/d'}}\n  metrics_address: null\n\
             destination: {{memory: {{}}}}\n",
            closed_port()
        ),
    )
    .unwrap();
    let mut replicator = Replicator::start(dir.path(), "dev", &[]);
    // An INFO line: the level (and the timestamp) are what the human format colours.
    replicator.wait_for("replicator starting");
    let text = replicator.seen.join("\n");
    assert!(text.contains(" INFO "), "human format expected: {text}");
    assert!(
        !text.contains('\x1b'),
        "escape codes in piped logs: {text:?}"
    );
}

#[test]
fn two_pipelines_with_the_dev_config_each_serve_metrics_on_their_own_port() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let port = closed_port().to_string();
    let start = |id: &str| {
        Replicator::start(
            &repo.join("config"),
            "dev",
            &[
                ("APP_PIPELINE__ID", id.to_owned()),
                ("APP_PIPELINE__PG_CONNECTION__PORT", port.clone()),
                (
                    "APP_DESTINATION__SQLITE__PATH",
                    work.path().join(format!("{id}.db")).display().to_string(),
                ),
            ],
        )
    };
    let mut first = start("1");
    let first_address = metrics_address(&first.wait_for("serving metrics"));
    let mut second = start("2");
    let second_address = metrics_address(&second.wait_for("serving metrics"));
    assert_ne!(first_address, second_address);
    for (address, replicator) in [(first_address, &mut first), (second_address, &mut second)] {
        assert!(address.ip().is_loopback(), "{address}");
        assert_ne!(address.port(), 0, "the bound port is logged, not 0");
        let response = get_metrics(address);
        let status = response.lines().next().unwrap_or_default();
        assert!(
            status.contains(" 200 ") && response.contains("etl_"),
            "{response}"
        );
        assert!(
            replicator.child.try_wait().unwrap().is_none(),
            "{address} exited"
        );
    }
}

#[test]
fn a_taken_metrics_port_outside_dev_stops_the_start_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prod.yaml"),
        format!(
            "pipeline:\n  id: 1\n  publication_name: p\n  pg_connection: {{url: \
             'postgres://u:p@127.0.0.1:{}/d'}}\n  metrics_address: '{address}'\n\
             destination: {{memory: {{}}}}\n",
            closed_port()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_etl"))
        .arg("--config-dir")
        .arg(dir.path())
        .args(["--env", "prod", "replicate"])
        .env_remove("APP_ENVIRONMENT")
        .env_remove("RUST_BACKTRACE")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: cannot serve metrics on")
            && lines[0].contains(&address.to_string()),
        "{stderr}"
    );
}
