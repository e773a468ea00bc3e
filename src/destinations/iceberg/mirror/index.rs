//! Where each key's row lives in a mirror table: `key → (data file, row position)` for every
//! live row of the table's current snapshot, built by reading the key columns of its data files
//! and the (file, position) pairs of its position-delete files, then kept up to date by each
//! commit. Keys are the key columns' values as text (Arrow's display of the table's own types,
//! so a key read back from a file equals the key of the event that wrote it).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use futures_util::{TryStreamExt, stream};
use iceberg::scan::FileScanTask;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, ManifestFile, NestedField, PrimitiveType, Schema,
    SchemaRef, Struct, Type,
};
use iceberg::table::Table;
use iceberg::{Error, ErrorKind, Result};

/// Field id of a position-delete file's `file_path` column (fixed by the Iceberg spec).
pub const DELETE_FILE_PATH_ID: i32 = 2_147_483_546;
/// Field id of a position-delete file's `pos` column (fixed by the Iceberg spec).
pub const DELETE_POS_ID: i32 = 2_147_483_545;

/// A row of a data file (8 bytes: the index is held for every row of a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    /// Index into [`KeyIndex::files`].
    pub file: u32,
    /// Row position in the file (a data file of `target_file_bytes` holds far fewer than 2³²).
    pub pos: u32,
}

/// A data file rows live in: its path and its partition (a position delete of its rows is
/// written to a delete file of the same partition).
#[derive(Debug, Clone, PartialEq)]
pub struct FileOf {
    pub path: String,
    /// The partition spec the file was written under.
    pub spec_id: i32,
    /// The file's partition values (empty when unpartitioned).
    pub partition: Struct,
    /// Rows in the file.
    pub rows: usize,
}

impl FileOf {
    /// An unpartitioned file of `rows` rows (tests).
    #[cfg(test)]
    pub fn unpartitioned(path: &str, rows: usize) -> FileOf {
        FileOf {
            path: path.to_owned(),
            spec_id: 0,
            partition: Struct::empty(),
            rows,
        }
    }

    fn of(file: &DataFile, spec_id: i32) -> FileOf {
        FileOf {
            path: file.file_path().to_owned(),
            spec_id,
            partition: file.partition().clone(),
            rows: file.record_count() as usize,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct KeyIndex {
    /// The snapshot the index describes (`None`: a table without snapshots); an index whose
    /// snapshot is not the table's current one is read again.
    pub snapshot: Option<i64>,
    /// The data files rows live in (indexed by [`Loc::file`]).
    pub files: Vec<FileOf>,
    /// The live row of each key.
    rows: HashMap<Box<str>, Loc>,
    /// Further live rows of keys held more than once (a table without a key that holds
    /// identical rows); kept apart so the common case costs one `Loc` per key.
    more: HashMap<Box<str>, Vec<Loc>>,
}

impl KeyIndex {
    /// An empty index of `snapshot`.
    pub fn empty(snapshot: Option<i64>) -> KeyIndex {
        KeyIndex {
            snapshot,
            ..KeyIndex::default()
        }
    }

    /// Takes one row of `key` out of the index (the row is about to be deleted).
    pub fn take(&mut self, key: &str) -> Option<Loc> {
        if let Some(more) = self.more.get_mut(key) {
            let loc = more.pop();
            if more.is_empty() {
                self.more.remove(key);
            }
            if loc.is_some() {
                return loc;
            }
        }
        self.rows.remove(key)
    }

    fn insert(&mut self, key: String, loc: Loc) {
        match self.rows.entry(key.into_boxed_str()) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(loc);
            }
            std::collections::hash_map::Entry::Occupied(occupied) => {
                self.more
                    .entry(occupied.key().clone())
                    .or_default()
                    .push(loc);
            }
        }
    }

    /// Forgets every row (a truncate).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.more.clear();
        self.files.clear();
    }

    /// Records the rows of a new data file: `keys[i]` is at position `i`.
    pub fn add_file(&mut self, of: FileOf, keys: impl IntoIterator<Item = String>) {
        let file = self.files.len() as u32;
        self.files.push(of);
        for (pos, key) in keys.into_iter().enumerate() {
            self.insert(
                key,
                Loc {
                    file,
                    pos: pos as u32,
                },
            );
        }
    }

