//! An AMQP engine over one blocking TCP socket: for tests and benches
//! against real listeners (the emulator's server, Qpid Proton, RabbitMQ),
//! as a client or, on an accepted stream, as a server.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::codec::message::{Batch, Body, Message};
use eventhubs_proto::codec::messaging::{DeliveryState, Source, Target};
use eventhubs_proto::codec::performatives::{AmqpError, Role};
use eventhubs_proto::codec::Encode;
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, Event, LinkConfig, LinkId, SaslConfig, SaslMechanism,
    SessionConfig, Settlement, Side,
};
use eventhubs_proto::eventhubs::EventPosition;

/// SASL PLAIN with the emulator's default policy: no CBS needed.
pub fn emulator_plain() -> SaslMechanism {
    SaslMechanism::Plain {
        username: "RootManageSharedAccessKey".into(),
        password: "SAS_KEY_VALUE".into(),
    }
}

/// One engine over one TCP stream.
pub struct EngineClient {
    /// The engine.
    pub conn: Connection,
    /// The socket.
    pub stream: TcpStream,
    /// Events not handled yet.
    pub events: VecDeque<Event>,
    /// The session [`EngineClient::connect`] began (0 otherwise).
    pub session: u16,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    /// The peer closed the socket.
    pub eof: bool,
    next_tag: u64,
}

impl EngineClient {
    /// An engine with `config` on `stream`, which is already connected (or
    /// accepted); nothing is sent yet.
    pub fn new(stream: TcpStream, config: ConnectionConfig) -> EngineClient {
        let _ = stream.set_nodelay(true);
        EngineClient {
            conn: Connection::new(config, Instant::now()),
            stream,
            events: VecDeque::new(),
            session: 0,
            out: Vec::with_capacity(1 << 20),
            rbuf: vec![0; 1 << 20],
            eof: false,
            next_tag: 0,
        }
    }

