//! Deterministic tests of the sans-IO broker model: a client engine and the
//! broker wired together in memory under a virtual clock, no sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_emulator::{Broker, ConnId, EmulatorConfig, LinkSelector, Now, LATE_OUTCOME_DELAY};
use eventhubs_proto::codec::message::{Body, Message};
use eventhubs_proto::codec::messaging::{DeliveryState, MessageId, Properties, Source, Target};
use eventhubs_proto::codec::performatives::{AmqpError, Fields, Role};
use eventhubs_proto::codec::{Decode, Encode, Map, Symbol, Value};
use eventhubs_proto::engine::Settlement;
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
        World::with_config(EmulatorConfig::default())
    }

    fn with_config(config: EmulatorConfig) -> World {
        let start = Instant::now();
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

    /// Opens a client with a session and a `$cbs` link pair.
    fn client(&mut self) -> Client {
        self.client_with(SaslMechanism::Anonymous)
    }

    /// Opens a client authenticating with `sasl`.
    fn client_with(&mut self, sasl: SaslMechanism) -> Client {
        let mut c = ConnectionConfig::new(Side::Client, "model-client");
        c.sasl = SaslConfig::Client(vec![sasl]);
        self.client_from(c)
    }

    /// Opens a client with the connection settings `c`.
    fn client_from(&mut self, c: ConnectionConfig) -> Client {
        let now = self.now();
        let mut conn = Connection::new(c, now.instant);
        let id = self.broker.connect(now);
        conn.open().unwrap();
        let session = conn.begin_session(SessionConfig::default()).unwrap();
        let cbs_tx = conn
            .session(session)
            .attach(link("cbs-tx", Role::Sender, "cbs-client", "$cbs"))
            .unwrap();
        let cbs_rx = conn
            .session(session)
            .attach(link("cbs-rx", Role::Receiver, "$cbs", "cbs-client"))
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
        client.conn.link(cbs_rx).flow(10).unwrap();
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
        self.request_token(c, audience, key);
        token_status(c).expect("a CBS reply")
    }

    /// Sends a put-token request and moves bytes; the reply may be held.
    fn request_token(&mut self, c: &mut Client, audience: &str, key: &str) {
        self.request_token_valid_for(c, audience, key, 3600);
    }

    /// Sends a put-token request for a token valid `secs` seconds.
    fn request_token_valid_for(&mut self, c: &mut Client, audience: &str, key: &str, secs: u64) {
        let expiry = (self.now().unix_ms / 1000) as u64 + secs;
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
            .link(c.cbs_tx)
            .send(
                Bytes::from_static(b"t"),
                0,
                Settlement::Unsettled,
                request.to_bytes(),
            )
            .unwrap();
        self.pump(&mut [c]);
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
        let l = c.conn.session(c.session).attach(config).unwrap();
        self.pump(&mut [c]);
        l
    }

    fn sender(&mut self, c: &mut Client, address: &str) -> LinkId {
        let l = c
            .conn
            .session(c.session)
            .attach(link("tx", Role::Sender, "tx", address))
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

/// The status code of the first CBS reply among the client's events.
fn token_status(c: &Client) -> Option<i32> {
    let reply = c.events.iter().find_map(|e| match e {
        Event::Delivery { link, payload, .. } if *link == c.cbs_rx => {
            Some(Message::decode_all(payload).unwrap())
        }
        _ => None,
    })?;
    let props = reply.application_properties.unwrap();
    Some(props.get("status-code").and_then(Value::as_i64).unwrap() as i32)
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
            .link(tx)
            .send(
                Bytes::from(vec![i]),
                0,
                Settlement::Unsettled,
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
        c.conn.link(rx).flow(100).unwrap();
        w.pump(&mut [&mut c]);
        let got: Vec<i64> = delivered(&c, rx).iter().map(sequence_number).collect();
        assert_eq!(got, expected, "{position:?}");
        c.conn.link(rx).close(None).unwrap();
        w.pump(&mut [&mut c]);
        // The handle is free for the next link: forget this one's events.
        c.events.clear();
    }
    // Offsets are strings of byte positions: starting after the second
    // event's offset gives the third event on.
    let rx = w.receiver(&mut c, "by-seq", 0, EventPosition::Earliest, None);
    c.conn.link(rx).flow(100).unwrap();
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
    c.conn.link(rx2).flow(100).unwrap();
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
    c.conn.link(rx3).flow(100).unwrap();
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

/// The broker's `poll_timeout` names every timer `handle_timeout` fires: a
/// runtime that sleeps from one to the next (no periodic tick) closes an
/// anonymous connection at its CBS deadline and detaches a link when its
/// token expires, each at its instant.
#[test]
fn poll_timeout_names_the_cbs_deadline_and_token_expiry() {
    // Jumps the clock to the broker's next timer and fires it.
    fn next_timer(w: &mut World, c: &mut Client) -> Instant {
        let t = w.broker.poll_timeout().expect("a timer");
        w.elapsed = t - w.start;
        let now = w.now();
        w.broker.handle_timeout(now);
        w.pump(&mut [c]);
        t
    }

    let mut w = World::new();
    let mut c = w.client();
    let deadline =
        w.now().instant + Duration::from_millis(w.broker.config().cbs_deadline_ms as u64);
    let closed = |c: &Client| {
        c.events.iter().any(
            |e| matches!(e, Event::Closed(Some(err)) if err.condition == "amqp:unauthorized-access"),
        )
    };
    let mut at = w.now().instant;
    while !closed(&c) {
        assert!(at < deadline, "not closed at its deadline");
        at = next_timer(&mut w, &mut c);
    }
    assert_eq!(at, deadline, "closed at the CBS deadline, not on a tick");

    let mut w = World::new();
    let mut c = w.client();
    let audience = "amqps://localhost/eh1/ConsumerGroups/$Default/Partitions/0";
    w.request_token_valid_for(&mut c, audience, "SAS_KEY_VALUE", 120);
    assert_eq!(token_status(&c), Some(202));
    let expiry = w.now().instant + Duration::from_secs(120);
    let rx = w.receiver(&mut c, "rx", 0, EventPosition::Earliest, None);
    assert!(detach_error(&c, rx).is_none());
    let mut at = w.now().instant;
    while detach_error(&c, rx).is_none() {
        assert!(at < expiry, "the link outlived its token");
        at = next_timer(&mut w, &mut c);
    }
    assert_eq!(at, expiry, "detached when the token expired, not on a tick");
    assert_eq!(
        detach_error(&c, rx).map(|e| e.condition.as_str().to_owned()),
        Some("amqp:unauthorized-access".to_owned())
    );
}

// ---- fault injection ------------------------------------------------------

/// Sends one unsettled event on `tx`; returns its delivery id.
fn send(c: &mut Client, tx: LinkId, body: &[u8]) -> u32 {
    c.conn
        .link(tx)
        .send(
            Bytes::copy_from_slice(body),
            0,
            Settlement::Unsettled,
            Message::with_data(body.to_vec()).to_bytes(),
        )
        .unwrap()
}

/// The outcomes the broker settled on `link`, in order.
fn outcomes(c: &Client, link: LinkId) -> Vec<(u32, DeliveryState)> {
    c.events
        .iter()
        .filter_map(|e| match e {
            Event::Disposition {
                link: l,
                delivery_id,
                state: Some(s),
                ..
            } if *l == link => Some((*delivery_id, s.clone())),
            _ => None,
        })
        .collect()
}

fn condition(state: &DeliveryState) -> Option<String> {
    match state {
        DeliveryState::Rejected(r) => r.error.as_ref().map(|e| e.condition.to_string()),
        _ => None,
    }
}

fn authorized_client(w: &mut World) -> Client {
    let mut c = w.client();
    assert_eq!(
        w.put_token(&mut c, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
        202
    );
    c
}

fn amqp_error(condition: &'static str) -> AmqpError {
    AmqpError::new(Symbol::from_static(condition), "injected")
}

#[test]
fn detach_links_detaches_the_selected_links_with_the_error_and_forgets_them() {
    let mut w = World::new();
    let mut c = authorized_client(&mut w);
    let to_hub = w.sender(&mut c, "eh1");
    let to_p0 = c
        .conn
        .session(c.session)
        .attach(link("tx-p0", Role::Sender, "tx-p0", "eh1/Partitions/0"))
        .unwrap();
    w.pump(&mut [&mut c]);
    let rx0 = w.receiver(&mut c, "rx0", 0, EventPosition::Earliest, None);
    let rx1 = w.receiver(&mut c, "rx1", 1, EventPosition::Earliest, Some(5));
    c.events.clear();

    let now = w.now();
    let n = w.broker.detach_links(
        now,
        LinkSelector::Entity("EH1/ConsumerGroups/$Default/Partitions/1".into()),
        amqp_error("amqp:link:stolen"),
    );
    w.pump(&mut [&mut c]);
    assert_eq!(n, 1);
    assert_eq!(detach_error(&c, rx1).unwrap().condition, "amqp:link:stolen");
    assert!(detach_error(&c, rx0).is_none());
    // The epoch-5 receiver is forgotten: a lower epoch may now attach
    // (on the handle just freed: forget its events first).
    c.events.clear();
    let again = w.receiver(&mut c, "rx1-again", 1, EventPosition::Earliest, Some(0));
    assert!(detach_error(&c, again).is_none(), "{:?}", c.events);

    c.events.clear();
    let now = w.now();
    let n = w.broker.detach_links(
        now,
        LinkSelector::Senders,
        amqp_error("com.microsoft:server-busy"),
    );
    w.pump(&mut [&mut c]);
    assert_eq!(n, 2);
    for l in [to_hub, to_p0] {
        assert_eq!(
            detach_error(&c, l).unwrap().condition,
            "com.microsoft:server-busy"
        );
    }
    assert!(detach_error(&c, rx0).is_none());

    c.events.clear();
    let now = w.now();
    let n = w.broker.detach_links(
        now,
        LinkSelector::All,
        amqp_error("amqp:link:detach-forced"),
    );
    w.pump(&mut [&mut c]);
    assert_eq!(n, 2, "rx0 and rx1-again; never $cbs");
    assert_eq!(
        detach_error(&c, rx0).unwrap().condition,
        "amqp:link:detach-forced"
    );
    assert_eq!(w.broker.stats().links_detached, 5);
    let now = w.now();
    assert_eq!(
        w.broker.detach_links(
            now,
            LinkSelector::All,
            amqp_error("amqp:link:detach-forced")
        ),
        0
    );
    // $cbs still answers.
    assert_eq!(
        w.put_token(&mut c, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
        202
    );
}

#[test]
fn throttled_sends_are_rejected_with_server_busy_not_appended_and_the_link_stays() {
    let mut w = World::new();
    let mut c = authorized_client(&mut w);
    let tx = w.sender(&mut c, "eh1/Partitions/0");
    w.broker.throttle_sends(2);
    let ids: Vec<u32> = (0..3u8).map(|i| send(&mut c, tx, &[i])).collect();
    w.pump(&mut [&mut c]);
    let got = outcomes(&c, tx);
    assert_eq!(got.len(), 3, "{got:?}");
    for (i, (id, state)) in got.iter().enumerate() {
        assert_eq!(*id, ids[i]);
        if i < 2 {
            assert_eq!(
                condition(state).as_deref(),
                Some("com.microsoft:server-busy")
            );
            let DeliveryState::Rejected(r) = state else {
                unreachable!()
            };
            let text = r.error.as_ref().unwrap().description.as_deref().unwrap();
            assert!(text.contains("being throttled"), "{text}");
        } else {
            assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
        }
    }
    assert!(detach_error(&c, tx).is_none());
    assert_eq!(w.broker.stats().throttled, 2);
    assert_eq!(w.broker.stats().events_in, 1);
    let rx = w.receiver(&mut c, "rx", 0, EventPosition::Earliest, None);
    c.conn.link(rx).flow(10).unwrap();
    w.pump(&mut [&mut c]);
    let events = delivered(&c, rx);
    assert_eq!(events.len(), 1);
    assert_eq!(sequence_number(&events[0]), 0);
    assert_eq!(events[0].body, Body::Data(vec![Bytes::from_static(&[2])]));
}

#[test]
fn a_response_delay_holds_outcomes_and_replies_until_the_virtual_clock_reaches_them() {
    let mut w = World::new();
    let mut c = authorized_client(&mut w);
    let tx = w.sender(&mut c, "eh1/Partitions/0");
    let rx = w.receiver(&mut c, "rx", 0, EventPosition::Earliest, None);
    c.conn.link(rx).flow(10).unwrap();
    w.pump(&mut [&mut c]);
    let delay = Duration::from_millis(500);
    w.broker.set_response_delay(delay);
    let sent_at = w.now();
    send(&mut c, tx, b"a");
    w.pump(&mut [&mut c]);
    assert!(outcomes(&c, tx).is_empty(), "the outcome is held");
    assert_eq!(delivered(&c, rx).len(), 1, "but the event is appended");
    assert_eq!(w.broker.poll_timeout(), Some(sent_at.instant + delay));

    // A CBS reply is held behind it, in order.
    w.elapsed += Duration::from_millis(100);
    c.events.clear();
    w.request_token(&mut c, "amqps://localhost/eh1", "SAS_KEY_VALUE");
    assert_eq!(token_status(&c), None);

    w.elapsed = Duration::from_millis(499);
    let now = w.now();
    w.broker.handle_timeout(now);
    w.pump(&mut [&mut c]);
    assert!(outcomes(&c, tx).is_empty());
    w.elapsed = Duration::from_millis(500);
    let now = w.now();
    w.broker.handle_timeout(now);
    w.pump(&mut [&mut c]);
    let got = outcomes(&c, tx);
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0].1, DeliveryState::Accepted(_)));
    assert_eq!(token_status(&c), None, "the reply is due at 600 ms");
    w.elapsed = Duration::from_millis(600);
    let now = w.now();
    w.broker.handle_timeout(now);
    w.pump(&mut [&mut c]);
    assert_eq!(token_status(&c), Some(202));
    assert_eq!(w.broker.poll_timeout().map(|t| t > now.instant), Some(true));

    // Back to zero: outcomes go out at once again.
    w.broker.set_response_delay(Duration::ZERO);
    c.events.clear();
    send(&mut c, tx, b"b");
    w.pump(&mut [&mut c]);
    assert_eq!(outcomes(&c, tx).len(), 1);
}

#[test]
fn an_event_whose_outcome_is_held_survives_the_connection_dropping() {
    let mut w = World::new();
    let mut c = authorized_client(&mut w);
    let tx = w.sender(&mut c, "eh1/Partitions/1");
    w.broker.set_response_delay(Duration::from_secs(5));
    send(&mut c, tx, b"kept");
    w.pump(&mut [&mut c]);
    assert!(outcomes(&c, tx).is_empty());
    w.broker.disconnect(c.id);
    w.broker.set_response_delay(Duration::ZERO);
    w.elapsed += Duration::from_secs(5);
    let now = w.now();
    w.broker.handle_timeout(now);
    assert_eq!(w.broker.poll_timeout(), None, "nothing held any more");
    let mut other = authorized_client(&mut w);
    let rx = w.receiver(&mut other, "rx", 1, EventPosition::Earliest, None);
    other.conn.link(rx).flow(10).unwrap();
    w.pump(&mut [&mut other]);
    let events = delivered(&other, rx);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].body,
        Body::Data(vec![Bytes::from_static(b"kept")])
    );
}

