//! Copy then stream of a multi-table publication, compared row by row with the source: every
//! supported type, weird identifiers, truncate, unchanged TOAST values, tables without a key.

use etl::base::event::{Cell, Change};
use etl::base::schema::TableName;

use crate::helpers::{Source, assert_each_event_once, dest_rows, public, wait_equal};

const TYPES_COLUMNS: &[&str] = &[
    "id", "b", "i2", "i4", "i8", "f4", "f8", "n", "n2", "t", "vc", "bp", "nm", "by", "u", "j",
    "jb", "d", "tm", "ttz", "ts", "tstz", "iv", "ip", "cd", "mac", "o", "m", "e", "dm", "ai", "at",
    "a2", "pt",
];

const TYPES_SETUP: &str = r#"
create type mood as enum ('sad', 'ok', 'happy');
create domain posint as integer check (value > 0);
create table all_types (
    id int primary key, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric,
    n2 numeric(10, 3), t text, vc varchar(20), bp char(5), nm name, "by" bytea, u uuid, j json,
    jb jsonb, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
    ip inet, cd cidr, mac macaddr, o oid, m money, e mood, dm posint, ai int4[], "at" text[],
    a2 int4[][], pt point
);
"#;

fn types_insert(from: i32) -> String {
    format!(
        r#"
insert into all_types values
 ({a}, true, -32768, 2147483647, -9223372036854775808, 'NaN', '-Infinity', 'NaN',
  1234567.125, e'tab\there\nnew line \\ backslash "quote" é 日本', 'varchar', 'ab',
  'a name', '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"a": [1, 2]}}',
  '{{"b": {{"c": null}}}}', '2024-02-29', '23:59:59.999999', '08:15:06+05:30',
  'infinity', '2024-02-29 08:15:06.5+02', '1 year 2 mons -3 days 04:05:06.789',
  '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 4294967295, '12.34', 'happy', 7,
  '{{1,NULL,3}}', '{{"a b","NULL",NULL,"q\"uote"}}', '{{{{1,2}},{{3,4}}}}', '(1.5,-2)'),
 ({b}, false, 0, 0, 0, 'Infinity', 1.5e-300, '-Infinity', -0.001, '', null, null, null,
  '\x', null, 'null', '[]', '-infinity', '00:00', '00:00+00', '1999-12-31 23:59:59',
  '-infinity', '0', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', 0, '-1.00', 'sad', 1, '{{}}', '{{}}',
  '{{}}', null),
 ({c}, null, null, null, null, null, null, 12345678901234567890.123456789, null, null,
  null, null, null, null, null, null, null, '0044-03-15 BC', null, null, null, null, null,
  null, null, null, null, null, null, null, null, null, null, null);
"#,
        a = from,
        b = from + 1,
        c = from + 2,
    )
}

#[tokio::test]
async fn every_type_is_copied_and_streamed_equal_to_the_source() {
    let source = Source::create("eng_types", "pub_types").await;
    source.exec(TYPES_SETUP).await;
    source.exec(&types_insert(1)).await;
    source
        .exec(
            "create table second (id bigint primary key, v text); \
               insert into second select g, 'v' || g from generate_series(1, 500) g; \
               create publication pub_types for table all_types, second",
        )
        .await;
    let (dest, running) = source.start_ready(2).await;
    let all_types = public("all_types");
    wait_equal(&source, &dest, &all_types, TYPES_COLUMNS).await;
    assert_eq!(dest.copied_rows(&all_types), 3);

    // Streaming: inserts, updates (key change too), deletes, over several transactions.
    source.exec(&types_insert(10)).await;
    source
        .exec(
            "update all_types set t = 'changed', ai = '{{9}}' where id = 1; \
               update all_types set id = 100 where id = 2; delete from all_types where id = 3; \
               begin; insert into second select g, 'x' from generate_series(501, 3500) g; \
               update second set v = 'u' || id where id % 7 = 0; \
               delete from second where id % 11 = 0; commit;",
        )
        .await;
    wait_equal(&source, &dest, &all_types, TYPES_COLUMNS).await;
    wait_equal(&source, &dest, &public("second"), &["id", "v"]).await;

    // Every streamed event has a distinct position, and its own LSN is not the commit's.
    let events = dest.events();
    assert_each_event_once(&dest);
    assert!(events.iter().all(|e| e.lsn < e.commit_lsn));
    running.stop().await;
    source.drop().await;
}

