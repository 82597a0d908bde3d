//! The input is one encoded AMQP value. A value that decodes must re-encode
//! stably.
#![no_main]

use bytes::Bytes;
use eventhubs_proto::codec::{Decode, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Value::decode_all(&Bytes::copy_from_slice(data)) {
        eventhubs_proto_fuzz::check_roundtrip(&v);
    }
});