#[test]
fn close_connection_closes_with_the_condition_and_forgets_the_links() {
    let mut w = World::new();
    let mut a = authorized_client(&mut w);
    let mut b = authorized_client(&mut w);
    let owner = w.receiver(&mut a, "owner", 0, EventPosition::Latest, Some(7));
    assert!(detach_error(&a, owner).is_none());
    let now = w.now();
    w.broker
        .close_connection(a.id, now, Some(amqp_error("amqp:connection:forced")));
    w.pump(&mut [&mut a]);
    assert!(
        a.events.iter().any(
            |e| matches!(e, Event::Closed(Some(err)) if err.condition == "amqp:connection:forced")
        ),
        "{:?}",
        a.events
    );
    assert!(w.broker.is_closed(a.id), "the client answered the close");
    // Its epoch receiver no longer holds the partition.
    let lower = w.receiver(&mut b, "lower", 0, EventPosition::Latest, Some(1));
    assert!(detach_error(&b, lower).is_none(), "{:?}", b.events);
}

// ---- appended events out, and back in ------------------------------------

#[test]
fn appended_events_are_handed_out_and_a_new_broker_restores_them() {
    let mut w = World::new();
    w.broker.record_appends(true);
    let mut c = authorized_client(&mut w);
    let tx = w.sender(&mut c, "eh1/Partitions/1");
    for i in 0..3u8 {
        w.elapsed += Duration::from_millis(10);
        send(&mut c, tx, &[i; 5]);
        w.pump(&mut [&mut c]);
    }
    let out = w.broker.take_appended();
    assert!(w.broker.take_appended().is_empty(), "taken once");
    assert_eq!(
        out.iter()
            .map(|a| (a.hub.as_str(), a.partition.as_str(), a.sequence_number))
            .collect::<Vec<_>>(),
        [("eh1", "1", 0), ("eh1", "1", 1), ("eh1", "1", 2)]
    );
    assert_eq!(out[1].offset, out[0].encoded.len() as u64);
    assert_eq!(out[2].enqueued_ms, T0_MS + 30);

    // A later broker takes them back and continues the numbering.
    let mut w2 = World::new();
    w2.elapsed = w.elapsed;
    let now = w2.now();
    assert_eq!(w2.broker.restore(now, out.clone()), Ok(3));
    let mut c2 = authorized_client(&mut w2);
    let tx2 = w2.sender(&mut c2, "eh1/Partitions/1");
    send(&mut c2, tx2, b"new");
    w2.pump(&mut [&mut c2]);
    let rx = w2.receiver(&mut c2, "rx", 1, EventPosition::Earliest, None);
    c2.conn.link(rx).flow(10).unwrap();
    w2.pump(&mut [&mut c2]);
    let got = delivered(&c2, rx);
    assert_eq!(
        got.iter().map(sequence_number).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let offset = |m: &Message| {
        m.message_annotations
            .as_ref()
            .unwrap()
            .get("x-opt-offset")
            .cloned()
            .unwrap()
    };
    assert_eq!(
        offset(&got[2]),
        Value::String(out[2].offset.to_string().into())
    );
    let next = out[2].offset + out[2].encoded.len() as u64;
    assert_eq!(offset(&got[3]), Value::String(next.to_string().into()));

    // Out of order, unknown partitions and bad bytes are refused.
    let mut w3 = World::new();
    let now = w3.now();
    let mut gap = out.clone();
    gap.remove(1);
    assert!(matches!(
        w3.broker.restore(now, gap),
        Err(eventhubs_emulator::RestoreError::OutOfOrder {
            sequence_number: 2,
            ..
        })
    ));
    let mut w4 = World::new();
    let now = w4.now();
    let mut bad = out[0].clone();
    bad.partition = "7".into();
    assert!(w4.broker.restore(now, [bad]).is_err());
    let mut bad = out[0].clone();
    bad.encoded = Bytes::from_static(b"\x00\x53");
    assert!(matches!(
        w4.broker.restore(now, [bad]),
        Err(eventhubs_emulator::RestoreError::Undecodable { .. })
    ));
}

#[test]
fn restored_events_past_retention_are_dropped_but_keep_their_numbers() {
    let mut w = World::new();
    w.broker.record_appends(true);
    let mut c = authorized_client(&mut w);
    let tx = w.sender(&mut c, "eh1/Partitions/0");
    send(&mut c, tx, b"old");
    w.pump(&mut [&mut c]);
    let out = w.broker.take_appended();
    let mut w2 = World::new();
    w2.elapsed = Duration::from_millis(w2.broker.config().retention_ms as u64 + 1);
    let now = w2.now();
    assert_eq!(w2.broker.restore(now, out), Ok(0));
    let mut c2 = authorized_client(&mut w2);
    let tx2 = w2.sender(&mut c2, "eh1/Partitions/0");
    send(&mut c2, tx2, b"new");
    w2.pump(&mut [&mut c2]);
    let rx = w2.receiver(&mut c2, "rx", 0, EventPosition::Earliest, None);
    c2.conn.link(rx).flow(10).unwrap();
    w2.pump(&mut [&mut c2]);
    assert_eq!(
        delivered(&c2, rx)
            .iter()
            .map(sequence_number)
            .collect::<Vec<_>>(),
        [1]
    );
}

#[test]
fn a_partition_keeps_at_most_max_partition_bytes_dropping_the_oldest_events() {
    // Each event below is stored at the same size; room for three and a
    // half of them.
    let body = [7u8; 100];
    let one = Message::with_data(body.to_vec()).to_bytes().len() as u64;
    let send = |c: &mut Client, tx: LinkId, i: u8| {
        let m = Message::with_data(body.to_vec()).to_bytes();
        c.conn
            .link(tx)
            .send(Bytes::from(vec![i]), 0, Settlement::Unsettled, m)
            .unwrap();
    };
    let per_event = {
        let mut w = World::new();
        let mut c = authorized_client(&mut w);
        let tx = w.sender(&mut c, "eh1/Partitions/0");
        send(&mut c, tx, 0);
        w.pump(&mut [&mut c]);
        let rx = w.receiver(&mut c, "rx", 0, EventPosition::Earliest, None);
        c.conn.link(rx).flow(10).unwrap();
        w.pump(&mut [&mut c]);
        delivered(&c, rx)[0].to_bytes().len() as u64
    };
    assert!(
        per_event > one,
        "system annotations are stored with the event"
    );
    let mut w = World::with_config(EmulatorConfig {
        max_partition_bytes: 3 * per_event + per_event / 2,
        ..EmulatorConfig::default()
    });
    let mut c = authorized_client(&mut w);
    let tx = w.sender(&mut c, "eh1/Partitions/0");
    for i in 0..6 {
        send(&mut c, tx, i);
        w.pump(&mut [&mut c]);
    }
    let rx = w.receiver(&mut c, "rx", 0, EventPosition::Earliest, None);
    c.conn.link(rx).flow(10).unwrap();
    w.pump(&mut [&mut c]);
    assert_eq!(
        delivered(&c, rx)
            .iter()
            .map(sequence_number)
            .collect::<Vec<_>>(),
        [3, 4, 5],
        "the three newest events fit; numbering goes on"
    );
}

// ---- logs -------------------------------------------------------------------

/// Everything logged, as text.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

#[test]
fn logs_name_tokens_links_and_conditions_but_never_a_secret() {
    // tracing caches per callsite whether anyone listens: the other tests
    // of this binary, on other threads without a subscriber, hit the same
    // callsites and now and then leave this thread's events unrecorded. The
    // test runs alone in a child process of this binary instead.
    const CHILD: &str = "EVENTHUBS_MODEL_LOG_TEST_CHILD";
    const NAME: &str = "logs_name_tokens_links_and_conditions_but_never_a_secret";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("run this test alone");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let log = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(log.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut w = World::new();
        let mut c = w.client();
        assert_eq!(
            w.put_token(&mut c, "amqps://localhost/eh1", "WRONG_KEY"),
            401
        );
        assert_eq!(
            w.put_token(&mut c, "amqps://localhost/eh1", "SAS_KEY_VALUE"),
            202
        );
        let rx = w.receiver(&mut c, "rx", 1, EventPosition::Earliest, Some(3));
        let now = w.now();
        w.broker.detach_links(
            now,
            LinkSelector::Receivers,
            amqp_error("amqp:link:detach-forced"),
        );
        w.pump(&mut [&mut c]);
        assert!(detach_error(&c, rx).is_some());
        let mut plain = w.client_with(SaslMechanism::Plain {
            username: "RootManageSharedAccessKey".into(),
            password: "SAS_KEY_VALUE".into(),
        });
        w.sender(&mut plain, "eh1/Partitions/0");
    });
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "put-token refused",
        "status=401",
        "put-token accepted",
        "audience=amqps://localhost/eh1",
        "link attached",
        "role=receiver entity=eh1/consumergroups/$default/partitions/1",
        "epoch=3",
        "fault: link detached",
        "amqp:link:detach-forced",
        "mechanism=PLAIN user=RootManageSharedAccessKey",
        "role=sender entity=eh1/partitions/0",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    for secret in [
        "SAS_KEY_VALUE",
        "WRONG_KEY",
        "SharedAccessSignature",
        "sig=",
    ] {
        assert!(!text.contains(secret), "{secret:?} logged:\n{text}");
    }
}

