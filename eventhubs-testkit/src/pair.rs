//! A deterministic in-memory pair: a client engine and a server engine
//! wired together under a virtual clock, with knobs for chunking, latency
//! and dropped connections. The server side can play a small broker.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use eventhubs_proto::codec::frame::{split_frame, Frame};
use eventhubs_proto::codec::performatives::{Performative, Role};
use eventhubs_proto::codec::Symbol;
use eventhubs_proto::engine::connection::PlainCheck;
use eventhubs_proto::engine::Settlement;
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, Event, LinkConfig, LinkId, SaslConfig, SaslMechanism, Side,
};

pub fn client_config(sasl: Vec<SaslMechanism>) -> ConnectionConfig {
    let mut c = ConnectionConfig::new(Side::Client, "client-1");
    c.hostname = Some("localhost".into());
    c.sasl = if sasl.is_empty() {
        SaslConfig::None
    } else {
        SaslConfig::Client(sasl)
    };
    c
}

pub fn server_config(
    mechanisms: &[&'static str],
    plain_check: Option<PlainCheck>,
) -> ConnectionConfig {
    let mut c = ConnectionConfig::new(Side::Server, "server-1");
    c.sasl = if mechanisms.is_empty() {
        SaslConfig::None
    } else {
        SaslConfig::Server {
            mechanisms: mechanisms.iter().map(|m| Symbol::from_static(m)).collect(),
            plain_check,
        }
    };
    c
}

/// What the server does with events.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// Only answers the open.
    Passive,
    /// Plays a broker: accepts every link, grants `credit` to receivers and
    /// refills it, accepts unsettled deliveries, and sends stored messages
    /// out on its sending links as credit allows.
    Broker { credit: u32 },
}

/// Bytes in flight in one direction, each chunk due at a virtual time.
#[derive(Default)]
struct Wire {
    queue: VecDeque<(Instant, Vec<u8>)>,
    total: usize,
}

pub struct Pair {
    pub now: Instant,
    pub client: Connection,
    pub server: Connection,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    /// Deliver at most this many bytes per input call.
    pub chunk: usize,
    /// One-way latency.
    pub latency: Duration,
    /// Drop everything the client sends (a silent peer).
    pub mute_client: bool,
    /// Connection dropped: nothing moves either way.
    pub dropped: bool,
    pub mode: ServerMode,
    /// Everything each side sent.
    pub client_wire: Vec<u8>,
    pub server_wire: Vec<u8>,
    c2s: Wire,
    s2c: Wire,
    /// Broker: messages stored (payloads) to hand out on server senders.
    pub stored: VecDeque<Bytes>,
    next_tag: u64,
    server_links: HashMap<LinkId, Role>,
}