    /// Records the rows of new data files ([`written`]): `keys` in file order, row by row.
    pub fn add_files(&mut self, files: Vec<FileOf>, keys: Vec<String>) {
        let mut keys = keys.into_iter();
        for of in files {
            let rows = of.rows;
            self.add_file(of, keys.by_ref().take(rows));
        }
    }

    /// Number of live rows.
    pub fn len(&self) -> usize {
        self.rows.len() + self.more.values().map(Vec::len).sum::<usize>()
    }

    /// Reads the index of `table`'s current snapshot; `key_ids` are the key columns' field ids
    /// in the current schema.
    pub async fn load(table: &Table, key_ids: &[i32]) -> Result<KeyIndex> {
        let mut index = KeyIndex::empty(table.metadata().current_snapshot_id());
        let Some(manifests) = current_manifests(table).await? else {
            return Ok(index);
        };
        let mut data = Vec::new();
        let mut deletes = Vec::new();
        for manifest in &manifests {
            let spec_id = manifest.partition_spec_id;
            let manifest = manifest.load_manifest(table.file_io()).await?;
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                let file = entry.data_file();
                match file.content_type() {
                    DataContentType::Data => {
                        data.push((FileOf::of(file, spec_id), file.file_size_in_bytes()))
                    }
                    DataContentType::PositionDeletes => {
                        deletes.push((file.file_path().to_owned(), file.file_size_in_bytes()))
                    }
                    DataContentType::EqualityDeletes => {
                        return Err(Error::new(
                            ErrorKind::FeatureUnsupported,
                            format!(
                                "the table holds an equality-delete file ({}) written by another \
                                 engine; mirror mode reads position deletes only (rewrite the \
                                 table's data files with your engine, then restart etl)",
                                file.file_path()
                            ),
                        ));
                    }
                }
            }
        }
        let mut deleted: HashMap<String, HashSet<u64>> = HashMap::new();
        let delete_schema = Arc::new(delete_schema()?);
        for (path, size) in deletes {
            let batches = read_file(
                table,
                &path,
                size,
                delete_schema.clone(),
                vec![DELETE_FILE_PATH_ID, DELETE_POS_ID],
            )
            .await?;
            for batch in batches {
                let (Some(paths), Some(positions)) = (
                    batch.column(0).as_any().downcast_ref::<StringArray>(),
                    batch.column(1).as_any().downcast_ref::<Int64Array>(),
                ) else {
                    return Err(Error::new(
                        ErrorKind::DataInvalid,
                        format!("position-delete file {path} has unexpected column types"),
                    ));
                };
                for (file, pos) in paths.iter().zip(positions.iter()) {
                    if let (Some(file), Some(pos)) = (file, pos) {
                        deleted
                            .entry(file.to_owned())
                            .or_default()
                            .insert(pos as u64);
                    }
                }
            }
        }
        let schema = table.metadata().current_schema().clone();
        for (of, size) in data {
            let path = &of.path;
            let records = of.rows as u64;
            let batches = read_file(table, path, size, schema.clone(), key_ids.to_vec()).await?;
            let mut keys = Vec::with_capacity(records as usize);
            for batch in &batches {
                keys.extend(keys_of(
                    batch,
                    &(0..batch.num_columns()).collect::<Vec<_>>(),
                )?);
            }
            if keys.len() as u64 != records || records > u64::from(u32::MAX) {
                return Err(Error::new(
                    ErrorKind::DataInvalid,
                    format!(
                        "data file {path} holds {} rows, its manifest says {records} (at most \
                         2^32 rows per file are supported)",
                        keys.len()
                    ),
                ));
            }
            let gone = deleted.remove(path).unwrap_or_default();
            let file = index.files.len() as u32;
            index.files.push(of);
            for (pos, key) in keys.into_iter().enumerate() {
                if !gone.contains(&(pos as u64)) {
                    index.insert(
                        key,
                        Loc {
                            file,
                            pos: pos as u32,
                        },
                    );
                }
            }
        }
        Ok(index)
    }
}

