//! Receivers: one link per partition receiver, with the prefetch credit
//! returned as the application consumes events. A re-attach filters
//! `x-opt-sequence-number > last delivered`, and anything at or below it
//! is dropped, so no duplicate and no gap reach the application.

use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, warn};

use super::client::{engine_command, Client};
use super::connection::Owner;
use super::error::ClientError;
use super::event::ReceivedEvent;
use super::links::{LinkSlot, LinkState};
use super::options::{ClientEvent, Now, ReceiverId, ReceiverOptions};
use super::requests::GEOREPLICATION;
use super::timers::Timer;
use crate::codec::message::{Message, BATCH_MESSAGE_FORMAT};
use crate::codec::messaging::{Source, Target};
use crate::codec::performatives::{AmqpError, Fields, Role};
use crate::codec::{Decode, Symbol, Value};
use crate::engine::error::condition::DECODE_ERROR;
use crate::engine::{LinkConfig, LinkId};
use crate::eventhubs::EventPosition;

/// Desired capability asking for last-enqueued figures on every delivery.
const RUNTIME_METRIC: &str = "com.microsoft:enable-receiver-runtime-metric";

/// A partition receiver.
pub(super) struct Receiver {
    pub(super) options: ReceiverOptions,
    /// The partition id, shared by the events this receiver hands out.
    partition_id: Arc<str>,
    pub(super) link: LinkState,
    pub(super) last_sequence_number: Option<i64>,
    /// [`ClientEvent::ReceiverOpened`] was reported.
    announced: bool,
    /// Credit the service holds for us (given on every attach).
    credit: u32,
    /// Events handed out that the application has not consumed.
    unconsumed: u32,
    /// Events consumed whose credit has not gone back yet.
    to_return: u32,
}

impl Receiver {
    pub(super) fn new(options: ReceiverOptions) -> Self {
        Receiver {
            credit: options.prefetch,
            partition_id: options.partition_id.as_str().into(),
            options,
            link: LinkState::new(),
            last_sequence_number: None,
            announced: false,
            unconsumed: 0,
            to_return: 0,
        }
    }

    /// Where a (re-)attach starts: after the last event handed out, or
    /// where the options say.
    fn position(&self) -> EventPosition {
        match self.last_sequence_number {
            Some(seq) => EventPosition::sequence_number(seq, false),
            None => self.options.position.clone(),
        }
    }

    fn link_config(&self, name: String, hub: &str) -> LinkConfig {
        let o = &self.options;
        let address = format!(
            "{hub}/ConsumerGroups/{}/Partitions/{}",
            o.consumer_group, o.partition_id
        );
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
        LinkConfig {
            name: name.clone(),
            role: Role::Receiver,
            source: Some(Source {
                address: Some(address.into()),
                filter: Some(self.position().filter_set()),
                ..Default::default()
            }),
            target: Some(Target::with_address(name)),
            properties: (!props.is_empty()).then_some(props),
            desired_capabilities: desired,
            ..LinkConfig::default()
        }
    }
}

/// The events of one delivery: one, or an Event Hubs batch's.
enum Decoded {
    One(ReceivedEvent),
    Batch(Vec<ReceivedEvent>),
}

impl IntoIterator for Decoded {
    type Item = ReceivedEvent;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<ReceivedEvent>, std::vec::IntoIter<ReceivedEvent>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Decoded::One(e) => Some(e).into_iter().chain(Vec::new()),
            Decoded::Batch(v) => None.into_iter().chain(v),
        }
    }
}

