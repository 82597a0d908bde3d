//! The emulator's bounds against hostile and stalled clients
//! (`eventhubs_emulator::limits`): first on the sans-IO broker model under
//! a virtual clock, then over real sockets (TCP, HTTP).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_emulator::{Broker, ConnId, Emulator, EmulatorConfig, Limits, Now};
use eventhubs_proto::codec::frame::encode_amqp_frame;
use eventhubs_proto::codec::message::{Body, Message};
use eventhubs_proto::codec::messaging::{MessageId, Properties, Source, Target};
use eventhubs_proto::codec::performatives::{AmqpError, Begin, Role};
use eventhubs_proto::codec::{Encode, Form, Map, Value};
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, Event, LinkConfig, LinkId, SaslConfig, SaslMechanism,
    SessionConfig, Settlement, Side,
};
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_testkit::tcp::{emulator_plain, event, EngineClient};

const T0_MS: i64 = 1_800_000_000_000;
const LIMIT: &str = "amqp:resource-limit-exceeded";

struct Client {
    conn: Connection,
    id: ConnId,
    events: Vec<Event>,
    /// Bytes from the broker are not read (a client that stopped reading).
    deaf: bool,
}

struct World {
    start: Instant,
    elapsed: Duration,
    broker: Broker,
}

impl World {
    fn new(limits: Limits) -> World {
        let start = Instant::now();
        let config = EmulatorConfig {
            limits,
            ..EmulatorConfig::default()
        };
        let broker = Broker::new(
            config,
            Now {
                instant: start,
                unix_ms: T0_MS,
            },
        );
        World {
            start,
            elapsed: Duration::ZERO,
            broker,
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.start + self.elapsed,
            unix_ms: T0_MS + self.elapsed.as_millis() as i64,
        }
    }

    /// A connection the client side of which does nothing yet.
    fn connect(&mut self, sasl: SaslMechanism) -> Client {
        let now = self.now();
        let mut c = ConnectionConfig::new(Side::Client, "limits-client");
        c.sasl = SaslConfig::Client(vec![sasl]);
        Client {
            conn: Connection::new(c, now.instant),
            id: self.broker.connect(now),
            events: Vec::new(),
            deaf: false,
        }
    }

    /// A PLAIN client, opened, with a session.
    fn client(&mut self) -> Client {
        let mut c = self.connect(emulator_plain());
        c.conn.open().unwrap();
        c.conn.begin_session(SessionConfig::default()).unwrap();
        self.pump(&mut [&mut c]);
        c
    }

