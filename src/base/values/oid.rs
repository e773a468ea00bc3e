//! Type OIDs of the built-in types we parse, their array types, and their names for errors.
//! (Built-in OIDs are fixed in PostgreSQL's catalog and identical in every database.)

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const CHAR: u32 = 18;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const JSON: u32 = 114;
pub const XML: u32 = 142;
pub const CIDR: u32 = 650;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const MACADDR8: u32 = 774;
pub const MONEY: u32 = 790;
pub const MACADDR: u32 = 829;
pub const INET: u32 = 869;
pub const BPCHAR: u32 = 1042;
pub const VARCHAR: u32 = 1043;
pub const DATE: u32 = 1082;
pub const TIME: u32 = 1083;
pub const TIMESTAMP: u32 = 1114;
pub const TIMESTAMPTZ: u32 = 1184;
pub const INTERVAL: u32 = 1186;
pub const TIMETZ: u32 = 1266;
pub const NUMERIC: u32 = 1700;
pub const UUID: u32 = 2950;
pub const JSONB: u32 = 3802;

/// (array type, element type, element name)
const TYPES: &[(u32, u32, &str)] = &[
    (1000, BOOL, "bool"),
    (1001, BYTEA, "bytea"),
    (1002, CHAR, "\"char\""),
    (1003, NAME, "name"),
    (1016, INT8, "int8"),
    (1005, INT2, "int2"),
    (1007, INT4, "int4"),
    (1009, TEXT, "text"),
    (1028, OID, "oid"),
    (199, JSON, "json"),
    (143, XML, "xml"),
    (651, CIDR, "cidr"),
    (1021, FLOAT4, "float4"),
    (1022, FLOAT8, "float8"),
    (775, MACADDR8, "macaddr8"),
    (791, MONEY, "money"),
    (1040, MACADDR, "macaddr"),
    (1041, INET, "inet"),
    (1014, BPCHAR, "bpchar"),
    (1015, VARCHAR, "varchar"),
    (1182, DATE, "date"),
    (1183, TIME, "time"),
    (1115, TIMESTAMP, "timestamp"),
    (1185, TIMESTAMPTZ, "timestamptz"),
    (1187, INTERVAL, "interval"),
    (1270, TIMETZ, "timetz"),
    (1231, NUMERIC, "numeric"),
    (2951, UUID, "uuid"),
    (3807, JSONB, "jsonb"),
];

/// The element type of a built-in array type.
pub fn array_element(type_oid: u32) -> Option<u32> {
    TYPES
        .iter()
        .find(|(array, _, _)| *array == type_oid)
        .map(|(_, element, _)| *element)
}

/// The array type of a built-in element type.
pub fn array_of(element_oid: u32) -> Option<u32> {
    TYPES
        .iter()
        .find(|(_, element, _)| *element == element_oid)
        .map(|(array, _, _)| *array)
}

/// A short name for error messages.
pub fn type_name(type_oid: u32) -> &'static str {
    if let Some((_, _, name)) = TYPES.iter().find(|(_, element, _)| *element == type_oid) {
        return name;
    }
    if array_element(type_oid).is_some() {
        return "array";
    }
    "text"
}
