//! The sans-IO broker model: every connection's AMQP engine, the hubs'
//! partition logs, claims-based security and the receivers' cursors. It
//! reads no clock and does no I/O; a runtime (see [`crate::server`]) or a
//! deterministic simulation drives it with bytes and time.
//!
//! Faults can be injected deterministically: [`Broker::detach_links`],
//! [`Broker::throttle_sends`], [`Broker::set_response_delay`],
//! [`Broker::close_connection`] and [`Broker::disconnect`]. Appended events
//! can be handed out for persistence ([`Broker::record_appends`],
//! [`Broker::take_appended`]) and restored at start ([`Broker::restore`]).
//!
//! Every map is ordered, so the same inputs give the same bytes out.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::codec::message::{Body, Message, BATCH_MESSAGE_FORMAT};
use eventhubs_proto::codec::messaging::{
    Accepted, AnnotationKey, DeliveryState, MessageId, Properties, Rejected,
};
use eventhubs_proto::codec::performatives::{AmqpError, Role};
use eventhubs_proto::codec::{
    format_code, AmqpString, Array, Decode, Encode, Form, Map, Symbol, Timestamp, Value,
};
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, Event, Half, LinkConfig, LinkId, SaslConfig, SessionConfig,
    Settlement, Side,
};
use eventhubs_proto::eventhubs::partition_key::partition_index;
use eventhubs_proto::eventhubs::sas::SharedAccessSignature;
use eventhubs_proto::eventhubs::{EventPosition, RoundRobin};
use eventhubs_proto::management::{EntityStatus, DEFAULT_CONSUMER_GROUP};
use tracing::{debug, info, warn};

use crate::config::{EmulatorConfig, HubConfig, Policy};
use crate::idempotent::{self, Producer, ProducerState, Producers};
use crate::quirks::{self, LateOutcomes};

mod guard;

/// A decoded request: message id, reply-to, application properties, body.
type Request = (
    Option<MessageId>,
    Option<String>,
    Map<AmqpString, Value>,
    Value,
);

/// A connection, as the broker names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Time as the broker sees it: a monotonic instant for protocol timers and
/// wall-clock milliseconds since the Unix epoch for enqueued times and token
/// expiry. Both come from the caller.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time, ms since the Unix epoch.
    pub unix_ms: i64,
}

/// Rights a token or policy grants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Rights {
    send: bool,
    listen: bool,
    manage: bool,
}

impl From<&Policy> for Rights {
    fn from(p: &Policy) -> Self {
        Rights {
            send: p.send || p.manage,
            listen: p.listen || p.manage,
            manage: p.manage,
        }
    }
}

/// One event as stored in a partition.
#[derive(Clone, Debug)]
struct StoredEvent {
    sequence_number: i64,
    offset: u64,
    enqueued_ms: i64,
    /// The message with its system annotations, encoded.
    encoded: Bytes,
    /// Length of the header section at the start of `encoded`: delivery
    /// annotations go right after it (3.2 section order).
    header_len: usize,
}

#[derive(Debug)]
struct Partition {
    id: String,
    events: VecDeque<StoredEvent>,
    /// Encoded bytes of `events`, held against
    /// [`EmulatorConfig::max_partition_bytes`].
    bytes: u64,
    next_sequence_number: i64,
    next_offset: u64,
}

impl Partition {
    fn push(&mut self, e: StoredEvent) {
        self.bytes += e.encoded.len() as u64;
        self.events.push_back(e);
    }

    /// Drops the oldest events: those enqueued before `oldest_ms`, then
    /// as many as it takes to hold at most `max_bytes` (the newest event
    /// is always kept). Receivers' cursors are sequence numbers, so a
    /// receiver behind the log goes on from its first event.
    fn expire(&mut self, oldest_ms: i64, max_bytes: u64) {
        while let Some(e) = self.events.front() {
            let too_old = e.enqueued_ms < oldest_ms;
            let too_big = self.bytes > max_bytes && self.events.len() > 1;
            if !(too_old || too_big) {
                break;
            }
            self.bytes -= e.encoded.len() as u64;
            self.events.pop_front();
        }
    }

    fn last(&self) -> Option<&StoredEvent> {
        self.events.back()
    }

    /// Index into `events` of the first event at or after `position`.
    fn start_index(&self, position: &EventPosition) -> usize {
        let first_after = |f: &dyn Fn(&StoredEvent) -> bool| {
            self.events.iter().position(f).unwrap_or(self.events.len())
        };
        match position {
            EventPosition::Earliest => 0,
            EventPosition::Latest => self.events.len(),
            EventPosition::Offset { offset, inclusive } => match offset.parse::<i64>() {
                Ok(o) if o < 0 => 0,
                Ok(o) => first_after(&|e| {
                    if *inclusive {
                        e.offset as i64 >= o
                    } else {
                        e.offset as i64 > o
                    }
                }),
                Err(_) => self.events.len(),
            },
            EventPosition::SequenceNumber {
                sequence_number,
                inclusive,
            } => first_after(&|e| {
                if *inclusive {
                    e.sequence_number >= *sequence_number
                } else {
                    e.sequence_number > *sequence_number
                }
            }),
            EventPosition::EnqueuedTime {
                enqueued_time,
                inclusive,
            } => first_after(&|e| {
                if *inclusive {
                    e.enqueued_ms >= enqueued_time.0
                } else {
                    e.enqueued_ms > enqueued_time.0
                }
            }),
        }
    }
}

#[derive(Debug)]
struct Hub {
    config: HubConfig,
    created_ms: i64,
    partitions: Vec<Partition>,
    round_robin: RoundRobin,
    /// What the management API reports and changes.
    meta: HubMeta,
}

impl Hub {
    fn new(config: HubConfig, created_ms: i64, meta: HubMeta) -> Hub {
        Hub {
            partitions: (0..config.partition_count)
                .map(|i| Partition {
                    id: i.to_string(),
                    events: VecDeque::new(),
                    bytes: 0,
                    next_sequence_number: 0,
                    next_offset: 0,
                })
                .collect(),
            config,
            created_ms,
            round_robin: RoundRobin::new(),
            meta,
        }
    }

    /// How long events are kept: the hub's retention in days when one
    /// was set through the management API, else the emulator's.
    fn retention_ms(&self, emulator_ms: i64) -> i64 {
        self.meta
            .retention_days
            .map_or(emulator_ms, |d| i64::from(d) * DAY_MS)
    }
}

/// A hub's management properties.
#[derive(Debug, Clone)]
struct HubMeta {
    /// Declared in the configuration (not created at run time).
    from_config: bool,
    /// Retention set through the management API; `None` keeps the
    /// emulator's [`EmulatorConfig::retention_ms`].
    retention_days: Option<u32>,
    status: EntityStatus,
    user_metadata: Option<String>,
    updated_ms: i64,
    /// Consumer groups' times and metadata, by lower-case name.
    groups: BTreeMap<String, ConsumerGroupState>,
}

const DAY_MS: i64 = 86_400_000;

/// A receiver's place in a partition.
#[derive(Clone, Debug)]
struct Consumer {
    hub: usize,
    group: String,
    partition: usize,
    /// Sequence number of the next event to deliver.
    next_sequence_number: i64,
    epoch: Option<i64>,
    name: Option<String>,
    runtime_metric: bool,
}

#[derive(Clone, Debug)]
enum LinkKind {
    /// The client's sender to `$cbs`: put-token requests arrive here.
    CbsRequests,
    /// Our sender answering on `$cbs`; the client's target address.
    CbsReplies(String),
    /// The client's sender to `$management`.
    ManagementRequests,
    /// Our sender answering on `$management`.
    ManagementReplies(String),
    /// The client publishes to a hub or one partition; as an idempotent
    /// producer ([`crate::idempotent`]) with `producer`.
    Publisher {
        hub: usize,
        partition: Option<usize>,
        path: String,
        producer: Option<Producer>,
    },
    /// The client receives from a partition.
    Consumer(Consumer),
}

#[derive(Debug)]
struct Grant {
    /// Normalized entity path the token covers (lower case, no scheme or
    /// host), e.g. `eh1` or `eh1/consumergroups/$default/partitions/0`.
    path: String,
    rights: Rights,
    /// When the token expires (its `se`), on the caller's monotonic clock.
    expires_at: Instant,
}

struct Conn {
    engine: Connection,
    grants: Vec<Grant>,
    /// Rights of a connection authenticated with SASL PLAIN.
    plain: Option<Rights>,
    links: BTreeMap<LinkId, LinkKind>,
    /// Replies waiting for the client to grant credit.
    pending: BTreeMap<LinkId, VecDeque<Bytes>>,
    /// When an anonymous connection must have put a token (the service
    /// closes one that has not within its CBS window).
    cbs_deadline: Instant,
    next_tag: u64,
    /// Outcomes held for a client that loses early ones (see
    /// [`crate::quirks`]).
    late: LateOutcomes,
    /// What [`crate::limits`] bounds.
    guard: guard::ConnGuard,
}

impl Conn {
    /// The CBS deadline, while it matters: an anonymous connection, open,
    /// not closed by us, with no token put yet.
    fn pending_cbs_deadline(&self) -> Option<Instant> {
        (self.plain.is_none()
            && self.grants.is_empty()
            && self.engine.remote_open().is_some()
            && self.engine.state().local != Half::Closed)
            .then_some(self.cbs_deadline)
    }

    /// The next timer of this connection: its engine's, the CBS deadline,
    /// or the first token to expire.
    fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.grants.iter().map(|g| g.expires_at).min();
        [
            self.engine.poll_timeout(),
            self.pending_cbs_deadline(),
            expiry,
            self.guard.poll_timeout(self.engine.remote_open().is_some()),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What the broker counts, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events appended.
    pub events_in: u64,
    /// Events delivered to receivers.
    pub events_out: u64,
    /// Put-token requests refused.
    pub tokens_refused: u64,
    /// Transfers refused by [`Broker::throttle_sends`].
    pub throttled: u64,
    /// Links detached by [`Broker::detach_links`].
    pub links_detached: u64,
    /// Events of idempotent producers acknowledged without being appended
    /// again (duplicates).
    pub duplicates: u64,
    /// Connections refused by a bound of [`crate::limits`]: dropped at
    /// once, or closed after their open.
    pub connections_refused: u64,
    /// Connections dropped for a handshake too slow, or a close not
    /// answered.
    pub connections_dropped: u64,
    /// Attaches refused beyond a connection's link quota.
    pub links_refused: u64,
    /// Connections accepted ([`Broker::connect`]) since the start.
    pub connections_accepted: u64,
}

/// A publishing or consuming link attached now, as [`Broker::links`]
/// lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The connection it is on.
    pub connection: ConnId,
    /// `sender` (the client publishes) or `receiver` (it consumes).
    pub role: &'static str,
    /// The entity path, in lower case: `eh1`, `eh1/partitions/0`,
    /// `eh1/consumergroups/$default/partitions/1`.
    pub entity: String,
}

