//! Entra ID credentials end to end on async-std (`tests/entra` at the
//! workspace root).

#[path = "../../tests/entra/mod.rs"]
mod entra;

use eventhubs_async_std::AsyncStdRuntime;

entra_tests!(AsyncStdRuntime, async_std::task::block_on);
