//! What the engine reads from the source's catalog: the tables of the publication (through an
//! ordinary connection) and, inside a copy snapshot, one table's replicated schema, publication
//! column list and row filter (through the replication session that holds the snapshot); and,
//! through [`WithSourceDefaults`], what rows already in a table hold in a column just added.

use sqlx::PgPool;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::changes;
use super::destination::{
    Destination, Error as DestinationError, PipelineIdentity, Result as DestinationResult,
};
use super::error::Error;
use super::source::ReplicationClient;
use super::table_copy::CopySource;
use crate::base::event::{ChangeEvent, CopyChunk};
use crate::base::quote::quote_literal;
use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName, TableSchema};

/// A table of the publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTable {
    pub id: TableId,
    pub name: TableName,
}

/// The tables of `publication`; an error naming it when it does not exist.
pub async fn publication_tables(
    pool: &PgPool,
    publication: &str,
) -> Result<Vec<PublishedTable>, Error> {
    let exists: Option<i32> = sqlx::query_scalar("select 1 from pg_publication where pubname = $1")
        .bind(publication)
        .fetch_optional(pool)
        .await
        .map_err(Error::query("looking up the publication"))?;
    if exists.is_none() {
        return Err(Error::NoPublication {
            publication: publication.to_owned(),
        });
    }
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "select c.oid::bigint, p.schemaname::text, p.tablename::text \
         from pg_publication_tables p \
         join pg_namespace n on n.nspname = p.schemaname \
         join pg_class c on c.relnamespace = n.oid and c.relname = p.tablename \
         where p.pubname = $1 order by c.oid",
    )
    .bind(publication)
    .fetch_all(pool)
    .await
    .map_err(Error::query("listing the publication's tables"))?;
    Ok(rows
        .into_iter()
        .map(|(oid, schema, name)| PublishedTable {
            id: TableId(oid as u32),
            name: TableName::new(schema, name),
        })
        .collect())
}

/// The size of a table in pages (for choosing a parallel copy), read outside any snapshot.
pub async fn table_pages(pool: &PgPool, table: TableId) -> Result<u64, Error> {
    let pages: Option<i64> = sqlx::query_scalar(
        "select pg_relation_size($1::bigint::oid) / current_setting('block_size')::bigint",
    )
    .bind(i64::from(table.0))
    .fetch_one(pool)
    .await
    .map_err(Error::query("measuring a table"))?;
    Ok(pages.unwrap_or(0).max(0) as u64)
}

/// The planner's row estimate of a table (`pg_class.reltuples`), `None` before its first
/// `ANALYZE`.
pub async fn estimated_rows(pool: &PgPool, table: TableId) -> Result<Option<u64>, Error> {
    let rows: Option<f32> =
        sqlx::query_scalar("select reltuples from pg_class where oid = $1::bigint::oid")
            .bind(i64::from(table.0))
            .fetch_optional(pool)
            .await
            .map_err(Error::query("estimating a table's rows"))?;
    Ok(rows.filter(|r| *r >= 0.0).map(|r| r as u64))
}

/// A table's replicated schema and what its copy reads, read in the session's snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotSchema {
    pub schema: TableSchema,
    pub source: CopySource,
}

