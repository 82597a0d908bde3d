//! The Event Hubs client core: everything a client decides, without I/O.
//!
//! - [`Client`] (`client.rs`): one connection carrying CBS, management,
//!   senders and receivers, with retries and recovery, driven by the
//!   caller's bytes, time, tokens and transport news. Its parts, one
//!   concern each: `connection.rs` (the connection's phase, transport
//!   news, the engine's events, recovery), `tokens.rs` (CBS tokens per
//!   audience), `requests.rs` (the `$cbs` and `$management` request
//!   links), `senders.rs`, `receivers.rs`, `management.rs`, `links.rs`
//!   (link state and retry decisions shared by senders and receivers) and
//!   `timers.rs` (the one table of every timer).
//! - [`options`]: the client's inputs and outputs: options with their
//!   defaults and validation, identifiers, transport failures, events.
//! - [`event`]: events to send and received events with their system
//!   properties.
//! - [`batch`]: batches with exact size accounting, and splitting a list
//!   of events into batches grouped by partition key.
//! - [`buffered`]: the buffered producer's decisions: routing on the
//!   client, bounded buffers per partition, batches by size and maximum
//!   wait, concurrency, flush and close.
//! - [`idempotent`]: idempotent publishing: the producer properties, the
//!   per-event sequence numbers, the state per partition and its errors.
//! - [`rpc`]: `$cbs` put-token and `$management` requests and responses.

pub mod batch;
pub mod buffered;
#[allow(clippy::module_inception)]
mod client;
mod connection;
pub mod error;
pub mod event;
pub mod idempotent;
mod links;
mod management;
pub mod options;
mod receivers;
mod requests;
pub mod rpc;
mod senders;
mod timers;
mod tokens;

pub use batch::{split_into_batches, split_into_batches_mixed, BatchError, EventBatch};
pub use buffered::{
    BatchId, BufferedEvent, BufferedOptions, BufferedProducer, EnqueueError, ReadyBatch, Route,
};
pub use client::Client;
pub use error::ClientError;
pub use event::{EventData, LastEnqueuedEventProperties, ReceivedEvent, Undecodable};
pub use idempotent::{IdempotentError, PartitionPublishingOptions, PartitionPublishingState};
pub use options::{
    Cancelled, ClientEvent, ClientOptions, ConnectFailure, ConnectFailureKind, Credential, Now,
    OpId, ReceiverId, ReceiverOptions, SendTarget, TransportId,
};
pub use rpc::{HubRuntimeInformation, PartitionRuntimeInformation};
