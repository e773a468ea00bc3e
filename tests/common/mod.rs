//! Helpers shared by every integration-test binary (included with `#[path]`/`mod common;`):
//! a fresh database per test inside the cluster named by `ETL_TEST_DATABASE_URL`
//! (`scripts/test-postgres.sh start` prints one; `scripts/test.sh` sets it).

#![allow(dead_code)]

pub mod certs;

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// The admin URL of the test cluster.
pub fn admin_url() -> String {
    std::env::var("ETL_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "ETL_TEST_DATABASE_URL is not set: run the tests with ./scripts/test.sh, or \
             export ETL_TEST_DATABASE_URL=$(./scripts/test-postgres.sh start)"
        )
    })
}

/// A database created for one test; its name is unique across processes.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDatabase {
    /// Creates an empty database named after `prefix`, the process id and a counter.
    pub async fn create(prefix: &str) -> TestDatabase {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&admin, &name);
        TestDatabase { name, url }
    }

    pub fn options(&self) -> PgConnectOptions {
        self.url.parse().expect("test database URL")
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Drops the database (and any replication slot left in it).
    pub async fn drop_database(self) {
        let mut conn = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("connect to the test cluster");
        let _ = sqlx::query(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
             where database = $1 and not active",
        )
        .bind(&self.name)
        .execute(&mut conn)
        .await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists \"{}\" with (force)",
            self.name
        )))
        .execute(&mut conn)
        .await;
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], database);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}
