//! HTTP request bytes to the emulator's Atom management handler, against
//! its broker model; the harness and the input format live in
//! `src/management_request.rs`. The handler must never panic, must answer
//! every request with a documented status and well-formed XML, and must
//! keep the broker's entities within the service's rules.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = eventhubs_proto_fuzz::management_request::run(data);
});
