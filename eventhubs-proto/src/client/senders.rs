//! Senders: one link per [`SendTarget`]. A send is split, once the link's
//! max-message-size is known, into transfers (`batch.rs`: exact size
//! accounting, grouping by partition key); transfers go out as credit
//! allows, in order; unacknowledged ones go back to the queue when the
//! link or the connection is lost; refused ones are retried or fail per
//! the outcome's class and the retry policy. An idempotent partition
//! sender (`idempotent.rs`) numbers each transfer when it first goes out
//! and keeps one in flight.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use super::batch::{
    split_into_batches, split_into_batches_mixed, BatchError, DEFAULT_MAX_MESSAGE_SIZE,
};
use super::client::{engine_command, Client, OpKind};
use super::error::ClientError;
use super::event::EventData;
use super::idempotent::{
    pending_from_encoded, split_pending, Idempotence, IdempotentError, Pending, Stamp,
    IDEMPOTENT_PRODUCER_CAPABILITY,
};
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
    /// The caller routed the events to their partition by key: keys are
    /// kept on the events and do not split transfers.
    routed: bool,
    /// A transfer was handed to the connection.
    started: bool,
    /// An encoded transfer ([`Client::send_encoded`]) an idempotent sender
    /// numbers: decoded and cut again once the link's limit is known.
    encoded: Option<(Bytes, u32)>,
}

impl SendOp {
    pub(super) fn new(target: SendTarget, events: Vec<EventData>, routed: bool) -> Self {
        SendOp {
            target,
            events,
            units_left: 0,
            routed,
            started: false,
            encoded: None,
        }
    }

    /// What is wrong with sending `events` to `target`, if anything;
    /// `routed` sends may carry partition keys to a partition.
    pub(super) fn validate(
        events: &[EventData],
        target: &SendTarget,
        routed: bool,
    ) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::InvalidArgument(what.into()));
        if events.is_empty() {
            return bad("no events to send");
        }
        if let SendTarget::Partition(p) = target {
            if p.is_empty() {
                return bad("partition id is empty");
            }
            if !routed && events.iter().any(|e| e.partition_key.is_some()) {
                return bad("an event with a partition key cannot be sent to a chosen partition");
            }
        }
        Ok(())
    }
}

/// Encoded payloads' allocations, given back when their transfer is
/// accepted and encoded into again by the next batch. A batch of 100 1 KiB
/// events is a 100 KiB allocation; freed and allocated again for every
/// batch, it sits at the top of the allocator's heap, which hands its pages
/// back to the kernel on the free and faults them in again, zeroed, on the
/// next batch's copy. Measured on a 2-core virtual machine, sending 100,000
/// events of 1 KiB in batches of 100: 7,400 page faults without the kept
/// buffers, 370 with them, and a sixth less CPU. Plain and idempotent
/// batches take from it alike. At most [`SparePayloads::MAX`] buffers of at
/// most [`SparePayloads::MAX_CAPACITY`] bytes are kept.
#[derive(Default)]
pub(super) struct SparePayloads(Vec<Vec<u8>>);

impl SparePayloads {
    /// Buffers kept.
    pub(super) const MAX: usize = 2;
    /// The largest buffer kept: the service's default max-message-size.
    pub(super) const MAX_CAPACITY: usize = DEFAULT_MAX_MESSAGE_SIZE as usize;

    /// A buffer for `size` bytes: a kept one large enough, or a new one.
    pub(super) fn take(&mut self, size: usize) -> Vec<u8> {
        match self.0.iter().position(|b| b.capacity() >= size) {
            Some(i) => self.0.swap_remove(i),
            None => Vec::new(),
        }
    }

    /// Keeps `payload`'s allocation when nothing else holds it, it is not
    /// over [`MAX_CAPACITY`](Self::MAX_CAPACITY) and fewer than
    /// [`MAX`](Self::MAX) are kept.
    pub(super) fn give_back(&mut self, payload: Bytes) {
        if self.0.len() >= Self::MAX {
            return;
        }
        if let Ok(mut b) = payload.try_into_mut() {
            // Emptied first, so the conversion moves no bytes.
            b.clear();
            let v = Vec::from(b);
            if v.capacity() <= Self::MAX_CAPACITY {
                self.0.push(v);
            }
        }
    }

