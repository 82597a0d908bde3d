//! The input is an encoded message (its sections back to back). A message
//! that decodes, and each inner message of it read as a batch, must
//! re-encode stably in both forms.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventhubs_proto_fuzz::check_message(&Bytes::copy_from_slice(data));
});
