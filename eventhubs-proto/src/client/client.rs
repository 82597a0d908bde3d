//! [`Client`]: one Event Hubs connection with its CBS, management,
//! producer and consumer links, as a sans-IO state machine.
//!
//! Commands go in (`send`, `open_receiver`, `add_credit`,
//! `get_hub_information`, `close`, ...), together with bytes
//! ([`Client::handle_input`]), timer expiries ([`Client::handle_timeout`])
//! and transport news ([`Client::connected`], [`Client::disconnected`]).
//! Bytes ([`Client::poll_transmit`]), [`ClientEvent`]s and deadlines
//! ([`Client::poll_timeout`]) come out. The caller owns sockets, clocks and
//! token sources that need I/O.
//!
//! Guarantees kept across link detaches and connection losses:
//! - a receiver resumes strictly after the last event it handed out
//!   (`x-opt-sequence-number > N`), and drops anything at or below it,
//!   so the user sees no duplicate and no gap;
//! - a send is retried only for the transfers the service has not
//!   acknowledged, and completes once every transfer is accepted;
//! - every operation completes or fails by its deadline.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::batch::{split_into_batches, DEFAULT_MAX_MESSAGE_SIZE};
use super::error::ClientError;
use super::event::{EventData, ReceivedEvent};
use super::rpc::{
    correlation_id, management_request, parse_hub_information, parse_partition_information,
    put_token_request, response_status, HubRuntimeInformation, ManagementRequest,
    PartitionRuntimeInformation,
};
use crate::codec::message::{Message, BATCH_MESSAGE_FORMAT};
use crate::codec::messaging::{DeliveryState, Source, Target};
use crate::codec::performatives::{AmqpError, Fields, Role};
use crate::codec::{Decode, Encode, Symbol, Value};
use crate::engine::{
    Connection, ConnectionConfig, ConnectionError, Event, LinkConfig, LinkId, SaslConfig,
    SaslMechanism, SessionConfig, Settlement, Side,
};
use crate::eventhubs::errors::{classify_error, ErrorSource};
use crate::eventhubs::sas::{SyncTokenProvider, Token, TokenError};
use crate::eventhubs::{EventPosition, RecoveryKind, RetryPolicy, SplitMix64};

/// Desired capability of current SDKs on every attach.
const GEOREPLICATION: &str = "com.microsoft:georeplication";
/// Desired capability asking for last-enqueued figures on every delivery.
const RUNTIME_METRIC: &str = "com.microsoft:enable-receiver-runtime-metric";
/// Credit kept on the `$cbs` and `$management` reply links.
const REPLY_CREDIT: u32 = 100;
/// A link or connection that stayed up this long starts its failure count
/// afresh.
const HEALTHY_SPAN: Duration = Duration::from_secs(60);

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
    fn unix_secs(self) -> u64 {
        u64::try_from(self.unix_ms / 1000).unwrap_or(0)
    }
}

/// How the client proves its rights.
pub enum Credential {
    /// CBS tokens from a provider the core calls itself (SAS keys, fixed
    /// signatures).
    Provider(Box<dyn SyncTokenProvider + Send>),
    /// CBS tokens the caller fetches: the core emits
    /// [`ClientEvent::TokenRequired`] and waits for
    /// [`Client::supply_token`] (Entra ID and other asynchronous sources).
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

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Provider(_) => f.write_str("Provider(<token provider>)"),
            Credential::External => f.write_str("External"),
            Credential::Plain { key_name, .. } => f
                .debug_struct("Plain")
                .field("key_name", key_name)
                .field("key", &"<redacted>")
                .finish(),
        }
    }
}

/// Settings of a [`Client`].
#[derive(Debug)]
pub struct ClientOptions {
    /// The namespace host name: `open.hostname`, and the host of every CBS
    /// audience (a custom endpoint changes only where the caller
    /// connects).
    pub host: String,
    /// The event hub.
    pub hub: String,
    /// Our AMQP container id.
    pub container_id: String,
    /// Credentials.
    pub credential: Credential,
    /// Retries of operations, links and connections.
    pub retry: RetryPolicy,
    /// Seed of retry jitter and generated ids; the same seed and inputs
    /// give the same outputs.
    pub seed: u64,
    /// Sent as `user-agent` in the open frame's properties.
    pub user_agent: Option<String>,
    /// Our largest frame.
    pub max_frame_size: u32,
    /// Our idle time-out (the peer sends heartbeats at half of it).
    pub idle_timeout: Option<Duration>,
    /// How long a transport and the AMQP open may take.
    pub connect_timeout: Duration,
    /// Keep retrying sends and information requests after the policy's
    /// retries are used up, at its largest step, for as long as their
    /// deadline allows (transient errors only). Receivers, which have no
    /// deadline, still give up after the policy's retries.
    pub retry_until_deadline: bool,
}

impl ClientOptions {
    /// Defaults for `host` and `hub` with `credential`: the default retry
    /// policy, 64 KiB frames, 60 s idle time-out, 60 s connect time-out.
    pub fn new(host: impl Into<String>, hub: impl Into<String>, credential: Credential) -> Self {
        ClientOptions {
            host: host.into(),
            hub: hub.into(),
            container_id: "eventhubs-rs".into(),
            credential,
            retry: RetryPolicy::default(),
            seed: 0,
            user_agent: None,
            max_frame_size: 64 * 1024,
            idle_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(60),
            retry_until_deadline: true,
        }
    }
}

/// Names a send or information request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Names a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverId(pub u64);

/// Names one transport attempt, so that news about an old one is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransportId(pub u64);

/// Options of a partition receiver.
#[derive(Clone, Debug, PartialEq)]
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
    /// Credit issued up front; the caller returns it with
    /// [`Client::add_credit`] as it consumes events.
    pub prefetch: u32,
    /// Ask for last-enqueued figures with every delivery.
    pub track_last_enqueued: bool,
}

impl ReceiverOptions {
    /// `$Default` group, starting at the latest event, prefetch 300.
    pub fn new(partition_id: impl Into<String>) -> Self {
        ReceiverOptions {
            partition_id: partition_id.into(),
            consumer_group: "$Default".into(),
            position: EventPosition::Latest,
            owner_level: None,
            identifier: None,
            prefetch: 300,
            track_last_enqueued: false,
        }
    }
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Open a transport to the service and report with
    /// [`Client::connected`] or [`Client::connect_failed`].
    Connect(TransportId),
    /// Write `final_bytes` (a close, when there is one) to the transport
    /// named, then close it. Bytes from [`Client::poll_transmit`] belong to
    /// the current transport only.
    Disconnect {
        /// The transport to close.
        transport: TransportId,
        /// Its last bytes.
        final_bytes: Vec<u8>,
    },
    /// Fetch a token for `audience` and hand it over with
    /// [`Client::supply_token`] ([`Credential::External`] only).
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
    /// An event for a receiver.
    Received {
        /// The receiver.
        receiver: ReceiverId,
        /// The event.
        event: Box<ReceivedEvent>,
    },
    /// A receiver stopped: closed by the caller (`None`) or failed.
    ReceiverClosed {
        /// The receiver.
        receiver: ReceiverId,
        /// Why, when it failed.
        error: Option<ClientError>,
    },
    /// The client is closed; nothing more will happen.
    Closed,
}

enum Owner {
    CbsTx,
    CbsRx,
    MgmtTx,
    MgmtRx,
    Sender(Option<String>),
    Receiver(ReceiverId),
    /// A link we detached and no longer care about.
    Gone,
}

#[derive(Default)]
struct RpcPair {
    tx: Option<LinkId>,
    tx_up: bool,
    rx_up: bool,
    reply_to: String,
}

impl RpcPair {
    fn ready(&self) -> bool {
        self.tx_up && self.rx_up
    }
}

enum Rpc {
    PutToken { audience: String, generation: u64 },
    Management(OpId),
}

/// The put-token state of an audience on the current connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Putting,
    /// Authorised with the token of this generation.
    Done(u64),
}

struct Conn {
    id: TransportId,
    engine: Connection,
    opened: bool,
    opened_at: Option<Instant>,
    deadline: Instant,
    session: u16,
    owners: HashMap<LinkId, Owner>,
    cbs: RpcPair,
    mgmt: RpcPair,
    auth: HashMap<String, Auth>,
    rpcs: HashMap<String, Rpc>,
    closing: bool,
}

#[derive(Default)]
struct TokenSlot {
    token: Option<Token>,
    generation: u64,
    requested: bool,
    refresh_at: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
}

