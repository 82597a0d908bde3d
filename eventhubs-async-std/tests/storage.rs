//! The shared HTTP, Blob Storage and checkpoint-store scenarios
//! (`tests/storage` at the workspace root) on async-std, against scripted
//! servers, Azurite and the official Python checkpoint store.

#[path = "../../tests/storage/mod.rs"]
mod storage;

use eventhubs_async_std::AsyncStdRuntime;

storage_tests!(AsyncStdRuntime, async_std::task::block_on);
