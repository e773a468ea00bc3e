//! Creating mirror tables in the target and making them follow the source's schema changes
//! (`ADD`/`DROP`/`RENAME COLUMN`, `ALTER COLUMN … TYPE`, a new primary key, a renamed table);
//! an added column gives the rows already there the value the source's old rows read.
//!
//! Column types are the source's: built-in types (OIDs below 16384 are the same in every
//! database) are named by the target's own `format_type`, with their modifiers
//! (`numeric(12,2)`, `character varying(40)`, `timestamp(3) with time zone`, `integer[]`).
//! Enums, domains and extension types exist only in the source database and become `text`.

use sqlx::PgConnection;

use crate::base::quote::{quote_identifier, quote_literal};
use crate::base::schema::{ColumnSchema, TableName, TableSchema};
use crate::destinations::schema_diff::SchemaDiff;
use crate::engine::destination::Error;

use super::errors::table_error;
use super::metadata;
use super::target::TargetTable;

/// First OID of objects created after `initdb`.
const FIRST_USER_OID: u32 = 16_384;

/// Where a source table is mirrored: the same name, or the same table name in `target_schema`.
pub fn target_name(source: &TableName, target_schema: Option<&str>) -> TableName {
    TableName::new(target_schema.unwrap_or(&source.schema), source.name.clone())
}

/// The target's SQL type for each column.
pub async fn column_types(
    conn: &mut PgConnection,
    columns: &[ColumnSchema],
) -> Result<Vec<String>, sqlx::Error> {
    let oids: Vec<i64> = columns.iter().map(|c| i64::from(c.type_oid)).collect();
    let modifiers: Vec<i32> = columns.iter().map(|c| c.type_modifier).collect();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT format_type(o::oid, m) FROM unnest($1::int8[], $2::int4[]) \
         WITH ORDINALITY AS u(o, m, n) ORDER BY n",
    )
    .bind(oids)
    .bind(modifiers)
    .fetch_all(&mut *conn)
    .await?;
    Ok(columns
        .iter()
        .zip(names)
        .map(|(column, name)| {
            if column.type_oid < FIRST_USER_OID {
                name
            } else {
                "text".to_owned()
            }
        })
        .collect())
}

/// The mirror of `schema` inside the caller's transaction: created, altered to match, or as
/// recorded. Holds the DDL advisory lock until the transaction ends.
pub async fn prepare(
    conn: &mut PgConnection,
    schema: &TableSchema,
    target_schema: Option<&str>,
) -> Result<TargetTable, Error> {
    let fail = |doing: &'static str| move |e| table_error(schema, doing, e);
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(metadata::DDL_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(fail("locking the metadata of"))?;
    let target = target_name(&schema.name, target_schema);
    let recorded = metadata::load_table(conn, schema.id)
        .await
        .map_err(fail("reading the metadata of"))?;
    let types = column_types(conn, &schema.columns)
        .await
        .map_err(fail("naming the column types of"))?;
    let table = TargetTable::new(schema.clone(), target, types);
    match recorded {
        Some((name, old)) if name == table.name && old == *schema => {}
        Some((name, old)) => {
            alter(conn, &name, &old, &table).await?;
            record(conn, &table).await?;
        }
        None => {
            create(conn, &table).await?;
            record(conn, &table).await?;
        }
    }
    metadata::watch_truncates(conn, &table.name, schema.id)
        .await
        .map_err(fail("watching truncates of"))?;
    Ok(table)
}

async fn record(conn: &mut PgConnection, table: &TargetTable) -> Result<(), Error> {
    metadata::save_table(conn, &table.name, &table.schema)
        .await
        .map_err(|e| table_error(&table.schema, "recording", e))
}

async fn claim_name(conn: &mut PgConnection, table: &TargetTable) -> Result<(), Error> {
    let owner = metadata::owner_of(conn, &table.name, table.schema.id)
        .await
        .map_err(|e| table_error(&table.schema, "reading the metadata of", e))?;
    match owner {
        Some(other) => Err(Error::table(
            &table.schema,
            format!(
                "target table {} already mirrors the source table {other}; \
                 set destination.postgres.schema to null to keep source schemas apart",
                table.name
            ),
        )),
        None => Ok(()),
    }
}

/// `DROP NOT NULL` where the source now takes NULL; `SET NOT NULL` where it now refuses it,
/// unless the mirror holds NULLs there (the source's catalog is read when the stream describes
/// the table again, which can be ahead of the rows applied so far): then the column stays
/// nullable, with a warning. Key columns keep the key's NOT NULL.
async fn follow_nullability(
    conn: &mut PgConnection,
    table: &TargetTable,
    diff: &SchemaDiff,
) -> Result<(), Error> {
    let quoted = table.quoted();
    for &n in &diff.nullability {
        if table.key.contains(&n) {
            continue;
        }
        let column = &table.schema.columns[n];
        let name = quote_identifier(&column.name);
        if column.nullable {
            execute(
                conn,
                table,
                format!("ALTER TABLE {quoted} ALTER COLUMN {name} DROP NOT NULL"),
            )
            .await?;
            continue;
        }
        let holds_null: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT FROM {quoted} WHERE {name} IS NULL)"
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| table_error(&table.schema, "checking NULLs in", e))?;
        if holds_null {
            tracing::warn!(
                table = %table.schema.name,
                column = %column.name,
                "the source column is NOT NULL now but the mirror still holds NULLs in it \
                 (rows the stream has not updated yet); the mirror column stays nullable"
            );
            continue;
        }
        execute(
            conn,
            table,
            format!("ALTER TABLE {quoted} ALTER COLUMN {name} SET NOT NULL"),
        )
        .await?;
    }
    Ok(())
}

