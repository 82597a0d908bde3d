//! The shared hub management scenarios (`tests/management` at the
//! workspace root) on tokio, against the emulator's management API.

#[path = "../../tests/management/mod.rs"]
mod management;

use eventhubs_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

management_tests!(TokioRuntime, block_on);
