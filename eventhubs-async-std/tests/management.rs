//! The shared hub management scenarios (`tests/management` at the
//! workspace root) on async-std, against the emulator's management API.

#[path = "../../tests/management/mod.rs"]
mod management;

use eventhubs_async_std::AsyncStdRuntime;

management_tests!(AsyncStdRuntime, async_std::task::block_on);