struct Unit {
    op: OpId,
    payload: Bytes,
    format: u32,
    attempt: u32,
    not_before: Option<Instant>,
}

struct SenderState {
    link: Option<LinkId>,
    attached: bool,
    attached_at: Option<Instant>,
    max_message_size: u64,
    /// Ops waiting for the link's max-message-size to be split.
    unsplit: VecDeque<OpId>,
    queue: VecDeque<Unit>,
    in_flight: BTreeMap<u32, Unit>,
    failures: u32,
    retry_at: Option<Instant>,
    next_tag: u64,
}

impl SenderState {
    fn new() -> Self {
        SenderState {
            link: None,
            attached: false,
            attached_at: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            unsplit: VecDeque::new(),
            queue: VecDeque::new(),
            in_flight: BTreeMap::new(),
            failures: 0,
            retry_at: None,
            next_tag: 0,
        }
    }

    fn has_work(&self) -> bool {
        !self.unsplit.is_empty() || !self.queue.is_empty() || !self.in_flight.is_empty()
    }

    /// The link went away: what was in flight was not acknowledged and
    /// goes back to the front of the queue, in order.
    fn reset_link(&mut self) {
        self.link = None;
        self.attached = false;
        for (_, u) in std::mem::take(&mut self.in_flight).into_iter().rev() {
            self.queue.push_front(u);
        }
    }
}

struct ReceiverState {
    options: ReceiverOptions,
    link: Option<LinkId>,
    attached: bool,
    attached_at: Option<Instant>,
    last_sequence_number: Option<i64>,
    announced: bool,
    budget: u32,
    failures: u32,
    retry_at: Option<Instant>,
}

enum OpKind {
    Send {
        target: Option<String>,
        events: Vec<EventData>,
        units_left: usize,
    },
    Management {
        what: ManagementRequest,
        attempt: u32,
        not_before: Option<Instant>,
        in_flight: bool,
    },
}

struct Op {
    deadline: Instant,
    kind: OpKind,
}

enum Phase {
    Idle,
    Backoff(Instant),
    Connecting { id: TransportId, deadline: Instant },
    Connected,
}

/// The Event Hubs client core. See the [module docs](self).
pub struct Client {
    options: ClientOptions,
    rng: SplitMix64,
    phase: Phase,
    conn: Option<Conn>,
    next_transport: u64,
    conn_failures: u32,
    last_conn_error: Option<ClientError>,
    tokens: HashMap<String, TokenSlot>,
    senders: BTreeMap<Option<String>, SenderState>,
    receivers: BTreeMap<ReceiverId, ReceiverState>,
    ops: BTreeMap<OpId, Op>,
    mgmt_queue: VecDeque<OpId>,
    events: VecDeque<ClientEvent>,
    next_id: u64,
    id_prefix: u64,
    closing: Option<Instant>,
    closed: bool,
    /// The latest `now` seen: retry instants at or before it are due and
    /// wait on something else (credit, a token, a connection), so they
    /// are not timers any more.
    last_now: Option<Instant>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.options.host)
            .field("hub", &self.options.hub)
            .field("connected", &self.conn.is_some())
            .field("ops", &self.ops.len())
            .field("receivers", &self.receivers.len())
            .finish_non_exhaustive()
    }
}

fn amqp_error(condition: &'static str, description: impl Into<String>) -> AmqpError {
    AmqpError::new(Symbol::from_static(condition), description.into())
}

