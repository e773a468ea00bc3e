//! The schema `etl_destination` in the target database:
//!
//! - `etl_destination.tables`: per source table (by OID) its target table, source name, full
//!   schema as JSON (read back on restart) and when its initial copy finished;
//! - `etl_destination.progress`: per source table, the position `(commit_lsn, ordinal)` of the
//!   last applied change, written in the same transaction as the changes (exactly-once);
//! - `etl_destination.pipeline_identity`: the one pipeline whose copy the database holds (see
//!   [`crate::engine::identity`]);
//! - `etl_destination.forget_copy()`: the function of the `AFTER TRUNCATE` trigger on every
//!   mirror ([`watch_truncates`]): a truncate that does not come from etl (whose sessions set
//!   `etl_destination.writer = on`) forgets the table's finished copy and position, so the table
//!   is copied again instead of streamed with a gap.

use std::collections::{BTreeSet, HashMap};

use sqlx::{PgConnection, Row};

use crate::base::lsn::Lsn;
use crate::base::quote::quote_identifier;
use crate::base::schema::{TableId, TableName, TableSchema};
use crate::engine::destination::PipelineIdentity;

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
CREATE TABLE IF NOT EXISTS etl_destination.pipeline_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    token text NOT NULL,
    pipeline_id bigint NOT NULL,
    source text NOT NULL,
    destination text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION etl_destination.forget_copy() RETURNS trigger
LANGUAGE plpgsql AS $forget$
BEGIN
    IF current_setting('etl_destination.writer', true) IS DISTINCT FROM 'on' THEN
        UPDATE etl_destination.tables SET copy_finished_at = NULL
            WHERE table_id = TG_ARGV[0]::bigint;
        DELETE FROM etl_destination.progress WHERE table_id = TG_ARGV[0]::bigint;
    END IF;
    RETURN NULL;
END
$forget$;
";

/// The session setting that tells the truncate trigger a truncate is etl's own.
pub const WRITER_SETTING: (&str, &str) = ("etl_destination.writer", "on");

/// The name of the truncate trigger on every mirror.
const TRUNCATE_TRIGGER: &str = "etl_forget_copy_on_truncate";

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

/// Puts the truncate trigger on the mirror `target` of `table` if it has none (mirrors created
/// by an older etl get it at start-up).
pub async fn watch_truncates(
    conn: &mut PgConnection,
    target: &TableName,
    table: TableId,
) -> Result<(), sqlx::Error> {
    let present: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)",
    )
    .bind(target.quoted())
    .bind(TRUNCATE_TRIGGER)
    .fetch_one(&mut *conn)
    .await?;
    if !present {
        let sql = format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT \
             EXECUTE FUNCTION etl_destination.forget_copy('{}')",
            quote_identifier(TRUNCATE_TRIGGER),
            target.quoted(),
            table.0
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn identity(conn: &mut PgConnection) -> Result<Option<PipelineIdentity>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT token, pipeline_id, source, destination FROM etl_destination.pipeline_identity",
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(PipelineIdentity {
            token: row.try_get(0)?,
            pipeline_id: row.try_get::<i64, _>(1)? as u64,
            source: row.try_get(2)?,
            destination: row.try_get(3)?,
        })
    })
    .transpose()
}

pub async fn save_identity(
    conn: &mut PgConnection,
    identity: &PipelineIdentity,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO etl_destination.pipeline_identity (token, pipeline_id, source, destination) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (singleton) DO UPDATE SET token = excluded.token, \
         pipeline_id = excluded.pipeline_id, source = excluded.source, \
         destination = excluded.destination, recorded_at = now()",
    )
    .bind(&identity.token)
    .bind(identity.pipeline_id as i64)
    .bind(&identity.source)
    .bind(&identity.destination)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The tables whose copy finished and whose mirror exists. Mirrors dropped behind etl's back
/// are forgotten (metadata and position), so the next copy creates them again; their ids are
/// returned second. Call inside a transaction.
pub async fn copied_tables(
    conn: &mut PgConnection,
) -> Result<(BTreeSet<TableId>, Vec<TableId>), sqlx::Error> {
    let vanished: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM etl_destination.tables \
         WHERE to_regclass(format('%I.%I', target_schema, target_table)) IS NULL \
         RETURNING table_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM etl_destination.progress WHERE table_id = ANY($1)")
        .bind(&vanished)
        .execute(&mut *conn)
        .await?;
    let copied: Vec<i64> = sqlx::query_scalar(
        "SELECT table_id FROM etl_destination.tables WHERE copy_finished_at IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    let id = |v: i64| TableId(v as u32);
    Ok((
        copied.into_iter().map(id).collect(),
        vanished.into_iter().map(id).collect(),
    ))
}
