//! Unit tests of the pgoutput decoder: one byte-literal case per message type, truncation vs
//! malformation, and property tests (arbitrary bytes never panic; encode → decode round-trips
//! through a small test-only encoder).

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn text(s: &str) -> TupleData {
    TupleData::Text(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn begin() {
    let bytes =
        b"B\x00\x00\x00\x01\x00\x00\x00\x10\x00\x02\xb8\x2c\xf9\x00\x00\x00\x00\x00\x02\xdd";
    assert_eq!(
        decode(bytes, false).unwrap(),
        PgOutputMessage::Begin {
            final_lsn: Lsn(0x1_0000_0010),
            commit_time: 0x0002_b82c_f900_0000,
            xid: 733,
        }
    );
}

#[test]
fn commit() {
    let mut bytes = vec![b'C', 0];
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x20]);
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x48]);
    bytes.extend_from_slice(&7i64.to_be_bytes());
    assert_eq!(
        decode(&bytes, false).unwrap(),
        PgOutputMessage::Commit {
            flags: 0,
            commit_lsn: Lsn(0x20),
            end_lsn: Lsn(0x48),
            commit_time: 7,
        }
    );
}

#[test]
fn origin() {
    let bytes = b"O\x00\x00\x00\x00\x00\x00\x00\x05node_a\x00";
    assert_eq!(
        decode(bytes, false).unwrap(),
        PgOutputMessage::Origin {
            lsn: Lsn(5),
            name: "node_a".into()
        }
    );
}

#[test]
fn relation_with_key_column() {
    let bytes = b"R\x00\x00\x40\x01public\x00items\x00d\x00\x02\
                  \x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff\
                  \x00label\x00\x00\x00\x04\x13\x00\x00\x00\x24";
    let message = decode(bytes, false).unwrap();
    assert_eq!(
        message,
        PgOutputMessage::Relation {
            xid: None,
            id: 0x4001,
            namespace: "public".into(),
            name: "items".into(),
            replica_identity: b'd',
            columns: vec![
                RelationColumn {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1
                },
                RelationColumn {
                    flags: 0,
                    name: "label".into(),
                    type_oid: 1043,
                    type_modifier: 36
                },
            ],
        }
    );
}

#[test]
fn relation_inside_a_stream_carries_the_xid() {
    let bytes = b"R\x00\x00\x00\x09\x00\x00\x40\x01s\x00t\x00f\x00\x00";
    assert_eq!(
        decode(bytes, true).unwrap(),
        PgOutputMessage::Relation {
            xid: Some(9),
            id: 0x4001,
            namespace: "s".into(),
            name: "t".into(),
            replica_identity: b'f',
            columns: vec![],
        }
    );
    // The same bytes outside a stream: the xid is read as the relation id and the rest no
    // longer fits.
    assert!(decode(bytes, false).is_err());
}

#[test]
fn type_message() {
    let bytes = b"Y\x00\x00\x60\x00public\x00mood\x00";
    assert_eq!(
        decode(bytes, false).unwrap(),
        PgOutputMessage::Type {
            xid: None,
            id: 0x6000,
            namespace: "public".into(),
            name: "mood".into()
        }
    );
}

#[test]
fn insert_with_every_column_kind() {
    let bytes = b"I\x00\x00\x40\x01N\x00\x04t\x00\x00\x00\x021\x00nub\x00\x00\x00\x02\xca\xfe";
    assert_eq!(
        decode(bytes, false).unwrap(),
        PgOutputMessage::Insert {
            xid: None,
            relation: 0x4001,
            new: vec![
                TupleData::Text(Bytes::from_static(b"1\x00")),
                TupleData::Null,
                TupleData::UnchangedToast,
                TupleData::Binary(Bytes::from_static(b"\xca\xfe")),
            ],
        }
    );
}

#[test]
fn update_without_old_tuple() {
    let bytes = b"U\x00\x00\x40\x01N\x00\x01t\x00\x00\x00\x01x";
    assert_eq!(
        decode(bytes, false).unwrap(),
        PgOutputMessage::Update {
            xid: None,
            relation: 0x4001,
            old: None,
            new: vec![text("x")]
        }
    );
}

