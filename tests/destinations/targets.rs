//! The three destinations as targets of the end-to-end scenario: their `destination` config,
//! how to count applications of `counted`'s changes, and how to compare with the source.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::common::TestDatabase;
use crate::compare::{
    jsonl_change_counts, jsonl_differences, jsonl_files, mirror_differences, replay_jsonl,
    sqlite_differences,
};
use crate::end_to_end::{Scenario, TABLES};
use crate::helpers::{exec, source_pool};
use crate::kafka::TopicReader;
use crate::nats::{Received, counted_ops, read_stream, rebuild, repeated_ids};
use crate::servers::{KafkaServer, NatsServer};

pub enum Target {
    Sqlite {
        _dir: tempfile::TempDir,
        file: PathBuf,
    },
    Postgres {
        db: Option<TestDatabase>,
        pool: Option<PgPool>,
    },
    Jsonl {
        _dir: tempfile::TempDir,
        path: PathBuf,
        /// xid of the source's last transaction: the comparison (a replay of every line,
        /// seconds in a debug build) waits until the log holds it.
        last_xid: Option<i64>,
    },
    Nats {
        server: NatsServer,
        prefix: String,
        stream: String,
    },
    Kafka {
        server: KafkaServer,
        prefix: String,
        reader: Arc<Mutex<TopicReader>>,
    },
}