/// Which links [`Broker::detach_links`] detaches. Only links that publish
/// or consume events are ever chosen, never `$cbs` or `$management`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkSelector {
    /// Every publishing and consuming link.
    All,
    /// The clients' senders: links publishing to a hub or a partition.
    Senders,
    /// The clients' receivers: links consuming a partition.
    Receivers,
    /// Links whose entity path is this path or below it, compared in lower
    /// case without scheme or host: `eh1` (every link of the hub),
    /// `eh1/partitions/0` (publishers to partition 0),
    /// `eh1/consumergroups/$default/partitions/1` (receivers of one
    /// partition in one group). An empty path selects every link.
    Entity(String),
}

/// One event the broker appended to a partition, as handed out by
/// [`Broker::take_appended`] and taken back by [`Broker::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The hub's name, as configured.
    pub hub: String,
    /// The partition id (`"0"`, `"1"`, ...).
    pub partition: String,
    /// The event's sequence number in its partition.
    pub sequence_number: i64,
    /// The event's offset: the byte position of its encoding in the
    /// partition.
    pub offset: u64,
    /// The enqueued time, ms since the Unix epoch.
    pub enqueued_ms: i64,
    /// The message with its system annotations, encoded as it is delivered.
    pub encoded: Bytes,
}

/// Events [`Broker::restore`] cannot take back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// No hub of that name is configured.
    #[error("hub '{hub}' is not configured")]
    UnknownHub {
        /// The hub.
        hub: String,
    },
    /// The hub has no partition with that id.
    #[error("hub '{hub}' has no partition '{partition}'")]
    UnknownPartition {
        /// The hub.
        hub: String,
        /// The partition id.
        partition: String,
    },
    /// The event does not continue the partition's numbering.
    #[error("{hub}/{partition}: event {sequence_number} at offset {offset} does not follow sequence number {expected_sequence_number} at offset {expected_offset}")]
    OutOfOrder {
        /// The hub.
        hub: String,
        /// The partition id.
        partition: String,
        /// The event's sequence number.
        sequence_number: i64,
        /// The event's offset.
        offset: u64,
        /// The sequence number that was due.
        expected_sequence_number: i64,
        /// The offset that was due.
        expected_offset: u64,
    },
    /// The event's bytes are not an AMQP message.
    #[error("{hub}/{partition}: event {sequence_number} is not a valid message: {reason}")]
    Undecodable {
        /// The hub.
        hub: String,
        /// The partition id.
        partition: String,
        /// The event's sequence number.
        sequence_number: i64,
        /// What the decoder said.
        reason: String,
    },
}

/// Something [`Broker::set_response_delay`] holds back.
#[derive(Debug)]
enum HeldAction {
    /// The settled outcome of a publisher's transfer.
    Disposition {
        channel: u16,
        delivery_id: u32,
        state: DeliveryState,
    },
    /// A `$cbs` or `$management` response.
    Reply { link: LinkId, message: Bytes },
}

#[derive(Debug)]
struct Held {
    release: Instant,
    conn: ConnId,
    action: HeldAction,
}

/// At most this many responses are held back at once; beyond it the oldest
/// is released early, so a fast client cannot grow the queue without bound.
const MAX_HELD: usize = 1 << 16;

/// The broker.
pub struct Broker {
    config: EmulatorConfig,
    hubs: Vec<Hub>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    stats: Stats,
    /// Publisher transfers still to refuse as throttled.
    throttle: u32,
    /// How long dispositions and responses are held back.
    response_delay: Duration,
    /// Held responses, in order of release (release instants never
    /// decrease along the queue).
    held: VecDeque<Held>,
    /// Whether appended events are kept for `take_appended`.
    record_appends: bool,
    appended: Vec<Appended>,
    /// Idempotent producers: groups, owner levels, sequence numbers.
    producers: Producers,
}

const CBS: &str = "$cbs";
const MANAGEMENT: &str = "$management";
const RUNTIME_METRIC: &str = "com.microsoft:enable-receiver-runtime-metric";
const MAX_NON_EPOCH_RECEIVERS: usize = 5;

/// When a token expiring at `expires_unix` (seconds since the Unix epoch)
/// expires, on the caller's monotonic clock.
fn expiry_instant(now: Now, expires_unix: u64) -> Instant {
    let left_ms = expires_unix
        .saturating_mul(1000)
        .saturating_sub(u64::try_from(now.unix_ms).unwrap_or(0));
    now.instant + Duration::from_millis(left_ms)
}

fn err(condition: &'static str, description: impl Into<String>) -> AmqpError {
    AmqpError::new(Symbol::from_static(condition), description.into())
}

/// Lower-case entity path from an address, audience or SAS resource:
/// scheme and host dropped (`amqps://host/eh1/Partitions/0` →
/// `eh1/partitions/0`), no leading or trailing slash.
fn entity_path(address: &str) -> String {
    let rest = match address.find("://") {
        Some(i) => {
            let after = &address[i + 3..];
            after.find('/').map_or("", |j| &after[j..])
        }
        None => address,
    };
    rest.trim_matches('/').to_ascii_lowercase()
}

/// The entity path of a receiver.
fn consumer_path(hubs: &[Hub], c: &Consumer) -> String {
    let hub = &hubs[c.hub];
    entity_path(&format!(
        "{}/ConsumerGroups/{}/Partitions/{}",
        hub.config.name, c.group, hub.partitions[c.partition].id
    ))
}

/// How a link reads in the log: the client's role and the entity.
fn describe(hubs: &[Hub], kind: &LinkKind) -> (&'static str, String) {
    match kind {
        LinkKind::CbsRequests => ("sender", CBS.into()),
        LinkKind::CbsReplies(_) => ("receiver", CBS.into()),
        LinkKind::ManagementRequests => ("sender", MANAGEMENT.into()),
        LinkKind::ManagementReplies(_) => ("receiver", MANAGEMENT.into()),
        LinkKind::Publisher { path, .. } => ("sender", path.clone()),
        LinkKind::Consumer(c) => ("receiver", consumer_path(hubs, c)),
    }
}

/// An error for the log: `condition (description)`, `-` when there is none.
fn error_text(error: Option<&AmqpError>) -> String {
    match error {
        None => "-".into(),
        Some(e) => match e.description.as_deref() {
            Some(d) if !d.is_empty() => format!("{} ({d})", e.condition),
            _ => e.condition.to_string(),
        },
    }
}

