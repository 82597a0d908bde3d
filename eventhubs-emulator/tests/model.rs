//! Deterministic tests of the sans-IO broker model: a client engine and the
//! broker wired together in memory under a virtual clock, no sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_emulator::{Broker, ConnId, EmulatorConfig, Now};
use eventhubs_proto::codec::message::{Body, Message};
use eventhubs_proto::codec::messaging::{DeliveryState, MessageId, Properties, Source, Target};
use eventhubs_proto::codec::performatives::{AmqpError, Fields, Role};
use eventhubs_proto::codec::{Decode, Encode, Map, Symbol, Value};
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, Event, LinkConfig, LinkId, SaslConfig, SaslMechanism,
    SessionConfig, Side,
};
use eventhubs_proto::eventhubs::sas::{sign, ResourceEncoding};
use eventhubs_proto::eventhubs::EventPosition;

const T0_MS: i64 = 1_800_000_000_000;

struct Client {
    conn: Connection,
    id: ConnId,
    events: Vec<Event>,
    session: u16,
    cbs_tx: LinkId,
    cbs_rx: LinkId,
}

struct World {
    start: Instant,
    elapsed: Duration,
    broker: Broker,
}

impl World {
    fn new() -> World {
        let start = Instant::now();
        let broker = Broker::new(
            EmulatorConfig::default(),
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

    /// Opens a client with a session and a `$cbs` link pair.
    fn client(&mut self) -> Client {
        let now = self.now();
        let mut c = ConnectionConfig::new(Side::Client, "model-client");
        c.sasl = SaslConfig::Client(vec![SaslMechanism::Anonymous]);
        let mut conn = Connection::new(c, now.instant);
        let id = self.broker.connect(now);
        conn.open().unwrap();
        let session = conn.begin_session(SessionConfig::default()).unwrap();
        let cbs_tx = conn
            .attach(session, link("cbs-tx", Role::Sender, "cbs-client", "$cbs"))
            .unwrap();
        let cbs_rx = conn
            .attach(
                session,
                link("cbs-rx", Role::Receiver, "$cbs", "cbs-client"),
            )
            .unwrap();
        let mut client = Client {
            conn,
            id,
            events: vec![],
            session,
            cbs_tx,
            cbs_rx,
        };
        self.pump(&mut [&mut client]);
        client.conn.flow(cbs_rx, 10, false).unwrap();
        self.pump(&mut [&mut client]);
        client
    }

    /// Moves bytes until every side is quiet.
    fn pump(&mut self, clients: &mut [&mut Client]) {
        for _ in 0..10_000 {
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

    /// Puts a SAS token for `audience` signed with `key`; returns the status
    /// code of the CBS reply.
    fn put_token(&mut self, c: &mut Client, audience: &str, key: &str) -> i32 {
        let expiry = (self.now().unix_ms / 1000) as u64 + 3600;
        let token = sign(
            audience,
            "RootManageSharedAccessKey",
            key,
            expiry,
            ResourceEncoding::GoLowercase,
        )
        .unwrap();
        let mut app = Map::new();
        app.insert("operation".into(), Value::String("put-token".into()));
        app.insert(
            "type".into(),
            Value::String("servicebus.windows.net:sastoken".into()),
        );
        app.insert("name".into(), Value::String(audience.into()));
        let request = Message {
            properties: Some(Properties {
                message_id: Some(MessageId::from("put-1")),
                reply_to: Some("cbs-client".into()),
                ..Default::default()
            }),
            application_properties: Some(app),
            body: Body::Value(Value::String(token.as_str().into())),
            ..Default::default()
        };
        c.events.clear();
        c.conn
            .send(
                c.cbs_tx,
                Bytes::from_static(b"t"),
                0,
                false,
                request.to_bytes(),
            )
            .unwrap();
        self.pump(&mut [c]);
        let reply = c
            .events
            .iter()
            .find_map(|e| match e {
                Event::Delivery { link, payload, .. } if *link == c.cbs_rx => {
                    Some(Message::decode_all(payload).unwrap())
                }
                _ => None,
            })
            .expect("a CBS reply");
        let props = reply.application_properties.unwrap();
        props.get("status-code").and_then(Value::as_i64).unwrap() as i32
    }

    fn receiver(
        &mut self,
        c: &mut Client,
        name: &str,
        partition: u32,
        position: EventPosition,
        epoch: Option<i64>,
    ) -> LinkId {
        let mut source = Source::with_address(format!(
            "eh1/ConsumerGroups/$Default/Partitions/{partition}"
        ));
        source.filter = Some(position.filter_set());
        let properties = epoch.map(|e| {
            let mut p: Fields = Map::new();
            p.insert(Symbol::from_static("com.microsoft:epoch"), Value::Long(e));
            p
        });
        let config = LinkConfig {
            name: name.into(),
            role: Role::Receiver,
            source: Some(source),
            target: Some(Target::with_address(name)),
            properties,
            ..Default::default()
        };
        let l = c.conn.attach(c.session, config).unwrap();
        self.pump(&mut [c]);
        l
    }

    fn sender(&mut self, c: &mut Client, address: &str) -> LinkId {
        let l = c
            .conn
            .attach(c.session, link("tx", Role::Sender, "tx", address))
            .unwrap();
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

fn detach_error(c: &Client, link: LinkId) -> Option<AmqpError> {
    c.events.iter().find_map(|e| match e {
        Event::LinkDetached { link: l, error, .. } if *l == link => error.clone(),
        _ => None,
    })
}

fn delivered(c: &Client, link: LinkId) -> Vec<Message> {
    c.events
        .iter()
        .filter_map(|e| match e {
            Event::Delivery {
                link: l, payload, ..
            } if *l == link => Some(Message::decode_all(payload).unwrap()),
            _ => None,
        })
        .collect()
}

fn sequence_number(m: &Message) -> i64 {
    m.message_annotations
        .as_ref()
        .unwrap()
        .get("x-opt-sequence-number")
        .and_then(Value::as_i64)
        .unwrap()
}

#[test]
fn links_are_refused_until_a_valid_token_is_put() {
    let mut w = World::new();
    let mut c = w.client();
    let tx = w.sender(&mut c, "eh1");
    assert_eq!(
        detach_error(&c, tx)
            .map(|e| e.condition.to_string())
            .as_deref(),
        Some("amqp:unauthorized-access")
    );
    assert_eq!(
        w.put_token(&mut c, "amqps://localhost/eh1", "WRONG_KEY"),
        401
    );
    assert_eq!(
        w.put_token(&mut c, "amqps://localhost/eh2", "SAS_KEY_VALUE"),
        202,
        "a valid token for any path"
    );
    let tx = w.sender(&mut c, "eh1");
    assert!(
        detach_error(&c, tx).is_some(),
        "a token for eh2 does not cover eh1"
    );
    assert_eq!(
        w.put_token(&mut c, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
        202
    );
    c.events.clear();
    let tx = w.sender(&mut c, "eh1/Partitions/1");
    assert!(detach_error(&c, tx).is_none(), "{:?}", c.events);
    assert!(c.conn.credit(tx) > 0);
}

#[test]
fn events_get_sequence_numbers_offsets_and_start_positions_select_them() {
    let mut w = World::new();
    let mut c = w.client();
    assert_eq!(
        w.put_token(&mut c, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
        202
    );
    let tx = w.sender(&mut c, "eh1/Partitions/0");
    for i in 0..5u8 {
        w.elapsed += Duration::from_millis(10);
        c.conn
            .send(
                tx,
                Bytes::from(vec![i]),
                0,
                false,
                Message::with_data(vec![i; 3]).to_bytes(),
            )
            .unwrap();
        w.pump(&mut [&mut c]);
    }
    let accepted = c
        .events
        .iter()
        .filter(|e| matches!(e, Event::Disposition { link, state: Some(DeliveryState::Accepted(_)), .. } if *link == tx))
        .count();
    assert_eq!(accepted, 5);
    let cases = [
        (EventPosition::Earliest, vec![0, 1, 2, 3, 4]),
        (EventPosition::sequence_number(2, false), vec![3, 4]),
        (EventPosition::sequence_number(2, true), vec![2, 3, 4]),
        (EventPosition::Latest, vec![]),
    ];
    for (i, (position, expected)) in cases.into_iter().enumerate() {
        let rx = w.receiver(&mut c, &format!("rx{i}"), 0, position.clone(), None);
        c.conn.flow(rx, 100, false).unwrap();
        w.pump(&mut [&mut c]);
        let got: Vec<i64> = delivered(&c, rx).iter().map(sequence_number).collect();
        assert_eq!(got, expected, "{position:?}");
        c.conn.detach(rx, true, None).unwrap();
        w.pump(&mut [&mut c]);
        // The handle is free for the next link: forget this one's events.
        c.events.clear();
    }
    // Offsets are strings of byte positions: starting after the second
    // event's offset gives the third event on.
    let rx = w.receiver(&mut c, "by-seq", 0, EventPosition::Earliest, None);
    c.conn.flow(rx, 100, false).unwrap();
    w.pump(&mut [&mut c]);
    let all = delivered(&c, rx);
    let offset = all[1]
        .message_annotations
        .as_ref()
        .unwrap()
        .get("x-opt-offset")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap();
    let rx2 = w.receiver(
        &mut c,
        "by-offset",
        0,
        EventPosition::offset(offset, false),
        None,
    );
    c.conn.flow(rx2, 100, false).unwrap();
    w.pump(&mut [&mut c]);
    assert_eq!(
        delivered(&c, rx2)
            .iter()
            .map(sequence_number)
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );
    // Enqueued time: the clock advanced 10 ms per event.
    let t = all[3]
        .message_annotations
        .as_ref()
        .unwrap()
        .get("x-opt-enqueued-time")
        .cloned()
        .unwrap();
    let Value::Timestamp(ts) = t else {
        panic!("{t:?}")
    };
    let rx3 = w.receiver(
        &mut c,
        "by-time",
        0,
        EventPosition::enqueued_time(ts, true),
        None,
    );
    c.conn.flow(rx3, 100, false).unwrap();
    w.pump(&mut [&mut c]);
    assert_eq!(
        delivered(&c, rx3)
            .iter()
            .map(sequence_number)
            .collect::<Vec<_>>(),
        [3, 4]
    );
}

#[test]
fn a_higher_epoch_steals_the_partition_and_a_lower_one_is_refused() {
    let mut w = World::new();
    let mut a = w.client();
    let mut b = w.client();
    assert_eq!(
        w.put_token(&mut a, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
        202
    );
    assert_eq!(
        w.put_token(&mut b, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
        202
    );
    let first = w.receiver(&mut a, "owner-0", 1, EventPosition::Latest, Some(0));
    assert!(detach_error(&a, first).is_none());
    let second = w.receiver(&mut b, "owner-1", 1, EventPosition::Latest, Some(1));
    w.pump(&mut [&mut a, &mut b]);
    assert_eq!(
        detach_error(&a, first).unwrap().condition,
        "amqp:link:stolen"
    );
    assert!(detach_error(&b, second).is_none());
    let lower = w.receiver(&mut a, "owner-0-again", 1, EventPosition::Latest, Some(0));
    assert_eq!(
        detach_error(&a, lower).unwrap().condition,
        "amqp:link:stolen"
    );
    let plain = w.receiver(&mut a, "no-epoch", 1, EventPosition::Latest, None);
    assert!(
        detach_error(&a, plain).is_some(),
        "no non-epoch receiver beside an epoch one"
    );
}

#[test]
fn at_most_five_non_epoch_receivers_per_group_and_partition() {
    let mut w = World::new();
    let mut c = w.client();
    assert_eq!(
        w.put_token(&mut c, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
        202
    );
    let links: Vec<LinkId> = (0..6)
        .map(|i| w.receiver(&mut c, &format!("r{i}"), 0, EventPosition::Latest, None))
        .collect();
    assert!(links[..5].iter().all(|l| detach_error(&c, *l).is_none()));
    assert_eq!(
        detach_error(&c, links[5]).unwrap().condition,
        "amqp:resource-limit-exceeded"
    );
}

#[test]
fn anonymous_connections_without_a_token_are_closed_after_the_deadline() {
    let mut w = World::new();
    let mut c = w.client();
    let deadline = w.broker.config().cbs_deadline_ms;
    w.elapsed += Duration::from_millis(deadline as u64 + 1);
    let now = w.now();
    w.broker.handle_timeout(now);
    w.pump(&mut [&mut c]);
    assert!(
        c.events.iter().any(
            |e| matches!(e, Event::Closed(Some(err)) if err.condition == "amqp:unauthorized-access")
        ),
        "{:?}",
        c.events
    );
}
