//! Sources of real Postgres values for the destination tests: a table holding every type, its
//! schema read from the catalog, its rows as COPY text, and change events built from rows.

use std::sync::Arc;

use etl::base::event::{Cell, Change, ChangeEvent, CopyChunk, Row};
use etl::base::lsn::Lsn;
use etl::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName, TableSchema};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolCopyExt, PgPoolOptions};
use sqlx::{PgPool, Row as _};

use crate::common::TestDatabase;

/// A pool whose sessions print values as the replication session does.
pub async fn source_pool(db: &TestDatabase) -> PgPool {
    let options: PgConnectOptions = db.options().options([
        ("TimeZone", "UTC"),
        ("DateStyle", "ISO"),
        ("IntervalStyle", "postgres"),
        ("extra_float_digits", "3"),
    ]);
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("connect to the test database")
}

pub async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A table with a column of every type the engine knows, and rows with their edge cases.
pub const ALL_TYPES: &str = r#"
create type mood as enum ('sad', 'ok', 'happy');
create domain posint as int4 check (value > 0);
create table all_types (
    id int4 primary key,
    b bool, i2 int2, i8 int8, f4 float4, f8 float8,
    n numeric, n2 numeric(12,2),
    t text, vc varchar(10), c char(3), nm name, ch "char",
    by bytea, u uuid, j json, jb jsonb,
    d date, tm time, ttz timetz, ts timestamp(3), tstz timestamptz, iv interval,
    ip inet, cd cidr, mac macaddr, mac8 macaddr8, o oid, m money,
    e mood, dom posint, x xml,
    ai int4[], at text[], a2 int4[], af float8[], an numeric[], ab bool[], aj jsonb[]
);
insert into all_types values
(1, true, 32767, 9223372036854775807, 1.1, 3.141592653589793, 12345678901234567890.123456789012345678901234567890,
 1.10, E'tab\there\nnewline \\ backslash "quote" ''single'' é 💡', 'varchar', 'ab', 'name', 'x',
 E'\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [1, 2.50], "b": 2}', '{"z": {"y": null}, "a": 12345678901234567890123}',
 '2024-02-29', '13:45:00.5', '13:45:00+05:30', '2024-02-29 13:45:06.123', '2024-02-29 13:45:06.5+02', '1 year 2 mons -3 days 04:05:06.7',
 '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', 4294967295, 1234.5,
 'happy', 7, '<a>x</a>',
 '{1,NULL,3}', '{"a b","c\"d",NULL,"NULL",""}', '{{1,2},{3,4}}', '{NaN,Infinity,-0,1e-300}', '{1.50,NaN}', '{t,f}', '{"{\"k\": 1}"}'),
(2, false, -32768, -9223372036854775808, 'NaN', '-Infinity', 'NaN',
 -0.01, '', 'x', 'a', '', 'y',
 E'\\x', '00000000-0000-0000-0000-000000000000', '[]', '"text"',
 '0044-03-15 BC', '24:00:00', '00:00:00-12', 'infinity', '-infinity', '-178000000 years',
 '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00', 0, -0.5,
 'sad', 1, '',
 '{}', '{}', '[0:1]={5,6}', '{}', '{Infinity,-Infinity}', '{}', '{}'),
(3, null, null, null, 'Infinity', 0, 'Infinity',
 null, null, null, null, null, null,
 null, null, 'null', null,
 'infinity', null, null, '294276-12-31 23:59:59.999', '4713-01-01 00:00:00+00 BC', null,
 null, null, null, null, null, null,
 null, null, null,
 null, '{NULL}', null, null, null, null, null),
(4, null, null, null, null, null, '-Infinity',
 null, null, null, null, null, null,
 null, null, null, null,
 null, null, null, null, null, null,
 null, null, null, null, null, null,
 null, null, null,
 null, null, null, null, null, null, null);
"#;