/// An optional number for the log: `-` when absent.
fn or_dash(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// True when a grant for `grant` covers `path`.
pub(crate) fn covers(grant: &str, path: &str) -> bool {
    grant.is_empty()
        || path == grant
        || (path.starts_with(grant) && path.as_bytes().get(grant.len()) == Some(&b'/'))
}

impl Broker {
    /// A broker with `config`'s entities, created at `now`.
    pub fn new(config: EmulatorConfig, now: Now) -> Self {
        let hubs = config
            .hubs
            .iter()
            .map(|h| Hub::new(h.clone(), now.unix_ms, HubMeta::from_config(h, now.unix_ms)))
            .collect();
        Broker {
            config,
            hubs,
            conns: BTreeMap::new(),
            next_conn: 1,
            stats: Stats::default(),
            throttle: 0,
            response_delay: Duration::ZERO,
            held: VecDeque::new(),
            record_appends: false,
            appended: Vec::new(),
            producers: Producers::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The publishing and consuming links attached now, on every
    /// connection (`$cbs` and `$management` links are not listed).
    pub fn links(&self) -> Vec<LinkInfo> {
        let mut out = Vec::new();
        for (id, conn) in &self.conns {
            for kind in conn.links.values() {
                let (role, entity) = match kind {
                    LinkKind::Publisher { path, .. } => ("sender", path.clone()),
                    LinkKind::Consumer(c) => ("receiver", consumer_path(&self.hubs, c)),
                    _ => continue,
                };
                out.push(LinkInfo {
                    connection: *id,
                    role,
                    entity,
                });
            }
        }
        out
    }

    /// Accepts a new connection.
    pub fn connect(&mut self, now: Now) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.stats.connections_accepted += 1;
        let mut c =
            ConnectionConfig::new(Side::Server, format!("{}-{}", self.config.namespace, id.0));
        // The official Python SDK reads fields by position: send them all.
        c.form = Form::Full;
        c.max_frame_size = 256 * 1024;
        c.idle_time_out = Some(Duration::from_secs(240));
        let policies = self.config.policies.clone();
        c.sasl = SaslConfig::Server {
            mechanisms: ["MSSBCBS", "ANONYMOUS", "PLAIN"]
                .iter()
                .map(|m| Symbol::from_static(m))
                .collect(),
            plain_check: Some(Box::new(move |user: &str, pass: &str| {
                policies.iter().any(|p| p.name == user && p.key == pass)
            })),
        };
        c.session_defaults = SessionConfig {
            incoming_window: 5000,
            ..SessionConfig::default()
        };
        self.limit_engine(&mut c);
        let engine = Connection::new(c, now.instant);
        let guard = self.new_guard(now);
        debug!(conn = id.0, "connection accepted");
        self.conns.insert(
            id,
            Conn {
                engine,
                grants: Vec::new(),
                plain: None,
                links: BTreeMap::new(),
                pending: BTreeMap::new(),
                cbs_deadline: now.instant
                    + Duration::from_millis(
                        u64::try_from(self.config.cbs_deadline_ms).unwrap_or(0),
                    ),
                next_tag: 0,
                late: LateOutcomes::default(),
                guard,
            },
        );
        self.admit(id);
        id
    }

    /// The connections alive.
    pub fn connections(&self) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self.conns.keys().copied().collect();
        v.sort();
        v
    }

    /// True once `id` is closed (or unknown): its socket may be closed after
    /// a last [`poll_transmit`](Self::poll_transmit).
    pub fn is_closed(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_none_or(|c| c.engine.is_closed())
    }

    /// The socket of `id` closed: forget the connection and its receivers.
    /// Called by a runtime, this is also the abrupt drop of a connection:
    /// nothing more is sent to it and [`is_closed`](Self::is_closed) turns
    /// true, so the runtime closes the socket.
    pub fn disconnect(&mut self, id: ConnId) {
        if self.conns.remove(&id).is_some() {
            debug!(conn = id.0, "connection forgotten");
        }
    }

    /// Fault: detaches (closes) every publishing or consuming link that
    /// `which` selects, on every connection, with `error` (for example
    /// `com.microsoft:server-busy`, `amqp:link:detach-forced`,
    /// `amqp:link:stolen`), and forgets them: a receiver's cursor, a
    /// publisher's target. `$cbs` and `$management` links are left alone.
    /// Returns how many links were detached.
    pub fn detach_links(&mut self, now: Now, which: LinkSelector, error: AmqpError) -> usize {
        let prefix = match &which {
            LinkSelector::Entity(p) => entity_path(p),
            _ => String::new(),
        };
        let mut count = 0;
        for (id, conn) in self.conns.iter_mut() {
            let chosen: Vec<(LinkId, &'static str, String)> = conn
                .links
                .iter()
                .filter_map(|(l, k)| {
                    let (role, path) = match k {
                        LinkKind::Publisher { path, .. } => ("sender", path.clone()),
                        LinkKind::Consumer(c) => ("receiver", consumer_path(&self.hubs, c)),
                        _ => return None,
                    };
                    let hit = match &which {
                        LinkSelector::All => true,
                        LinkSelector::Senders => role == "sender",
                        LinkSelector::Receivers => role == "receiver",
                        LinkSelector::Entity(_) => covers(&prefix, &path),
                    };
                    hit.then_some((*l, role, path))
                })
                .collect();
            for (link, role, entity) in chosen {
                conn.links.remove(&link);
                conn.pending.remove(&link);
                if conn.engine.link(link).close(Some(error.clone())).is_ok() {
                    warn!(conn = id.0, %role, %entity, error = %error_text(Some(&error)), "fault: link detached");
                    count += 1;
                }
            }
        }
        self.stats.links_detached += count as u64;
        self.pump_all(now);
        count
    }

    /// Fault: the next `count` transfers on publishing links are not
    /// appended but settled `rejected` with `com.microsoft:server-busy`, as
    /// the service answers when a namespace is throttled; the links stay
    /// attached. Replaces any count still pending; 0 ends throttling.
    pub fn throttle_sends(&mut self, count: u32) {
        if count > 0 {
            warn!(count, "fault: throttling the next sends");
        }
        self.throttle = count;
    }

    /// Fault: from now on, hold the outcomes (dispositions) of publishers'
    /// transfers and the responses on `$cbs` and `$management` for `delay`
    /// before sending them. Events are still appended at once and delivered
    /// to receivers; only the acknowledgement is late. Held responses are
    /// released by [`handle_timeout`](Self::handle_timeout) at their due
    /// instant (see [`poll_timeout`](Self::poll_timeout)), in the order they
    /// were held. `Duration::ZERO` sends new responses at once again, after
    /// those still held.
    pub fn set_response_delay(&mut self, delay: Duration) {
        if delay != self.response_delay {
            warn!(
                delay_ms = delay.as_millis() as u64,
                "fault: response delay set"
            );
        }
        self.response_delay = delay;
    }

    /// Fault: closes connection `id` gracefully, sending `close` with
    /// `error` (for example `amqp:connection:forced`). Its links are
    /// forgotten at once; the runtime closes the socket when the client has
    /// answered (see [`is_closed`](Self::is_closed)).
    pub fn close_connection(&mut self, id: ConnId, now: Now, error: Option<AmqpError>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.links.clear();
        conn.pending.clear();
        if conn.engine.close(error.clone()).is_ok() {
            warn!(
                conn = id.0,
                condition = error.as_ref().map_or("none", |e| e.condition.as_str()),
                "fault: connection closed"
            );
        }
        self.process(id, now);
    }

    /// From now on (`on`) keep every appended event for
    /// [`take_appended`](Self::take_appended), or stop keeping them.
    pub fn record_appends(&mut self, on: bool) {
        self.record_appends = on;
        if !on {
            self.appended = Vec::new();
        }
    }

    /// The events appended since the last call, in order, when
    /// [`record_appends`](Self::record_appends) is on. A runtime that
    /// persists them calls this after every
    /// [`handle_input`](Self::handle_input) and writes what it gets before
    /// it calls [`poll_transmit`](Self::poll_transmit), which may carry the
    /// dispositions that acknowledge them.
    pub fn take_appended(&mut self) -> Vec<Appended> {
        std::mem::take(&mut self.appended)
    }

    /// Puts back events that an earlier broker appended (read from storage),
    /// before any client connects. Per partition, events must come in order
    /// and each must follow the one before (sequence number + 1, offset +
    /// encoded length); the first may start anywhere at or after what the
    /// partition holds, as after older events expired. Events older than
    /// the retention at `now` are not kept, but still advance the
    /// numbering, so new events continue it. Returns how many events were
    /// kept.
    pub fn restore(
        &mut self,
        now: Now,
        events: impl IntoIterator<Item = Appended>,
    ) -> Result<usize, RestoreError> {
        let mut kept = 0usize;
        for a in events {
            let h = self
                .find_hub(&a.hub)
                .ok_or_else(|| RestoreError::UnknownHub { hub: a.hub.clone() })?;
            let oldest = now
                .unix_ms
                .saturating_sub(self.hubs[h].retention_ms(self.config.retention_ms));
            let part = self.hubs[h]
                .partitions
                .iter_mut()
                .find(|p| p.id == a.partition)
                .ok_or_else(|| RestoreError::UnknownPartition {
                    hub: a.hub.clone(),
                    partition: a.partition.clone(),
                })?;
            let fresh = part.next_sequence_number == 0 && part.next_offset == 0;
            let follows = if fresh {
                a.sequence_number >= 0
            } else {
                a.sequence_number == part.next_sequence_number && a.offset == part.next_offset
            };
            if !follows {
                return Err(RestoreError::OutOfOrder {
                    hub: a.hub,
                    partition: a.partition,
                    sequence_number: a.sequence_number,
                    offset: a.offset,
                    expected_sequence_number: part.next_sequence_number,
                    expected_offset: part.next_offset,
                });
            }
            let message =
                Message::decode_all(&a.encoded).map_err(|e| RestoreError::Undecodable {
                    hub: a.hub.clone(),
                    partition: a.partition.clone(),
                    sequence_number: a.sequence_number,
                    reason: e.to_string(),
                })?;
            self.producers
                .replay(&a.hub, &a.partition, a.sequence_number, &message);
            part.next_sequence_number = a.sequence_number + 1;
            part.next_offset = a.offset + a.encoded.len() as u64;
            if a.enqueued_ms < oldest {
                continue;
            }
            part.push(StoredEvent {
                sequence_number: a.sequence_number,
                offset: a.offset,
                enqueued_ms: a.enqueued_ms,
                header_len: message.header.as_ref().map_or(0, |h| h.encoded_len()),
                encoded: a.encoded,
            });
            kept += 1;
            // Past the size bound, the oldest restored events go again.
            let held = part.events.len();
            part.expire(oldest, self.config.max_partition_bytes);
            kept = kept.saturating_sub(held - part.events.len());
        }
        Ok(kept)
    }

    /// The idempotent-producer table when it changed since the last call
    /// and [`record_appends`](Self::record_appends) is on: a runtime that
    /// persists events persists this too, after the events of the same
    /// input and before [`poll_transmit`](Self::poll_transmit) (which may
    /// carry an attach naming a new producer group, or dispositions).
    pub fn take_producer_state(&mut self) -> Option<ProducerState> {
        (self.producers.take_dirty() && self.record_appends).then(|| self.producer_state())
    }

    /// The idempotent-producer table as it stands, with every partition's
    /// next sequence number.
    pub fn producer_state(&self) -> ProducerState {
        let heads = self
            .hubs
            .iter()
            .flat_map(|h| {
                h.partitions
                    .iter()
                    .map(|p| (h.config.name.clone(), p.id.clone(), p.next_sequence_number))
            })
            .collect();
        self.producers.snapshot(heads)
    }

    /// Takes back a persisted idempotent-producer table, before
    /// [`restore`](Self::restore) puts back the events: those appended
    /// after the table was taken bring it up to date.
    pub fn restore_producer_state(&mut self, state: ProducerState) {
        self.producers.restore(state);
    }

    /// Sends a held response, unless its connection or link is gone.
    fn release(&mut self, h: Held) {
        let Some(conn) = self.conns.get_mut(&h.conn) else {
            return;
        };
        match h.action {
            HeldAction::Disposition {
                channel,
                delivery_id,
                state,
            } => {
                let _ = conn.engine.session(channel).disposition(
                    Role::Receiver,
                    delivery_id..=delivery_id,
                    Settlement::Settled,
                    Some(state),
                );
            }
            HeldAction::Reply { link, message } => {
                if conn.links.contains_key(&link) {
                    conn.pending.entry(link).or_default().push_back(message);
                    Self::flush_pending(conn, link);
                }
            }
        }
    }

    /// True when responses must go through the held queue: a delay is set,
    /// or earlier responses still wait there (order is kept).
    fn holding(&self) -> bool {
        !self.response_delay.is_zero() || !self.held.is_empty()
    }

    /// Holds `action` of connection `id` until `now` plus the delay, and
    /// never before what was held earlier.
    fn hold(&mut self, id: ConnId, now: Now, action: HeldAction) {
        if self.held.len() >= MAX_HELD {
            if let Some(h) = self.held.pop_front() {
                warn!("too many held responses: releasing the oldest early");
                self.release(h);
            }
        }
        let mut release = now.instant + self.response_delay;
        if let Some(last) = self.held.back() {
            release = release.max(last.release);
        }
        self.held.push_back(Held {
            release,
            conn: id,
            action,
        });
    }

    /// Bytes from connection `id`'s socket.
    pub fn handle_input(&mut self, id: ConnId, now: Now, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.engine.handle_input(now.instant, data);
        self.process(id, now);
    }

    /// Bytes to write to connection `id`'s socket.
    pub fn poll_transmit(&mut self, id: ConnId, now: Now, buf: &mut Vec<u8>) -> usize {
        // Receivers held back by their bound of queued deliveries get more
        // now that the caller takes what is queued.
        if self.conns.get(&id).is_some_and(|c| c.guard.blocked) {
            self.pump_conn(id, now);
        }
        self.conns
            .get_mut(&id)
            .map_or(0, |c| c.engine.poll_transmit(now.instant, buf))
    }

    /// True when connection `id` has more to send than its last
    /// [`poll_transmit`](Self::poll_transmit) gave: receivers held back by
    /// their bound of queued deliveries
    /// ([`Limits::max_pending_deliveries`](crate::limits::Limits::max_pending_deliveries)).
    /// A runtime calls `poll_transmit` again once it has written what it
    /// got, without waiting for input.
    pub fn wants_transmit(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.guard.blocked)
    }

    /// The earliest moment [`handle_timeout`](Self::handle_timeout) is due:
    /// every timer it fires (heartbeats and idle connections, the CBS
    /// deadline of anonymous connections, expiring tokens, and the release
    /// of responses held by [`set_response_delay`](Self::set_response_delay)),
    /// so a runtime needs no other tick.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(Conn::poll_timeout)
            .chain(self.held.front().map(|h| h.release))
            .chain(self.conns.values().filter_map(|c| c.late.next_due()))
            .min()
    }

    /// Fires every timer due at `now`: held responses, heartbeats, idle
    /// connections, the CBS deadline of anonymous connections, expired
    /// tokens.
    pub fn handle_timeout(&mut self, now: Now) {
        self.enforce_deadlines(now);
        while self.held.front().is_some_and(|h| h.release <= now.instant) {
            if let Some(h) = self.held.pop_front() {
                self.release(h);
            }
        }
        let ids = self.connections();
        for id in ids {
            let hubs = &self.hubs;
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            conn.late.release_due(now.instant, &mut conn.engine);
            conn.engine.handle_timeout(now.instant);
            // Anonymous connections must put a token in time.
            if conn
                .pending_cbs_deadline()
                .is_some_and(|t| t <= now.instant)
            {
                warn!(conn = id.0, "no CBS token in time: closing");
                let _ = conn.engine.close(Some(err(
                    "amqp:unauthorized-access",
                    "no token was put in time",
                )));
                conn.guard.closing(now);
            }
            // Links whose token expired are detached.
            conn.grants.retain(|g| g.expires_at > now.instant);
            let expired: Vec<LinkId> = conn
                .links
                .iter()
                .filter_map(|(l, k)| {
                    let (path, need) = match k {
                        LinkKind::Publisher { path, .. } => (
                            path.clone(),
                            Rights {
                                send: true,
                                ..Rights::default()
                            },
                        ),
                        LinkKind::Consumer(c) => (
                            consumer_path(hubs, c),
                            Rights {
                                listen: true,
                                ..Rights::default()
                            },
                        ),
                        _ => return None,
                    };
                    (!Self::authorized(conn, &path, need)).then_some(*l)
                })
                .collect();
            for l in expired {
                if let Some(kind) = conn.links.remove(&l) {
                    let (role, entity) = describe(hubs, &kind);
                    info!(conn = id.0, %role, %entity, "token expired: link detached");
                }
                let _ = conn.engine.link(l).close(Some(err(
                    "amqp:unauthorized-access",
                    "the token has expired",
                )));
            }
            self.process(id, now);
        }
    }

    fn authorized(conn: &Conn, path: &str, need: Rights) -> bool {
        let ok = |r: &Rights| {
            (!need.send || r.send) && (!need.listen || r.listen) && (!need.manage || r.manage)
        };
        conn.plain.as_ref().is_some_and(ok)
            || conn
                .grants
                .iter()
                .any(|g| covers(&g.path, path) && ok(&g.rights))
    }

    /// Handles the engine events of connection `id`.
    fn process(&mut self, id: ConnId, now: Now) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Some(event) = conn.engine.poll_event() else {
                break;
            };
            self.on_event(id, now, event);
        }
        self.pump_all(now);
    }

    fn on_event(&mut self, id: ConnId, now: Now, event: Event) {
        let conn = self.conns.get_mut(&id).expect("caller checked");
        match event {
            Event::Authenticated { mechanism, user } => {
                // The PLAIN user is a policy (key) name; the key is never logged.
                match &user {
                    Some(user) => info!(conn = id.0, %mechanism, %user, "SASL authenticated"),
                    None => info!(conn = id.0, %mechanism, "SASL authenticated"),
                }
                if let Some(user) = user {
                    conn.plain = self
                        .config
                        .policies
                        .iter()
                        .find(|p| p.name == user)
                        .map(Rights::from);
                }
            }
            Event::Opened(open) => {
                debug!(conn = id.0, container = %open.container_id, hostname = ?open.hostname, "open");
                let delay = self.config.ms_sdk_outcome_delay;
                if quirks::loses_early_outcomes(&open) && !delay.is_zero() {
                    info!(
                        conn = id.0,
                        delay_ms = delay.as_millis() as u64,
                        "client is Microsoft's Rust SDK: its outcomes are held (fe2o3-amqp loses early ones)"
                    );
                    conn.late.set_delay(delay);
                }
                let _ = conn.engine.open();
                self.check_open(id, now);
            }
            Event::LinkAttached {
                link,
                attach,
                peer_initiated: true,
            } => self.on_attach(id, now, link, *attach),
            Event::LinkAttached { .. } => {}
            Event::Credit { link, .. } => {
                let conn = self.conns.get_mut(&id).expect("present");
                Self::flush_pending(conn, link);
            }
            Event::Delivery {
                link,
                delivery_id,
                settled,
                payload,
                message_format,
                ..
            } => self.on_delivery(id, now, link, delivery_id, settled, message_format, payload),
            Event::LinkDetached { link, error, .. } => {
                if let Some(kind) = conn.links.remove(&link) {
                    let (role, entity) = describe(&self.hubs, &kind);
                    let error = error_text(error.as_ref());
                    if matches!(kind, LinkKind::Publisher { .. } | LinkKind::Consumer(_)) {
                        info!(conn = id.0, %role, %entity, %error, "link detached by the client");
                    } else {
                        debug!(conn = id.0, %role, %entity, %error, "link detached by the client");
                    }
                }
                conn.pending.remove(&link);
            }
            Event::LinkError { link, error } => {
                let entity = conn
                    .links
                    .remove(&link)
                    .map_or_else(String::new, |k| describe(&self.hubs, &k).1);
                warn!(conn = id.0, %entity, error = %error_text(Some(&error)), "link detached: the client broke the protocol");
                conn.pending.remove(&link);
            }
            Event::Closed(error) => info!(
                conn = id.0,
                error = %error_text(error.as_ref()),
                "AMQP close from the client"
            ),
            Event::Failed(e) => warn!(conn = id.0, error = %e, "connection failed"),
            Event::SessionEnded { channel, .. } => conn.late.forget_session(channel),
            Event::SessionError { channel, error } => {
                conn.late.forget_session(channel);
                warn!(conn = id.0, channel, error = %error_text(Some(&error)), "session ended: the client broke the protocol")
            }
            _ => {}
        }
    }

    fn flush_pending(conn: &mut Conn, link: LinkId) {
        let Some(q) = conn.pending.get_mut(&link) else {
            return;
        };
        while conn.engine.credit(link) > 0 {
            let Some(m) = q.pop_front() else { break };
            conn.next_tag += 1;
            let tag = Bytes::copy_from_slice(&conn.next_tag.to_be_bytes());
            let _ = conn.engine.link(link).send(tag, 0, Settlement::Settled, m);
        }
        Self::bound_replies(conn, link);
    }

    fn on_attach(
        &mut self,
        id: ConnId,
        now: Now,
        link: LinkId,
        attach: eventhubs_proto::codec::performatives::Attach,
    ) {
        let source_address = attach
            .source
            .as_ref()
            .and_then(|s| s.address.as_deref())
            .unwrap_or_default()
            .to_string();
        let target_address = attach
            .target
            .as_ref()
            .and_then(|t| t.address.as_deref())
            .unwrap_or_default()
            .to_string();
        let echo = LinkConfig {
            source: attach.source.as_deref().cloned(),
            target: attach.target.as_deref().cloned(),
            max_message_size: Some(self.config.max_message_size),
            // The service rejects an oversized event and keeps the link.
            reject_oversized: true,
            ..LinkConfig::default()
        };
        let client_sends = attach.role == Role::Sender;
        debug!(conn = id.0, name = %attach.name, source = %source_address, target = %target_address, client_sends, "attach");
        let (kind, credit) = if let Some(e) = self.link_quota(id) {
            (Err(e), 0)
        } else if client_sends {
            let path = entity_path(&target_address);
            if path == CBS {
                (Ok(LinkKind::CbsRequests), 100)
            } else if path == MANAGEMENT {
                (Ok(LinkKind::ManagementRequests), 100)
            } else {
                (self.publisher(id, &path), 1000)
            }
        } else {
            let path = entity_path(&source_address);
            if path == CBS {
                (Ok(LinkKind::CbsReplies(target_address.clone())), 0)
            } else if path == MANAGEMENT {
                (Ok(LinkKind::ManagementReplies(target_address.clone())), 0)
            } else {
                (self.consumer(id, now, &path, &attach), 0)
            }
        };
        let (kind, echo) = match kind {
            Ok(k @ LinkKind::Publisher { .. }) => self.idempotent_attach(k, &attach, echo),
            other => (other, echo),
        };
        let role = if client_sends { "sender" } else { "receiver" };
        let conn = self.conns.get_mut(&id).expect("present");
        match kind {
            Ok(kind) => {
                let _ = conn.engine.link(link).answer(echo);
                if credit > 0 {
                    let _ = conn.engine.link(link).flow(credit);
                }
                let (_, entity) = describe(&self.hubs, &kind);
                match &kind {
                    LinkKind::Consumer(c) => {
                        info!(conn = id.0, %role, %entity, name = %attach.name, epoch = %or_dash(c.epoch), next_sequence_number = c.next_sequence_number, "link attached")
                    }
                    LinkKind::Publisher { .. } => {
                        info!(conn = id.0, %role, %entity, name = %attach.name, "link attached")
                    }
                    _ => debug!(conn = id.0, %role, %entity, name = %attach.name, "link attached"),
                }
                conn.links.insert(link, kind);
            }
            Err(e) => {
                let entity = entity_path(if client_sends {
                    &target_address
                } else {
                    &source_address
                });
                info!(conn = id.0, %role, %entity, name = %attach.name, error = %error_text(Some(&e)), "link refused");
                let _ = conn.engine.link(link).refuse(e);
            }
        }
    }

    fn find_hub(&self, name: &str) -> Option<usize> {
        self.hubs
            .iter()
            .position(|h| h.config.name.eq_ignore_ascii_case(name))
    }

    fn publisher(&self, id: ConnId, path: &str) -> Result<LinkKind, AmqpError> {
        let parts: Vec<&str> = path.split('/').collect();
        let (hub, partition) = match parts[..] {
            [hub] => (hub, None),
            [hub, "partitions", p] => (hub, Some(p)),
            _ => {
                return Err(err(
                    "amqp:not-found",
                    format!("no sendable entity at '{path}'"),
                ))
            }
        };
        let h = self.find_hub(hub).ok_or_else(|| {
            err(
                "amqp:not-found",
                format!("The messaging entity '{hub}' could not be found."),
            )
        })?;
        let partition = match partition {
            Some(p) => Some(
                self.hubs[h]
                    .partitions
                    .iter()
                    .position(|x| x.id == p)
                    .ok_or_else(|| {
                        err(
                            "com.microsoft:argument-out-of-range",
                            format!("partition '{p}' does not exist"),
                        )
                    })?,
            ),
            None => None,
        };
        let conn = &self.conns[&id];
        if !Self::authorized(
            conn,
            path,
            Rights {
                send: true,
                ..Rights::default()
            },
        ) {
            return Err(err("amqp:unauthorized-access", format!("Unauthorized access. 'Send' claim(s) are required to perform this operation on '{path}'.")));
        }
        Ok(LinkKind::Publisher {
            hub: h,
            partition,
            path: path.to_string(),
            producer: None,
        })
    }

    /// A publisher that desires the idempotent-producer capability gets
    /// its producer group ([`crate::idempotent`]), and the attach answers
    /// with the group's state; a gateway link cannot be idempotent.
    fn idempotent_attach(
        &mut self,
        kind: LinkKind,
        attach: &eventhubs_proto::codec::performatives::Attach,
        mut echo: LinkConfig,
    ) -> (Result<LinkKind, AmqpError>, LinkConfig) {
        let LinkKind::Publisher {
            hub,
            partition,
            path,
            ..
        } = kind
        else {
            return (Ok(kind), echo);
        };
        let requested = match idempotent::requested(attach) {
            Ok(None) => {
                let kind = LinkKind::Publisher {
                    hub,
                    partition,
                    path,
                    producer: None,
                };
                return (Ok(kind), echo);
            }
            Ok(Some(r)) => r,
            Err(e) => return (Err(e), echo),
        };
        let Some(p) = partition else {
            let e = err(
                "com.microsoft:argument-error",
                format!("idempotent publishing needs a partition: '{path}' is the hub itself; attach to '{path}/Partitions/<id>'"),
            );
            return (Err(e), echo);
        };
        let hub_name = self.hubs[hub].config.name.clone();
        let partition_id = self.hubs[hub].partitions[p].id.clone();
        match self.producers.attach(&hub_name, &partition_id, requested) {
            Ok((producer, last)) => {
                let (props, capability) = idempotent::reply_properties(producer, last);
                echo.properties = Some(props);
                echo.offered_capabilities = vec![capability];
                info!(entity = %path, producer_group_id = producer.id, owner_level = producer.epoch, last_sequence_number = last, "idempotent producer attached");
                let kind = LinkKind::Publisher {
                    hub,
                    partition,
                    path,
                    producer: Some(producer),
                };
                (Ok(kind), echo)
            }
            Err(e) => (Err(e), echo),
        }
    }

    fn consumer(
        &mut self,
        id: ConnId,
        _now: Now,
        path: &str,
        attach: &eventhubs_proto::codec::performatives::Attach,
    ) -> Result<LinkKind, AmqpError> {
        let parts: Vec<&str> = path.split('/').collect();
        let [hub, "consumergroups", group, "partitions", p] = parts[..] else {
            return Err(err(
                "amqp:not-found",
                format!("no receivable entity at '{path}'"),
            ));
        };
        let h = self.find_hub(hub).ok_or_else(|| {
            err(
                "amqp:not-found",
                format!("The messaging entity '{hub}' could not be found."),
            )
        })?;
        let hubc = &self.hubs[h].config;
        let Some(group) = hubc
            .consumer_groups
            .iter()
            .find(|g| g.eq_ignore_ascii_case(group))
            .cloned()
        else {
            return Err(err(
                "amqp:not-found",
                format!("The messaging entity '{hub}/ConsumerGroups/{group}' could not be found."),
            ));
        };
        let Some(partition) = self.hubs[h].partitions.iter().position(|x| x.id == p) else {
            return Err(err(
                "com.microsoft:argument-out-of-range",
                format!("partition '{p}' does not exist"),
            ));
        };
        if !Self::authorized(
            &self.conns[&id],
            path,
            Rights {
                listen: true,
                ..Rights::default()
            },
        ) {
            return Err(err("amqp:unauthorized-access", format!("Unauthorized access. 'Listen' claim(s) are required to perform this operation on '{path}'.")));
        }
        let position = match attach.source.as_ref().and_then(|s| s.filter.as_ref()) {
            Some(f) => EventPosition::from_filter_set(f)
                .map_err(|e| {
                    err(
                        "com.microsoft:argument-error",
                        format!("invalid filter: {e}"),
                    )
                })?
                .unwrap_or(EventPosition::Latest),
            None => EventPosition::Latest,
        };
        let props = attach.properties.as_ref();
        let epoch = props
            .and_then(|p| p.get("com.microsoft:epoch"))
            .and_then(Value::as_i64);
        let name = props
            .and_then(|p| p.get("com.microsoft:receiver-name"))
            .and_then(|v| v.as_str().map(str::to_string));
        let runtime_metric = attach
            .desired_capabilities
            .iter()
            .any(|c| c.as_str() == RUNTIME_METRIC);
        // Epoch (owner level) rules: look at every receiver of this group
        // and partition.
        let mut rivals = Vec::new();
        for (cid, conn) in &self.conns {
            for (l, k) in &conn.links {
                if let LinkKind::Consumer(c) = k {
                    if c.hub == h
                        && c.partition == partition
                        && c.group.eq_ignore_ascii_case(&group)
                    {
                        rivals.push((*cid, *l, c.epoch, c.name.clone()));
                    }
                }
            }
        }
        let top = rivals
            .iter()
            .filter(|r| r.2.is_some())
            .max_by_key(|r| r.2)
            .map(|r| (r.2.unwrap_or(0), r.3.clone()));
        // The service's wording; an unnamed receiver is 'nil'.
        let nil = |n: &Option<String>| n.clone().unwrap_or_else(|| "nil".into());
        match (epoch, top) {
            (Some(e), Some((t, top_name))) if e < t => {
                return Err(err("amqp:link:stolen", format!("Receiver '{}' with a higher epoch '{t}' already exists. Receiver '{}' with epoch {e} cannot be created. Make sure you are creating receiver with increasing epoch value to ensure connectivity, or ensure all old epoch receivers are closed or disconnected.", nil(&top_name), nil(&name))));
            }
            (Some(e), _) => {
                for (cid, l, old, old_name) in rivals {
                    let text = format!(
                        "New receiver '{}' with higher epoch of '{e}' is created hence current receiver '{}' with epoch '{}' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.",
                        nil(&name),
                        nil(&old_name),
                        old.unwrap_or(0)
                    );
                    if let Some(c) = self.conns.get_mut(&cid) {
                        c.links.remove(&l);
                        let _ = c.engine.link(l).close(Some(err("amqp:link:stolen", text)));
                    }
                }
            }
            (None, Some((t, _))) => {
                return Err(err(
                    "amqp:link:stolen",
                    format!(
                        "At least one receiver for the endpoint is created with epoch of '{t}', and so non-epoch receiver is not allowed. Either reconnect with a higher epoch, or make sure all epoch receivers are closed or disconnected."
                    ),
                ));
            }
            (None, None) if rivals.len() >= MAX_NON_EPOCH_RECEIVERS => {
                return Err(err("amqp:resource-limit-exceeded", format!("Exceeded the maximum number of allowed receivers per partition in a consumer group which is {MAX_NON_EPOCH_RECEIVERS}.")));
            }
            (None, None) => {}
        }
        let part = &self.hubs[h].partitions[partition];
        let start = part.start_index(&position);
        let next_sequence_number = part
            .events
            .get(start)
            .map_or(part.next_sequence_number, |e| e.sequence_number);
        debug!(conn = id.0, hub, %group, partition, ?position, next_sequence_number, ?epoch, "receiver attached");
        Ok(LinkKind::Consumer(Consumer {
            hub: h,
            group,
            partition,
            next_sequence_number,
            epoch,
            name,
            runtime_metric,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_delivery(
        &mut self,
        id: ConnId,
        now: Now,
        link: LinkId,
        delivery_id: u32,
        settled: bool,
        format: u32,
        payload: Bytes,
    ) {
        let Some(kind) = self
            .conns
            .get(&id)
            .and_then(|c| c.links.get(&link))
            .cloned()
        else {
            return;
        };
        let publisher = matches!(kind, LinkKind::Publisher { .. });
        let outcome = match kind {
            LinkKind::CbsRequests => {
                self.on_cbs(id, now, &payload);
                Ok(())
            }
            LinkKind::ManagementRequests => {
                self.on_management(id, now, &payload);
                Ok(())
            }
            LinkKind::Publisher { path, .. } if self.throttle > 0 => {
                self.throttle -= 1;
                self.stats.throttled += 1;
                info!(conn = id.0, entity = %path, left = self.throttle, "fault: send throttled");
                Err(err(
                    "com.microsoft:server-busy",
                    "The request was terminated because the entity is being throttled. Please wait 4 seconds and try again.",
                ))
            }
            LinkKind::Publisher {
                hub,
                partition,
                producer,
                ..
            } => self.publish(now, (hub, partition, producer), format, &payload),
            _ => Ok(()),
        };
        if let Err(e) = &outcome {
            debug!(conn = id.0, condition = %e.condition, "transfer rejected");
        }
        if !settled {
            let state = match outcome {
                Ok(()) => DeliveryState::Accepted(Accepted {}),
                Err(e) => DeliveryState::Rejected(Rejected { error: Some(e) }),
            };
            if publisher && self.holding() {
                let action = HeldAction::Disposition {
                    channel: link.channel,
                    delivery_id,
                    state,
                };
                self.hold(id, now, action);
            } else if let Some(conn) = self.conns.get_mut(&id).filter(|c| c.late.is_on()) {
                conn.late
                    .hold(now.instant, link, delivery_id, state, &mut conn.engine);
            } else if let Some(conn) = self.conns.get_mut(&id) {
                let _ = conn.engine.session(link.channel).disposition(
                    Role::Receiver,
                    delivery_id..=delivery_id,
                    Settlement::Settled,
                    Some(state),
                );
            }
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.engine.credit(link) < 50 {
            let _ = conn.engine.link(link).flow(1000);
        }
    }

    /// Decodes a request: (message id, application properties, body value).
    fn request(payload: &Bytes) -> Option<Request> {
        let m = Message::decode_all(payload).ok()?;
        let (id, reply_to) = m
            .properties
            .as_ref()
            .map(|p| {
                (
                    p.message_id.clone(),
                    p.reply_to.as_ref().map(|r| r.to_string()),
                )
            })
            .unwrap_or((None, None));
        let props = m.application_properties.unwrap_or_default();
        let body = match m.body {
            Body::Value(v) => v,
            _ => Value::Null,
        };
        Some((id, reply_to, props, body))
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        id: ConnId,
        now: Now,
        reply_to: Option<String>,
        correlation: Option<MessageId>,
        status: i32,
        description: &str,
        body: Value,
        cbs: bool,
    ) {
        let holding = self.holding();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let link = conn
            .links
            .iter()
            .filter(|(_, k)| match k {
                LinkKind::CbsReplies(a) if cbs => reply_to.as_deref().is_none_or(|r| r == a),
                LinkKind::ManagementReplies(a) if !cbs => {
                    reply_to.as_deref().is_none_or(|r| r == a)
                }
                _ => false,
            })
            .map(|(l, _)| *l)
            .min();
        let Some(link) = link else {
            warn!(conn = id.0, ?reply_to, "no reply link for a request");
            return;
        };
        let mut app = Map::new();
        app.insert("status-code".into(), Value::Int(status));
        app.insert(
            "status-description".into(),
            Value::String(description.into()),
        );
        // Both spellings: Go reads either, Python's management link reads
        // `statusDescription` (its default field name).
        app.insert("statusCode".into(), Value::Int(status));
        app.insert(
            "statusDescription".into(),
            Value::String(description.into()),
        );
        let m = Message {
            properties: Some(Properties {
                correlation_id: correlation,
                ..Default::default()
            }),
            application_properties: Some(app),
            body: Body::Value(body),
            ..Default::default()
        };
        let message = m.to_bytes();
        if holding {
            self.hold(id, now, HeldAction::Reply { link, message });
        } else {
            conn.pending.entry(link).or_default().push_back(message);
            Self::flush_pending(conn, link);
        }
    }

    fn on_cbs(&mut self, id: ConnId, now: Now, payload: &Bytes) {
        let Some((mid, reply_to, props, body)) = Self::request(payload) else {
            warn!(conn = id.0, "undecodable CBS request");
            return;
        };
        let get = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_string);
        let (status, description) = match (
            get("operation").as_deref(),
            get("type"),
            get("name"),
            body.as_str(),
        ) {
            (Some("put-token"), Some(ty), Some(audience), Some(token)) => {
                match self.check_token(now, &ty, &audience, token) {
                    Ok(grant) => {
                        info!(conn = id.0, %audience, status = 202, "put-token accepted");
                        let conn = self.conns.get_mut(&id).expect("present");
                        conn.grants.push(grant);
                        conn.guard.token_accepted = true;
                        (202, "Accepted".to_string())
                    }
                    Err(why) => {
                        self.stats.tokens_refused += 1;
                        info!(conn = id.0, %audience, status = 401, reason = %why, "put-token refused");
                        (401, why)
                    }
                }
            }
            _ => {
                info!(
                    conn = id.0,
                    status = 400,
                    "put-token refused: malformed request"
                );
                (
                    400,
                    "a put-token request needs operation, type, name and a string body".to_string(),
                )
            }
        };
        self.reply(
            id,
            now,
            reply_to,
            mid,
            status,
            &description,
            Value::Null,
            true,
        );
    }

    /// Validates a SAS token for `audience`: signature with the named
    /// policy's key, expiry, and a resource that covers the audience.
    fn check_token(
        &self,
        now: Now,
        ty: &str,
        audience: &str,
        token: &str,
    ) -> Result<Grant, String> {
        if ty == "jwt" {
            return self.check_jwt(now, audience, token);
        }
        let sas =
            SharedAccessSignature::parse(token).map_err(|e| format!("InvalidSignature: {e}"))?;
        let key_name = sas.key_name().unwrap_or_default();
        let policy = self
            .config
            .policies
            .iter()
            .find(|p| p.name == key_name)
            .ok_or_else(|| format!("InvalidSignature: unknown key name '{key_name}'"))?;
        if !sas.verify(&policy.key) {
            return Err("InvalidSignature: The token has an invalid signature.".into());
        }
        let now_unix = (now.unix_ms / 1000) as u64;
        if sas.expires_at_unix() <= now_unix {
            return Err("ExpiredToken: The token is expired.".into());
        }
        let resource = entity_path(&sas.resource_uri().unwrap_or_default());
        let audience = entity_path(audience);
        if !covers(&resource, &audience) {
            return Err(format!(
                "InvalidAudience: the token for '{resource}' does not cover '{audience}'"
            ));
        }
        Ok(Grant {
            path: audience,
            rights: Rights::from(policy),
            expires_at: expiry_instant(now, sas.expires_at_unix()),
        })
    }

    /// Validates an Entra ID token for `audience` ([`crate::entra`]).
    fn check_jwt(&self, now: Now, audience: &str, token: &str) -> Result<Grant, String> {
        let path = entity_path(audience);
        let now_unix = (now.unix_ms / 1000) as u64;
        let g =
            crate::entra::check_put_token(self.config.entra_id.as_ref(), token, &path, now_unix)?;
        let rights = Rights {
            send: g.rights.send,
            listen: g.rights.listen,
            manage: g.rights.manage,
        };
        Ok(Grant {
            path,
            rights,
            expires_at: expiry_instant(now, g.expires_unix),
        })
    }

    fn on_management(&mut self, id: ConnId, now: Now, payload: &Bytes) {
        let Some((mid, reply_to, props, _)) = Self::request(payload) else {
            return;
        };
        let get = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_string);
        let name = get("name").unwrap_or_default();
        let authorized = {
            let conn = &self.conns[&id];
            let path = entity_path(&name);
            let via_token = get("security_token").is_some_and(|t| {
                let ty = if t.starts_with("SharedAccessSignature") {
                    "servicebus.windows.net:sastoken"
                } else {
                    "jwt"
                };
                self.check_token(now, ty, &name, &t).is_ok()
            });
            via_token
                || Self::authorized(
                    conn,
                    &path,
                    Rights {
                        listen: true,
                        ..Rights::default()
                    },
                )
                || Self::authorized(
                    conn,
                    &format!("{path}/$management"),
                    Rights {
                        listen: true,
                        ..Rights::default()
                    },
                )
        };
        let result = if get("operation").as_deref() != Some("READ") {
            Err((400, "only the READ operation is supported"))
        } else if !authorized {
            Err((401, "Unauthorized access: put a token for the hub first"))
        } else {
            match (self.find_hub(&name), get("type").as_deref()) {
                (None, _) => Err((404, "The messaging entity could not be found.")),
                (Some(h), Some("com.microsoft:eventhub")) => Ok(self.hub_info(h)),
                (Some(h), Some("com.microsoft:partition")) => {
                    let p = get("partition").unwrap_or_default();
                    match self.hubs[h].partitions.iter().position(|x| x.id == p) {
                        Some(i) => Ok(self.partition_info(h, i)),
                        None => Err((404, "The partition could not be found.")),
                    }
                }
                _ => Err((400, "unknown type")),
            }
        };
        match &result {
            Ok(_) => debug!(conn = id.0, entity = %name, status = 200, "management request"),
            Err((status, why)) => {
                info!(conn = id.0, entity = %name, status, reason = %why, "management request refused")
            }
        }
        match result {
            Ok(body) => self.reply(id, now, reply_to, mid, 200, "OK", body, false),
            Err((status, why)) => {
                self.reply(id, now, reply_to, mid, status, why, Value::Null, false)
            }
        }
    }

    fn hub_info(&self, h: usize) -> Value {
        let hub = &self.hubs[h];
        let ids = hub
            .partitions
            .iter()
            .map(|p| Value::String(p.id.as_str().into()))
            .collect();
        let mut m = Map::new();
        m.insert(
            Value::String("name".into()),
            Value::String(hub.config.name.as_str().into()),
        );
        m.insert(
            Value::String("type".into()),
            Value::String("com.microsoft:eventhub".into()),
        );
        m.insert(
            Value::String("created_at".into()),
            Value::Timestamp(Timestamp(hub.created_ms)),
        );
        m.insert(
            Value::String("partition_count".into()),
            Value::Int(hub.partitions.len() as i32),
        );
        m.insert(
            Value::String("partition_ids".into()),
            Value::Array(Array::new(format_code::STR8, ids).expect("strings")),
        );
        m.insert(Value::String("georeplication_factor".into()), Value::Int(1));
        Value::Map(m)
    }

    fn partition_info(&self, h: usize, i: usize) -> Value {
        let hub = &self.hubs[h];
        let p = &hub.partitions[i];
        let last = p.last();
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(Value::String(k.into()), v);
        };
        put("name", Value::String(hub.config.name.as_str().into()));
        put("type", Value::String("com.microsoft:partition".into()));
        put("partition", Value::String(p.id.as_str().into()));
        put(
            "begin_sequence_number",
            Value::Long(
                p.events
                    .front()
                    .map_or(p.next_sequence_number, |e| e.sequence_number),
            ),
        );
        put(
            "last_enqueued_sequence_number",
            Value::Long(last.map_or(-1, |e| e.sequence_number)),
        );
        put("last_enqueued_sequence_number_epoch", Value::Long(0));
        put(
            "last_enqueued_offset",
            Value::String(
                last.map_or("-1".to_string(), |e| e.offset.to_string())
                    .into(),
            ),
        );
        put(
            "last_enqueued_time_utc",
            Value::Timestamp(Timestamp(last.map_or(0, |e| e.enqueued_ms))),
        );
        put("is_partition_empty", Value::Bool(p.events.is_empty()));
        Value::Map(m)
    }

    /// Appends a message (or every event of a batch) to a partition.
    fn publish(
        &mut self,
        now: Now,
        (h, partition, producer): (usize, Option<usize>, Option<Producer>),
        format: u32,
        payload: &Bytes,
    ) -> Result<(), AmqpError> {
        let key = |m: &Message| {
            m.message_annotations
                .as_ref()
                .and_then(|a| a.get("x-opt-partition-key"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let outer =
            Message::decode_all(payload).map_err(|e| err("amqp:decode-error", e.to_string()))?;
        let outer_key = key(&outer);
        let events = if format == BATCH_MESSAGE_FORMAT {
            outer
                .unbatch()
                .map_err(|e| err("amqp:decode-error", format!("batch: {e}")))?
        } else {
            // The one event is the message itself: not copied.
            vec![outer]
        };
        let hub = &mut self.hubs[h];
        let count = hub.partitions.len();
        // Events sent to a partition may carry partition keys, which they
        // keep: buffered producers (.NET, Python) route keys themselves.
        let target = match (
            partition,
            outer_key.or_else(|| events.first().and_then(key)),
        ) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_index(&k, count).unwrap_or(0),
            (None, None) => hub.round_robin.next_index(count).unwrap_or(0),
        };
        let keep = match producer {
            Some(producer) => {
                let (name, id) = (&hub.config.name, &hub.partitions[target].id);
                let keep = self.producers.admit(name, id, producer, &events)?;
                let skipped = keep.iter().filter(|k| !**k).count() as u64;
                if skipped > 0 {
                    debug!(partition = %id, producer_group_id = producer.id, skipped, "duplicates acknowledged, not appended");
                    self.stats.duplicates += skipped;
                }
                Some(keep)
            }
            None => None,
        };
        let hub = &mut self.hubs[h];
        let retention = hub.retention_ms(self.config.retention_ms);
        let max_bytes = self.config.max_partition_bytes;
        let part = &mut hub.partitions[target];
        // The events of one transfer are stamped, then encoded into one
        // buffer that each stored event shares a slice of: one allocation
        // per transfer rather than one per event (a 100-event batch made
        // a hundred, and as many frees when they expired).
        let mut stamped = Vec::with_capacity(events.len());
        for (i, mut m) in events.into_iter().enumerate() {
            if keep.as_ref().is_some_and(|k| !k[i]) {
                continue;
            }
            let seq = part.next_sequence_number;
            let offset = part.next_offset;
            let annotations = m.message_annotations.get_or_insert_with(Map::new);
            annotations.insert(
                AnnotationKey::from("x-opt-sequence-number"),
                Value::Long(seq),
            );
            annotations.insert(
                AnnotationKey::from("x-opt-offset"),
                Value::String(offset.to_string().into()),
            );
            annotations.insert(
                AnnotationKey::from("x-opt-enqueued-time"),
                Value::Timestamp(Timestamp(now.unix_ms)),
            );
            m.delivery_annotations = None;
            let len = m.encoded_len();
            part.next_sequence_number += 1;
            part.next_offset += len as u64;
            stamped.push((seq, offset, m, len));
        }
        let mut buf = Vec::with_capacity(stamped.iter().map(|s| s.3).sum());
        for (_, _, m, _) in &stamped {
            m.encode(&mut buf);
        }
        let buf = Bytes::from(buf);
        let mut at = 0;
        for (seq, offset, m, len) in stamped {
            let header_len = m.header.as_ref().map_or(0, |h| h.encoded_len());
            let encoded = buf.slice(at..at + len);
            at += len;
            if self.record_appends {
                self.appended.push(Appended {
                    hub: hub.config.name.clone(),
                    partition: part.id.clone(),
                    sequence_number: seq,
                    offset,
                    enqueued_ms: now.unix_ms,
                    encoded: encoded.clone(),
                });
            }
            part.push(StoredEvent {
                sequence_number: seq,
                offset,
                enqueued_ms: now.unix_ms,
                encoded,
                header_len,
            });
            self.stats.events_in += 1;
        }
        part.expire(now.unix_ms - retention, max_bytes);
        Ok(())
    }

    /// Sends stored events to every receiver with credit.
    fn pump_all(&mut self, now: Now) {
        for id in self.connections() {
            self.pump_conn(id, now);
        }
    }

    /// Sends stored events to the receivers of connection `id` that have
    /// credit, as far as their bound of queued deliveries allows.
    fn pump_conn(&mut self, id: ConnId, now: Now) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut blocked = false;
        let consumers: Vec<(LinkId, Consumer)> = conn
            .links
            .iter()
            .filter_map(|(l, k)| match k {
                LinkKind::Consumer(c) => Some((*l, c.clone())),
                _ => None,
            })
            .collect();
        for (link, mut c) in consumers {
            let part = &self.hubs[c.hub].partitions[c.partition];
            let mut moved = false;
            while conn.engine.credit(link) > 0 {
                let first = part
                    .events
                    .front()
                    .map_or(part.next_sequence_number, |e| e.sequence_number);
                let index = (c.next_sequence_number - first).max(0) as usize;
                let Some(e) = part.events.get(index) else {
                    break;
                };
                if !Self::room(conn, link) {
                    blocked = true;
                    break;
                }
                let payload = if c.runtime_metric {
                    with_runtime_metric(e, part, now)
                } else {
                    e.encoded.clone()
                };
                conn.next_tag += 1;
                let tag = Bytes::copy_from_slice(&conn.next_tag.to_be_bytes());
                if conn
                    .engine
                    .link(link)
                    .send(tag, 0, Settlement::Settled, payload)
                    .is_err()
                {
                    break;
                }
                c.next_sequence_number = e.sequence_number + 1;
                self.stats.events_out += 1;
                moved = true;
            }
            if moved {
                conn.links.insert(link, LinkKind::Consumer(c));
            }
        }
        conn.guard.blocked = blocked;
    }
}

// ------------------------------------------------------------------------
// Run-time entity management (the Atom management API, `crate::management`):
// hubs and consumer groups added, changed and removed while clients are
// connected. Removing one detaches its links with `amqp:not-found`.

/// A consumer group's management properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupState {
    /// The group's name, as created.
    pub name: String,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: i64,
    /// When it was last changed, ms since the Unix epoch.
    pub updated_ms: i64,
    /// Its `UserMetadata`.
    pub user_metadata: Option<String>,
}

/// A hub's management properties: what the management API reports and
/// the data directory keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubState {
    /// The hub's name, as created.
    pub name: String,
    /// Its partitions, `0` to `partition_count - 1`.
    pub partition_count: u32,
    /// Retention set through the management API; `None` for a hub of the
    /// configuration that keeps the emulator's
    /// [`EmulatorConfig::retention_ms`].
    pub message_retention_in_days: Option<u32>,
    /// Its `Status` (recorded and reported; links are not refused by it).
    pub status: EntityStatus,
    /// Its `UserMetadata`.
    pub user_metadata: Option<String>,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: i64,
    /// When it was last changed, ms since the Unix epoch.
    pub updated_ms: i64,
    /// Declared in the configuration rather than created at run time.
    pub from_config: bool,
    /// Its consumer groups, `$Default` first.
    pub consumer_groups: Vec<ConsumerGroupState>,
}

