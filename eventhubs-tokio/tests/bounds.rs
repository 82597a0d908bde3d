//! The shared compile-time `Send`/`Sync` checks (`tests/bounds` at the
//! workspace root) instantiated with this adapter's runtime.

#[path = "../../tests/bounds/mod.rs"]
mod bounds;

#[test]
fn public_handles_and_futures_are_send() {
    // Taking the function's address instantiates it with this runtime;
    // the checks are its compilation.
    let _ =
        bounds::public_futures_are_send::<eventhubs_tokio::TokioRuntime> as fn(_, _, _, _, _, _, _);
    let _ = bounds::stream_close_is_send as fn(_);
}
