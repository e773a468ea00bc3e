//! Mirror mode of the `iceberg` destination: tables that read as the source's current rows.
//!
//! Merge-on-read with **position deletes**, written by hand because the `iceberg` crate commits
//! appends only. One commit per table and batch: the batch is folded per key ([`plan`]), the
//! surviving new rows go to a data file, and the rows they replace (and deleted rows) are named
//! by `(data file, row position)` in a position-delete file; both are listed in new manifests
//! beside the current snapshot's (none after a truncate), and the snapshot carries the position
//! as in changelog mode. Position deletes are the delete form every Iceberg reader applies
//! (pyiceberg, for one, reads no equality deletes). Where each key's row lives comes from the
//! in-memory [`KeyIndex`], built from the table when first needed.

mod compact;
mod index;
mod plan;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_select::concat::concat_batches;
use arrow_select::interleave::interleave;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, FormatVersion, MAIN_BRANCH, ManifestContentType,
    ManifestListWriter, ManifestWriterBuilder, Operation, PartitionKey, Snapshot,
    SnapshotReference, SnapshotRetention, Summary,
};
use iceberg::table::Table;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use parquet::file::properties::WriterProperties;

pub use self::index::KeyIndex;
use self::index::{FileOf, Loc, delete_schema, keys_of, read_file};
use self::plan::NewRow;
use super::batch::{self, Record};
use super::types::{ColumnValues, Kind, array};
use super::{APPLIED_POSITION, IcebergDestination, POSITION_LSN, POSITION_ORDINAL, Slot, error};
use crate::base::event::{Cell, ChangeEvent};
use crate::base::lsn::Lsn;
use crate::base::schema::TableSchema;
use crate::engine::destination::{Error, Result};

/// The columns that identify a row: the key (primary key or replica-identity index), or every
/// column for a table without one (`REPLICA IDENTITY FULL`: identical rows are interchangeable).
pub fn key_columns(schema: &TableSchema) -> Vec<usize> {
    let key = schema.key_columns();
    if key.is_empty() {
        (0..schema.columns.len()).collect()
    } else {
        key
    }
}

