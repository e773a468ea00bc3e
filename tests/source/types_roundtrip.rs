//! Every supported type, inserted with SQL, read back through COPY (`copy_out` +
//! `CopyChunk::rows`) and through a real pgoutput stream, must give the same text as Postgres's
//! own output (a simple query on a session with the same settings), parse with `types::parse`,
//! and agree with facts Postgres computes about the value (epoch, day count, hex, dims, …).

use std::collections::BTreeMap;
use std::time::Duration;

use etl::base::event::Cell;
use etl::base::values::{self as types, DateValue, TimestampValue, Value};
use etl::engine::source::{PgOutputMessage, PgOutputOptions, ReplicationMessage, SnapshotAction};

use crate::common::TestDatabase;
use crate::helpers::{connect, slot_name};

const COLUMNS: &[(&str, &str)] = &[
    ("c_bool", "bool"),
    ("c_int2", "int2"),
    ("c_int4", "int4"),
    ("c_int8", "int8"),
    ("c_float4", "float4"),
    ("c_float8", "float8"),
    ("c_numeric", "numeric"),
    ("c_text", "text"),
    ("c_varchar", "varchar(40)"),
    ("c_bpchar", "char(5)"),
    ("c_name", "name"),
    ("c_bytea", "bytea"),
    ("c_uuid", "uuid"),
    ("c_json", "json"),
    ("c_jsonb", "jsonb"),
    ("c_date", "date"),
    ("c_time", "time"),
    ("c_timetz", "timetz"),
    ("c_ts", "timestamp"),
    ("c_tstz", "timestamptz"),
    ("c_interval", "interval"),
    ("c_inet", "inet"),
    ("c_cidr", "cidr"),
    ("c_macaddr", "macaddr"),
    ("c_oid", "oid"),
    ("c_money", "money"),
    ("c_enum", "mood"),
    ("c_domain", "posint"),
    ("c_int_arr", "int4[]"),
    ("c_text_arr", "text[]"),
    ("c_tstz_arr", "timestamptz[]"),
    ("c_numeric_arr", "numeric[]"),
    ("c_bytea_arr", "bytea[]"),
];

const ROWS: &[&str] = &[
    r#"(1, true, -32768, 2147483647, -9223372036854775808, 'NaN', 'Infinity', 'NaN',
        E'tab\there\nnewline \\ backslash "quote" é✓ 🎉', 'varchar', 'ab', 'a_name',
        '\x00ff5c0a09', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, "t\tab"]}',
        '{"b": {"c": null}, "a": 1}', 'infinity', '24:00:00', '13:45:00-03:30', '-infinity',
        'infinity', '1 year 2 months -3 days 04:05:06.789', '192.168.1.5/24', '10.0.0.0/8',
        '08:00:2b:01:02:03', 4294967295, 1234.5, 'happy', 42, '{{1,2,3},{4,NULL,6}}',
        '{"a b","quote\"d","back\\slash",NULL,"NULL","",é}',
        '{infinity,"2024-01-01 00:00:00+00",NULL}', '{NaN,-1.50,Infinity}', '{"\\x00ff",NULL}')"#,
    r#"(2, false, 32767, -1, 0, 1.5, 3.141592653589793, '-123456789012345678901234567890.0000000001',
        '', 'x', 'abcde', 'n', '\x', '00000000-0000-0000-0000-000000000000', '[]', '"s"',
        '0044-03-15 BC', '13:45:06.123456', '00:00:00+05:30', '2024-02-29 13:45:06.5',
        '2024-02-29 13:45:06.5+05:30', '-00:00:01', '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff',
        0, -0.01, 'sad', 1, '[0:1]={7,8}', '{}', '{}', '{-Infinity}', '{}')"#,
    r#"(3, null, null, null, null, '-Infinity', '-0', '-Infinity', null, null, null, null, null,
        null, null, null, '2024-02-29', null, null, '0044-03-15 12:00:00 BC',
        '1999-12-31 23:59:59.999999-08', '178000000 years', null, null, null, null, null, null,
        null, '{{{1}},{{2}}}', null, null, null, null)"#,
];

/// SQL that computes facts about each row, checked against the parsed values.
const FACTS: &str = "select id,
    case when isfinite(c_date) then (c_date - date '2000-01-01')::text end,
    case when isfinite(c_ts) then ((extract(epoch from c_ts) - 946684800) * 1000000)::bigint::text end,
    case when isfinite(c_tstz) then ((extract(epoch from c_tstz) - 946684800) * 1000000)::bigint::text end,
    (extract(epoch from c_time) * 1000000)::bigint::text,
    (extract(year from c_interval) * 12 + extract(month from c_interval))::text,
    extract(day from c_interval)::text,
    ((extract(hour from c_interval) * 3600 + extract(minute from c_interval) * 60
      + extract(second from c_interval)) * 1000000)::bigint::text,
    encode(c_bytea, 'hex'), replace(c_uuid::text, '-', ''), host(c_inet), masklen(c_inet)::text,
    array_dims(c_int_arr), (select count(*) from unnest(c_int_arr) x where x is null)::text,
    array_dims(c_text_arr), c_bpchar::text, isfinite(c_date)::text, isfinite(c_tstz)::text
  from types_t order by id";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn dims_text(dims: &[usize], lower: &[i32]) -> Option<String> {
    if dims.is_empty() {
        return None;
    }
    Some(
        dims.iter()
            .zip(lower)
            .map(|(len, lb)| format!("[{lb}:{}]", *lb + *len as i32 - 1))
            .collect(),
    )
}

