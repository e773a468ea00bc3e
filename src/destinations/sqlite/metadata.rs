//! The tables etl keeps in the SQLite file beside the mirrored ones:
//!
//! - `etl_tables`: one row per source table (its OID, schema and name, the SQLite table name,
//!   replica identity, the full schema as JSON, which etl reads back on restart, and when its
//!   initial copy finished: NULL while the copy runs);
//! - `etl_columns`: one row per column with its SQLite name and affinity and the original
//!   Postgres type (name, OID, modifier), nullability and key position, for readers;
//! - `etl_progress`: per source table, the position `(commit_lsn, ordinal)` of the last applied
//!   change, written in the same transaction as the change (exactly-once on replay);
//! - `etl_pipeline_identity`: the one pipeline whose copy the file holds (see
//!   [`crate::engine::identity`]).
//!
//! `PRAGMA user_version` holds the layout version of these tables.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, OptionalExtension, params};

use crate::base::lsn::Lsn;
use crate::base::schema::{TableId, TableSchema};
use crate::engine::destination::PipelineIdentity;

use super::naming;
use super::table::MirrorTable;
use super::types::{Affinity, pg_type_name};

/// The layout version this code writes.
pub const LAYOUT_VERSION: i64 = 1;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS etl_tables (
    table_id INTEGER PRIMARY KEY,
    sqlite_table TEXT NOT NULL UNIQUE COLLATE NOCASE,
    source_schema TEXT NOT NULL,
    source_table TEXT NOT NULL,
    replica_identity TEXT NOT NULL,
    schema_json TEXT NOT NULL,
    copy_finished_at TEXT
);
CREATE TABLE IF NOT EXISTS etl_columns (
    table_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    sqlite_table TEXT NOT NULL,
    sqlite_column TEXT NOT NULL,
    source_column TEXT NOT NULL,
    pg_type TEXT NOT NULL,
    pg_type_oid INTEGER NOT NULL,
    pg_type_modifier INTEGER NOT NULL,
    sqlite_affinity TEXT NOT NULL,
    nullable INTEGER NOT NULL,
    key_position INTEGER,
    PRIMARY KEY (table_id, position)
);
CREATE TABLE IF NOT EXISTS etl_progress (
    table_id INTEGER PRIMARY KEY,
    commit_lsn INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    commit_lsn_text TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS etl_pipeline_identity (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    token TEXT NOT NULL,
    pipeline_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
";

/// Why the metadata cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the file was written by a newer etl (layout version {0}, this etl knows {LAYOUT_VERSION})"
    )]
    NewerLayout(i64),
    #[error("etl_tables row for table {table_id} holds an unreadable schema: {source}")]
    BadSchema {
        table_id: i64,
        source: serde_json::Error,
    },
    #[error("LSN {0} does not fit an SQLite integer")]
    LsnOutOfRange(Lsn),
}

/// Creates the metadata tables if missing and checks the layout version.
pub fn ensure(conn: &Connection) -> Result<(), MetadataError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > LAYOUT_VERSION {
        return Err(MetadataError::NewerLayout(version));
    }
    conn.execute_batch(CREATE)?;
    conn.pragma_update(None, "user_version", LAYOUT_VERSION)?;
    Ok(())
}

/// Every mirrored table recorded in the file.
pub fn load_tables(conn: &Connection) -> Result<HashMap<TableId, MirrorTable>, MetadataError> {
    let mut statement =
        conn.prepare("SELECT table_id, sqlite_table, schema_json FROM etl_tables")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    let mut tables = HashMap::new();
    for row in rows {
        let (table_id, name, json) = row?;
        let schema: TableSchema = serde_json::from_str(&json)
            .map_err(|source| MetadataError::BadSchema { table_id, source })?;
        tables.insert(schema.id, MirrorTable::new(schema, name));
    }
    Ok(tables)
}

/// An SQLite name for a mirrored table: the scheme's name, or with the `~OID` suffix when
/// another object (not `current`, the table's present name) has that name in any ASCII case.
pub fn choose_name(
    conn: &Connection,
    schema: &TableSchema,
    current: Option<&str>,
) -> Result<String, rusqlite::Error> {
    let base = naming::table_name(&schema.name.schema, &schema.name.name);
    let taken = |name: &str| -> Result<bool, rusqlite::Error> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1 COLLATE NOCASE \
             AND (?3 IS NULL OR name != ?3)) \
             OR EXISTS (SELECT 1 FROM etl_tables WHERE sqlite_table = ?1 AND table_id != ?2)",
            params![name, schema.id.0, current],
            |row| row.get(0),
        )
    };
    if !taken(&base)? {
        return Ok(base);
    }
    Ok(naming::with_suffix(&base, schema.id))
}

