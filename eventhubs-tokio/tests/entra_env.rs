//! `Hub::from_environment` with Entra ID variables (`tests/entra`): alone
//! in its binary, as it sets process environment variables.

#[path = "../../tests/entra/mod.rs"]
#[allow(unused_macros)]
mod entra;

#[test]
fn hub_from_environment_uses_the_chain() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(entra::hub_from_environment_uses_the_chain::<
            eventhubs_tokio::TokioRuntime,
        >());
}
