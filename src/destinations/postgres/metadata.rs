//! The schema `etl_destination` in the target database:
//!
//! - `etl_destination.tables`: per source table (by OID) its target table, source name, full
//!   schema as JSON (read back on restart) and when its initial copy finished;
//! - `etl_destination.progress`: per source table, the position `(commit_lsn, ordinal)` of the
//!   last applied change, written in the same transaction as the changes (exactly-once).

use std::collections::HashMap;

use sqlx::{PgConnection, Row};

use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableName, TableSchema};

/// Key of the advisory lock that serialises etl's DDL in the target (`'etl_dest'` in ASCII).
pub const DDL_LOCK: i64 = 0x6574_6c5f_6465_7374;

const CREATE: &str = "
CREATE SCHEMA IF NOT EXISTS etl_destination;
CREATE TABLE IF NOT EXISTS etl_destination.tables (
    table_id bigint PRIMARY KEY,
    target_schema text NOT NULL,
    target_table text NOT NULL,
    source_schema text NOT NULL,
    source_table text NOT NULL,
    schema_json jsonb NOT NULL,
    copy_finished_at timestamptz,
    UNIQUE (target_schema, target_table)
);
CREATE TABLE IF NOT EXISTS etl_destination.progress (
    table_id bigint PRIMARY KEY,
    commit_lsn pg_lsn NOT NULL,
    ordinal bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
";

/// Creates the schema and tables if missing (inside the caller's transaction, which holds
/// [`DDL_LOCK`] so concurrent starts do not race on `CREATE … IF NOT EXISTS`).
pub async fn ensure(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(DDL_LOCK)
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(CREATE).execute(&mut *conn).await?;
    Ok(())
}

/// The recorded target name and schema of a source table.
pub async fn load_table(
    conn: &mut PgConnection,
    table: TableId,
) -> Result<Option<(TableName, TableSchema)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT target_schema, target_table, schema_json::text FROM etl_destination.tables \
         WHERE table_id = $1",
    )
    .bind(i64::from(table.0))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let json: String = row.try_get(2)?;
    let schema = serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some((
        TableName::new(row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?),
        schema,
    )))
}

/// The source table (if any other than `except`) already mirrored into `target`.
pub async fn owner_of(
    conn: &mut PgConnection,
    target: &TableName,
    except: TableId,
) -> Result<Option<TableName>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT source_schema, source_table FROM etl_destination.tables \
         WHERE target_schema = $1 AND target_table = $2 AND table_id <> $3",
    )
    .bind(&target.schema)
    .bind(&target.name)
    .bind(i64::from(except.0))
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(TableName::new(
            r.try_get::<String, _>(0)?,
            r.try_get::<String, _>(1)?,
        ))
    })
    .transpose()
}

pub async fn save_table(
    conn: &mut PgConnection,
    target: &TableName,
    schema: &TableSchema,
) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(schema).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO etl_destination.tables (table_id, target_schema, target_table, \
         source_schema, source_table, schema_json) VALUES ($1, $2, $3, $4, $5, $6::jsonb) \
         ON CONFLICT (table_id) DO UPDATE SET target_schema = excluded.target_schema, \
         target_table = excluded.target_table, source_schema = excluded.source_schema, \
         source_table = excluded.source_table, schema_json = excluded.schema_json",
    )
    .bind(i64::from(schema.id.0))
    .bind(&target.schema)
    .bind(&target.name)
    .bind(&schema.name.schema)
    .bind(&schema.name.name)
    .bind(json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_copy_finished(
    conn: &mut PgConnection,
    table: TableId,
    finished: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE etl_destination.tables SET copy_finished_at = CASE WHEN $2 THEN now() END \
         WHERE table_id = $1",
    )
    .bind(i64::from(table.0))
    .bind(finished)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Positions of the given tables, locked until the end of the caller's transaction.
pub async fn lock_positions(
    conn: &mut PgConnection,
    tables: &[TableId],
) -> Result<HashMap<TableId, (Lsn, u32)>, sqlx::Error> {
    let ids: Vec<i64> = tables.iter().map(|t| i64::from(t.0)).collect();
    let rows = sqlx::query(
        "SELECT table_id, commit_lsn::text, ordinal FROM etl_destination.progress \
         WHERE table_id = ANY($1) ORDER BY table_id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut positions = HashMap::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let lsn: String = row.try_get(1)?;
        let lsn: Lsn = lsn.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let ordinal: i64 = row.try_get(2)?;
        positions.insert(TableId(id as u32), (lsn, ordinal as u32));
    }
    Ok(positions)
}

pub async fn save_position(
    conn: &mut PgConnection,
    table: TableId,
    (lsn, ordinal): (Lsn, u32),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO etl_destination.progress (table_id, commit_lsn, ordinal) \
         VALUES ($1, $2::pg_lsn, $3) ON CONFLICT (table_id) DO UPDATE SET \
         commit_lsn = excluded.commit_lsn, ordinal = excluded.ordinal, applied_at = now()",
    )
    .bind(i64::from(table.0))
    .bind(lsn.to_string())
    .bind(i64::from(ordinal))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn forget_position(conn: &mut PgConnection, table: TableId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM etl_destination.progress WHERE table_id = $1")
        .bind(i64::from(table.0))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