impl IcebergDestination {
    /// Applies `events` (one table's, after the position filter; the last one at `position`)
    /// to the mirror table in one commit.
    pub(super) async fn mirror(
        &self,
        slot: &mut Slot,
        schema: &TableSchema,
        events: &[&ChangeEvent],
        position: (Lsn, u32),
    ) -> Result<()> {
        let table = self.table(slot, schema).await?;
        if table.metadata().format_version() != FormatVersion::V2 {
            return Err(Error::table(
                schema,
                format!(
                    "mirror mode writes Iceberg format v2 tables, this one is {:?}; recopy it \
                     (etl tables resync)",
                    table.metadata().format_version()
                ),
            ));
        }
        let arrow = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
                .map_err(|e| error(schema, "deriving the Arrow schema", e))?,
        );
        let keys = key_columns(schema);
        let current = table.metadata().current_snapshot_id();
        let mut index = match slot.index.take().filter(|index| index.snapshot == current) {
            Some(index) => index,
            None => {
                let ids = keys
                    .iter()
                    .map(|&k| {
                        let name = &schema.columns[k].name;
                        table
                            .metadata()
                            .current_schema()
                            .field_by_name(name)
                            .map(|f| f.id)
                            .ok_or_else(|| missing_key(schema, name))
                    })
                    .collect::<Result<Vec<i32>>>()?;
                let started = std::time::Instant::now();
                let index = KeyIndex::load(&table, &ids)
                    .await
                    .map_err(|e| error(schema, "reading the table's keys", e))?;
                tracing::info!(
                    table = %schema.name,
                    rows = index.len(),
                    files = index.files.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "iceberg mirror: read where each row of the table is"
                );
                index
            }
        };
        // From here on `index` is ahead of the table: it goes back into the slot only once the
        // commit succeeded (a failure rebuilds it from the table).
        let event_keys = event_keys(&arrow, schema, &keys, events)?;
        let plan = plan::plan(schema, events, &event_keys, &mut index)?;
        let new_rows: Vec<&NewRow> = plan.rows.iter().filter(|r| r.live).collect();
        let rows = self
            .rows_batch(&table, &arrow, schema, &index.files, &new_rows)
            .await?;
        let (data_files, new_keys) = self.write_rows(&table, schema, rows, &new_rows).await?;
        let written = index::written(
            &data_files,
            table.metadata().default_partition_spec().spec_id(),
        );
        let delete_files = self
            .write_deletes(&table, schema, &index, &plan.deletes)
            .await?;
        let committed = self
            .commit_mirror(
                &table,
                schema,
                Commit {
                    data_files,
                    delete_files,
                    keep_current: !plan.truncated,
                    operation: Operation::Overwrite,
                },
                position,
            )
            .await;
        match committed {
            Ok((table, delete_files)) => {
                index.add_files(written, new_keys);
                index.snapshot = table.metadata().current_snapshot_id();
                // What compaction would rewrite away: the files batches added (the copy's and
                // the last compaction's files are the table's compact layout, one or more per
                // partition, and do not count).
                let compactable = delete_files
                    + index
                        .files
                        .iter()
                        .filter(|f| file_name(&f.path).starts_with(BATCH_PREFIX))
                        .count();
                slot.index = Some(index);
                slot.table = Some(table.clone());
                if self.compact_files > 0 && compactable > self.compact_files as usize {
                    // The batch is committed: a failed compaction is retried after the next.
                    if let Err(e) = self.compact(slot, schema, table, position).await {
                        slot.table = None;
                        slot.index = None;
                        tracing::warn!(
                            table = %schema.name,
                            error = %e,
                            "iceberg mirror: compaction failed; it is tried again after the next commit"
                        );
                    }
                }
                Ok(())
            }
            Err(e) => {
                slot.table = None;
                Err(e)
            }
        }
    }

    /// The Arrow rows of `new_rows`, with the unchanged TOAST values an update did not send
    /// taken from the stored row it replaces.
    async fn rows_batch(
        &self,
        table: &Table,
        arrow: &Arc<arrow_schema::Schema>,
        schema: &TableSchema,
        files_of: &[FileOf],
        new_rows: &[&NewRow],
    ) -> Result<RecordBatch> {
        let records: Vec<Record<'_>> = new_rows
            .iter()
            .map(|row| Record {
                op: "",
                lsn: 0,
                seq: 0,
                commit_time: None,
                cells: Some(&row.cells),
                old_key: None,
                unchanged: None,
            })
            .collect();
        let batch = batch::record_batch(arrow, schema, &records)
            .map_err(|message| Error::table(schema, message))?;
        let fills: Vec<(usize, Loc)> = new_rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| row.fill.map(|loc| (i, loc)))
            .collect();
        if fills.is_empty() {
            return Ok(batch);
        }
        let stored = self.stored_rows(table, schema, files_of, &fills).await?;
        // Row `i` of `new_rows` takes its unchanged cells from row `fill_row[i]` of `stored`.
        let mut fill_row = vec![None; new_rows.len()];
        for (n, (i, _)) in fills.iter().enumerate() {
            fill_row[*i] = Some(n);
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (c, column) in schema.columns.iter().enumerate() {
            let Ok(at) = arrow.index_of(&column.name) else {
                continue;
            };
            let picks: Vec<(usize, usize)> = new_rows
                .iter()
                .enumerate()
                .map(|(i, row)| match (row.cells.get(c), fill_row[i]) {
                    (Some(Cell::Unchanged), Some(n)) => (1, n),
                    _ => (0, i),
                })
                .collect();
            if picks.iter().any(|(source, _)| *source == 1) {
                columns[at] =
                    interleave(&[columns[at].as_ref(), stored.column(at).as_ref()], &picks)
                        .map_err(|e| {
                            Error::table(schema, format!("column `{}`: {e}", column.name))
                        })?;
            }
        }
        RecordBatch::try_new(arrow.clone(), columns)
            .map_err(|e| Error::table(schema, e.to_string()))
    }

    /// The stored rows at `fills`' locations, in that order, in the table's current schema.
    async fn stored_rows(
        &self,
        table: &Table,
        schema: &TableSchema,
        files_of: &[FileOf],
        fills: &[(usize, Loc)],
    ) -> Result<RecordBatch> {
        let current = table.metadata().current_schema().clone();
        let ids: Vec<i32> = current.as_struct().fields().iter().map(|f| f.id).collect();
        let sizes = data_file_sizes(table)
            .await
            .map_err(|e| error(schema, "listing data files", e))?;
        let arrow = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(&current)
                .map_err(|e| error(schema, "deriving the Arrow schema", e))?,
        );
        // Each data file the fills point into, read once, whole.
        let mut sources: Vec<RecordBatch> = Vec::new();
        let mut source_of: HashMap<u32, usize> = HashMap::new();
        let mut picks = Vec::with_capacity(fills.len());
        for (_, loc) in fills {
            let source = match source_of.get(&loc.file) {
                Some(&source) => source,
                None => {
                    let path = &files_of
                        .get(loc.file as usize)
                        .ok_or_else(|| Error::table(schema, "a stored row's data file is unknown"))?
                        .path;
                    let size = sizes.get(path.as_str()).copied().ok_or_else(|| {
                        Error::table(schema, format!("data file {path} is not in the table"))
                    })?;
                    let batches = read_file(table, path, size, current.clone(), ids.clone())
                        .await
                        .map_err(|e| error(schema, "reading stored rows", e))?;
                    sources.push(
                        concat_batches(&arrow, &batches)
                            .map_err(|e| Error::table(schema, e.to_string()))?,
                    );
                    source_of.insert(loc.file, sources.len() - 1);
                    sources.len() - 1
                }
            };
            picks.push((source, loc.pos as usize));
        }
        let columns = (0..ids.len())
            .map(|c| {
                let arrays: Vec<&dyn arrow_array::Array> =
                    sources.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &picks)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::table(schema, format!("stored row out of range: {e}")))?;
        RecordBatch::try_new(arrow, columns).map_err(|e| Error::table(schema, e.to_string()))
    }

    /// Writes `rows` to data files; returns them and the key of each row in file order.
    async fn write_rows(
        &self,
        table: &Table,
        schema: &TableSchema,
        rows: RecordBatch,
        new_rows: &[&NewRow],
    ) -> Result<(Vec<DataFile>, Vec<String>)> {
        if rows.num_rows() == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let keys = new_rows.iter().map(|row| row.key.clone()).collect();
        self.write_data(table, schema, BATCH_PREFIX, rows, Some(keys))
            .await
    }

    /// Writes the position-delete files of `deletes`, one per partition of the data files they
    /// name (a reader applies a delete file to data files of its partition only), each sorted
    /// by file and position as the spec asks; none when nothing is deleted.
    async fn write_deletes(
        &self,
        table: &Table,
        schema: &TableSchema,
        index: &KeyIndex,
        deletes: &[Loc],
    ) -> Result<Vec<DataFile>> {
        let default_spec = table.metadata().default_partition_spec();
        // Per partition, in order of first appearance: (file path, position) pairs.
        let mut groups: Vec<(&FileOf, Vec<(&str, u32)>)> = Vec::new();
        let mut group_of: HashMap<&iceberg::spec::Struct, usize> = HashMap::new();
        for loc in deletes {
            let of = index
                .files
                .get(loc.file as usize)
                .ok_or_else(|| Error::table(schema, "a deleted row's data file is unknown"))?;
            if of.spec_id != default_spec.spec_id() {
                return Err(Error::table(
                    schema,
                    format!(
                        "data file {} was written under partition spec {}, the table's is now \
                         {}; mirror mode writes one partition spec: recopy the table (etl \
                         tables resync)",
                        of.path,
                        of.spec_id,
                        default_spec.spec_id()
                    ),
                ));
            }
            let g = *group_of.entry(&of.partition).or_insert_with(|| {
                groups.push((of, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push((of.path.as_str(), loc.pos));
        }
        let delete_schema =
            Arc::new(delete_schema().map_err(|e| error(schema, "position-delete schema", e))?);
        let arrow = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(&delete_schema)
                .map_err(|e| error(schema, "position-delete schema", e))?,
        );
        let mut files = Vec::with_capacity(groups.len());
        for (of, mut named) in groups {
            named.sort_unstable();
            let batch = RecordBatch::try_new(
                arrow.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(named.iter().map(|(p, _)| *p))),
                    Arc::new(Int64Array::from_iter_values(
                        named.iter().map(|(_, pos)| i64::from(*pos)),
                    )),
                ],
            )
            .map_err(|e| Error::table(schema, e.to_string()))?;
            let parquet = ParquetWriterBuilder::new(
                WriterProperties::builder().build(),
                delete_schema.clone(),
            );
            let location = DefaultLocationGenerator::new(table.metadata())
                .map_err(|e| error(schema, "preparing data file locations", e))?;
            let names = DefaultFileNameGenerator::new(
                super::unique_prefix("deletes"),
                None,
                DataFileFormat::Parquet,
            );
            let mut writer = RollingFileWriterBuilder::new(
                parquet,
                usize::MAX,
                table.file_io().clone(),
                location,
                names,
            )
            .build();
            let key = (!default_spec.is_unpartitioned()).then(|| {
                PartitionKey::new(
                    default_spec.as_ref().clone(),
                    table.metadata().current_schema().clone(),
                    of.partition.clone(),
                )
            });
            writer
                .write(&key, &batch)
                .await
                .map_err(|e| error(schema, "writing a position-delete file", e))?;
            let mut built = writer
                .close()
                .await
                .map_err(|e| error(schema, "closing a position-delete file", e))?;
            let mut builder = built
                .pop()
                .ok_or_else(|| Error::table(schema, "the position-delete writer wrote no file"))?;
            builder
                .content(DataContentType::PositionDeletes)
                .partition(of.partition.clone())
                .partition_spec_id(of.spec_id);
            files.push(
                builder
                    .build()
                    .map_err(|e| Error::table(schema, format!("position-delete file: {e}")))?,
            );
        }
        Ok(files)
    }

    /// Commits one snapshot of `commit` at `position`; returns the table and how many live
    /// position-delete files the snapshot has.
    async fn commit_mirror(
        &self,
        table: &Table,
        schema: &TableSchema,
        commit: Commit,
        (lsn, ordinal): (Lsn, u32),
    ) -> Result<(Table, usize)> {
        let Commit {
            data_files,
            delete_files,
            keep_current,
            operation,
        } = commit;
        let metadata = table.metadata();
        let io = table.file_io();
        let snapshot_id = loop {
            let id = (rand::random::<u64>() >> 1) as i64;
            if id != 0 && metadata.snapshot_by_id(id).is_none() {
                break id;
            }
        };
        let sequence = metadata.next_sequence_number();
        let commit = format!("{:032x}", rand::random::<u128>());
        let manifest_path = |n: u32| format!("{}/metadata/{commit}-m{n}.avro", metadata.location());
        let mut manifests = if keep_current {
            index::current_manifests(table)
                .await
                .map_err(|e| error(schema, "reading the current manifests", e))?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut summary = HashMap::from([
            (POSITION_LSN.to_owned(), lsn.0.to_string()),
            (POSITION_ORDINAL.to_owned(), ordinal.to_string()),
            ("added-data-files".to_owned(), data_files.len().to_string()),
            (
                "added-records".to_owned(),
                data_files
                    .iter()
                    .map(DataFile::record_count)
                    .sum::<u64>()
                    .to_string(),
            ),
        ]);
        for (n, (files, deletes)) in [(data_files, false), (delete_files, true)]
            .into_iter()
            .enumerate()
        {
            if files.is_empty() {
                continue;
            }
            if deletes {
                summary.insert("added-delete-files".to_owned(), files.len().to_string());
                summary.insert(
                    "added-position-deletes".to_owned(),
                    files
                        .iter()
                        .map(DataFile::record_count)
                        .sum::<u64>()
                        .to_string(),
                );
            }
            let output = io
                .new_output(manifest_path(n as u32))
                .map_err(|e| error(schema, "creating a manifest", e))?;
            let builder = ManifestWriterBuilder::new(
                output,
                Some(snapshot_id),
                metadata.current_schema().clone(),
                metadata.default_partition_spec().as_ref().clone(),
            );
            let mut writer = if deletes {
                builder.build_v2_deletes()
            } else {
                builder.build_v2_data()
            };
            for file in files {
                writer
                    .add_file(file, sequence)
                    .map_err(|e| error(schema, "listing a file in a manifest", e))?;
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(|e| error(schema, "writing a manifest", e))?,
            );
        }
        let delete_files: usize = manifests
            .iter()
            .filter(|m| m.content == ManifestContentType::Deletes)
            .map(|m| {
                (m.added_files_count.unwrap_or(0) + m.existing_files_count.unwrap_or(0)) as usize
            })
            .sum();
        let list_path = format!(
            "{}/metadata/snap-{snapshot_id}-1-{commit}.avro",
            metadata.location()
        );
        let list_output = io
            .new_output(list_path.clone())
            .map_err(|e| error(schema, "creating a manifest list", e))?
            .writer()
            .await
            .map_err(|e| error(schema, "creating a manifest list", e))?;
        let mut list = ManifestListWriter::v2(
            list_output,
            snapshot_id,
            metadata.current_snapshot_id(),
            sequence,
        );
        list.add_manifests(manifests.into_iter())
            .map_err(|e| error(schema, "listing manifests", e))?;
        list.close()
            .await
            .map_err(|e| error(schema, "writing the manifest list", e))?;
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_path)
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(metadata.current_snapshot_id())
            .with_sequence_number(sequence)
            .with_summary(Summary {
                operation,
                additional_properties: summary,
            })
            .with_schema_id(metadata.current_schema_id())
            .with_timestamp_ms(now_ms())
            .build();
        let next = metadata
            .clone()
            .into_builder(table.metadata_location().map(str::to_owned))
            .set_properties(HashMap::from([(
                APPLIED_POSITION.to_owned(),
                format!("{}/{ordinal}", lsn.0),
            )]))
            .and_then(|builder| builder.add_snapshot(snapshot))
            .and_then(|builder| {
                builder.set_ref(
                    MAIN_BRANCH,
                    SnapshotReference::new(
                        snapshot_id,
                        SnapshotRetention::branch(None, None, None),
                    ),
                )
            })
            .and_then(|builder| builder.build())
            .map_err(|e| error(schema, "preparing the commit", e))?
            .metadata;
        let table = self
            .catalog
            .replace_metadata(table, next)
            .await
            .map_err(|e| error(schema, "committing", e))?;
        Ok((table, delete_files))
    }
}

