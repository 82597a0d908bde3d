//! Sessions (2.5) and links (2.6): channels, windows, handles, credit,
//! deliveries and dispositions. Driven by [`Connection`](super::Connection),
//! which routes frames here and sends what these queue.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::connection::{Event, Out};
use super::endpoint::{EndpointState, Half};
use super::error::condition;
use crate::codec::messaging::{DeliveryState, Source, Target};
use crate::codec::performatives::{
    AmqpError, Attach, Begin, Detach, Disposition, End, Fields, Flow, Performative,
    ReceiverSettleMode, Role, SenderSettleMode, Transfer,
};
use crate::codec::{Encode, Form, Symbol};

/// A link, named by the local channel of its session and its local handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    /// Local channel of the session.
    pub channel: u16,
    /// Local handle of the link.
    pub handle: u32,
}

/// Settings for a session we begin (or answer).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Transfer frames the peer may send before we widen the window again.
    pub incoming_window: u32,
    /// Transfer frames we announce we may send.
    pub outgoing_window: u32,
    /// Highest link handle the peer may use.
    pub handle_max: u32,
    /// Session properties.
    pub properties: Option<Fields>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            incoming_window: 2048,
            outgoing_window: u32::MAX,
            handle_max: u32::MAX,
            properties: None,
        }
    }
}

/// The max-message-size a link announces and enforces unless configured
/// otherwise: 256 MiB. Some bound is always enforced, so that a peer cannot
/// make a receiving link buffer without limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 256 * 1024 * 1024;

/// Settings for a link we attach (or answer).
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The link name, unique per direction within the connection.
    pub name: String,
    /// Our role.
    pub role: Role,
    /// The source terminus.
    pub source: Option<Source>,
    /// The target terminus.
    pub target: Option<Target>,
    /// Sender settle mode.
    pub snd_settle_mode: SenderSettleMode,
    /// Receiver settle mode.
    pub rcv_settle_mode: ReceiverSettleMode,
    /// Largest message we accept (receivers) or announce (senders).
    /// `None` announces no limit, but a receiving link still refuses
    /// messages above [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: Option<u64>,
    /// What a receiving link does with an unsettled message above its
    /// max-message-size: `false` (the default) detaches the link with
    /// `amqp:link:message-size-exceeded`; `true` drops the message's bytes
    /// and settles it as `rejected` with that condition, keeping the link,
    /// as Azure Event Hubs and Service Bus do. Pre-settled oversized
    /// messages always detach the link (nothing else would tell the peer).
    pub reject_oversized: bool,
    /// Link properties.
    pub properties: Option<Fields>,
    /// Capabilities we offer.
    pub offered_capabilities: Vec<Symbol>,
    /// Capabilities we desire.
    pub desired_capabilities: Vec<Symbol>,
}

impl LinkConfig {
    /// The configuration that answers a peer's attach as a broker would:
    /// its source and target echoed (filters included, which some clients
    /// require), its settle modes accepted, the default max-message-size.
    pub fn answering(attach: &crate::codec::performatives::Attach) -> Self {
        LinkConfig {
            source: attach.source.as_deref().cloned(),
            target: attach.target.as_deref().cloned(),
            snd_settle_mode: attach.snd_settle_mode,
            rcv_settle_mode: attach.rcv_settle_mode,
            ..LinkConfig::default()
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            name: String::new(),
            role: Role::Sender,
            source: None,
            target: None,
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
            reject_oversized: false,
            properties: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
        }
    }
}

/// A delivery waiting in the session's outgoing queue.
#[derive(Debug)]
struct Pending {
    handle: u32,
    delivery_id: u32,
    tag: Bytes,
    format: u32,
    settled: bool,
    payload: Bytes,
    /// Bytes of `payload` already sent.
    sent: usize,
    /// The first frame has been sent.
    started: bool,
    /// The caller aborted it; one aborted transfer frame ends it.
    aborted: bool,
}

/// A delivery being received over several transfer frames.
#[derive(Debug)]
struct Partial {
    delivery_id: u32,
    tag: Bytes,
    format: u32,
    settled: bool,
    /// The first frame's payload, kept without copying while it is alone.
    first: Bytes,
    rest: Option<BytesMut>,
}

