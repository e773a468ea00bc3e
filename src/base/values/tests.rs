//! Unit tests of the text forms that are easy to get wrong.

use std::net::IpAddr;

use proptest::prelude::*;

use super::oid::*;
use super::*;

fn text(s: &str) -> Option<Value> {
    Some(Value::Text(s.to_owned()))
}

#[test]
fn scalars() {
    assert_eq!(parse(BOOL, "t").unwrap(), Value::Bool(true));
    assert_eq!(parse(BOOL, "f").unwrap(), Value::Bool(false));
    assert!(parse(BOOL, "yes").is_err());
    assert_eq!(parse(INT2, "-32768").unwrap(), Value::Int2(i16::MIN));
    assert!(parse(INT2, "32768").is_err());
    assert_eq!(
        parse(INT8, "9223372036854775807").unwrap(),
        Value::Int8(i64::MAX)
    );
    assert_eq!(parse(OID, "4294967295").unwrap(), Value::Oid(u32::MAX));
    assert_eq!(parse(TEXT, "").unwrap(), Value::Text(String::new()));
    assert_eq!(
        parse(12345, "happy").unwrap(),
        Value::Text("happy".into()),
        "enum → text"
    );
    assert_eq!(
        parse(MONEY, "$1,234.50").unwrap(),
        Value::Money("$1,234.50".into())
    );
}

#[test]
fn floats_with_nan_and_infinities() {
    assert!(matches!(parse(FLOAT8, "NaN").unwrap(), Value::Float8(x) if x.is_nan()));
    assert_eq!(
        parse(FLOAT8, "Infinity").unwrap(),
        Value::Float8(f64::INFINITY)
    );
    assert_eq!(
        parse(FLOAT4, "-Infinity").unwrap(),
        Value::Float4(f32::NEG_INFINITY)
    );
    assert_eq!(parse(FLOAT8, "1.5e-300").unwrap(), Value::Float8(1.5e-300));
    assert_eq!(
        parse(FLOAT4, "3.4028235e+38").unwrap(),
        Value::Float4(f32::MAX)
    );
    assert!(parse(FLOAT8, "inf").is_err(), "not Postgres's spelling");
}

#[test]
fn numeric_keeps_its_exact_text() {
    for ok in [
        "0",
        "-12.340",
        "123456789012345678901234567890.000000000000000001",
        "NaN",
        "Infinity",
        "-Infinity",
        ".5",
        "5.",
    ] {
        assert_eq!(
            parse(NUMERIC, ok).unwrap(),
            Value::Numeric(ok.into()),
            "{ok}"
        );
    }
    for bad in ["", "-", "1.2.3", "abc", "1e", "nan"] {
        assert!(parse(NUMERIC, bad).is_err(), "{bad}");
    }
}

#[test]
fn bytea_hex_and_escape_forms() {
    assert_eq!(parse(BYTEA, "\\x").unwrap(), Value::Bytea(vec![]));
    assert_eq!(
        parse(BYTEA, "\\x00ff7F").unwrap(),
        Value::Bytea(vec![0, 255, 127])
    );
    assert_eq!(
        parse(BYTEA, "a\\\\b\\000\\377").unwrap(),
        Value::Bytea(b"a\\b\x00\xff".to_vec())
    );
    assert!(parse(BYTEA, "\\x0").is_err());
    assert!(parse(BYTEA, "\\xzz").is_err());
    assert!(parse(BYTEA, "\\400").is_err());
}

