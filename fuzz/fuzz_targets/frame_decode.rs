//! The input is a connection's byte stream: optional protocol headers and
//! frames. Every frame that decodes must re-encode stably in both forms.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventhubs_proto_fuzz::check_stream(data);
});