/// The events of one delivery, or why it cannot be read. A single event
/// costs no vector, and events are decoded straight from their bytes
/// ([`ReceivedEvent::decode`]), with no message in between.
fn decode_events(
    partition_id: &Arc<str>,
    payload: &Bytes,
    format: u32,
) -> Result<Decoded, AmqpError> {
    let undecodable = |e: &dyn std::fmt::Display| AmqpError::new(DECODE_ERROR, e.to_string());
    if format != BATCH_MESSAGE_FORMAT {
        return ReceivedEvent::decode(partition_id.clone(), payload)
            .map(Decoded::One)
            .map_err(|e| undecodable(&e));
    }
    let envelope = Message::decode_all(payload).map_err(|e| undecodable(&e))?;
    envelope
        .batch_sections()
        .map_err(|e| undecodable(&e))?
        .iter()
        .map(|s| ReceivedEvent::decode(partition_id.clone(), s).map_err(|e| undecodable(&e)))
        .collect::<Result<_, _>>()
        .map(Decoded::Batch)
}

impl Client {
    /// Attaches the receivers that have no link.
    pub(super) fn run_receivers(&mut self, now: Now) {
        let ids: Vec<ReceiverId> = self.receivers.keys().copied().collect();
        for id in ids {
            let Some(r) = self.receivers.get(&id) else {
                continue;
            };
            if r.link.slot.may_attach() && self.authorised(&self.receiver_audience(&r.options)) {
                self.attach_receiver(now, id);
            }
        }
    }

    fn attach_receiver(&mut self, now: Now, id: ReceiverId) {
        let name = self.link_name("receiver");
        let Some(r) = self.receivers.get_mut(&id) else {
            return;
        };
        let config = r.link_config(name, &self.options.hub);
        let Some(c) = self.phase.open_conn() else {
            return;
        };
        match c.engine.session(c.session).attach(config) {
            Ok(link) => {
                c.owners.insert(link, Owner::Receiver(id));
                r.link.slot = LinkSlot::Attaching(link);
                debug!(partition = %r.options.partition_id, position = %r.position(), at = ?now.instant, "attaching receiver");
            }
            Err(e) => warn!(error = %e, "the engine refused a receiver link"),
        }
    }

    pub(super) fn receiver_attached(&mut self, now: Now, id: ReceiverId, link: LinkId) {
        let (Some(r), Some(c)) = (self.receivers.get_mut(&id), self.phase.conn_mut()) else {
            return;
        };
        r.link.slot = LinkSlot::Attached {
            link,
            since: now.instant,
        };
        engine_command(c.engine.link(link).flow(r.credit), "flow");
        debug!(partition = %r.options.partition_id, credit = r.credit, "receiver attached");
        if !r.announced {
            r.announced = true;
            self.events
                .push_back(ClientEvent::ReceiverOpened { receiver: id });
        }
    }

    /// The service detached a receiver (or we did): it attaches again
    /// after the retry delay, after its last event, or fails.
    pub(super) fn receiver_detached(
        &mut self,
        now: Now,
        id: ReceiverId,
        error: Option<ClientError>,
    ) {
        let Some(r) = self.receivers.get_mut(&id) else {
            return;
        };
        let failures = r.link.lost(now.instant);
        let error = error.unwrap_or(ClientError::Detached("receiver"));
        warn!(partition = %r.options.partition_id, error = %error, "receiver detached");
        match self.link_retry_delay(failures, error.amqp_error(), false) {
            Some(d) => {
                let at = now.instant + d;
                if let Some(r) = self.receivers.get_mut(&id) {
                    r.link.slot = LinkSlot::Detached { retry_at: Some(at) };
                }
                self.timers.set(Timer::ReceiverLink(id), at);
            }
            None => self.end_receiver(id, Some(error)),
        }
    }

    pub(super) fn receiver_link_due(&mut self, id: ReceiverId) {
        if let Some(r) = self.receivers.get_mut(&id) {
            if matches!(r.link.slot, LinkSlot::Detached { .. }) {
                r.link.slot = LinkSlot::READY;
            }
        }
    }