impl Client {
    /// A client that connects when it first has work.
    pub fn new(options: ClientOptions) -> Self {
        let mut rng = SplitMix64::new(options.seed);
        let id_prefix = rng.next_u64();
        Client {
            options,
            rng,
            phase: Phase::Idle,
            conn: None,
            next_transport: 1,
            conn_failures: 0,
            last_conn_error: None,
            tokens: HashMap::new(),
            senders: BTreeMap::new(),
            receivers: BTreeMap::new(),
            ops: BTreeMap::new(),
            mgmt_queue: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            id_prefix,
            closing: None,
            closed: false,
            last_now: None,
        }
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    fn next_id(&mut self) -> u64 {
        let n = self.next_id;
        self.next_id += 1;
        n
    }

    fn audience(&self, path: &str) -> String {
        format!("amqps://{}/{}", self.options.host, path)
    }

    fn sender_audience(&self, target: &Option<String>) -> String {
        match target {
            None => self.audience(&self.options.hub),
            Some(p) => self.audience(&format!("{}/Partitions/{p}", self.options.hub)),
        }
    }

    fn receiver_audience(&self, o: &ReceiverOptions) -> String {
        self.audience(&format!(
            "{}/ConsumerGroups/{}/Partitions/{}",
            self.options.hub, o.consumer_group, o.partition_id
        ))
    }

    fn management_audience(&self) -> String {
        self.audience(&self.options.hub)
    }

    fn uses_cbs(&self) -> bool {
        !matches!(self.options.credential, Credential::Plain { .. })
    }

    // ----- commands -----

    /// Publishes `events` to the hub (`partition_id` `None`, routed by
    /// partition key or round-robin) or to one partition. They go in as
    /// few transfers as the link's max-message-size allows, grouped by
    /// partition key. Completes with [`ClientEvent::SendComplete`] once
    /// all are accepted, or fails by `deadline`.
    pub fn send(
        &mut self,
        now: Now,
        events: Vec<EventData>,
        partition_id: Option<String>,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        if self.closing.is_some() || self.closed {
            return Err(ClientError::Closed);
        }
        if events.is_empty() {
            return Err(ClientError::InvalidArgument("no events to send".into()));
        }
        if let Some(p) = &partition_id {
            if p.is_empty() {
                return Err(ClientError::InvalidArgument("partition id is empty".into()));
            }
            if events.iter().any(|e| e.partition_key.is_some()) {
                return Err(ClientError::InvalidArgument(
                    "an event with a partition key cannot be sent to a chosen partition".into(),
                ));
            }
        }
        let op = OpId(self.next_id());
        self.ops.insert(
            op,
            Op {
                deadline,
                kind: OpKind::Send {
                    target: partition_id.clone(),
                    events,
                    units_left: 0,
                },
            },
        );
        self.senders
            .entry(partition_id)
            .or_insert_with(SenderState::new)
            .unsplit
            .push_back(op);
        self.drive(now);
        Ok(op)
    }

    /// Reads hub runtime information; answered by
    /// [`ClientEvent::HubInformation`].
    pub fn get_hub_information(
        &mut self,
        now: Now,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        self.management(now, ManagementRequest::Hub, deadline)
    }

    /// Reads one partition's runtime information; answered by
    /// [`ClientEvent::PartitionInformation`].
    pub fn get_partition_information(
        &mut self,
        now: Now,
        partition_id: impl Into<String>,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        self.management(
            now,
            ManagementRequest::Partition(partition_id.into()),
            deadline,
        )
    }

    fn management(
        &mut self,
        now: Now,
        what: ManagementRequest,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        if self.closing.is_some() || self.closed {
            return Err(ClientError::Closed);
        }
        let op = OpId(self.next_id());
        self.ops.insert(
            op,
            Op {
                deadline,
                kind: OpKind::Management {
                    what,
                    attempt: 0,
                    not_before: None,
                    in_flight: false,
                },
            },
        );
        self.mgmt_queue.push_back(op);
        self.drive(now);
        Ok(op)
    }

    /// Opens a receiver on a partition; events arrive as
    /// [`ClientEvent::Received`].
    pub fn open_receiver(
        &mut self,
        now: Now,
        options: ReceiverOptions,
    ) -> Result<ReceiverId, ClientError> {
        if self.closing.is_some() || self.closed {
            return Err(ClientError::Closed);
        }
        if options.partition_id.is_empty() || options.consumer_group.is_empty() {
            return Err(ClientError::InvalidArgument(
                "partition id and consumer group must not be empty".into(),
            ));
        }
        let id = ReceiverId(self.next_id());
        let budget = options.prefetch;
        self.receivers.insert(
            id,
            ReceiverState {
                options,
                link: None,
                attached: false,
                attached_at: None,
                last_sequence_number: None,
                announced: false,
                budget,
                failures: 0,
                retry_at: None,
            },
        );
        self.drive(now);
        Ok(id)
    }

    /// Gives a receiver `credit` more events to deliver (typically one per
    /// event the application consumed).
    pub fn add_credit(&mut self, now: Now, receiver: ReceiverId, credit: u32) {
        if let Some(r) = self.receivers.get_mut(&receiver) {
            r.budget = r.budget.saturating_add(credit);
            if let (Some(link), true, Some(conn)) = (r.link, r.attached, self.conn.as_mut()) {
                let _ = conn.engine.link(link).flow(r.budget);
            }
        }
        self.drive(now);
    }

    /// Closes a receiver; reported by [`ClientEvent::ReceiverClosed`]
    /// without error.
    pub fn close_receiver(&mut self, now: Now, receiver: ReceiverId) {
        if let Some(r) = self.receivers.remove(&receiver) {
            self.detach_gone(r.link);
            self.events.push_back(ClientEvent::ReceiverClosed {
                receiver,
                error: None,
            });
        }
        self.drive(now);
    }

    /// The sequence number of the last event a receiver handed out.
    pub fn receiver_position(&self, receiver: ReceiverId) -> Option<i64> {
        self.receivers.get(&receiver)?.last_sequence_number
    }

    /// Closes the client: receivers stop, sends and requests in progress
    /// may finish until `deadline`, then the connection is closed and
    /// [`ClientEvent::Closed`] reported.
    pub fn close(&mut self, now: Now, deadline: Instant) {
        if self.closing.is_some() || self.closed {
            return;
        }
        self.closing = Some(deadline);
        let ids: Vec<ReceiverId> = self.receivers.keys().copied().collect();
        for id in ids {
            if let Some(r) = self.receivers.remove(&id) {
                self.detach_gone(r.link);
                self.events.push_back(ClientEvent::ReceiverClosed {
                    receiver: id,
                    error: None,
                });
            }
        }
        self.drive(now);
    }

    /// True once [`ClientEvent::Closed`] has been queued.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A token for `audience`, in answer to
    /// [`ClientEvent::TokenRequired`].
    pub fn supply_token(&mut self, now: Now, audience: &str, token: Result<Token, TokenError>) {
        let result = match token {
            Ok(t) => {
                self.install_token(now, audience, t);
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Some(s) = self.tokens.get_mut(audience) {
            s.requested = false;
        }
        if let Err(e) = result {
            self.token_failed(now, audience, ClientError::Token(e), None);
        }
        self.drive(now);
    }

    // ----- transport -----

    /// The transport named by `id` is up: the AMQP exchange starts.
    pub fn connected(&mut self, now: Now, id: TransportId) {
        if !matches!(self.phase, Phase::Connecting { id: want, .. } if want == id) {
            return;
        }
        let mut c = ConnectionConfig::new(Side::Client, self.options.container_id.clone());
        c.hostname = Some(self.options.host.clone());
        c.max_frame_size = self.options.max_frame_size;
        c.idle_time_out = self.options.idle_timeout;
        c.sasl = SaslConfig::Client(vec![match &self.options.credential {
            Credential::Plain { key_name, key } => SaslMechanism::Plain {
                username: key_name.clone(),
                password: key.clone(),
            },
            _ => SaslMechanism::Anonymous,
        }]);
        let mut props = Fields::new();
        props.insert(
            Symbol::from_static("product"),
            Value::String("eventhubs-rs".into()),
        );
        props.insert(
            Symbol::from_static("version"),
            Value::String(env!("CARGO_PKG_VERSION").into()),
        );
        if let Some(ua) = &self.options.user_agent {
            let ua: String = ua.chars().take(512).collect();
            props.insert(Symbol::from_static("user-agent"), Value::String(ua.into()));
        }
        c.properties = Some(props);
        let mut engine = Connection::new(c, now.instant);
        let session = engine.open().and_then(|()| {
            engine.begin_session(SessionConfig {
                incoming_window: 5000,
                ..SessionConfig::default()
            })
        });
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                self.connection_lost(
                    now,
                    ClientError::Connection(e.to_string()),
                    RecoveryKind::RecoverConnection,
                );
                return;
            }
        };
        info!(transport = id.0, host = %self.options.host, "transport connected; opening AMQP");
        self.conn = Some(Conn {
            id,
            engine,
            opened: false,
            opened_at: None,
            deadline: now.instant + self.options.connect_timeout,
            session,
            owners: HashMap::new(),
            cbs: RpcPair::default(),
            mgmt: RpcPair::default(),
            auth: HashMap::new(),
            rpcs: HashMap::new(),
            closing: false,
        });
        self.phase = Phase::Connected;
        self.drive(now);
    }

    /// The transport named by `id` could not be opened.
    pub fn connect_failed(&mut self, now: Now, id: TransportId, reason: &str) {
        if !matches!(self.phase, Phase::Connecting { id: want, .. } if want == id) {
            return;
        }
        warn!(transport = id.0, reason, "connect failed");
        self.phase = Phase::Idle;
        self.connection_lost(
            now,
            ClientError::Connection(reason.to_owned()),
            RecoveryKind::RecoverConnection,
        );
        self.drive(now);
    }

    /// The transport named by `id` closed or failed.
    pub fn disconnected(&mut self, now: Now, id: TransportId, reason: &str) {
        if self.conn.as_ref().is_some_and(|c| c.id == id) {
            warn!(transport = id.0, reason, "transport lost");
            // The transport is gone: nothing left to write.
            self.conn = None;
            self.phase = Phase::Idle;
            self.connection_lost(
                now,
                ClientError::Connection(reason.to_owned()),
                RecoveryKind::RecoverConnection,
            );
            self.drive(now);
        } else if matches!(self.phase, Phase::Connecting { id: want, .. } if want == id) {
            self.connect_failed(now, id, reason);
        }
    }

    /// Bytes read from the transport; returns how many were consumed (the
    /// rest must be offered again with more).
    pub fn handle_input(&mut self, now: Now, data: &[u8]) -> usize {
        let Some(conn) = self.conn.as_mut() else {
            return data.len();
        };
        let n = conn.engine.handle_input(now.instant, data);
        self.process_engine(now);
        self.drive(now);
        n
    }

    /// Appends bytes to write to the transport; returns how many.
    pub fn poll_transmit(&mut self, now: Now, buf: &mut Vec<u8>) -> usize {
        self.conn
            .as_mut()
            .map_or(0, |c| c.engine.poll_transmit(now.instant, buf))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |i: Option<Instant>| {
            if let Some(i) = i {
                t = Some(t.map_or(i, |t| t.min(i)));
            }
        };
        let last = self.last_now;
        let future = |i: Option<Instant>| i.filter(|i| last.is_none_or(|l| *i > l));
        if self.closed {
            return None;
        }
        add(self.closing);
        match &self.phase {
            Phase::Backoff(at) => add(Some(*at)),
            Phase::Connecting { deadline, .. } => add(Some(*deadline)),
            _ => {}
        }
        if let Some(c) = &self.conn {
            add(c.engine.poll_timeout());
            if !c.opened {
                add(Some(c.deadline));
            }
        }
        for op in self.ops.values() {
            add(Some(op.deadline));
            if let OpKind::Management { not_before, .. } = &op.kind {
                add(future(*not_before));
            }
        }
        for s in self.senders.values() {
            add(future(s.retry_at));
            for u in &s.queue {
                add(future(u.not_before));
            }
        }
        for r in self.receivers.values() {
            add(future(r.retry_at));
        }
        for s in self.tokens.values() {
            add(future(s.refresh_at));
            add(future(s.retry_at));
        }
        t
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        if let Some(c) = self.conn.as_mut() {
            c.engine.handle_timeout(now.instant);
        }
        self.process_engine(now);
        self.drive(now);
    }

    // ----- the engine's events -----

    fn process_engine(&mut self, now: Now) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let Some(ev) = conn.engine.poll_event() else {
                return;
            };
            self.on_engine_event(now, ev);
        }
    }

    fn on_engine_event(&mut self, now: Now, ev: Event) {
        match ev {
            Event::Opened(_) => {
                if let Some(c) = self.conn.as_mut() {
                    c.opened = true;
                    c.opened_at = Some(now.instant);
                }
                self.conn_failures = 0;
                self.last_conn_error = None;
                info!(host = %self.options.host, "AMQP connection open");
            }
            Event::LinkAttached {
                link,
                attach,
                peer_initiated,
            } => {
                if peer_initiated {
                    if let Some(c) = self.conn.as_mut() {
                        let _ = c.engine.link(link).refuse(amqp_error(
                            "amqp:not-allowed",
                            "clients do not accept links",
                        ));
                    }
                    return;
                }
                self.on_attached(now, link, &attach);
            }
            Event::LinkDetached { link, error, .. } => self.on_detached(now, link, error),
            Event::LinkError { link, error } => self.on_detached(now, link, Some(error)),
            Event::Delivery {
                link,
                delivery_id,
                settled,
                payload,
                message_format,
                ..
            } => self.on_delivery(now, link, delivery_id, settled, payload, message_format),
            Event::Disposition {
                link,
                delivery_id,
                state,
                settled,
            } => self.on_disposition(now, link, delivery_id, state, settled),
            Event::SessionEnded { error, .. } => {
                let e = error.unwrap_or_else(|| {
                    amqp_error("amqp:connection:forced", "session ended by the service")
                });
                self.fail_connection(now, e);
            }
            Event::SessionError { error, .. } => self.fail_connection(now, error),
            Event::Closed(error) => {
                let closing = self.conn.as_ref().is_some_and(|c| c.closing);
                if closing && error.is_none() {
                    self.retire_connection(now);
                } else {
                    let e = error.unwrap_or_else(|| {
                        amqp_error("amqp:connection:forced", "connection closed by the service")
                    });
                    self.fail_connection(now, e);
                }
            }
            Event::Failed(e) => {
                let (err, kind) = match &e {
                    ConnectionError::SaslFailed(_) => (
                        ClientError::Service(amqp_error("amqp:unauthorized-access", e.to_string())),
                        RecoveryKind::Fatal,
                    ),
                    ConnectionError::NoSaslMechanism(_)
                    | ConnectionError::UnsupportedProtocol(_) => {
                        (ClientError::Connection(e.to_string()), RecoveryKind::Fatal)
                    }
                    ConnectionError::RemoteClosed(Some(a)) | ConnectionError::Protocol(a) => (
                        ClientError::Service(a.clone()),
                        classify_error(Some(a), ErrorSource::Connection),
                    ),
                    _ => (
                        ClientError::Connection(e.to_string()),
                        RecoveryKind::RecoverConnection,
                    ),
                };
                self.drop_connection(now, err, kind);
            }
            _ => {}
        }
    }

    fn retire_connection(&mut self, now: Now) {
        if let Some(c) = self.conn.take() {
            self.retire(now, c);
        }
        self.phase = Phase::Idle;
    }

    /// Asks the caller to close `c`'s transport after its last bytes.
    fn retire(&mut self, now: Now, mut c: Conn) {
        let mut final_bytes = Vec::new();
        let _ = c.engine.poll_transmit(now.instant, &mut final_bytes);
        self.events.push_back(ClientEvent::Disconnect {
            transport: c.id,
            final_bytes,
        });
    }

    /// The service ended our session or closed the connection.
    fn fail_connection(&mut self, now: Now, error: AmqpError) {
        let kind = classify_error(Some(&error), ErrorSource::Connection);
        warn!(condition = error.condition.as_str(), "connection failed");
        self.drop_connection(now, ClientError::Service(error), kind);
    }

    /// Closes our side (if still possible), asks the caller to drop the
    /// transport, and recovers.
    fn drop_connection(&mut self, now: Now, error: ClientError, kind: RecoveryKind) {
        if let Some(mut c) = self.conn.take() {
            if !c.engine.is_closed() {
                let _ = c.engine.close(None);
            }
            self.retire(now, c);
        }
        self.phase = Phase::Idle;
        self.connection_lost(now, error, kind);
    }

    /// Every link is gone: put unacknowledged work back and decide when to
    /// reconnect.
    fn connection_lost(&mut self, now: Now, error: ClientError, kind: RecoveryKind) {
        for s in self.senders.values_mut() {
            s.reset_link();
        }
        for r in self.receivers.values_mut() {
            r.link = None;
            r.attached = false;
        }
        for op in self.ops.values_mut() {
            if let OpKind::Management { in_flight, .. } = &mut op.kind {
                *in_flight = false;
            }
        }
        self.conn_failures += 1;
        let until_deadline = self.options.retry_until_deadline && !self.ops.is_empty();
        let delay = if kind == RecoveryKind::Fatal {
            None
        } else {
            retry_delay(
                &self.options.retry,
                &mut self.rng,
                self.conn_failures,
                error.condition(),
                until_deadline,
            )
        };
        self.last_conn_error = Some(error.clone());
        if delay.is_some() && self.conn_failures > self.options.retry.max_retries {
            // Retries are used up: receivers give up; operations go on
            // trying until their deadlines.
            let rs: Vec<ReceiverId> = self.receivers.keys().copied().collect();
            for r in rs {
                self.fail_receiver(r, error.clone());
            }
        }
        match delay {
            Some(d) => {
                debug!(
                    delay_ms = d.as_millis() as u64,
                    failures = self.conn_failures,
                    "reconnecting after a delay"
                );
                self.phase = Phase::Backoff(now.instant + d);
            }
            None => {
                warn!(error = %error, "giving up on the connection");
                self.phase = Phase::Idle;
                self.conn_failures = 0;
                self.fail_everything(error);
            }
        }
    }

    fn fail_everything(&mut self, error: ClientError) {
        let ops: Vec<OpId> = self.ops.keys().copied().collect();
        for op in ops {
            self.fail_op(op, error.clone());
        }
        let rs: Vec<ReceiverId> = self.receivers.keys().copied().collect();
        for r in rs {
            self.fail_receiver(r, error.clone());
        }
    }

    fn on_attached(
        &mut self,
        now: Now,
        link: LinkId,
        attach: &crate::codec::performatives::Attach,
    ) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match conn.owners.get(&link) {
            Some(Owner::CbsTx) => conn.cbs.tx_up = attach.target.is_some(),
            Some(Owner::CbsRx) => {
                conn.cbs.rx_up = attach.source.is_some();
                let _ = conn.engine.link(link).flow(REPLY_CREDIT);
            }
            Some(Owner::MgmtTx) => conn.mgmt.tx_up = attach.target.is_some(),
            Some(Owner::MgmtRx) => {
                conn.mgmt.rx_up = attach.source.is_some();
                let _ = conn.engine.link(link).flow(REPLY_CREDIT);
            }
            Some(Owner::Sender(key)) => {
                if attach.target.is_none() {
                    return; // refused: the detach follows
                }
                let key = key.clone();
                if let Some(s) = self.senders.get_mut(&key) {
                    s.attached = true;
                    s.attached_at = Some(now.instant);
                    s.max_message_size = match attach.max_message_size {
                        Some(n) if n > 0 => n,
                        _ => DEFAULT_MAX_MESSAGE_SIZE,
                    };
                    debug!(target = ?key, max_message_size = s.max_message_size, "sender attached");
                }
            }
            Some(Owner::Receiver(id)) => {
                if attach.source.is_none() {
                    return;
                }
                if let Some(r) = self.receivers.get_mut(id) {
                    r.attached = true;
                    r.attached_at = Some(now.instant);
                    let _ = conn.engine.link(link).flow(r.budget);
                    debug!(partition = %r.options.partition_id, credit = r.budget, "receiver attached");
                    if !r.announced {
                        r.announced = true;
                        self.events
                            .push_back(ClientEvent::ReceiverOpened { receiver: *id });
                    }
                }
            }
            Some(Owner::Gone) => {
                let _ = conn.engine.link(link).close(None);
            }
            None => {}
        }
    }

    fn on_detached(&mut self, now: Now, link: LinkId, error: Option<AmqpError>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(owner) = conn.owners.remove(&link) else {
            return;
        };
        match owner {
            Owner::Gone => {}
            Owner::CbsTx | Owner::CbsRx | Owner::MgmtTx | Owner::MgmtRx => {
                // The request/response nodes are the connection's spine:
                // recover the whole connection, under its backoff.
                let e = error.unwrap_or_else(|| {
                    amqp_error(
                        "amqp:link:detach-forced",
                        "service detached a $cbs or $management link",
                    )
                });
                self.fail_connection(now, e);
            }
            Owner::Sender(key) => {
                let Some(s) = self.senders.get_mut(&key) else {
                    return;
                };
                s.reset_link();
                let failures = count_failure(&mut s.failures, s.attached_at, now);
                warn!(target = ?key, condition = ?error.as_ref().map(|e| e.condition.as_str()), "sender detached");
                match self.link_retry_delay(failures, error.as_ref(), true) {
                    Some(d) => {
                        if let Some(s) = self.senders.get_mut(&key) {
                            s.retry_at = Some(now.instant + d);
                        }
                    }
                    None => self.fail_sender(&key, detach_error(error, "sender detached")),
                }
            }
            Owner::Receiver(id) => {
                let Some(r) = self.receivers.get_mut(&id) else {
                    return;
                };
                r.link = None;
                r.attached = false;
                let failures = count_failure(&mut r.failures, r.attached_at, now);
                warn!(partition = %r.options.partition_id, condition = ?error.as_ref().map(|e| e.condition.as_str()), "receiver detached");
                match self.link_retry_delay(failures, error.as_ref(), false) {
                    Some(d) => {
                        if let Some(r) = self.receivers.get_mut(&id) {
                            r.retry_at = Some(now.instant + d);
                        }
                    }
                    None => self.fail_receiver(id, detach_error(error, "receiver detached")),
                }
            }
        }
    }

    /// How long to wait before re-attaching a link detached with `error`
    /// after `failures` failures in a row; `None` to give up.
    fn link_retry_delay(
        &mut self,
        failures: u32,
        error: Option<&AmqpError>,
        until_deadline: bool,
    ) -> Option<Duration> {
        if classify_error(error, ErrorSource::Link) == RecoveryKind::Fatal {
            return None;
        }
        let until_deadline = until_deadline && self.options.retry_until_deadline;
        retry_delay(
            &self.options.retry,
            &mut self.rng,
            failures,
            error.map(|e| &e.condition),
            until_deadline,
        )
    }

    fn on_delivery(
        &mut self,
        now: Now,
        link: LinkId,
        delivery_id: u32,
        settled: bool,
        payload: Bytes,
        format: u32,
    ) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if !settled {
            let _ = conn.engine.link(link).accept(delivery_id);
        }
        match conn.owners.get(&link) {
            Some(Owner::CbsRx) | Some(Owner::MgmtRx) => {
                let _ = conn.engine.link(link).flow(REPLY_CREDIT);
                match Message::decode_all(&payload) {
                    Ok(m) => self.on_response(now, m),
                    Err(e) => warn!(error = %e, "undecodable RPC response dropped"),
                }
            }
            Some(Owner::Receiver(id)) => {
                let id = *id;
                self.on_event_delivery(now, id, link, payload, format);
            }
            _ => {}
        }
    }

    fn on_event_delivery(
        &mut self,
        now: Now,
        id: ReceiverId,
        link: LinkId,
        payload: Bytes,
        format: u32,
    ) {
        let Some(r) = self.receivers.get_mut(&id) else {
            return;
        };
        r.budget = r.budget.saturating_sub(1);
        let messages = Message::decode_all(&payload).and_then(|m| {
            if format == BATCH_MESSAGE_FORMAT {
                m.unbatch()
            } else {
                Ok(vec![m])
            }
        });
        let events: Result<Vec<ReceivedEvent>, ClientError> = messages
            .map_err(|e| ClientError::Service(amqp_error("amqp:decode-error", e.to_string())))
            .and_then(|ms| {
                ms.into_iter()
                    .map(|m| {
                        ReceivedEvent::from_message(&r.options.partition_id, m).map_err(|e| {
                            ClientError::Service(amqp_error("amqp:decode-error", e.to_string()))
                        })
                    })
                    .collect()
            });
        match events {
            Ok(events) => {
                let mut dropped = 0u32;
                for event in events {
                    let seq = event.system.sequence_number;
                    if r.last_sequence_number.is_some_and(|last| seq <= last) {
                        dropped += 1;
                        continue;
                    }
                    r.last_sequence_number = Some(seq);
                    r.failures = 0;
                    self.events.push_back(ClientEvent::Received {
                        receiver: id,
                        event: Box::new(event),
                    });
                }
                if dropped > 0 {
                    debug!(dropped, "duplicate events dropped");
                    r.budget = r.budget.saturating_add(1);
                    if let Some(c) = self.conn.as_mut() {
                        let _ = c.engine.link(link).flow(r.budget);
                    }
                }
            }
            Err(ClientError::Service(e)) => {
                // A message we cannot read: detach with the condition and
                // let the receiver's retry policy decide.
                warn!(error = ?e.description, "undecodable event; detaching receiver");
                if let Some(c) = self.conn.as_mut() {
                    let _ = c.engine.link(link).close(Some(e.clone()));
                }
                self.on_detached(now, link, Some(e));
            }
            Err(_) => {}
        }
    }

    fn on_response(&mut self, now: Now, m: Message) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(cid) = correlation_id(&m) else {
            warn!("RPC response without correlation id dropped");
            return;
        };
        let Some(rpc) = conn.rpcs.remove(&cid) else {
            return;
        };
        let status = response_status(&m);
        match rpc {
            Rpc::PutToken {
                audience,
                generation,
            } => {
                let status = status.unwrap_or(super::rpc::RpcStatus {
                    code: 500,
                    description: Some("no status".into()),
                    condition: None,
                });
                if status.is_success() {
                    debug!(audience = %audience, code = status.code, "put-token accepted");
                    conn.auth.insert(audience.clone(), Auth::Done(generation));
                    if let Some(s) = self.tokens.get_mut(&audience) {
                        s.failures = 0;
                    }
                } else {
                    conn.auth.remove(&audience);
                    warn!(audience = %audience, code = status.code, "put-token refused");
                    let err =
                        ClientError::status(status.code, status.description, status.condition);
                    let kind = err.recovery();
                    self.token_failed(now, &audience, err, Some(kind));
                }
            }
            Rpc::Management(op) => {
                let Some(o) = self.ops.get_mut(&op) else {
                    return;
                };
                let OpKind::Management {
                    what,
                    attempt,
                    not_before,
                    in_flight,
                } = &mut o.kind
                else {
                    return;
                };
                *in_flight = false;
                let status = status.unwrap_or(super::rpc::RpcStatus {
                    code: 500,
                    description: Some("no status".into()),
                    condition: None,
                });
                if status.is_success() {
                    let what = what.clone();
                    self.ops.remove(&op);
                    self.events.push_back(match what {
                        ManagementRequest::Hub => ClientEvent::HubInformation {
                            op,
                            result: parse_hub_information(&m).map_err(ClientError::from),
                        },
                        ManagementRequest::Partition(_) => ClientEvent::PartitionInformation {
                            op,
                            result: parse_partition_information(&m).map_err(ClientError::from),
                        },
                    });
                } else {
                    let err =
                        ClientError::status(status.code, status.description, status.condition);
                    *attempt += 1;
                    let delay = (err.recovery() != RecoveryKind::Fatal)
                        .then(|| {
                            retry_delay(
                                &self.options.retry,
                                &mut self.rng,
                                *attempt,
                                err.condition(),
                                self.options.retry_until_deadline,
                            )
                        })
                        .flatten();
                    match delay {
                        Some(d) => {
                            *not_before = Some(now.instant + d);
                            self.mgmt_queue.push_back(op);
                        }
                        None => self.fail_op(op, err),
                    }
                }
            }
        }
    }

    fn on_disposition(
        &mut self,
        now: Now,
        link: LinkId,
        delivery_id: u32,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(Owner::Sender(key)) = conn.owners.get(&link) else {
            return;
        };
        let key = key.clone();
        let Some(s) = self.senders.get_mut(&key) else {
            return;
        };
        let outcome = match state {
            Some(DeliveryState::Accepted(_)) => Ok(()),
            Some(DeliveryState::Rejected(r)) => Err(r
                .error
                .unwrap_or_else(|| amqp_error("amqp:internal-error", "rejected without an error"))),
            Some(DeliveryState::Released(_)) | Some(DeliveryState::Modified(_)) => Err(amqp_error(
                "com.microsoft:operation-cancelled",
                "released by the service",
            )),
            None if settled => Ok(()),
            _ => return, // not final yet
        };
        let Some(mut unit) = s.in_flight.remove(&delivery_id) else {
            return;
        };
        match outcome {
            Ok(()) => {
                s.failures = 0;
                let op = unit.op;
                let done = match self.ops.get_mut(&op) {
                    Some(Op {
                        kind: OpKind::Send { units_left, .. },
                        ..
                    }) => {
                        *units_left = units_left.saturating_sub(1);
                        *units_left == 0
                    }
                    _ => false,
                };
                if done {
                    self.ops.remove(&op);
                    self.events
                        .push_back(ClientEvent::SendComplete { op, result: Ok(()) });
                }
            }
            Err(e) => {
                unit.attempt += 1;
                let delay = retry_delay(
                    &self.options.retry,
                    &mut self.rng,
                    unit.attempt,
                    Some(&e.condition),
                    self.options.retry_until_deadline,
                );
                debug!(
                    condition = e.condition.as_str(),
                    attempt = unit.attempt,
                    "transfer not accepted"
                );
                match delay {
                    Some(d) if self.ops.contains_key(&unit.op) => {
                        unit.not_before = Some(now.instant + d);
                        // Keep the op's transfers in order: retry before
                        // anything queued after it.
                        s.queue.push_front(unit);
                    }
                    _ => {
                        let op = unit.op;
                        self.fail_op(op, ClientError::Service(e));
                    }
                }
            }
        }
    }

    // ----- failing things -----

    fn fail_op(&mut self, op: OpId, error: ClientError) {
        let Some(o) = self.ops.remove(&op) else {
            return;
        };
        match o.kind {
            OpKind::Send { target, .. } => {
                if let Some(s) = self.senders.get_mut(&target) {
                    s.unsplit.retain(|x| *x != op);
                    s.queue.retain(|u| u.op != op);
                    // In-flight transfers of the op stay tracked so that
                    // credit and delivery ids remain consistent; their
                    // outcome no longer reaches anyone.
                }
                self.events.push_back(ClientEvent::SendComplete {
                    op,
                    result: Err(error),
                });
            }
            OpKind::Management { what, .. } => {
                self.mgmt_queue.retain(|x| *x != op);
                self.events.push_back(match what {
                    ManagementRequest::Hub => ClientEvent::HubInformation {
                        op,
                        result: Err(error),
                    },
                    ManagementRequest::Partition(_) => ClientEvent::PartitionInformation {
                        op,
                        result: Err(error),
                    },
                });
            }
        }
    }

    fn fail_sender(&mut self, key: &Option<String>, error: ClientError) {
        let mut ops: Vec<OpId> = Vec::new();
        if let Some(s) = self.senders.get_mut(key) {
            ops.extend(s.unsplit.iter().copied());
            ops.extend(s.queue.iter().map(|u| u.op));
            ops.extend(s.in_flight.values().map(|u| u.op));
            s.in_flight.clear();
            s.failures = 0;
            s.retry_at = None;
        }
        ops.sort();
        ops.dedup();
        for op in ops {
            self.fail_op(op, error.clone());
        }
    }

    fn fail_receiver(&mut self, id: ReceiverId, error: ClientError) {
        if let Some(r) = self.receivers.remove(&id) {
            warn!(partition = %r.options.partition_id, error = %error, "receiver failed");
            self.detach_gone(r.link);
            self.events.push_back(ClientEvent::ReceiverClosed {
                receiver: id,
                error: Some(error),
            });
        }
    }

    fn detach_gone(&mut self, link: Option<LinkId>) {
        if let (Some(link), Some(c)) = (link, self.conn.as_mut()) {
            if let Some(owner) = c.owners.get_mut(&link) {
                *owner = Owner::Gone;
                let _ = c.engine.link(link).close(None);
            }
        }
    }

    /// A token could not be had or was refused: what depends on the
    /// audience fails, or waits for a retry.
    fn token_failed(
        &mut self,
        now: Now,
        audience: &str,
        error: ClientError,
        kind: Option<RecoveryKind>,
    ) {
        let slot = self.tokens.entry(audience.to_owned()).or_default();
        slot.failures += 1;
        let until_deadline = self.options.retry_until_deadline && !self.ops.is_empty();
        let delay = (kind.unwrap_or(RecoveryKind::Fatal) != RecoveryKind::Fatal)
            .then(|| {
                retry_delay(
                    &self.options.retry,
                    &mut self.rng,
                    slot.failures,
                    error.condition(),
                    until_deadline,
                )
            })
            .flatten();
        if let Some(d) = delay {
            slot.retry_at = Some(now.instant + d);
            return;
        }
        slot.failures = 0;
        slot.token = None;
        slot.refresh_at = None;
        let senders: Vec<Option<String>> = self
            .senders
            .keys()
            .filter(|k| self.sender_audience(k) == audience)
            .cloned()
            .collect();
        for k in senders {
            self.fail_sender(&k, error.clone());
        }
        let receivers: Vec<ReceiverId> = self
            .receivers
            .iter()
            .filter(|(_, r)| self.receiver_audience(&r.options) == audience)
            .map(|(id, _)| *id)
            .collect();
        for r in receivers {
            self.fail_receiver(r, error.clone());
        }
        if self.management_audience() == audience {
            let ops: Vec<OpId> = self.mgmt_queue.iter().copied().collect();
            for op in ops {
                self.fail_op(op, error.clone());
            }
            let in_flight: Vec<OpId> = self
                .ops
                .iter()
                .filter(|(_, o)| matches!(o.kind, OpKind::Management { .. }))
                .map(|(id, _)| *id)
                .collect();
            for op in in_flight {
                self.fail_op(op, error.clone());
            }
        }
    }

    fn install_token(&mut self, now: Now, audience: &str, token: Token) {
        let slot = self.tokens.entry(audience.to_owned()).or_default();
        slot.refresh_at = refresh_delay(now.unix_secs(), &token).map(|d| now.instant + d);
        slot.generation += 1;
        slot.token = Some(token);
        slot.retry_at = None;
    }

    // ----- making progress -----

    fn has_work(&self) -> bool {
        !self.ops.is_empty() || !self.receivers.is_empty()
    }

    /// Audiences the current work needs.
    fn needed_audiences(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        let mut add = |a: String| {
            if !v.contains(&a) {
                v.push(a);
            }
        };
        for (k, s) in &self.senders {
            if s.has_work() || s.link.is_some() {
                add(self.sender_audience(k));
            }
        }
        for r in self.receivers.values() {
            add(self.receiver_audience(&r.options));
        }
        if !self.mgmt_queue.is_empty() {
            add(self.management_audience());
        }
        v
    }

    fn drive(&mut self, now: Now) {
        self.last_now = Some(self.last_now.map_or(now.instant, |l| l.max(now.instant)));
        if self.closed {
            return;
        }
        self.expire(now);
        if self.uses_cbs() {
            self.acquire_tokens(now);
        }
        self.manage_connection(now);
        if self.conn.as_ref().is_some_and(|c| c.opened && !c.closing) {
            if self.uses_cbs() {
                self.put_tokens(now);
            }
            self.run_senders(now);
            self.run_receivers(now);
            self.run_management(now);
        }
        self.check_close(now);
    }

    fn expire(&mut self, now: Now) {
        let due: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, o)| o.deadline <= now.instant)
            .map(|(id, _)| *id)
            .collect();
        for op in due {
            let err = match (&self.last_conn_error, &self.phase) {
                (Some(e), Phase::Backoff(_) | Phase::Idle) if self.conn.is_none() => e.clone(),
                _ => ClientError::Timeout,
            };
            let err = if matches!(err, ClientError::Connection(_)) {
                ClientError::Timeout
            } else {
                err
            };
            self.fail_op(op, err);
        }
    }

    fn acquire_tokens(&mut self, now: Now) {
        for audience in self.needed_audiences() {
            let slot = self.tokens.entry(audience.clone()).or_default();
            let due = match (&slot.token, slot.refresh_at) {
                (None, _) => true,
                (Some(_), Some(at)) => at <= now.instant,
                (Some(_), None) => false,
            };
            if !due || slot.requested || slot.retry_at.is_some_and(|t| t > now.instant) {
                continue;
            }
            slot.retry_at = None;
            match &mut self.options.credential {
                Credential::Provider(p) => match p.token(&audience, now.unix_secs()) {
                    Ok(t) => self.install_token(now, &audience, t),
                    Err(e) => self.token_failed(now, &audience, ClientError::Token(e), None),
                },
                Credential::External => {
                    slot.requested = true;
                    self.events
                        .push_back(ClientEvent::TokenRequired { audience });
                }
                Credential::Plain { .. } => {}
            }
        }
    }

    fn manage_connection(&mut self, now: Now) {
        if let Some(c) = &self.conn {
            if !c.opened && c.deadline <= now.instant {
                self.drop_connection(
                    now,
                    ClientError::Connection("AMQP open timed out".into()),
                    RecoveryKind::RecoverConnection,
                );
            }
        }
        match self.phase {
            Phase::Backoff(at) if at <= now.instant => self.phase = Phase::Idle,
            Phase::Connecting { id, deadline } if deadline <= now.instant => {
                self.events.push_back(ClientEvent::Disconnect {
                    transport: id,
                    final_bytes: Vec::new(),
                });
                self.connect_failed(now, id, "connect timed out");
                return;
            }
            _ => {}
        }
        // With CBS, connect only once a token is at hand: the service closes
        // a connection that puts no token within ~20 s of opening.
        let token_ready = !self.uses_cbs()
            || self
                .needed_audiences()
                .iter()
                .any(|a| self.tokens.get(a).is_some_and(|s| s.token.is_some()));
        let wants =
            self.has_work() && token_ready && self.closing.is_none_or(|_| !self.ops.is_empty());
        if matches!(self.phase, Phase::Idle) && self.conn.is_none() && wants {
            let id = TransportId(self.next_transport);
            self.next_transport += 1;
            self.phase = Phase::Connecting {
                id,
                deadline: now.instant + self.options.connect_timeout,
            };
            debug!(transport = id.0, "connecting");
            self.events.push_back(ClientEvent::Connect(id));
        }
    }

    fn link_name(&mut self, kind: &str) -> String {
        let n = self.next_id();
        format!(
            "{}-{kind}-{:08x}-{n}",
            self.options.container_id, self.id_prefix as u32
        )
    }

    fn attach_rpc_pair(&mut self, node: &'static str) {
        let tx_name = self.link_name(&format!("{node}-tx"));
        let rx_name = self.link_name(&format!("{node}-rx"));
        let reply_to = format!(
            "{}-reply-{:08x}-{}",
            node.trim_start_matches('$'),
            self.id_prefix as u32,
            self.next_id()
        );
        let Some(c) = self.conn.as_mut() else { return };
        let desired = if node == "$management" {
            vec![Symbol::from_static(GEOREPLICATION)]
        } else {
            Vec::new()
        };
        let tx = c.engine.session(c.session).attach(LinkConfig {
            name: tx_name,
            role: Role::Sender,
            source: Some(Source::with_address(reply_to.clone())),
            target: Some(Target::with_address(node)),
            desired_capabilities: desired.clone(),
            ..LinkConfig::default()
        });
        let rx = c.engine.session(c.session).attach(LinkConfig {
            name: rx_name,
            role: Role::Receiver,
            source: Some(Source::with_address(node)),
            target: Some(Target::with_address(reply_to.clone())),
            desired_capabilities: desired,
            ..LinkConfig::default()
        });
        let (Ok(tx), Ok(rx)) = (tx, rx) else { return };
        let (tx_owner, rx_owner) = if node == "$cbs" {
            (Owner::CbsTx, Owner::CbsRx)
        } else {
            (Owner::MgmtTx, Owner::MgmtRx)
        };
        c.owners.insert(tx, tx_owner);
        c.owners.insert(rx, rx_owner);
        let pair = RpcPair {
            tx: Some(tx),
            tx_up: false,
            rx_up: false,
            reply_to,
        };
        if node == "$cbs" {
            c.cbs = pair;
        } else {
            c.mgmt = pair;
        }
    }

    /// True when `audience` is authorised on the current connection.
    fn authorised(&self, audience: &str) -> bool {
        if !self.uses_cbs() {
            return true;
        }
        // Authorised with the current token: while a refreshed token is
        // being put, new links wait for it, so that an attach never
        // overtakes the put-token that covers it.
        let generation = self.tokens.get(audience).map_or(0, |s| s.generation);
        self.conn
            .as_ref()
            .is_some_and(|c| c.auth.get(audience) == Some(&Auth::Done(generation)))
    }

    fn put_tokens(&mut self, _now: Now) {
        if self.conn.as_ref().is_some_and(|c| c.cbs.tx.is_none()) {
            self.attach_rpc_pair("$cbs");
        }
        let needed = self.needed_audiences();
        for audience in needed {
            let Some(slot) = self.tokens.get(&audience) else {
                continue;
            };
            let Some(token) = slot.token.clone() else {
                continue;
            };
            let generation = slot.generation;
            let n = self.next_id();
            let message_id = format!("{:016x}-{n}", self.id_prefix);
            let Some(c) = self.conn.as_mut() else { return };
            let current = c.auth.get(&audience).copied();
            let stale = match current {
                None => true,
                Some(Auth::Done(g)) => g < generation,
                Some(Auth::Putting) => false,
            };
            if !stale || !c.cbs.ready() {
                continue;
            }
            let Some(tx) = c.cbs.tx else { continue };
            if c.engine.credit(tx) == 0 {
                continue;
            }
            let request = put_token_request(&message_id, &c.cbs.reply_to, &audience, &token);
            let tag = Bytes::from(message_id.clone().into_bytes());
            if c.engine
                .link(tx)
                .send(tag, 0, Settlement::Settled, request.to_bytes())
                .is_ok()
            {
                debug!(audience = %audience, "put-token sent");
                if current.is_none() {
                    c.auth.insert(audience.clone(), Auth::Putting);
                }
                c.rpcs.insert(
                    message_id,
                    Rpc::PutToken {
                        audience,
                        generation,
                    },
                );
            }
        }
    }

    fn run_senders(&mut self, now: Now) {
        let keys: Vec<Option<String>> = self.senders.keys().cloned().collect();
        for key in keys {
            let audience = self.sender_audience(&key);
            let authorised = self.authorised(&audience);
            let address = match &key {
                None => self.options.hub.clone(),
                Some(p) => format!("{}/Partitions/{p}", self.options.hub),
            };
            let Some(s) = self.senders.get_mut(&key) else {
                continue;
            };
            let Some(c) = self.conn.as_mut() else { return };
            if s.link.is_none() {
                if !s.has_work() || !authorised || s.retry_at.is_some_and(|t| t > now.instant) {
                    continue;
                }
                s.retry_at = None;
                let name = self.link_name("sender");
                let Some(s) = self.senders.get_mut(&key) else {
                    continue;
                };
                let Some(c) = self.conn.as_mut() else {
                    return;
                };
                let config = LinkConfig {
                    name: name.clone(),
                    role: Role::Sender,
                    source: Some(Source::with_address(name)),
                    target: Some(Target::with_address(address)),
                    snd_settle_mode: crate::codec::performatives::SenderSettleMode::Unsettled,
                    max_message_size: None,
                    desired_capabilities: vec![Symbol::from_static(GEOREPLICATION)],
                    ..LinkConfig::default()
                };
                if let Ok(link) = c.engine.session(c.session).attach(config) {
                    c.owners.insert(link, Owner::Sender(key.clone()));
                    s.link = Some(link);
                    s.attached = false;
                }
                continue;
            }
            if !s.attached {
                continue;
            }
            // Split waiting sends now that the limit is known.
            while let Some(op) = s.unsplit.pop_front() {
                let Some(Op {
                    kind:
                        OpKind::Send {
                            events, units_left, ..
                        },
                    ..
                }) = self.ops.get_mut(&op)
                else {
                    continue;
                };
                let max = usize::try_from(s.max_message_size).unwrap_or(usize::MAX);
                let units: Result<Vec<(Bytes, u32)>, ClientError> = if events.len() == 1 {
                    let m = events[0].to_message();
                    let len = m.encoded_len();
                    if len > max {
                        Err(ClientError::Batch(
                            super::batch::BatchError::EventTooLarge {
                                index: 0,
                                size: len,
                                max,
                            },
                        ))
                    } else {
                        Ok(vec![(m.to_bytes(), 0)])
                    }
                } else {
                    split_into_batches(events, max)
                        .map(|bs| bs.iter().map(|b| b.encode()).collect())
                        .map_err(ClientError::from)
                };
                match units {
                    Ok(units) => {
                        *units_left = units.len();
                        events.clear();
                        for (payload, format) in units {
                            s.queue.push_back(Unit {
                                op,
                                payload,
                                format,
                                attempt: 0,
                                not_before: None,
                            });
                        }
                    }
                    Err(e) => {
                        self.events
                            .push_back(ClientEvent::SendComplete { op, result: Err(e) });
                        self.ops.remove(&op);
                    }
                }
            }
            let Some(link) = s.link else { continue };
            while c.engine.credit(link) > 0 {
                // The first unit whose retry delay has passed, keeping
                // order: a unit waiting on a delay blocks those behind it.
                match s.queue.front() {
                    Some(u) if u.not_before.is_none_or(|t| t <= now.instant) => {}
                    _ => break,
                }
                let Some(unit) = s.queue.pop_front() else {
                    break;
                };
                s.next_tag += 1;
                let tag = Bytes::copy_from_slice(&s.next_tag.to_be_bytes());
                match c.engine.link(link).send(
                    tag,
                    unit.format,
                    Settlement::Unsettled,
                    unit.payload.clone(),
                ) {
                    Ok(delivery_id) => {
                        s.in_flight.insert(delivery_id, unit);
                    }
                    Err(e) => {
                        debug!(error = %e, "send refused by the engine");
                        s.queue.push_front(unit);
                        break;
                    }
                }
            }
        }
    }

    fn run_receivers(&mut self, now: Now) {
        let ids: Vec<ReceiverId> = self.receivers.keys().copied().collect();
        for id in ids {
            let Some(r) = self.receivers.get(&id) else {
                continue;
            };
            if r.link.is_some() || r.retry_at.is_some_and(|t| t > now.instant) {
                continue;
            }
            let audience = self.receiver_audience(&r.options);
            if !self.authorised(&audience) {
                continue;
            }
            let name = self.link_name("receiver");
            let Some(r) = self.receivers.get(&id) else {
                continue;
            };
            let o = &r.options;
            let address = format!(
                "{}/ConsumerGroups/{}/Partitions/{}",
                self.options.hub, o.consumer_group, o.partition_id
            );
            let position = match r.last_sequence_number {
                Some(seq) => EventPosition::sequence_number(seq, false),
                None => o.position.clone(),
            };
            let mut props = Fields::new();
            if let Some(epoch) = o.owner_level {
                props.insert(
                    Symbol::from_static("com.microsoft:epoch"),
                    Value::Long(epoch),
                );
            }
            if let Some(ident) = &o.identifier {
                props.insert(
                    Symbol::from_static("com.microsoft:receiver-name"),
                    Value::String(ident.as_str().into()),
                );
            }
            let mut desired = vec![Symbol::from_static(GEOREPLICATION)];
            if o.track_last_enqueued {
                desired.push(Symbol::from_static(RUNTIME_METRIC));
            }
            let config = LinkConfig {
                name: name.clone(),
                role: Role::Receiver,
                source: Some(Source {
                    address: Some(address.into()),
                    filter: Some(position.filter_set()),
                    ..Default::default()
                }),
                target: Some(Target::with_address(name)),
                properties: (!props.is_empty()).then_some(props),
                desired_capabilities: desired,
                ..LinkConfig::default()
            };
            let Some(c) = self.conn.as_mut() else { return };
            if let Ok(link) = c.engine.session(c.session).attach(config) {
                c.owners.insert(link, Owner::Receiver(id));
                if let Some(r) = self.receivers.get_mut(&id) {
                    debug!(partition = %r.options.partition_id, position = %position, "attaching receiver");
                    r.link = Some(link);
                    r.attached = false;
                    r.retry_at = None;
                }
            }
        }
    }

    fn run_management(&mut self, now: Now) {
        if self.mgmt_queue.is_empty() {
            return;
        }
        let audience = self.management_audience();
        if !self.authorised(&audience) {
            return;
        }
        if self.conn.as_ref().is_some_and(|c| c.mgmt.tx.is_none()) {
            self.attach_rpc_pair("$management");
        }
        let token = self
            .tokens
            .get(&audience)
            .and_then(|s| s.token.as_ref())
            .map(|t| t.token.clone());
        let mut waiting = VecDeque::new();
        while let Some(op) = self.mgmt_queue.pop_front() {
            let n = self.next_id();
            let message_id = format!("{:016x}-{n}", self.id_prefix);
            let Some(c) = self.conn.as_mut() else { return };
            let Some(Op {
                kind:
                    OpKind::Management {
                        what,
                        not_before,
                        in_flight,
                        ..
                    },
                ..
            }) = self.ops.get_mut(&op)
            else {
                continue;
            };
            let (Some(tx), true) = (c.mgmt.tx, c.mgmt.ready()) else {
                waiting.push_back(op);
                continue;
            };
            if not_before.is_some_and(|t| t > now.instant) || c.engine.credit(tx) == 0 {
                waiting.push_back(op);
                continue;
            }
            let request = management_request(
                &message_id,
                &c.mgmt.reply_to,
                &self.options.hub,
                what,
                token.as_deref(),
            );
            let tag = Bytes::from(message_id.clone().into_bytes());
            if c.engine
                .link(tx)
                .send(tag, 0, Settlement::Settled, request.to_bytes())
                .is_ok()
            {
                *in_flight = true;
                *not_before = None;
                c.rpcs.insert(message_id, Rpc::Management(op));
            } else {
                waiting.push_back(op);
            }
        }
        self.mgmt_queue = waiting;
    }

    fn check_close(&mut self, now: Now) {
        let Some(deadline) = self.closing else { return };
        if now.instant >= deadline {
            let ops: Vec<OpId> = self.ops.keys().copied().collect();
            for op in ops {
                self.fail_op(op, ClientError::Closed);
            }
        }
        if !self.ops.is_empty() {
            return;
        }
        match self.conn.as_mut() {
            Some(c) if c.opened && !c.closing && now.instant < deadline => {
                c.closing = true;
                let _ = c.engine.close(None);
                return;
            }
            Some(c) if c.closing && now.instant < deadline => return, // waiting for the peer's close
            _ => {}
        }
        if let Some(c) = self.conn.take() {
            self.retire(now, c);
        }
        if let Phase::Connecting { id, .. } = self.phase {
            self.events.push_back(ClientEvent::Disconnect {
                transport: id,
                final_bytes: Vec::new(),
            });
        }
        self.phase = Phase::Idle;
        self.closed = true;
        info!("client closed");
        self.events.push_back(ClientEvent::Closed);
    }
}

