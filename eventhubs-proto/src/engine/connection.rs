//! The connection layer (2.4): protocol header exchange, open/close
//! negotiation, max-frame-size enforcement, heartbeats and idle time-out.
//!
//! Its SASL prelude (5.3) is in `sasl.rs`; sessions and links (in
//! `session.rs`) are reached through the borrowed handles of `handle.rs`
//! and reported through this type's [`Event`]s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::endpoint::{EndpointState, Half};
use super::error::{condition, ConnectionError, UsageError};
use super::handle::{LinkMut, SessionMut};
use super::session::{Fault, LinkId, Session, SessionConfig};
use crate::codec::frame::{
    self, split_frame, Frame, ProtocolHeader, ProtocolId, MIN_MAX_FRAME_SIZE,
};
use crate::codec::messaging::DeliveryState;
use crate::codec::performatives::End;
use crate::codec::performatives::{AmqpError, Attach, Close, Fields, Open, Performative};
use crate::codec::sasl::{SaslFrame, SaslMechanisms};
use crate::codec::{Form, Symbol};

/// Which end of the connection this engine plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Opens the TCP connection and sends its protocol header first.
    Client,
    /// Accepts connections (a broker, the emulator).
    Server,
}

/// A SASL mechanism a client offers to use, with its credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `ANONYMOUS` (RFC 4505).
    Anonymous,
    /// `MSSBCBS`: anonymous, promising a CBS token after open (Event Hubs).
    MssbCbs,
    /// `EXTERNAL` (RFC 4422 appendix A): identity from the TLS layer.
    External,
    /// `PLAIN` (RFC 4616).
    Plain {
        /// Authentication identity.
        username: String,
        /// Password; never printed by `Debug`.
        password: String,
    },
}

impl fmt::Debug for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslMechanism::Plain { username, .. } => f
                .debug_struct("Plain")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            m => f.write_str(m.name().as_str()),
        }
    }
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(&self) -> Symbol {
        Symbol::from_static(match self {
            SaslMechanism::Anonymous => "ANONYMOUS",
            SaslMechanism::MssbCbs => "MSSBCBS",
            SaslMechanism::External => "EXTERNAL",
            SaslMechanism::Plain { .. } => "PLAIN",
        })
    }

    pub(super) fn initial_response(&self) -> Option<Bytes> {
        match self {
            SaslMechanism::Plain { username, password } => {
                let mut r = Vec::with_capacity(2 + username.len() + password.len());
                r.push(0);
                r.extend_from_slice(username.as_bytes());
                r.push(0);
                r.extend_from_slice(password.as_bytes());
                Some(r.into())
            }
            SaslMechanism::Anonymous => Some(Bytes::new()),
            SaslMechanism::External => Some(Bytes::new()),
            SaslMechanism::MssbCbs => None,
        }
    }
}

/// How the server side checks PLAIN credentials: `(username, password)`
/// to accepted or not.
pub type PlainCheck = Box<dyn FnMut(&str, &str) -> bool + Send>;

/// SASL settings.
pub enum SaslConfig {
    /// No SASL layer: the AMQP header comes first.
    None,
    /// Client: use the first mechanism of these that the server offers.
    Client(Vec<SaslMechanism>),
    /// Server: offer these mechanisms (names as in [`SaslMechanism::name`]);
    /// PLAIN is checked by `plain_check` (absent: PLAIN is refused).
    Server {
        /// Offered mechanisms, in order of preference.
        mechanisms: Vec<Symbol>,
        /// Checks PLAIN credentials.
        plain_check: Option<PlainCheck>,
    },
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslConfig::None => f.write_str("None"),
            SaslConfig::Client(m) => f.debug_tuple("Client").field(m).finish(),
            SaslConfig::Server {
                mechanisms,
                plain_check,
            } => f
                .debug_struct("Server")
                .field("mechanisms", mechanisms)
                .field("plain_check", &plain_check.as_ref().map(|_| "<fn>"))
                .finish(),
        }
    }
}