    /// A delivery on a receiver's link: its events, past the last one
    /// handed out, go to the application.
    pub(super) fn on_event_delivery(
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
        r.credit = r.credit.saturating_sub(1);
        let events = match decode_events(&r.partition_id, &payload, format) {
            Ok(events) => events,
            Err(e) => {
                // An event we cannot read: detach with the condition and
                // let the receiver's retry policy decide.
                warn!(error = ?e.description, "undecodable event; detaching receiver");
                if let Some(c) = self.phase.conn_mut() {
                    engine_command(c.engine.link(link).close(Some(e.clone())), "close");
                    c.owners.remove(&link);
                }
                return self.receiver_detached(now, id, Some(ClientError::Protocol(e)));
            }
        };
        let mut dropped = 0u32;
        for event in events {
            let seq = event.sequence_number();
            if r.last_sequence_number.is_some_and(|last| seq <= last) {
                dropped += 1;
                continue;
            }
            r.last_sequence_number = Some(seq);
            r.link.failures = 0;
            r.unconsumed = r.unconsumed.saturating_add(1);
            self.events.push_back(ClientEvent::Received {
                receiver: id,
                event,
            });
        }
        if dropped > 0 {
            // A replay of what was handed out: its credit comes back now.
            debug!(dropped, "duplicate events dropped");
            r.credit = r.credit.saturating_add(1).min(r.options.prefetch);
            if let Some(c) = self.phase.conn_mut() {
                engine_command(c.engine.link(link).flow(r.credit), "flow");
            }
        }
    }

    /// The application consumed `n` events: their credit goes back a
    /// quarter of the prefetch at a time, or at once when nothing it was
    /// given is left.
    pub(super) fn receiver_consumed(&mut self, id: ReceiverId, n: u32) {
        let Some(r) = self.receivers.get_mut(&id) else {
            return;
        };
        let n = n.min(r.unconsumed);
        r.unconsumed -= n;
        r.to_return += n;
        if r.to_return == 0 || (r.to_return < r.options.credit_batch() && r.unconsumed > 0) {
            return;
        }
        r.credit = r.credit.saturating_add(r.to_return).min(r.options.prefetch);
        r.to_return = 0;
        if let (Some(link), Some(c)) = (r.link.slot.attached(), self.phase.conn_mut()) {
            engine_command(c.engine.link(link).flow(r.credit), "flow");
        }
    }

    /// Ends a receiver: closed by the caller (`None`) or failed.
    pub(super) fn end_receiver(&mut self, id: ReceiverId, error: Option<ClientError>) {
        let Some(r) = self.receivers.remove(&id) else {
            return;
        };
        if let Some(e) = &error {
            warn!(partition = %r.options.partition_id, error = %e, "receiver failed");
        }
        self.timers.stop(&Timer::ReceiverLink(id));
        let mut detaching = false;
        if let (Some(link), Some(c)) = (r.link.slot.link(), self.phase.conn_mut()) {
            if let Some(owner) = c.owners.get_mut(&link) {
                // Closed by the caller: the service's answer is reported.
                detaching = error.is_none();
                *owner = if detaching {
                    Owner::Detaching(id)
                } else {
                    Owner::Gone
                };
                engine_command(c.engine.link(link).close(None), "close");
            }
        }
        self.events.push_back(ClientEvent::ReceiverClosed {
            receiver: id,
            error,
        });
        if detaching {
            self.detaching.insert(id);
        } else {
            self.events
                .push_back(ClientEvent::ReceiverDetached { receiver: id });
        }
    }

    /// The service answered the detach of a receiver the caller closed.
    pub(super) fn receiver_detach_done(&mut self, id: ReceiverId) {
        if self.detaching.remove(&id) {
            self.events
                .push_back(ClientEvent::ReceiverDetached { receiver: id });
        }
    }

    /// The connection is gone, and every link with it: every detach in
    /// progress is done.
    pub(super) fn all_detaches_done(&mut self) {
        for id in std::mem::take(&mut self.detaching) {
            self.events
                .push_back(ClientEvent::ReceiverDetached { receiver: id });
        }
    }

    /// The connection is gone: every receiver's link with it.
    pub(super) fn receivers_lost(&mut self) {
        for r in self.receivers.values_mut() {
            r.link.reset();
        }
    }
}
