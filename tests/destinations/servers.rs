//! Throwaway servers for one test, each started and stopped by its script under `scripts/` in
//! its own directory: `nats-server.sh` (a `nats-server` with JetStream), `kafka-server.sh`
//! (a Kafka-protocol broker, `tansu`, data in memory) and `s3-server.sh` (an S3-compatible
//! store, `s3s-fs`, with the bucket `lake`). Under `CI=true` a server that cannot be
//! started fails the test; elsewhere the test is skipped with a message.

use std::path::PathBuf;
use std::process::Command;

/// The access key `s3-server.sh` accepts.
pub const S3_ACCESS_KEY: &str = "etl-test";
/// Its secret key.
pub const S3_SECRET_KEY: &str = "etl-test-secret";

/// A server of this test, in its own directory.
pub struct Server {
    script: PathBuf,
    /// The variable that gives the script its directory.
    dir_var: &'static str,
    dir: PathBuf,
    /// What clients connect to: `nats://127.0.0.1:PORT`, `127.0.0.1:PORT` for Kafka,
    /// `http://127.0.0.1:PORT` for S3.
    pub address: String,
}

/// A `nats-server` with JetStream (`stop-keep`, then `start`: down and back with its data).
pub type NatsServer = Server;
/// A `tansu` broker (`pause` / `resume`: frozen and running again).
pub type KafkaServer = Server;

impl Server {
    pub fn nats(name: &str) -> Option<Server> {
        Server::start("nats-server.sh", "ETL_NATS_DIR", "nats", name, &[])
    }

    pub fn kafka(name: &str) -> Option<Server> {
        Server::start("kafka-server.sh", "ETL_KAFKA_DIR", "kafka", name, &[])
    }

    /// A `tansu` broker that tells clients to connect to `advertise` (`host:port`) instead of
    /// itself, e.g. a TLS proxy in front of it.
    pub fn kafka_behind(name: &str, advertise: &str) -> Option<Server> {
        let env = [("ETL_KAFKA_ADVERTISE", advertise)];
        Server::start("kafka-server.sh", "ETL_KAFKA_DIR", "kafka", name, &env)
    }

    /// An S3 store with the bucket `lake`, keys [`S3_ACCESS_KEY`] / [`S3_SECRET_KEY`].
    pub fn s3(name: &str) -> Option<Server> {
        Server::start("s3-server.sh", "ETL_S3_DIR", "s3", name, &[])
    }

    /// Starts a server; `None` (after saying why) when it cannot be started outside CI.
    fn start(
        script: &str,
        dir_var: &'static str,
        kind: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Option<Server> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(script);
        let dir = std::env::temp_dir().join(format!("etl-{kind}-{}-{name}", std::process::id()));
        let output = Command::new(&script)
            .arg("start")
            .env(dir_var, &dir)
            .envs(env.iter().copied())
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Server {
                script,
                dir_var,
                dir,
                address: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{} start failed under CI: {why}", script.display());
                }
                eprintln!("skipped: no {kind} server ({why})");
                None
            }
        }
    }

    /// Runs `action` of the server's script (`stop-keep`, `start`, `pause`, `resume`).
    pub fn run(&self, action: &str) {
        let status = Command::new(&self.script)
            .arg(action)
            .env(self.dir_var, &self.dir)
            .status()
            .expect("run the server's script");
        assert!(
            status.success(),
            "{} {action} failed",
            self.script.display()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .env(self.dir_var, &self.dir)
            .status();
    }
}