/// The replicated shape of `table` (a `regclass` text such as `public.all_types`), as the
/// engine reads it from the catalog.
pub async fn table_schema(pool: &PgPool, table: &str) -> TableSchema {
    let row = sqlx::query(
        "select c.oid::int8, n.nspname::text, c.relname::text, c.relreplident::text \
         from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = $1::regclass",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("table {table}: {e}"));
    let oid: i64 = row.get(0);
    let identity: String = row.get(3);
    let columns = sqlx::query(
        "select a.attname::text, a.atttypid::int8, a.atttypmod, not a.attnotnull, \
         (select array_position(i.indkey::int2[], a.attnum)::int4 from pg_index i \
          where i.indrelid = a.attrelid and i.indisprimary) \
         from pg_attribute a where a.attrelid = $1::regclass and a.attnum > 0 \
         and not a.attisdropped order by a.attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("read columns");
    TableSchema {
        id: TableId(oid as u32),
        name: TableName::new(row.get::<String, _>(1), row.get::<String, _>(2)),
        columns: columns
            .iter()
            .map(|c| ColumnSchema {
                name: c.get(0),
                type_oid: c.get::<i64, _>(1) as u32,
                type_modifier: c.get(2),
                nullable: c.get(3),
                primary_key_position: c.get::<Option<i32>, _>(4).map(|p| p as u16),
                existing_rows_value: None,
            })
            .collect(),
        replica_identity: ReplicaIdentity::from_code(identity.as_bytes()[0])
            .expect("replica identity"),
    }
}

/// `COPY (query) TO STDOUT` in text format, as one chunk.
pub async fn copy_chunk(pool: &PgPool, query: &str) -> CopyChunk {
    let sql = format!("COPY ({query}) TO STDOUT");
    let stream = pool.copy_out_raw(&sql).await.expect("copy out");
    let parts: Vec<bytes::Bytes> = stream.try_collect().await.expect("copy data");
    let data: Vec<u8> = parts.concat();
    let rows = data.iter().filter(|&&b| b == b'\n').count();
    CopyChunk::new(bytes::Bytes::from(data), rows)
}

/// The rows of `query` as cells of Postgres text output.
pub async fn rows(pool: &PgPool, query: &str, columns: usize) -> Vec<Row> {
    copy_chunk(pool, query)
        .await
        .rows(columns)
        .expect("decode rows")
}

pub fn text(value: &str) -> Cell {
    Cell::Text(value.to_owned())
}

/// A row from optional texts (`None` is NULL).
pub fn row(cells: &[Option<&str>]) -> Row {
    cells.iter().map(|c| c.map_or(Cell::Null, text)).collect()
}

/// A change of `table` at position `(commit_lsn, ordinal)`.
pub fn event(
    table: &Arc<TableSchema>,
    commit_lsn: u64,
    ordinal: u32,
    change: Change,
) -> ChangeEvent {
    ChangeEvent {
        table: Arc::clone(table),
        lsn: Lsn(commit_lsn - 8 + u64::from(ordinal) % 8),
        commit_lsn: Lsn(commit_lsn),
        xid: (commit_lsn / 16) as u32,
        commit_time: 786_000_000_000_000 + commit_lsn as i64,
        ordinal,
        change,
    }
}

pub fn insert(new: Row) -> Change {
    Change::Insert { new }
}

pub fn update(old: Option<Row>, new: Row) -> Change {
    Change::Update { old, new }
}

pub fn delete(old: Row) -> Change {
    Change::Delete { old }
}

/// A simple keyed table `(id int4 primary key, name text, note text)` schema, without a
/// database (for tests that build their own rows).
pub fn simple_table(
    oid: u32,
    schema: &str,
    name: &str,
    identity: ReplicaIdentity,
    keyed: bool,
) -> TableSchema {
    let column = |name: &str, type_oid: u32, key: Option<u16>| ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier: -1,
        nullable: key.is_none(),
        primary_key_position: key,
        existing_rows_value: None,
    };
    TableSchema {
        id: TableId(oid),
        name: TableName::new(schema, name),
        columns: vec![
            column("id", 23, keyed.then_some(1)),
            column("name", 25, None),
            column("note", 25, None),
        ],
        replica_identity: identity,
    }
}
