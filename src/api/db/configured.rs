//! `app.sources` and `app.destinations`: tenant-owned, named objects with a sealed JSON
//! `config`. Both tables have the same shape, so one set of queries serves both.
//!
//! Secrets are sealed bound to their row's id, so a row is created in two steps inside one
//! transaction (insert, then write the config sealed for the new id); every config written
//! here is bound (`secrets_bound`), and [`lock_all`] finds the rows sealed before binding.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};

use crate::api::secrets::SealContext;

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

    /// Where the secrets of the row `id` of `tenant_id` belong.
    pub fn seal_context(self, tenant_id: &str, id: i64) -> SealContext<'_> {
        SealContext {
            tenant_id,
            kind: self.noun(),
            object_id: id,
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

/// Inserts a row whose config `seal` seals for the new row's id.
pub async fn create(
    pool: &PgPool,
    table: ConfigTable,
    tenant_id: &str,
    name: &str,
    seal: impl FnOnce(i64) -> Value,
) -> Result<ConfiguredRow, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (id,): (i64,) = sqlx::query_as(table.sql(
        "insert into {table} (tenant_id, name, config, secrets_bound) \
         values ($1, $2, '{}', true) returning id",
    ))
    .bind(tenant_id)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let row = sqlx::query_as(table.sql(&format!(
        "update {{table}} set config = $2 where id = $1 returning {COLUMNS}"
    )))
    .bind(id)
    .bind(Json(seal(id)))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
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
         secrets_bound = secrets_bound or $4 is not null, updated_at = now() \
         where tenant_id = $1 and id = $2 returning {COLUMNS}"
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

/// A row's sealed config and whether its secrets are bound to it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedRow {
    pub id: i64,
    pub tenant_id: String,
    pub config: Json<Value>,
    pub secrets_bound: bool,
}

/// Every row (or, with `unbound_only`, those sealed before binding), locked for update.
pub async fn lock_all(
    tx: &mut Transaction<'_, Postgres>,
    table: ConfigTable,
    unbound_only: bool,
) -> Result<Vec<SealedRow>, sqlx::Error> {
    sqlx::query_as(table.sql(
        "select id, tenant_id, config, secrets_bound from {table} \
         where not (secrets_bound and $1) order by id for update",
    ))
    .bind(unbound_only)
    .fetch_all(&mut **tx)
    .await
}

pub async fn set_config(
    tx: &mut Transaction<'_, Postgres>,
    table: ConfigTable,
    id: i64,
    config: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(table.sql(
        "update {table} set config = $2, secrets_bound = true, updated_at = now() where id = $1",
    ))
    .bind(id)
    .bind(Json(config))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