#[test]
fn uuid_json_network_and_mac() {
    assert_eq!(
        parse(UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap(),
        Value::Uuid([
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11
        ])
    );
    assert!(parse(UUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11").is_err());
    assert_eq!(
        parse(JSONB, r#"{"a": [1, null]}"#).unwrap(),
        Value::Json(r#"{"a": [1, null]}"#.into())
    );
    assert!(parse(JSON, "{nope").is_err());
    assert_eq!(
        parse(INET, "192.168.0.1").unwrap(),
        Value::Inet {
            addr: "192.168.0.1".parse::<IpAddr>().unwrap(),
            prefix: 32
        }
    );
    assert_eq!(
        parse(CIDR, "2001:db8::/32").unwrap(),
        Value::Cidr {
            addr: "2001:db8::".parse::<IpAddr>().unwrap(),
            prefix: 32
        }
    );
    assert!(parse(INET, "10.0.0.1/33").is_err());
    assert_eq!(
        parse(MACADDR, "08:00:2b:01:02:03").unwrap(),
        Value::MacAddr(vec![8, 0, 0x2b, 1, 2, 3])
    );
    assert_eq!(
        parse(MACADDR8, "08:00:2b:01:02:03:04:05").unwrap(),
        Value::MacAddr(vec![8, 0, 0x2b, 1, 2, 3, 4, 5])
    );
    assert!(parse(MACADDR, "08:00:2b:01:02").is_err());
}

#[test]
fn dates_including_bc_and_infinity() {
    let days = |t: &str| match parse(DATE, t).unwrap() {
        Value::Date { value, text } => {
            assert_eq!(text, t);
            value
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(days("2000-01-01"), DateValue::Days(0));
    assert_eq!(days("1970-01-01").unix_days(), Some(0));
    assert_eq!(days("2000-03-01"), DateValue::Days(60));
    assert_eq!(days("1999-12-31"), DateValue::Days(-1));
    // 1 BC is astronomical year 0, a leap year; 0000-03-01 is 730 425 days before 2000.
    assert_eq!(days("0001-02-29 BC"), DateValue::Days(-730_426));
    assert_eq!(days("0001-01-01").unix_days(), Some(-719_162));
    assert_eq!(days("infinity"), DateValue::Infinity);
    assert_eq!(days("-infinity"), DateValue::NegInfinity);
    assert_eq!(days("infinity").unix_days(), None);
    for bad in [
        "2023-02-29",
        "2024-13-01",
        "0000-01-01",
        "2024-1",
        "yesterday",
    ] {
        assert!(parse(DATE, bad).is_err(), "{bad}");
    }
}

#[test]
fn times_and_time_zones() {
    assert_eq!(
        parse(TIME, "13:45:06.5").unwrap(),
        Value::Time {
            text: "13:45:06.5".into(),
            micros: (13 * 3600 + 45 * 60 + 6) * 1_000_000 + 500_000
        }
    );
    assert!(matches!(
        parse(TIME, "24:00:00").unwrap(),
        Value::Time {
            micros: 86_400_000_000,
            ..
        }
    ));
    assert!(parse(TIME, "24:00:01").is_err());
    assert_eq!(
        parse(TIMETZ, "13:45:00-03:30").unwrap(),
        Value::TimeTz {
            text: "13:45:00-03:30".into(),
            micros: (13 * 3600 + 45 * 60) * 1_000_000,
            offset_seconds: -(3 * 3600 + 1800)
        }
    );
    assert!(matches!(
        parse(TIMETZ, "00:00:00+05:53:28").unwrap(),
        Value::TimeTz {
            offset_seconds: 21208,
            ..
        }
    ));
    assert!(parse(TIMETZ, "13:45:00").is_err());
}

#[test]
fn timestamps_including_infinity_bc_and_offsets() {
    let instant = |oid, t: &str| match parse(oid, t).unwrap() {
        Value::Timestamp { value, .. } | Value::TimestampTz { value, .. } => value,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        instant(TIMESTAMP, "2000-01-01 00:00:00"),
        TimestampValue::Micros(0)
    );
    assert_eq!(
        instant(TIMESTAMP, "1970-01-01 00:00:00").unix_micros(),
        Some(0)
    );
    assert_eq!(
        instant(TIMESTAMP, "2000-01-01 00:00:00.000001"),
        TimestampValue::Micros(1)
    );
    assert_eq!(
        instant(TIMESTAMPTZ, "2000-01-01 02:00:00+02"),
        TimestampValue::Micros(0)
    );
    assert_eq!(
        instant(TIMESTAMPTZ, "1999-12-31 19:30:00-04:30"),
        TimestampValue::Micros(0)
    );
    assert_eq!(instant(TIMESTAMPTZ, "infinity"), TimestampValue::Infinity);
    assert_eq!(instant(TIMESTAMP, "-infinity"), TimestampValue::NegInfinity);
    assert_eq!(instant(TIMESTAMPTZ, "infinity").unix_micros(), None);
    // BC: the era marker follows the offset.
    assert_eq!(
        instant(TIMESTAMPTZ, "0044-03-15 12:00:00+00 BC"),
        instant(TIMESTAMP, "0044-03-15 12:00:00 BC")
    );
    assert!(
        instant(TIMESTAMP, "0044-03-15 12:00:00 BC")
            .unix_micros()
            .unwrap()
            < -62_135_596_800_000_000
    );
    // Postgres's extremes fit (its own representation), the Unix form of the maximum does not.
    let max = instant(TIMESTAMP, "294276-12-31 23:59:59.999999");
    assert_eq!(max, TimestampValue::Micros(9_223_371_331_199_999_999));
    assert_eq!(max.unix_micros(), None);
    assert!(matches!(
        instant(TIMESTAMP, "4714-11-24 00:00:00 BC"),
        TimestampValue::Micros(_)
    ));
    assert!(
        parse(TIMESTAMPTZ, "2024-01-01 00:00:00").is_err(),
        "offset required"
    );
    assert!(parse(TIMESTAMP, "2024-01-01T00:00:00").is_err());
}

#[test]
fn intervals_in_postgres_style() {
    let interval = |t: &str| match parse(INTERVAL, t).unwrap() {
        Value::Interval {
            months,
            days,
            micros,
            ..
        } => (months, days, micros),
        other => panic!("{other:?}"),
    };
    assert_eq!(interval("00:00:00"), (0, 0, 0));
    assert_eq!(
        interval("1 year 2 mons 3 days 04:05:06.789"),
        (14, 3, 14_706_789_000)
    );
    assert_eq!(interval("-1 days +02:03:00"), (0, -1, 7_380_000_000));
    assert_eq!(interval("-00:00:01.5"), (0, 0, -1_500_000));
    assert_eq!(interval("3 mons -2 days"), (3, -2, 0));
    assert_eq!(interval("-178000000 years"), (-2_136_000_000, 0, 0));
    assert_eq!(interval("2562047788:00:54.775807"), (0, 0, i64::MAX));
    assert_eq!(interval("infinity"), (i32::MAX, i32::MAX, i64::MAX));
    for bad in ["", "1 fortnight", "5", "1:2", "P1D"] {
        assert!(parse(INTERVAL, bad).is_err(), "{bad}");
    }
}

#[test]
fn arrays_with_nulls_quotes_and_escapes() {
    assert_eq!(
        parse(
            1009,
            r#"{plain,"with space","quote\"d","back\\slash",NULL,"NULL","",null}"#
        )
        .unwrap(),
        Value::Array {
            element_type: TEXT,
            dims: vec![8],
            lower_bounds: vec![1],
            elements: vec![
                text("plain"),
                text("with space"),
                text("quote\"d"),
                text("back\\slash"),
                None,
                text("NULL"),
                text(""),
                None
            ],
        }
    );
    assert_eq!(
        parse(1009, "{\"tab\there\",\"new\nline\",é✓}").unwrap(),
        Value::Array {
            element_type: TEXT,
            dims: vec![3],
            lower_bounds: vec![1],
            elements: vec![text("tab\there"), text("new\nline"), text("é✓")]
        }
    );
    assert_eq!(
        parse(1007, "{}").unwrap(),
        Value::Array {
            element_type: INT4,
            dims: vec![],
            lower_bounds: vec![],
            elements: vec![]
        }
    );
}

#[test]
fn nested_arrays_and_bounds() {
    assert_eq!(
        parse(1007, "{{1,2,3},{4,NULL,6}}").unwrap(),
        Value::Array {
            element_type: INT4,
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
        }
    );
    assert_eq!(
        parse(1007, "[0:1]={7,8}").unwrap(),
        Value::Array {
            element_type: INT4,
            dims: vec![2],
            lower_bounds: vec![0],
            elements: vec![Some(Value::Int4(7)), Some(Value::Int4(8))]
        }
    );
    assert!(
        matches!(parse(1007, "{{{1},{2}},{{3},{4}}}").unwrap(), Value::Array { dims, .. } if dims == vec![2, 2, 1])
    );
    for bad in [
        "{{1,2},{3}}",
        "{1,{2}}",
        "{{1},2}",
        "{1,2",
        "{1,,2}",
        "{{}}",
        "[0:5]={1}",
        "{1}x",
        "{{{{{{{1}}}}}}}",
        "{\"a}",
    ] {
        assert!(parse(1007, bad).is_err(), "{bad}");
    }
    assert!(
        parse(1007, "{1,x}").is_err(),
        "elements are parsed with the element type"
    );
}

#[test]
fn arrays_of_other_element_types() {
    assert_eq!(
        parse(1231, "{NaN,Infinity,-1.50}").unwrap(),
        Value::Array {
            element_type: NUMERIC,
            dims: vec![3],
            lower_bounds: vec![1],
            elements: vec![
                Some(Value::Numeric("NaN".into())),
                Some(Value::Numeric("Infinity".into())),
                Some(Value::Numeric("-1.50".into()))
            ]
        }
    );
    let Value::Array { elements, .. } =
        parse(1185, r#"{"2024-01-01 00:00:00+00",infinity}"#).unwrap()
    else {
        panic!()
    };
    assert!(matches!(
        elements[1],
        Some(Value::TimestampTz {
            value: TimestampValue::Infinity,
            ..
        })
    ));
    let Value::Array { elements, .. } = parse(1001, r#"{"\\x00ff",NULL}"#).unwrap() else {
        panic!()
    };
    assert_eq!(elements, vec![Some(Value::Bytea(vec![0, 255])), None]);
    assert_eq!(array_element_type(1007), Some(INT4));
    assert_eq!(array_element_type(INT4), None);
    assert_eq!(oid::array_of(UUID), Some(2951));
}

#[test]
fn errors_name_the_type_and_the_input() {
    let err = parse(INT4, "twelve").unwrap_err();
    assert_eq!(err.type_name, "int4");
    assert!(
        err.to_string().contains("int4") && err.to_string().contains("twelve"),
        "{err}"
    );
    let long = "x".repeat(500);
    assert!(parse(UUID, &long).unwrap_err().text.chars().count() <= 101);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(oid in proptest::sample::select(vec![
        BOOL, BYTEA, INT2, INT4, INT8, FLOAT4, FLOAT8, NUMERIC, UUID, JSON, DATE, TIME, TIMETZ,
        TIMESTAMP, TIMESTAMPTZ, INTERVAL, INET, CIDR, MACADDR, MACADDR8, OID, 1007, 1009, 1185, 1187,
    ]), text in "\\PC{0,40}") {
        let _ = parse(oid, &text);
    }

    #[test]
    fn array_like_text_never_panics(text in "[\\[\\]{}\",\\\\:=0-9a-zNUL -]{0,40}") {
        let _ = parse(1007, &text);
        let _ = parse(1009, &text);
    }
}

#[test]
fn parse_owned_gives_what_parse_gives() {
    let cases: &[(u32, &str)] = &[
        (BOOL, "t"),
        (INT8, "-9223372036854775808"),
        (NUMERIC, "-12.340"),
        (JSONB, r#"{"a": [1, 2]}"#),
        (DATE, "2020-02-29"),
        (TIME, "24:00:00"),
        (TIMETZ, "12:00:00+05:30"),
        (TIMESTAMP, "2020-01-01 00:00:00.5"),
        (TIMESTAMPTZ, "infinity"),
        (INTERVAL, "1 year 2 mons 3 days 04:05:06"),
        (MONEY, "$1,234.50"),
        (TEXT, "tab\there"),
        (1007, "{1,NULL,3}"),
        (INT4, "not a number"),
        (JSON, "{"),
    ];
    for &(type_oid, text) in cases {
        assert_eq!(
            parse_owned(type_oid, text.to_owned()),
            parse(type_oid, text),
            "{type_oid} {text}"
        );
    }
}