impl HubState {
    /// The retention to report in days: the one set, or the emulator's
    /// `retention_ms` rounded up to whole days (at least one).
    pub fn retention_days(&self, emulator_retention_ms: i64) -> u32 {
        self.message_retention_in_days.unwrap_or_else(|| {
            let days = (emulator_retention_ms.max(1) + DAY_MS - 1) / DAY_MS;
            u32::try_from(days).unwrap_or(u32::MAX)
        })
    }
}

/// A change to the entities that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntityError {
    /// A hub of that name (in any case) exists.
    #[error("event hub '{0}' exists already")]
    HubExists(String),
    /// No hub of that name.
    #[error("event hub '{0}' does not exist")]
    NoSuchHub(String),
    /// A consumer group of that name exists in the hub.
    #[error("consumer group '{group}' of event hub '{hub}' exists already")]
    GroupExists {
        /// The hub.
        hub: String,
        /// The group.
        group: String,
    },
    /// No consumer group of that name in the hub.
    #[error("event hub '{hub}' has no consumer group '{group}'")]
    NoSuchGroup {
        /// The hub.
        hub: String,
        /// The group.
        group: String,
    },
    /// `$Default` cannot be removed.
    #[error("the consumer group $Default cannot be deleted")]
    DefaultGroup,
    /// A hub needs 1 to 32 partitions here.
    #[error("a hub needs 1 to 32 partitions, not {0}")]
    PartitionCount(u32),
}

