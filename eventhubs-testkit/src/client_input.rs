//! The `client_input` harness: the client core (`eventhubs_proto::client::
//! Client`) given work, connected, and then fed the fuzz input as the
//! service's bytes, with clock steps and caller commands interleaved.
//!
//! The fuzz target (`fuzz/fuzz_targets/client_input.rs`) runs it, and the
//! seed generator in `eventhubs-emulator/tests/fuzz_seeds.rs` drives the
//! very same harness against the broker model: a recorded session replays
//! exactly (same calls, same virtual times, so the same link names, message
//! ids and correlation ids).
//!
//! # Input
//!
//! The first byte picks the scenario (see [`Scenario`]); the rest is a
//! sequence of records:
//!
//! | tag | argument | action |
//! |---|---|---|
//! | `0x00..=0xDF` | `tag + 1` bytes | the service's bytes, to `handle_input` |
//! | `0xE0` | u16 BE length, then that many bytes | the service's bytes |
//! | `0xE1` | u16 BE | the clock advances that many ms, due timers fire |
//! | `0xE2` | - | the clock jumps to the client's next timer, which fires |
//! | `0xE3` | u16 BE | the clock advances that many seconds, due timers fire |
//! | `0xF0..=0xF8` | see [`tag`] | a caller command |
//! | others | - | nothing |
//!
//! A record cut short by the end of the input takes what is there. When
//! the input ends, the service falls silent and the clock runs from timer
//! to timer past every operation's deadline, then five minutes more (at
//! most 200 timers) for the receivers' and the connection's retries.
//!
//! # Invariants (any violation panics)
//!
//! - every send, hub and partition request completes exactly once, with
//!   the event of its kind, and no later than its deadline: once the clock
//!   reaches a deadline the operation has completed;
//! - while an operation is pending, the client has a timer no later than
//!   its deadline (so a driver that sleeps until `poll_timeout` wakes);
//! - after every call, timers due are fired as a driver would, after
//!   which the next timer is after `now` (a driver would otherwise spin);
//! - events name only receivers that exist: `ReceiverOpened` at most once
//!   and before any `Received`, nothing after `ReceiverClosed`, which comes
//!   at most once; `Received` sequence numbers strictly increase per
//!   receiver (no duplicate, whatever the service replays);
//! - `Connect` names a fresh transport, `Disconnect` a known one; after
//!   `Closed` nothing more happens, no operation or receiver is left, and
//!   there is no timer;
//! - the bytes the client writes stay within a fixed multiple of those it
//!   read.
//!
//! Errors are formatted (`Display`, `Debug`, `condition`, `recovery`) so
//! hostile strings pass through their formatting too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eventhubs_proto::client::{
    Cancelled, Client, ClientError, ClientEvent, ClientOptions, ConnectFailure, ConnectFailureKind,
    Credential, EventData, Now, OpId, ReceiverId, ReceiverOptions, SendTarget, TransportId,
};
use eventhubs_proto::eventhubs::sas::{SasKeyProvider, SyncTokenProvider};
use eventhubs_proto::eventhubs::EventPosition;

/// The wall clock at the start of every run (ms since the Unix epoch).
pub const T0_MS: i64 = 1_800_000_000_000;
/// The broker model's default policy, so recorded sessions authenticate.
pub const KEY_NAME: &str = "RootManageSharedAccessKey";
/// Its key.
pub const KEY: &str = "SAS_KEY_VALUE";
/// The event hub.
pub const HUB: &str = "eh1";
/// The partition every send and receiver uses.
pub const PARTITION: &str = "0";
/// Commands that would exceed this many pending operations are ignored.
/// The client's work per call grows with its operations and receivers, so
/// inputs with hundreds of them are slow (a 20 KB input with 436 receivers
/// and 344 requests ran 260 ms) without reaching anything new.
pub const MAX_OPS: usize = 16;
/// Commands that would exceed this many open receivers are ignored.
pub const MAX_RECEIVERS: usize = 4;
/// Deadline of the operations the scenario starts with.
pub const OP_DEADLINE: Duration = Duration::from_secs(30);