async fn execute(conn: &mut PgConnection, table: &TargetTable, sql: String) -> Result<(), Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut *conn)
        .await
        .map_err(|e| table_error(&table.schema, "changing the mirror of", e))?;
    Ok(())
}

async fn create(conn: &mut PgConnection, table: &TargetTable) -> Result<(), Error> {
    claim_name(conn, table).await?;
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table.quoted())
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| table_error(&table.schema, "looking up the mirror of", e))?;
    if exists.is_some() {
        return Err(Error::table(
            &table.schema,
            format!(
                "target table {} exists but etl did not create it; drop or rename it",
                table.name
            ),
        ));
    }
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {}; {}",
        quote_identifier(&table.name.schema),
        table.create_sql()
    );
    execute(conn, table, sql).await
}

async fn alter(
    conn: &mut PgConnection,
    old_name: &TableName,
    old: &TableSchema,
    new: &TargetTable,
) -> Result<(), Error> {
    let diff = SchemaDiff::between(old, &new.schema);
    let mut statements: Vec<String> = Vec::new();
    if *old_name != new.name {
        claim_name(conn, new).await?;
        let mut current = old_name.clone();
        if old_name.schema != new.name.schema {
            statements.push(format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_identifier(&new.name.schema)
            ));
            statements.push(format!(
                "ALTER TABLE {} SET SCHEMA {}",
                current.quoted(),
                quote_identifier(&new.name.schema)
            ));
            current.schema = new.name.schema.clone();
        }
        if current.name != new.name.name {
            statements.push(format!(
                "ALTER TABLE {} RENAME TO {}",
                current.quoted(),
                quote_identifier(&new.name.name)
            ));
        }
    }
    let table = new.quoted();
    let name = |schema: &TableSchema, i: usize| quote_identifier(&schema.columns[i].name);
    for &o in &diff.dropped {
        statements.push(format!("ALTER TABLE {table} DROP COLUMN {}", name(old, o)));
    }
    // Renames go through temporary names so that swaps and chains cannot collide.
    for &(o, _) in &diff.renamed {
        statements.push(format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            name(old, o),
            quote_identifier(&format!("etl_renaming_{o}"))
        ));
    }
    for &(o, n) in &diff.renamed {
        statements.push(format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            quote_identifier(&format!("etl_renaming_{o}")),
            name(&new.schema, n)
        ));
    }
    for &(_, n) in &diff.retyped {
        let column = name(&new.schema, n);
        let ty = &new.types[n];
        statements.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {column} TYPE {ty} USING {column}::text::{ty}"
        ));
    }
    for &n in &diff.added {
        let column = name(&new.schema, n);
        let ty = &new.types[n];
        // The rows already here read what the source's old rows read (`ADD COLUMN … DEFAULT x`).
        // Added and dropped as a default, the value is kept aside like Postgres's own fast
        // default: no rewrite, and later inserts still carry every column themselves.
        match &new.schema.columns[n].existing_rows_value {
            None => statements.push(format!("ALTER TABLE {table} ADD COLUMN {column} {ty}")),
            Some(value) => {
                let value = quote_literal(value);
                statements.push(format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {ty} DEFAULT {value}::{ty}"
                ));
                statements.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT"
                ));
            }
        }
    }
    for statement in statements {
        execute(conn, new, statement).await?;
    }
    follow_nullability(conn, new, &diff).await?;
    if diff.key_changed {
        let constraint: Option<String> = sqlx::query_scalar(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
        )
        .bind(&table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| table_error(&new.schema, "looking up the key of", e))?;
        if let Some(constraint) = constraint {
            let sql = format!(
                "ALTER TABLE {table} DROP CONSTRAINT {}",
                quote_identifier(&constraint)
            );
            execute(conn, new, sql).await?;
        }
        if !new.key.is_empty() {
            let columns: Vec<String> = new.key.iter().map(|&i| name(&new.schema, i)).collect();
            let sql = format!(
                "ALTER TABLE {table} ADD PRIMARY KEY ({})",
                columns.join(", ")
            );
            execute(conn, new, sql).await?;
        }
    }
    Ok(())
}