/// Connection settings sent in our open frame and enforced locally.
#[derive(Debug)]
pub struct ConnectionConfig {
    /// Which end we are.
    pub side: Side,
    /// Our container id.
    pub container_id: String,
    /// The host name we connect to (client) or serve (server).
    pub hostname: Option<String>,
    /// The largest frame we accept; at least 512.
    pub max_frame_size: u32,
    /// The highest channel number the peer may use.
    pub channel_max: u16,
    /// Close the connection when the peer is silent this long. Sent to the
    /// peer so that it sends heartbeats at a fraction of it.
    pub idle_time_out: Option<Duration>,
    /// Connection properties.
    pub properties: Option<Fields>,
    /// Capabilities we offer.
    pub offered_capabilities: Vec<Symbol>,
    /// Capabilities we would use.
    pub desired_capabilities: Vec<Symbol>,
    /// SASL settings.
    pub sasl: SaslConfig,
    /// How performatives are laid out.
    pub form: Form,
    /// Settings of the sessions the peer begins.
    pub session_defaults: SessionConfig,
}

impl ConnectionConfig {
    /// Defaults for `side`: max-frame-size 64 KiB, channel-max 65535, idle
    /// time-out 60 s (as the Event Hubs SDKs use), no SASL.
    pub fn new(side: Side, container_id: impl Into<String>) -> Self {
        ConnectionConfig {
            side,
            container_id: container_id.into(),
            hostname: None,
            max_frame_size: 64 * 1024,
            channel_max: u16::MAX,
            idle_time_out: Some(Duration::from_secs(60)),
            properties: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            sasl: SaslConfig::None,
            form: Form::Compact,
            session_defaults: SessionConfig::default(),
        }
    }
}

/// What happened on the connection, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// SASL finished successfully with this mechanism (and, for PLAIN on
    /// the server, this user).
    Authenticated {
        /// The mechanism used.
        mechanism: Symbol,
        /// The authenticated PLAIN user, on the server side.
        user: Option<String>,
    },
    /// The peer's open arrived.
    Opened(Box<Open>),
    /// The peer's begin arrived: the answer to ours, or a session the peer
    /// started (answered by the engine at once).
    SessionBegun {
        /// Local channel.
        channel: u16,
        /// True when the peer started the session.
        peer_initiated: bool,
    },
    /// The peer ended the session (our end is queued if it was not sent).
    SessionEnded {
        /// Local channel.
        channel: u16,
        /// The peer's error.
        error: Option<AmqpError>,
    },
    /// We ended the session because the peer broke a session rule.
    SessionError {
        /// Local channel.
        channel: u16,
        /// The error sent in our end.
        error: AmqpError,
    },
    /// The peer's attach arrived. When `peer_initiated`, the caller MUST
    /// answer with [`LinkMut::answer`](super::LinkMut::answer) or
    /// [`LinkMut::refuse`](super::LinkMut::refuse).
    LinkAttached {
        /// The link.
        link: LinkId,
        /// The peer's attach (source, target, properties, capabilities).
        attach: Box<Attach>,
        /// True when the peer started the link.
        peer_initiated: bool,
    },
    /// The peer detached the link (our detach is queued if it was not sent).
    LinkDetached {
        /// The link.
        link: LinkId,
        /// Whether the peer closed it.
        closed: bool,
        /// The peer's error.
        error: Option<AmqpError>,
    },
    /// We detached the link because the peer broke a link rule.
    LinkError {
        /// The link.
        link: LinkId,
        /// The error sent in our detach.
        error: AmqpError,
    },
    /// A sending link's credit changed.
    Credit {
        /// The link.
        link: LinkId,
        /// Credit now available.
        credit: u32,
        /// The receiver asked us to use up the credit or give it back.
        drain: bool,
    },
    /// The sender's flow state for one of our receiving links.
    Flow {
        /// The link.
        link: LinkId,
        /// The sender's delivery-count.
        delivery_count: u32,
        /// Credit left.
        link_credit: u32,
        /// Messages the sender has available.
        available: u32,
        /// A drain we asked for has completed.
        drained: bool,
    },
    /// A complete delivery arrived on a receiving link.
    Delivery {
        /// The link.
        link: LinkId,
        /// The delivery id, for dispositions.
        delivery_id: u32,
        /// The delivery tag.
        delivery_tag: Bytes,
        /// The message format (0, or 0x80013700 for an Event Hubs batch).
        message_format: u32,
        /// Whether the sender settled it.
        settled: bool,
        /// The encoded message; shares the input buffer when it arrived in
        /// one frame.
        payload: Bytes,
    },
    /// The sender aborted a delivery; its partial data was dropped.
    Aborted {
        /// The link.
        link: LinkId,
        /// The delivery id.
        delivery_id: u32,
    },
    /// The peer updated the state of a delivery (our sent deliveries for a
    /// sender, received ones for a receiver).
    Disposition {
        /// The link.
        link: LinkId,
        /// The delivery id.
        delivery_id: u32,
        /// The new state (outcome).
        state: Option<DeliveryState>,
        /// Whether the peer settled it.
        settled: bool,
    },
    /// The peer closed the connection (with its error, if any); if we had
    /// not closed yet, our close is already queued.
    Closed(Option<AmqpError>),
    /// The connection failed; whatever close frame explains it is queued.
    Failed(ConnectionError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    Header(ProtocolId),
    SaslFrame,
    AmqpFrame,
    Nothing,
}

