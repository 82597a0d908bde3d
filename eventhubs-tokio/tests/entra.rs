//! Entra ID credentials end to end on tokio (`tests/entra` at the
//! workspace root): oauth2-mock-server as Entra ID, loopback managed
//! identity endpoints, the emulator checking the JWTs.

#[path = "../../tests/entra/mod.rs"]
mod entra;

use eventhubs_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

entra_tests!(TokioRuntime, block_on);

#[test]
fn python_sdk_with_entra_credential() {
    entra::python_sdk_with_entra_credential();
}