#[tokio::test]
async fn every_type_reads_back_identically_through_copy_and_pgoutput() {
    let db = TestDatabase::create("src_types").await;
    let pool = db.pool().await;
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, ty)| format!("{name} {ty}"))
        .collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create type mood as enum ('happy', 'sad');
         create domain posint as int4 check (value > 0);
         set lc_monetary = 'C';
         create table types_t (id int primary key, {});
         create publication types_pub for table types_t;",
        columns.join(", ")
    )))
    .execute(&pool)
    .await
    .unwrap();

    let mut streamer = connect(&db).await;
    let slot = slot_name("types");
    let created = streamer
        .create_slot(&slot, true, SnapshotAction::Nothing)
        .await
        .unwrap();
    let options = PgOutputOptions {
        publication_names: vec!["types_pub".into()],
        proto_version: 1,
        messages: false,
        streaming: false,
    };
    let mut stream = streamer
        .start_replication(&slot, created.consistent_point, &options)
        .await
        .unwrap();
    for row in ROWS {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "insert into types_t values {row}"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }

    // pgoutput: the Relation message gives the type OIDs, the Inserts the values.
    let mut type_oids = Vec::new();
    let mut streamed: Vec<Vec<Cell>> = Vec::new();
    while streamed.len() < ROWS.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let ReplicationMessage::XLogData { message, .. } = message else {
            continue;
        };
        match message {
            PgOutputMessage::Relation { columns, .. } => {
                type_oids = columns.iter().map(|c| c.type_oid).collect();
            }
            PgOutputMessage::Insert { new, .. } => streamed.push(
                new.into_iter()
                    .map(|value| value.into_cell().unwrap())
                    .collect(),
            ),
            _ => {}
        }
    }
    stream.finish().await.unwrap();
    assert_eq!(type_oids.len(), COLUMNS.len() + 1);

    // COPY and Postgres's own output on a session with the same settings.
    let mut reader = connect(&db).await;
    let mut copied = Vec::new();
    {
        let mut copy = reader
            .copy_out("COPY (select * from types_t order by id) TO STDOUT")
            .await
            .unwrap();
        while let Some(chunk) = copy.next_chunk().await.unwrap() {
            copied.extend(chunk.rows(COLUMNS.len() + 1).unwrap());
        }
    }
    let truth = reader
        .simple_query("select * from types_t order by id")
        .await
        .unwrap();
    let facts = reader.simple_query(FACTS).await.unwrap();
    assert_eq!(copied.len(), ROWS.len());

    for (row_index, truth_row) in truth.iter().enumerate() {
        for (col, expected) in truth_row.iter().enumerate() {
            let name = if col == 0 { "id" } else { COLUMNS[col - 1].0 };
            let expected = match expected {
                Some(text) => Cell::Text(text.clone()),
                None => Cell::Null,
            };
            assert_eq!(
                copied[row_index][col], expected,
                "COPY row {row_index} {name}"
            );
            assert_eq!(
                streamed[row_index][col], expected,
                "pgoutput row {row_index} {name}"
            );
        }
    }

    // Every value parses with its column's type.
    let parsed: Vec<BTreeMap<&str, Option<Value>>> = truth
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(col, text)| {
                    let name = if col == 0 { "id" } else { COLUMNS[col - 1].0 };
                    let value = text.as_ref().map(|text| {
                        types::parse(type_oids[col], text).unwrap_or_else(|e| panic!("{name}: {e}"))
                    });
                    (name, value)
                })
                .collect()
        })
        .collect();

    // Values checked directly.
    let first = &parsed[0];
    assert_eq!(first["c_bool"], Some(Value::Bool(true)));
    assert_eq!(first["c_int2"], Some(Value::Int2(i16::MIN)));
    assert_eq!(first["c_int8"], Some(Value::Int8(i64::MIN)));
    assert!(matches!(first["c_float4"], Some(Value::Float4(x)) if x.is_nan()));
    assert_eq!(first["c_float8"], Some(Value::Float8(f64::INFINITY)));
    assert_eq!(first["c_numeric"], Some(Value::Numeric("NaN".into())));
    assert_eq!(
        first["c_text"],
        Some(Value::Text(
            "tab\there\nnewline \\ backslash \"quote\" é✓ 🎉".into()
        ))
    );
    assert_eq!(first["c_enum"], Some(Value::Text("happy".into())));
    assert_eq!(first["c_domain"], Some(Value::Text("42".into())));
    assert_eq!(first["c_oid"], Some(Value::Oid(u32::MAX)));
    assert_eq!(
        first["c_macaddr"],
        Some(Value::MacAddr(vec![8, 0, 0x2b, 1, 2, 3]))
    );
    assert_eq!(
        first["c_int_arr"],
        Some(Value::Array {
            element_type: 23,
            dims: vec![2, 3],
            lower_bounds: vec![1, 1],
            elements: vec![
                Some(Value::Int4(1)),
                Some(Value::Int4(2)),
                Some(Value::Int4(3)),
                Some(Value::Int4(4)),
                None,
                Some(Value::Int4(6))
            ],
        })
    );
    let text = |s: &str| Some(Value::Text(s.into()));
    assert_eq!(
        first["c_text_arr"],
        Some(Value::Array {
            element_type: 25,
            dims: vec![7],
            lower_bounds: vec![1],
            elements: vec![
                text("a b"),
                text("quote\"d"),
                text("back\\slash"),
                None,
                text("NULL"),
                text(""),
                text("é")
            ],
        })
    );
    let Some(Value::Array { elements, .. }) = &first["c_tstz_arr"] else {
        panic!("{:?}", first["c_tstz_arr"]);
    };
    assert!(matches!(
        elements.as_slice(),
        [
            Some(Value::TimestampTz {
                value: TimestampValue::Infinity,
                ..
            }),
            Some(Value::TimestampTz {
                value: TimestampValue::Micros(757_382_400_000_000),
                ..
            }),
            None
        ]
    ));
    assert_eq!(parsed[1]["c_float4"], Some(Value::Float4(1.5)));
    assert_eq!(
        parsed[1]["c_float8"],
        Some(Value::Float8(std::f64::consts::PI))
    );
    assert_eq!(parsed[1]["c_bytea"], Some(Value::Bytea(vec![])));
    assert_eq!(parsed[2]["c_float8"], Some(Value::Float8(-0.0)));
    assert_eq!(
        parsed[2]["c_numeric"],
        Some(Value::Numeric("-Infinity".into()))
    );

    // Values checked against facts Postgres computes.
    for (row, fact) in parsed.iter().zip(&facts) {
        let fact = |i: usize| fact[i].clone();
        let id = format!("{:?}", row["id"]);
        match &row["c_date"] {
            Some(Value::Date {
                value: DateValue::Days(days),
                ..
            }) => {
                assert_eq!(Some(days.to_string()), fact(1), "date {id}");
            }
            Some(Value::Date { .. }) => assert_eq!(fact(16).as_deref(), Some("false")),
            None => assert_eq!(fact(1), None),
            other => panic!("{other:?}"),
        }
        for (column, index) in [("c_ts", 2), ("c_tstz", 3)] {
            match &row[column] {
                Some(Value::Timestamp { value, .. }) | Some(Value::TimestampTz { value, .. }) => {
                    match value {
                        TimestampValue::Micros(micros) => {
                            assert_eq!(Some(micros.to_string()), fact(index), "{column} {id}")
                        }
                        _ => assert_eq!(fact(index), None, "{column} {id} is infinite"),
                    }
                }
                None => assert_eq!(fact(index), None),
                other => panic!("{other:?}"),
            }
        }
        if let Some(Value::Time { micros, .. }) = &row["c_time"] {
            assert_eq!(Some(micros.to_string()), fact(4), "time {id}");
        }
        if let Some(Value::Interval {
            months,
            days,
            micros,
            ..
        }) = &row["c_interval"]
        {
            assert_eq!(Some(months.to_string()), fact(5), "interval months {id}");
            assert_eq!(Some(days.to_string()), fact(6), "interval days {id}");
            assert_eq!(Some(micros.to_string()), fact(7), "interval micros {id}");
        }
        match &row["c_bytea"] {
            Some(Value::Bytea(bytes)) => assert_eq!(Some(hex(bytes)), fact(8)),
            None => assert_eq!(fact(8), None),
            other => panic!("{other:?}"),
        }
        if let Some(Value::Uuid(bytes)) = &row["c_uuid"] {
            assert_eq!(Some(hex(bytes)), fact(9));
        }
        if let Some(Value::Inet { addr, prefix }) = &row["c_inet"] {
            assert_eq!(Some(addr.to_string()), fact(10));
            assert_eq!(Some(prefix.to_string()), fact(11));
        }
        if let Some(Value::Array {
            dims,
            lower_bounds,
            elements,
            ..
        }) = &row["c_int_arr"]
        {
            assert_eq!(dims_text(dims, lower_bounds), fact(12), "int[] dims {id}");
            let nulls = elements.iter().filter(|e| e.is_none()).count();
            assert_eq!(Some(nulls.to_string()), fact(13));
        }
        if let Some(Value::Array {
            dims, lower_bounds, ..
        }) = &row["c_text_arr"]
        {
            assert_eq!(dims_text(dims, lower_bounds), fact(14), "text[] dims {id}");
        }
        if let Some(Value::Text(bpchar)) = &row["c_bpchar"] {
            assert_eq!(bpchar.len(), 5, "char(5) keeps its padding");
            assert_eq!(Some(bpchar.trim_end().to_owned()), fact(15));
        }
    }
    db.drop_database().await;
}