#[derive(Debug)]
pub(crate) enum Out {
    Header(ProtocolHeader),
    Sasl(SaslFrame),
    Amqp {
        channel: u16,
        performative: Performative,
        payload: Bytes,
    },
    Empty,
}

/// The sans-IO connection engine.
///
/// Driving it: feed received bytes to [`handle_input`](Self::handle_input);
/// then drain [`poll_event`](Self::poll_event), write what
/// [`poll_transmit`](Self::poll_transmit) produces to the socket, and wake
/// at [`poll_timeout`](Self::poll_timeout) to call
/// [`handle_timeout`](Self::handle_timeout). Repeat after every input,
/// command and timeout. Time is always passed in; the engine reads no clock.
pub struct Connection {
    pub(super) config: ConnectionConfig,
    pub(super) expect: Expect,
    inbuf: BytesMut,
    /// Frames of the SASL phase, sent before anything in `out`.
    pub(super) out_sasl: VecDeque<Out>,
    /// The AMQP header and everything after it; held back until SASL ends.
    pub(super) out: VecDeque<Out>,
    pub(super) sasl_done: bool,
    pub(super) chosen: Option<SaslMechanism>,
    pub(super) events: VecDeque<Event>,
    /// Our open and close, and the peer's.
    state: EndpointState,
    /// The peer's open, once received.
    remote_open: Option<Box<Open>>,
    /// Largest frame the peer accepts (512 until its open arrives).
    peer_max_frame_size: u32,
    last_received: Instant,
    last_sent: Instant,
    pub(super) failed: bool,
    pub(super) sessions: Vec<Option<Session>>,
    remote_channels: BTreeMap<u16, u16>,
    /// Peer channels whose session the peer ended: stray frames on them
    /// are dropped, not fatal (the official Python SDK sends a detach after
    /// its end).
    ended_remote_channels: BTreeSet<u16>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("side", &self.config.side)
            .field("expect", &self.expect)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection starting at `now`. A client queues its first protocol
    /// header at once; a server waits for the client's.
    pub fn new(mut config: ConnectionConfig, now: Instant) -> Self {
        config.max_frame_size = config.max_frame_size.max(MIN_MAX_FRAME_SIZE);
        let uses_sasl = !matches!(config.sasl, SaslConfig::None);
        let first = if uses_sasl {
            ProtocolId::Sasl
        } else {
            ProtocolId::Amqp
        };
        let mut c = Connection {
            expect: Expect::Header(first),
            inbuf: BytesMut::new(),
            out_sasl: VecDeque::new(),
            out: VecDeque::new(),
            sasl_done: !uses_sasl,
            chosen: None,
            events: VecDeque::new(),
            state: EndpointState::default(),
            remote_open: None,
            peer_max_frame_size: MIN_MAX_FRAME_SIZE,
            last_received: now,
            last_sent: now,
            failed: false,
            sessions: Vec::new(),
            remote_channels: BTreeMap::new(),
            ended_remote_channels: BTreeSet::new(),
            config,
        };
        if c.config.side == Side::Client {
            if uses_sasl {
                c.out_sasl.push_back(Out::Header(ProtocolHeader::SASL));
            } else {
                c.out.push_back(Out::Header(ProtocolHeader::AMQP));
            }
        }
        c
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The peer's open, once received.
    pub fn remote_open(&self) -> Option<&Open> {
        self.remote_open.as_deref()
    }

    /// Largest frame the peer accepts.
    pub fn peer_max_frame_size(&self) -> u32 {
        self.peer_max_frame_size
    }

    /// Our open and close, and the peer's.
    pub fn state(&self) -> EndpointState {
        self.state
    }

    /// True once both ends have closed, or the connection failed.
    pub fn is_closed(&self) -> bool {
        self.failed || self.state.is_closed()
    }

    /// Sends our open. May be called before the peer's open (pipelining)
    /// and, on a client, before SASL has finished.
    pub fn open(&mut self) -> Result<(), UsageError> {
        if self.state.local_opened() {
            return Err(UsageError::AlreadyOpen);
        }
        self.state.local = Half::Active;
        let c = &self.config;
        let open = Open {
            container_id: c.container_id.as_str().into(),
            hostname: c.hostname.as_deref().map(ByteString::from),
            max_frame_size: c.max_frame_size,
            channel_max: c.channel_max,
            idle_time_out: c
                .idle_time_out
                .map(|d| d.as_millis().min(u32::MAX as u128) as u32),
            offered_capabilities: c.offered_capabilities.clone(),
            desired_capabilities: c.desired_capabilities.clone(),
            properties: c.properties.clone(),
            ..Default::default()
        };
        self.out.push_back(Out::Amqp {
            channel: 0,
            performative: open.into(),
            payload: Bytes::new(),
        });
        // Sessions the peer began before our open are answered now.
        for s in self.sessions.iter_mut().flatten() {
            if s.state.remote_opened() && !s.state.local_opened() {
                self.out.push_back(s.begin_frame());
            }
        }
        Ok(())
    }

    /// Sends our close, with an error if there is one.
    pub fn close(&mut self, error: Option<AmqpError>) -> Result<(), UsageError> {
        if self.state.local == Half::Closed {
            return Err(UsageError::AlreadyClosed);
        }
        if !self.state.local_opened() {
            // 2.4.1: a close must follow an open.
            self.open()?;
        }
        self.queue_close(error);
        Ok(())
    }

    /// Queues our close (once) and marks our half closed.
    fn queue_close(&mut self, error: Option<AmqpError>) {
        if self.state.local == Half::Closed {
            return;
        }
        self.state.local = Half::Closed;
        self.out.push_back(Out::Amqp {
            channel: 0,
            performative: Close { error }.into(),
            payload: Bytes::new(),
        });
    }

    /// Takes received bytes. All of `data` is consumed (the caller keeps
    /// nothing): complete frames are processed at once and a partial frame
    /// is kept (never more than our max-frame-size of it). After a failure
    /// or the peer's close, bytes are dropped.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.failed || self.expect == Expect::Nothing {
            return;
        }
        if !data.is_empty() {
            self.last_received = now;
        }
        self.inbuf.extend_from_slice(data);
        while !self.failed {
            match self.step() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => self.fail(e),
            }
        }
    }

    /// Processes one unit of input; false when more bytes are needed.
    fn step(&mut self) -> Result<bool, ConnectionError> {
        match self.expect {
            Expect::Nothing => Ok(false),
            Expect::Header(id) => {
                let Some(h) = ProtocolHeader::parse(&self.inbuf).map_err(|e| match e.kind {
                    crate::codec::DecodeErrorKind::InvalidProtocolHeader(h) => {
                        ConnectionError::UnsupportedProtocol(h)
                    }
                    _ => ConnectionError::Decode(e),
                })?
                else {
                    return Ok(false);
                };
                let _ = self.inbuf.split_to(ProtocolHeader::LEN);
                self.on_header(id, h)?;
                Ok(true)
            }
            Expect::SaslFrame | Expect::AmqpFrame => {
                let max = self.config.max_frame_size;
                let Some(bytes) =
                    split_frame(&mut self.inbuf, max).map_err(|e| self.framing_error(e))?
                else {
                    return Ok(false);
                };
                let frame = Frame::decode(&bytes).map_err(|e| self.decode_error(e))?;
                self.on_frame(frame)?;
                Ok(true)
            }
        }
    }

    fn framing_error(&self, e: crate::codec::DecodeError) -> ConnectionError {
        if self.expect == Expect::AmqpFrame {
            ConnectionError::Protocol(AmqpError::new(condition::FRAMING_ERROR, e.to_string()))
        } else {
            ConnectionError::Decode(e)
        }
    }

    fn decode_error(&self, e: crate::codec::DecodeError) -> ConnectionError {
        if self.expect == Expect::AmqpFrame {
            ConnectionError::Protocol(AmqpError::new(condition::DECODE_ERROR, e.to_string()))
        } else {
            ConnectionError::Decode(e)
        }
    }

    fn on_header(
        &mut self,
        expected: ProtocolId,
        h: ProtocolHeader,
    ) -> Result<(), ConnectionError> {
        let ours = ProtocolHeader {
            id: expected,
            major: 1,
            minor: 0,
            revision: 0,
        };
        if h.id != expected || !h.is_v1_0() {
            // 2.2: answer with the header we do support, then close the socket.
            if self.config.side == Side::Server {
                self.out_sasl.push_back(Out::Header(ours));
            }
            return Err(ConnectionError::UnsupportedProtocol(h.to_bytes()));
        }
        match (self.config.side, expected) {
            (Side::Server, ProtocolId::Sasl) => {
                self.out_sasl.push_back(Out::Header(ours));
                let mechanisms = match &self.config.sasl {
                    SaslConfig::Server { mechanisms, .. } => mechanisms.clone(),
                    _ => Vec::new(),
                };
                self.out_sasl
                    .push_back(Out::Sasl(SaslFrame::Mechanisms(SaslMechanisms {
                        sasl_server_mechanisms: mechanisms,
                    })));
                self.expect = Expect::SaslFrame;
            }
            (Side::Client, ProtocolId::Sasl) => self.expect = Expect::SaslFrame,
            (Side::Server, _) => {
                self.out.push_front(Out::Header(ours));
                self.expect = Expect::AmqpFrame;
            }
            (Side::Client, _) => self.expect = Expect::AmqpFrame,
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        match (self.expect, frame) {
            (Expect::SaslFrame, Frame::Sasl(s)) => self.on_sasl(s),
            (Expect::SaslFrame, _) => Err(ConnectionError::Decode(crate::codec::DecodeError {
                offset: 0,
                kind: crate::codec::DecodeErrorKind::InvalidFrame("AMQP frame during SASL"),
            })),
            (_, Frame::Sasl(_)) => Err(protocol(condition::FRAMING_ERROR, "SASL frame after SASL")),
            (_, Frame::Empty { .. }) => Ok(()),
            (
                _,
                Frame::Amqp {
                    channel,
                    performative,
                    payload,
                },
            ) => self.on_amqp(channel, performative, payload),
        }
    }

    fn on_amqp(
        &mut self,
        channel: u16,
        p: Performative,
        payload: Bytes,
    ) -> Result<(), ConnectionError> {
        if self.state.remote == Half::Closed {
            return Err(protocol(condition::ILLEGAL_STATE, "frame after close"));
        }
        match p {
            Performative::Open(open) => {
                if self.remote_open.is_some() {
                    return Err(protocol(condition::ILLEGAL_STATE, "second open"));
                }
                if channel != 0 {
                    return Err(protocol(
                        condition::FRAMING_ERROR,
                        "open on a channel other than 0",
                    ));
                }
                if open.max_frame_size < MIN_MAX_FRAME_SIZE {
                    return Err(protocol(
                        condition::FRAME_SIZE_TOO_SMALL,
                        "max-frame-size below 512",
                    ));
                }
                self.peer_max_frame_size = open.max_frame_size;
                self.state.remote = Half::Active;
                self.remote_open = Some(Box::new(open.clone()));
                self.events.push_back(Event::Opened(Box::new(open)));
                Ok(())
            }
            _ if self.remote_open.is_none() => {
                Err(protocol(condition::ILLEGAL_STATE, "frame before open"))
            }
            Performative::Close(close) => {
                self.state.remote = Half::Closed;
                self.expect = Expect::Nothing;
                self.queue_close(None);
                self.events.push_back(Event::Closed(close.error));
                Ok(())
            }
            performative => {
                if channel > self.config.channel_max {
                    return Err(protocol(
                        condition::FRAMING_ERROR,
                        "channel above channel-max",
                    ));
                }
                self.on_session_frame(channel, performative, payload)
            }
        }
    }

    /// Records a fatal error: queues a close that explains it when the AMQP
    /// layer is up, and reports it.
    fn fail(&mut self, e: ConnectionError) {
        if let ConnectionError::Protocol(err) = &e {
            if self.state.local != Half::Closed {
                if !self.state.local_opened() {
                    let _ = self.open();
                }
                self.queue_close(Some(err.clone()));
            }
        }
        self.failed = true;
        self.expect = Expect::Nothing;
        self.events.push_back(Event::Failed(e));
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the bytes ready to send to `buf`; returns how many. Frames
    /// after the AMQP header wait until SASL has finished.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> usize {
        let start = buf.len();
        let form = self.config.form;
        let emit = |o: Out, buf: &mut Vec<u8>| match o {
            Out::Header(h) => buf.extend_from_slice(&h.to_bytes()),
            Out::Sasl(s) => frame::encode_sasl_frame(buf, &s, form),
            Out::Amqp {
                channel,
                performative,
                payload,
            } => frame::encode_amqp_frame(buf, channel, &performative, &payload, form),
            Out::Empty => buf.extend_from_slice(&frame::EMPTY_FRAME),
        };
        while let Some(o) = self.out_sasl.pop_front() {
            emit(o, buf);
        }
        if self.sasl_done && !self.failed {
            let max = self.peer_max_frame_size;
            for s in self.sessions.iter_mut().flatten() {
                if s.has_queued() && s.state.local != Half::Closed {
                    s.pump(max, form, &mut self.out);
                }
            }
        }
        if self.sasl_done {
            while let Some(o) = self.out.pop_front() {
                emit(o, buf);
            }
        }
        let n = buf.len() - start;
        if n > 0 {
            self.last_sent = now;
        }
        n
    }

    /// The next moment [`handle_timeout`](Self::handle_timeout) must be
    /// called: a heartbeat due, or the peer's silence to be judged.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() || self.remote_open.is_none() {
            return None;
        }
        let heartbeat = self.heartbeat_interval().map(|i| self.last_sent + i);
        let expiry = self.config.idle_time_out.map(|t| self.last_received + t);
        match (heartbeat, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Half the peer's idle time-out (2.4.5), as go-amqp and Proton do;
    /// halved as a `Duration`, so that 1 ms gives 500 us and never zero (a
    /// zero interval keeps the heartbeat due at once after every send).
    fn heartbeat_interval(&self) -> Option<Duration> {
        let ms = self.remote_open.as_ref()?.idle_time_out?;
        (ms > 0 && self.state.local == Half::Active)
            .then(|| Duration::from_millis(u64::from(ms)) / 2)
    }

    /// Acts on timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() || self.remote_open.is_none() {
            return;
        }
        if let Some(t) = self.config.idle_time_out {
            if now >= self.last_received + t {
                let err = AmqpError::new(
                    condition::RESOURCE_LIMIT_EXCEEDED,
                    "local-idle-timeout expired",
                );
                self.queue_close(Some(err));
                self.failed = true;
                self.expect = Expect::Nothing;
                self.events
                    .push_back(Event::Failed(ConnectionError::IdleTimeout));
                return;
            }
        }
        if let Some(i) = self.heartbeat_interval() {
            if now >= self.last_sent + i && self.out.is_empty() {
                self.out.push_back(Out::Empty);
            }
        }
    }
}