/// What [`KeyIndex::add_files`] needs of `files` (written under the partition spec `spec_id`)
/// once they are committed.
pub fn written(files: &[DataFile], spec_id: i32) -> Vec<FileOf> {
    files.iter().map(|file| FileOf::of(file, spec_id)).collect()
}

/// The manifests of `table`'s current snapshot; `None` for a table without snapshots.
pub async fn current_manifests(table: &Table) -> Result<Option<Vec<ManifestFile>>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(None);
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    Ok(Some(list.entries().to_vec()))
}

/// The schema of a position-delete file.
pub fn delete_schema() -> Result<Schema> {
    Schema::builder()
        .with_fields(vec![
            Arc::new(NestedField::required(
                DELETE_FILE_PATH_ID,
                "file_path",
                Type::Primitive(PrimitiveType::String),
            )),
            Arc::new(NestedField::required(
                DELETE_POS_ID,
                "pos",
                Type::Primitive(PrimitiveType::Long),
            )),
        ])
        .build()
}

/// Every row of the Parquet file `path` (no deletes applied), as the fields `field_ids` of
/// `schema` (columns the file lacks read as null, narrower types are widened).
pub async fn read_file(
    table: &Table,
    path: &str,
    size: u64,
    schema: SchemaRef,
    field_ids: Vec<i32>,
) -> Result<Vec<RecordBatch>> {
    let task = FileScanTask::builder()
        .with_file_size_in_bytes(size)
        .with_start(0)
        .with_length(size)
        .with_data_file_path(path.to_owned())
        .with_data_file_format(DataFileFormat::Parquet)
        .with_schema(schema)
        .with_project_field_ids(field_ids)
        .with_case_sensitive(true)
        .build();
    let reader = table
        .reader_builder()
        .with_row_group_filtering_enabled(false)
        .build();
    reader
        .read(Box::pin(stream::iter([Ok(task)])))?
        .stream()
        .try_collect()
        .await
}

/// The key of each row of `batch`: the text of the columns `columns`, joined.
pub fn keys_of(batch: &RecordBatch, columns: &[usize]) -> Result<Vec<String>> {
    let options = FormatOptions::default().with_null("\u{0}");
    let formatters = columns
        .iter()
        .map(|&c| ArrayFormatter::try_new(batch.column(c).as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::new(ErrorKind::DataInvalid, "cannot format a key").with_source(e))?;
    let mut keys = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut key = String::new();
        for (i, formatter) in formatters.iter().enumerate() {
            if i > 0 {
                key.push('\u{1f}');
            }
            use std::fmt::Write as _;
            write!(key, "{}", formatter.value(row)).map_err(|e| {
                Error::new(ErrorKind::DataInvalid, "cannot format a key").with_source(e)
            })?;
        }
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_a_repeated_key_leaves_the_other_rows() {
        let mut index = KeyIndex::default();
        index.add_file(
            FileOf::unpartitioned("a", 3),
            ["1".to_owned(), "2".to_owned(), "1".to_owned()],
        );
        assert_eq!(index.len(), 3);
        assert_eq!(index.take("1"), Some(Loc { file: 0, pos: 2 }));
        assert_eq!(index.take("1"), Some(Loc { file: 0, pos: 0 }));
        assert_eq!(index.take("1"), None);
        assert_eq!(index.len(), 1);
        index.clear();
        assert_eq!(index.take("2"), None);
    }

    #[test]
    fn keys_join_columns_and_tell_null_from_empty() {
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int64Array::from(vec![Some(1), None])) as arrow_array::ArrayRef,
            ),
            (
                "b",
                Arc::new(StringArray::from(vec![Some(""), Some("")])) as arrow_array::ArrayRef,
            ),
        ])
        .expect("batch");
        let keys = keys_of(&batch, &[0, 1]).expect("keys");
        assert_eq!(keys, vec!["1\u{1f}".to_owned(), "\u{0}\u{1f}".to_owned()]);
    }
}