    fn pump(&mut self, clients: &mut [&mut Client]) {
        for _ in 0..100_000 {
            let now = self.now();
            let mut moved = false;
            for c in clients.iter_mut() {
                let mut out = Vec::new();
                let _ = c.conn.poll_transmit(now.instant, &mut out);
                if !out.is_empty() {
                    self.broker.handle_input(c.id, now, &out);
                    moved = true;
                }
            }
            for c in clients.iter_mut() {
                if c.deaf {
                    continue;
                }
                let mut back = Vec::new();
                let _ = self.broker.poll_transmit(c.id, now, &mut back);
                if !back.is_empty() {
                    c.conn.handle_input(now.instant, &back);
                    moved = true;
                }
                while let Some(e) = c.conn.poll_event() {
                    c.events.push(e);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("did not settle");
    }

    /// Advances the virtual clock to `at` and fires the broker's timers.
    fn advance_to(&mut self, at: Instant) {
        self.elapsed = at - self.start;
        let now = self.now();
        self.broker.handle_timeout(now);
    }

    fn attach(&mut self, c: &mut Client, config: LinkConfig) -> LinkId {
        let l = c.conn.session(0).attach(config).unwrap();
        self.pump(&mut [c]);
        l
    }
}

fn link(name: &str, role: Role, source: &str, target: &str) -> LinkConfig {
    LinkConfig {
        name: name.into(),
        role,
        source: Some(Source::with_address(source)),
        target: Some(Target::with_address(target)),
        ..Default::default()
    }
}

fn closed_with(c: &Client) -> Option<AmqpError> {
    c.events.iter().find_map(|e| match e {
        Event::Closed(e) => e.clone(),
        Event::Failed(eventhubs_proto::engine::ConnectionError::Protocol(e)) => Some(e.clone()),
        _ => None,
    })
}

fn detached_with(c: &Client, link: LinkId) -> Option<AmqpError> {
    c.events.iter().find_map(|e| match e {
        Event::LinkDetached { link: l, error, .. } if *l == link => error.clone(),
        _ => None,
    })
}

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn a_connection_beyond_the_quota_is_closed_after_its_open_with_resource_limit_exceeded() {
    let mut l = limits();
    l.max_connections = 2;
    let mut w = World::new(l);
    let mut a = w.client();
    let mut b = w.client();
    assert!(closed_with(&a).is_none() && closed_with(&b).is_none());
    let mut c = w.client();
    let e = closed_with(&c).expect("the third is closed");
    assert_eq!(e.condition, LIMIT, "{e:?}");
    assert!(
        e.description
            .as_deref()
            .unwrap_or_default()
            .contains("2 connections"),
        "{e:?}"
    );
    // The first two were not touched; once one goes, a new one is served.
    w.pump(&mut [&mut a, &mut b, &mut c]);
    assert!(closed_with(&a).is_none() && closed_with(&b).is_none());
    w.broker.disconnect(a.id);
    w.broker.disconnect(c.id);
    let d = w.client();
    assert!(closed_with(&d).is_none(), "{:?}", d.events);
    assert_eq!(w.broker.stats().connections_refused, 1);
}

#[test]
fn too_many_unauthenticated_connections_are_dropped_at_once() {
    let mut l = limits();
    l.max_unauthenticated = 3;
    let mut w = World::new(l);
    let silent: Vec<Client> = (0..3)
        .map(|_| w.connect(SaslMechanism::Anonymous))
        .collect();
    assert!(silent.iter().all(|c| !w.broker.is_closed(c.id)));
    // The fourth is dropped before anything is said.
    let fourth = w.connect(SaslMechanism::Anonymous);
    assert!(w.broker.is_closed(fourth.id));
    let mut out = Vec::new();
    assert_eq!(w.broker.poll_transmit(fourth.id, w.now(), &mut out), 0);
    assert_eq!(w.broker.stats().connections_refused, 1);
    // A connection that authenticates (PLAIN) no longer counts.
    w.broker.disconnect(silent[0].id);
    let plain = w.client();
    assert!(!w.broker.is_closed(plain.id));
    assert_eq!(w.broker.unauthenticated_connections(), 2);
    let fifth = w.connect(SaslMechanism::Anonymous);
    assert!(!w.broker.is_closed(fifth.id));
    let sixth = w.connect(SaslMechanism::Anonymous);
    assert!(w.broker.is_closed(sixth.id));
}

#[test]
fn a_client_that_does_not_finish_sasl_and_open_in_time_is_dropped() {
    let mut l = limits();
    l.handshake_timeout = Duration::from_secs(3);
    let mut w = World::new(l);
    let connected = w.now().instant;
    let mut slow = w.connect(SaslMechanism::Anonymous);
    let mut quick = w.client();
    // SASL done, but no open: still within the handshake.
    w.pump(&mut [&mut slow]);
    assert_eq!(
        w.broker.poll_timeout(),
        Some(connected + Duration::from_secs(3)),
        "the handshake deadline is a timer"
    );
    w.advance_to(connected + Duration::from_millis(2999));
    assert!(!w.broker.is_closed(slow.id));
    w.advance_to(connected + Duration::from_secs(3));
    assert!(w.broker.is_closed(slow.id), "dropped at its deadline");
    assert!(
        !w.broker.is_closed(quick.id),
        "the client that opened stays"
    );
    w.pump(&mut [&mut quick]);
    assert!(closed_with(&quick).is_none());
    assert_eq!(w.broker.stats().connections_dropped, 1);
}

#[test]
fn a_close_that_is_not_answered_is_followed_by_the_socket_going() {
    let mut w = World::new(limits());
    // Anonymous, never puts a token: closed at the CBS deadline with
    // unauthorized-access; this client never answers the close.
    let mut c = w.connect(SaslMechanism::Anonymous);
    c.conn.open().unwrap();
    w.pump(&mut [&mut c]);
    let cbs = w.now().instant + Duration::from_millis(w.broker.config().cbs_deadline_ms as u64);
    // Heartbeats come first; the deadline is one of the broker's timers.
    for _ in 0..10 {
        let at = w.broker.poll_timeout().expect("a timer");
        assert!(at <= cbs);
        w.advance_to(at);
        let mut back = Vec::new();
        let _ = w.broker.poll_transmit(c.id, w.now(), &mut back);
        c.conn.handle_input(w.now().instant, &back);
        while let Some(e) = c.conn.poll_event() {
            c.events.push(e);
        }
        if closed_with(&c).is_some() {
            break;
        }
    }
    assert_eq!(w.now().instant, cbs);
    assert_eq!(
        closed_with(&c).map(|e| e.condition.to_string()).as_deref(),
        Some("amqp:unauthorized-access")
    );
    assert!(!w.broker.is_closed(c.id), "waiting for the answer");
    let grace = w.broker.poll_timeout().expect("the close's grace");
    assert_eq!(grace, cbs + eventhubs_emulator::limits::CLOSE_GRACE);
    w.advance_to(grace);
    assert!(w.broker.is_closed(c.id));
}

#[test]
fn sessions_are_bounded_by_the_channel_max_the_broker_announces() {
    let mut l = limits();
    l.max_sessions = 3;
    let mut w = World::new(l);
    let mut c = w.client();
    assert_eq!(c.conn.remote_open().unwrap().channel_max, 2);
    c.conn.begin_session(SessionConfig::default()).unwrap();
    c.conn.begin_session(SessionConfig::default()).unwrap();
    assert!(
        c.conn.begin_session(SessionConfig::default()).is_err(),
        "a fourth session has no channel"
    );
    w.pump(&mut [&mut c]);
    assert!(closed_with(&c).is_none());
    // A client that ignores channel-max begins on channel 3 all the same.
    let mut raw = Vec::new();
    let begin = Begin {
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        ..Default::default()
    };
    encode_amqp_frame(&mut raw, 3, &begin.into(), &[], Form::Compact);
    let now = w.now();
    w.broker.handle_input(c.id, now, &raw);
    let mut back = Vec::new();
    let _ = w.broker.poll_transmit(c.id, now, &mut back);
    c.conn.handle_input(now.instant, &back);
    while let Some(e) = c.conn.poll_event() {
        c.events.push(e);
    }
    let e = closed_with(&c).expect("closed");
    assert_eq!(e.condition, "amqp:connection:framing-error", "{e:?}");
}

#[test]
fn links_beyond_the_connection_quota_are_refused_with_resource_limit_exceeded() {
    let mut l = limits();
    l.max_links = 3;
    let mut w = World::new(l);
    let mut c = w.client();
    // Each session's handle-max says so: a fourth link on one session has
    // no handle.
    let tx0 = w.attach(&mut c, link("tx0", Role::Sender, "c", "eh1/Partitions/0"));
    let tx1 = w.attach(&mut c, link("tx1", Role::Sender, "c", "eh1/Partitions/1"));
    let tx2 = w.attach(&mut c, link("tx2", Role::Sender, "c", "eh1"));
    assert!([tx0, tx1, tx2]
        .iter()
        .all(|l| detached_with(&c, *l).is_none()));
    assert!(c
        .conn
        .session(0)
        .attach(link("tx3", Role::Sender, "c", "eh1"))
        .is_err());
    // Across sessions, the connection's count is the bound.
    let s1 = c.conn.begin_session(SessionConfig::default()).unwrap();
    let fourth = c
        .conn
        .session(s1)
        .attach(link("rx", Role::Receiver, "$management", "c"))
        .unwrap();
    w.pump(&mut [&mut c]);
    let e = detached_with(&c, fourth).expect("refused");
    assert_eq!(e.condition, LIMIT, "{e:?}");
    assert_eq!(w.broker.stats().links_refused, 1);
    // One goes, another may come.
    c.conn.link(tx0).close(None).unwrap();
    w.pump(&mut [&mut c]);
    c.events.clear();
    let again = c
        .conn
        .session(s1)
        .attach(link("tx-again", Role::Sender, "c", "eh1"))
        .unwrap();
    w.pump(&mut [&mut c]);
    assert!(detached_with(&c, again).is_none(), "{:?}", c.events);
    assert!(closed_with(&c).is_none());
}

#[test]
fn a_receiver_that_does_not_read_is_sent_no_more_than_the_bound() {
    let mut l = limits();
    l.max_pending_deliveries = 10;
    let mut w = World::new(l);
    let mut producer = w.client();
    let tx = w.attach(
        &mut producer,
        link("tx", Role::Sender, "c", "eh1/Partitions/0"),
    );
    for i in 0..100u64 {
        producer
            .conn
            .link(tx)
            .send(
                Bytes::copy_from_slice(&i.to_be_bytes()),
                0,
                Settlement::Unsettled,
                event(i, 100).to_bytes(),
            )
            .unwrap();
    }
    w.pump(&mut [&mut producer]);
    assert_eq!(w.broker.stats().events_in, 100);

    let mut reader = w.client();
    let mut source = Source::with_address("eh1/ConsumerGroups/$Default/Partitions/0");
    source.filter = Some(EventPosition::Earliest.filter_set());
    let rx = w.attach(
        &mut reader,
        LinkConfig {
            name: "rx".into(),
            role: Role::Receiver,
            source: Some(source),
            target: Some(Target::with_address("r")),
            ..Default::default()
        },
    );
    reader.deaf = true;
    reader.conn.link(rx).flow(1000).unwrap();
    w.pump(&mut [&mut reader, &mut producer]);
    assert_eq!(
        w.broker.stats().events_out,
        10,
        "ten queued for a client that reads nothing"
    );
    // More traffic elsewhere does not add to its queue.
    producer
        .conn
        .link(tx)
        .send(
            Bytes::from_static(b"x"),
            0,
            Settlement::Unsettled,
            event(100, 100).to_bytes(),
        )
        .unwrap();
    w.pump(&mut [&mut reader, &mut producer]);
    assert_eq!(w.broker.stats().events_out, 10);
    // Once it reads, everything comes, in order.
    reader.deaf = false;
    for _ in 0..20 {
        w.pump(&mut [&mut reader]);
        let now = w.now();
        w.broker.handle_timeout(now);
    }
    let seqs: Vec<i64> = reader
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Delivery { link, payload, .. } if *link == rx => {
                let m = <Message as eventhubs_proto::codec::Decode>::decode_all(payload).unwrap();
                m.message_annotations
                    .unwrap()
                    .get("x-opt-sequence-number")
                    .and_then(Value::as_i64)
            }
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (0..101).collect::<Vec<_>>());
}

#[test]
fn replies_piling_up_without_credit_detach_the_reply_link() {
    let mut l = limits();
    l.max_pending_deliveries = 5;
    let mut w = World::new(l);
    let mut c = w.client();
    let requests = w.attach(&mut c, link("m-tx", Role::Sender, "c", "$management"));
    let replies = w.attach(&mut c, link("m-rx", Role::Receiver, "$management", "c"));
    // No credit on `replies`, ever.
    for i in 0..7u64 {
        let mut app = Map::new();
        app.insert("operation".into(), Value::String("READ".into()));
        app.insert("name".into(), Value::String("eh1".into()));
        app.insert(
            "type".into(),
            Value::String("com.microsoft:eventhub".into()),
        );
        let m = Message {
            properties: Some(Properties {
                message_id: Some(MessageId::Ulong(i)),
                reply_to: Some("c".into()),
                ..Default::default()
            }),
            application_properties: Some(app),
            body: Body::Value(Value::Null),
            ..Default::default()
        };
        c.conn
            .link(requests)
            .send(
                Bytes::copy_from_slice(&i.to_be_bytes()),
                0,
                Settlement::Unsettled,
                m.to_bytes(),
            )
            .unwrap();
        w.pump(&mut [&mut c]);
        let detached = detached_with(&c, replies);
        if i < 5 {
            assert!(detached.is_none(), "request {i}: {detached:?}");
        } else {
            assert_eq!(detached.expect("detached").condition, LIMIT);
            break;
        }
    }
    assert!(closed_with(&c).is_none(), "the connection stays");
}

// --------------------------------------------------------------------
// Over real sockets.

fn emulator(limits: Limits) -> Emulator {
    Emulator::builder()
        .config(EmulatorConfig {
            limits,
            ..EmulatorConfig::default()
        })
        .management(true)
        .start()
        .expect("emulator")
}

/// True when the peer closes `s` within `within` (EOF or reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn over_tcp_silent_sockets_are_dropped_and_a_flood_is_shed() {
    let mut l = limits();
    l.max_unauthenticated = 3;
    l.handshake_timeout = Duration::from_secs(1);
    let emu = emulator(l);
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(emu.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Beyond the bound: closed at once.
    let mut extra = TcpStream::connect(emu.addr()).unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "at once, not at the deadline"
    );
    // The silent ones go at their handshake deadline.
    for s in &mut silent {
        assert!(closed_within(s, Duration::from_secs(5)), "dropped");
    }
    assert!(started.elapsed() >= Duration::from_secs(1));
    // A real client is served again.
    let mut c = EngineClient::connect(emu.addr(), emulator_plain()).expect("connects");
    c.sender("eh1").expect("a sender");
}

#[test]
fn over_tcp_the_connection_quota_answers_with_resource_limit_exceeded() {
    let mut l = limits();
    l.max_connections = 2;
    let emu = emulator(l);
    let mut a = EngineClient::connect(emu.addr(), emulator_plain()).unwrap();
    let _b = EngineClient::connect(emu.addr(), emulator_plain()).unwrap();
    let mut c = EngineClient::connect(emu.addr(), emulator_plain()).unwrap();
    let e = c
        .until(Duration::from_secs(10), |_, e| match e {
            Event::Closed(e) => Some(e.clone()),
            _ => None,
        })
        .expect("a close")
        .expect("with an error");
    assert_eq!(e.condition, LIMIT);
    a.sender("eh1").expect("the first connection still serves");
}

/// Sends `request` on a new HTTP connection and reads the response head.
fn http(addr: SocketAddr, request: &[u8]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn over_http_connections_beyond_the_bound_get_503_and_slow_requests_408() {
    let mut l = limits();
    l.max_http_connections = 2;
    l.http_request_timeout = Duration::from_secs(1);
    let emu = emulator(l);
    let addr = emu.management_addr().expect("http");
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let (one, head) = http(addr, health);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (two, head) = http(addr, health);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Both kept alive: a third is refused.
    let (_three, head) = http(addr, health);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    drop((one, two));
    std::thread::sleep(Duration::from_millis(200));
    // A request that trickles in is cut off at its deadline.
    let started = Instant::now();
    let (mut slow, head) = http(addr, b"GET /health HTTP/1.1\r\nHo");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(closed_within(&mut slow, Duration::from_secs(2)));
    let (_, head) = http(addr, health);
    assert!(head.starts_with("HTTP/1.1 200"), "served again: {head}");
}