/// Reads `table`'s schema inside the session's current transaction (the copy snapshot).
pub async fn read_table_schema(
    client: &mut ReplicationClient,
    table: TableId,
    publication: &str,
) -> Result<SnapshotSchema, Error> {
    let oid = table.0;
    let rows = client
        .simple_query(&format!(
            "select n.nspname, c.relname, c.relreplident, c.relkind from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace where c.oid = {oid}"
        ))
        .await?;
    let unknown = || Error::Schema {
        table: TableName::new("?", oid.to_string()),
        message: "the table no longer exists".into(),
    };
    let row = rows.first().ok_or_else(unknown)?;
    let (Some(schema_name), Some(table_name)) = (field(row, 0), field(row, 1)) else {
        return Err(unknown());
    };
    let name = TableName::new(schema_name, table_name);
    let replica_identity = field(row, 2)
        .and_then(|code| code.bytes().next())
        .and_then(ReplicaIdentity::from_code)
        .unwrap_or(ReplicaIdentity::Default);
    let partitioned = field(row, 3) == Some("p");
    let pg15 = client.server_major_version() >= 15;
    let publication = quote_literal(publication);
    let column_list = if pg15 {
        format!(
            "and a.attname = any(select unnest(p.attnames) from pg_publication_tables p \
             where p.pubname = {publication} and p.schemaname = n.nspname \
             and p.tablename = c.relname)"
        )
    } else {
        String::new()
    };
    // Stored generated columns are published only by PostgreSQL 18 (`publish_generated_columns
    // = stored`, or named in a column list), and then the publication's column names list them.
    let generated = if client.server_major_version() >= 18 {
        ""
    } else {
        "and a.attgenerated = ''"
    };
    let columns = client
        .simple_query(&format!(
            "select a.attname, a.atttypid::bigint, a.atttypmod, a.attnotnull, \
             (select k.pos from pg_index i, unnest(i.indkey::int2[]) with ordinality k(attnum, pos) \
              where i.indrelid = a.attrelid and k.attnum = a.attnum and \
              case when c.relreplident = 'i' then i.indisreplident else i.indisprimary end), \
             a.attgenerated <> '' \
             from pg_attribute a join pg_class c on c.oid = a.attrelid \
             join pg_namespace n on n.oid = c.relnamespace \
             where a.attrelid = {oid} and a.attnum > 0 and not a.attisdropped \
             {generated} {column_list} order by a.attnum"
        ))
        .await?;
    let bad = |what: &str| Error::Schema {
        table: name.clone(),
        message: format!("unexpected catalog value for {what}"),
    };
    let mut schema_columns = Vec::with_capacity(columns.len());
    for row in &columns {
        schema_columns.push(ColumnSchema {
            name: field(row, 0).ok_or_else(|| bad("attname"))?.to_owned(),
            type_oid: parse(field(row, 1)).ok_or_else(|| bad("atttypid"))?,
            type_modifier: parse(field(row, 2)).ok_or_else(|| bad("atttypmod"))?,
            nullable: field(row, 3) != Some("t"),
            primary_key_position: field(row, 4).and_then(|p| p.parse().ok()),
            existing_rows_value: None,
        });
    }
    let row_filter = if pg15 {
        let rows = client
            .simple_query(&format!(
                "select rowfilter from pg_publication_tables where pubname = {publication} \
                 and schemaname = {} and tablename = {}",
                quote_literal(&name.schema),
                quote_literal(&name.name)
            ))
            .await?;
        rows.first()
            .and_then(|row| field(row, 0))
            .map(str::to_owned)
    } else {
        None
    };
    Ok(SnapshotSchema {
        schema: TableSchema {
            id: table,
            name,
            columns: schema_columns,
            replica_identity,
        },
        source: CopySource {
            row_filter,
            partitioned,
            generated: columns.iter().any(|row| field(row, 5) == Some("t")),
        },
    })
}

fn field(row: &[Option<String>], index: usize) -> Option<&str> {
    row.get(index).and_then(|v| v.as_deref())
}

fn parse<T: std::str::FromStr>(value: Option<&str>) -> Option<T> {
    value.and_then(|v| v.parse().ok())
}

