//! [`Client`]: one Event Hubs connection with its CBS, management,
//! producer and consumer links, as a sans-IO state machine.
//!
//! This file holds the type, its inputs and outputs, and the loop that
//! makes progress after every input; each concern has its own module:
//! `connection` (transport, AMQP connection, recovery), `tokens` (CBS),
//! `senders`, `receivers`, `management`, and `timers` (the one table of
//! every timer).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use tracing::{debug, info};

use super::connection::Phase;
use super::error::ClientError;
use super::event::EventData;
use super::idempotent::{PartitionPublishingOptions, PartitionPublishingState};
use super::management::ManagementOp;
use super::options::{
    Cancelled, ClientEvent, ClientOptions, ConnectFailure, Credential, Now, OpId, ReceiverId,
    ReceiverOptions, SendTarget, TransportId,
};
use super::receivers::Receiver;
use super::rpc::ManagementRequest;
use super::senders::{SendOp, Sender};
use super::timers::{Timer, TimerTable};
use super::tokens::TokenSlot;
use crate::engine::UsageError;
use crate::eventhubs::sas::{Token, TokenError};
use crate::eventhubs::SplitMix64;

/// Acts on the engine's refusal of a command the client gives as it
/// tidies up (a close, a detach, more credit, an accept): the engine
/// refuses only when the connection or link is already going away, which
/// the client learns from the engine's events, so the refusal is logged.
pub(super) fn engine_command(result: Result<(), UsageError>, what: &'static str) {
    if let Err(e) = result {
        debug!(what, error = %e, "engine command refused");
    }
}

/// Whether the client runs, is closing, or is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Taking work.
    Running,
    /// Closing: no new work; sends in progress may finish until the close
    /// deadline (the [`Timer::Close`] entry).
    Closing,
    /// Closed; nothing more happens.
    Closed,
}

/// A send or an information request.
pub(super) struct Op {
    pub(super) kind: OpKind,
    /// The last failure on the way to the deadline, with the attempt it
    /// ended, for the time-out error.
    pub(super) last_error: Option<(u32, ClientError)>,
}

pub(super) enum OpKind {
    Send(SendOp),
    /// Waiting for the sender link of a target to attach.
    OpenSender(SendTarget),
    Management(ManagementOp),
}

