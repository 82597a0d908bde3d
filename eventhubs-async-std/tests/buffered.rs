//! The shared buffered producer and idempotent publishing scenarios
//! (`tests/buffered` at the workspace root) on async-std, against the
//! emulator over real sockets.

#[path = "../../tests/buffered/mod.rs"]
mod buffered;

use eventhubs_async_std::AsyncStdRuntime;

buffered_tests!(AsyncStdRuntime, async_std::task::block_on);
