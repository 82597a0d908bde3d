//! The shared event processor scenarios (`tests/processor` at the
//! workspace root) on tokio: the embedded emulator with the in-memory
//! store and with the blob store on Azurite, and interop with the
//! official Python processor.

#[path = "../../tests/storage/mod.rs"]
#[allow(unused_macros)]
mod storage;

#[path = "../../tests/processor/mod.rs"]
mod processor;

use eventhubs_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

processor_tests!(TokioRuntime, block_on);
