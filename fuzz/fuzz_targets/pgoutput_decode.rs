//! Arbitrary bytes given to the pgoutput decoder must yield a message or an error, never a
//! panic, inside and outside a streamed-transaction block; both decoding entry points agree.

#![no_main]

use etl::engine::source::pgoutput;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for in_stream in [false, true] {
        let copied = pgoutput::decode(data, in_stream);
        let shared = pgoutput::decode_bytes(&bytes::Bytes::copy_from_slice(data), in_stream);
        assert_eq!(copied, shared);
    }
});
