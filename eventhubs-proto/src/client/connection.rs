//! The connection: its phase, from idle to open and closing, in one enum
//! whose transitions are all here; the transport news that moves it; the
//! engine's events, sent on to the part they concern; and recovery under
//! the retry policy when a connection fails or cannot be made.

use std::collections::BTreeMap;

use tracing::{debug, info, warn};

use super::client::{engine_command, Client, Lifecycle};
use super::error::ClientError;
use super::links::{retry_delay, LinkSlot};
use super::options::{ClientEvent, ConnectFailure, ConnectFailureKind, Credential, Now};
use super::options::{ReceiverId, SendTarget, TransportId};
use super::timers::Timer;
use super::tokens::Auth;
use crate::codec::performatives::{AmqpError, Fields};
use crate::codec::{Symbol, Value};
use crate::engine::{
    Connection, ConnectionConfig, ConnectionError, Event, LinkId, SaslConfig, SaslMechanism,
    SessionConfig, Side,
};
use crate::eventhubs::errors::{classify_error, ErrorSource};
use crate::eventhubs::RecoveryKind;

/// Where the connection stands.
#[derive(Debug, Default)]
pub(super) enum Phase {
    /// No transport, and none wanted yet.
    #[default]
    Idle,
    /// Waiting out the back-off ([`Timer::Backoff`]) before connecting
    /// again.
    BackingOff,
    /// The caller is opening transport `0` ([`Timer::Connect`] bounds it).
    Connecting(TransportId),
    /// The AMQP exchange runs on the transport; the service's open has not
    /// arrived ([`Timer::Open`] bounds it).
    Opening(Box<Conn>),
    /// Open: links and requests can go.
    Open(Box<Conn>),
    /// Our close is out; waiting for the service's.
    Closing(Box<Conn>),
}

impl Phase {
    pub(super) fn conn(&self) -> Option<&Conn> {
        match self {
            Phase::Opening(c) | Phase::Open(c) | Phase::Closing(c) => Some(c),
            _ => None,
        }
    }

    pub(super) fn conn_mut(&mut self) -> Option<&mut Conn> {
        match self {
            Phase::Opening(c) | Phase::Open(c) | Phase::Closing(c) => Some(c),
            _ => None,
        }
    }

    /// The connection when it is open.
    pub(super) fn open_conn(&mut self) -> Option<&mut Conn> {
        match self {
            Phase::Open(c) => Some(c),
            _ => None,
        }
    }

    /// Takes the connection out, leaving the phase idle.
    fn take_conn(&mut self) -> Option<Box<Conn>> {
        match std::mem::take(self) {
            Phase::Opening(c) | Phase::Open(c) | Phase::Closing(c) => Some(c),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Open → Closing, once our close is queued.
    pub(super) fn begin_closing(&mut self) {
        if let Phase::Open(c) = std::mem::take(self) {
            *self = Phase::Closing(c);
        }
    }

    fn transport(&self) -> Option<TransportId> {
        match self {
            Phase::Connecting(id) => Some(*id),
            _ => self.conn().map(|c| c.transport),
        }
    }
}

/// Who owns a link of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    CbsRequests,
    CbsReplies,
    ManagementRequests,
    ManagementReplies,
    Sender(SendTarget),
    Receiver(ReceiverId),
    /// The link of a receiver the caller closed: its detach is out, and
    /// [`ClientEvent::ReceiverDetached`] reports the service's answer.
    Detaching(ReceiverId),
    /// A link we detached and no longer care about.
    Gone,
}

/// A request/response node's link pair (`$cbs` or `$management`).
#[derive(Debug)]
pub(super) struct RpcPair {
    pub(super) requests: LinkSlot,
    pub(super) replies: LinkSlot,
    /// Our replies' address.
    pub(super) reply_to: String,
}

impl RpcPair {
    /// The request link, once both links are attached.
    pub(super) fn ready(&self) -> Option<LinkId> {
        self.replies.attached().and(self.requests.attached())
    }
}

/// One AMQP connection over one transport.
pub(super) struct Conn {
    pub(super) transport: TransportId,
    pub(super) engine: Connection,
    pub(super) session: u16,
    pub(super) owners: BTreeMap<LinkId, Owner>,
    pub(super) cbs: Option<RpcPair>,
    pub(super) mgmt: Option<RpcPair>,
    /// Put-token state by audience.
    pub(super) auth: BTreeMap<String, Auth>,
    /// Requests awaiting their response, by number.
    pub(super) requests: BTreeMap<u64, super::requests::Request>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("transport", &self.transport)
            .field("links", &self.owners.len())
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

fn amqp_error(condition: &'static str, description: impl Into<String>) -> AmqpError {
    AmqpError::new(Symbol::from_static(condition), description.into())
}

impl Client {
    // ----- connecting -----

