//! Iceberg's SQL catalog over our own sqlx (0.9) pool: the `iceberg_tables` and
//! `iceberg_namespace_properties` tables that pyiceberg's `SqlCatalog` and the Java
//! `JdbcCatalog` use, so any of them opens what etl writes.
//!
//! Why not the `iceberg-catalog-sql` crate: it builds on sqlx 0.8, a second copy of sqlx beside
//! ours; the schema is two small tables, so it is implemented here.
//!
//! A table's current metadata is the file `metadata_location` names. A commit writes a new
//! metadata file, then swaps the pointer with a compare-and-swap on the old location
//! (`UPDATE … WHERE metadata_location = old`), the same protocol the other implementations use:
//! of two concurrent writers one wins and the other gets [`ErrorKind::CatalogCommitConflicts`].
//! No error is ever marked retryable, so iceberg's `Transaction::commit` never re-applies an
//! append on its own: the destination reloads the table and filters by its position instead.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, TableCommit,
    TableCreation, TableIdent,
};
use sqlx::PgPool;

/// The catalog's tables, as pyiceberg creates them (column sizes included).
const CREATE: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS iceberg_tables (
        catalog_name VARCHAR(255) NOT NULL,
        table_namespace VARCHAR(255) NOT NULL,
        table_name VARCHAR(255) NOT NULL,
        metadata_location VARCHAR(1000),
        previous_metadata_location VARCHAR(1000),
        PRIMARY KEY (catalog_name, table_namespace, table_name))",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
        catalog_name VARCHAR(255) NOT NULL,
        namespace VARCHAR(255) NOT NULL,
        property_key VARCHAR(255) NOT NULL,
        property_value VARCHAR(1000),
        PRIMARY KEY (catalog_name, namespace, property_key))",
];

/// The property pyiceberg writes to make an empty namespace exist.
const EXISTS_KEY: &str = "exists";

/// A SQL catalog named `name` in the database of `pool`, with tables under `warehouse`.
pub struct SqlCatalog {
    pool: PgPool,
    name: String,
    warehouse: String,
    file_io: FileIO,
    /// A local warehouse directory, flushed to disk before each swap (an object store's write
    /// is durable when it returns).
    local: bool,
}

impl fmt::Debug for SqlCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlCatalog")
            .field("name", &self.name)
            .field("warehouse", &self.warehouse)
            .finish_non_exhaustive()
    }
}

/// A database error as an iceberg error (never retryable: see the module documentation).
fn db_error(what: &str, error: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("SQL catalog: {what}")).with_source(error)
}

fn namespace_key(namespace: &NamespaceIdent) -> String {
    namespace.join(".")
}

impl SqlCatalog {
    /// Creates the catalog's tables if missing; files are read and written through `file_io`.
    pub async fn open(
        pool: PgPool,
        name: String,
        warehouse: String,
        file_io: FileIO,
        local: bool,
    ) -> Result<Self> {
        for statement in CREATE {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(|e| db_error("creating the catalog tables", e))?;
        }
        Ok(SqlCatalog {
            pool,
            name,
            warehouse: warehouse.trim_end_matches('/').to_owned(),
            file_io,
            local,
        })
    }