impl Pair {
    pub fn new(client: ConnectionConfig, server: ConnectionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            now,
            client: Connection::new(client, now),
            server: Connection::new(server, now),
            client_events: vec![],
            server_events: vec![],
            chunk: usize::MAX,
            latency: Duration::ZERO,
            mute_client: false,
            dropped: false,
            mode: ServerMode::Passive,
            client_wire: vec![],
            server_wire: vec![],
            c2s: Wire::default(),
            s2c: Wire::default(),
            stored: VecDeque::new(),
            next_tag: 0,
            server_links: HashMap::new(),
        }
    }

    /// A pair without SASL, both opened.
    pub fn opened(client: ConnectionConfig, server: ConnectionConfig, mode: ServerMode) -> Pair {
        let mut p = Pair::new(client, server);
        p.mode = mode;
        p.client.open().unwrap();
        p.run();
        assert!(
            p.client.remote_open().is_some(),
            "client saw no open: {:?}",
            p.client_events
        );
        p
    }

    fn transmit(&mut self) -> bool {
        let mut c2s = Vec::new();
        let _ = self.client.poll_transmit(self.now, &mut c2s);
        let mut s2c = Vec::new();
        let _ = self.server.poll_transmit(self.now, &mut s2c);
        let moved = !c2s.is_empty() || !s2c.is_empty();
        self.client_wire.extend_from_slice(&c2s);
        self.server_wire.extend_from_slice(&s2c);
        let due = self.now + self.latency;
        if !c2s.is_empty() && !self.mute_client && !self.dropped {
            self.c2s.total += c2s.len();
            self.c2s.queue.push_back((due, c2s));
        }
        if !s2c.is_empty() && !self.dropped {
            self.s2c.total += s2c.len();
            self.s2c.queue.push_back((due, s2c));
        }
        moved
    }

    fn deliver(&mut self) -> bool {
        let mut any = false;
        while let Some((t, _)) = self.c2s.queue.front() {
            if *t > self.now {
                break;
            }
            let (_, bytes) = self.c2s.queue.pop_front().unwrap();
            for piece in bytes.chunks(self.chunk.max(1)) {
                self.server.handle_input(self.now, piece);
            }
            any = true;
        }
        while let Some((t, _)) = self.s2c.queue.front() {
            if *t > self.now {
                break;
            }
            let (_, bytes) = self.s2c.queue.pop_front().unwrap();
            for piece in bytes.chunks(self.chunk.max(1)) {
                self.client.handle_input(self.now, piece);
            }
            any = true;
        }
        any
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.on_server_event(&e);
            self.server_events.push(e);
        }
        if let ServerMode::Broker { .. } = self.mode {
            self.broker_send();
        }
    }

    fn on_server_event(&mut self, e: &Event) {
        if let Event::Opened(_) = e {
            let _ = self.server.open();
        }
        let ServerMode::Broker { credit } = self.mode else {
            return;
        };
        match e {
            Event::LinkAttached {
                link,
                attach,
                peer_initiated: true,
            } => {
                let config = LinkConfig {
                    max_message_size: Some(u64::MAX),
                    ..LinkConfig::answering(attach)
                };
                self.server.link(*link).answer(config).unwrap();
                let role = if attach.role == Role::Sender {
                    Role::Receiver
                } else {
                    Role::Sender
                };
                self.server_links.insert(*link, role);
                if role == Role::Receiver {
                    self.server.link(*link).flow(credit).unwrap();
                }
            }
            Event::Delivery {
                link,
                delivery_id,
                settled,
                payload,
                ..
            } => {
                self.stored.push_back(payload.clone());
                if !settled {
                    self.server.link(*link).accept(*delivery_id).unwrap();
                }
                // Refill credit once half is used.
                let _ = self.server.link(*link).flow(credit);
            }
            Event::LinkDetached { link, .. } => {
                self.server_links.remove(link);
            }
            _ => {}
        }
    }

    fn broker_send(&mut self) {
        let senders: Vec<LinkId> = self
            .server_links
            .iter()
            .filter(|(_, r)| **r == Role::Sender)
            .map(|(l, _)| *l)
            .collect();
        for link in senders {
            while self.server.credit(link) > 0 {
                let Some(m) = self.stored.pop_front() else {
                    return;
                };
                self.next_tag += 1;
                let tag = Bytes::copy_from_slice(&self.next_tag.to_be_bytes());
                self.server
                    .link(link)
                    .send(tag, 0, Settlement::Unsettled, m)
                    .unwrap();
            }
        }
    }

    /// Moves bytes and events until nothing is in flight and no side has
    /// anything to send; latency is crossed by advancing the clock.
    pub fn run(&mut self) {
        for _ in 0..1_000_000 {
            let sent = self.transmit();
            let delivered = self.deliver();
            self.drain_events();
            if !sent && !delivered {
                match self.next_arrival() {
                    Some(t) => self.now = self.now.max(t),
                    None => return,
                }
            }
        }
        panic!("pair did not settle");
    }

    fn next_arrival(&self) -> Option<Instant> {
        [self.c2s.queue.front(), self.s2c.queue.front()]
            .into_iter()
            .flatten()
            .map(|(t, _)| *t)
            .min()
    }

    /// Advances the virtual clock to `until`, firing timers and moving bytes.
    pub fn advance(&mut self, until: Instant) {
        loop {
            let next = [
                self.client.poll_timeout(),
                self.server.poll_timeout(),
                self.next_arrival(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.run();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
    }

    pub fn take_client_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.client_events)
    }
}

/// Decodes a byte stream (protocol headers skipped) into frames.
pub fn frames(wire: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.starts_with(b"AMQP") {
            let _ = buf.split_to(8);
            continue;
        }
        let f: Bytes = split_frame(&mut buf, u32::MAX).unwrap().unwrap();
        out.push(Frame::decode(&f).unwrap());
    }
    out
}

pub fn performatives(wire: &[u8]) -> Vec<Performative> {
    frames(wire)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Amqp { performative, .. } => Some(performative),
            _ => None,
        })
        .collect()
}

pub fn opened(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Opened(_)))
}

pub fn anonymous() -> Vec<SaslMechanism> {
    vec![SaslMechanism::Anonymous]
}
