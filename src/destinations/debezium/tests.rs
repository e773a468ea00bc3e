//! The Debezium encoding against hand-checked JSON: every supported type, then each envelope.

use std::sync::Arc;

use super::*;
use crate::base::lsn::Lsn;
use crate::base::schema::{ColumnSchema, TableId, TableName};

fn column(name: &str, type_oid: u32, type_modifier: i32, key: Option<u16>) -> ColumnSchema {
    ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier,
        nullable: key.is_none(),
        primary_key_position: key,
        existing_rows_value: None,
    }
}

/// `(type oid, type modifier, Postgres text, expected JSON)`: each checked by hand.
const VALUES: &[(u32, i32, &str, &str)] = &[
    (16, -1, "t", "true"),
    (16, -1, "f", "false"),
    (21, -1, "-32768", "-32768"),
    (23, -1, "2147483647", "2147483647"),
    (20, -1, "9223372036854775807", "9223372036854775807"),
    (26, -1, "4294967295", "4294967295"),
    (700, -1, "1.1", "1.1"),
    (700, -1, "NaN", "\"NaN\""),
    (701, -1, "3.141592653589793", "3.141592653589793"),
    (701, -1, "-Infinity", "\"-Infinity\""),
    (701, -1, "1e-300", "1e-300"),
    (
        1700,
        -1,
        "12345678901234567890.123456789",
        "\"12345678901234567890.123456789\"",
    ),
    (1700, 786_438, "-0.01", "\"-0.01\""),
    (1700, -1, "NaN", "\"NaN\""),
    (790, -1, "$1,234.50", "\"$1,234.50\""),
    (
        25,
        -1,
        "tab\there \"q\" é 💡",
        "\"tab\\there \\\"q\\\" é 💡\"",
    ),
    (1043, 14, "varchar", "\"varchar\""),
    (17, -1, "\\x00ff10", "\"AP8Q\""),
    (17, -1, "\\x", "\"\""),
    (
        2950,
        -1,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"",
    ),
    (
        114,
        -1,
        "{\"b\": 1, \"b\": 2}",
        "\"{\\\"b\\\": 1, \\\"b\\\": 2}\"",
    ),
    (3802, -1, "[1, 2.50]", "\"[1, 2.50]\""),
    // date: days since 1970-01-01.
    (1082, -1, "2024-02-29", "19782"),
    (1082, -1, "1969-12-31", "-1"),
    (1082, -1, "infinity", "2147483647"),
    (1082, -1, "-infinity", "-2147483648"),
    // time: microseconds, or milliseconds for time(0..3).
    (1083, -1, "13:45:00.5", "49500500000"),
    (1083, 6, "13:45:00.5", "49500500000"),
    (1083, 3, "13:45:00.5", "49500500"),
    (1083, -1, "24:00:00", "86400000000"),
    // timetz: UTC text.
    (1266, -1, "13:45:00+05:30", "\"08:15:00Z\""),
    (1266, -1, "00:00:00.25-12", "\"12:00:00.25Z\""),
    // timestamp: microseconds, or milliseconds for timestamp(0..3).
    (1114, -1, "2024-02-29 13:45:06.123", "1709214306123000"),
    (1114, 3, "2024-02-29 13:45:06.123", "1709214306123"),
    (1114, -1, "1969-12-31 23:59:59.999999", "-1"),
    (1114, 3, "1969-12-31 23:59:59.999", "-1"),
    (1114, -1, "infinity", "9223372036854775807"),
    (1114, 3, "-infinity", "-9223372036854775808"),
    // timestamptz: UTC ISO-8601 text, fraction without trailing zeros.
    (
        1184,
        -1,
        "2024-02-29 13:45:06.5+02",
        "\"2024-02-29T11:45:06.5Z\"",
    ),
    (
        1184,
        -1,
        "2024-02-29 11:45:06+00",
        "\"2024-02-29T11:45:06Z\"",
    ),
    (
        1184,
        -1,
        "2000-01-01 00:00:00.000001+00",
        "\"2000-01-01T00:00:00.000001Z\"",
    ),
    (1184, -1, "infinity", "\"infinity\""),
    (1184, -1, "-infinity", "\"-infinity\""),
    // interval: microseconds, a month being 30.4375 days.
    (
        1186,
        -1,
        "1 year 2 mons -3 days +04:05:06.7",
        "36572706700000",
    ),
    (1186, -1, "00:00:01", "1000000"),
    (869, -1, "192.168.0.1/24", "\"192.168.0.1/24\""),
    (650, -1, "2001:db8::/32", "\"2001:db8::/32\""),
    (829, -1, "08:00:2b:01:02:03", "\"08:00:2b:01:02:03\""),
    (142, -1, "<a>x</a>", "\"<a>x</a>\""),
    // An enum or domain: an OID the value module does not know.
    (98_765, -1, "happy", "\"happy\""),
    // Arrays: the element mapping, nested, NULL elements as null, bounds dropped.
    (1007, -1, "{1,NULL,3}", "[1,null,3]"),
    (1007, -1, "{{1,2},{3,4}}", "[[1,2],[3,4]]"),
    (1007, -1, "[0:1]={5,6}", "[5,6]"),
    (1007, -1, "{}", "[]"),
    (
        1009,
        -1,
        "{\"a b\",\"c\\\"d\",NULL,\"NULL\",\"\"}",
        "[\"a b\",\"c\\\"d\",null,\"NULL\",\"\"]",
    ),
    (
        1022,
        -1,
        "{NaN,Infinity,-0,1.5}",
        "[\"NaN\",\"Infinity\",-0.0,1.5]",
    ),
    (1231, -1, "{1.50,NaN}", "[\"1.50\",\"NaN\"]"),
    (1182, -1, "{2024-02-29,NULL}", "[19782,null]"),
    (1115, 3, "{\"2024-02-29 13:45:06.123\"}", "[1709214306123]"),
    (
        2951,
        -1,
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]",
    ),
    (3807, -1, "{\"{\\\"k\\\": 1}\"}", "[\"{\\\"k\\\": 1}\"]"),
    (1000, -1, "{t,f}", "[true,false]"),
];

