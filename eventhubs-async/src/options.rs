//! Options of a [`Hub`](crate::Hub), of one send and of a receiver: the Go
//! library's `HubOption`s, `SendOption`s and `ReceiveOption`s as builders.
//!
//! Each is a struct with private fields, [`Default`] (the same as `new()`)
//! and `with_*` methods that take and return it, so that an option added
//! later breaks no caller:
//!
//! ```
//! use std::time::Duration;
//! use eventhubs_async::{CheckpointCadence, EventPosition, HubOptions, ReceiveOptions, SendOptions};
//!
//! let hub = HubOptions::new()
//!     .with_user_agent("my-service/1.2")
//!     .with_operation_timeout(Duration::from_secs(30));
//! let send = SendOptions::new().with_partition_key("device-7");
//! let receive = ReceiveOptions::new()
//!     .with_consumer_group("analytics")
//!     .with_start_position(EventPosition::Latest)
//!     .with_prefetch(500)
//!     .with_checkpoint_cadence(CheckpointCadence::every_events(100));
//! # let _ = (hub, send, receive);
//! ```

use std::any::Any;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use eventhubs_proto::client::{ClientOptions, ReceiverOptions};
use eventhubs_proto::eventhubs::connection_string::Environment;
use eventhubs_proto::eventhubs::{EventPosition, RetryPolicy};

use crate::error::Error;
use crate::persist::{CheckpointPersister, MemoryPersister};
use crate::runtime::Runtime;
use crate::transport::{TransportKind, TransportOptions};

/// Options of a [`Hub`](crate::Hub) (the Go library's `HubOption`s).
#[derive(Clone)]
pub struct HubOptions {
    pub(crate) transport: TransportOptions,
    pub(crate) partitioned_sender: Option<String>,
    pub(crate) persister: Arc<dyn CheckpointPersister>,
    pub(crate) user_agent: Option<String>,
    pub(crate) environment: Environment,
    pub(crate) retry: RetryPolicy,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) seed: Option<u64>,
    pub(crate) runtime: Option<Arc<dyn Any + Send + Sync>>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            transport: TransportOptions::default(),
            partitioned_sender: None,
            persister: Arc::new(MemoryPersister::new()),
            user_agent: None,
            environment: Environment::default(),
            retry: RetryPolicy::default(),
            connect_timeout: ClientOptions::DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: HubOptions::DEFAULT_OPERATION_TIMEOUT,
            seed: None,
            runtime: None,
        }
    }
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("transport", &self.transport)
            .field("partitioned_sender", &self.partitioned_sender)
            .field("user_agent", &self.user_agent)
            .field("environment", &self.environment)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("runtime", &self.runtime.is_some())
            .finish_non_exhaustive()
    }
}

impl HubOptions {
    /// Default deadline of a send or an information request, retries
    /// included.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

    /// The defaults: TLS on port 5671, no partitioned sender, checkpoints
    /// in memory, the public Azure cloud, the default [`RetryPolicy`], 60 s
    /// to connect and 60 s per operation.
    pub fn new() -> Self {
        Self::default()
    }

    /// How to reach the service: TLS (the default), plain TCP (the
    /// emulator), WebSocket, a custom endpoint, extra trusted roots.
    #[must_use]
    pub fn with_transport(mut self, transport: TransportOptions) -> Self {
        self.transport = transport;
        self
    }

    /// AMQP over WebSocket (over TLS) instead of AMQP over TCP (Go
    /// `HubWithWebSocketConnection`).
    #[must_use]
    pub fn with_websocket(mut self) -> Self {
        self.transport = self.transport.with_kind(TransportKind::WebSocket);
        self
    }

    /// Sends go to partition `id` unless a send says otherwise (Go
    /// `HubWithPartitionedSender`). Events with a partition key cannot be
    /// sent to a chosen partition.
    #[must_use]
    pub fn with_partitioned_sender(mut self, id: impl Into<String>) -> Self {
        self.partitioned_sender = Some(id.into());
        self
    }

