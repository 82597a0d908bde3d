//! The shared event processor scenarios (`tests/processor` at the
//! workspace root) on async-std: the embedded emulator with the
//! in-memory store and with the blob store on Azurite.

#[path = "../../tests/storage/mod.rs"]
#[allow(unused_macros)]
mod storage;

#[path = "../../tests/processor/mod.rs"]
mod processor;

use eventhubs_async_std::AsyncStdRuntime;

processor_tests!(AsyncStdRuntime, async_std::task::block_on);