impl Connection {
    pub(super) fn session_mut(&mut self, channel: u16) -> Result<&mut Session, UsageError> {
        self.sessions
            .get_mut(channel as usize)
            .and_then(Option::as_mut)
            .ok_or(UsageError::UnknownSession)
    }

    pub(super) fn check_open(&self) -> Result<(), UsageError> {
        if self.state.local != Half::Active || self.failed {
            return Err(UsageError::NotOpen);
        }
        Ok(())
    }

    /// The lowest free local channel within the peer's channel-max (2.7.1:
    /// channel-max plus one sessions at most); `None` when all are used.
    fn alloc_channel(&mut self) -> Option<u16> {
        let max = self
            .remote_open
            .as_ref()
            .map_or(self.config.channel_max, |o| {
                o.channel_max.min(self.config.channel_max)
            });
        let i = self
            .sessions
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.sessions.len());
        if i > max as usize {
            return None;
        }
        if i == self.sessions.len() {
            self.sessions.push(None);
        }
        Some(i as u16)
    }

    /// Begins a session; returns its local channel.
    pub fn begin_session(&mut self, config: SessionConfig) -> Result<u16, UsageError> {
        self.check_open()?;
        let channel = self.alloc_channel().ok_or(UsageError::NoFreeChannel)?;
        let mut s = Session::new(channel, config);
        self.out.push_back(s.begin_frame());
        self.sessions[channel as usize] = Some(s);
        Ok(channel)
    }

    /// The session on local `channel`, to command.
    pub fn session(&mut self, channel: u16) -> SessionMut<'_> {
        SessionMut {
            conn: self,
            channel,
        }
    }

    /// The link `id`, to command.
    pub fn link(&mut self, id: LinkId) -> LinkMut<'_> {
        LinkMut { conn: self, id }
    }

    /// The state of link `id`, while the engine knows it.
    pub fn link_state(&self, id: LinkId) -> Option<EndpointState> {
        self.link_ref(id).map(|l| l.state)
    }

    /// Credit available on sending link `id` (0 for an unknown link).
    pub fn credit(&self, id: LinkId) -> u32 {
        self.link_ref(id).map_or(0, |l| l.credit())
    }

    /// Deliveries sent on link `id` that have not gone out whole yet: still
    /// queued for [`poll_transmit`](Self::poll_transmit), or waiting for the
    /// peer's session window (2.5.6). A sender that bounds this bounds what
    /// a peer that stops reading makes it buffer. 0 for an unknown link.
    pub fn queued(&self, id: LinkId) -> u32 {
        self.link_ref(id).map_or(0, |l| l.queued())
    }

    fn link_ref(&self, id: LinkId) -> Option<&super::session::Link> {
        self.sessions
            .get(id.channel as usize)
            .and_then(Option::as_ref)
            .and_then(|s| s.link(id.handle))
    }

    pub(super) fn free_session(&mut self, channel: u16) {
        if let Some(s) = self
            .sessions
            .get_mut(channel as usize)
            .and_then(Option::take)
        {
            if let Some(r) = s.remote_channel {
                self.remote_channels.remove(&r);
            }
        }
    }

    pub(super) fn queue(&mut self, out: impl IntoIterator<Item = Out>) {
        self.out.extend(out);
    }

    pub(super) fn form(&self) -> Form {
        self.config.form
    }

    /// A frame for a session (2.5): routed to the session the peer's
    /// channel names; what the session finds wrong is answered with an end
    /// or a detach that carries the condition.
    fn on_session_frame(
        &mut self,
        channel: u16,
        p: Performative,
        payload: Bytes,
    ) -> Result<(), ConnectionError> {
        if let Performative::Begin(b) = p {
            return self.on_begin(channel, b);
        }
        let Some(local) = self.session_for(channel, &p)? else {
            return Ok(());
        };
        if let Performative::End(End { error }) = p {
            self.on_end(channel, local, error);
            return Ok(());
        }
        let s = self.sessions[local as usize]
            .as_mut()
            .expect("session_for checked");
        let (out, events) = (&mut self.out, &mut self.events);
        let r = match p {
            Performative::Attach(a) => s.on_attach(a, events),
            Performative::Detach(d) => s.on_detach(d, out, events),
            Performative::Flow(f) => s.on_flow(f, out, events),
            Performative::Transfer(t) => s.on_transfer(t, payload, out, events),
            Performative::Disposition(d) => {
                s.on_disposition(d, events);
                Ok(())
            }
            _ => Err(Fault::Connection(AmqpError::new(
                condition::ILLEGAL_STATE,
                "unexpected performative",
            ))),
        };
        self.answer_fault(local, r)
    }

    /// The local channel of the session the peer's `channel` names, or
    /// `None` for a frame to drop (on a session the peer ended, or that we
    /// ended while it was in flight).
    fn session_for(&self, channel: u16, p: &Performative) -> Result<Option<u16>, ConnectionError> {
        let no_session = || protocol(condition::NOT_FOUND, "frame on a channel with no session");
        let Some(&local) = self.remote_channels.get(&channel) else {
            if self.ended_remote_channels.contains(&channel) {
                return Ok(None);
            }
            return Err(no_session());
        };
        let Some(s) = self.sessions.get(local as usize).and_then(Option::as_ref) else {
            return Err(no_session());
        };
        if s.state.remote == Half::Closed {
            return Err(protocol(
                condition::ILLEGAL_STATE,
                "frame on an ended session",
            ));
        }
        if s.state.local == Half::Closed && !matches!(p, Performative::End(_)) {
            return Ok(None); // in flight when we ended
        }
        Ok(Some(local))
    }

    /// The peer ended session `local` (its `channel`): ours follows if it
    /// was not sent, and the session is freed.
    fn on_end(&mut self, channel: u16, local: u16, error: Option<AmqpError>) {
        if let Some(s) = self.sessions[local as usize].as_mut() {
            s.state.remote = Half::Closed;
            if s.state.local != Half::Closed {
                let end = s.end_frame(None);
                self.out.push_back(end);
            }
        }
        self.events.push_back(Event::SessionEnded {
            channel: local,
            error,
        });
        self.remote_channels.remove(&channel);
        self.ended_remote_channels.insert(channel);
        self.free_session(local);
    }

    /// Answers what session `local` found wrong: a session fault with an
    /// end, a link fault with a detach, each carrying the condition; a
    /// connection fault fails the connection.
    fn answer_fault(&mut self, local: u16, r: Result<(), Fault>) -> Result<(), ConnectionError> {
        let session = self.sessions[local as usize].as_mut();
        match (r, session) {
            (Err(Fault::Connection(e)), _) => Err(ConnectionError::Protocol(e)),
            (Ok(()), _) | (_, None) => Ok(()),
            (Err(Fault::Session(e)), Some(s)) => {
                self.out.push_back(s.end_frame(Some(e.clone())));
                self.events.push_back(Event::SessionError {
                    channel: local,
                    error: e,
                });
                Ok(())
            }
            (Err(Fault::Link(handle, e)), Some(s)) => {
                s.detach(handle, true, Some(e.clone()), &mut self.out);
                self.events.push_back(Event::LinkError {
                    link: LinkId {
                        channel: local,
                        handle,
                    },
                    error: e,
                });
                Ok(())
            }
        }
    }

    fn on_begin(
        &mut self,
        channel: u16,
        b: crate::codec::performatives::Begin,
    ) -> Result<(), ConnectionError> {
        if self.remote_channels.contains_key(&channel) {
            return Err(protocol(
                condition::ILLEGAL_STATE,
                "begin on a channel in use",
            ));
        }
        let (local, peer_initiated) = match b.remote_channel {
            Some(ours) => {
                let ok = self
                    .sessions
                    .get(ours as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.state.local == Half::Active && !s.state.remote_opened());
                if !ok {
                    return Err(protocol(
                        condition::ILLEGAL_STATE,
                        "begin answers no session of ours",
                    ));
                }
                (ours, false)
            }
            None => {
                if self.state.local == Half::Closed {
                    return Err(protocol(condition::ILLEGAL_STATE, "begin after our close"));
                }
                // 2.7.1: channel-max plus one sessions at most. A peer that
                // begins more leaves us no channel to answer on.
                let Some(ch) = self.alloc_channel() else {
                    return Err(protocol(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        "begin beyond channel-max: no channel left to answer on",
                    ));
                };
                let defaults = self.config.session_defaults.clone();
                self.sessions[ch as usize] = Some(Session::new(ch, defaults));
                (ch, true)
            }
        };
        self.remote_channels.insert(channel, local);
        self.ended_remote_channels.remove(&channel);
        let s = self.sessions[local as usize]
            .as_mut()
            .expect("checked above");
        s.remote_channel = Some(channel);
        s.on_begin(&b);
        // A pipelined begin may arrive before we have opened; the answer
        // then follows our open.
        if peer_initiated && self.state.local_opened() {
            self.out.push_back(s.begin_frame());
        }
        self.events.push_back(Event::SessionBegun {
            channel: local,
            peer_initiated,
        });
        Ok(())
    }
}

fn protocol(condition: Symbol, description: &'static str) -> ConnectionError {
    ConnectionError::Protocol(AmqpError::new(condition, description))
}