/// Record tags.
pub mod tag {
    /// Largest short feed tag: `tag + 1` bytes follow.
    pub const FEED_SHORT_MAX: u8 = 0xDF;
    /// A u16 BE length and that many bytes follow.
    pub const FEED_LONG: u8 = 0xE0;
    /// Advance by a u16 BE count of milliseconds.
    pub const ADVANCE_MS: u8 = 0xE1;
    /// Jump to the client's next timer.
    pub const NEXT_TIMER: u8 = 0xE2;
    /// Advance by a u16 BE count of seconds.
    pub const ADVANCE_S: u8 = 0xE3;
    /// `consumed(receiver, n)`, one byte `n`.
    pub const CREDIT: u8 = 0xF0;
    /// A send to the partition, one byte: count and body size.
    pub const SEND: u8 = 0xF1;
    /// `get_hub_information`.
    pub const HUB: u8 = 0xF2;
    /// `get_partition_information`, one byte: the partition id.
    pub const PARTITION: u8 = 0xF3;
    /// `open_receiver`, one byte: start position.
    pub const OPEN_RECEIVER: u8 = 0xF4;
    /// `close_receiver` of the oldest live receiver.
    pub const CLOSE_RECEIVER: u8 = 0xF5;
    /// `close(now + n s)`, one byte `n`.
    pub const CLOSE: u8 = 0xF6;
    /// The transport fails: `disconnected`.
    pub const DISCONNECT: u8 = 0xF7;
    /// The next `n` transports cannot be opened: `connect_failed`, one
    /// byte: `n` in the low 7 bits; the high bit makes the failure
    /// permanent (a rejected certificate), else the connection is refused.
    pub const FAIL_CONNECTS: u8 = 0xF8;
    /// `open_sender` of partition `arg % 4`, or the hub for `arg >= 4`.
    pub const OPEN_SENDER: u8 = 0xF9;
    /// `cancel` of the pending operation `arg % pending`.
    pub const CANCEL: u8 = 0xFA;
}

/// The first input byte.
///
/// - bits 0-1: credential: 0 CBS tokens (the harness supplies SAS tokens
///   at once on `TokenRequired`), 1 SASL PLAIN, 2 CBS tokens supplied a
///   second after they are asked for, 3 CBS tokens that live two minutes
///   (refreshes);
/// - bit 2: send one event at the start;
/// - bit 3: open a receiver (earliest) at the start;
/// - bit 4: ask for hub information at the start;
/// - bit 5: ask for partition information at the start;
/// - bit 6: receivers prefetch 1 (else 10);
/// - bit 7: receivers track last-enqueued figures.
#[derive(Clone, Copy, Debug)]
pub struct Scenario(pub u8);

impl Scenario {
    /// SAS key provider; send, receiver, hub and partition information.
    pub const FULL: Scenario = Scenario(0b0011_1100);

    fn credential(self) -> u8 {
        self.0 & 3
    }
    fn prefetch(self) -> u32 {
        if self.0 & 0x40 != 0 {
            1
        } else {
            10
        }
    }
    fn track(self) -> bool {
        self.0 & 0x80 != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Send,
    Hub,
    Partition,
    OpenSender,
}

#[derive(Default, Debug)]
struct Recv {
    opened: bool,
    closed: bool,
    detached: bool,
    last_seq: Option<i64>,
}

/// What a run reached; the seed generator checks that its sessions go
/// deep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sends completed successfully.
    pub sends_ok: u32,
    /// Sender links reported open by `open_sender`.
    pub senders_opened: u32,
    /// Operations `cancel` removed.
    pub cancelled: u32,
    /// Sends failed.
    pub sends_failed: u32,
    /// Hub information received.
    pub hub_ok: u32,
    /// Partition information received.
    pub partition_ok: u32,
    /// Information requests failed.
    pub info_failed: u32,
    /// Receivers opened.
    pub receivers_opened: u32,
    /// Events received.
    pub received: u32,
    /// Receivers closed with an error.
    pub receivers_failed: u32,
    /// Transports asked for.
    pub connects: u32,
    /// `Closed` reported.
    pub closed: bool,
}