#[test]
fn held_outcomes_are_bounded_the_oldest_go_out_early() {
    let mut w = World::new();
    let mut c = authorized_client(&mut w);
    let tx = w.sender(&mut c, "eh1/Partitions/0");
    w.broker.set_response_delay(Duration::from_secs(3600));
    // 2^16 outcomes may wait; past that the oldest are sent at once.
    let extra = 10;
    let total = (1 << 16) + extra;
    let mut ids = Vec::new();
    while ids.len() < total {
        while ids.len() < total && c.conn.credit(tx) > 0 {
            ids.push(send(&mut c, tx, b"x"));
        }
        w.pump(&mut [&mut c]);
    }
    let early: Vec<u32> = outcomes(&c, tx).iter().map(|o| o.0).collect();
    assert_eq!(early, ids[..extra], "only the overflow, oldest first");
    assert_eq!(w.broker.stats().events_in, total as u64);
    c.events.clear();
    w.elapsed += Duration::from_secs(3600);
    let now = w.now();
    w.broker.handle_timeout(now);
    w.pump(&mut [&mut c]);
    assert_eq!(outcomes(&c, tx).len(), 1 << 16, "the rest when due");
}

/// The connection properties of Microsoft's Rust SDK
/// (`azure_messaging_eventhubs` 0.16), as its `open` carries them.
fn ms_rust_sdk_properties() -> Fields {
    let mut p: Fields = Map::new();
    for (k, v) in [
        (
            "user-agent",
            "azsdk-rust-messaging_eventhubs/0.16.0 (1.95.0; linux; x86_64)",
        ),
        ("version", "0.16.0"),
        ("platform", "linux"),
        ("product", "azure_messaging_eventhubs"),
    ] {
        p.insert(Symbol::from_static(k), Value::String(v.into()));
    }
    p
}

