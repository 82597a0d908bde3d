//! Replays the minimised fuzz corpora checked in under
//! `fuzz/corpus-min/<target>/` (fuzz/README.md) through each target's own
//! checks, natively, so `cargo test` keeps every input the fuzzers found
//! interesting (crashes included, once fixed) passing.
//!
//! The checks are the fuzz crate's (`fuzz/src/lib.rs`), included as
//! source, the same code the targets run.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod checks;

use std::path::PathBuf;

use bytes::Bytes;
use eventhubs_proto::codec::{Decode, Value};

/// The corpus of `target`, by file name; fails when there is none, so a
/// lost directory cannot pass unnoticed.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus-min")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

/// Runs `check` on every input of `target`, naming the one that panics.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let files = corpus(target);
    for (name, data) in &files {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data)));
        if r.is_err() {
            panic!("fuzz/corpus-min/{target}/{name} fails the {target} checks");
        }
    }
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn frame_decode() {
    replay("frame_decode", checks::check_stream);
}

#[test]
fn message_decode() {
    replay("message_decode", |d| {
        checks::check_message(&Bytes::copy_from_slice(d))
    });
}

#[test]
fn value_decode() {
    replay("value_decode", |d| {
        if let Ok(v) = Value::decode_all(&Bytes::copy_from_slice(d)) {
            checks::check_roundtrip(&v);
        }
    });
}

#[test]
fn engine_server() {
    replay("engine_server", checks::engine_server::run);
}

#[test]
fn client_input() {
    replay("client_input", |d| {
        checks::client_input::run(d);
    });
}

#[test]
fn http_response() {
    replay("http_response", checks::http_response::run);
}

#[test]
fn management_request() {
    replay("management_request", |d| {
        let _ = checks::management_request::run(d);
    });
}
