//! The Event Hubs client core: everything a client decides, without I/O.
//!
//! - [`event`]: events to send and received events with their system
//!   properties.
//! - [`batch`]: batches with exact size accounting, and splitting a list
//!   of events into batches grouped by partition key.
//! - [`rpc`]: `$cbs` put-token and `$management` requests and responses.
//! - [`Client`]: one connection carrying CBS, management, senders and
//!   receivers, with retries and recovery, driven by the caller's bytes,
//!   time and transport news.

pub mod batch;
#[allow(clippy::module_inception)]
mod client;
pub mod error;
pub mod event;
pub mod rpc;

pub use batch::{split_into_batches, BatchError, EventBatch};
pub use client::{
    Client, ClientEvent, ClientOptions, Credential, Now, OpId, ReceiverId, ReceiverOptions,
    TransportId,
};
pub use error::ClientError;
pub use event::{EventData, LastEnqueuedEventProperties, ReceivedEvent, SystemProperties};
pub use rpc::{HubRuntimeInformation, PartitionRuntimeInformation};
