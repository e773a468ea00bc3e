//! Arbitrary text given to `types::parse` for every built-in type (and arrays of them) must
//! yield a value or an error, never a panic. The first byte picks the type.

#![no_main]

use etl::base::values::{self, oid};
use libfuzzer_sys::fuzz_target;

const TYPES: &[u32] = &[
    oid::BOOL,
    oid::BYTEA,
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::NUMERIC,
    oid::UUID,
    oid::JSON,
    oid::DATE,
    oid::TIME,
    oid::TIMETZ,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::INTERVAL,
    oid::INET,
    oid::CIDR,
    oid::MACADDR,
    oid::MACADDR8,
    oid::OID,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let element = TYPES[usize::from(selector) % TYPES.len()];
    let _ = types::parse(element, text);
    if let Some(array) = oid::array_of(element) {
        let _ = types::parse(array, text);
    }
});
