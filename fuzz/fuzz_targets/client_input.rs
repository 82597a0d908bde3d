//! Hostile service bytes fed to the client core, with clock steps and
//! caller commands interleaved; the harness and the input format live in
//! `src/client_input.rs`. The client must never panic, hang or buffer
//! without bound, and must keep its promises about operations, receivers
//! and timers whatever the service sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventhubs_proto_fuzz::client_input::run(data);
});
