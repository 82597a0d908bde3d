//! A deterministic world: client cores and a sans-IO service (the
//! emulator's broker model, behind [`Service`]) wired together in memory
//! under a virtual clock, with a seeded network that splits, delays and
//! cuts the byte streams and refuses connects. Tokens are fetched as
//! production fetches them: `TokenRequired`, answered after a seeded
//! delay with `supply_token`.
//!
//! Everything the clients and the service say to each other is folded into
//! [`World::wire_digest`], so a test can check that a seed replays byte
//! for byte.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use eventhubs_proto::client::{
    Client, ClientEvent, ClientOptions, ConnectFailure, ConnectFailureKind, Credential, Now,
    TransportId,
};
use eventhubs_proto::eventhubs::sas::{SasKeyProvider, SyncTokenProvider};
use eventhubs_proto::eventhubs::SplitMix64;

/// The wall clock at the start of every world (ms since the Unix epoch).
pub const T0_MS: i64 = 1_800_000_000_000;
/// The emulator's default policy.
pub const KEY_NAME: &str = "RootManageSharedAccessKey";
/// Its key.
pub const KEY: &str = "SAS_KEY_VALUE";

/// A sans-IO service the clients connect to: connections in, bytes both
/// ways, timers. The emulator's broker model is one (its tests wrap it).
pub trait Service {
    /// Names a connection.
    type Conn: Copy + PartialEq + std::fmt::Debug;
    /// A new connection.
    fn connect(&mut self, now: Now) -> Self::Conn;
    /// Bytes from connection `conn`.
    fn handle_input(&mut self, conn: Self::Conn, now: Now, data: &[u8]);
    /// Bytes to connection `conn`; returns how many were appended.
    fn poll_transmit(&mut self, conn: Self::Conn, now: Now, buf: &mut Vec<u8>) -> usize;
    /// The socket of `conn` is gone.
    fn disconnect(&mut self, conn: Self::Conn);
    /// True once the service has closed `conn` (its last bytes sent).
    fn is_closed(&self, conn: Self::Conn) -> bool;
    /// When [`Service::handle_timeout`] is next due.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Fires the timers due at `now`.
    fn handle_timeout(&mut self, now: Now);
}

/// FNV-1a, folded over every byte of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Digest(u64);