impl Target {
    pub fn sqlite() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/etl.db");
        Target::Sqlite { _dir: dir, file }
    }

    pub fn postgres() -> Target {
        Target::Postgres {
            db: None,
            pool: None,
        }
    }

    pub fn jsonl() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.jsonl");
        Target::Jsonl {
            _dir: dir,
            path,
            last_xid: None,
        }
    }

    /// A NATS JetStream stream on a server of this test; `None` when no server can be started
    /// outside CI (skipped).
    pub fn nats(name: &str) -> Option<Target> {
        Some(Target::Nats {
            server: NatsServer::nats(name)?,
            prefix: "e2e".into(),
            stream: "E2E".into(),
        })
    }

    /// Kafka topics on a broker of this test; `None` when no broker can be started outside CI
    /// (skipped).
    pub fn kafka(name: &str) -> Option<Target> {
        let server = KafkaServer::kafka(name)?;
        let reader = TopicReader::new(&server.address, "e2e");
        Some(Target::Kafka {
            server,
            prefix: "e2e".into(),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// How long the destination may take to equal the source once the source is still. The
    /// test broker for kafka is a debug build serving about 5 000 records a second (less while
    /// the whole suite runs beside it).
    pub fn convergence_limit(&self) -> Duration {
        match self {
            Target::Kafka { .. } => Duration::from_secs(420),
            _ => Duration::from_secs(120),
        }
    }

    /// Whether the destination is a log of changes rather than a mirror.
    pub fn is_change_log(&self) -> bool {
        matches!(
            self,
            Target::Jsonl { .. } | Target::Nats { .. } | Target::Kafka { .. }
        )
    }

    /// Every message of a stream destination, checked for repeated ids (exactly once: none).
    /// Kafka: the test broker (tansu 0.4.9) shows the records of aborted transactions to
    /// `read_committed` consumers (`kafka_trait::the_test_broker_*`), so a transaction a SIGKILL
    /// left open and the next producer aborted is seen next to its committed rewrite. There a
    /// repeated id must carry the very same change (only the envelope's write time may
    /// differ), and the first one is kept.
    async fn messages(&self) -> Result<Vec<Received>, String> {
        let messages = match self {
            Target::Nats { server, stream, .. } => read_stream(&server.address, stream).await?,
            Target::Kafka { reader, .. } => {
                let reader = Arc::clone(reader);
                let messages = tokio::task::spawn_blocking(move || match reader.lock() {
                    Ok(mut reader) => reader.read(),
                    Err(_) => Err("an earlier read panicked".to_owned()),
                })
                .await
                .map_err(|e| e.to_string())??;
                return Ok(crate::kafka::without_aborted_repeats(messages));
            }
            _ => return Ok(Vec::new()),
        };
        let repeated = repeated_ids(&messages);
        assert!(
            repeated.is_empty(),
            "exactly once: {} message ids repeat, first {:?}",
            repeated.len(),
            repeated.first()
        );
        Ok(messages)
    }

    /// The source's last transaction was `xid` (jsonl compares once the log holds it).
    pub fn expect_last_transaction(&mut self, xid: i64) {
        if let Target::Jsonl { last_xid, .. } = self {
            *last_xid = Some(xid);
        }
    }

    /// The YAML under `destination:` (creating the target database for `postgres`).
    pub async fn destination_yaml(&mut self, scenario: &Scenario) -> String {
        match self {
            Target::Sqlite { file, .. } => format!("  sqlite: {{path: '{}'}}", file.display()),
            Target::Postgres { db, pool } => {
                let target = TestDatabase::create(&format!("{}_mirror", scenario.db.name)).await;
                let yaml = format!("  postgres: {{url: '{}', schema: null}}", target.url);
                *pool = Some(source_pool(&target).await);
                *db = Some(target);
                yaml
            }
            Target::Jsonl { path, .. } => format!(
                "  jsonl: {{path: '{}', max_file_bytes: 4194304}}",
                path.display()
            ),
            Target::Nats {
                server,
                prefix,
                stream,
            } => format!(
                "  nats: {{url: '{}', subject_prefix: {prefix}, stream: {stream}}}",
                server.address
            ),
            Target::Kafka { server, prefix, .. } => format!(
                "  kafka: {{brokers: ['{}'], topic_prefix: {prefix}}}",
                server.address
            ),
        }
    }

    /// Triggers counting every row written into `counted` (none for jsonl, which is
    /// at-least-once by design).
    pub async fn install_audit(&self, _scenario: &Scenario) {
        match self {
            Target::Kafka { reader, .. } => {
                // Not an audit: the consumer starts reading the copied rows now, while the
                // scenario goes on, so the final comparison reads only what came after.
                let reader = Arc::clone(reader);
                tokio::task::spawn_blocking(move || {
                    if let Ok(mut reader) = reader.lock() {
                        let _ = reader.read();
                    }
                });
            }
            Target::Sqlite { file, .. } => {
                let conn = rusqlite::Connection::open(file).unwrap();
                conn.busy_timeout(Duration::from_secs(30)).unwrap();
                conn.execute_batch(
                    "CREATE TABLE audit (op TEXT, id INTEGER);
                     CREATE TRIGGER audit_i AFTER INSERT ON \"public.counted\" BEGIN INSERT INTO audit VALUES ('I', new.id); END;
                     CREATE TRIGGER audit_u AFTER UPDATE ON \"public.counted\" BEGIN INSERT INTO audit VALUES ('U', new.id); END;
                     CREATE TRIGGER audit_d AFTER DELETE ON \"public.counted\" BEGIN INSERT INTO audit VALUES ('D', old.id); END;",
                )
                .expect("sqlite audit triggers");
            }
            Target::Postgres {
                pool: Some(pool), ..
            } => {
                exec(
                    pool,
                    "create table public.audit (op text, id int);
                     create function public.audit() returns trigger language plpgsql as $$
                     begin
                       insert into public.audit values (left(tg_op, 1),
                         case when tg_op = 'DELETE' then old.id else new.id end);
                       return null;
                     end $$;
                     create trigger audit after insert or update or delete on public.counted
                       for each row execute function public.audit();",
                )
                .await;
            }
            _ => {}
        }
    }

    /// Row writes into `counted` by kind (`D`, `I`, `U`); for jsonl, the changes of `counted`
    /// a consumer deduplicating by `(commit_lsn, ordinal)` applies.
    pub async fn audit_counts(&self, _scenario: &Scenario) -> Option<Vec<(String, i64)>> {
        match self {
            Target::Sqlite { file, .. } => {
                let conn = rusqlite::Connection::open(file).unwrap();
                let mut statement = conn
                    .prepare("SELECT op, count(*) FROM audit GROUP BY op ORDER BY op")
                    .unwrap();
                let counts = statement
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                Some(counts)
            }
            Target::Postgres {
                pool: Some(pool), ..
            } => Some(
                sqlx::query_as("select op, count(*) from public.audit group by op order by op")
                    .fetch_all(pool)
                    .await
                    .unwrap(),
            ),
            Target::Jsonl { path, .. } => {
                let files = jsonl_files(path);
                let (counts, repeated) = tokio::task::spawn_blocking(move || {
                    jsonl_change_counts(&files, "public.counted")
                })
                .await
                .expect("counting jsonl lines");
                eprintln!("jsonl: {repeated} change lines were delivered again after a crash");
                Some(counts)
            }
            Target::Nats { prefix, .. } | Target::Kafka { prefix, .. } => {
                let messages = self
                    .messages()
                    .await
                    .unwrap_or_else(|e| panic!("reading the messages: {e}"));
                Some(counted_ops(&messages, prefix))
            }
            Target::Postgres { pool: None, .. } => None,
        }
    }

    /// The first difference between the destination and the source, if any.
    pub async fn differences(&self, scenario: &Scenario) -> Option<String> {
        let state = match self {
            Target::Jsonl { path, last_xid, .. } => {
                if let Some(xid) = last_xid {
                    let needle = format!(",\"xid\":{xid},");
                    let files = jsonl_files(path);
                    let logged = tokio::task::spawn_blocking(move || {
                        files.iter().rev().any(|file| {
                            std::fs::read_to_string(file).is_ok_and(|t| t.contains(&needle))
                        })
                    })
                    .await
                    .expect("searching the jsonl files");
                    if !logged {
                        return Some(format!(
                            "the jsonl files do not hold the last transaction (xid {xid}) yet"
                        ));
                    }
                }
                // Off the runtime: a replay of every line is CPU work, and the caller's
                // deadline must be able to fire while it runs.
                let files = jsonl_files(path);
                Some(
                    tokio::task::spawn_blocking(move || replay_jsonl(&files))
                        .await
                        .expect("replaying the jsonl files"),
                )
            }
            _ => None,
        };
        let rebuilt = match self {
            Target::Nats { .. } | Target::Kafka { .. } => match self.messages().await {
                Ok(messages) => Some(rebuild(&messages)),
                Err(e) => return Some(format!("cannot read the messages yet: {e}")),
            },
            _ => None,
        };
        for (table, _) in TABLES {
            let found = match self {
                Target::Sqlite { file, .. } => {
                    if !file.exists() {
                        return Some("no sqlite file yet".into());
                    }
                    sqlite_differences(&scenario.pool, file, table).await
                }
                Target::Postgres {
                    pool: Some(pool), ..
                } => mirror_differences(&scenario.pool, pool, table, table).await,
                Target::Postgres { .. } => Some("no target database".into()),
                Target::Jsonl { .. } => {
                    let state = state.as_ref().expect("replayed");
                    jsonl_differences(&scenario.pool, state, table).await
                }
                Target::Nats { prefix, .. } => {
                    let rebuilt = rebuilt.as_ref().expect("rebuilt");
                    crate::nats::differences(&scenario.pool, rebuilt, prefix, table).await
                }
                Target::Kafka { prefix, .. } => {
                    let rebuilt = rebuilt.as_ref().expect("rebuilt");
                    crate::nats::differences_in(
                        &scenario.pool,
                        rebuilt,
                        prefix,
                        table,
                        etl::destinations::kafka::topic::table_topic,
                    )
                    .await
                }
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    pub async fn drop(self) {
        if let Target::Postgres { db: Some(db), pool } = self {
            let drop = async {
                if let Some(pool) = pool {
                    pool.close().await;
                }
                db.drop_database().await;
            };
            tokio::time::timeout(Duration::from_secs(60), drop)
                .await
                .expect("the target database dropped within 60 s");
        }
    }
}