#[test]
fn update_with_key_and_with_full_old_tuple() {
    let key = b"U\x00\x00\x40\x01K\x00\x02t\x00\x00\x00\x011nN\x00\x02t\x00\x00\x00\x012u";
    assert_eq!(
        decode(key, false).unwrap(),
        PgOutputMessage::Update {
            xid: None,
            relation: 0x4001,
            old: Some(OldTuple::Key(vec![text("1"), TupleData::Null])),
            new: vec![text("2"), TupleData::UnchangedToast],
        }
    );
    let full = b"U\x00\x00\x00\x07\x00\x00\x40\x01O\x00\x01t\x00\x00\x00\x00N\x00\x01n";
    assert_eq!(
        decode(full, true).unwrap(),
        PgOutputMessage::Update {
            xid: Some(7),
            relation: 0x4001,
            old: Some(OldTuple::Full(vec![text("")])),
            new: vec![TupleData::Null],
        }
    );
}

#[test]
fn delete_with_key_and_full() {
    let key = b"D\x00\x00\x40\x01K\x00\x01t\x00\x00\x00\x0242";
    assert_eq!(
        decode(key, false).unwrap(),
        PgOutputMessage::Delete {
            xid: None,
            relation: 0x4001,
            old: OldTuple::Key(vec![text("42")])
        }
    );
    let full = b"D\x00\x00\x40\x01O\x00\x00";
    assert_eq!(
        decode(full, false).unwrap(),
        PgOutputMessage::Delete {
            xid: None,
            relation: 0x4001,
            old: OldTuple::Full(vec![])
        }
    );
    let neither = b"D\x00\x00\x40\x01N\x00\x00";
    assert!(matches!(
        decode(neither, false),
        Err(DecodeError::Malformed { tag: b'D', .. })
    ));
}

#[test]
fn truncate_of_several_relations() {
    let bytes = b"T\x00\x00\x00\x02\x03\x00\x00\x40\x01\x00\x00\x40\x02";
    assert_eq!(
        decode(bytes, false).unwrap(),
        PgOutputMessage::Truncate {
            xid: None,
            options: 3,
            relations: vec![0x4001, 0x4002]
        }
    );
}

#[test]
fn logical_message() {
    let bytes = b"M\x01\x00\x00\x00\x00\x00\x00\x00\x09app\x00\x00\x00\x00\x03a\x00b";
    assert_eq!(
        decode(bytes, false).unwrap(),
        PgOutputMessage::Message {
            xid: None,
            transactional: true,
            lsn: Lsn(9),
            prefix: "app".into(),
            content: Bytes::from_static(b"a\x00b"),
        }
    );
}

#[test]
fn stream_messages() {
    assert_eq!(
        decode(b"S\x00\x00\x01\x00\x01", false).unwrap(),
        PgOutputMessage::StreamStart {
            xid: 256,
            first_segment: true
        }
    );
    assert_eq!(decode(b"E", false).unwrap(), PgOutputMessage::StreamStop);
    let mut commit = b"c\x00\x00\x01\x00\x00".to_vec();
    commit.extend_from_slice(&10u64.to_be_bytes());
    commit.extend_from_slice(&20u64.to_be_bytes());
    commit.extend_from_slice(&30i64.to_be_bytes());
    assert_eq!(
        decode(&commit, false).unwrap(),
        PgOutputMessage::StreamCommit {
            xid: 256,
            flags: 0,
            commit_lsn: Lsn(10),
            end_lsn: Lsn(20),
            commit_time: 30
        }
    );
    assert_eq!(
        decode(b"A\x00\x00\x01\x00\x00\x00\x01\x01", false).unwrap(),
        PgOutputMessage::StreamAbort {
            xid: 256,
            subxid: 257
        }
    );
    // Protocol v4 appends abort LSN and time.
    let mut v4 = b"A\x00\x00\x01\x00\x00\x00\x01\x01".to_vec();
    v4.extend_from_slice(&[0; 16]);
    assert!(decode(&v4, false).is_ok());
}