#[test]
fn every_supported_type_maps_as_debeziums_json_converter_writes_it() {
    for &(type_oid, typmod, text, expected) in VALUES {
        let json = values::value(&column("c", type_oid, typmod, None), text);
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            expected,
            "type {type_oid}({typmod}) `{text}`"
        );
    }
}

#[test]
fn unchanged_toast_values_are_debeziums_placeholder_in_the_columns_shape() {
    let cases = [
        (25, "\"__debezium_unavailable_value\""),
        (3802, "\"__debezium_unavailable_value\""),
        (17, "\"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==\""),
        (1009, "[\"__debezium_unavailable_value\"]"),
    ];
    for (type_oid, expected) in cases {
        let json = values::unavailable(&column("c", type_oid, -1, None));
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            expected,
            "{type_oid}"
        );
    }
}

fn orders(identity: ReplicaIdentity, keyed: bool) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId(16_384),
        name: TableName::new("public", "orders"),
        columns: vec![
            column("id", 23, -1, keyed.then_some(1)),
            column("total", 1700, -1, None),
            column("doc", 25, -1, None),
        ],
        replica_identity: identity,
    })
}

fn text(value: &str) -> Cell {
    Cell::Text(value.to_owned())
}

fn event(table: &Arc<TableSchema>, change: Change) -> ChangeEvent {
    ChangeEvent {
        table: Arc::clone(table),
        lsn: Lsn(0x1A2B3C8),
        commit_lsn: Lsn(0x1A2B400),
        xid: 747,
        // 2024-11-27 05:20:00.000999 UTC: `ts_ms` 1732684800000.
        commit_time: 786_000_000_000_999,
        ordinal: 3,
        change,
    }
}

fn encoder(tombstones: bool) -> Encoder {
    Encoder {
        format: Format::DebeziumJson,
        name: "shop".into(),
        db: "shopdb".into(),
        tombstones,
    }
}

const SOURCE: &str = "\"source\":{\"version\":\"0.1.0\",\"connector\":\"postgresql\",\"name\":\"shop\",\
    \"ts_ms\":1732684800000,\"snapshot\":\"false\",\"db\":\"shopdb\",\"schema\":\"public\",\
    \"table\":\"orders\",\"txId\":747,\"lsn\":27440072}";

fn value(message: &Message) -> String {
    String::from_utf8(message.value.clone().expect("not a tombstone")).unwrap()
}

#[test]
fn insert_update_delete_and_truncate_envelopes() {
    let table = orders(ReplicaIdentity::Default, true);
    let encoder = encoder(true);
    let row = vec![text("7"), text("19.90"), Cell::Null];

    let insert = encoder.change(&event(&table, Change::Insert { new: row.clone() }), 99);
    assert_eq!(insert.len(), 1);
    assert_eq!(insert[0].key.as_deref(), Some("{\"id\":7}"));
    assert_eq!(
        value(&insert[0]),
        format!(
            "{{\"before\":null,\"after\":{{\"id\":7,\"total\":\"19.90\",\"doc\":null}},{SOURCE},\
             \"op\":\"c\",\"ts_ms\":99}}"
        )
    );

    let toasted = vec![text("7"), text("20.00"), Cell::Unchanged];
    let update = encoder.change(
        &event(
            &table,
            Change::Update {
                old: None,
                new: toasted,
            },
        ),
        99,
    );
    assert_eq!(update.len(), 1);
    assert_eq!(
        value(&update[0]),
        format!(
            "{{\"before\":null,\"after\":{{\"id\":7,\"total\":\"20.00\",\
             \"doc\":\"__debezium_unavailable_value\"}},{SOURCE},\"op\":\"u\",\"ts_ms\":99}}"
        )
    );

    let old_key = vec![text("7"), Cell::Null, Cell::Null];
    let delete = encoder.change(&event(&table, Change::Delete { old: old_key }), 99);
    assert_eq!(delete.len(), 2, "a delete and its tombstone");
    assert_eq!(
        value(&delete[0]),
        format!("{{\"before\":{{\"id\":7}},\"after\":null,{SOURCE},\"op\":\"d\",\"ts_ms\":99}}")
    );
    assert_eq!(
        delete[1],
        Message {
            key: Some("{\"id\":7}".into()),
            value: None
        }
    );

    let truncate = encoder.change(&event(&table, Change::Truncate), 99);
    assert_eq!(truncate.len(), 1);
    assert_eq!(truncate[0].key, None);
    assert_eq!(
        value(&truncate[0]),
        format!("{{\"before\":null,\"after\":null,{SOURCE},\"op\":\"t\",\"ts_ms\":99}}")
    );
}

