//! `app.sources` and `app.destinations`: tenant-owned, named objects with a sealed JSON
//! `config`. Both tables have the same shape, so one set of queries serves both.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigTable {
    Sources,
    Destinations,
}

impl ConfigTable {
    fn table(self) -> &'static str {
        match self {
            ConfigTable::Sources => "app.sources",
            ConfigTable::Destinations => "app.destinations",
        }
    }

    /// `source` / `destination`, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            ConfigTable::Sources => "source",
            ConfigTable::Destinations => "destination",
        }
    }

    fn sql(self, template: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(template.replace("{table}", self.table()))
    }
}

/// A stored row; `config` is sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConfiguredRow {
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
    pub config: Json<Value>,
}

const COLUMNS: &str = "id, tenant_id, name, config";

pub async fn create(
    pool: &PgPool,
    table: ConfigTable,
    tenant_id: &str,
    name: &str,
    config: &Value,
) -> Result<ConfiguredRow, sqlx::Error> {
    sqlx::query_as(table.sql(&format!(
        "insert into {{table}} (tenant_id, name, config) values ($1, $2, $3) returning {COLUMNS}"
    )))
    .bind(tenant_id)
    .bind(name)
    .bind(Json(config))
    .fetch_one(pool)
    .await
}

pub async fn list(
    pool: &PgPool,
    table: ConfigTable,
    tenant_id: &str,
) -> Result<Vec<ConfiguredRow>, sqlx::Error> {
    sqlx::query_as(table.sql(&format!(
        "select {COLUMNS} from {{table}} where tenant_id = $1 order by id"
    )))
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}

pub async fn get(
    pool: &PgPool,
    table: ConfigTable,
    tenant_id: &str,
    id: i64,
) -> Result<Option<ConfiguredRow>, sqlx::Error> {
    sqlx::query_as(table.sql(&format!(
        "select {COLUMNS} from {{table}} where tenant_id = $1 and id = $2"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn update(
    pool: &PgPool,
    table: ConfigTable,
    tenant_id: &str,
    id: i64,
    name: Option<&str>,
    config: Option<&Value>,
) -> Result<Option<ConfiguredRow>, sqlx::Error> {
    sqlx::query_as(table.sql(&format!(
        "update {{table}} set name = coalesce($3, name), config = coalesce($4, config), \
         updated_at = now() where tenant_id = $1 and id = $2 returning {COLUMNS}"
    )))
    .bind(tenant_id)
    .bind(id)
    .bind(name)
    .bind(config.map(Json))
    .fetch_optional(pool)
    .await
}

/// `false` when there was no such row; a pipeline still using it fails with `23503`.
pub async fn delete(
    pool: &PgPool,
    table: ConfigTable,
    tenant_id: &str,
    id: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(table.sql("delete from {table} where tenant_id = $1 and id = $2"))
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every row's id and config, locked for update (key rotation).
pub async fn lock_all(
    tx: &mut Transaction<'_, Postgres>,
    table: ConfigTable,
) -> Result<Vec<(i64, Json<Value>)>, sqlx::Error> {
    sqlx::query_as(table.sql("select id, config from {table} order by id for update"))
        .fetch_all(&mut **tx)
        .await
}

pub async fn set_config(
    tx: &mut Transaction<'_, Postgres>,
    table: ConfigTable,
    id: i64,
    config: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(table.sql("update {table} set config = $2, updated_at = now() where id = $1"))
        .bind(id)
        .bind(Json(config))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