#[test]
fn truncated_input_is_reported_as_needing_more_bytes() {
    let full = b"I\x00\x00\x40\x01N\x00\x01t\x00\x00\x00\x05hello";
    for end in 0..full.len() {
        let err = decode(&full[..end], false).unwrap_err();
        assert!(err.is_truncated(), "prefix of {end} bytes: {err:?}");
    }
    assert!(decode(full, false).is_ok());
    let err = decode(b"I\x00\x00\x40\x01N\x00\x01t\x00\x00\x00\x05hel", false).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                tag: b'I',
                what: "column value",
                needed: 2,
                ..
            }
        ),
        "{err:?}"
    );
    // A string without its NUL terminator.
    assert!(
        decode(b"O\x00\x00\x00\x00\x00\x00\x00\x05node", false)
            .unwrap_err()
            .is_truncated()
    );
}

#[test]
fn malformed_input_is_distinct_from_truncation() {
    let cases: [(&[u8], &str); 7] = [
        (b"I\x00\x00\x40\x01X\x00\x00", "bad tuple marker"),
        (b"I\x00\x00\x40\x01N\x00\x01z", "bad column kind"),
        (b"I\x00\x00\x40\x01N\xff\xff", "negative column count"),
        (
            b"I\x00\x00\x40\x01N\x00\x01t\xff\xff\xff\xff",
            "negative length",
        ),
        (b"E\x00", "trailing byte"),
        (b"S\x00\x00\x00\x01\x07", "bad first-segment flag"),
        (
            b"O\x00\x00\x00\x00\x00\x00\x00\x05\xff\x00",
            "name not UTF-8",
        ),
    ];
    for (bytes, why) in cases {
        let err = decode(bytes, false).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed { .. }),
            "{why}: {err:?}"
        );
        assert!(!err.is_truncated(), "{why}");
    }
    assert_eq!(decode(b"", false), Err(DecodeError::Empty));
    assert_eq!(decode(b"Z", false), Err(DecodeError::UnknownTag(b'Z')));
}

#[test]
fn huge_counts_do_not_allocate() {
    // 32767 columns announced, none present: truncated, without reserving 32767 slots first.
    let err = decode(b"I\x00\x00\x40\x01N\x7f\xff", false).unwrap_err();
    assert!(err.is_truncated());
    let err = decode(b"T\x7f\xff\xff\xff\x00", false).unwrap_err();
    assert!(err.is_truncated());
}

#[test]
fn cells_keep_unchanged_toast_apart_from_null() {
    assert_eq!(TupleData::Null.into_cell().unwrap(), Cell::Null);
    assert_eq!(
        TupleData::UnchangedToast.into_cell().unwrap(),
        Cell::Unchanged
    );
    assert_eq!(text("é").into_cell().unwrap(), Cell::Text("é".into()));
    assert!(
        TupleData::Text(Bytes::from_static(b"\xff"))
            .into_cell()
            .is_err()
    );
    assert!(
        TupleData::Binary(Bytes::from_static(b"\x01"))
            .into_cell()
            .is_err()
    );
}

#[test]
fn decode_bytes_shares_the_input_buffer() {
    let input = Bytes::from_static(b"I\x00\x00\x40\x01N\x00\x01t\x00\x00\x00\x05hello");
    let PgOutputMessage::Insert { new, .. } = decode_bytes(&input, false).unwrap() else {
        panic!("not an insert");
    };
    let TupleData::Text(value) = &new[0] else {
        panic!("not text");
    };
    assert_eq!(value.as_ref(), b"hello");
    assert_eq!(value.as_ptr(), input[input.len() - 5..].as_ptr());
}

// ---------------------------------------------------------------------------------------------
// Property tests (the encoder is `super::encode`).

fn encode(message: &PgOutputMessage) -> Vec<u8> {
    let mut out = Vec::new();
    super::encode(message, None, &mut out);
    out
}

fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn value() -> impl Strategy<Value = TupleData> {
    prop_oneof![
        Just(TupleData::Null),
        Just(TupleData::UnchangedToast),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| TupleData::Text(b.into())),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| TupleData::Binary(b.into())),
    ]
}