    /// One namespace property, if set.
    pub async fn namespace_property(
        &self,
        namespace: &NamespaceIdent,
        key: &str,
    ) -> Result<Option<String>> {
        let value: Option<Option<String>> = sqlx::query_scalar(
            "SELECT property_value FROM iceberg_namespace_properties
             WHERE catalog_name = $1 AND namespace = $2 AND property_key = $3",
        )
        .bind(&self.name)
        .bind(namespace_key(namespace))
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("reading a namespace property", e))?;
        Ok(value.flatten())
    }

    /// Sets one namespace property (insert or replace).
    pub async fn set_namespace_property(
        &self,
        namespace: &NamespaceIdent,
        key: &str,
        value: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO iceberg_namespace_properties
                 (catalog_name, namespace, property_key, property_value)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (catalog_name, namespace, property_key)
             DO UPDATE SET property_value = EXCLUDED.property_value",
        )
        .bind(&self.name)
        .bind(namespace_key(namespace))
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("writing a namespace property", e))?;
        Ok(())
    }

    async fn metadata_location(&self, table: &TableIdent) -> Result<Option<String>> {
        let location: Option<Option<String>> = sqlx::query_scalar(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&self.name)
        .bind(namespace_key(table.namespace()))
        .bind(table.name())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("reading a table's metadata location", e))?;
        Ok(location.flatten())
    }

    fn table(&self, ident: TableIdent, location: String, metadata: TableMetadata) -> Result<Table> {
        Table::builder()
            .identifier(ident)
            .metadata_location(location)
            .metadata(metadata)
            .file_io(self.file_io.clone())
            .runtime(iceberg::Runtime::try_current()?)
            .build()
    }

    /// Flushes the warehouse's file system (`syncfs`), so the files a commit is about to
    /// reference are on disk before the catalog points at them: iceberg fsyncs data files but
    /// writes metadata, manifest lists and manifests without.
    async fn flush_warehouse(&self) -> Result<()> {
        if !self.local {
            return Ok(());
        }
        let dir = self
            .warehouse
            .strip_prefix("file://")
            .unwrap_or(&self.warehouse)
            .to_owned();
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::fd::AsRawFd;
            let handle = std::fs::File::open(&dir)?;
            // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
            if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Unexpected,
                "cannot flush the warehouse to disk",
            )
            .with_source(e)),
            Err(e) => {
                Err(Error::new(ErrorKind::Unexpected, "flushing the warehouse").with_source(e))
            }
        }
    }

    /// Points `ident` at `new` if it still points at `old`; a conflict otherwise. Everything
    /// written before is flushed to disk first.
    async fn swap(&self, ident: &TableIdent, old: &str, new: &str) -> Result<()> {
        self.flush_warehouse().await?;
        let done = sqlx::query(
            "UPDATE iceberg_tables
             SET metadata_location = $4, previous_metadata_location = $5
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
               AND metadata_location = $5",
        )
        .bind(&self.name)
        .bind(namespace_key(ident.namespace()))
        .bind(ident.name())
        .bind(new)
        .bind(old)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("swapping a table's metadata location", e))?;
        if done.rows_affected() != 1 {
            return Err(Error::new(
                ErrorKind::CatalogCommitConflicts,
                format!(
                    "table {ident} was changed by another writer (its metadata is no longer {old})"
                ),
            ));
        }
        Ok(())
    }

    /// Replaces `table`'s metadata with `metadata` (a new metadata file, then the pointer swap).
    /// Used for what iceberg's transactions do not offer: emptying a table (a fresh metadata
    /// without snapshots) and schema changes beyond add/drop.
    pub async fn replace_metadata(&self, table: &Table, metadata: TableMetadata) -> Result<Table> {
        let old = table.metadata_location_result()?;
        let location = MetadataLocation::from_str(old)?
            .with_next_version()
            .with_new_metadata(&metadata);
        metadata.write_to(&self.file_io, &location).await?;
        self.swap(table.identifier(), old, &location.to_string())
            .await?;
        self.table(table.identifier().clone(), location.to_string(), metadata)
    }
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT table_namespace FROM iceberg_tables WHERE catalog_name = $1
             UNION SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = $1",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("listing namespaces", e))?;
        let prefix = parent.map(|p| format!("{}.", namespace_key(p)));
        names
            .into_iter()
            .filter(|name| prefix.as_ref().is_none_or(|p| name.starts_with(p)))
            .map(|name| NamespaceIdent::from_vec(name.split('.').map(str::to_owned).collect()))
            .collect()
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        if self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceAlreadyExists,
                format!("namespace {namespace:?} already exists"),
            ));
        }
        self.set_namespace_property(namespace, EXISTS_KEY, "true")
            .await?;
        for (key, value) in &properties {
            self.set_namespace_property(namespace, key, value).await?;
        }
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT property_key, property_value FROM iceberg_namespace_properties
             WHERE catalog_name = $1 AND namespace = $2",
        )
        .bind(&self.name)
        .bind(namespace_key(namespace))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("reading a namespace", e))?;
        if rows.is_empty() && !self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceNotFound,
                format!("namespace {namespace:?} does not exist"),
            ));
        }
        let properties = rows
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect();
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM iceberg_namespace_properties
                            WHERE catalog_name = $1 AND namespace = $2)
                 OR EXISTS (SELECT 1 FROM iceberg_tables
                            WHERE catalog_name = $1 AND table_namespace = $2)",
        )
        .bind(&self.name)
        .bind(namespace_key(namespace))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("looking a namespace up", e))
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        for (key, value) in &properties {
            self.set_namespace_property(namespace, key, value).await?;
        }
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        if !self.list_tables(namespace).await?.is_empty() {
            return Err(Error::new(
                ErrorKind::PreconditionFailed,
                format!("namespace {namespace:?} is not empty"),
            ));
        }
        sqlx::query(
            "DELETE FROM iceberg_namespace_properties WHERE catalog_name = $1 AND namespace = $2",
        )
        .bind(&self.name)
        .bind(namespace_key(namespace))
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("dropping a namespace", e))?;
        Ok(())
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT table_name FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 ORDER BY table_name",
        )
        .bind(&self.name)
        .bind(namespace_key(namespace))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("listing tables", e))?;
        Ok(names
            .into_iter()
            .map(|name| TableIdent::new(namespace.clone(), name))
            .collect())
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let location = creation.location.clone().unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                self.warehouse,
                namespace.join("/"),
                creation.name
            )
        });
        let creation = TableCreation {
            location: Some(location.clone()),
            ..creation
        };
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
        metadata.write_to(&self.file_io, &metadata_location).await?;
        self.flush_warehouse().await?;
        let inserted = sqlx::query(
            "INSERT INTO iceberg_tables
                 (catalog_name, table_namespace, table_name, metadata_location,
                  previous_metadata_location)
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&self.name)
        .bind(namespace_key(namespace))
        .bind(ident.name())
        .bind(metadata_location.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("registering a new table", e))?;
        if inserted.rows_affected() != 1 {
            return Err(Error::new(
                ErrorKind::TableAlreadyExists,
                format!("table {ident} already exists"),
            ));
        }
        self.table(ident, metadata_location.to_string(), metadata)
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let Some(location) = self.metadata_location(table).await? else {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!("table {table} does not exist"),
            ));
        };
        let metadata = TableMetadata::read_from(&self.file_io, &location).await?;
        self.table(table.clone(), location, metadata)
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&self.name)
        .bind(namespace_key(table.namespace()))
        .bind(table.name())
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("dropping a table", e))?;
        if done.rows_affected() == 0 {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!("table {table} does not exist"),
            ));
        }
        Ok(())
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        let loaded = self.load_table(table).await?;
        self.drop_table(table).await?;
        iceberg::drop_table_data(&loaded).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        Ok(self.metadata_location(table).await?.is_some())
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        let done = sqlx::query(
            "UPDATE iceberg_tables SET table_namespace = $4, table_name = $5
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&self.name)
        .bind(namespace_key(src.namespace()))
        .bind(src.name())
        .bind(namespace_key(dest.namespace()))
        .bind(dest.name())
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("renaming a table", e))?;
        if done.rows_affected() == 0 {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!("table {src} does not exist"),
            ));
        }
        Ok(())
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        let metadata = TableMetadata::read_from(&self.file_io, &metadata_location).await?;
        sqlx::query(
            "INSERT INTO iceberg_tables
                 (catalog_name, table_namespace, table_name, metadata_location)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&self.name)
        .bind(namespace_key(table.namespace()))
        .bind(table.name())
        .bind(&metadata_location)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("registering a table", e))?;
        self.table(table.clone(), metadata_location, metadata)
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let current = self.load_table(commit.identifier()).await?;
        let old = current.metadata_location_result()?.to_owned();
        let staged = commit.apply(current)?;
        let new = staged.metadata_location_result()?.to_owned();
        staged
            .metadata()
            .write_to(staged.file_io(), &MetadataLocation::from_str(&new)?)
            .await?;
        self.swap(staged.identifier(), &old, &new).await?;
        Ok(staged)
    }
}