    /// Where receivers keep their position (Go `HubWithOffsetPersistence`):
    /// [`Hub::receive`](crate::Hub::receive) writes checkpoints there, and
    /// a receiver with no start position resumes after the one it finds.
    /// In memory ([`MemoryPersister`]) by default.
    #[must_use]
    pub fn with_checkpoint_persister(mut self, persister: Arc<dyn CheckpointPersister>) -> Self {
        self.persister = persister;
        self
    }

    /// Sent to the service in the connection's properties (Go
    /// `HubWithUserAgent`); at most 512 characters are sent.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// The Azure cloud, for namespaces given by short name (Go
    /// `HubWithEnvironment`).
    #[must_use]
    pub fn with_environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// Retries of operations, links and connections.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Time allowed to set up the transport (TCP, TLS, WebSocket), and
    /// then for the AMQP open.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of a send or an information request, retries included
    /// (the Go library's `context` deadline); a send may say otherwise
    /// ([`SendOptions::with_timeout`]).
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Seed of retry jitter and generated ids; drawn from the clock by
    /// default. The same seed gives the same link names and delays.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Runs the hub's task on `runtime` instead of the ambient one: for
    /// tokio, `TokioRuntime::from_handle(handle)` lets a hub be built (and
    /// used) outside the runtime it runs on. It must be the runtime type
    /// of the hub (`eventhubs_tokio::Hub` takes a `TokioRuntime`); another
    /// is refused with [`Error::InvalidInput`].
    #[must_use]
    pub fn with_runtime<R: Runtime>(mut self, runtime: R) -> Self {
        self.runtime = Some(Arc::new(runtime));
        self
    }

    /// The runtime given with [`with_runtime`](Self::with_runtime), or
    /// the ambient one.
    pub(crate) fn runtime<R: Runtime>(&self) -> Result<R, Error> {
        match &self.runtime {
            None => Ok(R::default()),
            Some(any) => any.downcast_ref::<R>().cloned().ok_or_else(|| {
                Error::invalid_input(format!(
                    "HubOptions::with_runtime was given another runtime type than this hub's {}",
                    std::any::type_name::<R>()
                ))
            }),
        }
    }

    /// The checkpoint persister.
    pub fn checkpoint_persister(&self) -> &Arc<dyn CheckpointPersister> {
        &self.persister
    }

    /// The operation timeout.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// The transport options.
    pub fn transport(&self) -> &TransportOptions {
        &self.transport
    }
}

/// Options of one send: where it goes and how long it may take. By
/// default a send goes where the hub sends (its partitioned sender, or
/// the service's routing by partition key or round-robin) within the
/// hub's operation timeout.
///
/// Every send of a hub, whatever its routing, shares the hub's one AMQP
/// connection (one link per destination).
///
/// ```
/// use std::time::Duration;
/// use eventhubs_async::SendOptions;
///
/// let to_partition = SendOptions::new().with_partition_id("1");
/// let by_key = SendOptions::new()
///     .with_partition_key("device-7")
///     .with_timeout(Duration::from_secs(5));
/// # let _ = (to_partition, by_key);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    pub(crate) partition_id: Option<String>,
    pub(crate) partition_key: Option<String>,
    pub(crate) timeout: Option<Duration>,
}

impl SendOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// To partition `id`, whatever the hub's partitioned sender.
    #[must_use]
    pub fn with_partition_id(mut self, id: impl Into<String>) -> Self {
        self.partition_id = Some(id.into());
        self
    }

    /// With partition key `key` on every event (an event that has another
    /// key is refused): the service routes them all to the partition the
    /// key hashes to. Cannot be combined with a partition id.
    #[must_use]
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Fails the send after `timeout`, retries included, instead of the
    /// hub's operation timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Options of a batch made by [`Hub::create_batch`](crate::Hub::create_batch):