fn tuple() -> impl Strategy<Value = Vec<TupleData>> {
    proptest::collection::vec(value(), 0..8)
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

/// A message and the `in_stream` flag it is decoded with.
fn message() -> impl Strategy<Value = (PgOutputMessage, bool)> {
    let xid = proptest::option::of(any::<u32>());
    let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| RelationColumn {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    );
    let data = prop_oneof![
        (
            xid.clone(),
            any::<u32>(),
            name(),
            name(),
            any::<u8>(),
            proptest::collection::vec(column, 0..6)
        )
            .prop_map(|(xid, id, namespace, name, replica_identity, columns)| {
                PgOutputMessage::Relation {
                    xid,
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                }
            }),
        (xid.clone(), any::<u32>(), name(), name()).prop_map(|(xid, id, namespace, name)| {
            PgOutputMessage::Type {
                xid,
                id,
                namespace,
                name,
            }
        }),
        (xid.clone(), any::<u32>(), tuple())
            .prop_map(|(xid, relation, new)| PgOutputMessage::Insert { xid, relation, new }),
        (
            xid.clone(),
            any::<u32>(),
            proptest::option::of(old_tuple()),
            tuple()
        )
            .prop_map(|(xid, relation, old, new)| PgOutputMessage::Update {
                xid,
                relation,
                old,
                new
            }),
        (xid.clone(), any::<u32>(), old_tuple())
            .prop_map(|(xid, relation, old)| PgOutputMessage::Delete { xid, relation, old }),
        (
            xid.clone(),
            any::<u8>(),
            proptest::collection::vec(any::<u32>(), 0..5)
        )
            .prop_map(|(xid, options, relations)| PgOutputMessage::Truncate {
                xid,
                options,
                relations
            }),
        (
            xid,
            any::<bool>(),
            lsn(),
            name(),
            proptest::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(|(xid, transactional, lsn, prefix, content)| {
                PgOutputMessage::Message {
                    xid,
                    transactional,
                    lsn,
                    prefix,
                    content: content.into(),
                }
            }),
    ]
    .prop_map(|message| {
        let in_stream = match &message {
            PgOutputMessage::Relation { xid, .. }
            | PgOutputMessage::Type { xid, .. }
            | PgOutputMessage::Insert { xid, .. }
            | PgOutputMessage::Update { xid, .. }
            | PgOutputMessage::Delete { xid, .. }
            | PgOutputMessage::Truncate { xid, .. }
            | PgOutputMessage::Message { xid, .. } => xid.is_some(),
            _ => false,
        };
        (message, in_stream)
    });
    let control = prop_oneof![
        (lsn(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
            PgOutputMessage::Begin {
                final_lsn,
                commit_time,
                xid,
            }
        }),
        (any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time)| {
                PgOutputMessage::Commit {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                }
            }
        ),
        (lsn(), name()).prop_map(|(lsn, name)| PgOutputMessage::Origin { lsn, name }),
        (any::<u32>(), any::<bool>())
            .prop_map(|(xid, first_segment)| PgOutputMessage::StreamStart { xid, first_segment }),
        Just(PgOutputMessage::StreamStop),
        (any::<u32>(), any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_time)| PgOutputMessage::StreamCommit {
                xid,
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            }
        ),
        (any::<u32>(), any::<u32>())
            .prop_map(|(xid, subxid)| PgOutputMessage::StreamAbort { xid, subxid }),
    ]
    .prop_map(|message| (message, false));
    prop_oneof![data, control]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), in_stream: bool) {
        let _ = decode(&bytes, in_stream);
        let _ = decode_bytes(&Bytes::from(bytes), in_stream);
    }

    #[test]
    fn a_known_tag_followed_by_noise_never_panics(
        tag in proptest::sample::select(b"BCORYIUDTMSEcA".to_vec()),
        rest in proptest::collection::vec(any::<u8>(), 0..120),
        in_stream: bool,
    ) {
        let mut bytes = vec![tag];
        bytes.extend(rest);
        let _ = decode(&bytes, in_stream);
    }

    #[test]
    fn encoded_messages_decode_to_themselves((message, in_stream) in message()) {
        let bytes = encode(&message);
        prop_assert_eq!(&decode(&bytes, in_stream).unwrap(), &message);
        prop_assert_eq!(&decode_bytes(&Bytes::from(bytes.clone()), in_stream).unwrap(), &message);
        // Every strict prefix is reported as truncated, never as a different message.
        for end in 0..bytes.len() {
            prop_assert!(decode(&bytes[..end], in_stream).is_err());
        }
    }
}
