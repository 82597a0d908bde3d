//! What goes into and comes out of a [`Client`](super::Client): time,
//! identifiers, options with their defaults and validation, transport
//! failures, and the events the client reports.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::error::ClientError;
use super::event::ReceivedEvent;
use super::idempotent::PartitionPublishingOptions;
use super::rpc::{HubRuntimeInformation, PartitionRuntimeInformation};
use crate::codec::frame::MIN_MAX_FRAME_SIZE;
use crate::eventhubs::{EventPosition, RetryPolicy};

/// Time as the client sees it: a monotonic instant for timers and the
/// wall clock (ms since the Unix epoch) for token lifetimes. Both come
/// from the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time, ms since the Unix epoch.
    pub unix_ms: i64,
}

impl Now {
    pub(super) fn unix_secs(self) -> u64 {
        u64::try_from(self.unix_ms / 1000).unwrap_or(0)
    }
}

/// What [`Client::cancel`](super::Client::cancel) did with an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// Nothing of it had gone out: it is forgotten, and no event will
    /// report it (for a send: none of its events is published).
    Removed,
    /// Part of it is already on the wire (a send with a transfer handed to
    /// the connection): it goes on until it completes or reaches its
    /// deadline, so that no batch is cut short; its outcome is still
    /// reported.
    Continuing,
    /// No such operation (already complete).
    Unknown,
}

/// Names a send or information request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Names a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverId(pub u64);

/// Names one transport attempt, so that news about an old one is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId(pub u64);

/// Where a send goes: the hub, which routes by partition key or
/// round-robin, or one partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SendTarget {
    /// The hub (`<hub>`).
    Hub,
    /// One partition (`<hub>/Partitions/<id>`).
    Partition(String),
}

impl SendTarget {
    /// One partition; an error for an empty id.
    pub fn partition(id: impl Into<String>) -> Result<SendTarget, ClientError> {
        let id = id.into();
        if id.is_empty() {
            return Err(ClientError::InvalidArgument("partition id is empty".into()));
        }
        Ok(SendTarget::Partition(id))
    }

    /// The hub for `None`, else that partition (checked as
    /// [`SendTarget::partition`] does).
    pub fn from_partition(id: Option<String>) -> Result<SendTarget, ClientError> {
        id.map_or(Ok(SendTarget::Hub), SendTarget::partition)
    }

    /// The node address for `hub`.
    pub(super) fn address(&self, hub: &str) -> String {
        match self {
            SendTarget::Hub => hub.to_owned(),
            SendTarget::Partition(p) => format!("{hub}/Partitions/{p}"),
        }
    }
}

/// How the client proves its rights.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credential {
    /// CBS tokens the caller fetches: the client emits
    /// [`ClientEvent::TokenRequired`] and waits for
    /// [`Client::supply_token`](super::Client::supply_token) (SAS keys,
    /// Entra ID and other sources, synchronous or not).
    External,
    /// SASL PLAIN with a policy name and key: the whole connection is
    /// authorised, no CBS (emulators, IoT Hub style).
    Plain {
        /// The policy (user) name.
        key_name: String,
        /// The key (password).
        key: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::External => f.write_str("External"),
            Credential::Plain { key_name, .. } => f
                .debug_struct("Plain")
                .field("key_name", key_name)
                .field("key", &"<redacted>")
                .finish(),
        }
    }
}

