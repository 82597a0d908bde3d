//! Arbitrary bytes fed to a server-role engine, in arbitrary chunks and
//! with arbitrary clock steps, either raw or after a valid client handshake
//! (SASL ANONYMOUS, open, begin, attach of a sending link). The engine plays
//! a broker: it accepts links, grants credit and accepts deliveries. It must
//! never panic, and what it buffers stays bounded by its frame and message
//! size limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventhubs_proto_fuzz::engine_server::run(data);
});
