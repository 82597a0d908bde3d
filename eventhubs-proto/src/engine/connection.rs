//! The connection layer (2.4) with its SASL prelude (5.3): protocol header
//! exchange, SASL as client or server, open/close negotiation, max-frame-size
//! enforcement, heartbeats and idle time-out.
//!
//! Sessions and links sit on top of this layer; frames on channels are
//! handed up as [`Event::Frame`] until they are.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{condition, ConnectionError};
use crate::codec::frame::{
    self, split_frame, Frame, ProtocolHeader, ProtocolId, MIN_MAX_FRAME_SIZE,
};
use crate::codec::performatives::{AmqpError, Close, Fields, Open, Performative};
use crate::codec::sasl::{SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome};
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

    fn initial_response(&self) -> Option<Bytes> {
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
    /// A frame on a channel, for the session layer.
    Frame {
        /// The channel.
        channel: u16,
        /// The performative.
        performative: Performative,
        /// Transfer payload, sharing the input buffer.
        payload: Bytes,
    },
    /// The peer closed the connection (with its error, if any); if we had
    /// not closed yet, our close is already queued.
    Closed(Option<AmqpError>),
    /// The connection failed; whatever close frame explains it is queued.
    Failed(ConnectionError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Header(ProtocolId),
    SaslFrame,
    AmqpFrame,
    Nothing,
}

#[derive(Debug)]
enum Out {
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
    config: ConnectionConfig,
    expect: Expect,
    inbuf: BytesMut,
    /// Frames of the SASL phase, sent before anything in `out`.
    out_sasl: VecDeque<Out>,
    /// The AMQP header and everything after it; held back until SASL ends.
    out: VecDeque<Out>,
    sasl_done: bool,
    chosen: Option<SaslMechanism>,
    events: VecDeque<Event>,
    local_open: bool,
    remote_open: Option<Box<Open>>,
    local_closed: bool,
    remote_closed: bool,
    /// Largest frame the peer accepts (512 until its open arrives).
    peer_max_frame_size: u32,
    last_received: Instant,
    last_sent: Instant,
    failed: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("side", &self.config.side)
            .field("expect", &self.expect)
            .field("local_open", &self.local_open)
            .field("remote_open", &self.remote_open.is_some())
            .field("local_closed", &self.local_closed)
            .field("remote_closed", &self.remote_closed)
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
            local_open: false,
            remote_open: None,
            local_closed: false,
            remote_closed: false,
            peer_max_frame_size: MIN_MAX_FRAME_SIZE,
            last_received: now,
            last_sent: now,
            failed: false,
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

    /// True once both ends have closed, or the connection failed.
    pub fn is_closed(&self) -> bool {
        self.failed || (self.local_closed && self.remote_closed)
    }

    /// Sends our open. May be called before the peer's open (pipelining)
    /// and, on a client, before SASL has finished.
    pub fn open(&mut self) -> Result<(), ConnectionError> {
        if self.local_open {
            return Err(ConnectionError::Usage("open() called twice"));
        }
        self.local_open = true;
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
        Ok(())
    }

    /// Sends our close, with an error if there is one.
    pub fn close(&mut self, error: Option<AmqpError>) -> Result<(), ConnectionError> {
        if self.local_closed {
            return Err(ConnectionError::Usage("close() called twice"));
        }
        if !self.local_open {
            // 2.4.1: a close must follow an open.
            self.open()?;
        }
        self.local_closed = true;
        self.out.push_back(Out::Amqp {
            channel: 0,
            performative: Close { error }.into(),
            payload: Bytes::new(),
        });
        Ok(())
    }

    /// Queues a frame on `channel` for the session layer. The payload is
    /// sent as given; callers split transfers to the peer's max-frame-size.
    pub fn send_frame(
        &mut self,
        channel: u16,
        performative: Performative,
        payload: Bytes,
    ) -> Result<(), ConnectionError> {
        if !self.local_open || self.local_closed || self.failed {
            return Err(ConnectionError::Usage("connection is not open for sending"));
        }
        self.out.push_back(Out::Amqp {
            channel,
            performative,
            payload,
        });
        Ok(())
    }

    /// Takes received bytes. All of `data` is consumed; complete frames are
    /// processed at once and a partial frame is kept (never more than our
    /// max-frame-size of it).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> usize {
        if self.failed || self.expect == Expect::Nothing {
            return data.len();
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
        data.len()
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
                self.queue_header_now(ours);
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

    fn queue_header_now(&mut self, h: ProtocolHeader) {
        self.out_sasl.push_back(Out::Header(h));
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

    fn on_sasl(&mut self, s: SaslFrame) -> Result<(), ConnectionError> {
        match (self.config.side, s) {
            (Side::Client, SaslFrame::Mechanisms(m)) => {
                let SaslConfig::Client(ours) = &self.config.sasl else {
                    unreachable!("client SASL config")
                };
                let offered = &m.sasl_server_mechanisms;
                let Some(mech) = ours.iter().find(|o| offered.contains(&o.name())).cloned() else {
                    return Err(ConnectionError::NoSaslMechanism(
                        offered.iter().map(|s| s.to_string()).collect(),
                    ));
                };
                let init = SaslInit {
                    mechanism: mech.name(),
                    initial_response: mech.initial_response(),
                    hostname: self.config.hostname.as_deref().map(ByteString::from),
                };
                self.chosen = Some(mech);
                self.out_sasl.push_back(Out::Sasl(SaslFrame::Init(init)));
                Ok(())
            }
            (Side::Client, SaslFrame::Challenge(_)) => {
                // None of our mechanisms has a challenge step.
                Err(ConnectionError::SaslFailed(SaslCode::Auth))
            }
            (Side::Client, SaslFrame::Outcome(o)) => {
                if o.code != SaslCode::Ok {
                    return Err(ConnectionError::SaslFailed(o.code));
                }
                let mechanism = self
                    .chosen
                    .as_ref()
                    .map(SaslMechanism::name)
                    .unwrap_or_default();
                self.events.push_back(Event::Authenticated {
                    mechanism,
                    user: None,
                });
                self.sasl_done = true;
                self.expect = Expect::Header(ProtocolId::Amqp);
                self.out.push_front(Out::Header(ProtocolHeader::AMQP));
                Ok(())
            }
            (Side::Server, SaslFrame::Init(init)) => {
                let (code, user) = self.check_init(&init);
                self.out_sasl
                    .push_back(Out::Sasl(SaslFrame::Outcome(SaslOutcome {
                        code,
                        additional_data: None,
                    })));
                if code != SaslCode::Ok {
                    self.expect = Expect::Nothing;
                    self.failed = true;
                    self.events
                        .push_back(Event::Failed(ConnectionError::SaslFailed(code)));
                    return Ok(());
                }
                self.events.push_back(Event::Authenticated {
                    mechanism: init.mechanism,
                    user,
                });
                self.sasl_done = true;
                self.expect = Expect::Header(ProtocolId::Amqp);
                Ok(())
            }
            (_, other) => Err(ConnectionError::Decode(crate::codec::DecodeError {
                offset: 0,
                kind: crate::codec::DecodeErrorKind::UnexpectedDescriptor {
                    expected: "SASL frame for this side",
                    found: format!("{other:?}").chars().take(40).collect(),
                },
            })),
        }
    }

    fn check_init(&mut self, init: &SaslInit) -> (SaslCode, Option<String>) {
        let SaslConfig::Server {
            mechanisms,
            plain_check,
        } = &mut self.config.sasl
        else {
            return (SaslCode::SysPerm, None);
        };
        if !mechanisms.contains(&init.mechanism) {
            return (SaslCode::Auth, None);
        }
        match init.mechanism.as_str() {
            "PLAIN" => {
                let resp = init.initial_response.as_deref().unwrap_or_default();
                let mut parts = resp.split(|&b| b == 0);
                let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
                let (Some(user), Some(pass), None) = (user, pass, parts.next()) else {
                    return (SaslCode::Auth, None);
                };
                let (Ok(user), Ok(pass)) = (std::str::from_utf8(user), std::str::from_utf8(pass))
                else {
                    return (SaslCode::Auth, None);
                };
                if plain_check.as_mut().is_some_and(|check| check(user, pass)) {
                    (SaslCode::Ok, Some(user.to_string()))
                } else {
                    (SaslCode::Auth, None)
                }
            }
            _ => (SaslCode::Ok, None),
        }
    }

    fn on_amqp(
        &mut self,
        channel: u16,
        p: Performative,
        payload: Bytes,
    ) -> Result<(), ConnectionError> {
        if self.remote_closed {
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
                self.remote_open = Some(Box::new(open.clone()));
                self.events.push_back(Event::Opened(Box::new(open)));
                Ok(())
            }
            _ if self.remote_open.is_none() => {
                Err(protocol(condition::ILLEGAL_STATE, "frame before open"))
            }
            Performative::Close(close) => {
                self.remote_closed = true;
                self.expect = Expect::Nothing;
                if !self.local_closed {
                    self.local_closed = true;
                    self.out.push_back(Out::Amqp {
                        channel: 0,
                        performative: Close { error: None }.into(),
                        payload: Bytes::new(),
                    });
                }
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
                self.events.push_back(Event::Frame {
                    channel,
                    performative,
                    payload,
                });
                Ok(())
            }
        }
    }

    /// Records a fatal error: queues a close that explains it when the AMQP
    /// layer is up, and reports it.
    fn fail(&mut self, e: ConnectionError) {
        if let ConnectionError::Protocol(err) = &e {
            if !self.local_closed {
                if !self.local_open {
                    let _ = self.open();
                }
                self.local_closed = true;
                self.out.push_back(Out::Amqp {
                    channel: 0,
                    performative: Close {
                        error: Some(err.clone()),
                    }
                    .into(),
                    payload: Bytes::new(),
                });
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

    /// Half the peer's idle time-out (2.4.5), as go-amqp and Proton do.
    fn heartbeat_interval(&self) -> Option<Duration> {
        let ms = self.remote_open.as_ref()?.idle_time_out?;
        (ms > 0 && self.local_open && !self.local_closed)
            .then(|| Duration::from_millis(ms as u64 / 2))
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
                if !self.local_closed {
                    self.local_closed = true;
                    self.out.push_back(Out::Amqp {
                        channel: 0,
                        performative: Close { error: Some(err) }.into(),
                        payload: Bytes::new(),
                    });
                }
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

fn protocol(condition: Symbol, description: &'static str) -> ConnectionError {
    ConnectionError::Protocol(AmqpError::new(condition, description))
}