    /// The capacity of the buffers kept now.
    pub(super) fn bytes(&self) -> usize {
        self.0.iter().map(Vec::capacity).sum()
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
    /// An idempotent sender's transfer before it has its numbers.
    pending: Option<Pending>,
    /// The numbers it carries, once it has them.
    stamp: Option<Stamp>,
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
    /// Idempotent publishing's state, for a partition sender with it on.
    pub(super) idem: Option<Idempotence>,
}

impl Sender {
    pub(super) fn new(idem: Option<Idempotence>) -> Self {
        Sender {
            link: LinkState::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            unsplit: VecDeque::new(),
            openers: Vec::new(),
            queue: VecDeque::new(),
            in_flight: BTreeMap::new(),
            next_tag: 0,
            idem,
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

/// `events` as encoded transfers of at most `max` bytes; `routed` events
/// share transfers whatever their keys.
fn split(
    events: &[EventData],
    max: usize,
    routed: bool,
    spare: &mut SparePayloads,
) -> Result<Vec<(Bytes, u32)>, ClientError> {
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
    let batches = if routed {
        split_into_batches_mixed(events, max)?
    } else {
        split_into_batches(events, max)?
    };
    Ok(batches
        .iter()
        .map(|b| b.encode_into(spare.take(b.size())))
        .collect())
}

impl Unit {
    fn new(op: OpId, payload: Bytes, format: u32, pending: Option<Pending>) -> Self {
        Unit {
            op,
            payload,
            format,
            attempt: 0,
            not_before: None,
            pending,
            stamp: None,
        }
    }
}

impl Client {
    /// Publishes `batch` to `target` as one transfer: [`send_encoded`](Self::send_encoded)
    /// of it, encoded into an allocation an accepted transfer gave back
    /// when there is one.
    pub fn send_batch(
        &mut self,
        now: Now,
        batch: &super::EventBatch,
        target: SendTarget,
        deadline: Instant,
    ) -> Result<OpId, ClientError> {
        let (payload, format) = batch.encode_into(self.spare_payloads.take(batch.size()));
        self.send_encoded(now, payload, format, target, deadline)
    }

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
        if let (SendTarget::Hub, true) = (&target, self.options.idempotent_publishing) {
            return Err(ClientError::InvalidArgument(
                "idempotent publishing sends to partitions only (the service deduplicates per partition): send the batch to a partition".into(),
            ));
        }
        let mut send = SendOp::new(target.clone(), Vec::new(), false);
        let sender = self.new_sender(&target);
        let op;
        if sender.idem.is_some() {
            send.encoded = Some((payload, format));
            op = self.add_op(deadline, |_| OpKind::Send(send));
            self.senders
                .entry(target)
                .or_insert(sender)
                .unsplit
                .push_back(op);
        } else {
            send.units_left = 1;
            op = self.add_op(deadline, |_| OpKind::Send(send));
            self.senders
                .entry(target)
                .or_insert(sender)
                .queue
                .push_back(Unit::new(op, payload, format, None));
        }
        self.drive(now);
        Ok(op)
    }

    /// A sender for `target`, with idempotent publishing's state when it is
    /// on and `target` is a partition (from
    /// [`ClientOptions::partition_publishing`](super::ClientOptions::partition_publishing)).
    pub(super) fn new_sender(&self, target: &SendTarget) -> Sender {
        let idem = match target {
            SendTarget::Partition(p) if self.options.idempotent_publishing => {
                let requested = self
                    .options
                    .partition_publishing
                    .get(p)
                    .copied()
                    .unwrap_or_default();
                Some(Idempotence::new(p.clone(), requested))
            }
            _ => None,
        };
        Sender::new(idem)
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
        let mut desired_capabilities = vec![Symbol::from_static(GEOREPLICATION)];
        let mut properties = None;
        if let Some(idem) = self.senders.get(target).and_then(|s| s.idem.as_ref()) {
            desired_capabilities.push(Symbol::from_static(IDEMPOTENT_PRODUCER_CAPABILITY));
            properties = idem.link_properties();
        }
        let config = LinkConfig {
            name: name.clone(),
            role: Role::Sender,
            source: Some(Source::with_address(name)),
            target: Some(Target::with_address(address)),
            snd_settle_mode: SenderSettleMode::Unsettled,
            max_message_size: None,
            desired_capabilities,
            properties,
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
            let units = if let Some((payload, format)) = send.encoded.take() {
                pending_from_encoded(&payload, format, max).map(|ps| {
                    ps.into_iter()
                        .map(|p| Unit::new(op, Bytes::new(), 0, Some(p)))
                        .collect::<Vec<_>>()
                })
            } else if s.idem.is_some() {
                split_pending(&send.events, max, send.routed)
                    .map(|ps| {
                        ps.into_iter()
                            .map(|p| Unit::new(op, Bytes::new(), 0, Some(p)))
                            .collect::<Vec<_>>()
                    })
                    .map_err(ClientError::from)
            } else {
                split(&send.events, max, send.routed, &mut self.spare_payloads).map(|us| {
                    us.into_iter()
                        .map(|(payload, format)| Unit::new(op, payload, format, None))
                        .collect()
                })
            };
            match units {
                Ok(units) => {
                    send.units_left = units.len();
                    send.events = Vec::new();
                    s.queue.extend(units);
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
            // An idempotent sender keeps one transfer in flight: a refused
            // one goes again before anything numbered after it.
            if s.idem.is_some() && !s.in_flight.is_empty() {
                break;
            }
            let Some(mut unit) = s.queue.pop_front() else {
                break;
            };
            if let (Some(p), Some(idem)) = (unit.pending.take(), s.idem.as_mut()) {
                match idem.stamp(p, &mut self.spare_payloads) {
                    Ok((payload, format, stamp)) => {
                        unit.payload = payload;
                        unit.format = format;
                        unit.stamp = Some(stamp);
                    }
                    Err(p) => {
                        unit.pending = Some(p);
                        s.queue.push_front(unit);
                        break;
                    }
                }
            }
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
            let waiting = s.queue.front().and_then(|u| u.stamp);
            if let Some(idem) = s.idem.as_mut() {
                match idem.attached(attach.properties.as_ref(), waiting) {
                    Ok(None) => debug!(?target, state = ?idem.state, "idempotent producer state"),
                    Ok(Some(mismatch)) => {
                        warn!(?target, error = %mismatch, "idempotent producer state");
                        self.fail_sender_ops(target, mismatch.into());
                    }
                    Err(unsupported) => {
                        self.close_sender_link(target);
                        self.fail_sender(target, ClientError::Idempotent(unsupported));
                    }
                }
            }
        }
    }

    /// Fails every send of the sender to `target`, keeping its link.
    fn fail_sender_ops(&mut self, target: &SendTarget, error: ClientError) {
        let ops = self
            .senders
            .get(target)
            .map(Sender::ops)
            .unwrap_or_default();
        for op in ops {
            self.fail_op(op, error.clone());
        }
    }

    /// Detaches the sender's link (its in-flight transfers go back to the
    /// queue); a new one is attached when there is work.
    fn close_sender_link(&mut self, target: &SendTarget) {
        let Some(s) = self.senders.get_mut(target) else {
            return;
        };
        let link = s.link.slot.link();
        s.requeue_in_flight();
        s.link.slot = LinkSlot::READY;
        if let (Some(link), Some(c)) = (link, self.phase.conn_mut()) {
            engine_command(c.engine.link(link).close(None), "detach");
            c.owners.insert(link, super::connection::Owner::Gone);
        }
        self.drop_orphans(target);
    }

    /// An idempotent sender's transfers whose send is gone leave the
    /// queue: the next link reports whether the service has them.
    fn drop_orphans(&mut self, target: &SendTarget) {
        let ops = &self.ops;
        if let Some(s) = self.senders.get_mut(target).filter(|s| s.idem.is_some()) {
            s.queue.retain(|u| ops.contains_key(&u.op));
        }
    }

    /// The typed form of a refusal of idempotent publishing's, if `error`
    /// is one.
    fn idempotent_refusal(
        &self,
        target: &SendTarget,
        error: &ClientError,
        stamp: Option<Stamp>,
    ) -> Option<IdempotentError> {
        let idem = self.senders.get(target)?.idem.as_ref()?;
        idem.refusal(error.amqp_error()?, stamp)
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
        self.drop_orphans(target);
        let ops = self
            .senders
            .get(target)
            .map(Sender::ops)
            .unwrap_or_default();
        let error = error.unwrap_or(ClientError::Detached("sender"));
        let error = match self.idempotent_refusal(target, &error, None) {
            Some(typed) => {
                if let Some(idem) = self.senders.get_mut(target).and_then(|s| s.idem.as_mut()) {
                    idem.resync();
                }
                ClientError::from(typed)
            }
            None => error,
        };
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
                if let (Some(idem), Some(stamp)) = (s.idem.as_mut(), unit.stamp) {
                    idem.accepted(stamp);
                }
                self.spare_payloads.give_back(unit.payload);
                return self.transfer_accepted(unit.op);
            }
            Err(e) => e,
        };
        if let Some(typed) = self.idempotent_refusal(&target, &error, unit.stamp) {
            return self.idempotent_refused(&target, unit.op, typed);
        }
        let Some(s) = self.senders.get_mut(&target) else {
            return;
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

    /// The service refused a transfer for idempotent publishing's reasons:
    /// a higher owner level took the partition (every send of the sender
    /// fails), or the numbers did not follow (the send fails, and the next
    /// link takes the service's number).
    fn idempotent_refused(&mut self, target: &SendTarget, op: OpId, error: IdempotentError) {
        warn!(?target, error = %error, "idempotent publishing refused");
        let stolen = matches!(error, IdempotentError::EpochStolen { .. });
        if let Some(idem) = self.senders.get_mut(target).and_then(|s| s.idem.as_mut()) {
            idem.resync();
        }
        self.fail_op(op, error.clone().into());
        self.close_sender_link(target);
        if stolen {
            self.fail_sender(target, error.into());
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
        let targets: Vec<SendTarget> = self.senders.keys().cloned().collect();
        for t in targets {
            self.drop_orphans(&t);
        }
    }
}

#[cfg(test)]
mod spare_payload_tests {
    use super::*;

    #[test]
    fn an_accepted_payload_is_encoded_into_again() {
        let mut spare = SparePayloads::default();
        let first = spare.take(1000);
        assert_eq!(first.capacity(), 0, "nothing kept yet: a new buffer");
        let mut v = Vec::with_capacity(1000);
        v.extend_from_slice(&[7; 1000]);
        let at = v.as_ptr();
        spare.give_back(Bytes::from(v));
        assert_eq!(spare.bytes(), 1000);
        let again = spare.take(900);
        assert_eq!(again.as_ptr(), at, "the same allocation");
        assert!(again.is_empty(), "its bytes dropped");
        assert_eq!(spare.bytes(), 0);
    }

    #[test]
    fn a_payload_still_shared_too_large_or_one_too_many_is_not_kept() {
        let mut spare = SparePayloads::default();
        let shared = Bytes::from(vec![1u8; 100]);
        let other = shared.clone();
        spare.give_back(shared);
        assert_eq!(spare.bytes(), 0, "another holder still reads it");
        drop(other);
        spare.give_back(Bytes::from(vec![0u8; SparePayloads::MAX_CAPACITY + 1]));
        assert_eq!(spare.bytes(), 0, "over the largest kept");
        for _ in 0..SparePayloads::MAX + 1 {
            spare.give_back(Bytes::from(vec![0u8; 10]));
        }
        assert_eq!(spare.bytes(), 10 * SparePayloads::MAX);
        // Too small for what is asked: a new buffer, the small ones kept.
        assert_eq!(spare.take(11).capacity(), 0);
        assert_eq!(spare.bytes(), 10 * SparePayloads::MAX);
    }
}