/// Settings of a [`Client`](super::Client). [`ClientOptions::new`] gives
/// the defaults; [`Client::new`](super::Client::new) checks them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The namespace host name: `open.hostname`, and the host of every CBS
    /// audience (a custom endpoint changes only where the caller
    /// connects).
    pub host: String,
    /// The event hub.
    pub hub: String,
    /// Our AMQP container id; `None` derives one from the seed, so the
    /// same seed gives the same bytes.
    pub container_id: Option<String>,
    /// Credentials.
    pub credential: Credential,
    /// Retries of operations, links and connections.
    pub retry: RetryPolicy,
    /// Seed of retry jitter and generated ids; the same seed and inputs
    /// give the same outputs.
    pub seed: u64,
    /// Sent as `user-agent` in the open frame's properties (at most 512
    /// characters are sent).
    pub user_agent: Option<String>,
    /// Our largest frame; at least 512.
    pub max_frame_size: u32,
    /// Our idle time-out (the peer sends heartbeats at half of it).
    pub idle_timeout: Option<Duration>,
    /// How long a transport may take to come up (TCP, TLS, WebSocket),
    /// and then the AMQP open to be answered.
    pub connect_timeout: Duration,
    /// How long a `$cbs` or `$management` request waits for its answer
    /// before it is given up and retried.
    pub request_timeout: Duration,
    /// How long [`Client::handles_dropped`](super::Client::handles_dropped)
    /// gives sends in progress before the connection closes.
    pub grace_period: Duration,
    /// How long a transport that is being let go may take to write its
    /// last bytes (`Disconnect::deadline`), unless a close deadline is
    /// sooner.
    pub linger: Duration,
    /// Keep retrying sends and information requests after the policy's
    /// retries are used up, at its largest step, for as long as their
    /// deadline allows (transient errors only). Receivers, which have no
    /// deadline, still give up after the policy's retries.
    pub retry_until_deadline: bool,
    /// Publish idempotently ([`super::idempotent`]): partition senders
    /// attach as idempotent producers and the service appends every event
    /// once, however often a lost acknowledgement makes the client send it
    /// again. Sends must then go to partitions
    /// ([`Client::send`](super::Client::send)). Off by default, as in the
    /// .NET and JavaScript SDKs.
    pub idempotent_publishing: bool,
    /// Where idempotent publishing starts, by partition id (restored
    /// state, or a chosen producer group or owner level); partitions not
    /// listed let the service choose.
    pub partition_publishing: BTreeMap<String, PartitionPublishingOptions>,
}

impl ClientOptions {
    /// Default time allowed to connect (transport, then AMQP open).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default wait for a `$cbs` or `$management` answer.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default grace period once every handle is dropped.
    pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
    /// Default time a transport being let go may take for its last bytes.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

    /// Defaults for `host` and `hub` with `credential`: the default retry
    /// policy, 64 KiB frames, 60 s idle time-out, 60 s connect time-out,
    /// 30 s request time-out and grace period, a container id from the
    /// seed (0).
    pub fn new(host: impl Into<String>, hub: impl Into<String>, credential: Credential) -> Self {
        ClientOptions {
            host: host.into(),
            hub: hub.into(),
            container_id: None,
            credential,
            retry: RetryPolicy::default(),
            seed: 0,
            user_agent: None,
            max_frame_size: 64 * 1024,
            idle_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            grace_period: Self::DEFAULT_GRACE_PERIOD,
            linger: Self::DEFAULT_LINGER,
            retry_until_deadline: true,
            idempotent_publishing: false,
            partition_publishing: BTreeMap::new(),
        }
    }

    /// What is wrong with these options, if anything.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::InvalidArgument(what.into()));
        if self.host.is_empty() {
            return bad("the namespace host is empty");
        }
        if self.hub.is_empty() {
            return bad("the event hub name is empty");
        }
        if self.container_id.as_deref() == Some("") {
            return bad("the container id is empty");
        }
        if self.max_frame_size < MIN_MAX_FRAME_SIZE {
            return bad("max-frame-size is below 512 (AMQP 2.7.1)");
        }
        if self.connect_timeout.is_zero() {
            return bad("the connect time-out is zero");
        }
        if self.request_timeout.is_zero() {
            return bad("the request time-out is zero");
        }
        if let Credential::Plain { key_name, .. } = &self.credential {
            if key_name.is_empty() {
                return bad("the key name is empty");
            }
        }
        for (partition, p) in &self.partition_publishing {
            if partition.is_empty() {
                return bad("a partition publishing entry has an empty partition id");
            }
            if let Err(e) = p.validate() {
                return Err(ClientError::InvalidArgument(format!(
                    "partition {partition}: {e}"
                )));
            }
        }
        Ok(())
    }
}