fn ms_rust_sdk_client(w: &mut World) -> Client {
    let mut c = ConnectionConfig::new(Side::Client, "ff319d72-5b2b-4ee0-989a-7255c438246a");
    c.sasl = SaslConfig::Client(vec![SaslMechanism::Anonymous]);
    c.properties = Some(ms_rust_sdk_properties());
    w.client_from(c)
}

/// Moves the virtual clock on by `by`, fires the broker's timers, moves bytes.
fn advance(w: &mut World, c: &mut Client, by: Duration) {
    w.elapsed += by;
    let now = w.now();
    w.broker.handle_timeout(now);
    w.pump(&mut [c]);
}

/// Microsoft's Rust SDK (on fe2o3-amqp) records a delivery as unsettled
/// only after handing its transfer to another task, and drops a settled
/// disposition processed before that: an outcome sent at once can be lost
/// and the send then waits forever. Its outcomes are held; others' are not.
#[test]
fn outcomes_for_microsofts_rust_sdk_are_held_so_that_it_cannot_lose_them() {
    let mut w = World::new();
    let mut other = authorized_client(&mut w);
    let other_tx = w.sender(&mut other, "eh1/Partitions/0");
    let rx = w.receiver(&mut other, "rx", 0, EventPosition::Earliest, None);
    other.conn.link(rx).flow(10).unwrap();
    w.pump(&mut [&mut other]);

    let mut sdk = ms_rust_sdk_client(&mut w);
    // The put-token request waits for its outcome too: held; the reply is not.
    w.request_token(&mut sdk, "amqps://localhost/eh1", "SAS_KEY_VALUE");
    assert_eq!(token_status(&sdk), Some(202));
    assert!(
        outcomes(&sdk, sdk.cbs_tx).is_empty(),
        "put-token outcome held"
    );
    advance(&mut w, &mut sdk, LATE_OUTCOME_DELAY);
    assert_eq!(outcomes(&sdk, sdk.cbs_tx).len(), 1);

    let tx = w.sender(&mut sdk, "eh1/Partitions/0");
    let sent_at = w.now();
    sdk.events.clear();
    let id = send(&mut sdk, tx, b"sdk");
    w.pump(&mut [&mut sdk, &mut other]);
    assert!(outcomes(&sdk, tx).is_empty(), "the outcome is held");
    assert_eq!(delivered(&other, rx).len(), 1, "but the event is appended");
    assert_eq!(
        w.broker.poll_timeout(),
        Some(sent_at.instant + LATE_OUTCOME_DELAY)
    );

    // Meanwhile another client's outcome goes out at once.
    send(&mut other, other_tx, b"other");
    w.pump(&mut [&mut other]);
    assert_eq!(outcomes(&other, other_tx).len(), 1);

    advance(
        &mut w,
        &mut sdk,
        LATE_OUTCOME_DELAY - Duration::from_millis(1),
    );
    assert!(outcomes(&sdk, tx).is_empty());
    advance(&mut w, &mut sdk, Duration::from_millis(1));
    let got = outcomes(&sdk, tx);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, id);
    assert!(matches!(got[0].1, DeliveryState::Accepted(_)));
    assert_eq!(
        w.broker.poll_timeout().map(|t| t > w.now().instant),
        Some(true)
    );

    // A session that ends before its outcome is due gets none, and the
    // session that takes its channel next (its delivery ids start again at
    // 0) is not settled by the old session's outcomes.
    send(&mut sdk, tx, b"in flight");
    w.pump(&mut [&mut sdk]);
    sdk.conn.session(sdk.session).end(None).unwrap();
    w.pump(&mut [&mut sdk]);
    let session = sdk.conn.begin_session(SessionConfig::default()).unwrap();
    w.pump(&mut [&mut sdk]);
    let tx = sdk
        .conn
        .session(session)
        .attach(link("tx2", Role::Sender, "tx2", "eh1/Partitions/0"))
        .unwrap();
    w.pump(&mut [&mut sdk]);
    advance(&mut w, &mut sdk, LATE_OUTCOME_DELAY / 2);
    sdk.events.clear();
    let ids: Vec<u32> = (0..4).map(|_| send(&mut sdk, tx, b"new session")).collect();
    w.pump(&mut [&mut sdk]);
    advance(&mut w, &mut sdk, LATE_OUTCOME_DELAY / 2);
    assert!(
        outcomes(&sdk, tx).is_empty(),
        "an outcome of the ended session settled one of the new session's deliveries: {:?}",
        outcomes(&sdk, tx)
    );
    advance(&mut w, &mut sdk, LATE_OUTCOME_DELAY / 2);
    assert_eq!(
        outcomes(&sdk, tx).iter().map(|o| o.0).collect::<Vec<_>>(),
        ids
    );
}

