//! The runtime-neutral async layer of the Event Hubs client.
//!
//! The tokio and async-std adapters differ only in how they open a TCP
//! connection, sleep and spawn a task. Everything else that needs I/O or a
//! clock but no particular runtime lives here, written against the
//! [`futures_io`] traits, so both adapters share it:
//!
//! - the client: [`Hub`] (sends, batches, receivers, idempotent
//!   publishing) and [`BufferedProducer`] (enqueue, batched per partition
//!   in the background), over the driver task that pumps the core's
//!   `Client`.
//! - [`transport`]: turns a connected TCP stream into the AMQP byte stream:
//!   plain (the emulator), TLS (rustls, SNI = namespace host), or AMQP over
//!   WebSocket (`wss://host/$servicebus/websocket`, subprotocol `AMQPWSB10`).
//! - [`persist`]: checkpoint persistence, the Go library's `persist`
//!   package: [`persist::CheckpointPersister`], [`persist::MemoryPersister`]
//!   and [`persist::FilePersister`] (atomic replace, corruption reported).
//! - [`credentials`]: async [`credentials::TokenProvider`]s for CBS (SAS
//!   from a key, a connection string or the environment, and any
//!   [`eventhubs_proto::eventhubs::SyncTokenProvider`]), and
//!   [`credentials::HubEnvironment`], the `EVENTHUB_*` variables parsed.
//! - [`http`]: [`HttpClient`], HTTP/1.1 on the core's sans-IO exchange over
//!   the runtime's TCP and rustls, with keep-alive reuse and time-outs.
//! - [`storage`]: [`BlobClient`], the Blob Storage calls of a checkpoint
//!   store (Shared Key, SAS or bearer token).
//! - [`management`]: [`HubManager`], the Go library's hub manager: create,
//!   update, get, list and delete event hubs and consumer groups over the
//!   Atom REST API (SAS over the full URL, or Entra ID as `Bearer`).
//! - [`checkpoint_store`]: the [`CheckpointStore`] trait of processors, on
//!   Blob Storage in the layout all Event Hubs SDKs share
//!   ([`BlobCheckpointStore`]) or in memory ([`MemoryCheckpointStore`]).
//! - [`processor`]: the event processor ([`Processor`], the Go library's
//!   Event Processor Host): load-balanced, checkpointed consumption
//!   across processes, a pump over the core's `processor::Processor`.
//!
//! This crate depends on no runtime: it never spawns, and its only clock
//! reads are the wall-clock second a token or a storage request is signed
//! at, the age of idle HTTP connections, and the in-memory checkpoint
//! store's default clock.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod batch;
mod buffered;
pub mod checkpoint_store;
pub mod credentials;
mod driver;
pub mod error;
pub mod http;
mod hub;
pub mod identity;
mod listener;
pub mod management;
mod options;
pub mod persist;
pub mod processor;
pub mod runtime;
pub mod storage;
mod stream;
pub mod transport;

// The client.
pub use batch::{EventDataBatch, TryAddError, TryAddReason};
pub use buffered::{
    BufferedProducer, BufferedProducerOptions, EnqueueOptions, FailedBatch, SentBatch, WhenFull,
};
pub use error::{BoxError, Condition, Error, ServiceError, TransportFailure, TransportFailureKind};
pub use hub::Hub;
pub use listener::ListenerHandle;
pub use options::{BatchOptions, CheckpointCadence, HubOptions, ReceiveOptions, SendOptions};
pub use stream::{checkpoint_of, EventCheckpoint, EventStream};

// Events and what they carry.
pub use bytes::Bytes;
pub use eventhubs_proto::client::{
    BatchError, EventData, HubRuntimeInformation, LastEnqueuedEventProperties,
    PartitionRuntimeInformation, ReceivedEvent,
};

// Idempotent publishing.
pub use eventhubs_proto::client::{
    IdempotentError, PartitionPublishingOptions, PartitionPublishingState,
};
pub use eventhubs_proto::codec::messaging::{
    AnnotationKey, Annotations, ApplicationProperties, MessageId,
};
pub use eventhubs_proto::codec::{Map, Symbol, Timestamp, Uuid, Value};

// Positions, retries, clouds.
pub use eventhubs_proto::eventhubs::connection_string::{
    ConnectionString, ConnectionStringError, Environment, EnvironmentError,
};
pub use eventhubs_proto::eventhubs::{EventPosition, FilterError, RetryMode, RetryPolicy};

// Checkpoints.
pub use checkpoint_store::{
    BlobCheckpointStore, CheckpointStore, MemoryCheckpointStore, PartitionCheckpoint,
    PartitionOwnership, StoreError,
};
pub use persist::{
    Checkpoint, CheckpointPersister, FilePersister, MemoryPersister, PersistError, PersistFuture,
    StorePersister,
};

// Credentials.
pub use credentials::{
    CredentialsError, EnvError, HubEnvironment, SasTokenProvider, SyncAdapter, SyncTokenProvider,
    Token, TokenError, TokenFuture, TokenProvider, TokenType,
};

// HTTP, Blob Storage, transports, runtimes.
pub use crate::http::{HttpClient, HttpClientError, HttpOptions};
pub use management::{HubManager, HubManagerError, ManagementCredential};
pub use processor::{
    handler_fn, Handler, HandlerId, PartitionContext, Processor, ProcessorOptions,
};
pub use runtime::{BlockingJob, BoxFuture, ResolveError, Runtime};
pub use storage::{BlobClient, BlobError, StorageCredential};
pub use transport::{
    establish, AmqpStream, BoxedStream, Endpoint, TransportError, TransportKind, TransportOptions,
};