/// The Event Hubs client core.
///
/// Commands go in (`send`, `open_receiver`, `consumed`,
/// `get_hub_information`, `close`, ...), together with bytes
/// ([`handle_input`](Self::handle_input)), timer expiries
/// ([`handle_timeout`](Self::handle_timeout)), tokens
/// ([`supply_token`](Self::supply_token)) and transport news
/// ([`connected`](Self::connected), [`connect_failed`](Self::connect_failed),
/// [`disconnected`](Self::disconnected)). Bytes
/// ([`poll_transmit`](Self::poll_transmit)), [`ClientEvent`]s
/// ([`poll_event`](Self::poll_event)) and the next deadline
/// ([`poll_timeout`](Self::poll_timeout)) come out.
///
/// A driver MUST, after every input: drain `poll_event` (opening and
/// closing transports and fetching tokens as told), write what
/// `poll_transmit` gives to the current transport, and call
/// `handle_timeout` once the time reaches `poll_timeout`. The caller owns
/// sockets, clocks and token sources; the client needs no other timer.
///
/// Guarantees kept across link detaches and connection losses:
/// - a receiver resumes strictly after the last event it handed out
///   (`x-opt-sequence-number > N`), and drops anything at or below it,
///   so the user sees no duplicate and no gap;
/// - a send is retried only for the transfers the service has not
///   acknowledged, and completes once every transfer is accepted;
/// - every operation completes or fails by its deadline, with the last
///   failure on the way when it times out.
pub struct Client {
    pub(super) options: ClientOptions,
    pub(super) container_id: String,
    pub(super) rng: SplitMix64,
    pub(super) id_prefix: u64,
    next_id: u64,
    pub(super) timers: TimerTable,
    pub(super) lifecycle: Lifecycle,
    pub(super) phase: Phase,
    pub(super) next_transport: u64,
    /// Connection attempts that failed in a row.
    pub(super) conn_failures: u32,
    /// Why the last connection attempt failed or the last connection was
    /// lost.
    pub(super) last_conn_error: Option<ClientError>,
    pub(super) tokens: BTreeMap<String, TokenSlot>,
    pub(super) senders: BTreeMap<SendTarget, Sender>,
    pub(super) receivers: BTreeMap<ReceiverId, Receiver>,
    pub(super) ops: BTreeMap<OpId, Op>,
    /// Management requests to send, in order.
    pub(super) mgmt_queue: VecDeque<OpId>,
    /// Receivers the caller closed whose detach the service has not
    /// answered.
    pub(super) detaching: std::collections::BTreeSet<ReceiverId>,
    pub(super) events: VecDeque<ClientEvent>,
    /// Allocations of accepted transfers, kept to encode the next batches
    /// in ([`super::senders::SparePayloads`]).
    pub(super) spare_payloads: super::senders::SparePayloads,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.options.host)
            .field("hub", &self.options.hub)
            .field("phase", &self.phase)
            .field("lifecycle", &self.lifecycle)
            .field("ops", &self.ops.len())
            .field("receivers", &self.receivers.len())
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client that connects when it first has work; an error when the
    /// options are invalid ([`ClientOptions::validate`]).
    pub fn new(options: ClientOptions) -> Result<Self, ClientError> {
        options.validate()?;
        let mut rng = SplitMix64::new(options.seed);
        let id_prefix = rng.next_u64();
        let container_id = options
            .container_id
            .clone()
            .unwrap_or_else(|| format!("eventhubs-rs-{:08x}", (id_prefix >> 32) as u32));
        Ok(Client {
            options,
            container_id,
            rng,
            id_prefix,
            next_id: 1,
            timers: TimerTable::default(),
            lifecycle: Lifecycle::Running,
            phase: Phase::Idle,
            next_transport: 1,
            conn_failures: 0,
            last_conn_error: None,
            tokens: BTreeMap::new(),
            senders: BTreeMap::new(),
            receivers: BTreeMap::new(),
            ops: BTreeMap::new(),
            mgmt_queue: VecDeque::new(),
            detaching: std::collections::BTreeSet::new(),
            events: VecDeque::new(),
            spare_payloads: super::senders::SparePayloads::default(),
        })
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Bytes of allocation kept from accepted transfers to encode the next
    /// batches in: at most two buffers of at most 1 MiB each.
    pub fn kept_payload_bytes(&self) -> usize {
        self.spare_payloads.bytes()
    }

    /// Our AMQP container id.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub(super) fn next_id(&mut self) -> u64 {
        let n = self.next_id;
        self.next_id += 1;
        n
    }

    pub(super) fn uses_cbs(&self) -> bool {
        !matches!(self.options.credential, Credential::Plain { .. })
    }

    fn check_running(&self) -> Result<(), ClientError> {
        match self.lifecycle {
            Lifecycle::Running => Ok(()),
            _ => Err(ClientError::Closed),
        }
    }

    // ----- commands -----

    /// Publishes `events` to `target`: the hub (routed by partition key or
    /// round-robin) or one partition. They go in as few transfers as the
    /// link's max-message-size allows, grouped by partition key. Completes
    /// with [`ClientEvent::SendComplete`] once all are accepted, or fails
    /// by `deadline`.
    ///
    /// With idempotent publishing on ([`ClientOptions::idempotent_publishing`])
    /// only partitions take sends: a send to the hub is refused, since the
    /// service deduplicates per partition. Route keyed events to their
    /// partition with [`send_routed`](Self::send_routed), as the buffered
    /// producer does.
    pub fn send(
        &mut self,
        now: Now,
        events: Vec<EventData>,
        target: SendTarget,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        self.check_running()?;
        SendOp::validate(&events, &target, false)?;
        self.queue_send(now, events, target, false, deadline)
    }

    /// Publishes `events` to partition `partition_id`, which the caller
    /// chose for them: by partition key with the service's hashing
    /// ([`crate::eventhubs::resolve_partition`] over the hub's partition
    /// ids in the order the service lists them), or round-robin, as
    /// buffered producers do. Unlike [`send`](Self::send), the events may
    /// carry partition keys: each keeps its own (consumers see it, as with
    /// the .NET and Python buffered producers) and events with different
    /// keys share transfers. Works with idempotent publishing.
    pub fn send_routed(
        &mut self,
        now: Now,
        events: Vec<EventData>,
        partition_id: impl Into<String>,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        self.check_running()?;
        let target = SendTarget::partition(partition_id)?;
        SendOp::validate(&events, &target, true)?;
        self.queue_send(now, events, target, true, deadline)
    }

    fn queue_send(
        &mut self,
        now: Now,
        events: Vec<EventData>,
        target: SendTarget,
        routed: bool,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        if let (SendTarget::Hub, true) = (&target, self.options.idempotent_publishing) {
            return Err(ClientError::InvalidArgument(
                    "idempotent publishing sends to partitions only (the service deduplicates per partition): choose a partition, or route events by key or round-robin to partitions on the client with send_routed, as the buffered producer does".into(),
                ));
        }
        let op = self.add_op(deadline, |_| {
            OpKind::Send(SendOp::new(target.clone(), events, routed))
        });
        let fresh = self.new_sender(&target);
        self.senders
            .entry(target)
            .or_insert(fresh)
            .unsplit
            .push_back(op);
        self.drive(now);
        Ok(op)
    }

    /// The idempotent publishing state of partition `partition_id`, once
    /// its sender has attached: the producer group, owner level and last
    /// sequence number the service confirmed. Save it to continue after a
    /// restart ([`PartitionPublishingOptions`]).
    pub fn partition_publishing_state(
        &self,
        partition_id: &str,
    ) -> Option<PartitionPublishingState> {
        self.senders
            .get(&SendTarget::Partition(partition_id.to_owned()))?
            .idem
            .as_ref()?
            .state
    }

    /// The idempotent publishing state of every partition published to so
    /// far, by partition id.
    pub fn partition_publishing_states(&self) -> BTreeMap<String, PartitionPublishingState> {
        self.senders
            .iter()
            .filter_map(|(t, s)| match (t, s.idem.as_ref().and_then(|i| i.state)) {
                (SendTarget::Partition(p), Some(state)) => Some((p.clone(), state)),
                _ => None,
            })
            .collect()
    }

    /// Where idempotent publishing starts on partition `partition_id`
    /// (restoring a saved state, or choosing a producer group or owner
    /// level), before anything is sent to it; the same as an entry of
    /// [`ClientOptions::partition_publishing`]. An error once the
    /// partition has been published to, or for invalid options.
    pub fn set_partition_publishing(
        &mut self,
        partition_id: impl Into<String>,
        options: PartitionPublishingOptions,
    ) -> Result<(), ClientError> {
        let partition_id = partition_id.into();
        options.validate().map_err(ClientError::InvalidArgument)?;
        if self
            .senders
            .contains_key(&SendTarget::Partition(partition_id.clone()))
        {
            return Err(ClientError::InvalidArgument(format!(
                "partition {partition_id} has been published to: its publishing options can only be set before the first send"
            )));
        }
        self.options
            .partition_publishing
            .insert(partition_id, options);
        Ok(())
    }

    /// Attaches the sender link of `target` (if it is not attached yet)
    /// and reports its max-message-size with
    /// [`ClientEvent::SenderOpened`], or fails by `deadline`. A batch sized
    /// against that limit ([`EventBatch`](super::EventBatch)) goes out as
    /// one transfer.
    pub fn open_sender(
        &mut self,
        now: Now,
        target: SendTarget,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        self.check_running()?;
        if let SendTarget::Partition(p) = &target {
            if p.is_empty() {
                return Err(ClientError::InvalidArgument("partition id is empty".into()));
            }
        }
        let op = self.add_op(deadline, |_| OpKind::OpenSender(target.clone()));
        let fresh = self.new_sender(&target);
        self.senders.entry(target).or_insert(fresh).openers.push(op);
        self.drive(now);
        Ok(op)
    }

    /// The caller no longer waits for `op`. A send none of whose transfers
    /// has been handed to the connection is forgotten: none of its events
    /// is published ([`Cancelled::Removed`]). A send with a transfer out
    /// goes on to completion or its deadline ([`Cancelled::Continuing`]):
    /// cutting it short would publish part of it. Information requests and
    /// [`open_sender`](Self::open_sender) are always removed; a response
    /// that arrives later is ignored.
    pub fn cancel(&mut self, now: Now, op: OpId) -> Cancelled {
        if !self.ops.contains_key(&op) {
            return Cancelled::Unknown;
        }
        if self.send_started(op) {
            return Cancelled::Continuing;
        }
        let Some(o) = self.ops.remove(&op) else {
            return Cancelled::Unknown;
        };
        self.timers.stop(&Timer::OpDeadline(op));
        self.timers.stop(&Timer::OpRetry(op));
        match o.kind {
            OpKind::Send(s) => self.forget_send(op, &s.target),
            OpKind::OpenSender(target) => self.forget_opener(op, &target),
            OpKind::Management(_) => self.mgmt_queue.retain(|x| *x != op),
        }
        debug!(op = op.0, "operation cancelled");
        self.drive(now);
        Cancelled::Removed
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
        self.check_running()?;
        let op = self.add_op(deadline, |_| OpKind::Management(ManagementOp::new(what)));
        self.mgmt_queue.push_back(op);
        self.drive(now);
        Ok(op)
    }

    pub(super) fn add_op(&mut self, deadline: Instant, kind: impl FnOnce(OpId) -> OpKind) -> OpId {
        let op = OpId(self.next_id());
        self.ops.insert(
            op,
            Op {
                kind: kind(op),
                last_error: None,
            },
        );
        self.timers.set(Timer::OpDeadline(op), deadline);
        op
    }

    /// Opens a receiver on a partition; events arrive as
    /// [`ClientEvent::Received`]. An error when the options are invalid
    /// ([`ReceiverOptions::validate`]).
    pub fn open_receiver(
        &mut self,
        now: Now,
        options: ReceiverOptions,
    ) -> Result<ReceiverId, ClientError> {
        self.check_running()?;
        options.validate()?;
        let id = ReceiverId(self.next_id());
        self.receivers.insert(id, Receiver::new(options));
        self.drive(now);
        Ok(id)
    }

    /// The application has taken `n` more of the events a receiver
    /// delivered. The client returns that credit to the service, a quarter
    /// of the prefetch at a time, or all of it once the application has
    /// taken everything it was given.
    pub fn consumed(&mut self, now: Now, receiver: ReceiverId, n: u32) {
        self.receiver_consumed(receiver, n);
        self.drive(now);
    }

    /// Closes a receiver; reported by [`ClientEvent::ReceiverClosed`]
    /// without error at once, then by [`ClientEvent::ReceiverDetached`]
    /// once the service has answered the detach (or the connection is
    /// gone, which takes the link with it).
    pub fn close_receiver(&mut self, now: Now, receiver: ReceiverId) {
        self.end_receiver(receiver, None);
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
        if self.lifecycle != Lifecycle::Running {
            return;
        }
        info!(host = %self.options.host, "closing");
        self.lifecycle = Lifecycle::Closing;
        self.timers.set(Timer::Close, deadline);
        let ids: Vec<ReceiverId> = self.receivers.keys().copied().collect();
        for id in ids {
            self.end_receiver(id, None);
        }
        self.drive(now);
    }

    /// Every handle on the client is gone: it closes, giving sends in
    /// progress the grace period ([`ClientOptions::grace_period`]).
    pub fn handles_dropped(&mut self, now: Now) {
        let deadline = now.instant + self.options.grace_period;
        self.close(now, deadline);
    }

    /// True once [`ClientEvent::Closed`] has been queued.
    pub fn is_closed(&self) -> bool {
        self.lifecycle == Lifecycle::Closed
    }

    /// A token for `audience`, in answer to
    /// [`ClientEvent::TokenRequired`], or why there is none.
    ///
    /// An answer that arrives once the client is closed (a token source
    /// still working when the last handle went) is dropped: nothing
    /// happens after [`ClientEvent::Closed`], no timer among it.
    pub fn supply_token(&mut self, now: Now, audience: &str, token: Result<Token, TokenError>) {
        if self.is_closed() {
            debug!(audience = %audience, "token supplied after close, dropped");
            return;
        }
        self.token_supplied(now, audience, token);
        self.drive(now);
    }

    // ----- transport -----

    /// The transport named by `id` is up: the AMQP exchange starts.
    pub fn connected(&mut self, now: Now, id: TransportId) {
        self.transport_up(now, id);
        self.drive(now);
    }

    /// The transport named by `id` could not be opened, for `failure`.
    /// Permanent failures fail the waiting operations at once; transient
    /// ones are retried under the retry policy.
    pub fn connect_failed(&mut self, now: Now, id: TransportId, failure: ConnectFailure) {
        self.transport_failed(now, id, failure);
        self.drive(now);
    }

    /// The transport named by `id` closed or failed, for `cause` (for
    /// example `read failed: connection reset by peer`).
    pub fn disconnected(&mut self, now: Now, id: TransportId, cause: &str) {
        self.transport_lost(now, id, cause);
        self.drive(now);
    }

    /// Bytes read from the current transport. All of `data` is consumed:
    /// whole frames are acted on at once and a partial frame is kept.
    pub fn handle_input(&mut self, now: Now, data: &[u8]) {
        if let Some(conn) = self.phase.conn_mut() {
            conn.engine.handle_input(now.instant, data);
            self.process_engine(now);
        }
        self.drive(now);
    }

    /// Appends the bytes to write to the current transport to `buf`;
    /// returns how many.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Now, buf: &mut Vec<u8>) -> usize {
        let n = self
            .phase
            .conn_mut()
            .map_or(0, |c| c.engine.poll_transmit(now.instant, buf));
        self.sync_engine_timer();
        n
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the
    /// first entry of the client's timer table.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(timer) = self.timers.pop_due(now.instant) {
            self.on_timer(now, timer);
        }
        self.drive(now);
    }

    fn on_timer(&mut self, now: Now, timer: Timer) {
        match timer {
            Timer::Connect => self.connect_timed_out(now),
            Timer::Backoff => self.backoff_over(),
            Timer::Open => self.open_timed_out(now),
            Timer::Close => self.close_deadline(now),
            Timer::Engine => {
                if let Some(c) = self.phase.conn_mut() {
                    c.engine.handle_timeout(now.instant);
                }
                self.process_engine(now);
            }
            Timer::OpDeadline(op) => self.op_deadline(op),
            Timer::OpRetry(op) => self.management_retry_due(op),
            Timer::Request(n) => self.request_timed_out(now, n),
            Timer::SenderLink(target) => self.sender_link_due(&target),
            Timer::SenderTransfer(target) => self.sender_transfers_due(now, &target),
            Timer::ReceiverLink(id) => self.receiver_link_due(id),
            Timer::TokenRefresh(audience) => self.token_due(&audience),
            Timer::TokenRetry(audience) => self.token_due(&audience),
        }
    }

    // ----- making progress -----

    /// After every input: fetch tokens, connect, put tokens, attach links,
    /// send what can be sent, and close when asked.
    pub(super) fn drive(&mut self, now: Now) {
        if self.lifecycle != Lifecycle::Closed {
            if self.uses_cbs() {
                self.acquire_tokens();
            }
            self.manage_connection(now);
            if self.phase.open_conn().is_some() {
                if self.uses_cbs() {
                    self.put_tokens(now);
                }
                self.run_senders(now);
                self.run_receivers(now);
                self.run_management(now);
            }
            self.check_close(now);
        }
        self.sync_engine_timer();
    }

    /// Mirrors the engine's heartbeat and idle timer in the table.
    fn sync_engine_timer(&mut self) {
        let at = self.phase.conn().and_then(|c| c.engine.poll_timeout());
        self.timers.set_or_stop(Timer::Engine, at);
    }

    /// The connection is gone: every link with it.
    pub(super) fn links_lost(&mut self) {
        self.all_detaches_done();
        self.senders_lost();
        self.receivers_lost();
        self.management_lost();
    }

    /// True when there is something to connect for.
    pub(super) fn has_work(&self) -> bool {
        match self.lifecycle {
            Lifecycle::Running => !self.ops.is_empty() || !self.receivers.is_empty(),
            Lifecycle::Closing => !self.ops.is_empty(),
            Lifecycle::Closed => false,
        }
    }

    // ----- operations -----

    /// Records the last failure `op` met, for its time-out error.
    pub(super) fn note_op_error(&mut self, op: OpId, attempt: u32, error: ClientError) {
        if let Some(o) = self.ops.get_mut(&op) {
            o.last_error = Some((attempt, error));
        }
    }

    /// An operation reached its deadline: it fails with a time-out naming
    /// the last failure on its way, its own or the connection's.
    fn op_deadline(&mut self, op: OpId) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        let own = o.last_error.take();
        let waiting_for_connection = self.phase.open_conn().is_none();
        let (attempts, last) = match (own, &self.last_conn_error) {
            (_, Some(e)) if waiting_for_connection => (self.conn_failures, Some(e.clone())),
            (Some((attempt, e)), _) => (attempt, Some(e)),
            (None, _) => (0, None),
        };
        let error = ClientError::Timeout {
            attempts,
            last: last.map(Box::new),
        };
        self.fail_op(op, error);
    }

    /// Completes `op` with `result`.
    pub(super) fn complete_op(&mut self, op: OpId, result: Result<(), ClientError>) {
        let Some(o) = self.ops.remove(&op) else {
            return;
        };
        self.timers.stop(&Timer::OpDeadline(op));
        self.timers.stop(&Timer::OpRetry(op));
        match o.kind {
            OpKind::Send(s) => {
                self.forget_send(op, &s.target);
                self.events
                    .push_back(ClientEvent::SendComplete { op, result });
            }
            OpKind::OpenSender(target) => {
                self.forget_opener(op, &target);
                let result = result.map(|()| self.sender_max_message_size(&target));
                self.events
                    .push_back(ClientEvent::SenderOpened { op, result });
            }
            OpKind::Management(m) => {
                self.mgmt_queue.retain(|x| *x != op);
                if let Err(e) = result {
                    self.events.push_back(m.failed(op, e));
                }
            }
        }
    }

    /// Fails `op` with `error`.
    pub(super) fn fail_op(&mut self, op: OpId, error: ClientError) {
        self.complete_op(op, Err(error));
    }

    /// Fails every operation and receiver with `error`.
    pub(super) fn fail_everything(&mut self, error: ClientError) {
        let ops: Vec<OpId> = self.ops.keys().copied().collect();
        for op in ops {
            self.fail_op(op, error.clone());
        }
        let rs: Vec<ReceiverId> = self.receivers.keys().copied().collect();
        for r in rs {
            self.end_receiver(r, Some(error.clone()));
        }
    }

    // ----- closing -----

    /// Closing with no operation left: the connection closes (waiting for
    /// the service's close while the deadline allows), then the client.
    fn check_close(&mut self, now: Now) {
        if self.lifecycle != Lifecycle::Closing || !self.ops.is_empty() {
            return;
        }
        match &mut self.phase {
            Phase::Open(c) => {
                // Our close goes out; the service's answer ends it.
                engine_command(c.engine.close(None), "close");
                self.phase.begin_closing();
            }
            Phase::Closing(_) => {}
            _ => self.finish_close(now),
        }
    }

    /// The close deadline: what is still pending fails, and the client
    /// closes without waiting any longer.
    fn close_deadline(&mut self, now: Now) {
        let ops: Vec<OpId> = self.ops.keys().copied().collect();
        for op in ops {
            self.fail_op(op, ClientError::Closed);
        }
        if let Phase::Open(c) = &mut self.phase {
            engine_command(c.engine.close(None), "close");
        }
        self.finish_close(now);
    }

    /// Lets the transport go and reports [`ClientEvent::Closed`].
    pub(super) fn finish_close(&mut self, now: Now) {
        self.retire_transport(now);
        self.all_detaches_done();
        self.lifecycle = Lifecycle::Closed;
        self.timers = TimerTable::default();
        info!(host = %self.options.host, "client closed");
        self.events.push_back(ClientEvent::Closed);
    }

    /// When a transport being let go must be done writing: after the
    /// linger time, or at the close deadline when that is sooner.
    pub(super) fn linger_deadline(&self, now: Now) -> Instant {
        let linger = now.instant + self.options.linger;
        match self.timers.get(&Timer::Close) {
            Some(close) if self.lifecycle == Lifecycle::Closing => {
                linger.min(close.max(now.instant))
            }
            _ if self.lifecycle == Lifecycle::Closing => now.instant,
            _ => linger,
        }
    }
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
        let client = Client::new(o).unwrap();
        let shown = format!("{:?} {:?}", client.options(), client);
        assert!(shown.contains("policy"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn the_container_id_comes_from_the_seed() {
        let id = |seed| {
            let mut o = ClientOptions::new("h", "hub", Credential::External);
            o.seed = seed;
            Client::new(o).unwrap().container_id().to_owned()
        };
        assert_eq!(id(7), id(7));
        assert_ne!(id(7), id(8));
        assert!(id(7).starts_with("eventhubs-rs-"));
    }

    #[test]
    fn invalid_options_are_refused() {
        let mut o = ClientOptions::new("h", "", Credential::External);
        assert!(matches!(
            Client::new(o.clone()),
            Err(ClientError::InvalidArgument(_))
        ));
        o.hub = "hub".into();
        o.max_frame_size = 100;
        assert!(matches!(
            Client::new(o),
            Err(ClientError::InvalidArgument(_))
        ));
    }
}