impl HubMeta {
    fn from_config(h: &HubConfig, now_ms: i64) -> HubMeta {
        HubMeta {
            from_config: true,
            retention_days: None,
            status: EntityStatus::Active,
            user_metadata: None,
            updated_ms: now_ms,
            groups: h
                .consumer_groups
                .iter()
                .map(|g| {
                    (
                        g.to_ascii_lowercase(),
                        ConsumerGroupState {
                            name: g.clone(),
                            created_ms: now_ms,
                            updated_ms: now_ms,
                            user_metadata: None,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl Broker {
    fn hub_state(&self, h: usize) -> HubState {
        let hub = &self.hubs[h];
        let consumer_groups = hub
            .config
            .consumer_groups
            .iter()
            .map(|g| {
                hub.meta
                    .groups
                    .get(&g.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| ConsumerGroupState {
                        name: g.clone(),
                        created_ms: hub.created_ms,
                        updated_ms: hub.created_ms,
                        user_metadata: None,
                    })
            })
            .collect();
        HubState {
            name: hub.config.name.clone(),
            partition_count: hub.partitions.len() as u32,
            message_retention_in_days: hub.meta.retention_days,
            status: hub.meta.status,
            user_metadata: hub.meta.user_metadata.clone(),
            created_ms: hub.created_ms,
            updated_ms: hub.meta.updated_ms,
            from_config: hub.meta.from_config,
            consumer_groups,
        }
    }

    /// Every hub, configured and created, in the order they were added.
    pub fn hubs(&self) -> Vec<HubState> {
        (0..self.hubs.len()).map(|h| self.hub_state(h)).collect()
    }

    /// The hub named `name` (in any case).
    pub fn hub(&self, name: &str) -> Option<HubState> {
        self.find_hub(name).map(|h| self.hub_state(h))
    }

    /// The bytes of the events `name` retains.
    pub fn hub_size_bytes(&self, name: &str) -> Option<u64> {
        self.find_hub(name).map(|h| {
            self.hubs[h]
                .partitions
                .iter()
                .flat_map(|p| p.events.iter())
                .map(|e| e.encoded.len() as u64)
                .sum()
        })
    }

    /// Adds a hub at run time, at once usable over AMQP. `$Default` is
    /// added to its consumer groups when missing; `from_config` is kept
    /// as given (a restored record of a configured hub that the
    /// configuration no longer has becomes a run-time hub).
    pub fn add_hub(&mut self, state: HubState) -> Result<(), EntityError> {
        if self.find_hub(&state.name).is_some() {
            return Err(EntityError::HubExists(state.name));
        }
        if !(1..=32).contains(&state.partition_count) {
            return Err(EntityError::PartitionCount(state.partition_count));
        }
        let mut groups = state.consumer_groups;
        if !groups
            .iter()
            .any(|g| g.name.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP))
        {
            groups.insert(
                0,
                ConsumerGroupState {
                    name: DEFAULT_CONSUMER_GROUP.into(),
                    created_ms: state.created_ms,
                    updated_ms: state.created_ms,
                    user_metadata: None,
                },
            );
        }
        let config = HubConfig {
            name: state.name.clone(),
            partition_count: state.partition_count,
            consumer_groups: groups.iter().map(|g| g.name.clone()).collect(),
        };
        let meta = HubMeta {
            from_config: state.from_config,
            retention_days: state.message_retention_in_days,
            status: state.status,
            user_metadata: state.user_metadata,
            updated_ms: state.updated_ms,
            groups: groups
                .into_iter()
                .map(|g| (g.name.to_ascii_lowercase(), g))
                .collect(),
        };
        info!(hub = %state.name, partitions = state.partition_count, "hub created");
        self.hubs.push(Hub::new(config, state.created_ms, meta));
        Ok(())
    }

    /// Puts back a hub's recorded state at start (from the data
    /// directory): a configured hub of that name takes the recorded
    /// retention (when one was set), status, metadata and the recorded
    /// consumer groups it lacks, and keeps its configured partitions;
    /// any other is added as a run-time hub.
    pub fn restore_hub(&mut self, state: HubState) -> Result<(), EntityError> {
        let Some(h) = self.find_hub(&state.name) else {
            return self.add_hub(HubState {
                from_config: false,
                ..state
            });
        };
        let hub = &mut self.hubs[h];
        if state.partition_count != hub.config.partition_count {
            warn!(hub = %hub.config.name, configured = hub.config.partition_count, recorded = state.partition_count, "data dir: the configured partition count wins");
        }
        if state.message_retention_in_days.is_some() {
            hub.meta.retention_days = state.message_retention_in_days;
        }
        hub.meta.status = state.status;
        hub.meta.user_metadata = state.user_metadata;
        hub.meta.updated_ms = state.updated_ms;
        hub.created_ms = state.created_ms;
        for g in state.consumer_groups {
            let key = g.name.to_ascii_lowercase();
            if !hub.meta.groups.contains_key(&key) {
                hub.config.consumer_groups.push(g.name.clone());
            }
            hub.meta.groups.insert(key, g);
        }
        Ok(())
    }

    /// Changes a hub's retention, status and metadata (the Update Event
    /// Hub operation) at `now`. A new retention applies to the events
    /// retained from now on.
    pub fn update_hub(
        &mut self,
        now: Now,
        name: &str,
        message_retention_in_days: u32,
        status: EntityStatus,
        user_metadata: Option<String>,
    ) -> Result<HubState, EntityError> {
        let h = self
            .find_hub(name)
            .ok_or_else(|| EntityError::NoSuchHub(name.to_owned()))?;
        let meta = &mut self.hubs[h].meta;
        meta.retention_days = Some(message_retention_in_days);
        meta.status = status;
        meta.user_metadata = user_metadata;
        meta.updated_ms = now.unix_ms;
        info!(hub = %self.hubs[h].config.name, retention_days = message_retention_in_days, %status, "hub updated");
        Ok(self.hub_state(h))
    }

    /// Removes a hub and its events. Its publishing and consuming links
    /// are detached with `amqp:not-found`, as the service does when an
    /// entity is deleted. Returns how many links were detached.
    pub fn remove_hub(&mut self, now: Now, name: &str) -> Result<usize, EntityError> {
        let h = self
            .find_hub(name)
            .ok_or_else(|| EntityError::NoSuchHub(name.to_owned()))?;
        let hub_name = self.hubs[h].config.name.clone();
        let detached = self.detach_entity_links(
            |kind| match kind {
                LinkKind::Publisher { hub, .. } => *hub == h,
                LinkKind::Consumer(c) => c.hub == h,
                _ => false,
            },
            &format!("The messaging entity '{hub_name}' could not be found."),
        );
        self.hubs.remove(h);
        self.producers.forget_hub(&hub_name);
        // Links name hubs by index: those after the removed one move down.
        for conn in self.conns.values_mut() {
            for kind in conn.links.values_mut() {
                match kind {
                    LinkKind::Publisher { hub, .. } if *hub > h => *hub -= 1,
                    LinkKind::Consumer(c) if c.hub > h => c.hub -= 1,
                    _ => {}
                }
            }
        }
        info!(hub = %hub_name, links_detached = detached, "hub deleted");
        self.pump_all(now);
        Ok(detached)
    }

    /// Adds a consumer group to hub `hub`.
    pub fn add_consumer_group(
        &mut self,
        hub: &str,
        group: ConsumerGroupState,
    ) -> Result<(), EntityError> {
        let h = self
            .find_hub(hub)
            .ok_or_else(|| EntityError::NoSuchHub(hub.to_owned()))?;
        let hub = &mut self.hubs[h];
        let key = group.name.to_ascii_lowercase();
        if hub
            .config
            .consumer_groups
            .iter()
            .any(|g| g.eq_ignore_ascii_case(&group.name))
        {
            return Err(EntityError::GroupExists {
                hub: hub.config.name.clone(),
                group: group.name,
            });
        }
        info!(hub = %hub.config.name, group = %group.name, "consumer group created");
        hub.config.consumer_groups.push(group.name.clone());
        hub.meta.groups.insert(key, group);
        Ok(())
    }

    /// Changes a consumer group's metadata at `now`.
    pub fn update_consumer_group(
        &mut self,
        now: Now,
        hub: &str,
        group: &str,
        user_metadata: Option<String>,
    ) -> Result<ConsumerGroupState, EntityError> {
        let h = self
            .find_hub(hub)
            .ok_or_else(|| EntityError::NoSuchHub(hub.to_owned()))?;
        let state = self.hub_state(h);
        let mut g = state
            .consumer_groups
            .into_iter()
            .find(|g| g.name.eq_ignore_ascii_case(group))
            .ok_or_else(|| EntityError::NoSuchGroup {
                hub: state.name.clone(),
                group: group.to_owned(),
            })?;
        g.user_metadata = user_metadata;
        g.updated_ms = now.unix_ms;
        self.hubs[h]
            .meta
            .groups
            .insert(g.name.to_ascii_lowercase(), g.clone());
        Ok(g)
    }

    /// Removes a consumer group; its receivers are detached with
    /// `amqp:not-found`. Returns how many.
    pub fn remove_consumer_group(
        &mut self,
        now: Now,
        hub: &str,
        group: &str,
    ) -> Result<usize, EntityError> {
        if group.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP) {
            return Err(EntityError::DefaultGroup);
        }
        let h = self
            .find_hub(hub)
            .ok_or_else(|| EntityError::NoSuchHub(hub.to_owned()))?;
        let hub = &mut self.hubs[h];
        let Some(i) = hub
            .config
            .consumer_groups
            .iter()
            .position(|g| g.eq_ignore_ascii_case(group))
        else {
            return Err(EntityError::NoSuchGroup {
                hub: hub.config.name.clone(),
                group: group.to_owned(),
            });
        };
        let name = hub.config.consumer_groups.remove(i);
        hub.meta.groups.remove(&name.to_ascii_lowercase());
        let entity = format!("{}/ConsumerGroups/{name}", hub.config.name);
        let detached = self.detach_entity_links(
            |kind| matches!(kind, LinkKind::Consumer(c) if c.hub == h && c.group.eq_ignore_ascii_case(&name)),
            &format!("The messaging entity '{entity}' could not be found."),
        );
        info!(%entity, links_detached = detached, "consumer group deleted");
        self.pump_all(now);
        Ok(detached)
    }

    /// Detaches every link `which` selects with `amqp:not-found` and
    /// `description`, and forgets it.
    fn detach_entity_links(
        &mut self,
        which: impl Fn(&LinkKind) -> bool,
        description: &str,
    ) -> usize {
        let mut count = 0;
        for (id, conn) in self.conns.iter_mut() {
            let chosen: Vec<LinkId> = conn
                .links
                .iter()
                .filter(|(_, k)| which(k))
                .map(|(l, _)| *l)
                .collect();
            for link in chosen {
                let kind = conn.links.remove(&link);
                conn.pending.remove(&link);
                let error = err("amqp:not-found", description);
                if conn.engine.link(link).close(Some(error)).is_ok() {
                    if let Some(kind) = kind {
                        let (role, entity) = describe(&self.hubs, &kind);
                        info!(conn = id.0, %role, %entity, "entity deleted: link detached");
                    }
                    count += 1;
                }
            }
        }
        count
    }
}

/// The stored event with last-enqueued delivery annotations inserted
/// before its message annotations.
fn with_runtime_metric(e: &StoredEvent, part: &Partition, now: Now) -> Bytes {
    let last = part.last().expect("an event exists");
    let mut da = Map::new();
    da.insert(
        AnnotationKey::from("last_enqueued_sequence_number"),
        Value::Long(last.sequence_number),
    );
    da.insert(
        AnnotationKey::from("last_enqueued_offset"),
        Value::String(last.offset.to_string().into()),
    );
    da.insert(
        AnnotationKey::from("last_enqueued_time_utc"),
        Value::Timestamp(Timestamp(last.enqueued_ms)),
    );
    da.insert(
        AnnotationKey::from("runtime_info_retrieval_time_utc"),
        Value::Timestamp(Timestamp(now.unix_ms)),
    );
    let section = Message {
        delivery_annotations: Some(da),
        ..Default::default()
    }
    .to_bytes();
    // Header (if any) first, then delivery annotations, then the rest.
    let mut out = Vec::with_capacity(e.encoded.len() + section.len());
    out.extend_from_slice(&e.encoded[..e.header_len]);
    out.extend_from_slice(&section);
    out.extend_from_slice(&e.encoded[e.header_len..]);
    Bytes::from(out)
}