/// Records (or re-records) a table and its columns.
pub fn save_table(conn: &Connection, table: &MirrorTable) -> Result<(), rusqlite::Error> {
    let schema = &table.schema;
    let json = serde_json::to_string(schema)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT INTO etl_tables (table_id, sqlite_table, source_schema, source_table, \
         replica_identity, schema_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (table_id) DO UPDATE SET sqlite_table = excluded.sqlite_table, \
         source_schema = excluded.source_schema, source_table = excluded.source_table, \
         replica_identity = excluded.replica_identity, schema_json = excluded.schema_json",
        params![
            schema.id.0,
            table.name,
            schema.name.schema,
            schema.name.name,
            format!("{:?}", schema.replica_identity).to_lowercase(),
            json
        ],
    )?;
    conn.execute(
        "DELETE FROM etl_columns WHERE table_id = ?1",
        params![schema.id.0],
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO etl_columns (table_id, position, sqlite_table, sqlite_column, source_column, \
         pg_type, pg_type_oid, pg_type_modifier, sqlite_affinity, nullable, key_position) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for (index, column) in schema.columns.iter().enumerate() {
        insert.execute(params![
            schema.id.0,
            index as i64 + 1,
            table.name,
            table.columns[index],
            column.name,
            pg_type_name(column.type_oid, column.type_modifier),
            column.type_oid,
            column.type_modifier,
            Affinity::of(column.type_oid).sql(),
            column.nullable,
            column.primary_key_position,
        ])?;
    }
    Ok(())
}

/// The position of the last change applied to a table, if any.
pub fn position(conn: &Connection, table: TableId) -> Result<Option<(Lsn, u32)>, rusqlite::Error> {
    conn.prepare_cached("SELECT commit_lsn, ordinal FROM etl_progress WHERE table_id = ?1")?
        .query_row(params![table.0], |row| {
            Ok((Lsn(row.get::<_, i64>(0)? as u64), row.get::<_, u32>(1)?))
        })
        .optional()
}

pub fn save_position(
    conn: &Connection,
    table: TableId,
    (lsn, ordinal): (Lsn, u32),
) -> Result<(), MetadataError> {
    let stored = i64::try_from(lsn.0).map_err(|_| MetadataError::LsnOutOfRange(lsn))?;
    conn.prepare_cached(
        "INSERT INTO etl_progress (table_id, commit_lsn, ordinal, commit_lsn_text, applied_at) \
         VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ')) \
         ON CONFLICT (table_id) DO UPDATE SET commit_lsn = excluded.commit_lsn, \
         ordinal = excluded.ordinal, commit_lsn_text = excluded.commit_lsn_text, \
         applied_at = excluded.applied_at",
    )?
    .execute(params![table.0, stored, ordinal, lsn.to_string()])?;
    Ok(())
}

pub fn forget_position(conn: &Connection, table: TableId) -> Result<(), rusqlite::Error> {
    conn.execute(
        "DELETE FROM etl_progress WHERE table_id = ?1",
        params![table.0],
    )?;
    Ok(())
}

/// The pipeline identity the file holds.
pub fn identity(conn: &Connection) -> Result<Option<PipelineIdentity>, rusqlite::Error> {
    conn.query_row(
        "SELECT token, pipeline_id, source, destination FROM etl_pipeline_identity",
        [],
        |row| {
            Ok(PipelineIdentity {
                token: row.get(0)?,
                pipeline_id: row.get::<_, i64>(1)? as u64,
                source: row.get(2)?,
                destination: row.get(3)?,
            })
        },
    )
    .optional()
}

/// Replaces the pipeline identity the file holds.
pub fn save_identity(conn: &Connection, identity: &PipelineIdentity) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO etl_pipeline_identity (singleton, token, pipeline_id, source, destination, \
         recorded_at) VALUES (1, ?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ')) \
         ON CONFLICT (singleton) DO UPDATE SET token = excluded.token, \
         pipeline_id = excluded.pipeline_id, source = excluded.source, \
         destination = excluded.destination, recorded_at = excluded.recorded_at",
        params![
            identity.token,
            identity.pipeline_id as i64,
            identity.source,
            identity.destination
        ],
    )?;
    Ok(())
}

/// The tables whose copy finished and whose mirror still exists. Tables whose mirror was
/// dropped behind etl's back are forgotten (metadata and position), so the next copy creates
/// them again; their ids are returned second.
pub fn copied_tables(
    conn: &Connection,
) -> Result<(BTreeSet<TableId>, Vec<TableId>), rusqlite::Error> {
    let mut statement = conn.prepare(
        "SELECT t.table_id, t.copy_finished_at IS NOT NULL, EXISTS (SELECT 1 FROM sqlite_master \
         m WHERE m.type = 'table' AND m.name = t.sqlite_table COLLATE NOCASE) FROM etl_tables t",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                TableId(row.get::<_, u32>(0)?),
                row.get::<_, bool>(1)?,
                row.get::<_, bool>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut copied = BTreeSet::new();
    let mut vanished = Vec::new();
    for (table, finished, exists) in rows {
        if !exists {
            for sql in [
                "DELETE FROM etl_tables WHERE table_id = ?1",
                "DELETE FROM etl_columns WHERE table_id = ?1",
                "DELETE FROM etl_progress WHERE table_id = ?1",
            ] {
                conn.execute(sql, params![table.0])?;
            }
            vanished.push(table);
        } else if finished {
            copied.insert(table);
        }
    }
    Ok((copied, vanished))
}
