//! A local Azure Event Hubs broker on the `eventhubs-proto` core,
//! compatible with Microsoft's emulator and the official SDKs.
//!
//! - [`config`]: entities from a Config.json in the shape of Microsoft's
//!   emulator, with its defaults (namespace `emulatorNs1`, hub `eh1` with two
//!   partitions, consumer groups `$Default` and `cg1`, policy
//!   `RootManageSharedAccessKey` / `SAS_KEY_VALUE`).
//! - [`broker`]: the sans-IO broker model: every connection's AMQP engine,
//!   partition logs, CBS, `$management`, epochs and filters. It reads no
//!   clock, so tests can drive it under a virtual one.
//! - [`server`]: serves the model over TCP on tokio, and
//!   [`server::Emulator`] embeds it in-process on an ephemeral port, with
//!   handles to inject faults.
//! - [`listeners`]: optional AMQP-over-TLS and AMQP-over-WebSocket (plain
//!   and TLS) listeners for the same broker, and [`Emulator::builder`].
//! - [`management`]: the Atom management API (create, update, get, list
//!   and delete hubs and consumer groups at run time) and the health
//!   check, served on the HTTP listener (`--http-listen`).
//! - [`entra`]: Entra ID (JWT) tokens checked like the service: trusted
//!   issuers and their keys, audiences, expiry, role assignments per hub.
//! - `quirks`: accommodations for known client bugs that a broker this
//!   quick exposes (Microsoft's Rust SDK loses outcomes that arrive early).
//! - [`store`]: optional persistence of the partition logs in a data
//!   directory (`--data-dir`, [`EmulatorConfig::with_data_dir`]).

pub mod broker;
pub mod config;
pub mod entra;
pub mod http_server;
pub mod listeners;
pub mod management;
mod quirks;
pub mod server;
pub mod store;

pub use broker::{
    Appended, Broker, ConnId, ConsumerGroupState, EntityError, HubState, LinkInfo, LinkSelector,
    Now, RestoreError, Stats,
};
pub use config::EmulatorConfig;
pub use quirks::LATE_OUTCOME_DELAY;
pub use server::Emulator;