const WEIRD_COLUMNS: &[&str] = &["id", "ünï cødé", "a b"];

#[tokio::test]
async fn weird_identifiers_truncate_toast_and_keyless_tables_replicate() {
    let source = Source::create("eng_weird", "pub_weird").await;
    source
        .exec(
            r#"
create schema "my schema";
create table "my schema"."Weird ""Name""" (id int primary key, "ünï cødé" text, "a b" int);
insert into "my schema"."Weird ""Name""" values (1, 'ä', 1), (2, 'ö', 2);
create table toasty (id int primary key, big text, small int);
alter table toasty alter column big set storage external;
insert into toasty select 1, string_agg(md5(g::text), ''), 0 from generate_series(1, 4000) g;
create table nopk (a int, b text);
insert into nopk values (1, 'one'), (1, 'one'), (2, 'two');
create table fullid (a int, b text);
alter table fullid replica identity full;
insert into fullid values (1, 'one'), (2, 'two');
create publication pub_weird for table "my schema"."Weird ""Name""", toasty, nopk, fullid;
"#,
        )
        .await;
    let (dest, running) = source.start_ready(4).await;
    let weird = TableName::new("my schema", "Weird \"Name\"");
    let toasty = public("toasty");
    wait_equal(&source, &dest, &weird, WEIRD_COLUMNS).await;

    source
        .exec(
            r#"insert into "my schema"."Weird ""Name""" values (3, 'ü', 3);
                 update "my schema"."Weird ""Name""" set "a b" = 20 where id = 2;
                 update toasty set small = 1 where id = 1;
                 insert into nopk values (3, 'three');
                 update fullid set b = 'uno' where a = 1; delete from fullid where a = 2;"#,
        )
        .await;
    wait_equal(&source, &dest, &weird, WEIRD_COLUMNS).await;
    wait_equal(&source, &dest, &toasty, &["id", "big", "small"]).await;
    wait_equal(&source, &dest, &public("fullid"), &["a", "b"]).await;
    // The update of `small` did not send the TOASTed `big`: unchanged, not NULL.
    let toast_update = dest
        .events()
        .into_iter()
        .find(|e| e.table.name.name == "toasty")
        .expect("the toasty update was streamed");
    match toast_update.change {
        Change::Update { new, .. } => assert_eq!(new[1], Cell::Unchanged),
        other => panic!("expected an update, got {other:?}"),
    }
    // A table without a key gets its inserts (duplicates included).
    let mut nopk = dest_rows(&dest, "public", "nopk");
    nopk.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(nopk.len(), 4);
    assert_eq!(
        nopk.last().unwrap(),
        &vec![Cell::Text("3".into()), Cell::Text("three".into())]
    );

    // TRUNCATE empties the destination table; later inserts arrive.
    source
        .exec(
            r#"truncate "my schema"."Weird ""Name""", toasty;
                 insert into "my schema"."Weird ""Name""" values (7, 'after', 7);"#,
        )
        .await;
    wait_equal(&source, &dest, &weird, WEIRD_COLUMNS).await;
    wait_equal(&source, &dest, &toasty, &["id", "big", "small"]).await;
    running.stop().await;
    source.drop().await;
}

#[tokio::test]
async fn added_dropped_and_renamed_columns_reach_the_destination_before_the_next_row() {
    let source = Source::create("eng_alter", "pub_alter").await;
    source
        .exec(
            "create table evolving (id int primary key, a text, b int); \
               insert into evolving values (1, 'a', 1); \
               create publication pub_alter for table evolving",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    source
        .exec(
            "alter table evolving add column c timestamptz default '2024-01-01 00:00:00+00'; \
               insert into evolving values (2, 'b', 2, '2025-01-01 10:00:00+00'); \
               alter table evolving drop column b; insert into evolving values (3, 'c'); \
               alter table evolving rename column a to renamed; \
               update evolving set renamed = 'r' where id = 1;",
        )
        .await;
    wait_equal(&source, &dest, &public("evolving"), &["id", "renamed", "c"]).await;
    let schema = dest.schema(&public("evolving")).expect("schema");
    let names: Vec<_> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "renamed", "c"]);
    running.stop().await;
    source.drop().await;
}