/// The policy's delay before retry `attempt`; once its retries are used
/// up and `until_deadline`, its largest step again (the caller's deadline
/// ends the retrying). `None` to give up: fatal conditions, retrying
/// disabled, or retries used up otherwise.
fn retry_delay(
    policy: &RetryPolicy,
    rng: &mut SplitMix64,
    attempt: u32,
    condition: Option<&Symbol>,
    until_deadline: bool,
) -> Option<Duration> {
    let bits = rng.next_u64();
    if let Some(d) = policy.next_delay(attempt, condition, bits) {
        return Some(d);
    }
    if !until_deadline || attempt <= policy.max_retries {
        // Disabled, or refused for its condition.
        return None;
    }
    policy.next_delay(policy.max_retries, condition, bits)
}

/// Counts one more failure of a link, starting afresh when it had stayed
/// attached for [`HEALTHY_SPAN`]; returns the count.
fn count_failure(failures: &mut u32, attached_at: Option<Instant>, now: Now) -> u32 {
    if attached_at.is_some_and(|t| now.instant.saturating_duration_since(t) >= HEALTHY_SPAN) {
        *failures = 0;
    }
    *failures += 1;
    *failures
}

/// The error to report for a detach, with a stand-in when the service gave
/// none.
fn detach_error(error: Option<AmqpError>, what: &'static str) -> ClientError {
    ClientError::Service(error.unwrap_or_else(|| amqp_error("amqp:link:detach-forced", what)))
}