    /// Asks for a transport when there is work, no connection, and (with
    /// CBS) a token at hand: the service closes a connection that puts no
    /// token within ~20 s of opening.
    pub(super) fn manage_connection(&mut self, now: Now) {
        if !matches!(self.phase, Phase::Idle) || !self.has_work() {
            return;
        }
        if self.uses_cbs() && !self.any_token_ready() {
            return;
        }
        let id = TransportId(self.next_transport);
        self.next_transport += 1;
        self.phase = Phase::Connecting(id);
        self.timers
            .set(Timer::Connect, now.instant + self.options.connect_timeout);
        debug!(transport = id.0, "connecting");
        self.events.push_back(ClientEvent::Connect(id));
    }

    pub(super) fn backoff_over(&mut self) {
        if matches!(self.phase, Phase::BackingOff) {
            self.phase = Phase::Idle;
        }
    }

    pub(super) fn connect_timed_out(&mut self, now: Now) {
        let Phase::Connecting(id) = self.phase else {
            return;
        };
        // The caller drops its attempt.
        self.events.push_back(ClientEvent::Disconnect {
            transport: id,
            final_bytes: Vec::new(),
            deadline: now.instant,
        });
        let failure = ConnectFailure::new(
            ConnectFailureKind::TimedOut,
            format!(
                "connecting to {} timed out after {:?}",
                self.options.host, self.options.connect_timeout
            ),
        );
        self.transport_failed(now, id, failure);
    }

    /// The transport is up: the engine starts SASL, open and begin.
    pub(super) fn transport_up(&mut self, now: Now, id: TransportId) {
        if !matches!(self.phase, Phase::Connecting(want) if want == id) {
            return;
        }
        self.timers.stop(&Timer::Connect);
        let mut engine = Connection::new(self.engine_config(), now.instant);
        let session = engine.open().and_then(|()| {
            engine.begin_session(SessionConfig {
                incoming_window: 5000,
                ..SessionConfig::default()
            })
        });
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                // A new engine takes open and begin: this is never reached.
                let error = ClientError::Connection(format!("the engine refused to open: {e}"));
                self.phase = Phase::Connecting(id);
                self.retire_transport(now);
                self.connection_lost(now, error, RecoveryKind::RecoverConnection);
                return;
            }
        };
        info!(transport = id.0, host = %self.options.host, "transport connected; opening AMQP");
        self.phase = Phase::Opening(Box::new(Conn {
            transport: id,
            engine,
            session,
            owners: BTreeMap::new(),
            cbs: None,
            mgmt: None,
            auth: BTreeMap::new(),
            requests: BTreeMap::new(),
        }));
        self.timers
            .set(Timer::Open, now.instant + self.options.connect_timeout);
    }