/// The client under test, its virtual clock, and the bookkeeping behind
/// the invariants.
pub struct Harness {
    /// The client.
    pub client: Client,
    scenario: Scenario,
    start: Instant,
    elapsed: Duration,
    /// Token source for CBS tokens.
    external: Option<SasKeyProvider>,
    /// How long the token source takes.
    token_delay: Duration,
    /// Tokens asked for, with when they are supplied.
    token_requests: Vec<(String, Instant)>,
    /// The transport the client uses, once `connected`.
    transport: Option<TransportId>,
    last_transport: u64,
    /// `Connect`s to answer with `connect_failed`.
    fail_connects: u8,
    /// Transports the client asked for and got, oldest first (for the
    /// seed generator).
    pub connected: Vec<TransportId>,
    /// `Disconnect`s: the transport and its last bytes (for the seed
    /// generator).
    pub retired: Vec<(TransportId, Vec<u8>)>,
    keep_sent: bool,
    /// What the client wrote, per transport, since last taken.
    pub sent: Vec<(TransportId, Vec<u8>)>,
    buf: Vec<u8>,
    read_total: usize,
    written_total: usize,
    ops: BTreeMap<OpId, (OpKind, Instant)>,
    done: BTreeSet<OpId>,
    receivers: BTreeMap<ReceiverId, Recv>,
    closed: bool,
    /// What the run reached.
    pub report: Report,
}