// ---- idempotent publishing ---------------------------------------------

mod idempotent {
    use super::*;
    use eventhubs_emulator::ProducerState;
    use eventhubs_proto::client::idempotent::{
        IDEMPOTENT_PRODUCER_CAPABILITY, PRODUCER_EPOCH, PRODUCER_ID, PRODUCER_SEQUENCE_NUMBER,
    };
    use eventhubs_proto::codec::message::{Batch, BATCH_MESSAGE_FORMAT};
    use eventhubs_proto::codec::messaging::{AnnotationKey, Annotations};

    /// The three producer properties (`None` as null).
    fn props(id: Option<i64>, epoch: Option<i16>, seq: Option<i32>) -> Fields {
        let mut p: Fields = Map::new();
        p.insert(
            Symbol::from_static(PRODUCER_ID),
            id.map_or(Value::Null, Value::Long),
        );
        p.insert(
            Symbol::from_static(PRODUCER_EPOCH),
            epoch.map_or(Value::Null, Value::Short),
        );
        p.insert(
            Symbol::from_static(PRODUCER_SEQUENCE_NUMBER),
            seq.map_or(Value::Null, Value::Int),
        );
        p
    }

    /// An idempotent sender to `address`: its link, and the broker's
    /// producer properties `(id, epoch, last)` or its refusal.
    fn attach(
        w: &mut World,
        c: &mut Client,
        name: &str,
        address: &str,
        properties: Option<Fields>,
    ) -> (LinkId, Result<(i64, i16, i32), AmqpError>) {
        let mut config = link(name, Role::Sender, name, address);
        config.desired_capabilities = vec![Symbol::from_static(IDEMPOTENT_PRODUCER_CAPABILITY)];
        config.properties = properties;
        // Link handles are reused: only this attach's events count.
        c.events.clear();
        let l = c.conn.session(c.session).attach(config).unwrap();
        w.pump(&mut [c]);
        let reply = c.events.iter().find_map(|e| match e {
            Event::LinkAttached { link, attach, .. } if *link == l => Some(attach.clone()),
            _ => None,
        });
        let reply = reply.expect("an attach");
        if reply.target.is_none() {
            return (l, Err(detach_error(c, l).expect("a refusal")));
        }
        assert!(reply
            .offered_capabilities
            .iter()
            .any(|s| s.as_str() == IDEMPOTENT_PRODUCER_CAPABILITY));
        let p = reply.properties.expect("producer properties");
        let id = match p.get(PRODUCER_ID) {
            Some(Value::Long(v)) => *v,
            other => panic!("producer id {other:?}"),
        };
        let epoch = match p.get(PRODUCER_EPOCH) {
            Some(Value::Short(v)) => *v,
            other => panic!("producer epoch {other:?}"),
        };
        let last = match p.get(PRODUCER_SEQUENCE_NUMBER) {
            Some(Value::Int(v)) => *v,
            other => panic!("producer sequence number {other:?}"),
        };
        (l, Ok((id, epoch, last)))
    }