/// where its events go, and an optional limit below the link's.
///
/// ```
/// use eventhubs_async::BatchOptions;
///
/// let for_partition = BatchOptions::new().with_partition_id("0");
/// let for_key = BatchOptions::new().with_partition_key("device-7").with_max_size(64 * 1024);
/// # let _ = (for_partition, for_key);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOptions {
    pub(crate) partition_id: Option<String>,
    pub(crate) partition_key: Option<String>,
    pub(crate) max_size: Option<usize>,
}

impl BatchOptions {
    /// A batch for the hub's default destination, sized to the link.
    pub fn new() -> Self {
        Self::default()
    }

    /// For partition `id`.
    #[must_use]
    pub fn with_partition_id(mut self, id: impl Into<String>) -> Self {
        self.partition_id = Some(id.into());
        self
    }

    /// For events with partition key `key` (set on every event added).
    #[must_use]
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// At most `bytes` once encoded, when that is below the link's
    /// max-message-size.
    #[must_use]
    pub fn with_max_size(mut self, bytes: usize) -> Self {
        self.max_size = Some(bytes);
        self
    }
}

/// When [`Hub::receive`](crate::Hub::receive) writes checkpoints: after
/// so many events, after so much time, whichever comes first, and always
/// when the listener stops.
///
/// Writes run in a task of their own while the handler goes on. When a
/// write is due while the previous one is still in progress, it is not
/// queued: the next write, once that one is done, takes the latest
/// handled event (so a slow store gets fewer, newer checkpoints, never a
/// backlog).
///
/// The default, [`CheckpointCadence::DEFAULT`], is every 1,000 events or
/// 5 seconds, whichever comes first: a checkpoint costs a file write with
/// two `fsync`s ([`FilePersister`](crate::FilePersister)) or a Blob
/// Storage request (tens of milliseconds), so one per event would cap a
/// partition at a few hundred events per second, while after a crash a
/// restart re-delivers at most 1,000 events or 5 seconds of them (Event
/// Hubs delivers at least once in any case, and the official SDKs leave
/// the cadence to the application).
///
/// ```
/// use std::time::Duration;
/// use eventhubs_async::CheckpointCadence;
///
/// let safest = CheckpointCadence::every_event();
/// let batched = CheckpointCadence::every_events(500);
/// let timed = CheckpointCadence::every(Duration::from_secs(10));
/// let both = CheckpointCadence::every_events_or(500, Duration::from_secs(10));
/// assert_eq!(CheckpointCadence::default(), CheckpointCadence::DEFAULT);
/// # let _ = (safest, batched, timed, both, CheckpointCadence::at_stop_only());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointCadence {
    events: Option<NonZeroU32>,
    interval: Option<Duration>,
}

impl Default for CheckpointCadence {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl CheckpointCadence {
    /// Every 1,000 events or 5 seconds, whichever comes first.
    pub const DEFAULT: CheckpointCadence = CheckpointCadence {
        events: NonZeroU32::new(1000),
        interval: Some(Duration::from_secs(5)),
    };

    /// After every event (the azure-event-hubs-go behaviour: safest,
    /// slowest); with a write in progress, the next takes the latest
    /// event.
    pub fn every_event() -> Self {
        Self::every_events(1)
    }

    /// After every `n` events (at least 1).
    pub fn every_events(n: u32) -> Self {
        CheckpointCadence {
            events: Some(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)),
            interval: None,
        }
    }

    /// At most `interval` after an event was handled.
    pub fn every(interval: Duration) -> Self {
        CheckpointCadence {
            events: None,
            interval: Some(interval),
        }
    }

    /// After `n` events or `interval`, whichever comes first.
    pub fn every_events_or(n: u32, interval: Duration) -> Self {
        CheckpointCadence {
            interval: Some(interval),
            ..Self::every_events(n)
        }
    }

    /// Only when the listener stops.
    pub fn at_stop_only() -> Self {
        CheckpointCadence {
            events: None,
            interval: None,
        }
    }

