//! Tables and publications of a source database.

use sqlx::PgPool;
use sqlx::types::Json;

use super::{check_ident, source_error};
use crate::api::domain::source::{Publication, SourceTable, TableName};
use crate::api::error::{ApiError, pg_code};
use crate::base::quote::quote_identifier;

/// The user tables of the source (ordinary and partitioned), by schema and name.
pub async fn tables(pool: &PgPool) -> Result<Vec<SourceTable>, ApiError> {
    sqlx::query_as(
        "select c.oid::int8 as id, n.nspname::text as schema, c.relname::text as name \
         from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') and not c.relispartition \
           and n.nspname not in ('pg_catalog', 'information_schema', 'etl') \
           and n.nspname !~ '^pg_(toast|temp)' \
         order by 2, 3",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| source_error("cannot list the source's tables", e))
}

pub async fn list(pool: &PgPool) -> Result<Vec<Publication>, ApiError> {
    let rows: Vec<(String, Json<Vec<TableName>>)> = sqlx::query_as(
        "select p.pubname::text, coalesce(json_agg(json_build_object('schema', t.schemaname, \
         'name', t.tablename) order by t.schemaname, t.tablename) \
         filter (where t.tablename is not null), '[]'::json) \
         from pg_publication p left join pg_publication_tables t on t.pubname = p.pubname \
         group by p.pubname order by p.pubname",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| source_error("cannot list publications", e))?;
    Ok(rows
        .into_iter()
        .map(|(name, Json(tables))| Publication { name, tables })
        .collect())
}

pub async fn get(pool: &PgPool, name: &str) -> Result<Publication, ApiError> {
    list(pool)
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("publication `{name}`")))
}

fn table_list(tables: &[TableName]) -> Result<String, ApiError> {
    let mut parts = Vec::with_capacity(tables.len());
    for table in tables {
        check_ident("schema", &table.schema)?;
        check_ident("table", &table.name)?;
        parts.push(format!(
            "{}.{}",
            quote_identifier(&table.schema),
            quote_identifier(&table.name)
        ));
    }
    Ok(parts.join(", "))
}

fn publication_error(name: &str, error: sqlx::Error) -> ApiError {
    match pg_code(&error).as_deref() {
        Some("42710") => ApiError::Conflict(format!("publication `{name}` already exists")),
        Some("42704") => ApiError::NotFound(format!("publication `{name}`")),
        _ => source_error(&format!("publication `{name}`"), error),
    }
}

pub async fn create(
    pool: &PgPool,
    name: &str,
    tables: &[TableName],
) -> Result<Publication, ApiError> {
    check_ident("publication name", name)?;
    let mut sql = format!("create publication {}", quote_identifier(name));
    if !tables.is_empty() {
        sql.push_str(&format!(" for table {}", table_list(tables)?));
    }
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map_err(|e| publication_error(name, e))?;
    get(pool, name).await
}

/// Replaces the publication's tables.
pub async fn set_tables(
    pool: &PgPool,
    name: &str,
    tables: &[TableName],
) -> Result<Publication, ApiError> {
    check_ident("publication name", name)?;
    let current = get(pool, name).await?;
    let sql = if tables.is_empty() {
        if current.tables.is_empty() {
            return Ok(current);
        }
        format!(
            "alter publication {} drop table {}",
            quote_identifier(name),
            table_list(&current.tables)?
        )
    } else {
        format!(
            "alter publication {} set table {}",
            quote_identifier(name),
            table_list(tables)?
        )
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map_err(|e| publication_error(name, e))?;
    get(pool, name).await
}

pub async fn drop(pool: &PgPool, name: &str) -> Result<(), ApiError> {
    check_ident("publication name", name)?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop publication {}",
        quote_identifier(name)
    )))
    .execute(pool)
    .await
    .map_err(|e| publication_error(name, e))?;
    Ok(())
}
