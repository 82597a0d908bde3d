//! Test support for the workspace, written once: the loops that drive a
//! client core or an AMQP engine, which the tests, simulations, fuzz
//! targets and benches share instead of each writing their own.
//!
//! - [`sim`]: client cores against a sans-IO service (the emulator's broker
//!   model) in memory, under a virtual clock and a seeded network that
//!   splits, delays and cuts the byte streams and refuses connects; tokens
//!   come through `TokenRequired`, as production fetches them.
//! - [`client_input`]: the `client_input` fuzz harness, a client core fed
//!   hostile service bytes with clock steps and caller commands, with the
//!   invariants it must keep; the seed generator drives the same harness.
//! - [`pair`]: two engines, a client and a server, wired together in
//!   memory under a virtual clock, with knobs for chunking, latency and
//!   drops; the server can play a small broker.
//! - [`tcp`]: an engine over one blocking TCP socket, for tests and benches
//!   against real listeners (the emulator, Qpid Proton, RabbitMQ).
//!
//! It depends on `eventhubs-proto` and `std` only, so the fuzz crate (its
//! own workspace) can use it too. Not published.

#![forbid(unsafe_code)]

pub mod client_input;
pub mod pair;
pub mod sim;
pub mod tcp;

/// A directory under the system's temporary directory, unique to this
/// process and call, removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh path named after `name`; the directory is not created (an
    /// emulator given it as its data directory makes it).
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TempDir(std::env::temp_dir().join(format!(
            "eventhubs-test-{name}-{}-{nanos}-{n}",
            std::process::id()
        )))
    }

    /// As [`TempDir::new`], with the directory created.
    pub fn created(name: &str) -> TempDir {
        let dir = TempDir::new(name);
        std::fs::create_dir_all(&dir.0).expect("create a temporary directory");
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