impl Digest {
    fn new() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, tag: u8, bytes: &[u8]) {
        for &b in std::iter::once(&tag).chain(bytes) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// How hostile the network is.
#[derive(Clone, Copy, Debug)]
pub struct Network {
    /// Largest chunk moved at once.
    pub max_chunk: usize,
    /// One-way latency.
    pub latency: Duration,
    /// Chance per step that a connection is cut (out of 1,000,000).
    pub drop_ppm: u64,
    /// Chance that a connect attempt fails (out of 100).
    pub connect_fail_pct: u64,
}

impl Network {
    /// Whole chunks, 1 ms latency, no drops, no refused connects.
    pub fn calm() -> Self {
        Network {
            max_chunk: 64 * 1024,
            latency: Duration::from_millis(1),
            drop_ppm: 0,
            connect_fail_pct: 0,
        }
    }
}

struct Pipe {
    /// Bytes in flight with the instant they arrive.
    q: VecDeque<(Instant, Vec<u8>)>,
}

impl Pipe {
    fn new() -> Self {
        Pipe { q: VecDeque::new() }
    }
}

/// A client and where its tokens come from.
pub struct ClientSetup {
    /// Its options.
    pub options: ClientOptions,
    /// Answers `TokenRequired` after a short seeded delay, as the driver's
    /// token provider would; `None` leaves the answering to the test.
    pub tokens: Option<SasKeyProvider>,
}

/// One client attached to the world.
pub struct Peer<C> {
    /// The client core.
    pub client: Client,
    /// What it reported, with when.
    pub events: Vec<(Instant, ClientEvent)>,
    tokens: Option<SasKeyProvider>,
    /// Tokens asked for, with when the source answers.
    token_requests: Vec<(Instant, String)>,
    link: Option<(TransportId, C)>,
    to_broker: Pipe,
    to_client: Pipe,
    /// Transports it asked for.
    pub connects: u32,
    /// Connections the network cut.
    pub drops: u32,
}

/// Default client options against the emulator's default hub, with
/// CBS tokens from a SAS key that live `token_validity`, fetched as the
/// production driver fetches them.
pub fn options(seed: u64, token_validity: Duration) -> ClientSetup {
    let provider = SasKeyProvider::new(KEY_NAME, KEY)
        .unwrap()
        .with_validity(token_validity);
    let mut o = ClientOptions::new("localhost", "eh1", Credential::External);
    o.seed = seed;
    o.container_id = Some(format!("sim-{seed}"));
    ClientSetup {
        options: o,
        tokens: Some(provider),
    }
}

/// Clients and a service in memory, under a virtual clock.
pub struct World<S: Service> {
    /// The virtual clock's origin.
    pub start: Instant,
    /// Virtual time since the origin.
    pub elapsed: Duration,
    /// The service.
    pub broker: S,
    /// The clients.
    pub peers: Vec<Peer<S::Conn>>,
    /// The network's randomness.
    pub rng: SplitMix64,
    /// How hostile the network is.
    pub net: Network,
    buf: Vec<u8>,
    digest: Digest,
}

impl<S: Service> World<S> {
    /// A world around `service`, whose clock started at `start` (and
    /// [`T0_MS`] on the wall clock).
    pub fn new(seed: u64, start: Instant, service: S, net: Network) -> World<S> {
        World {
            start,
            elapsed: Duration::ZERO,
            broker: service,
            peers: Vec::new(),
            rng: SplitMix64::new(seed ^ 0x5eed),
            net,
            buf: Vec::new(),
            digest: Digest::new(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Now {
        Now {
            instant: self.start + self.elapsed,
            unix_ms: T0_MS + self.elapsed.as_millis() as i64,
        }
    }

    /// A digest of every byte the clients and the service sent each other
    /// so far, in order: equal for two runs of one seed.
    pub fn wire_digest(&self) -> u64 {
        self.digest.0
    }

    /// Adds a client; returns its index in [`World::peers`].
    pub fn add_client(&mut self, setup: ClientSetup) -> usize {
        self.peers.push(Peer {
            client: Client::new(setup.options).expect("valid options"),
            events: Vec::new(),
            tokens: setup.tokens,
            token_requests: Vec::new(),
            link: None,
            to_broker: Pipe::new(),
            to_client: Pipe::new(),
            connects: 0,
            drops: 0,
        });
        self.peers.len() - 1
    }

    /// Cuts peer `i`'s connection, as a network failure would.
    pub fn cut(&mut self, i: usize) {
        let now = self.now();
        let p = &mut self.peers[i];
        if let Some((tid, cid)) = p.link.take() {
            p.drops += 1;
            p.to_broker.q.clear();
            p.to_client.q.clear();
            self.broker.disconnect(cid);
            p.client.disconnected(now, tid, "simulated network failure");
        }
    }

    /// Handles client events and moves due bytes until nothing changes.
    fn exchange(&mut self) {
        while self.exchange_once() {}
    }

    fn exchange_once(&mut self) -> bool {
        let now = self.now();
        let bnow = self.now();
        let mut progressed = false;
        for i in 0..self.peers.len() {
            while let Some(ev) = self.peers[i].client.poll_event() {
                progressed = true;
                match &ev {
                    ClientEvent::Connect(tid) => {
                        let tid = *tid;
                        let p = &mut self.peers[i];
                        p.connects += 1;
                        if self.rng.below(100) < self.net.connect_fail_pct {
                            let failure = ConnectFailure::new(
                                ConnectFailureKind::Refused,
                                "simulated connect failure",
                            );
                            p.client.connect_failed(now, tid, failure);
                        } else {
                            let cid = self.broker.connect(bnow);
                            p.link = Some((tid, cid));
                            p.to_broker.q.clear();
                            p.to_client.q.clear();
                            p.client.connected(now, tid);
                        }
                    }
                    ClientEvent::Disconnect {
                        transport: tid,
                        final_bytes,
                        ..
                    } => {
                        let p = &mut self.peers[i];
                        if let Some((t, cid)) = p.link {
                            if t == *tid {
                                // What was in flight arrives, then the
                                // client's last bytes (a close).
                                for (_, b) in p.to_broker.q.drain(..) {
                                    self.digest.add(1, &b);
                                    self.broker.handle_input(cid, bnow, &b);
                                }
                                self.digest.add(3, final_bytes);
                                self.broker.handle_input(cid, bnow, final_bytes);
                                self.broker.disconnect(cid);
                                p.link = None;
                                p.to_broker.q.clear();
                                p.to_client.q.clear();
                            }
                        }
                    }
                    ClientEvent::TokenRequired { audience } => {
                        // The source answers within 0-50 ms.
                        let delay = Duration::from_millis(self.rng.below(50));
                        let p = &mut self.peers[i];
                        if p.tokens.is_some() {
                            p.token_requests
                                .push((now.instant + delay, audience.clone()));
                        }
                    }
                    _ => {}
                }
                self.peers[i].events.push((now.instant, ev));
            }
            progressed |= self.supply_tokens(i);
            let Some((_, cid)) = self.peers[i].link else {
                continue;
            };
            self.buf.clear();
            if self.peers[i].client.poll_transmit(now, &mut self.buf) > 0 {
                progressed = true;
                self.push_chunks(i, true);
            }
            self.buf.clear();
            if self.broker.poll_transmit(cid, bnow, &mut self.buf) > 0 {
                progressed = true;
                self.push_chunks(i, false);
            }
            let p = &mut self.peers[i];
            while p
                .to_broker
                .q
                .front()
                .is_some_and(|(t, _)| *t <= now.instant)
            {
                progressed = true;
                let (_, b) = p.to_broker.q.pop_front().unwrap();
                self.digest.add(1, &b);
                self.broker.handle_input(cid, bnow, &b);
            }
            while p
                .to_client
                .q
                .front()
                .is_some_and(|(t, _)| *t <= now.instant)
            {
                progressed = true;
                let (_, b) = p.to_client.q.pop_front().unwrap();
                self.digest.add(2, &b);
                p.client.handle_input(now, &b);
            }
            if self.broker.is_closed(cid) && p.to_client.q.is_empty() {
                // The broker closed the connection: once its last bytes
                // are delivered, the socket closes.
                if let Some((tid, cid)) = p.link.take() {
                    progressed = true;
                    self.broker.disconnect(cid);
                    p.to_broker.q.clear();
                    p.client.disconnected(now, tid, "broker closed the socket");
                }
            }
        }
        progressed
    }

    /// Answers the token requests of peer `i` that are due.
    fn supply_tokens(&mut self, i: usize) -> bool {
        let now = self.now();
        let p = &mut self.peers[i];
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut p.token_requests)
            .into_iter()
            .partition(|(at, _)| *at <= now.instant);
        p.token_requests = later;
        let Some(source) = p.tokens.as_mut() else {
            return false;
        };
        for (_, audience) in &due {
            let token = source.token(audience, (now.unix_ms / 1000) as u64);
            p.client.supply_token(now, audience, token);
        }
        !due.is_empty()
    }

    /// One step: exchange, random cuts, timers, then advance the clock to
    /// the next thing that can happen (at most `max_step` ahead).
    pub fn step(&mut self, max_step: Duration) {
        self.exchange();
        for i in 0..self.peers.len() {
            if self.net.drop_ppm > 0
                && self.peers[i].link.is_some()
                && self.rng.below(1_000_000) < self.net.drop_ppm
            {
                self.cut(i);
            }
        }
        let now = self.now();
        let bnow = self.now();
        if self.broker.poll_timeout().is_some_and(|t| t <= now.instant) {
            self.broker.handle_timeout(bnow);
        }
        for p in &mut self.peers {
            if p.client.poll_timeout().is_some_and(|t| t <= now.instant) {
                p.client.handle_timeout(now);
            }
        }
        self.exchange();
        let mut next = now.instant + max_step;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t.max(now.instant + Duration::from_micros(1)));
            }
        };
        consider(self.broker.poll_timeout());
        for p in &self.peers {
            consider(p.client.poll_timeout());
            consider(p.to_broker.q.front().map(|x| x.0));
            consider(p.to_client.q.front().map(|x| x.0));
            consider(p.token_requests.iter().map(|x| x.0).min());
        }
        self.elapsed += next - now.instant;
    }

    fn push_chunks(&mut self, i: usize, to_broker: bool) {
        let arrive = self.now().instant + self.net.latency;
        let mut off = 0;
        while off < self.buf.len() {
            let n =
                (1 + self.rng.below(self.net.max_chunk as u64) as usize).min(self.buf.len() - off);
            let chunk = self.buf[off..off + n].to_vec();
            let p = &mut self.peers[i];
            if to_broker {
                p.to_broker.q.push_back((arrive, chunk));
            } else {
                p.to_client.q.push_back((arrive, chunk));
            }
            off += n;
        }
    }

    /// Steps until `done` holds or `limit` of virtual time passes; returns
    /// whether `done` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut World<S>) -> bool,
    ) -> bool {
        let end = self.elapsed + limit;
        while self.elapsed < end {
            if done(self) {
                return true;
            }
            self.step(Duration::from_millis(100));
        }
        done(self)
    }

    pub fn take_events(&mut self, i: usize) -> Vec<(Instant, ClientEvent)> {
        std::mem::take(&mut self.peers[i].events)
    }
}
