//! Senders: one link per [`SendTarget`]. A send is split, once the link's
//! max-message-size is known, into transfers (`batch.rs`: exact size
//! accounting, grouping by partition key); transfers go out as credit
//! allows, in order; unacknowledged ones go back to the queue when the
//! link or the connection is lost; refused ones are retried or fail per
//! the outcome's class and the retry policy.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use super::batch::{split_into_batches, BatchError, DEFAULT_MAX_MESSAGE_SIZE};
use super::client::{Client, OpKind};
use super::error::ClientError;
use super::event::EventData;
use super::links::{retry_delay, LinkSlot, LinkState};
use super::options::{Now, OpId, SendTarget};
use super::requests::GEOREPLICATION;
use super::timers::Timer;
use crate::codec::messaging::{DeliveryState, Source, Target};
use crate::codec::performatives::{Attach, Role, SenderSettleMode};
use crate::codec::{Encode, Symbol};
use crate::engine::{LinkConfig, LinkId, Settlement};

/// A send in progress.
pub(super) struct SendOp {
    pub(super) target: SendTarget,
    /// The events, until they are split into transfers.
    events: Vec<EventData>,
    /// Transfers not accepted yet.
    units_left: usize,
    /// A transfer was handed to the connection.
    started: bool,
}

impl SendOp {
    pub(super) fn new(target: SendTarget, events: Vec<EventData>) -> Self {
        SendOp {
            target,
            events,
            units_left: 0,
            started: false,
        }
    }

    /// What is wrong with sending `events` to `target`, if anything.
    pub(super) fn validate(events: &[EventData], target: &SendTarget) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::InvalidArgument(what.into()));
        if events.is_empty() {
            return bad("no events to send");
        }
        if let SendTarget::Partition(p) = target {
            if p.is_empty() {
                return bad("partition id is empty");
            }
            if events.iter().any(|e| e.partition_key.is_some()) {
                return bad("an event with a partition key cannot be sent to a chosen partition");
            }
        }
        Ok(())
    }
}

/// One transfer of a send.
struct Unit {
    op: OpId,
    payload: Bytes,
    format: u32,
    /// Refusals so far.
    attempt: u32,
    /// Waiting for a retry delay ([`Timer::SenderTransfer`]).
    not_before: Option<Instant>,
}

/// A sender link and its transfers.
pub(super) struct Sender {
    pub(super) link: LinkState,
    max_message_size: u64,
    /// Sends waiting for the link's max-message-size to be split.
    pub(super) unsplit: VecDeque<OpId>,
    /// [`Client::open_sender`] requests waiting for the link to attach.
    pub(super) openers: Vec<OpId>,
    queue: VecDeque<Unit>,
    in_flight: BTreeMap<u32, Unit>,
    next_tag: u64,
}

impl Sender {
    pub(super) fn new() -> Self {
        Sender {
            link: LinkState::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            unsplit: VecDeque::new(),
            openers: Vec::new(),
            queue: VecDeque::new(),
            in_flight: BTreeMap::new(),
            next_tag: 0,
        }
    }

    pub(super) fn has_work(&self) -> bool {
        !self.unsplit.is_empty()
            || !self.openers.is_empty()
            || !self.queue.is_empty()
            || !self.in_flight.is_empty()
    }

    /// The link went away: what was in flight was not acknowledged and
    /// goes back to the front of the queue, in order.
    fn requeue_in_flight(&mut self) {
        for (_, u) in std::mem::take(&mut self.in_flight).into_iter().rev() {
            self.queue.push_front(u);
        }
    }

    /// The earliest retry instant among the queued transfers.
    fn next_retry(&self) -> Option<Instant> {
        self.queue.iter().filter_map(|u| u.not_before).min()
    }

    /// Every send this sender holds.
    fn ops(&self) -> Vec<OpId> {
        let mut ops: Vec<OpId> = self.unsplit.iter().copied().collect();
        ops.extend(self.openers.iter().copied());
        ops.extend(self.queue.iter().map(|u| u.op));
        ops.extend(self.in_flight.values().map(|u| u.op));
        ops.sort();
        ops.dedup();
        ops
    }
}