/// The name prefix of the data files a batch writes.
const BATCH_PREFIX: &str = "mirror";

/// The last part of a file path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What one mirror snapshot holds besides the position.
struct Commit {
    data_files: Vec<DataFile>,
    delete_files: Vec<DataFile>,
    /// Whether the current snapshot's files stay (not after a truncate or a compaction).
    keep_current: bool,
    /// `overwrite` for a batch, `replace` for a compaction (same rows, other files).
    operation: Operation,
}

/// The error of a key column the Iceberg table lacks.
fn missing_key(schema: &TableSchema, name: &str) -> Error {
    Error::table(
        schema,
        format!("key column `{name}` is not in the Iceberg table"),
    )
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `data file path → size` of the table's current snapshot.
async fn data_file_sizes(table: &Table) -> iceberg::Result<HashMap<String, u64>> {
    let mut sizes = HashMap::new();
    for manifest in index::current_manifests(table).await?.unwrap_or_default() {
        let manifest = manifest.load_manifest(table.file_io()).await?;
        for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
            let file = entry.data_file();
            if file.content_type() == DataContentType::Data {
                sizes.insert(file.file_path().to_owned(), file.file_size_in_bytes());
            }
        }
    }
    Ok(sizes)
}

/// The keys each event needs, computed through Arrow in the table's own types: per event, the
/// key of its new row (inserts, updates) and of its old row (updates that carry one, deletes).
pub struct EventKeys {
    pub new: Vec<Option<String>>,
    pub old: Vec<Option<String>>,
}