/// How long after `now_unix_secs` to put a fresh token: 10 minutes before expiry (Go), or a fifth of
/// the remaining life before it for shorter tokens; never for tokens of
/// unknown expiry.
fn refresh_delay(now_unix_secs: u64, token: &Token) -> Option<Duration> {
    if token.expires_at_unix == 0 {
        return None;
    }
    let remaining = Duration::from_secs(token.expires_at_unix.saturating_sub(now_unix_secs));
    let lead = (remaining / 5).min(Duration::from_secs(600));
    Some(remaining.saturating_sub(lead).max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_key() {
        let o = ClientOptions::new(
            "ns.servicebus.windows.net",
            "hub",
            Credential::Plain {
                key_name: "policy".into(),
                key: "s3cr3t-key".into(),
            },
        );
        let client = Client::new(o);
        let shown = format!("{:?} {:?}", client.options(), client);
        assert!(shown.contains("policy"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn refresh_comes_ten_minutes_early_or_at_four_fifths_of_short_lives() {
        let now = 1_000_000_000;
        let token = |secs: u64| Token {
            token: String::new(),
            expires_at_unix: 1_000_000_000 + secs,
            token_type: crate::eventhubs::sas::TokenType::SasToken,
        };
        let at = |secs| refresh_delay(now, &token(secs));
        assert_eq!(at(7200), Some(Duration::from_secs(6600)));
        assert_eq!(at(300), Some(Duration::from_secs(240)));
        assert_eq!(
            at(0),
            Some(Duration::from_secs(1)),
            "an expired token is replaced at once"
        );
        let unknown = Token {
            expires_at_unix: 0,
            ..token(0)
        };
        assert_eq!(refresh_delay(now, &unknown), None);
    }
}
