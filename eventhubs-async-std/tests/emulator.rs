//! The shared integration scenarios (`tests/scenarios` at the workspace
//! root) on async-std, against the emulator over real sockets.

#[path = "../../tests/scenarios/mod.rs"]
mod scenarios;

use eventhubs_async_std::AsyncStdRuntime;

scenario_tests!(AsyncStdRuntime, async_std::task::block_on);