/// `events` as encoded transfers of at most `max` bytes.
fn split(events: &[EventData], max: usize) -> Result<Vec<(Bytes, u32)>, ClientError> {
    if let [event] = events {
        let m = event.to_message();
        let size = m.encoded_len();
        if size > max {
            return Err(BatchError::EventTooLarge {
                index: 0,
                size,
                max,
            }
            .into());
        }
        return Ok(vec![(m.to_bytes(), 0)]);
    }
    let batches = split_into_batches(events, max)?;
    Ok(batches.iter().map(|b| b.encode()).collect())
}

impl Client {
    /// Publishes an encoded batch ([`EventBatch::encode`](super::EventBatch::encode))
    /// to `target` as one transfer, as it is: the caller sized it against
    /// the link's max-message-size ([`Client::open_sender`]). Completes
    /// with [`ClientEvent::SendComplete`](super::ClientEvent::SendComplete)
    /// once accepted, or fails by `deadline`.
    pub fn send_encoded(
        &mut self,
        now: Now,
        payload: Bytes,
        format: u32,
        target: SendTarget,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        if self.lifecycle != super::client::Lifecycle::Running {
            return Err(ClientError::Closed);
        }
        if let SendTarget::Partition(p) = &target {
            if p.is_empty() {
                return Err(ClientError::InvalidArgument("partition id is empty".into()));
            }
        }
        let mut send = SendOp::new(target.clone(), Vec::new());
        send.units_left = 1;
        let op = self.add_op(deadline, |_| OpKind::Send(send));
        self.senders
            .entry(target)
            .or_insert_with(Sender::new)
            .queue
            .push_back(Unit {
                op,
                payload,
                format,
                attempt: 0,
                not_before: None,
            });
        self.drive(now);
        Ok(op)
    }

    /// Attaches senders that have work, splits waiting sends and sends
    /// what credit allows.
    pub(super) fn run_senders(&mut self, now: Now) {
        let targets: Vec<SendTarget> = self.senders.keys().cloned().collect();
        for target in targets {
            let Some(s) = self.senders.get(&target) else {
                continue;
            };
            match s.link.slot {
                LinkSlot::Detached { retry_at: None }
                    if s.has_work() && self.authorised(&self.sender_audience(&target)) =>
                {
                    self.attach_sender(now, &target);
                }
                LinkSlot::Attached { link, .. } => {
                    self.answer_openers(&target);
                    self.split_waiting(&target);
                    self.send_transfers(&target, link);
                }
                _ => {}
            }
        }
    }

    fn attach_sender(&mut self, now: Now, target: &SendTarget) {
        let name = self.link_name("sender");
        let address = target.address(&self.options.hub);
        let config = LinkConfig {
            name: name.clone(),
            role: Role::Sender,
            source: Some(Source::with_address(name)),
            target: Some(Target::with_address(address)),
            snd_settle_mode: SenderSettleMode::Unsettled,
            max_message_size: None,
            desired_capabilities: vec![Symbol::from_static(GEOREPLICATION)],
            ..LinkConfig::default()
        };
        let Some(c) = self.phase.open_conn() else {
            return;
        };
        match c.engine.session(c.session).attach(config) {
            Ok(link) => {
                c.owners
                    .insert(link, super::connection::Owner::Sender(target.clone()));
                if let Some(s) = self.senders.get_mut(target) {
                    s.link.slot = LinkSlot::Attaching(link);
                }
                debug!(?target, at = ?now.instant, "attaching sender");
            }
            Err(e) => warn!(error = %e, "the engine refused a sender link"),
        }
    }

    /// The link is attached: every [`Client::open_sender`] waiting on it
    /// is answered.
    fn answer_openers(&mut self, target: &SendTarget) {
        let openers = match self.senders.get_mut(target) {
            Some(s) if !s.openers.is_empty() => std::mem::take(&mut s.openers),
            _ => return,
        };
        for op in openers {
            self.complete_op(op, Ok(()));
        }
    }

    /// The max-message-size of the sender link of `target`: the one its
    /// attach announced, or the default until then.
    pub(super) fn sender_max_message_size(&self, target: &SendTarget) -> u64 {
        self.senders
            .get(target)
            .map_or(DEFAULT_MAX_MESSAGE_SIZE, |s| s.max_message_size)
    }

    /// True when a transfer of send `op` has been handed to the connection
    /// (in flight, or accepted already): cancelling it then would publish
    /// part of it.
    pub(super) fn send_started(&self, op: OpId) -> bool {
        matches!(
            self.ops.get(&op),
            Some(super::client::Op {
                kind: OpKind::Send(SendOp { started: true, .. }),
                ..
            })
        )
    }