/// A destination that learns from the source catalog what pgoutput's Relation message does not
/// say, whenever the stream describes a table (a schema change, or the same columns described
/// again after any `ALTER TABLE`), before passing the change on:
///
/// - **What rows already in the table hold in a column just added** (see
///   [`ColumnSchema::existing_rows_value`]). `ADD COLUMN … DEFAULT x` with a non-volatile `x`
///   writes no WAL for the rows already in the table: only the catalog knows their value. A
///   volatile default (`random()`, `clock_timestamp()`) rewrites the table instead, also
///   without WAL for logical decoding, so the per-row values cannot be learned: the column is
///   added empty and a warning says how to copy the table again.
/// - **Whether each column takes NULL** (`attnotnull`), so `ALTER COLUMN … DROP NOT NULL` and
///   `SET NOT NULL` reach mirrors that enforce it. A table described again whose nullability did
///   not change is not passed on at all.
///
/// The catalog is read when the change reaches the destination (the engine first waits until
/// the transaction that described the table is visible, see [`super::visibility`]), which is
/// right unless the table changed again in between (the stream behind the source): then a
/// dropped column reads as unknown (empty, warned), and a NOT NULL that came back is checked
/// by the destination against the rows it holds.
#[derive(Clone)]
pub struct WithSourceDefaults<D> {
    inner: D,
    pool: PgPool,
    /// Per table, the schema last given to `inner` through `alter_table`, completed from the
    /// catalog: the engine's own schema keeps what the Relation messages said, which does not
    /// include nullability, so the events it sends are given this one instead.
    given: Arc<Mutex<HashMap<TableId, Given>>>,
}

/// A completed schema, and the engine's schema last seen for it (to swap events cheaply).
struct Given {
    seen: Arc<TableSchema>,
    completed: Arc<TableSchema>,
}

impl<D> WithSourceDefaults<D> {
    /// `pool` connects lazily, so a source that is down delays only the next schema change.
    pub fn new(inner: D, pool: PgPool) -> Self {
        Self {
            inner,
            pool,
            given: Arc::default(),
        }
    }

    fn given(&self) -> std::sync::MutexGuard<'_, HashMap<TableId, Given>> {
        self.given.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `old` with the nullability last given to the inner destination.
    fn as_given(&self, old: &TableSchema) -> TableSchema {
        let mut old = old.clone();
        if let Some(given) = self.given().get(&old.id) {
            for column in &mut old.columns {
                let found = given
                    .completed
                    .columns
                    .iter()
                    .find(|c| c.name == column.name);
                if let Some(found) = found {
                    column.nullable = found.nullable;
                }
            }
        }
        old
    }

    /// Events carry the completed schema of their table when it has the same shape.
    fn complete_events(&self, events: &mut [ChangeEvent]) {
        let mut given = self.given();
        if given.is_empty() {
            return;
        }
        for event in events {
            let Some(entry) = given.get_mut(&event.table.id) else {
                continue;
            };
            if Arc::ptr_eq(&entry.seen, &event.table) {
                event.table = Arc::clone(&entry.completed);
            } else if changes::same_shape(&entry.completed, &event.table) {
                entry.seen = Arc::clone(&event.table);
                event.table = Arc::clone(&entry.completed);
            }
        }
    }
}

/// What the catalog says about a column `ALTER TABLE` just added.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AddedColumn {
    /// Old rows read this value (text form).
    Missing(String),
    /// The column has a default but old rows were rewritten (a volatile default), or the column
    /// is gone: their values are unknown here.
    Unknown,
    /// No default: old rows read NULL.
    Null,
}

/// One column of the table as the catalog has it now.
#[derive(Debug, Clone)]
struct CatalogColumn {
    name: String,
    not_null: bool,
    has_missing: bool,
    has_default: bool,
    missing_value: Option<String>,
}

impl CatalogColumn {
    fn added(&self) -> AddedColumn {
        match self {
            CatalogColumn {
                has_missing: true,
                missing_value: Some(value),
                ..
            } => AddedColumn::Missing(value.clone()),
            CatalogColumn {
                has_missing: false,
                has_default: false,
                ..
            } => AddedColumn::Null,
            _ => AddedColumn::Unknown,
        }
    }
}