/// Options of a partition receiver. [`ReceiverOptions::new`] gives the
/// defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReceiverOptions {
    /// The partition.
    pub partition_id: String,
    /// The consumer group.
    pub consumer_group: String,
    /// Where to start.
    pub position: EventPosition,
    /// Owner level (epoch): an exclusive receiver.
    pub owner_level: Option<i64>,
    /// Identifier shown to the service (and in `link:stolen` errors).
    pub identifier: Option<String>,
    /// Events the service may send ahead of the application: the link
    /// credit kept outstanding. At least 1.
    pub prefetch: u32,
    /// Ask for last-enqueued figures with every delivery.
    pub track_last_enqueued: bool,
}

impl ReceiverOptions {
    /// The default consumer group.
    pub const DEFAULT_CONSUMER_GROUP: &'static str = "$Default";
    /// The default prefetch.
    pub const DEFAULT_PREFETCH: u32 = 300;
    /// Where a receiver starts when told nothing: the earliest event still
    /// retained (the start of the partition's log), as azure-event-hubs-go
    /// does.
    pub const DEFAULT_POSITION: EventPosition = EventPosition::Earliest;

    /// A receiver of `partition_id`: group `$Default`, from
    /// [`DEFAULT_POSITION`](Self::DEFAULT_POSITION) (the earliest event),
    /// prefetch 300.
    pub fn new(partition_id: impl Into<String>) -> Self {
        ReceiverOptions {
            partition_id: partition_id.into(),
            consumer_group: Self::DEFAULT_CONSUMER_GROUP.into(),
            position: Self::DEFAULT_POSITION,
            owner_level: None,
            identifier: None,
            prefetch: Self::DEFAULT_PREFETCH,
            track_last_enqueued: false,
        }
    }

    /// Starting at `position`.
    pub fn position(mut self, position: EventPosition) -> Self {
        self.position = position;
        self
    }

    /// In consumer group `group`.
    pub fn consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = group.into();
        self
    }

    /// With owner level (epoch) `level`.
    pub fn owner_level(mut self, level: i64) -> Self {
        self.owner_level = Some(level);
        self
    }

    /// Shown to the service as `identifier`.
    pub fn identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// With `prefetch` credit.
    pub fn prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Asking for last-enqueued figures (or not).
    pub fn track_last_enqueued(mut self, on: bool) -> Self {
        self.track_last_enqueued = on;
        self
    }

    /// What is wrong with these options, if anything.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::InvalidArgument(what.into()));
        if self.partition_id.is_empty() {
            return bad("partition id is empty");
        }
        if self.consumer_group.is_empty() {
            return bad("consumer group is empty");
        }
        if self.prefetch == 0 {
            return bad("prefetch must be at least 1");
        }
        Ok(())
    }

    /// Credit returned to the service in one flow once the application has
    /// consumed this many events (and whenever it has consumed all it was
    /// given): a quarter of the prefetch.
    pub(super) fn credit_batch(&self) -> u32 {
        (self.prefetch / 4).max(1)
    }
}

/// Which way a transport failed to come up. The client decides from the
/// kind whether to try again ([`ConnectFailureKind::is_permanent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectFailureKind {
    /// The host name could not be resolved. Retried: DNS fails
    /// transiently, and a name may appear.
    Dns,
    /// Nothing accepted the TCP connection. Retried.
    Refused,
    /// The connection was reset or aborted while being set up. Retried.
    Reset,
    /// Setting up the transport took longer than allowed. Retried.
    TimedOut,
    /// Another I/O failure while setting up (unreachable network, a TLS
    /// handshake cut short). Retried.
    Io,
    /// The server's TLS certificate was rejected (untrusted issuer, name
    /// mismatch, expired). Permanent.
    CertificateRejected,
    /// The namespace host cannot name a TLS server or a WebSocket host.
    /// Permanent.
    InvalidHost,
    /// The TLS configuration is unusable (bad trusted certificates).
    /// Permanent.
    TlsConfig,
    /// The server answered the WebSocket upgrade with another HTTP status.
    /// Permanent.
    WebSocketRefused,
    /// The server did not select the `AMQPWSB10` WebSocket subprotocol.
    /// Permanent.
    SubprotocolRefused,
}

