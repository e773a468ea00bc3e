//! Partitioned tables: the partition spec `iceberg.partition_by` gives a table ([`spec`],
//! [`described`]), and the data files of one write with one writer per partition ([`FileSet`]).
//! Partition values are computed by the `iceberg` crate's own transforms, so they are the values
//! every reader prunes by.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use iceberg::arrow::{PartitionValueCalculator, arrow_struct_to_literal};
use iceberg::spec::{
    DataFile, Literal, PartitionKey, PartitionSpec, Schema, SchemaRef, Struct, StructType,
    Transform, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::writer::{IcebergWriter as _, IcebergWriterBuilder as _};
use iceberg::{Error, ErrorKind, Result};

use super::{Writer, WriterBuilder};
use crate::config::iceberg::{PartitionExpr, PartitionTransform};

/// The partition spec of `exprs` over `schema`, checked against the columns' types (an error
/// names the expression and says what is wrong).
pub fn spec(schema: &Schema, exprs: &[PartitionExpr]) -> Result<UnboundPartitionSpec> {
    let mut builder = UnboundPartitionSpec::builder();
    for expr in exprs {
        let field = schema.field_by_name(&expr.column).ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!(
                    "partition `{expr}`: the table has no column `{}`",
                    expr.column
                ),
            )
        })?;
        let (transform, suffix) = match expr.transform {
            PartitionTransform::Identity => (Transform::Identity, ""),
            PartitionTransform::Year => (Transform::Year, "_year"),
            PartitionTransform::Month => (Transform::Month, "_month"),
            PartitionTransform::Day => (Transform::Day, "_day"),
            PartitionTransform::Hour => (Transform::Hour, "_hour"),
            PartitionTransform::Bucket(n) => (Transform::Bucket(n), "_bucket"),
            PartitionTransform::Truncate(w) => (Transform::Truncate(w), "_trunc"),
        };
        if transform.result_type(&field.field_type).is_err() {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!(
                    "partition `{expr}`: column `{}` is stored as Iceberg {}, which {} does not \
                     apply to",
                    expr.column, field.field_type, transform
                ),
            ));
        }
        builder = builder
            .add_partition_field(field.id, format!("{}{suffix}", expr.column), transform)
            .map_err(|e| Error::new(ErrorKind::DataInvalid, format!("partition `{expr}`: {e}")))?;
    }
    let spec = builder.build();
    // Binding checks what the builder cannot alone (e.g. a partition name that is a column's).
    spec.clone()
        .bind(Arc::new(schema.clone()))
        .map_err(|e| Error::new(ErrorKind::DataInvalid, format!("partition spec: {e}")))?;
    Ok(spec)
}

/// The table's partitioning as `partition_by` would write it (`["day(placed)"]`; empty when
/// unpartitioned), to compare with the configuration.
pub fn described(table: &Table) -> Vec<String> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|field| {
            let column = schema
                .name_by_field_id(field.source_id)
                .map_or_else(|| format!("<field {}>", field.source_id), str::to_owned);
            let transform = match field.transform {
                Transform::Identity => PartitionTransform::Identity,
                Transform::Year => PartitionTransform::Year,
                Transform::Month => PartitionTransform::Month,
                Transform::Day => PartitionTransform::Day,
                Transform::Hour => PartitionTransform::Hour,
                Transform::Bucket(n) => PartitionTransform::Bucket(n),
                Transform::Truncate(w) => PartitionTransform::Truncate(w),
                other => return format!("{other}({column})"),
            };
            PartitionExpr { column, transform }.to_string()
        })
        .collect()
}

/// The rows' partitioning: the table's default spec and how to compute its values.
struct Partitioner {
    spec: PartitionSpec,
    schema: SchemaRef,
    partition_type: StructType,
    calculator: PartitionValueCalculator,
}

/// The data files of one write (a copy, a batch, a compaction): rows go to the writer of their
/// partition, opened when the partition first appears. Optional row tags (mirror mode's keys)
/// come back in the order of the files' rows.
pub struct FileSet {
    builder: WriterBuilder,
    partitioner: Option<Partitioner>,
    /// One writer per partition, in order of first appearance, with the tags of its rows.
    writers: Vec<(Writer, Vec<String>)>,
    by_partition: HashMap<Struct, usize>,
}

impl FileSet {
    /// A file set writing `table`'s current schema under its default partition spec.
    pub fn new(builder: WriterBuilder, table: &Table) -> Result<FileSet> {
        let metadata = table.metadata();
        let spec = metadata.default_partition_spec().as_ref().clone();
        let partitioner = if spec.is_unpartitioned() {
            None
        } else {
            let schema = metadata.current_schema().clone();
            Some(Partitioner {
                partition_type: spec.partition_type(&schema)?,
                calculator: PartitionValueCalculator::try_new(&spec, &schema)?,
                spec,
                schema,
            })
        };
        Ok(FileSet {
            builder,
            partitioner,
            writers: Vec::new(),
            by_partition: HashMap::new(),
        })
    }