/// The columns of `table` (not dropped) as the catalog has them now.
async fn catalog_columns(pool: &PgPool, table: TableId) -> Result<Vec<CatalogColumn>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The text form pgoutput and COPY use (see the source session settings).
    sqlx::raw_sql(
        "set local timezone = 'UTC'; set local datestyle = 'ISO'; \
         set local intervalstyle = 'postgres'; set local extra_float_digits = 3",
    )
    .execute(&mut *tx)
    .await?;
    let rows: Vec<(String, bool, bool, bool, Option<String>)> = sqlx::query_as(
        "select attname::text, attnotnull, atthasmissing, atthasdef, \
         array_to_string(attmissingval, '') \
         from pg_attribute where attrelid = $1::bigint::oid and attnum > 0 and not attisdropped",
    )
    .bind(i64::from(table.0))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, not_null, has_missing, has_default, missing_value)| CatalogColumn {
                name,
                not_null,
                has_missing,
                has_default,
                missing_value,
            },
        )
        .collect())
}

/// `new` completed from the catalog: the added columns' existing-rows values (warning where
/// they cannot be known) and every column's nullability (key columns never take NULL).
fn complete(old: &TableSchema, new: &TableSchema, catalog: &[CatalogColumn]) -> TableSchema {
    let mut new = new.clone();
    for column in &mut new.columns {
        let found = catalog.iter().find(|c| c.name == column.name);
        if let Some(found) = found {
            column.nullable = !found.not_null && column.primary_key_position.is_none();
        }
        if old.columns.iter().any(|c| c.name == column.name) {
            continue;
        }
        match found.map_or(AddedColumn::Unknown, CatalogColumn::added) {
            AddedColumn::Missing(value) => column.existing_rows_value = Some(value),
            AddedColumn::Null => {}
            AddedColumn::Unknown => tracing::warn!(
                table = %new.name,
                column = %column.name,
                "the source gave the rows it already had values this pipeline cannot see \
                 (a volatile default rewrote the table); they stay NULL in the destination \
                 until changed: roll the table back to init to copy it again"
            ),
        }
    }
    new
}

impl<D: Destination> Destination for WithSourceDefaults<D> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn keeps_identity(&self) -> bool {
        self.inner.keeps_identity()
    }

    async fn read_identity(&self) -> DestinationResult<Option<PipelineIdentity>> {
        self.inner.read_identity().await
    }

    async fn write_identity(&self, identity: &PipelineIdentity) -> DestinationResult<()> {
        self.inner.write_identity(identity).await
    }

    async fn copied_tables(&self) -> DestinationResult<Option<BTreeSet<TableId>>> {
        self.inner.copied_tables().await
    }

    async fn prepare_table(&self, schema: &TableSchema) -> DestinationResult<()> {
        // A table prepared afresh (a copy, read from the catalog) starts from its own schema.
        self.given().remove(&schema.id);
        self.inner.prepare_table(schema).await
    }

    async fn begin_copy(&self, schema: &TableSchema) -> DestinationResult<()> {
        self.inner.begin_copy(schema).await
    }

    async fn write_copy_rows(
        &self,
        schema: &TableSchema,
        chunk: CopyChunk,
    ) -> DestinationResult<()> {
        self.inner.write_copy_rows(schema, chunk).await
    }

    async fn finish_copy(&self, schema: &TableSchema) -> DestinationResult<()> {
        self.inner.finish_copy(schema).await
    }

    async fn alter_table(&self, old: &TableSchema, new: &TableSchema) -> DestinationResult<()> {
        let catalog = catalog_columns(&self.pool, new.id)
            .await
            .map_err(|e| DestinationError::transient("reading the table from the source", e))?;
        let old = self.as_given(old);
        let new = complete(&old, new, &catalog);
        let same_nullability = old
            .columns
            .iter()
            .zip(&new.columns)
            .all(|(o, n)| o.nullable == n.nullable);
        if changes::same_shape(&old, &new) && same_nullability {
            return Ok(());
        }
        self.inner.alter_table(&old, &new).await?;
        let given = Given {
            seen: Arc::new(new.clone()),
            completed: Arc::new(new),
        };
        self.given().insert(given.completed.id, given);
        Ok(())
    }

    async fn write_events(&self, mut events: Vec<ChangeEvent>) -> DestinationResult<()> {
        self.complete_events(&mut events);
        self.inner.write_events(events).await
    }
}