    /// An [`Client::open_sender`] request is done or cancelled.
    pub(super) fn forget_opener(&mut self, op: OpId, target: &SendTarget) {
        if let Some(s) = self.senders.get_mut(target) {
            s.openers.retain(|x| *x != op);
        }
    }

    /// Splits the sends waiting for the link's limit into transfers.
    fn split_waiting(&mut self, target: &SendTarget) {
        let Some(s) = self.senders.get_mut(target) else {
            return;
        };
        let max = usize::try_from(s.max_message_size).unwrap_or(usize::MAX);
        let mut failed = Vec::new();
        while let Some(op) = s.unsplit.pop_front() {
            let Some(super::client::Op {
                kind: OpKind::Send(send),
                ..
            }) = self.ops.get_mut(&op)
            else {
                continue;
            };
            match split(&send.events, max) {
                Ok(units) => {
                    send.units_left = units.len();
                    send.events = Vec::new();
                    s.queue
                        .extend(units.into_iter().map(|(payload, format)| Unit {
                            op,
                            payload,
                            format,
                            attempt: 0,
                            not_before: None,
                        }));
                }
                Err(e) => failed.push((op, e)),
            }
        }
        for (op, e) in failed {
            self.fail_op(op, e);
        }
    }

    /// Sends queued transfers while the link has credit, in order: a
    /// transfer waiting for a retry delay holds back those behind it.
    fn send_transfers(&mut self, target: &SendTarget, link: LinkId) {
        let (Some(c), Some(s)) = (self.phase.open_conn(), self.senders.get_mut(target)) else {
            return;
        };
        while c.engine.credit(link) > 0 {
            if s.queue.front().is_none_or(|u| u.not_before.is_some()) {
                break;
            }
            let Some(unit) = s.queue.pop_front() else {
                break;
            };
            s.next_tag += 1;
            let tag = Bytes::copy_from_slice(&s.next_tag.to_be_bytes());
            let sent = c.engine.link(link).send(
                tag,
                unit.format,
                Settlement::Unsettled,
                unit.payload.clone(),
            );
            match sent {
                Ok(delivery_id) => {
                    if let Some(super::client::Op {
                        kind: OpKind::Send(send),
                        ..
                    }) = self.ops.get_mut(&unit.op)
                    {
                        send.started = true;
                    }
                    s.in_flight.insert(delivery_id, unit);
                }
                Err(e) => {
                    debug!(error = %e, "transfer refused by the engine");
                    s.queue.push_front(unit);
                    break;
                }
            }
        }
    }

    pub(super) fn sender_attached(
        &mut self,
        now: Now,
        target: &SendTarget,
        link: LinkId,
        attach: &Attach,
    ) {
        if let Some(s) = self.senders.get_mut(target) {
            s.link.slot = LinkSlot::Attached {
                link,
                since: now.instant,
            };
            s.max_message_size = match attach.max_message_size {
                Some(n) if n > 0 => n,
                _ => DEFAULT_MAX_MESSAGE_SIZE,
            };
            debug!(
                ?target,
                max_message_size = s.max_message_size,
                "sender attached"
            );
        }
    }

    /// The service detached a sender (or we did, for its protocol error):
    /// its transfers wait for a new link after the retry delay, or its
    /// sends fail.
    pub(super) fn sender_detached(
        &mut self,
        now: Now,
        target: &SendTarget,
        error: Option<ClientError>,
    ) {
        let Some(s) = self.senders.get_mut(target) else {
            return;
        };
        s.requeue_in_flight();
        let failures = s.link.lost(now.instant);
        let ops = s.ops();
        let error = error.unwrap_or(ClientError::Detached("sender"));
        warn!(?target, error = %error, "sender detached");
        match self.link_retry_delay(failures, error.amqp_error(), true) {
            Some(d) => {
                let at = now.instant + d;
                if let Some(s) = self.senders.get_mut(target) {
                    s.link.slot = LinkSlot::Detached { retry_at: Some(at) };
                }
                self.timers.set(Timer::SenderLink(target.clone()), at);
                for op in ops {
                    self.note_op_error(op, failures, error.clone());
                }
            }
            None => self.fail_sender(target, error),
        }
    }