impl Partial {
    fn len(&self) -> usize {
        // `rest`, once started, holds a copy of `first` too.
        self.rest.as_ref().map_or(self.first.len(), |r| r.len())
    }

    fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        let rest = self.rest.get_or_insert_with(|| {
            let mut m = BytesMut::with_capacity(self.first.len() + b.len());
            m.extend_from_slice(&self.first);
            m
        });
        rest.extend_from_slice(&b);
    }

    fn into_payload(self) -> Bytes {
        match self.rest {
            Some(r) => r.freeze(),
            None => self.first,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Link {
    name: ByteString,
    role: Role,
    remote_handle: Option<u32>,
    /// Our attach and detach, and the peer's.
    pub(crate) state: EndpointState,
    snd_settle_mode: SenderSettleMode,
    /// Largest message we accept.
    max_message_size: Option<u64>,
    /// Largest message the peer accepts.
    peer_max_message_size: Option<u64>,
    delivery_count: u32,
    link_credit: u32,
    available: u32,
    drain: bool,
    partial: Option<Partial>,
    /// Deliveries sent on this link still in the session's outgoing queue.
    queued: u32,
    /// Reject (rather than detach for) unsettled oversized messages.
    reject_oversized: bool,
    /// An oversized delivery whose remaining frames are being dropped
    /// before it is rejected.
    discarding: Option<Discard>,
}

/// An oversized delivery being dropped: its id and the bytes seen so far.
#[derive(Debug)]
struct Discard {
    delivery_id: u32,
    size: usize,
}

impl Link {
    fn new(name: ByteString, role: Role) -> Self {
        Link {
            name,
            role,
            remote_handle: None,
            state: EndpointState::default(),
            snd_settle_mode: SenderSettleMode::Mixed,
            max_message_size: None,
            peer_max_message_size: None,
            delivery_count: 0,
            link_credit: 0,
            available: 0,
            drain: false,
            partial: None,
            queued: 0,
            reject_oversized: false,
            discarding: None,
        }
    }

    /// Credit available to a sender.
    pub(crate) fn credit(&self) -> u32 {
        self.link_credit
    }

    /// Deliveries sent on this link that have not gone out whole yet.
    pub(crate) fn queued(&self) -> u32 {
        self.queued
    }

    /// Our role.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// The link name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Errors from the session layer, each answered with an end (session) or
/// detach (link) carrying the condition.
#[derive(Debug)]
pub(crate) enum Fault {
    Session(AmqpError),
    Link(u32, AmqpError),
    Connection(AmqpError),
}

fn err(c: Symbol, d: &'static str) -> AmqpError {
    AmqpError::new(c, d)
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) channel: u16,
    pub(crate) remote_channel: Option<u16>,
    /// Our begin and end, and the peer's.
    pub(crate) state: EndpointState,
    config: SessionConfig,
    next_outgoing_id: u32,
    remote_incoming_window: u32,
    next_incoming_id: u32,
    incoming_window: u32,
    next_delivery_id: u32,
    /// The peer's handle-max: our handles must not exceed it.
    remote_handle_max: u32,
    links: Vec<Option<Link>>,
    remote_handles: BTreeMap<u32, u32>,
    outgoing: VecDeque<Pending>,
    /// Our unsettled outgoing deliveries: delivery id to local handle.
    unsettled_out: BTreeMap<u32, u32>,
    /// Unsettled deliveries we received: delivery id to local handle.
    unsettled_in: BTreeMap<u32, u32>,
}

impl Session {
    pub(crate) fn new(channel: u16, config: SessionConfig) -> Self {
        Session {
            channel,
            remote_channel: None,
            state: EndpointState::default(),
            next_outgoing_id: 0,
            remote_incoming_window: 0,
            next_incoming_id: 0,
            incoming_window: config.incoming_window,
            next_delivery_id: 0,
            remote_handle_max: u32::MAX,
            links: Vec::new(),
            remote_handles: BTreeMap::new(),
            outgoing: VecDeque::new(),
            unsettled_out: BTreeMap::new(),
            unsettled_in: BTreeMap::new(),
            config,
        }
    }

    fn frame(&self, p: impl Into<Performative>) -> Out {
        Out::Amqp {
            channel: self.channel,
            performative: p.into(),
            payload: Bytes::new(),
        }
    }

    pub(crate) fn begin_frame(&mut self) -> Out {
        self.state.local = Half::Active;
        let begin = Begin {
            remote_channel: self.remote_channel,
            next_outgoing_id: self.next_outgoing_id,
            incoming_window: self.incoming_window,
            outgoing_window: self.config.outgoing_window,
            handle_max: self.config.handle_max,
            properties: self.config.properties.clone(),
            ..Default::default()
        };
        self.frame(begin)
    }

    pub(crate) fn end_frame(&mut self, error: Option<AmqpError>) -> Out {
        self.state.local = Half::Closed;
        self.frame(End { error })
    }

    pub(crate) fn on_begin(&mut self, begin: &Begin) {
        self.state.remote = Half::Active;
        self.next_incoming_id = begin.next_outgoing_id;
        self.remote_incoming_window = begin.incoming_window;
        self.remote_handle_max = begin.handle_max;
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.is_closed()
    }

    pub(crate) fn link(&self, handle: u32) -> Option<&Link> {
        self.links.get(handle as usize)?.as_ref()
    }

    fn link_mut(&mut self, handle: u32) -> Option<&mut Link> {
        self.links.get_mut(handle as usize)?.as_mut()
    }

    fn by_remote(&self, remote: u32) -> Option<u32> {
        self.remote_handles.get(&remote).copied()
    }

    fn alloc_handle(&mut self) -> Option<u32> {
        let i = self
            .links
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.links.len());
        // Our handles name links in our attaches: the peer's handle-max
        // bounds them (2.7.2), as ours bounds the peer's.
        if i as u64 > self.config.handle_max.min(self.remote_handle_max) as u64 {
            return None;
        }
        if i == self.links.len() {
            self.links.push(None);
        }
        Some(i as u32)
    }

    /// Attaches a new link as configured; returns its handle.
    pub(crate) fn attach(
        &mut self,
        config: LinkConfig,
        form: Form,
        out: &mut VecDeque<Out>,
    ) -> Option<u32> {
        let handle = self.alloc_handle()?;
        let link = Link::new(config.name.as_str().into(), config.role);
        self.links[handle as usize] = Some(link);
        self.send_attach(handle, config, form, out);
        Some(handle)
    }

    /// Sends our attach for `handle` (new, or answering the peer's).
    pub(crate) fn send_attach(
        &mut self,
        handle: u32,
        config: LinkConfig,
        _form: Form,
        out: &mut VecDeque<Out>,
    ) {
        let channel = self.channel;
        let Some(link) = self.link_mut(handle) else {
            return;
        };
        link.state.local = Half::Active;
        link.snd_settle_mode = config.snd_settle_mode;
        link.max_message_size = config.max_message_size;
        link.reject_oversized = config.reject_oversized;
        let attach = Attach {
            name: link.name.clone(),
            handle,
            role: link.role,
            snd_settle_mode: config.snd_settle_mode,
            rcv_settle_mode: config.rcv_settle_mode,
            source: config.source.map(Box::new),
            target: config.target.map(Box::new),
            initial_delivery_count: (link.role == Role::Sender).then_some(link.delivery_count),
            max_message_size: config.max_message_size,
            offered_capabilities: config.offered_capabilities,
            desired_capabilities: config.desired_capabilities,
            properties: config.properties,
            ..Default::default()
        };
        out.push_back(Out::Amqp {
            channel,
            performative: attach.into(),
            payload: Bytes::new(),
        });
    }

    pub(crate) fn on_attach(
        &mut self,
        attach: Attach,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        if attach.handle as u64 > self.config.handle_max as u64 {
            return Err(Fault::Connection(err(
                condition::FRAMING_ERROR,
                "handle above handle-max",
            )));
        }
        if self.remote_handles.contains_key(&attach.handle) {
            return Err(Fault::Session(err(
                condition::HANDLE_IN_USE,
                "attach on a handle in use",
            )));
        }
        // An answer to our attach has the same name and the opposite role.
        let ours = self.links.iter().position(|l| {
            l.as_ref().is_some_and(|l| {
                l.name == attach.name
                    && l.role != attach.role
                    && l.state.local_opened()
                    && !l.state.remote_opened()
            })
        });
        let (handle, peer_initiated) = match ours {
            Some(h) => (h as u32, false),
            None => {
                let Some(h) = self.alloc_handle() else {
                    return Err(Fault::Session(err(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        "no free link handle",
                    )));
                };
                let role = if attach.role == Role::Sender {
                    Role::Receiver
                } else {
                    Role::Sender
                };
                self.links[h as usize] = Some(Link::new(attach.name.clone(), role));
                (h, true)
            }
        };
        self.remote_handles.insert(attach.handle, handle);
        let link = self.link_mut(handle).expect("allocated above");
        link.remote_handle = Some(attach.handle);
        link.state.remote = Half::Active;
        link.peer_max_message_size = attach.max_message_size.filter(|&m| m > 0);
        if attach.role == Role::Sender {
            // We receive: the sender's initial delivery-count is the base.
            link.delivery_count = attach.initial_delivery_count.unwrap_or(0);
        }
        let link_id = LinkId {
            channel: self.channel,
            handle,
        };
        events.push_back(Event::LinkAttached {
            link: link_id,
            attach: Box::new(attach),
            peer_initiated,
        });
        Ok(())
    }

    /// Sends a detach for `handle`.
    pub(crate) fn detach(
        &mut self,
        handle: u32,
        closed: bool,
        error: Option<AmqpError>,
        out: &mut VecDeque<Out>,
    ) -> bool {
        let channel = self.channel;
        let Some(link) = self.link_mut(handle) else {
            return false;
        };
        if link.state.local == Half::Closed {
            return false;
        }
        link.state.local = Half::Closed;
        out.push_back(Out::Amqp {
            channel,
            performative: Detach {
                handle,
                closed,
                error,
            }
            .into(),
            payload: Bytes::new(),
        });
        self.outgoing.retain(|p| p.handle != handle);
        if let Some(link) = self.link_mut(handle) {
            link.queued = 0;
        }
        self.reap(handle);
        true
    }

    /// Frees a link once both ends have detached.
    fn reap(&mut self, handle: u32) {
        let done = self
            .link(handle)
            .is_some_and(|l| l.state.local == Half::Closed && l.state.remote != Half::Active);
        if done {
            if let Some(Some(l)) = self.links.get_mut(handle as usize).map(Option::take) {
                if let Some(r) = l.remote_handle {
                    self.remote_handles.remove(&r);
                }
            }
            self.unsettled_out.retain(|_, h| *h != handle);
            self.unsettled_in.retain(|_, h| *h != handle);
        }
    }

    pub(crate) fn on_detach(
        &mut self,
        detach: Detach,
        out: &mut VecDeque<Out>,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        let Some(handle) = self.by_remote(detach.handle) else {
            return Err(Fault::Session(err(
                condition::UNATTACHED_HANDLE,
                "detach of an unattached handle",
            )));
        };
        let link = self.link_mut(handle).expect("mapped handle");
        link.state.remote = Half::Closed;
        let was_local = link.state.local == Half::Closed;
        events.push_back(Event::LinkDetached {
            link: LinkId {
                channel: self.channel,
                handle,
            },
            closed: detach.closed,
            error: detach.error,
        });
        if !was_local {
            self.detach(handle, detach.closed, None, out);
        }
        // The remote handle is free for reuse from now on.
        if let Some(l) = self.link_mut(handle) {
            l.remote_handle = None;
        }
        self.remote_handles.remove(&detach.handle);
        self.reap(handle);
        Ok(())
    }

    /// Grants `credit` to the peer's sender (absolute, as 2.6.7 defines).
    pub(crate) fn flow(
        &mut self,
        handle: u32,
        credit: u32,
        drain: bool,
        out: &mut VecDeque<Out>,
    ) -> bool {
        let Some(link) = self.link_mut(handle) else {
            return false;
        };
        if link.role != Role::Receiver || link.state.local == Half::Closed {
            return false;
        }
        link.link_credit = credit;
        link.drain = drain;
        let f = self.link_flow(handle, false);
        out.push_back(self.frame(f));
        true
    }

    fn session_flow(&self) -> Flow {
        Flow {
            next_incoming_id: self.state.remote_opened().then_some(self.next_incoming_id),
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: self.config.outgoing_window,
            ..Default::default()
        }
    }

    fn link_flow(&self, handle: u32, echo: bool) -> Flow {
        let link = self.link(handle).expect("caller checked");
        Flow {
            handle: Some(handle),
            delivery_count: Some(link.delivery_count),
            link_credit: Some(link.link_credit),
            available: (link.role == Role::Sender).then_some(link.available),
            drain: link.drain,
            echo,
            ..self.session_flow()
        }
    }

    /// A flow frame (2.7.4): the peer's session window, and for a link, its
    /// credit (we send) or the sender's state (we receive).
    pub(crate) fn on_flow(
        &mut self,
        flow: Flow,
        out: &mut VecDeque<Out>,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        // 2.5.6: the peer's incoming window, relative to our next-outgoing-id.
        let base = flow.next_incoming_id.unwrap_or(0);
        self.remote_incoming_window = base
            .wrapping_add(flow.incoming_window)
            .wrapping_sub(self.next_outgoing_id);
        let Some(remote) = flow.handle else {
            if flow.echo {
                out.push_back(self.frame(self.session_flow()));
            }
            return Ok(());
        };
        let Some(handle) = self.by_remote(remote) else {
            return Err(Fault::Session(err(
                condition::UNATTACHED_HANDLE,
                "flow for an unattached handle",
            )));
        };
        let event = match self.link(handle).map(|l| l.role) {
            Some(Role::Sender) => self.sender_flow(handle, &flow, out),
            _ => self.receiver_flow(handle, &flow, out),
        };
        events.push_back(event);
        Ok(())
    }

    /// 2.6.7 for one of our senders: the credit is the receiver's
    /// delivery-count plus its link-credit minus ours. A drain with nothing
    /// to send uses the credit up and says so.
    fn sender_flow(&mut self, handle: u32, flow: &Flow, out: &mut VecDeque<Out>) -> Event {
        let queued = self.outgoing.iter().any(|p| p.handle == handle);
        let channel = self.channel;
        let link = self.link_mut(handle).expect("mapped handle");
        let rcv_count = flow.delivery_count.unwrap_or(link.delivery_count);
        let credit = flow.link_credit.unwrap_or(0);
        link.link_credit = rcv_count
            .wrapping_add(credit)
            .wrapping_sub(link.delivery_count);
        link.drain = flow.drain;
        let event = Event::Credit {
            link: LinkId { channel, handle },
            credit: link.link_credit,
            drain: link.drain,
        };
        if link.drain && !queued {
            link.delivery_count = link.delivery_count.wrapping_add(link.link_credit);
            link.link_credit = 0;
            let f = self.link_flow(handle, false);
            out.push_back(self.frame(f));
        } else if flow.echo {
            let f = self.link_flow(handle, false);
            out.push_back(self.frame(f));
        }
        event
    }

    /// 2.6.7 for one of our receivers: the sender's view of the
    /// delivery-count is authoritative (after a drain, say).
    fn receiver_flow(&mut self, handle: u32, flow: &Flow, out: &mut VecDeque<Out>) -> Event {
        let channel = self.channel;
        let link = self.link_mut(handle).expect("mapped handle");
        if let Some(dc) = flow.delivery_count {
            let end = link.delivery_count.wrapping_add(link.link_credit);
            link.delivery_count = dc;
            link.link_credit = end
                .wrapping_sub(dc)
                .min(flow.link_credit.unwrap_or(u32::MAX));
        }
        link.available = flow.available.unwrap_or(0);
        let drained = link.drain && link.link_credit == 0;
        if drained {
            link.drain = false;
        }
        let event = Event::Flow {
            link: LinkId { channel, handle },
            delivery_count: link.delivery_count,
            link_credit: link.link_credit,
            available: link.available,
            drained,
        };
        if flow.echo {
            let f = self.link_flow(handle, false);
            out.push_back(self.frame(f));
        }
        event
    }

    /// Queues a delivery on a sender link; it uses one credit now. Returns
    /// the delivery id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &mut self,
        handle: u32,
        tag: Bytes,
        format: u32,
        settled: bool,
        payload: Bytes,
    ) -> Result<u32, super::SendError> {
        use super::SendError;
        let Some(link) = self.link_mut(handle) else {
            return Err(SendError::UnknownLink);
        };
        if link.role != Role::Sender {
            return Err(SendError::NotASender);
        }
        if !link.state.is_active() {
            return Err(SendError::NotAttached);
        }
        if link.link_credit == 0 {
            return Err(SendError::NoCredit);
        }
        if let Some(max) = link.peer_max_message_size {
            if payload.len() as u64 > max {
                return Err(SendError::MessageTooLarge {
                    size: payload.len() as u64,
                    max,
                });
            }
        }
        let settled = match link.snd_settle_mode {
            SenderSettleMode::Settled => true,
            SenderSettleMode::Unsettled => false,
            SenderSettleMode::Mixed => settled,
        };
        link.link_credit -= 1;
        link.delivery_count = link.delivery_count.wrapping_add(1);
        link.queued += 1;
        let delivery_id = self.next_delivery_id;
        self.next_delivery_id = delivery_id.wrapping_add(1);
        if !settled {
            self.unsettled_out.insert(delivery_id, handle);
        }
        self.outgoing.push_back(Pending {
            handle,
            delivery_id,
            tag,
            format,
            settled,
            payload,
            sent: 0,
            started: false,
            aborted: false,
        });
        Ok(delivery_id)
    }

    /// Moves queued transfer frames to `out` while the peer's incoming
    /// window allows; each frame fits `max_frame_size`.
    pub(crate) fn pump(&mut self, max_frame_size: u32, form: Form, out: &mut VecDeque<Out>) {
        while self.remote_incoming_window > 0 {
            let Some(p) = self.outgoing.front_mut() else {
                return;
            };
            if p.aborted {
                // 2.6.14: an aborted delivery ends with aborted=true (and is
                // settled); any data already sent is discarded by the peer.
                let t = Transfer {
                    handle: p.handle,
                    delivery_id: (!p.started).then_some(p.delivery_id),
                    delivery_tag: (!p.started).then(|| p.tag.clone()),
                    message_format: (!p.started).then_some(p.format),
                    settled: Some(true),
                    aborted: true,
                    ..Default::default()
                };
                out.push_back(Out::Amqp {
                    channel: self.channel,
                    performative: t.into(),
                    payload: Bytes::new(),
                });
                self.next_outgoing_id = self.next_outgoing_id.wrapping_add(1);
                self.remote_incoming_window -= 1;
                self.pop_outgoing();
                continue;
            }
            let mut t = Transfer {
                handle: p.handle,
                delivery_id: (!p.started).then_some(p.delivery_id),
                delivery_tag: (!p.started).then(|| p.tag.clone()),
                message_format: (!p.started).then_some(p.format),
                settled: (!p.started).then_some(p.settled),
                more: true,
                ..Default::default()
            };
            let overhead = crate::codec::frame::FRAME_HEADER_LEN
                + Performative::Transfer(t.clone()).encoded_len_as(form);
            let room = (max_frame_size as usize).saturating_sub(overhead).max(1);
            let remaining = p.payload.len() - p.sent;
            let n = remaining.min(room);
            t.more = n < remaining;
            let chunk = p.payload.slice(p.sent..p.sent + n);
            p.sent += n;
            p.started = true;
            let done = !t.more;
            out.push_back(Out::Amqp {
                channel: self.channel,
                performative: t.into(),
                payload: chunk,
            });
            self.next_outgoing_id = self.next_outgoing_id.wrapping_add(1);
            self.remote_incoming_window -= 1;
            if done {
                self.pop_outgoing();
            }
        }
    }

    /// Takes the delivery at the front of the outgoing queue off it: it
    /// has gone out whole, or ended aborted.
    fn pop_outgoing(&mut self) {
        if let Some(p) = self.outgoing.pop_front() {
            if let Some(link) = self.link_mut(p.handle) {
                link.queued = link.queued.saturating_sub(1);
            }
        }
    }

    /// Aborts a delivery not yet fully sent. False when it has gone out
    /// whole (or never existed): too late to abort.
    pub(crate) fn abort(&mut self, handle: u32, delivery_id: u32) -> bool {
        let Some(p) = self
            .outgoing
            .iter_mut()
            .find(|p| p.handle == handle && p.delivery_id == delivery_id)
        else {
            return false;
        };
        p.aborted = true;
        self.unsettled_out.remove(&delivery_id);
        true
    }

    /// True when transfers wait for the peer's window.
    pub(crate) fn has_queued(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// A transfer frame (2.7.5) for one of our receiving links.
    pub(crate) fn on_transfer(
        &mut self,
        t: Transfer,
        payload: Bytes,
        out: &mut VecDeque<Out>,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        self.count_incoming(out)?;
        let handle = self.receiving_link(t.handle)?;
        let link = self.link_mut(handle).expect("mapped handle");
        if link.state.local == Half::Closed {
            return Ok(()); // in flight when we detached
        }
        if link.discarding.is_some() {
            self.continue_discard(handle, &t, payload.len(), out);
            return Ok(());
        }
        self.add_to_delivery(handle, &t, payload)?;
        self.finish_transfer(handle, &t, out, events)
    }

    /// Counts one incoming transfer frame against our incoming window
    /// (2.5.6), widening it again once half is used.
    fn count_incoming(&mut self, out: &mut VecDeque<Out>) -> Result<(), Fault> {
        if self.incoming_window == 0 {
            return Err(Fault::Session(err(
                condition::WINDOW_VIOLATION,
                "transfer beyond the incoming window",
            )));
        }
        self.incoming_window -= 1;
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        if self.incoming_window < self.config.incoming_window / 2 {
            self.incoming_window = self.config.incoming_window;
            out.push_back(self.frame(self.session_flow()));
        }
        Ok(())
    }

    /// Our handle of the receiving link the peer's handle `remote` names.
    fn receiving_link(&self, remote: u32) -> Result<u32, Fault> {
        let Some(handle) = self.by_remote(remote) else {
            return Err(Fault::Session(err(
                condition::UNATTACHED_HANDLE,
                "transfer on an unattached handle",
            )));
        };
        if self.link(handle).is_some_and(|l| l.role != Role::Receiver) {
            return Err(Fault::Session(err(
                condition::ERRANT_LINK,
                "transfer to a sending link",
            )));
        }
        Ok(handle)
    }

    /// More of an oversized delivery we are going to reject: counted and
    /// dropped; its last frame settles it as rejected.
    fn continue_discard(&mut self, handle: u32, t: &Transfer, len: usize, out: &mut VecDeque<Out>) {
        let Some(link) = self.link_mut(handle) else {
            return;
        };
        let Some(d) = link.discarding.as_mut() else {
            return;
        };
        d.size += len;
        if t.aborted {
            link.discarding = None;
        } else if !t.more {
            let max = link.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
            self.reject_oversized(handle, max, out);
        }
    }

    /// Starts a delivery with this frame (using one credit, 2.6.7) or adds
    /// the frame to the delivery in progress.
    fn add_to_delivery(&mut self, handle: u32, t: &Transfer, payload: Bytes) -> Result<(), Fault> {
        let link = self.link_mut(handle).expect("mapped handle");
        if let Some(p) = link.partial.as_mut() {
            if t.settled == Some(true) {
                p.settled = true;
            }
            p.push(payload);
            return Ok(());
        }
        let Some(delivery_id) = t.delivery_id else {
            return Err(Fault::Link(
                handle,
                err(
                    condition::INVALID_FIELD,
                    "first transfer without delivery-id",
                ),
            ));
        };
        if link.link_credit == 0 {
            return Err(Fault::Link(
                handle,
                err(
                    condition::TRANSFER_LIMIT_EXCEEDED,
                    "transfer without credit",
                ),
            ));
        }
        link.link_credit -= 1;
        link.delivery_count = link.delivery_count.wrapping_add(1);
        link.partial = Some(Partial {
            delivery_id,
            tag: t.delivery_tag.clone().unwrap_or_default(),
            format: t.message_format.unwrap_or(0),
            settled: t.settled.unwrap_or(false),
            first: payload,
            rest: None,
        });
        Ok(())
    }

    /// After a frame of the delivery in progress: it was aborted, grew past
    /// max-message-size (rejected, or the link detached), waits for more,
    /// or is whole and goes to the caller.
    fn finish_transfer(
        &mut self,
        handle: u32,
        t: &Transfer,
        out: &mut VecDeque<Out>,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        let id = LinkId {
            channel: self.channel,
            handle,
        };
        let link = self.link_mut(handle).expect("mapped handle");
        let p = link.partial.as_ref().expect("a delivery in progress");
        if t.aborted {
            let delivery_id = p.delivery_id;
            link.partial = None;
            events.push_back(Event::Aborted {
                link: id,
                delivery_id,
            });
            return Ok(());
        }
        let max = link.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        if p.len() as u64 > max {
            let discard = Discard {
                delivery_id: p.delivery_id,
                size: p.len(),
            };
            let reject = link.reject_oversized && !p.settled;
            link.partial = None;
            if !reject {
                return Err(Fault::Link(
                    handle,
                    err(
                        condition::MESSAGE_SIZE_EXCEEDED,
                        "message above max-message-size",
                    ),
                ));
            }
            link.discarding = Some(discard);
            if !t.more {
                self.reject_oversized(handle, max, out);
            }
            return Ok(());
        }
        if t.more {
            return Ok(());
        }
        let p = link.partial.take().expect("a delivery in progress");
        if !p.settled {
            self.unsettled_in.insert(p.delivery_id, handle);
        }
        events.push_back(Event::Delivery {
            link: id,
            delivery_id: p.delivery_id,
            delivery_tag: p.tag.clone(),
            message_format: p.format,
            settled: p.settled,
            payload: p.into_payload(),
        });
        Ok(())
    }

    /// Settles the oversized delivery `handle` was discarding as rejected
    /// with `amqp:link:message-size-exceeded`, in the service's words.
    fn reject_oversized(&mut self, handle: u32, max: u64, out: &mut VecDeque<Out>) {
        let Some(d) = self.link_mut(handle).and_then(|l| l.discarding.take()) else {
            return;
        };
        let error = AmqpError::new(
            condition::MESSAGE_SIZE_EXCEEDED,
            format!(
                "The received message (delivery-id:{}, size:{} bytes) exceeds the limit ({max} bytes) currently allowed on the link.",
                d.delivery_id, d.size
            ),
        );
        let state =
            DeliveryState::Rejected(crate::codec::messaging::Rejected { error: Some(error) });
        self.disposition(
            Role::Receiver,
            d.delivery_id,
            d.delivery_id,
            true,
            Some(state),
            out,
        );
    }

    /// Sends a disposition for deliveries `first..=last` of our `role`.
    pub(crate) fn disposition(
        &mut self,
        role: Role,
        first: u32,
        last: u32,
        settled: bool,
        state: Option<DeliveryState>,
        out: &mut VecDeque<Out>,
    ) {
        if settled {
            let map = if role == Role::Receiver {
                &mut self.unsettled_in
            } else {
                &mut self.unsettled_out
            };
            let last = last.max(first);
            while let Some((&k, _)) = map.range(first..=last).next() {
                map.remove(&k);
            }
        }
        let d = Disposition {
            role,
            first,
            last: (last != first).then_some(last),
            settled,
            state,
            batchable: false,
        };
        out.push_back(self.frame(d));
    }

    pub(crate) fn on_disposition(&mut self, d: Disposition, events: &mut VecDeque<Event>) {
        // A receiver's disposition speaks of what we sent, and vice versa.
        let map = if d.role == Role::Receiver {
            &mut self.unsettled_out
        } else {
            &mut self.unsettled_in
        };
        let last = d.last.unwrap_or(d.first).max(d.first);
        // Walk the range one hit at a time: no intermediate allocation.
        let mut next = d.first;
        // (BTreeMap::range panics on an inverted range: check first.)
        while next <= last {
            let Some((&delivery_id, &handle)) = map.range(next..=last).next() else {
                break;
            };
            if d.settled {
                map.remove(&delivery_id);
            }
            events.push_back(Event::Disposition {
                link: LinkId {
                    channel: self.channel,
                    handle,
                },
                delivery_id,
                state: d.state.clone(),
                settled: d.settled,
            });
            match delivery_id.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
    }
}
