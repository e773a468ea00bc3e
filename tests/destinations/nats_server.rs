//! A throwaway `nats-server` with JetStream for one test, started and stopped with
//! `scripts/nats-server.sh` in its own directory. Under `CI=true` a server that cannot be
//! started fails the test; elsewhere the test is skipped with a message.

use std::path::PathBuf;
use std::process::Command;

/// A `nats-server` of this test, in its own directory.
pub struct NatsServer {
    dir: PathBuf,
    pub url: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/nats-server.sh")
}

impl NatsServer {
    /// Starts a server; `None` (after saying why) when it cannot be started outside CI.
    pub fn start(name: &str) -> Option<NatsServer> {
        let dir = std::env::temp_dir().join(format!("etl-nats-{}-{name}", std::process::id()));
        let output = Command::new(script())
            .arg("start")
            .env("ETL_NATS_DIR", &dir)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(NatsServer {
                dir,
                url: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("scripts/nats-server.sh start failed under CI: {why}");
                }
                eprintln!("skipped: no nats-server ({why})");
                None
            }
        }
    }

    fn run(&self, action: &str) {
        let status = Command::new(script())
            .arg(action)
            .env("ETL_NATS_DIR", &self.dir)
            .status()
            .expect("run scripts/nats-server.sh");
        assert!(status.success(), "scripts/nats-server.sh {action} failed");
    }

    /// Stops the server, keeping its data and port.
    pub fn stop_keep(&self) {
        self.run("stop-keep");
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&self) {
        self.run("start");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .env("ETL_NATS_DIR", &self.dir)
            .status();
    }
}