    pub(super) fn sender_link_due(&mut self, target: &SendTarget) {
        if let Some(s) = self.senders.get_mut(target) {
            if matches!(s.link.slot, LinkSlot::Detached { .. }) {
                s.link.slot = LinkSlot::READY;
            }
        }
    }

    /// Refused transfers whose delay is over may go again.
    pub(super) fn sender_transfers_due(&mut self, now: Now, target: &SendTarget) {
        let Some(s) = self.senders.get_mut(target) else {
            return;
        };
        for u in s.queue.iter_mut() {
            if u.not_before.is_some_and(|t| t <= now.instant) {
                u.not_before = None;
            }
        }
        let next = s.next_retry();
        self.timers
            .set_or_stop(Timer::SenderTransfer(target.clone()), next);
    }

    /// The service settled one of our transfers.
    pub(super) fn on_disposition(
        &mut self,
        now: Now,
        link: LinkId,
        delivery_id: u32,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        let Some(super::connection::Owner::Sender(target)) =
            self.phase.conn().and_then(|c| c.owners.get(&link)).cloned()
        else {
            return;
        };
        let outcome = match state {
            Some(DeliveryState::Accepted(_)) => Ok(()),
            Some(DeliveryState::Rejected(r)) => Err(r
                .error
                .map_or(ClientError::Refused("rejected"), ClientError::Service)),
            Some(DeliveryState::Released(_)) => Err(ClientError::Refused("released")),
            Some(DeliveryState::Modified(_)) => Err(ClientError::Refused("modified")),
            None if settled => Ok(()),
            _ => return, // not final yet
        };
        let Some(s) = self.senders.get_mut(&target) else {
            return;
        };
        let Some(mut unit) = s.in_flight.remove(&delivery_id) else {
            return;
        };
        let error = match outcome {
            Ok(()) => {
                s.link.failures = 0;
                return self.transfer_accepted(unit.op);
            }
            Err(e) => e,
        };
        unit.attempt += 1;
        let condition = error.condition();
        let delay = match error.recovery() {
            crate::eventhubs::RecoveryKind::Fatal => None,
            _ => retry_delay(
                &self.options.retry,
                &mut self.rng,
                unit.attempt,
                condition,
                self.options.retry_until_deadline,
            ),
        };
        debug!(error = %error, attempt = unit.attempt, "transfer not accepted");
        let op = unit.op;
        match delay {
            Some(d) if self.ops.contains_key(&op) => {
                let at = now.instant + d;
                unit.not_before = Some(at);
                let attempt = unit.attempt;
                // Keep the send's transfers in order: retry before anything
                // queued after it.
                s.queue.push_front(unit);
                let next = s.next_retry();
                self.timers.set_or_stop(Timer::SenderTransfer(target), next);
                self.note_op_error(op, attempt, error);
            }
            _ => self.fail_op(op, error),
        }
    }

    fn transfer_accepted(&mut self, op: OpId) {
        let done = match self.ops.get_mut(&op) {
            Some(super::client::Op {
                kind: OpKind::Send(send),
                ..
            }) => {
                send.units_left = send.units_left.saturating_sub(1);
                send.units_left == 0
            }
            _ => false,
        };
        if done {
            self.complete_op(op, Ok(()));
        }
    }

    /// Fails every send of the sender to `target`.
    fn fail_sender(&mut self, target: &SendTarget, error: ClientError) {
        let Some(s) = self.senders.get_mut(target) else {
            return;
        };
        let ops = s.ops();
        s.in_flight.clear();
        s.link.failures = 0;
        s.link.slot = LinkSlot::READY;
        self.timers.stop(&Timer::SenderLink(target.clone()));
        for op in ops {
            self.fail_op(op, error.clone());
        }
    }

    /// A send is done: its transfers leave the queue. In-flight transfers
    /// of a failed send stay tracked so that credit and delivery ids remain
    /// consistent; their outcome no longer reaches anyone.
    pub(super) fn forget_send(&mut self, op: OpId, target: &SendTarget) {
        if let Some(s) = self.senders.get_mut(target) {
            s.unsplit.retain(|x| *x != op);
            s.queue.retain(|u| u.op != op);
            let next = s.next_retry();
            self.timers
                .set_or_stop(Timer::SenderTransfer(target.clone()), next);
        }
    }

    /// The connection is gone: every sender's link with it.
    pub(super) fn senders_lost(&mut self) {
        for s in self.senders.values_mut() {
            s.requeue_in_flight();
            s.link.reset();
        }
    }
}