    fn stamped(n: u8, id: i64, epoch: i16, seq: i32) -> Message {
        let mut a = Annotations::new();
        a.insert(AnnotationKey::from(PRODUCER_ID), Value::Long(id));
        a.insert(AnnotationKey::from(PRODUCER_EPOCH), Value::Short(epoch));
        a.insert(
            AnnotationKey::from(PRODUCER_SEQUENCE_NUMBER),
            Value::Int(seq),
        );
        Message {
            message_annotations: Some(a),
            ..Message::with_data(vec![n; 4])
        }
    }

    /// Sends `events` (a batch when more than one) and returns the outcome.
    fn publish(w: &mut World, c: &mut Client, tx: LinkId, events: &[Message]) -> DeliveryState {
        let (format, payload) = match events {
            [one] => (0, one.to_bytes()),
            many => {
                let envelope = Message {
                    message_annotations: many[0].message_annotations.clone(),
                    ..Message::default()
                };
                let b = Batch {
                    envelope: &envelope,
                    events: many,
                };
                (BATCH_MESSAGE_FORMAT, b.to_bytes())
            }
        };
        let tag = Bytes::from(format!("t{}", c.events.len()));
        let id = c
            .conn
            .link(tx)
            .send(tag, format, Settlement::Unsettled, payload)
            .unwrap();
        w.pump(&mut [c]);
        outcomes(c, tx)
            .into_iter()
            .find(|(d, _)| *d == id)
            .map(|(_, s)| s)
            .expect("an outcome")
    }