    fn engine_config(&self) -> ConnectionConfig {
        let o = &self.options;
        let mut c = ConnectionConfig::new(Side::Client, self.container_id.clone());
        c.hostname = Some(o.host.clone());
        c.max_frame_size = o.max_frame_size;
        c.idle_time_out = o.idle_timeout;
        c.sasl = SaslConfig::Client(vec![match &o.credential {
            Credential::Plain { key_name, key } => SaslMechanism::Plain {
                username: key_name.clone(),
                password: key.clone(),
            },
            Credential::External => SaslMechanism::Anonymous,
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
        if let Some(ua) = &o.user_agent {
            let ua: String = ua.chars().take(512).collect();
            props.insert(Symbol::from_static("user-agent"), Value::String(ua.into()));
        }
        c.properties = Some(props);
        c
    }

    /// The transport could not be made: permanent failures fail what
    /// waits; transient ones are retried.
    pub(super) fn transport_failed(
        &mut self,
        now: Now,
        id: TransportId,
        mut failure: ConnectFailure,
    ) {
        if !matches!(self.phase, Phase::Connecting(want) if want == id) {
            return;
        }
        failure.transport = Some(id);
        self.timers.stop(&Timer::Connect);
        warn!(transport = id.0, kind = ?failure.kind, cause = %failure.cause, "connect failed");
        self.phase = Phase::Idle;
        let kind = if failure.kind.is_permanent() {
            RecoveryKind::Fatal
        } else {
            RecoveryKind::RecoverConnection
        };
        self.connection_lost(now, ClientError::Connect(failure), kind);
    }

    /// The transport closed or failed.
    pub(super) fn transport_lost(&mut self, now: Now, id: TransportId, cause: &str) {
        if matches!(self.phase, Phase::Connecting(want) if want == id) {
            let failure = ConnectFailure::new(ConnectFailureKind::Io, cause);
            self.transport_failed(now, id, failure);
            return;
        }
        if self.phase.conn().is_none_or(|c| c.transport != id) {
            return;
        }
        warn!(transport = id.0, cause, "transport lost");
        let closing = matches!(self.phase, Phase::Closing(_));
        // Nothing is left to write on it.
        self.phase = Phase::Idle;
        self.stop_connection_timers();
        if closing {
            // It went while our close waited for the service's: done.
            self.all_detaches_done();
            return;
        }
        self.connection_lost(
            now,
            ClientError::Disconnected {
                transport: id,
                cause: cause.to_owned(),
            },
            RecoveryKind::RecoverConnection,
        );
    }

    pub(super) fn open_timed_out(&mut self, now: Now) {
        if !matches!(self.phase, Phase::Opening(_)) {
            return;
        }
        let error = ClientError::Connection(format!(
            "the service did not open the AMQP connection within {:?}",
            self.options.connect_timeout
        ));
        self.drop_connection(now, error, RecoveryKind::RecoverConnection);
    }

    // ----- the engine's events -----

    /// Acts on every event the engine has queued.
    pub(super) fn process_engine(&mut self, now: Now) {
        while let Some(ev) = self.phase.conn_mut().and_then(|c| c.engine.poll_event()) {
            self.on_engine_event(now, ev);
        }
    }

    fn on_engine_event(&mut self, now: Now, ev: Event) {
        match ev {
            Event::Opened(_) => self.opened(),
            Event::LinkAttached {
                link,
                peer_initiated: true,
                ..
            } => {
                if let Some(c) = self.phase.conn_mut() {
                    let refusal = amqp_error("amqp:not-allowed", "clients do not accept links");
                    engine_command(c.engine.link(link).refuse(refusal), "refuse");
                }
            }
            Event::LinkAttached { link, attach, .. } => self.on_attached(now, link, &attach),
            Event::LinkDetached { link, error, .. } => {
                self.on_detached(now, link, error.map(ClientError::Service))
            }
            Event::LinkError { link, error } => {
                self.on_detached(now, link, Some(ClientError::Protocol(error)))
            }
            Event::Delivery {
                link,
                delivery_id,
                settled,
                payload,
                message_format,
                ..
            } => self.on_delivery(now, link, (delivery_id, settled), payload, message_format),
            Event::Disposition {
                link,
                delivery_id,
                state,
                settled,
            } => self.on_disposition(now, link, delivery_id, state, settled),
            Event::SessionEnded { error, .. } => {
                self.service_ended(now, error, "ended the session")
            }
            Event::SessionError { error, .. } => {
                self.fail_connection(now, ClientError::Protocol(error))
            }
            Event::Closed(None) if matches!(self.phase, Phase::Closing(_)) => {
                self.finish_close(now)
            }
            Event::Closed(error) => self.service_ended(now, error, "closed the connection"),
            Event::Failed(e) => {
                let (error, kind) = engine_failure(e);
                self.drop_connection(now, error, kind);
            }
            _ => {}
        }
    }

    /// The service ended the session or closed the connection, with its
    /// error if it gave one.
    fn service_ended(&mut self, now: Now, error: Option<AmqpError>, what: &str) {
        let e = error.map_or_else(
            || ClientError::Connection(format!("the service {what}")),
            ClientError::Service,
        );
        self.fail_connection(now, e);
    }

    /// The service's open arrived.
    fn opened(&mut self) {
        if let Phase::Opening(c) = std::mem::take(&mut self.phase) {
            self.phase = Phase::Open(c);
        }
        self.timers.stop(&Timer::Open);
        self.conn_failures = 0;
        self.last_conn_error = None;
        info!(host = %self.options.host, "AMQP connection open");
    }

    fn on_attached(
        &mut self,
        now: Now,
        link: LinkId,
        attach: &crate::codec::performatives::Attach,
    ) {
        let Some(owner) = self.phase.conn().and_then(|c| c.owners.get(&link)).cloned() else {
            return;
        };
        // An attach without the terminus we asked for is a refusal: the
        // detach that explains it follows.
        let accepted = match owner {
            Owner::CbsRequests | Owner::ManagementRequests | Owner::Sender(_) => {
                attach.target.is_some()
            }
            _ => attach.source.is_some(),
        };
        match owner {
            Owner::Sender(target) if accepted => self.sender_attached(now, &target, link, attach),
            Owner::Receiver(id) if accepted => self.receiver_attached(now, id, link),
            Owner::Gone | Owner::Detaching(_) => {
                if let Some(c) = self.phase.conn_mut() {
                    engine_command(c.engine.link(link).close(None), "close");
                }
            }
            Owner::Sender(_) | Owner::Receiver(_) => {}
            rpc if accepted => {
                if let Some(c) = self.phase.conn_mut() {
                    c.rpc_attached(&rpc, link, now.instant);
                }
            }
            _ => {}
        }
    }

    fn on_detached(&mut self, now: Now, link: LinkId, error: Option<ClientError>) {
        let Some(owner) = self.phase.conn_mut().and_then(|c| c.owners.remove(&link)) else {
            return;
        };
        match owner {
            Owner::Gone => {}
            Owner::Detaching(id) => self.receiver_detach_done(id),
            Owner::Sender(target) => self.sender_detached(now, &target, error),
            Owner::Receiver(id) => self.receiver_detached(now, id, error),
            // The request/response nodes are the connection's spine:
            // recover the whole connection, under its back-off.
            _ => {
                let e = error.unwrap_or_else(|| {
                    ClientError::Connection(
                        "the service detached a $cbs or $management link".into(),
                    )
                });
                self.fail_connection(now, e);
            }
        }
    }

    /// A delivery on one of our receiving links: accepted (unless the
    /// service settled it), then handed to its owner.
    fn on_delivery(
        &mut self,
        now: Now,
        link: LinkId,
        (delivery_id, settled): (u32, bool),
        payload: bytes::Bytes,
        format: u32,
    ) {
        if let (false, Some(c)) = (settled, self.phase.conn_mut()) {
            engine_command(c.engine.link(link).accept(delivery_id), "accept");
        }
        let owner = self.phase.conn().and_then(|c| c.owners.get(&link)).cloned();
        match owner {
            Some(Owner::CbsReplies | Owner::ManagementReplies) => {
                self.on_response(now, link, &payload)
            }
            Some(Owner::Receiver(id)) => self.on_event_delivery(now, id, link, payload, format),
            _ => {}
        }
    }

    // ----- losing the connection -----

    /// The service ended our session or closed the connection.
    fn fail_connection(&mut self, now: Now, error: ClientError) {
        let kind = match &error {
            ClientError::Service(e) => classify_error(Some(e), ErrorSource::Connection),
            _ => RecoveryKind::RecoverConnection,
        };
        warn!(error = %error, "connection failed");
        self.drop_connection(now, error, kind);
    }

    /// Closes our side (if still possible), lets the transport go, and
    /// recovers.
    fn drop_connection(&mut self, now: Now, error: ClientError, kind: RecoveryKind) {
        if let Some(c) = self.phase.conn_mut() {
            if !c.engine.is_closed() {
                engine_command(c.engine.close(None), "close");
            }
        }
        self.retire_transport(now);
        if self.lifecycle == Lifecycle::Closing && self.ops.is_empty() {
            return;
        }
        self.connection_lost(now, error, kind);
    }

    /// Tells the caller to close the current transport, after the last
    /// bytes of its engine (a close, when there is one).
    pub(super) fn retire_transport(&mut self, now: Now) {
        let deadline = self.linger_deadline(now);
        let final_bytes = match self.phase.take_conn() {
            Some(mut c) => {
                let mut bytes = Vec::new();
                let _written = c.engine.poll_transmit(now.instant, &mut bytes);
                Some((c.transport, bytes))
            }
            None => match std::mem::take(&mut self.phase) {
                Phase::Connecting(id) => Some((id, Vec::new())),
                other => {
                    self.phase = other;
                    None
                }
            },
        };
        self.stop_connection_timers();
        if let Some((transport, final_bytes)) = final_bytes {
            self.events.push_back(ClientEvent::Disconnect {
                transport,
                final_bytes,
                deadline,
            });
        }
        debug_assert!(self.phase.transport().is_none());
    }

    fn stop_connection_timers(&mut self) {
        self.timers.stop_all(|t| {
            matches!(
                t,
                Timer::Connect | Timer::Open | Timer::Engine | Timer::Request(_)
            )
        });
    }

    /// Every link is gone: put unacknowledged work back, and decide when to
    /// connect again, or give up.
    pub(super) fn connection_lost(&mut self, now: Now, error: ClientError, kind: RecoveryKind) {
        self.links_lost();
        self.conn_failures += 1;
        self.last_conn_error = Some(error.clone());
        let until_deadline = self.options.retry_until_deadline && !self.ops.is_empty();
        let delay = match kind {
            RecoveryKind::Fatal => None,
            _ => retry_delay(
                &self.options.retry,
                &mut self.rng,
                self.conn_failures,
                error.condition(),
                until_deadline,
            ),
        };
        if delay.is_some() && self.conn_failures > self.options.retry.max_retries {
            // Retries are used up: receivers give up; operations go on
            // trying until their deadlines.
            let rs: Vec<ReceiverId> = self.receivers.keys().copied().collect();
            for r in rs {
                self.end_receiver(r, Some(error.clone()));
            }
        }
        match delay {
            Some(d) => {
                debug!(
                    delay_ms = d.as_millis() as u64,
                    failures = self.conn_failures,
                    "reconnecting after a delay"
                );
                self.phase = Phase::BackingOff;
                self.timers.set(Timer::Backoff, now.instant + d);
            }
            None => {
                warn!(error = %error, "giving up on the connection");
                self.phase = Phase::Idle;
                self.conn_failures = 0;
                self.fail_everything(error);
            }
        }
    }
}

impl Conn {
    /// A `$cbs` or `$management` link came up.
    fn rpc_attached(&mut self, owner: &Owner, link: LinkId, now: std::time::Instant) {
        let attached = LinkSlot::Attached { link, since: now };
        let pair = match owner {
            Owner::CbsRequests | Owner::CbsReplies => self.cbs.as_mut(),
            _ => self.mgmt.as_mut(),
        };
        let Some(pair) = pair else { return };
        match owner {
            Owner::CbsRequests | Owner::ManagementRequests => pair.requests = attached,
            _ => {
                pair.replies = attached;
                engine_command(
                    self.engine.link(link).flow(super::requests::REPLY_CREDIT),
                    "flow",
                );
            }
        }
    }
}

/// What an engine failure means for the client: whose fault, and whether
/// to try again.
fn engine_failure(e: ConnectionError) -> (ClientError, RecoveryKind) {
    match e {
        ConnectionError::SaslFailed(code) => {
            (ClientError::Authentication(code), RecoveryKind::Fatal)
        }
        ConnectionError::NoSaslMechanism(_) | ConnectionError::UnsupportedProtocol(_) => {
            (ClientError::Connection(e.to_string()), RecoveryKind::Fatal)
        }
        ConnectionError::RemoteClosed(Some(a)) => {
            let kind = classify_error(Some(&a), ErrorSource::Connection);
            (ClientError::Service(a), kind)
        }
        ConnectionError::Protocol(a) => (ClientError::Protocol(a), RecoveryKind::RecoverConnection),
        other => (
            ClientError::Connection(other.to_string()),
            RecoveryKind::RecoverConnection,
        ),
    }
}
