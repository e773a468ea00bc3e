//! The initial copy of one table inside a snapshot: the `COPY` statement (publication column
//! list and row filter, optional CTID range, every partition of a partitioned table) and the loop that moves its chunks into the
//! destination, reading the next chunk while the previous one is written.

use std::sync::Arc;

use super::destination::Destination;
use super::error::Error;
use super::source::ReplicationClient;
use crate::base::quote::quote_identifier;
use crate::base::schema::TableSchema;

/// Tables of at least this many pages (8 KiB each) are copied over several connections.
pub const PARALLEL_COPY_MIN_PAGES: u64 = 128;

/// A half-open range of heap pages; `end: None` reaches the end of the table (pages added
/// after the size was measured are included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// Splits `pages` into `parts` contiguous ranges, the last one open-ended.
pub fn split_pages(pages: u64, parts: u16) -> Vec<PageRange> {
    let parts = u64::from(parts.max(1));
    let step = pages.div_ceil(parts).max(1);
    (0..parts)
        .map(|i| PageRange {
            start: i * step,
            end: (i + 1 < parts).then_some((i + 1) * step),
        })
        .collect()
}

/// What a table's copy reads beyond its columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySource {
    /// The publication's `WHERE` expression for the table (PG 15+).
    pub row_filter: Option<String>,
    /// A partitioned table published via its root: `COPY table TO` refuses it, a query over it
    /// reads every partition (under the root's column list and row filter), which is what its
    /// stream carries too.
    pub partitioned: bool,
    /// Stored generated columns are replicated (PostgreSQL 18 publishes them): `COPY table (…)`
    /// refuses them, a query reads them.
    pub generated: bool,
}

/// `COPY … TO STDOUT` for the replicated columns of `schema`, limited by the publication's row
/// filter and an optional page range.
pub fn copy_statement(
    schema: &TableSchema,
    source: &CopySource,
    range: Option<PageRange>,
) -> String {
    let columns = schema
        .columns
        .iter()
        .map(|c| quote_identifier(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let table = schema.name.quoted();
    let mut conditions = Vec::new();
    if let Some(range) = range {
        conditions.push(format!("ctid >= '({},0)'::tid", range.start));
        if let Some(end) = range.end {
            conditions.push(format!("ctid < '({end},0)'::tid"));
        }
    }
    if let Some(filter) = &source.row_filter {
        conditions.push(format!("({filter})"));
    }
    if conditions.is_empty() && (source.partitioned || source.generated) {
        format!("COPY (SELECT {columns} FROM {table}) TO STDOUT")
    } else if conditions.is_empty() {
        format!("COPY {table} ({columns}) TO STDOUT")
    } else {
        format!(
            "COPY (SELECT {columns} FROM {table} WHERE {}) TO STDOUT",
            conditions.join(" AND ")
        )
    }
}

/// Runs `sql` on `client` and writes every chunk into `destination`; returns the rows copied.
/// `on_rows` is told each chunk's row count (progress, metrics).
pub async fn copy_into<D: Destination>(
    client: &mut ReplicationClient,
    sql: &str,
    schema: &Arc<TableSchema>,
    destination: &D,
    on_rows: &(dyn Fn(u64) + Send + Sync),
) -> Result<u64, Error> {
    let mut copy = client.copy_out(sql).await?;
    let mut total = 0u64;
    let mut next = copy.next_chunk().await?;
    while let Some(chunk) = next {
        let rows = chunk.row_count() as u64;
        let (read, written) = tokio::join!(
            copy.next_chunk(),
            destination.write_copy_rows(schema, chunk)
        );
        written?;
        total += rows;
        on_rows(rows);
        next = read?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName};

    fn schema() -> TableSchema {
        TableSchema {
            id: TableId(1),
            name: TableName::new("my schema", "Weird \"Name\""),
            columns: vec![ColumnSchema {
                name: "a b".into(),
                type_oid: 23,
                type_modifier: -1,
                nullable: true,
                primary_key_position: None,
                existing_rows_value: None,
            }],
            replica_identity: ReplicaIdentity::Default,
        }
    }

    #[test]
    fn copy_statements_quote_names_and_add_ranges_and_filters() {
        assert_eq!(
            copy_statement(&schema(), &CopySource::default(), None),
            r#"COPY "my schema"."Weird ""Name""" ("a b") TO STDOUT"#
        );
        let root = CopySource {
            partitioned: true,
            ..CopySource::default()
        };
        assert_eq!(
            copy_statement(&schema(), &root, None),
            r#"COPY (SELECT "a b" FROM "my schema"."Weird ""Name""") TO STDOUT"#
        );
        let range = PageRange {
            start: 10,
            end: Some(20),
        };
        assert_eq!(
            copy_statement(
                &schema(),
                &CopySource {
                    row_filter: Some("x > 1".into()),
                    ..CopySource::default()
                },
                Some(range)
            ),
            "COPY (SELECT \"a b\" FROM \"my schema\".\"Weird \"\"Name\"\"\" WHERE ctid >= \
             '(10,0)'::tid AND ctid < '(20,0)'::tid AND (x > 1)) TO STDOUT"
        );
    }

    #[test]
    fn page_ranges_cover_the_table_and_the_last_is_open() {
        let ranges = split_pages(1000, 3);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[1].start, ranges[0].end.unwrap());
        assert_eq!(ranges[2].start, ranges[1].end.unwrap());
        assert_eq!(ranges[2].end, None);
    }
}