/// A row that carries a key: (event, is the old row, cells, the old row an update's new row
/// falls back on for unchanged values).
type KeyRow<'a> = (usize, bool, &'a [Cell], Option<&'a [Cell]>);

fn event_keys(
    arrow: &arrow_schema::Schema,
    schema: &TableSchema,
    keys: &[usize],
    events: &[&ChangeEvent],
) -> Result<EventKeys> {
    use crate::base::event::Change;
    let mut rows: Vec<KeyRow<'_>> = Vec::new();
    for (e, event) in events.iter().enumerate() {
        match &event.change {
            Change::Insert { new } => rows.push((e, false, new, None)),
            Change::Update { old, new } => {
                rows.push((e, false, new, old.as_deref()));
                if let Some(old) = old {
                    rows.push((e, true, old, None));
                }
            }
            Change::Delete { old } => rows.push((e, true, old, None)),
            Change::Truncate => {}
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(keys.len());
    let mut fields = Vec::with_capacity(keys.len());
    for &k in keys {
        let column = &schema.columns[k];
        let field = arrow
            .field_with_name(&column.name)
            .map_err(|_| missing_key(schema, &column.name))?;
        let mut values = Vec::with_capacity(rows.len());
        for (_, _, cells, fallback) in &rows {
            let cell = match cells.get(k) {
                Some(Cell::Unchanged) => fallback.and_then(|old| old.get(k)),
                cell => cell,
            };
            match cell {
                Some(Cell::Unchanged) | None if cells.get(k).is_some() => {
                    return Err(Error::table(
                        schema,
                        format!(
                            "key column `{}` arrived as an unchanged TOAST value; mirror mode \
                             needs key values (set REPLICA IDENTITY FULL on the table)",
                            column.name
                        ),
                    ));
                }
                Some(cell) => values.push(cell.as_text()),
                None => values.push(None),
            }
        }
        let values = ColumnValues {
            type_oid: column.type_oid,
            values,
        };
        columns.push(
            array(&Kind::of_column(column), field.data_type(), &values)
                .map_err(|e| Error::table(schema, format!("key column `{}`: {e}", column.name)))?,
        );
        fields.push(field.clone());
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(arrow_schema::Schema::new(fields)),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(|e| Error::table(schema, e.to_string()))?;
    let texts = keys_of(&batch, &(0..keys.len()).collect::<Vec<_>>())
        .map_err(|e| error(schema, "formatting keys", e))?;
    let mut out = EventKeys {
        new: vec![None; events.len()],
        old: vec![None; events.len()],
    };
    for ((e, is_old, _, _), key) in rows.into_iter().zip(texts) {
        if is_old {
            out.old[e] = Some(key);
        } else {
            out.new[e] = Some(key);
        }
    }
    Ok(out)
}