    /// A client engine with `config` connected to 127.0.0.1:`port`.
    pub fn connect_port(port: u16, config: ConnectionConfig) -> EngineClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        EngineClient::new(stream, config)
    }

    /// Connects to `addr`, authenticates with `sasl`, opens and begins a
    /// session; returns once the peer's open has arrived.
    pub fn connect(addr: SocketAddr, sasl: SaslMechanism) -> std::io::Result<EngineClient> {
        let stream = TcpStream::connect(addr)?;
        let mut config = ConnectionConfig::new(Side::Client, "eventhubs-testkit-client");
        config.hostname = Some("localhost".into());
        config.sasl = SaslConfig::Client(vec![sasl]);
        config.max_frame_size = 256 * 1024;
        let mut c = EngineClient::new(stream, config);
        c.conn.open().expect("open");
        c.session = c
            .conn
            .begin_session(SessionConfig {
                incoming_window: 100_000,
                ..SessionConfig::default()
            })
            .expect("session");
        c.until(Duration::from_secs(10), |_, e| {
            matches!(e, Event::Opened(_)).then_some(())
        })
        .ok_or_else(|| std::io::Error::other("no open from the peer"))?;
        Ok(c)
    }

    /// Fires the engine's timers, writes what is pending, then waits up to
    /// `wait` (or the engine's next timer) for input.
    pub fn turn(&mut self, wait: Duration) {
        let now = Instant::now();
        self.conn.handle_timeout(now);
        self.flush();
        self.drain_events();
        if !self.events.is_empty() || self.eof {
            return;
        }
        let wait = match self.conn.poll_timeout() {
            Some(t) => wait.min(t.saturating_duration_since(now)),
            None => wait,
        };
        let _ = self
            .stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        match self.stream.read(&mut self.rbuf) {
            Ok(0) => self.eof = true,
            Ok(n) => self.conn.handle_input(Instant::now(), &self.rbuf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.eof = true,
        }
        self.drain_events();
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            self.events.push_back(e);
        }
    }

    /// Writes what the engine has queued, without waiting for input.
    pub fn flush(&mut self) {
        self.out.clear();
        let _ = self.conn.poll_transmit(Instant::now(), &mut self.out);
        if !self.out.is_empty() && self.stream.write_all(&self.out).is_err() {
            self.eof = true;
        }
    }

    /// Turns until `f` returns `Some` for an event (consumed), or `within`
    /// passes or the socket closes (`None`).
    pub fn until<T>(
        &mut self,
        within: Duration,
        mut f: impl FnMut(&mut Connection, &Event) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(e) = self.events.pop_front() {
                if let Some(v) = f(&mut self.conn, &e) {
                    return Some(v);
                }
            }
            if self.eof || Instant::now() >= deadline {
                return None;
            }
            self.turn(Duration::from_millis(20));
        }
    }

    /// As [`until`](Self::until), but a failed connection, a closed socket
    /// or the time running out is a panic.
    pub fn wait_for<T>(
        &mut self,
        within: Duration,
        mut f: impl FnMut(&mut Connection, &Event) -> Option<T>,
    ) -> T {
        let mut failed = None;
        let got = self.until(within, |c, e| {
            if let Event::Failed(err) = e {
                failed = Some(err.to_string());
                return None;
            }
            f(c, e)
        });
        if let Some(err) = failed {
            panic!("connection failed: {err}");
        }
        assert!(!self.eof || got.is_some(), "peer closed the socket");
        got.expect("timed out waiting")
    }

    /// Attaches a link on the session and waits for the answer: `Err` with
    /// the peer's error when it refuses.
    pub fn attach(&mut self, config: LinkConfig) -> Result<LinkId, Option<AmqpError>> {
        let role = config.role;
        let link = self
            .conn
            .session(self.session)
            .attach(config)
            .expect("attach");
        let answered = self.until(Duration::from_secs(10), |_, e| match e {
            Event::LinkAttached {
                link: l, attach, ..
            } if *l == link => Some(match role {
                Role::Sender => attach.target.is_some(),
                Role::Receiver => attach.source.is_some(),
            }),
            _ => None,
        });
        match answered {
            Some(true) => Ok(link),
            _ => Err(self
                .until(Duration::from_secs(10), |_, e| match e {
                    Event::LinkDetached { link: l, error, .. } if *l == link => Some(error.clone()),
                    _ => None,
                })
                .flatten()),
        }
    }

    /// A sender to `address` (a hub, `eh1/Partitions/0`, or a queue).
    pub fn sender(&mut self, address: &str) -> Result<LinkId, Option<AmqpError>> {
        self.attach(LinkConfig {
            name: format!("tx-{address}"),
            role: Role::Sender,
            source: Some(Source::with_address("client")),
            target: Some(Target::with_address(address)),
            ..Default::default()
        })
    }

    /// A receiver from `address`, starting at `position` when given (an
    /// Event Hubs filter; `None` for a plain queue).
    pub fn receiver(
        &mut self,
        address: &str,
        position: Option<EventPosition>,
    ) -> Result<LinkId, Option<AmqpError>> {
        let mut source = Source::with_address(address);
        source.filter = position.map(|p| p.filter_set());
        self.attach(LinkConfig {
            name: format!("rx-{address}"),
            role: Role::Receiver,
            source: Some(source),
            target: Some(Target::with_address("client")),
            ..Default::default()
        })
    }

    /// A fresh delivery tag.
    pub fn next_tag(&mut self) -> Bytes {
        self.next_tag += 1;
        Bytes::copy_from_slice(&self.next_tag.to_be_bytes())
    }

    /// Sends `payload` unsettled with `format`; returns the delivery id.
    pub fn send(&mut self, link: LinkId, format: u32, payload: Bytes) -> u32 {
        let tag = self.next_tag();
        self.conn
            .link(link)
            .send(tag, format, Settlement::Unsettled, payload)
            .expect("send")
    }

    /// Sends `payload` once the link has credit and waits (up to 10 s) for
    /// its outcome.
    pub fn publish(&mut self, link: LinkId, format: u32, payload: Bytes) -> DeliveryState {
        while self.conn.credit(link) == 0 {
            self.turn(Duration::from_millis(20));
        }
        let id = self.send(link, format, payload);
        self.until(Duration::from_secs(10), |_, e| match e {
            Event::Disposition {
                delivery_id,
                state: Some(s),
                ..
            } if *delivery_id == id => Some(s.clone()),
            _ => None,
        })
        .expect("an outcome")
    }
}

/// An event of `size` bytes of body whose first 8 bytes are `n`.
pub fn event(n: u64, size: usize) -> Message {
    let mut body = vec![b'x'; size.max(8)];
    body[..8].copy_from_slice(&n.to_be_bytes());
    Message {
        body: Body::Data(vec![body.into()]),
        ..Default::default()
    }
}

/// An Event Hubs batch of `events`, encoded (send with
/// `BATCH_MESSAGE_FORMAT`).
pub fn batch(events: &[Message]) -> Bytes {
    let envelope = Message::default();
    Batch {
        envelope: &envelope,
        events,
    }
    .to_bytes()
}

/// The first 8 body bytes of an event, as `event` wrote them.
pub fn event_number(m: &Message) -> Option<u64> {
    match &m.body {
        Body::Data(d) => d
            .first()
            .and_then(|b| b.get(..8))
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))),
        _ => None,
    }
}