    /// Writes `batch`; `tags`, when given, holds one tag per row.
    pub async fn write(&mut self, batch: RecordBatch, tags: Option<Vec<String>>) -> Result<()> {
        if let Some(tags) = &tags
            && tags.len() != batch.num_rows()
        {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("{} tags for {} rows", tags.len(), batch.num_rows()),
            ));
        }
        let Some(partitioner) = &self.partitioner else {
            let at = self.writer(Struct::empty()).await?;
            return self.write_to(at, batch, tags).await;
        };
        let values = partitioner.calculator.calculate(&batch)?;
        let mut groups: Vec<(Struct, Vec<u32>)> = Vec::new();
        let mut group_of: HashMap<Struct, usize> = HashMap::new();
        for (row, value) in arrow_struct_to_literal(&values, &partitioner.partition_type)?
            .into_iter()
            .enumerate()
        {
            let Some(Literal::Struct(value)) = value else {
                return Err(Error::new(
                    ErrorKind::DataInvalid,
                    "a row has no partition value",
                ));
            };
            match group_of.get(&value) {
                Some(&g) => groups[g].1.push(row as u32),
                None => {
                    group_of.insert(value.clone(), groups.len());
                    groups.push((value, vec![row as u32]));
                }
            }
        }
        if groups.len() == 1 {
            let (value, _) = groups.remove(0);
            let at = self.writer(value).await?;
            return self.write_to(at, batch, tags).await;
        }
        for (value, rows) in groups {
            let picked =
                arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows.clone()))
                    .map_err(|e| {
                        Error::new(ErrorKind::Unexpected, "splitting rows by partition")
                            .with_source(e)
                    })?;
            let picked_tags = tags
                .as_ref()
                .map(|tags| rows.iter().map(|&r| tags[r as usize].clone()).collect());
            let at = self.writer(value).await?;
            self.write_to(at, picked, picked_tags).await?;
        }
        Ok(())
    }

    /// The index of the writer of partition `value`, opened if new.
    async fn writer(&mut self, value: Struct) -> Result<usize> {
        if let Some(&at) = self.by_partition.get(&value) {
            return Ok(at);
        }
        let key = self
            .partitioner
            .as_ref()
            .map(|p| PartitionKey::new(p.spec.clone(), p.schema.clone(), value.clone()));
        let writer = self.builder.build(key).await?;
        self.writers.push((writer, Vec::new()));
        self.by_partition.insert(value, self.writers.len() - 1);
        Ok(self.writers.len() - 1)
    }

    async fn write_to(
        &mut self,
        at: usize,
        batch: RecordBatch,
        tags: Option<Vec<String>>,
    ) -> Result<()> {
        let (writer, written_tags) = &mut self.writers[at];
        written_tags.extend(tags.into_iter().flatten());
        writer.write(batch).await
    }

    /// Closes every writer: the files written, and the tags of their rows in file order.
    pub async fn close(self) -> Result<(Vec<DataFile>, Vec<String>)> {
        let mut files = Vec::new();
        let mut tags = Vec::new();
        for (mut writer, written_tags) in self.writers {
            files.extend(writer.close().await?);
            tags.extend(written_tags);
        }
        Ok((files, tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName, TableSchema};
    use crate::base::values::oid;

    fn schema() -> Schema {
        let column = |name: &str, type_oid| ColumnSchema {
            name: name.to_owned(),
            type_oid,
            type_modifier: -1,
            nullable: true,
            primary_key_position: None,
            existing_rows_value: None,
        };
        let table = TableSchema {
            id: TableId(1),
            name: TableName::new("public", "t"),
            columns: vec![
                column("id", oid::INT4),
                column("placed", oid::TIMESTAMPTZ),
                column("doc", oid::JSONB),
            ],
            replica_identity: ReplicaIdentity::Default,
        };
        super::super::batch::table_schema(&table, false).expect("schema")
    }

    fn exprs(texts: &[&str]) -> Vec<PartitionExpr> {
        texts
            .iter()
            .map(|t| PartitionExpr::parse(t).expect("parses"))
            .collect()
    }

    #[test]
    fn specs_name_fields_after_column_and_transform() {
        let spec = spec(&schema(), &exprs(&["day(placed)", "bucket(8, id)", "doc"])).unwrap();
        let fields: Vec<(String, String)> = spec
            .fields()
            .iter()
            .map(|f| (f.name.clone(), f.transform.to_string()))
            .collect();
        assert_eq!(
            fields,
            [
                ("placed_day".to_owned(), "day".to_owned()),
                ("id_bucket".to_owned(), "bucket[8]".to_owned()),
                ("doc".to_owned(), "identity".to_owned()),
            ]
        );
    }

    #[test]
    fn a_missing_column_or_a_transform_the_type_lacks_is_named() {
        let missing = spec(&schema(), &exprs(&["day(placd)"])).unwrap_err();
        assert!(missing.message().contains("no column `placd`"), "{missing}");
        let wrong = spec(&schema(), &exprs(&["day(doc)"])).unwrap_err();
        assert!(
            wrong.message().contains("`day(doc)`") && wrong.message().contains("does not apply"),
            "{wrong}"
        );
    }
}
