//! Compaction of a mirror table: once a commit leaves more files written by batches than
//! `iceberg.compact_files` (each batch adds a data file and a position-delete file per partition
//! it touches; the copy's and the last compaction's files do not count), the table's
//! live rows (deletes applied by the `iceberg` crate's scan) are rewritten into data files of
//! `iceberg.target_file_bytes` and committed as one `replace` snapshot that keeps none of the
//! old manifests: no delete file is left, readers see the same rows before and after, and the
//! position stays the one just committed. The key index is rebuilt from the rows written.

use futures_util::TryStreamExt as _;
use iceberg::spec::Operation;
use iceberg::table::Table;

use super::index::{keys_of, written};
use super::{Commit, KeyIndex, key_columns, missing_key};
use crate::base::lsn::Lsn;
use crate::base::schema::TableSchema;
use crate::destinations::iceberg::{IcebergDestination, Slot, close_files, error};
use crate::engine::destination::Result;

impl IcebergDestination {
    /// Rewrites `table` (just committed at `position`) as described in the module documentation.
    /// On success the slot holds the compacted table and its index; on failure the caller drops
    /// both (they are read again).
    pub(super) async fn compact(
        &self,
        slot: &mut Slot,
        schema: &TableSchema,
        table: Table,
        position: (Lsn, u32),
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let arrow = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(|e| error(schema, "deriving the Arrow schema", e))?;
        let key_at = key_columns(schema)
            .into_iter()
            .map(|k| {
                let name = &schema.columns[k].name;
                arrow.index_of(name).map_err(|_| missing_key(schema, name))
            })
            .collect::<Result<Vec<usize>>>()?;
        let mut rows = table
            .scan()
            .select_all()
            .build()
            .map_err(|e| error(schema, "planning the compaction's scan", e))?
            .to_arrow()
            .await
            .map_err(|e| error(schema, "reading the table to compact", e))?;
        let mut writer = self.open_files(&table, schema, "compact")?;
        while let Some(batch) = rows
            .try_next()
            .await
            .map_err(|e| error(schema, "reading the table to compact", e))?
        {
            let keys = keys_of(&batch, &key_at).map_err(|e| error(schema, "formatting keys", e))?;
            writer
                .write(batch, Some(keys))
                .await
                .map_err(|e| error(schema, "writing a data file", e))?;
        }
        let (files, keys) = close_files(schema, writer).await?;
        let written = written(&files, table.metadata().default_partition_spec().spec_id());
        let before = table.metadata().current_snapshot_id();
        let (table, _) = self
            .commit_mirror(
                &table,
                schema,
                Commit {
                    data_files: files,
                    delete_files: Vec::new(),
                    keep_current: false,
                    operation: Operation::Replace,
                },
                position,
            )
            .await?;
        let mut index = KeyIndex::empty(table.metadata().current_snapshot_id());
        index.add_files(written, keys);
        tracing::info!(
            table = %schema.name,
            rows = index.len(),
            files = index.files.len(),
            replaced = ?before,
            ms = started.elapsed().as_millis() as u64,
            "iceberg mirror: compacted the table"
        );
        slot.table = Some(table);
        slot.index = Some(index);
        Ok(())
    }
}
