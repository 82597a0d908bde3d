//! The fault handles of the in-process `Emulator`, over real loopback TCP
//! with a client on the engine.

use std::time::{Duration, Instant};

use eventhubs_emulator::{Emulator, EmulatorConfig, LinkSelector};
use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::codec::{Decode, Encode, Symbol};
use eventhubs_proto::engine::{Event, LinkId};
use eventhubs_testkit::tcp::{emulator_plain, event, EngineClient as Client};

const WAIT: Duration = Duration::from_secs(10);

fn with_credit(c: &mut Client, link: LinkId) {
    let deadline = Instant::now() + WAIT;
    while c.conn.credit(link) == 0 {
        assert!(Instant::now() < deadline && !c.eof, "no credit");
        c.turn(Duration::from_millis(20));
    }
}

/// Waits for the outcome of delivery `id` on `link`.
fn outcome(c: &mut Client, link: LinkId, id: u32) -> DeliveryState {
    c.until(WAIT, |_, e| match e {
        Event::Disposition {
            link: l,
            delivery_id,
            state: Some(s),
            ..
        } if *l == link && *delivery_id == id => Some(s.clone()),
        _ => None,
    })
    .expect("an outcome")
}

fn rejected_with(state: &DeliveryState) -> Option<String> {
    match state {
        DeliveryState::Rejected(r) => r.error.as_ref().map(|e| e.condition.to_string()),
        _ => None,
    }
}

#[test]
fn throttled_sends_then_dropped_connections_over_tcp() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let tx = c.sender("eh1/Partitions/0").expect("sender");
    with_credit(&mut c, tx);

    emu.throttle_sends(2).unwrap();
    let ids: Vec<u32> = (0..3)
        .map(|i| c.send(tx, 0, event(i, 100).to_bytes()))
        .collect();
    let states: Vec<DeliveryState> = ids.iter().map(|id| outcome(&mut c, tx, *id)).collect();
    assert_eq!(
        rejected_with(&states[0]).as_deref(),
        Some("com.microsoft:server-busy")
    );
    assert_eq!(
        rejected_with(&states[1]).as_deref(),
        Some("com.microsoft:server-busy")
    );
    assert!(
        matches!(states[2], DeliveryState::Accepted(_)),
        "{:?}",
        states[2]
    );
    // The link stays: one more send is accepted.
    let id = c.send(tx, 0, event(3, 100).to_bytes());
    assert!(matches!(
        outcome(&mut c, tx, id),
        DeliveryState::Accepted(_)
    ));

    let mut other = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    assert_eq!(emu.drop_connections().unwrap(), 2);
    for client in [&mut c, &mut other] {
        let closed = client.until(WAIT, |_, e| {
            matches!(e, Event::Closed(_) | Event::Failed(_)).then_some(())
        });
        assert!(closed.is_none(), "no AMQP close, the socket just goes");
        assert!(client.eof, "the socket was closed");
    }

    // The emulator still serves, with what was accepted.
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("reconnect");
    let rx = c
        .receiver(
            "eh1/ConsumerGroups/$Default/Partitions/0",
            Some(eventhubs_proto::eventhubs::EventPosition::Earliest),
        )
        .expect("receiver");
    c.conn.link(rx).flow(10).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = c
            .until(WAIT, |_, e| match e {
                Event::Delivery { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .expect("an event");
        let m = eventhubs_proto::codec::message::Message::decode_all(&m).unwrap();
        got.push(eventhubs_testkit::tcp::event_number(&m).unwrap());
    }
    assert_eq!(got, [2, 3]);
}

#[test]
fn detached_links_closed_connections_and_delayed_outcomes_over_tcp() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let tx = c.sender("eh1").expect("sender");
    with_credit(&mut c, tx);

    emu.set_response_delay(Duration::from_millis(300)).unwrap();
    let sent = Instant::now();
    let id = c.send(tx, 0, event(0, 10).to_bytes());
    assert!(matches!(
        outcome(&mut c, tx, id),
        DeliveryState::Accepted(_)
    ));
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    emu.set_response_delay(Duration::ZERO).unwrap();

    let n = emu
        .detach_links(
            LinkSelector::Entity("eh1".into()),
            AmqpError::new(Symbol::from_static("amqp:link:detach-forced"), "test"),
        )
        .unwrap();
    assert_eq!(n, 1);
    let error = c
        .until(WAIT, |_, e| match e {
            Event::LinkDetached { link, error, .. } if *link == tx => Some(error.clone()),
            _ => None,
        })
        .expect("a detach");
    assert_eq!(error.unwrap().condition, "amqp:link:detach-forced");

    let n = emu
        .close_connections(Some(AmqpError::new(
            Symbol::from_static("amqp:connection:forced"),
            "test",
        )))
        .unwrap();
    assert_eq!(n, 1);
    let error = c
        .until(WAIT, |_, e| match e {
            Event::Closed(error) => Some(error.clone()),
            _ => None,
        })
        .expect("a close");
    assert_eq!(error.unwrap().condition, "amqp:connection:forced");
    c.flush();
}