impl Harness {
    /// A client with the scenario's credential and starting work, asked
    /// to connect and connected at once. With `keep_sent`, what the client
    /// writes is kept in [`Harness::sent`] (the seed generator forwards it
    /// to the broker; the fuzz target drops it).
    pub fn new(scenario: Scenario, keep_sent: bool) -> Harness {
        let provider = |validity: u64| {
            SasKeyProvider::new(KEY_NAME, KEY)
                .expect("valid key")
                .with_validity(Duration::from_secs(validity))
        };
        let (credential, external) = match scenario.credential() {
            1 => (
                Credential::Plain {
                    key_name: KEY_NAME.into(),
                    key: KEY.into(),
                },
                None,
            ),
            3 => (Credential::External, Some(provider(120))),
            _ => (Credential::External, Some(provider(3600))),
        };
        let token_delay = if scenario.credential() == 2 {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        let mut options = ClientOptions::new("localhost", HUB, credential);
        options.container_id = Some("fuzz".into());
        let mut h = Harness {
            client: Client::new(options).expect("valid options"),
            scenario,
            start: Instant::now(),
            elapsed: Duration::ZERO,
            external,
            token_delay,
            token_requests: Vec::new(),
            transport: None,
            last_transport: 0,
            fail_connects: 0,
            connected: Vec::new(),
            retired: Vec::new(),
            keep_sent,
            sent: Vec::new(),
            buf: Vec::new(),
            read_total: 0,
            written_total: 0,
            ops: BTreeMap::new(),
            done: BTreeSet::new(),
            receivers: BTreeMap::new(),
            closed: false,
            report: Report::default(),
        };
        if scenario.0 & 0x04 != 0 {
            h.send(1, 16, OP_DEADLINE);
        }
        if scenario.0 & 0x08 != 0 {
            h.open_receiver(EventPosition::Earliest);
        }
        if scenario.0 & 0x10 != 0 {
            h.hub(OP_DEADLINE);
        }
        if scenario.0 & 0x20 != 0 {
            h.partition(PARTITION.into(), OP_DEADLINE);
        }
        h.settle();
        h
    }

    /// The virtual time.
    pub fn now(&self) -> Now {
        Now {
            instant: self.start + self.elapsed,
            unix_ms: T0_MS + self.elapsed.as_millis() as i64,
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The transport in use.
    pub fn transport(&self) -> Option<TransportId> {
        self.transport
    }

    // ----- work -----

    fn send(&mut self, count: usize, body: usize, deadline: Duration) {
        if self.ops.len() >= MAX_OPS {
            return;
        }
        let now = self.now();
        let events = (0..count)
            .map(|i| {
                let mut e = EventData::new(vec![b'x'; body]);
                e.set("i", eventhubs_proto::codec::Value::Long(i as i64));
                e
            })
            .collect();
        if let Ok(op) = self.client.send(
            now,
            events,
            SendTarget::Partition(PARTITION.into()),
            now.instant + deadline,
        ) {
            self.ops.insert(op, (OpKind::Send, now.instant + deadline));
        }
    }

    fn hub(&mut self, deadline: Duration) {
        if self.ops.len() >= MAX_OPS {
            return;
        }
        let now = self.now();
        if let Ok(op) = self.client.get_hub_information(now, now.instant + deadline) {
            self.ops.insert(op, (OpKind::Hub, now.instant + deadline));
        }
    }

    fn partition(&mut self, id: String, deadline: Duration) {
        if self.ops.len() >= MAX_OPS {
            return;
        }
        let now = self.now();
        if let Ok(op) = self
            .client
            .get_partition_information(now, id, now.instant + deadline)
        {
            self.ops
                .insert(op, (OpKind::Partition, now.instant + deadline));
        }
    }

    fn open_receiver(&mut self, position: EventPosition) {
        if self.receivers.values().filter(|r| !r.closed).count() >= MAX_RECEIVERS {
            return;
        }
        let now = self.now();
        let options = ReceiverOptions::new(PARTITION)
            .position(position)
            .prefetch(self.scenario.prefetch())
            .track_last_enqueued(self.scenario.track());
        if let Ok(id) = self.client.open_receiver(now, options) {
            // Registered before any event about it is drained.
            assert!(
                self.receivers.insert(id, Recv::default()).is_none(),
                "receiver id {id:?} reused"
            );
        }
    }

    fn live_receiver(&self) -> Option<ReceiverId> {
        self.receivers
            .iter()
            .find(|(_, r)| !r.closed)
            .map(|(id, _)| *id)
    }

    /// Runs a caller command; `arg` is its argument byte (0 when the input
    /// ended).
    pub fn command(&mut self, cmd: u8, arg: u8) {
        let now = self.now();
        match cmd {
            tag::CREDIT => {
                if let Some(r) = self.live_receiver() {
                    self.client.consumed(now, r, u32::from(arg));
                }
            }
            tag::SEND => {
                let count = 1 + usize::from(arg & 3);
                let body = usize::from(arg >> 2) * 64;
                self.send(count, body, OP_DEADLINE);
            }
            tag::HUB => self.hub(OP_DEADLINE),
            tag::PARTITION => {
                let id = match arg {
                    0..=3 => arg.to_string(),
                    4 => String::new(),
                    _ => format!("p{arg}"),
                };
                self.partition(id, OP_DEADLINE);
            }
            tag::OPEN_RECEIVER => {
                let position = match arg & 3 {
                    0 => EventPosition::Earliest,
                    1 => EventPosition::Latest,
                    2 => EventPosition::sequence_number(i64::from(arg >> 2), arg & 4 != 0),
                    _ => EventPosition::offset((arg >> 2).to_string(), false),
                };
                self.open_receiver(position);
            }
            tag::CLOSE_RECEIVER => {
                if let Some(r) = self.live_receiver() {
                    self.client.close_receiver(now, r);
                }
            }
            tag::CLOSE => {
                let deadline = now.instant + Duration::from_secs(u64::from(arg));
                self.client.close(now, deadline);
            }
            tag::DISCONNECT => {
                if let Some(t) = self.transport.take() {
                    self.client.disconnected(now, t, "fuzz: transport failed");
                }
            }
            tag::FAIL_CONNECTS => self.fail_connects = arg,
            tag::OPEN_SENDER => {
                let target = match arg {
                    0..=3 => SendTarget::Partition(arg.to_string()),
                    _ => SendTarget::Hub,
                };
                let deadline = now.instant + OP_DEADLINE;
                if let Ok(op) = self.client.open_sender(now, target, deadline) {
                    self.ops.insert(op, (OpKind::OpenSender, deadline));
                }
            }
            tag::CANCEL => {
                let pending: Vec<OpId> = self.ops.keys().copied().collect();
                if !pending.is_empty() {
                    let op = pending[usize::from(arg) % pending.len()];
                    match self.client.cancel(now, op) {
                        Cancelled::Removed => {
                            // Forgotten: no event may report it.
                            self.ops.remove(&op);
                            self.done.insert(op);
                            self.report.cancelled += 1;
                        }
                        Cancelled::Continuing => {}
                        Cancelled::Unknown => panic!("a pending {op:?} is unknown to cancel"),
                    }
                }
            }
            _ => return,
        }
        self.settle();
    }

    /// Whether `cmd` takes an argument byte.
    pub fn command_takes_arg(cmd: u8) -> bool {
        matches!(
            cmd,
            tag::CREDIT
                | tag::SEND
                | tag::PARTITION
                | tag::OPEN_RECEIVER
                | tag::CLOSE
                | tag::FAIL_CONNECTS
                | tag::OPEN_SENDER
                | tag::CANCEL
        )
    }

    // ----- input and time -----

    /// The service's bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        let now = self.now();
        self.read_total += bytes.len();
        self.client.handle_input(now, bytes);
        self.settle();
    }

    /// Advances the clock by `d` and fires the timers then due.
    pub fn advance(&mut self, d: Duration) {
        // Bounded so that instants never overflow.
        self.elapsed += d.min(Duration::from_secs(7 * 24 * 3600));
        self.fire();
    }

    /// Jumps to the client's next timer (or token answer), if any, and
    /// fires it.
    pub fn next_timer(&mut self) {
        let token = self.token_requests.iter().map(|(_, at)| *at).min();
        let next = match (self.client.poll_timeout(), token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = next {
            let now = self.now().instant;
            if t > now {
                self.elapsed += t - now;
            }
            self.fire();
        }
    }

    /// Fires the timers due now: [`Harness::settle`] does.
    fn fire(&mut self) {
        self.settle();
    }

    /// What a driver does after every call into the client: drains what it
    /// writes and reports (answering `Connect` at once), fires the timers
    /// then due, drains again, and checks the invariants. Once
    /// `handle_timeout(now)` has run, no timer may still be due at `now`:
    /// a driver would call it again at once, forever.
    fn settle(&mut self) {
        self.drain();
        self.supply_tokens();
        let now = self.now();
        if self.client.poll_timeout().is_some_and(|t| t <= now.instant) {
            self.client.handle_timeout(now);
            self.drain();
            if let Some(t) = self.client.poll_timeout() {
                assert!(
                    t > now.instant,
                    "timer {:?} still due after handle_timeout at {:?}",
                    t - self.start,
                    self.elapsed
                );
            }
        }
        self.check();
    }

    /// The token source answers for `audience`.
    fn supply_token(&mut self, audience: &str) {
        let now = self.now();
        let Some(p) = self.external.as_mut() else {
            return;
        };
        let token = p.token(audience, (now.unix_ms / 1000) as u64);
        self.client.supply_token(now, audience, token);
    }

    /// Supplies the tokens whose delay is over.
    fn supply_tokens(&mut self) {
        let now = self.now().instant;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.token_requests)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.token_requests = later;
        for (audience, _) in due {
            self.supply_token(&audience);
            self.drain();
        }
    }

    fn drain(&mut self) {
        loop {
            let now = self.now();
            self.buf.clear();
            let n = self.client.poll_transmit(now, &mut self.buf);
            assert_eq!(n, self.buf.len(), "poll_transmit miscounted");
            self.written_total += n;
            if n > 0 {
                let t = self.transport.expect("bytes to write without a transport");
                if self.keep_sent {
                    self.sent.push((t, self.buf.clone()));
                }
            }
            let mut any = false;
            while let Some(ev) = self.client.poll_event() {
                any = true;
                self.on_event(ev);
            }
            if !any && n == 0 {
                break;
            }
        }
    }

    fn on_event(&mut self, ev: ClientEvent) {
        assert!(!self.closed, "event after Closed: {ev:?}");
        let now = self.now();
        match ev {
            ClientEvent::Connect(id) => {
                assert!(id.0 > self.last_transport, "Connect({id:?}) not fresh");
                self.last_transport = id.0;
                self.report.connects += 1;
                if self.fail_connects & 0x7f > 0 {
                    self.fail_connects -= 1;
                    let kind = if self.fail_connects & 0x80 != 0 {
                        ConnectFailureKind::CertificateRejected
                    } else {
                        ConnectFailureKind::Refused
                    };
                    let failure = ConnectFailure::new(kind, "fuzz: connect failed");
                    self.client.connect_failed(now, id, failure);
                } else {
                    self.transport = Some(id);
                    self.connected.push(id);
                    self.client.connected(now, id);
                }
            }
            ClientEvent::Disconnect {
                transport,
                final_bytes,
                ..
            } => {
                assert!(
                    transport.0 <= self.last_transport,
                    "Disconnect of unknown {transport:?}"
                );
                self.written_total += final_bytes.len();
                if self.transport == Some(transport) {
                    self.transport = None;
                }
                self.retired.push((transport, final_bytes));
            }
            ClientEvent::TokenRequired { audience } => {
                assert!(self.external.is_some(), "TokenRequired without CBS");
                if self.token_delay.is_zero() {
                    self.supply_token(&audience);
                } else {
                    let at = now.instant + self.token_delay;
                    self.token_requests.push((audience, at));
                }
            }
            ClientEvent::SendComplete { op, result } => {
                self.complete(op, OpKind::Send, result.as_ref().err());
                match result {
                    Ok(()) => self.report.sends_ok += 1,
                    Err(_) => self.report.sends_failed += 1,
                }
            }
            ClientEvent::HubInformation { op, result } => {
                self.complete(op, OpKind::Hub, result.as_ref().err());
                match result {
                    Ok(info) => {
                        let _ = format!("{info:?}");
                        self.report.hub_ok += 1;
                    }
                    Err(_) => self.report.info_failed += 1,
                }
            }
            ClientEvent::PartitionInformation { op, result } => {
                self.complete(op, OpKind::Partition, result.as_ref().err());
                match result {
                    Ok(info) => {
                        let _ = format!("{info:?}");
                        self.report.partition_ok += 1;
                    }
                    Err(_) => self.report.info_failed += 1,
                }
            }
            ClientEvent::ReceiverOpened { receiver } => {
                let r = self.receiver(receiver, "ReceiverOpened");
                assert!(!r.opened, "ReceiverOpened twice for {receiver:?}");
                r.opened = true;
                self.report.receivers_opened += 1;
            }
            ClientEvent::Received { receiver, event } => {
                let r = self.receiver(receiver, "Received");
                assert!(r.opened, "Received before ReceiverOpened for {receiver:?}");
                let seq = event.sequence_number();
                if let Some(last) = r.last_seq {
                    assert!(
                        seq > last,
                        "{receiver:?} got sequence number {seq} after {last}"
                    );
                }
                r.last_seq = Some(seq);
                let _ = format!("{event:?}");
                self.report.received += 1;
            }
            ClientEvent::ReceiverClosed { receiver, error } => {
                let r = self.receiver(receiver, "ReceiverClosed");
                r.closed = true;
                if let Some(e) = &error {
                    touch(e);
                    self.report.receivers_failed += 1;
                }
            }
            ClientEvent::SenderOpened { op, result } => {
                self.complete(op, OpKind::OpenSender, result.as_ref().err());
                if let Ok(max) = result {
                    assert!(max > 0, "a sender opened with max-message-size 0");
                    self.report.senders_opened += 1;
                }
            }
            ClientEvent::ReceiverDetached { receiver } => {
                let r = self
                    .receivers
                    .get_mut(&receiver)
                    .unwrap_or_else(|| panic!("ReceiverDetached for unknown {receiver:?}"));
                assert!(
                    r.closed,
                    "ReceiverDetached before ReceiverClosed for {receiver:?}"
                );
                assert!(!r.detached, "ReceiverDetached twice for {receiver:?}");
                r.detached = true;
            }
            ClientEvent::Closed => {
                self.closed = true;
                self.report.closed = true;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    fn receiver(&mut self, id: ReceiverId, what: &str) -> &mut Recv {
        let r = self
            .receivers
            .get_mut(&id)
            .unwrap_or_else(|| panic!("{what} for unknown receiver {id:?}"));
        assert!(!r.closed, "{what} for {id:?} after ReceiverClosed");
        r
    }

    fn complete(&mut self, op: OpId, kind: OpKind, error: Option<&ClientError>) {
        assert!(!self.done.contains(&op), "{op:?} completed twice");
        let (k, _) = self
            .ops
            .remove(&op)
            .unwrap_or_else(|| panic!("completion of unknown {op:?}"));
        assert_eq!(k, kind, "{op:?} completed as the wrong kind");
        self.done.insert(op);
        if let Some(e) = error {
            touch(e);
        }
    }

    fn check(&mut self) {
        let now = self.now().instant;
        for (op, (_, deadline)) in &self.ops {
            assert!(
                *deadline > now,
                "{op:?} still pending {:?} after its deadline",
                now - *deadline
            );
        }
        let timer = self.client.poll_timeout();
        if let Some(first) = self.ops.values().map(|(_, d)| *d).min() {
            assert!(
                timer.is_some_and(|t| t <= first),
                "an operation is due at {:?} but the next timer is {:?}",
                first - self.start,
                timer.map(|t| t.saturating_duration_since(self.start))
            );
        }
        if self.closed {
            assert!(self.ops.is_empty(), "Closed with operations pending");
            assert!(
                self.receivers.values().all(|r| r.closed),
                "Closed with a receiver open"
            );
            assert!(
                self.receivers.values().all(|r| r.detached),
                "Closed with a receiver's detach unreported"
            );
            assert!(timer.is_none(), "a timer after Closed");
            assert!(self.client.is_closed());
        }
        assert!(
            self.written_total <= (1 << 20) + 64 * self.read_total,
            "wrote {} bytes after reading {}",
            self.written_total,
            self.read_total
        );
    }

    /// The service falls silent: the clock runs from timer to timer until
    /// every operation has completed, which must happen by its deadline;
    /// then a while longer, for the retries of what is left.
    pub fn finish(&mut self) {
        let mut steps = 0;
        while !self.ops.is_empty() {
            steps += 1;
            assert!(
                steps < 100_000,
                "operations still pending after {steps} timers"
            );
            // check() already holds that a timer is set.
            self.next_timer();
        }
        let end = self.start + self.elapsed + Duration::from_secs(300);
        for _ in 0..200 {
            match self.client.poll_timeout() {
                Some(t) if t <= end => self.next_timer(),
                _ => break,
            }
        }
    }

    /// Takes what the client wrote since last taken.
    pub fn take_sent(&mut self) -> Vec<(TransportId, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }
}

/// Formats an error every way it can be.
fn touch(e: &ClientError) {
    let _ = e.to_string();
    let _ = format!("{e:?}");
    let _ = e.condition();
    let _ = e.recovery();
    let _ = e.is_ownership_lost();
}

fn u16_at(data: &[u8], i: usize) -> (usize, usize) {
    let hi = data.get(i).copied().unwrap_or(0);
    let lo = data.get(i + 1).copied().unwrap_or(0);
    (
        usize::from(u16::from_be_bytes([hi, lo])),
        (i + 2).min(data.len()),
    )
}

/// Runs one input; returns what the run reached.
pub fn run(data: &[u8]) -> Report {
    let Some((&scenario, mut rest)) = data.split_first() else {
        return Report::default();
    };
    let mut h = Harness::new(Scenario(scenario), false);
    while let Some((&t, tail)) = rest.split_first() {
        rest = tail;
        match t {
            0..=tag::FEED_SHORT_MAX => {
                let n = (usize::from(t) + 1).min(rest.len());
                h.feed(&rest[..n]);
                rest = &rest[n..];
            }
            tag::FEED_LONG => {
                let (len, at) = u16_at(rest, 0);
                let n = len.min(rest.len() - at);
                h.feed(&rest[at..at + n]);
                rest = &rest[at + n..];
            }
            tag::ADVANCE_MS | tag::ADVANCE_S => {
                let (v, at) = u16_at(rest, 0);
                rest = &rest[at..];
                let d = if t == tag::ADVANCE_MS {
                    Duration::from_millis(v as u64)
                } else {
                    Duration::from_secs(v as u64)
                };
                h.advance(d);
            }
            tag::NEXT_TIMER => h.next_timer(),
            _ => {
                let arg = if Harness::command_takes_arg(t) {
                    let a = rest.first().copied().unwrap_or(0);
                    rest = rest.get(1..).unwrap_or(&[]);
                    a
                } else {
                    0
                };
                h.command(t, arg);
            }
        }
    }
    h.finish();
    h.report.clone()
}

/// Encodes records; the seed generator writes inputs with it.
#[derive(Clone, Debug)]
pub struct Recorder {
    /// The input so far.
    pub bytes: Vec<u8>,
}

impl Recorder {
    /// An input for `scenario`.
    pub fn new(scenario: Scenario) -> Recorder {
        Recorder {
            bytes: vec![scenario.0],
        }
    }

    /// A feed record of `data` (split in records of at most 65535 bytes).
    pub fn feed(&mut self, data: &[u8]) {
        for piece in data.chunks(usize::from(u16::MAX)) {
            if piece.len() <= usize::from(tag::FEED_SHORT_MAX) + 1 {
                self.bytes.push((piece.len() - 1) as u8);
            } else {
                self.bytes.push(tag::FEED_LONG);
                self.bytes
                    .extend_from_slice(&(piece.len() as u16).to_be_bytes());
            }
            self.bytes.extend_from_slice(piece);
        }
    }

    /// An advance record of `ms` milliseconds.
    pub fn advance_ms(&mut self, ms: u16) {
        self.bytes.push(tag::ADVANCE_MS);
        self.bytes.extend_from_slice(&ms.to_be_bytes());
    }

    /// A command record.
    pub fn command(&mut self, cmd: u8, arg: u8) {
        self.bytes.push(cmd);
        if Harness::command_takes_arg(cmd) {
            self.bytes.push(arg);
        }
    }
}