    fn bodies(w: &mut World, c: &mut Client, name: &str, partition: u32) -> Vec<u8> {
        let rx = w.receiver(c, name, partition, EventPosition::Earliest, None);
        c.conn.link(rx).flow(100).unwrap();
        w.pump(&mut [c]);
        delivered(c, rx)
            .iter()
            .map(|m| match &m.body {
                Body::Data(d) => d[0][0],
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn accepted(s: &DeliveryState) -> bool {
        matches!(s, DeliveryState::Accepted(_))
    }

    #[test]
    fn a_duplicate_is_acknowledged_once_appended_once_and_a_gap_is_refused() {
        let mut w = World::new();
        let mut c = authorized_client(&mut w);
        let (tx, granted) = attach(&mut w, &mut c, "idem", "eh1/Partitions/0", None);
        let (id, epoch, last) = granted.unwrap();
        assert_eq!((epoch, last), (0, -1), "a new group starts at nothing");
        let first: Vec<Message> = (0..3).map(|i| stamped(i as u8, id, epoch, i)).collect();
        assert!(accepted(&publish(&mut w, &mut c, tx, &first)));
        // The acknowledgement was lost: the same transfer again.
        assert!(accepted(&publish(&mut w, &mut c, tx, &first)));
        assert!(accepted(&publish(&mut w, &mut c, tx, &first[2..])));
        assert_eq!(w.broker.stats().events_in, 3);
        assert_eq!(w.broker.stats().duplicates, 4);
        // A gap: 5 after 2.
        let gap = publish(&mut w, &mut c, tx, &[stamped(9, id, epoch, 5)]);
        assert_eq!(
            condition(&gap).as_deref(),
            Some("com.microsoft:out-of-order-sequence"),
            "{gap:?}"
        );
        assert!(accepted(&publish(
            &mut w,
            &mut c,
            tx,
            &[stamped(3, id, epoch, 3)]
        )));
        assert_eq!(bodies(&mut w, &mut c, "rx", 0), [0, 1, 2, 3]);

        // Another group on the same partition numbers on its own.
        let (tx2, g2) = attach(&mut w, &mut c, "idem2", "eh1/Partitions/0", None);
        let (id2, _, last2) = g2.unwrap();
        assert_ne!(id2, id);
        assert_eq!(last2, -1);
        assert!(accepted(&publish(
            &mut w,
            &mut c,
            tx2,
            &[stamped(7, id2, 0, 0)]
        )));
        // A group reattaching reads its last number.
        let (_, again) = attach(
            &mut w,
            &mut c,
            "idem3",
            "eh1/Partitions/0",
            Some(props(Some(id), None, None)),
        );
        assert_eq!(again.unwrap(), (id, 0, 3));
    }

    #[test]
    fn a_higher_producer_epoch_takes_over_and_a_lower_one_is_refused() {
        let mut w = World::new();
        let mut c = authorized_client(&mut w);
        let (old, g) = attach(
            &mut w,
            &mut c,
            "old",
            "eh1/Partitions/1",
            Some(props(Some(77), Some(1), None)),
        );
        assert_eq!(g.unwrap(), (77, 1, -1));
        assert!(accepted(&publish(
            &mut w,
            &mut c,
            old,
            &[stamped(0, 77, 1, 0)]
        )));
        let (new, g) = attach(
            &mut w,
            &mut c,
            "new",
            "eh1/Partitions/1",
            Some(props(Some(77), Some(2), None)),
        );
        assert_eq!(g.unwrap(), (77, 2, 0), "the group's numbering goes on");
        let stolen = publish(&mut w, &mut c, old, &[stamped(1, 77, 1, 1)]);
        assert_eq!(
            condition(&stolen).as_deref(),
            Some("com.microsoft:producer-epoch-stolen")
        );
        assert!(accepted(&publish(
            &mut w,
            &mut c,
            new,
            &[stamped(1, 77, 2, 1)]
        )));
        let (_, refused) = attach(
            &mut w,
            &mut c,
            "older",
            "eh1/Partitions/1",
            Some(props(Some(77), Some(1), None)),
        );
        assert_eq!(
            refused.unwrap_err().condition.as_str(),
            "com.microsoft:producer-epoch-stolen"
        );
        // The same level shares the partition.
        let (same, g) = attach(
            &mut w,
            &mut c,
            "same",
            "eh1/Partitions/1",
            Some(props(Some(77), Some(2), None)),
        );
        assert_eq!(g.unwrap(), (77, 2, 1));
        assert!(accepted(&publish(
            &mut w,
            &mut c,
            same,
            &[stamped(2, 77, 2, 2)]
        )));
        assert_eq!(bodies(&mut w, &mut c, "rx", 1), [0, 1, 2]);
    }

    #[test]
    fn some_but_not_all_properties_and_gateway_links_are_refused() {
        let mut w = World::new();
        let mut c = authorized_client(&mut w);
        let mut two = props(Some(5), Some(0), None);
        two.remove(PRODUCER_SEQUENCE_NUMBER);
        let (_, r) = attach(&mut w, &mut c, "two", "eh1/Partitions/0", Some(two));
        let e = r.unwrap_err();
        assert_eq!(e.condition.as_str(), "com.microsoft:argument-error");
        assert!(e.description.unwrap().contains("none of them"));
        let (_, r) = attach(&mut w, &mut c, "gw", "eh1", None);
        let e = r.unwrap_err();
        assert!(
            e.description
                .as_deref()
                .unwrap_or("")
                .contains("needs a partition"),
            "{e:?}"
        );
        // An event without the annotations on an idempotent link.
        let (tx, g) = attach(&mut w, &mut c, "ok", "eh1/Partitions/0", None);
        g.unwrap();
        let bare = publish(&mut w, &mut c, tx, &[Message::with_data(vec![1u8])]);
        assert_eq!(
            condition(&bare).as_deref(),
            Some("com.microsoft:argument-error")
        );
        assert_eq!(w.broker.stats().events_in, 0);
    }

    #[test]
    fn the_producer_table_survives_a_restart_and_catches_up_from_the_events() {
        let mut w = World::new();
        w.broker.record_appends(true);
        let mut c = authorized_client(&mut w);
        let (tx, g) = attach(&mut w, &mut c, "idem", "eh1/Partitions/0", None);
        let (id, epoch, _) = g.unwrap();
        let mut events = w.broker.take_appended();
        let after_attach: ProducerState = w.broker.take_producer_state().expect("a new group");
        assert!(w.broker.take_producer_state().is_none(), "taken once");
        assert!(accepted(&publish(
            &mut w,
            &mut c,
            tx,
            &[stamped(0, id, epoch, 0)]
        )));
        assert!(accepted(&publish(
            &mut w,
            &mut c,
            tx,
            &[stamped(1, id, epoch, 1)]
        )));
        events.extend(w.broker.take_appended());
        let current = w.broker.take_producer_state().expect("advanced");
        assert_eq!(current.producers[0].last_sequence_number, 1);

        // Restart from the current table, and from the one taken before the
        // events (a crash between the segments and the table): both know 1.
        for state in [current, after_attach] {
            let mut w2 = World::new();
            w2.elapsed = w.elapsed;
            w2.broker.restore_producer_state(state);
            let now = w2.now();
            assert_eq!(w2.broker.restore(now, events.clone()), Ok(2));
            let mut c2 = authorized_client(&mut w2);
            let (tx2, g2) = attach(
                &mut w2,
                &mut c2,
                "again",
                "eh1/Partitions/0",
                Some(props(Some(id), Some(epoch), None)),
            );
            assert_eq!(g2.unwrap(), (id, epoch, 1));
            // The resend of an acknowledged event is a duplicate.
            assert!(accepted(&publish(
                &mut w2,
                &mut c2,
                tx2,
                &[stamped(1, id, epoch, 1)]
            )));
            assert!(accepted(&publish(
                &mut w2,
                &mut c2,
                tx2,
                &[stamped(2, id, epoch, 2)]
            )));
            assert_eq!(bodies(&mut w2, &mut c2, "rx", 0), [0, 1, 2]);
            // New groups get ids the old broker did not give.
            let (_, fresh) = attach(&mut w2, &mut c2, "fresh", "eh1/Partitions/0", None);
            assert!(fresh.unwrap().0 > id);
        }
    }

    #[test]
    fn keyed_events_sent_to_a_partition_keep_their_key() {
        let mut w = World::new();
        let mut c = authorized_client(&mut w);
        let tx = w.sender(&mut c, "eh1/Partitions/1");
        let mut m = Message::with_data(vec![5u8]);
        let mut a = Annotations::new();
        a.insert(
            AnnotationKey::from("x-opt-partition-key"),
            Value::String("device-7".into()),
        );
        m.message_annotations = Some(a);
        assert!(accepted(&publish(&mut w, &mut c, tx, &[m])));
        let rx = w.receiver(&mut c, "rx", 1, EventPosition::Earliest, None);
        c.conn.link(rx).flow(10).unwrap();
        w.pump(&mut [&mut c]);
        let got = delivered(&c, rx);
        assert_eq!(
            got[0]
                .message_annotations
                .as_ref()
                .unwrap()
                .get("x-opt-partition-key"),
            Some(&Value::String("device-7".into()))
        );
    }
}