#[test]
fn a_delete_has_no_tombstone_when_tombstones_are_off() {
    let table = orders(ReplicaIdentity::Default, true);
    let old = vec![text("7"), Cell::Null, Cell::Null];
    let delete = encoder(false).change(&event(&table, Change::Delete { old }), 99);
    assert_eq!(delete.len(), 1);
    assert!(delete[0].value.is_some());
}

#[test]
fn an_update_of_the_key_is_a_delete_a_tombstone_and_a_create() {
    let table = orders(ReplicaIdentity::Default, true);
    let change = Change::Update {
        old: Some(vec![text("7"), Cell::Null, Cell::Null]),
        new: vec![text("8"), text("1"), text("x")],
    };
    let messages = encoder(true).change(&event(&table, change), 5);
    let keys: Vec<Option<&str>> = messages.iter().map(|m| m.key.as_deref()).collect();
    assert_eq!(
        keys,
        vec![Some("{\"id\":7}"), Some("{\"id\":7}"), Some("{\"id\":8}")]
    );
    assert!(value(&messages[0]).contains("\"before\":{\"id\":7},\"after\":null"));
    assert_eq!(messages[1].value, None);
    assert!(
        value(&messages[2])
            .starts_with("{\"before\":null,\"after\":{\"id\":8,\"total\":\"1\",\"doc\":\"x\"}")
    );
    assert!(value(&messages[2]).contains("\"op\":\"c\""));
}

#[test]
fn replica_identity_full_tables_carry_the_whole_old_row_and_no_key() {
    let table = orders(ReplicaIdentity::Full, false);
    let old = vec![text("1"), text("2.5"), text("a")];
    let change = Change::Update {
        old: Some(old.clone()),
        new: vec![text("1"), text("3.5"), text("a")],
    };
    let update = encoder(true).change(&event(&table, change), 5);
    assert_eq!(update.len(), 1);
    assert_eq!(update[0].key, None);
    assert!(value(&update[0]).starts_with(
        "{\"before\":{\"id\":1,\"total\":\"2.5\",\"doc\":\"a\"},\"after\":{\"id\":1,\"total\":\"3.5\",\"doc\":\"a\"}"
    ));
    let delete = encoder(true).change(&event(&table, Change::Delete { old }), 5);
    assert_eq!(delete.len(), 1, "no tombstone without a key");
    assert!(value(&delete[0]).contains("\"before\":{\"id\":1,\"total\":\"2.5\",\"doc\":\"a\"}"));
}

#[test]
fn copy_rows_are_snapshot_reads_without_a_position() {
    let table = orders(ReplicaIdentity::Default, true);
    let row = vec![text("7"), text("1.5"), text("d")];
    let read = encoder(true).read(&table, &row, 1_700_000_000_000);
    assert_eq!(read.key.as_deref(), Some("{\"id\":7}"));
    assert_eq!(
        value(&read),
        "{\"before\":null,\"after\":{\"id\":7,\"total\":\"1.5\",\"doc\":\"d\"},\"source\":{\
         \"version\":\"0.1.0\",\"connector\":\"postgresql\",\"name\":\"shop\",\
         \"ts_ms\":1700000000000,\"snapshot\":\"true\",\"db\":\"shopdb\",\"schema\":\"public\",\
         \"table\":\"orders\",\"txId\":null,\"lsn\":null},\"op\":\"r\",\"ts_ms\":1700000000000}"
    );
    let start = encoder(true).copy_start(&table, 1);
    assert!(value(&start).contains("\"snapshot\":\"true\""));
    assert!(value(&start).ends_with("\"op\":\"t\",\"ts_ms\":1}"));
}

#[test]
fn the_flat_json_format_is_the_jsonl_line_keyed_like_debezium() {
    let table = orders(ReplicaIdentity::Default, true);
    let encoder = Encoder {
        format: Format::Json,
        ..encoder(true)
    };
    let old = vec![text("7"), Cell::Null, Cell::Null];
    let messages = encoder.change(&event(&table, Change::Delete { old }), 5);
    assert_eq!(messages.len(), 1, "no tombstones in the flat format");
    assert_eq!(messages[0].key.as_deref(), Some("{\"id\":7}"));
    let line: serde_json::Value =
        serde_json::from_slice(messages[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(line["op"], "delete");
    assert_eq!(line["commit_lsn"], "0/1A2B400");
    assert_eq!(line["ordinal"], 3);
}