    /// The event count, if any.
    pub fn events(&self) -> Option<u32> {
        self.events.map(NonZeroU32::get)
    }

    /// The interval, if any.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }
}

/// Options of a receiver (the Go library's `ReceiveOption`s).
///
/// ```
/// use eventhubs_async::{EventPosition, ReceiveOptions, Timestamp};
///
/// let from_offset = ReceiveOptions::new().with_start_position(EventPosition::offset("4096", false));
/// let from_time = ReceiveOptions::new()
///     .with_start_position(EventPosition::enqueued_time(Timestamp::from_millis(1_700_000_000_000), false));
/// let exclusive = ReceiveOptions::new().with_owner_level(7).with_identifier("worker-1");
/// # let _ = (from_offset, from_time, exclusive);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ReceiveOptions {
    pub(crate) consumer_group: String,
    pub(crate) position: Option<EventPosition>,
    pub(crate) owner_level: Option<i64>,
    pub(crate) prefetch: u32,
    pub(crate) identifier: Option<String>,
    pub(crate) track_last_enqueued: bool,
    pub(crate) cadence: CheckpointCadence,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            consumer_group: ReceiverOptions::DEFAULT_CONSUMER_GROUP.into(),
            position: None,
            owner_level: None,
            prefetch: ReceiverOptions::DEFAULT_PREFETCH,
            identifier: None,
            track_last_enqueued: false,
            cadence: CheckpointCadence::DEFAULT,
        }
    }
}

impl ReceiveOptions {
    /// Consumer group `$Default`, prefetch 300, resuming after the
    /// persisted checkpoint or else from the earliest event, checkpoints
    /// at [`CheckpointCadence::DEFAULT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// In consumer group `group` (Go `ReceiveWithConsumerGroup`).
    #[must_use]
    pub fn with_consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = group.into();
        self
    }

    /// Starting at `position`, whatever checkpoint is persisted (Go
    /// `ReceiveWithLatestOffset`: [`EventPosition::Latest`];
    /// `ReceiveWithStartingOffset`: [`EventPosition::offset`];
    /// `ReceiveFromTimestamp`: [`EventPosition::enqueued_time`]). Without
    /// one, a receiver resumes after the persisted checkpoint, or starts
    /// at the earliest event when there is none (as azure-event-hubs-go).
    #[must_use]
    pub fn with_start_position(mut self, position: EventPosition) -> Self {
        self.position = Some(position);
        self
    }

    /// With owner level (epoch) `level`: an exclusive receiver that takes
    /// the partition from lower ones (Go `ReceiveWithEpoch`).
    #[must_use]
    pub fn with_owner_level(mut self, level: i64) -> Self {
        self.owner_level = Some(level);
        self
    }

    /// With `prefetch` events requested ahead of the application (Go
    /// `ReceiveWithPrefetchCount`); at least 1.
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Shown to the service, and in `amqp:link:stolen` errors, as
    /// `identifier` (Go `ReceiveWithReceiverIdentifier`).
    #[must_use]
    pub fn with_identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// Carry the partition's last-enqueued figures on every event
    /// ([`ReceivedEvent::last_enqueued`](crate::ReceivedEvent)).
    #[must_use]
    pub fn with_track_last_enqueued(mut self, on: bool) -> Self {
        self.track_last_enqueued = on;
        self
    }

    /// When [`Hub::receive`](crate::Hub::receive) writes checkpoints.
    #[must_use]
    pub fn with_checkpoint_cadence(mut self, cadence: CheckpointCadence) -> Self {
        self.cadence = cadence;
        self
    }

    /// The consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.consumer_group
    }

    /// The start position, if one was given.
    pub fn start_position(&self) -> Option<&EventPosition> {
        self.position.as_ref()
    }

    /// The checkpoint cadence.
    pub fn checkpoint_cadence(&self) -> CheckpointCadence {
        self.cadence
    }
}
