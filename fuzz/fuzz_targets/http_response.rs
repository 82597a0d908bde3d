//! A hostile server's HTTP/1.1 response, or a bare Blob Storage XML body,
//! through the core's response parser and the List Blobs and error
//! readers; the harness and the input format live in
//! `src/http_response.rs`. Whole, split and byte-at-a-time parses must
//! agree, and nothing may panic or exceed the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventhubs_proto_fuzz::http_response::run(data);
});
