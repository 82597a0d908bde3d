//! The shared HTTP, Blob Storage and checkpoint-store scenarios
//! (`tests/storage` at the workspace root) on tokio, against scripted
//! servers, Azurite and the official Python checkpoint store.

#[path = "../../tests/storage/mod.rs"]
mod storage;

use eventhubs_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

storage_tests!(TokioRuntime, block_on);
