//! The shared buffered producer and idempotent publishing scenarios
//! (`tests/buffered` at the workspace root) on tokio, against the emulator
//! over real sockets.

#[path = "../../tests/buffered/mod.rs"]
mod buffered;

use eventhubs_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

buffered_tests!(TokioRuntime, block_on);