impl ConnectFailureKind {
    /// True when trying again cannot help: waiting operations fail at once
    /// with the cause.
    pub fn is_permanent(self) -> bool {
        use ConnectFailureKind::*;
        match self {
            Dns | Refused | Reset | TimedOut | Io => false,
            CertificateRejected | InvalidHost | TlsConfig | WebSocketRefused
            | SubprotocolRefused => true,
        }
    }
}

/// A transport that could not be set up: its kind, and the cause in words
/// (`TCP connect to ns.servicebus.windows.net:5671 refused`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{cause}")]
pub struct ConnectFailure {
    /// Which way it failed.
    pub kind: ConnectFailureKind,
    /// What failed, for people.
    pub cause: String,
    /// The transport attempt that failed, stamped by the client when it
    /// is told ([`Client::connect_failed`](super::Client::connect_failed)),
    /// so a driver can find the typed cause it kept for that attempt.
    pub transport: Option<TransportId>,
}

impl ConnectFailure {
    /// A failure of `kind` described by `cause`.
    pub fn new(kind: ConnectFailureKind, cause: impl Into<String>) -> Self {
        ConnectFailure {
            kind,
            cause: cause.into(),
            transport: None,
        }
    }
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // `Received`, the one per event: see there
#[non_exhaustive]
pub enum ClientEvent {
    /// Open a transport to the service and report with
    /// [`Client::connected`](super::Client::connected) or
    /// [`Client::connect_failed`](super::Client::connect_failed). The
    /// client bounds the attempt with its own timer; the caller needs
    /// none.
    Connect(TransportId),
    /// Write `final_bytes` (a close, when there is one) to the transport
    /// named, then close it; give up on it at `deadline`, written or not.
    /// Bytes from [`Client::poll_transmit`](super::Client::poll_transmit)
    /// belong to the current transport only.
    Disconnect {
        /// The transport to close.
        transport: TransportId,
        /// Its last bytes.
        final_bytes: Vec<u8>,
        /// When to stop trying to write them.
        deadline: Instant,
    },
    /// Fetch a token for `audience` and hand it over with
    /// [`Client::supply_token`](super::Client::supply_token)
    /// ([`Credential::External`]).
    TokenRequired {
        /// The CBS audience.
        audience: String,
    },
    /// A send finished: every event accepted, or an error.
    SendComplete {
        /// The send.
        op: OpId,
        /// Its outcome.
        result: Result<(), ClientError>,
    },
    /// Hub information arrived.
    HubInformation {
        /// The request.
        op: OpId,
        /// Its outcome.
        result: Result<HubRuntimeInformation, ClientError>,
    },
    /// The sender link of a [`Client::open_sender`](super::Client::open_sender)
    /// is attached: its max-message-size (the largest transfer, hence the
    /// largest batch, the service takes on it), or why it is not.
    SenderOpened {
        /// The request.
        op: OpId,
        /// The link's max-message-size in bytes, or the failure.
        result: Result<u64, ClientError>,
    },
    /// Partition information arrived.
    PartitionInformation {
        /// The request.
        op: OpId,
        /// Its outcome.
        result: Result<PartitionRuntimeInformation, ClientError>,
    },
    /// A receiver's link is attached for the first time: the service
    /// accepted its partition, consumer group and owner level.
    ReceiverOpened {
        /// The receiver.
        receiver: ReceiverId,
    },
    /// An event for a receiver. Report it back with
    /// [`Client::consumed`](super::Client::consumed) once the application
    /// has taken it, so that the service may send more.
    Received {
        /// The receiver.
        receiver: ReceiverId,
        /// The event, not boxed: an allocation and a free per event cost
        /// more than the width it gives the few other events of a pass.
        event: ReceivedEvent,
    },
    /// A receiver stopped: closed by the caller (`None`) or failed.
    ReceiverClosed {
        /// The receiver.
        receiver: ReceiverId,
        /// Why, when it failed.
        error: Option<ClientError>,
    },
    /// A receiver's link is gone from the connection: reported after
    /// [`ClientEvent::ReceiverClosed`] once the service has answered the
    /// detach of a receiver the caller closed, or at once when there was
    /// no link to detach or the connection is gone.
    ReceiverDetached {
        /// The receiver.
        receiver: ReceiverId,
    },
    /// The client is closed; nothing more will happen.
    Closed,
}
