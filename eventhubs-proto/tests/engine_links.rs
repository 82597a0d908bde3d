//! Sessions, links, credit and deliveries in the deterministic pair.

use std::time::Duration;

use bytes::Bytes;
use eventhubs_proto::codec::frame::encode_amqp_frame;
use eventhubs_proto::codec::messaging::{Accepted, DeliveryState, Rejected, Source, Target};
use eventhubs_proto::codec::performatives::{
    AmqpError, Begin, Performative, Role, SenderSettleMode,
};
use eventhubs_proto::codec::Form;
use eventhubs_proto::engine::Settlement;
use eventhubs_proto::engine::{
    ConnectionConfig, ConnectionError, Event, LinkConfig, LinkId, SendError, SessionConfig,
};
use eventhubs_testkit::pair::*;

fn sender(name: &str, address: &str) -> LinkConfig {
    LinkConfig {
        name: name.into(),
        role: Role::Sender,
        source: Some(Source::with_address(name)),
        target: Some(Target::with_address(address)),
        ..Default::default()
    }
}

fn receiver(name: &str, address: &str) -> LinkConfig {
    LinkConfig {
        name: name.into(),
        role: Role::Receiver,
        source: Some(Source::with_address(address)),
        target: Some(Target::with_address(name)),
        ..Default::default()
    }
}

fn broker(credit: u32) -> Pair {
    Pair::opened(
        client_config(vec![]),
        server_config(&[], None),
        ServerMode::Broker { credit },
    )
}

fn credit_of(events: &[Event], link: LinkId) -> Option<u32> {
    events.iter().rev().find_map(|e| match e {
        Event::Credit {
            link: l, credit, ..
        } if *l == link => Some(*credit),
        _ => None,
    })
}

fn deliveries(events: &[Event]) -> Vec<(LinkId, u32, Bytes, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Delivery {
                link,
                delivery_id,
                payload,
                settled,
                ..
            } => Some((*link, *delivery_id, payload.clone(), *settled)),
            _ => None,
        })
        .collect()
}

fn accepted(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Disposition {
                    state: Some(DeliveryState::Accepted(_)),
                    settled: true,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn pipelined_open_begin_attach_and_orderly_teardown() {
    // Everything is sent before the server has said a word.
    let mut p = Pair::new(
        client_config(anonymous()),
        server_config(&["ANONYMOUS"], None),
    );
    p.mode = ServerMode::Broker { credit: 10 };
    p.client.open().unwrap();
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let link = p.client.session(ch).attach(sender("s1", "q1")).unwrap();
    p.run();
    let ev = p.take_client_events();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::SessionBegun {
            channel: 0,
            peer_initiated: false
        }
    )));
    assert!(ev.iter().any(
        |e| matches!(e, Event::LinkAttached { link: l, peer_initiated: false, .. } if *l == link)
    ));
    assert_eq!(credit_of(&ev, link), Some(10));
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::SessionBegun {
            peer_initiated: true,
            ..
        }
    )));

    p.client.link(link).close(None).unwrap();
    p.client.session(ch).end(None).unwrap();
    p.client.close(None).unwrap();
    p.run();
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::LinkDetached { closed: true, .. })));
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::SessionEnded { error: None, .. })));
    assert!(p.client.is_closed() && p.server.is_closed());
    // Every performative the client sent, in order.
    let names: Vec<&str> = performatives(&p.client_wire)
        .iter()
        .map(Performative::name)
        .collect();
    assert_eq!(names, ["open", "begin", "attach", "detach", "end", "close"]);
}

#[test]
fn credit_is_used_up_and_refilled() {
    let mut p = broker(3);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let link = p.client.session(ch).attach(sender("s", "q")).unwrap();
    p.run();
    assert_eq!(p.client.credit(link), 3);
    for i in 0..3u8 {
        p.client
            .link(link)
            .send(
                Bytes::from(vec![i]),
                0,
                Settlement::Unsettled,
                Bytes::from(vec![i; 10]),
            )
            .unwrap();
    }
    assert_eq!(p.client.credit(link), 0);
    assert_eq!(
        p.client
            .link(link)
            .send(Bytes::new(), 0, Settlement::Unsettled, Bytes::new()),
        Err(SendError::NoCredit)
    );
    p.run();
    // The broker accepted all three and refilled the credit.
    assert_eq!(accepted(&p.client_events), 3);
    assert_eq!(p.client.credit(link), 3);
    assert_eq!(p.stored.len(), 3);
}

#[test]
fn unsettled_and_presettled_round_trip_through_the_broker() {
    let mut p = broker(100);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    for i in 0..50u32 {
        let settled = i % 2 == 0;
        let id = p
            .client
            .link(tx)
            .send(
                Bytes::from(i.to_be_bytes().to_vec()),
                0,
                if settled {
                    Settlement::Settled
                } else {
                    Settlement::Unsettled
                },
                Bytes::from(format!("m{i}")),
            )
            .unwrap();
        assert_eq!(id, i, "delivery ids count up per session");
    }
    p.run();
    assert_eq!(
        accepted(&p.client_events),
        25,
        "only unsettled deliveries get an outcome"
    );

    let rx = p.client.session(ch).attach(receiver("rx", "q")).unwrap();
    p.run();
    p.client.link(rx).flow(20).unwrap();
    p.run();
    let got = deliveries(&p.client_events);
    assert_eq!(got.len(), 20, "exactly the credit granted");
    assert_eq!(&got[0].2[..], b"m0");
    assert_eq!(&got[19].2[..], b"m19");
    // Settle a range with one disposition.
    let (first, last) = (got[0].1, got[19].1);
    p.client
        .session(ch)
        .disposition(
            Role::Receiver,
            first..=last,
            Settlement::Settled,
            Some(DeliveryState::Accepted(Accepted {})),
        )
        .unwrap();
    p.run();
    let d = performatives(&p.client_wire)
        .into_iter()
        .rev()
        .find_map(|p| match p {
            Performative::Disposition(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!((d.first, d.last), (first, Some(last)));
    assert!(
        p.server_events
            .iter()
            .filter(|e| matches!(e, Event::Disposition { .. }))
            .count()
            >= 20
    );
}

#[test]
fn one_mebibyte_messages_at_512_byte_frames() {
    let mut cc = client_config(vec![]);
    cc.max_frame_size = 512;
    let mut sc = server_config(&[], None);
    sc.max_frame_size = 512;
    let mut p = Pair::opened(cc, sc, ServerMode::Broker { credit: 10 });
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let big = Bytes::from(big);
    p.client
        .link(tx)
        .send(
            Bytes::from_static(b"t"),
            0,
            Settlement::Unsettled,
            big.clone(),
        )
        .unwrap();
    p.client
        .link(tx)
        .send(
            Bytes::from_static(b"u"),
            0,
            Settlement::Unsettled,
            big.clone(),
        )
        .unwrap();
    p.run();
    assert_eq!(accepted(&p.client_events), 2);
    assert_eq!(p.stored.len(), 2);
    assert_eq!(p.stored[0], big);
    // Every frame respected 512 bytes; the message took over 2,000 of them.
    let transfers = frames(&p.client_wire)
        .into_iter()
        .filter(|f| {
            matches!(
                f,
                eventhubs_proto::codec::frame::Frame::Amqp {
                    performative: Performative::Transfer(_),
                    ..
                }
            )
        })
        .count();
    assert!(transfers > 4000, "{transfers} transfer frames");
    let mut stream = bytes::BytesMut::from(&p.client_wire[8..]);
    while !stream.is_empty() {
        let f = eventhubs_proto::codec::frame::split_frame(&mut stream, 512)
            .unwrap()
            .unwrap();
        assert!(f.len() <= 512);
    }
    // And back to a client receiver, reassembled.
    let rx = p.client.session(ch).attach(receiver("rx", "q")).unwrap();
    p.run();
    p.client.link(rx).flow(2).unwrap();
    p.run();
    let got = deliveries(&p.client_events);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].2, big);
}

#[test]
fn byte_at_a_time_with_latency() {
    let mut p = broker(5);
    p.chunk = 1;
    p.latency = Duration::from_millis(20);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    for i in 0..5u8 {
        p.client
            .link(tx)
            .send(
                Bytes::from(vec![i]),
                0,
                Settlement::Unsettled,
                Bytes::from(vec![i; 300]),
            )
            .unwrap();
    }
    p.run();
    assert_eq!(accepted(&p.client_events), 5);
}

#[test]
fn a_thousand_interleaved_links() {
    let mut p = broker(2);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let links: Vec<LinkId> = (0..1000)
        .map(|i| {
            p.client
                .session(ch)
                .attach(sender(&format!("s{i}"), "q"))
                .unwrap()
        })
        .collect();
    p.run();
    assert!(links.iter().all(|l| p.client.credit(*l) == 2));
    for round in 0..2u8 {
        for (i, l) in links.iter().enumerate() {
            let body = format!("{i}:{round}");
            p.client
                .link(*l)
                .send(
                    Bytes::from(body.clone()),
                    0,
                    Settlement::Unsettled,
                    Bytes::from(body),
                )
                .unwrap();
        }
    }
    p.run();
    assert_eq!(accepted(&p.client_events), 2000);
    assert_eq!(p.stored.len(), 2000);
    // Interleaved: link 0's second message comes after link 999's first.
    assert_eq!(&p.stored[999][..], b"999:0");
    assert_eq!(&p.stored[1000][..], b"0:1");
}

#[test]
fn small_session_window_is_refilled_by_flow() {
    let mut sc = server_config(&[], None);
    sc.session_defaults.incoming_window = 4;
    let mut p = Pair::opened(
        client_config(vec![]),
        sc,
        ServerMode::Broker { credit: 1000 },
    );
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    for i in 0..200u32 {
        p.client
            .link(tx)
            .send(
                Bytes::from(i.to_be_bytes().to_vec()),
                0,
                Settlement::Unsettled,
                Bytes::from_static(b"x"),
            )
            .unwrap();
    }
    p.run();
    assert_eq!(accepted(&p.client_events), 200);
}

#[test]
fn drain_uses_up_credit_when_nothing_is_available() {
    let mut p = broker(0);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let rx = p
        .client
        .session(ch)
        .attach(receiver("rx", "empty"))
        .unwrap();
    p.run();
    p.client.link(rx).drain(50).unwrap();
    p.run();
    let drained = p.client_events.iter().any(|e| {
        matches!(e, Event::Flow { link, link_credit: 0, drained: true, delivery_count: 50, .. } if *link == rx)
    });
    assert!(drained, "{:#?}", p.client_events);
}

#[test]
fn transfer_without_credit_detaches_with_transfer_limit_exceeded() {
    // The server grants no credit; a misbehaving client sends anyway.
    let mut p = broker(0);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    assert_eq!(
        p.client
            .link(tx)
            .send(Bytes::new(), 0, Settlement::Unsettled, Bytes::new()),
        Err(SendError::NoCredit)
    );
    // Forge the transfer on the wire.
    let mut raw = Vec::new();
    eventhubs_proto::codec::frame::encode_amqp_frame(
        &mut raw,
        0,
        &eventhubs_proto::codec::performatives::Transfer {
            handle: 0,
            delivery_id: Some(0),
            delivery_tag: Some(Bytes::new()),
            ..Default::default()
        }
        .into(),
        b"",
        eventhubs_proto::codec::Form::Compact,
    );
    let now = p.now;
    p.server.handle_input(now, &raw);
    p.run();
    assert!(p.server_events.iter().any(|e| matches!(e, Event::LinkError { error, .. } if error.condition == "amqp:link:transfer-limit-exceeded")));
    assert!(p.client_events.iter().any(|e| matches!(e, Event::LinkDetached { error: Some(err), .. } if err.condition == "amqp:link:transfer-limit-exceeded")));
}

#[test]
fn max_message_size_is_enforced_on_both_sides() {
    let mut p = Pair::opened(
        client_config(vec![]),
        server_config(&[], None),
        ServerMode::Passive,
    );
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    // The server accepts with a 1 KiB limit and grants credit.
    let link = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::LinkAttached {
                link,
                peer_initiated: true,
                ..
            } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.server
        .link(link)
        .answer(LinkConfig {
            max_message_size: Some(1024),
            ..Default::default()
        })
        .unwrap();
    p.server.link(link).flow(10).unwrap();
    p.run();
    // Sender side: refused before sending.
    assert_eq!(
        p.client.link(tx).send(
            Bytes::new(),
            0,
            Settlement::Unsettled,
            Bytes::from(vec![0; 2000])
        ),
        Err(SendError::MessageTooLarge {
            size: 2000,
            max: 1024
        })
    );
    // Receiver side: a peer that ignores the limit gets detached.
    let raw_link = p
        .client
        .session(ch)
        .attach(LinkConfig {
            name: "raw".into(),
            ..sender("raw", "q")
        })
        .unwrap();
    let _ = raw_link;
    p.run();
    let mut raw = Vec::new();
    eventhubs_proto::codec::frame::encode_amqp_frame(
        &mut raw,
        0,
        &eventhubs_proto::codec::performatives::Transfer {
            handle: 0,
            delivery_id: Some(0),
            delivery_tag: Some(Bytes::new()),
            ..Default::default()
        }
        .into(),
        &vec![0u8; 2000],
        eventhubs_proto::codec::Form::Compact,
    );
    let now = p.now;
    p.server.handle_input(now, &raw);
    p.run();
    assert!(p.server_events.iter().any(|e| matches!(e, Event::LinkError { error, .. } if error.condition == "amqp:link:message-size-exceeded")));
}

#[test]
fn refused_link_reaches_the_client_with_the_error() {
    let mut p = Pair::opened(
        client_config(vec![]),
        server_config(&[], None),
        ServerMode::Passive,
    );
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let rx = p
        .client
        .session(ch)
        .attach(receiver("rx", "nowhere"))
        .unwrap();
    p.run();
    let link = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::LinkAttached {
                link,
                peer_initiated: true,
                ..
            } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.server
        .link(link)
        .refuse(AmqpError::new("amqp:not-found", "no such node"))
        .unwrap();
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(e,
        Event::LinkDetached { link, closed: true, error: Some(err) } if *link == rx && err.condition == "amqp:not-found")));
}

#[test]
fn rejected_outcome_reaches_the_sender() {
    let mut p = Pair::opened(
        client_config(vec![]),
        server_config(&[], None),
        ServerMode::Passive,
    );
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p
        .client
        .session(ch)
        .attach(LinkConfig {
            snd_settle_mode: SenderSettleMode::Unsettled,
            ..sender("tx", "q")
        })
        .unwrap();
    p.run();
    let link = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::LinkAttached {
                link,
                peer_initiated: true,
                ..
            } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.server.link(link).answer(LinkConfig::default()).unwrap();
    p.server.link(link).flow(1).unwrap();
    p.run();
    let id = p
        .client
        .link(tx)
        .send(
            Bytes::from_static(b"t"),
            0,
            Settlement::Settled,
            Bytes::from_static(b"x"),
        )
        .unwrap();
    p.run();
    let (sch, did) = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::Delivery {
                link,
                delivery_id,
                settled,
                ..
            } => {
                assert!(!settled, "snd-settle-mode unsettled overrides the caller");
                Some((link.channel, *delivery_id))
            }
            _ => None,
        })
        .unwrap();
    let rejected = DeliveryState::Rejected(Rejected {
        error: Some(AmqpError::new("amqp:link:message-size-exceeded", "too big")),
    });
    p.server
        .session(sch)
        .disposition(
            Role::Receiver,
            did..=did,
            Settlement::Settled,
            Some(rejected.clone()),
        )
        .unwrap();
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(e,
        Event::Disposition { link, delivery_id, state: Some(s), settled: true } if *link == tx && *delivery_id == id && *s == rejected)));
}

#[test]
fn aborted_delivery_is_dropped_and_the_next_arrives() {
    let mut cc = client_config(vec![]);
    cc.max_frame_size = 512;
    let mut sc = server_config(&[], None);
    sc.max_frame_size = 512;
    // A 4-frame window: a 100 KiB message cannot go out at once.
    sc.session_defaults.incoming_window = 4;
    let mut p = Pair::opened(cc, sc, ServerMode::Broker { credit: 10 });
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    let big = p
        .client
        .link(tx)
        .send(
            Bytes::from_static(b"big"),
            0,
            Settlement::Unsettled,
            Bytes::from(vec![7u8; 100 * 1024]),
        )
        .unwrap();
    // Let a few frames out, then abort.
    let mut wire = Vec::new();
    let _ = p.client.poll_transmit(p.now, &mut wire);
    let now = p.now;
    p.server.handle_input(now, &wire);
    p.client.link(tx).abort(big).unwrap();
    p.client
        .link(tx)
        .send(
            Bytes::from_static(b"small"),
            0,
            Settlement::Unsettled,
            Bytes::from_static(b"after"),
        )
        .unwrap();
    p.run();
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Aborted { delivery_id, .. } if *delivery_id == big)));
    assert_eq!(p.stored.len(), 1);
    assert_eq!(&p.stored[0][..], b"after");
    // Too late to abort what has gone out whole.
    assert!(p.client.link(tx).abort(big + 1).is_err());
}

#[test]
fn remote_detach_without_closed_and_end_with_error_reach_the_caller() {
    let mut p = broker(5);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    let server_link = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::LinkAttached { link, .. } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.server
        .link(server_link)
        .detach(Some(AmqpError::new("amqp:link:detach-forced", "idle")))
        .unwrap();
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(e,
        Event::LinkDetached { link, closed: false, error: Some(err) } if *link == tx && err.condition == "amqp:link:detach-forced")));
    // The client answered with a detach of its own (closed=false echoed).
    let last_detach = performatives(&p.client_wire)
        .into_iter()
        .rev()
        .find_map(|p| match p {
            Performative::Detach(d) => Some(d),
            _ => None,
        });
    assert_eq!(last_detach.map(|d| d.closed), Some(false));
    p.server
        .session(server_link.channel)
        .end(Some(AmqpError::new("amqp:internal-error", "bye")))
        .unwrap();
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(e, Event::SessionEnded { channel, error: Some(err) } if *channel == ch && err.condition == "amqp:internal-error")));
    // Channel and handle are free again.
    let ch2 = p.client.begin_session(SessionConfig::default()).unwrap();
    assert_eq!(ch2, ch);
}

#[test]
fn echo_flow_is_answered() {
    let mut p = broker(5);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    let before = performatives(&p.client_wire)
        .iter()
        .filter(|p| matches!(p, Performative::Flow(_)))
        .count();
    // The server asks for the sender's state.
    let mut raw = Vec::new();
    eventhubs_proto::codec::frame::encode_amqp_frame(
        &mut raw,
        0,
        &eventhubs_proto::codec::performatives::Flow {
            next_incoming_id: Some(0),
            incoming_window: 100,
            next_outgoing_id: 0,
            outgoing_window: 100,
            handle: Some(0),
            delivery_count: Some(0),
            link_credit: Some(7),
            echo: true,
            ..Default::default()
        }
        .into(),
        b"",
        eventhubs_proto::codec::Form::Compact,
    );
    let now = p.now;
    p.client.handle_input(now, &raw);
    p.run();
    assert_eq!(p.client.credit(tx), 7);
    let flows: Vec<_> = performatives(&p.client_wire)
        .into_iter()
        .filter_map(|p| match p {
            Performative::Flow(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(flows.len(), before + 1);
    assert_eq!(flows.last().unwrap().link_credit, Some(7));
}

#[test]
fn dropped_connection_is_noticed_by_the_idle_timer_on_both_sides() {
    let mut cc = client_config(vec![]);
    cc.idle_time_out = Some(Duration::from_secs(10));
    let mut sc = server_config(&[], None);
    sc.idle_time_out = Some(Duration::from_secs(10));
    let mut p = Pair::opened(cc, sc, ServerMode::Broker { credit: 100 });
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    p.client
        .link(tx)
        .send(
            Bytes::from_static(b"1"),
            0,
            Settlement::Unsettled,
            Bytes::from(vec![1u8; 100_000]),
        )
        .unwrap();
    // The network goes away mid-transfer.
    p.dropped = true;
    let t = p.now;
    p.advance(t + Duration::from_secs(30));
    assert!(p.client_events.contains(&Event::Failed(
        eventhubs_proto::engine::ConnectionError::IdleTimeout
    )));
    assert!(p.server_events.contains(&Event::Failed(
        eventhubs_proto::engine::ConnectionError::IdleTimeout
    )));
    assert!(p.client.is_closed() && p.server.is_closed());
    // Nothing the client sent was acknowledged.
    assert_eq!(accepted(&p.client_events), 0);
}

#[test]
fn peer_channel_max_and_handle_max_bound_what_we_allocate() {
    let mut sc = server_config(&[], None);
    sc.channel_max = 1;
    sc.session_defaults.handle_max = 1;
    let mut p = Pair::opened(client_config(vec![]), sc, ServerMode::Broker { credit: 1 });
    let a = p.client.begin_session(SessionConfig::default()).unwrap();
    let b = p.client.begin_session(SessionConfig::default()).unwrap();
    assert_eq!((a, b), (0, 1));
    assert!(
        p.client.begin_session(SessionConfig::default()).is_err(),
        "channel-max 1 allows channels 0 and 1"
    );
    p.run();
    assert!(p.client.session(a).attach(sender("h0", "q")).is_ok());
    assert!(p.client.session(a).attach(sender("h1", "q")).is_ok());
    assert!(
        p.client.session(a).attach(sender("h2", "q")).is_err(),
        "the server's handle-max is 1"
    );
    p.run();
    assert!(
        p.server_events
            .iter()
            .filter(|e| matches!(e, Event::LinkAttached { .. }))
            .count()
            == 2
    );
}

/// 2.7.1: channel-max plus one sessions at most. A peer that declared
/// channel-max 0 and begins a second session leaves us no channel to
/// answer on: we close the connection with the condition, not silently.
#[test]
fn a_begin_beyond_the_peers_channel_max_is_answered_with_a_close() {
    let mut sc = server_config(&[], None);
    sc.channel_max = 0;
    let mut p = Pair::opened(client_config(vec![]), sc, ServerMode::Passive);
    let ours = p.client.begin_session(SessionConfig::default()).unwrap();
    p.run();
    assert!(p
        .client
        .session(ours)
        .state()
        .is_some_and(|s| s.is_active()));
    // The server's engine would not do it; a broken peer does.
    let begin = Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        ..Default::default()
    };
    let mut wire = Vec::new();
    encode_amqp_frame(&mut wire, 1, &begin.into(), &[], Form::Compact);
    let now = p.now;
    p.client.handle_input(now, &wire);
    p.run();
    let failed = p.client_events.iter().find_map(|e| match e {
        Event::Failed(ConnectionError::Protocol(err)) => Some(err.clone()),
        _ => None,
    });
    let failed = failed.expect("the client failed the connection");
    assert_eq!(failed.condition, "amqp:resource-limit-exceeded");
    let close = performatives(&p.client_wire)
        .into_iter()
        .find_map(|p| match p {
            Performative::Close(c) => Some(c),
            _ => None,
        })
        .expect("the client sent a close");
    assert_eq!(
        close.error.map(|e| e.condition),
        Some(failed.condition.clone()),
        "the close carries the condition"
    );
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Closed(Some(err)) if err.condition == failed.condition)));
}

#[test]
fn a_stray_frame_after_the_peer_ended_its_session_is_dropped() {
    // The official Python SDK sends a detach on a channel it has just ended.
    let mut p = broker(5);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    p.client.session(ch).end(None).unwrap();
    p.run();
    let mut raw = Vec::new();
    eventhubs_proto::codec::frame::encode_amqp_frame(
        &mut raw,
        ch,
        &eventhubs_proto::codec::performatives::Detach {
            handle: tx.handle,
            closed: false,
            error: None,
        }
        .into(),
        b"",
        eventhubs_proto::codec::Form::Compact,
    );
    let now = p.now;
    p.server.handle_input(now, &raw);
    p.run();
    assert!(
        !p.server_events
            .iter()
            .any(|e| matches!(e, Event::Failed(_))),
        "{:?}",
        p.server_events
    );
    // A frame on a channel that never had a session is still fatal.
    let mut raw = Vec::new();
    eventhubs_proto::codec::frame::encode_amqp_frame(
        &mut raw,
        77,
        &eventhubs_proto::codec::performatives::Detach {
            handle: 0,
            closed: false,
            error: None,
        }
        .into(),
        b"",
        eventhubs_proto::codec::Form::Compact,
    );
    p.server.handle_input(now, &raw);
    assert!(matches!(p.server.poll_event(), Some(Event::Failed(_))));
}

/// A client sender "tx" to "q" (handle 0 on channel 0) that the server
/// accepted as `config`, with 10 credits.
fn limited_link(cc: ConnectionConfig, sc: ConnectionConfig, config: LinkConfig) -> (Pair, LinkId) {
    let mut p = Pair::opened(cc, sc, ServerMode::Passive);
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    let link = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::LinkAttached {
                link,
                peer_initiated: true,
                ..
            } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.server.link(link).answer(config).unwrap();
    p.server.link(link).flow(10).unwrap();
    p.run();
    (p, tx)
}

fn raw_transfer(t: eventhubs_proto::codec::performatives::Transfer, payload: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    eventhubs_proto::codec::frame::encode_amqp_frame(
        &mut raw,
        0,
        &t.into(),
        payload,
        eventhubs_proto::codec::Form::Compact,
    );
    raw
}

#[test]
fn a_message_split_over_frames_is_measured_once_against_max_message_size() {
    // Regression: reassembly counted the first frame twice once a second
    // arrived, so a 4000-byte message in 512-byte frames broke a 4096 limit.
    let mut cc = client_config(vec![]);
    cc.max_frame_size = 512;
    let mut sc = server_config(&[], None);
    sc.max_frame_size = 512;
    let (mut p, tx) = limited_link(
        cc,
        sc,
        LinkConfig {
            max_message_size: Some(4096),
            ..Default::default()
        },
    );
    let body = Bytes::from(vec![5u8; 4000]);
    p.client
        .link(tx)
        .send(
            Bytes::from_static(b"t"),
            0,
            Settlement::Unsettled,
            body.clone(),
        )
        .unwrap();
    p.run();
    assert!(!p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::LinkError { .. })));
    let got = deliveries(&p.server_events);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2, body);
}

#[test]
fn reject_oversized_settles_the_delivery_as_rejected_and_keeps_the_link() {
    use eventhubs_proto::codec::performatives::Transfer;
    let (mut p, _tx) = limited_link(
        client_config(vec![]),
        server_config(&[], None),
        LinkConfig {
            max_message_size: Some(1024),
            reject_oversized: true,
            ..Default::default()
        },
    );
    // A peer that ignores the limit: 800 + 800 + 100 bytes, unsettled.
    let mut raw = raw_transfer(
        Transfer {
            handle: 0,
            delivery_id: Some(0),
            delivery_tag: Some(Bytes::from_static(b"big")),
            more: true,
            ..Default::default()
        },
        &[1u8; 800],
    );
    for (more, n) in [(true, 800), (false, 100)] {
        raw.extend(raw_transfer(
            Transfer {
                handle: 0,
                more,
                ..Default::default()
            },
            &vec![1u8; n],
        ));
    }
    // Then an ordinary message on the same link.
    raw.extend(raw_transfer(
        Transfer {
            handle: 0,
            delivery_id: Some(1),
            delivery_tag: Some(Bytes::from_static(b"small")),
            ..Default::default()
        },
        b"fits",
    ));
    let now = p.now;
    p.server.handle_input(now, &raw);
    p.run();
    assert!(
        !p.server_events
            .iter()
            .any(|e| matches!(e, Event::LinkError { .. } | Event::LinkDetached { .. })),
        "{:?}",
        p.server_events
    );
    let got = deliveries(&p.server_events);
    assert_eq!(got.len(), 1, "only the small message is delivered");
    assert_eq!((got[0].1, &got[0].2[..]), (1, &b"fits"[..]));
    let rejection = performatives(&p.server_wire)
        .into_iter()
        .find_map(|f| match f {
            Performative::Disposition(d) if d.first == 0 => Some(d),
            _ => None,
        })
        .expect("a disposition for the oversized delivery");
    assert_eq!(rejection.role, Role::Receiver);
    assert!(rejection.settled);
    let Some(DeliveryState::Rejected(Rejected { error: Some(e) })) = rejection.state else {
        panic!("not rejected: {rejection:?}");
    };
    assert_eq!(e.condition, "amqp:link:message-size-exceeded");
    let text = e.description.unwrap().to_string();
    assert!(
        text.contains("size:1700 bytes") && text.contains("limit (1024 bytes)"),
        "{text}"
    );
    // A pre-settled oversized message cannot be rejected: the link goes.
    let raw = raw_transfer(
        Transfer {
            handle: 0,
            delivery_id: Some(2),
            delivery_tag: Some(Bytes::from_static(b"pre")),
            settled: Some(true),
            ..Default::default()
        },
        &[2u8; 2000],
    );
    let now = p.now;
    p.server.handle_input(now, &raw);
    p.run();
    assert!(p.server_events.iter().any(|e| matches!(e, Event::LinkError { error, .. } if error.condition == "amqp:link:message-size-exceeded")));
}

/// `queued` counts a sender's deliveries until they have gone out whole:
/// those waiting for `poll_transmit`, and those held by the peer's session
/// window; a detach forgets them.
#[test]
fn queued_counts_deliveries_until_they_are_out() {
    let mut sc = server_config(&[], None);
    sc.session_defaults.incoming_window = 4;
    let mut p = Pair::opened(
        client_config(vec![]),
        sc,
        ServerMode::Broker { credit: 1000 },
    );
    let ch = p.client.begin_session(SessionConfig::default()).unwrap();
    let tx = p.client.session(ch).attach(sender("tx", "q")).unwrap();
    p.run();
    assert_eq!(p.client.queued(tx), 0);
    let send = |p: &mut Pair, n: u32| {
        for i in 0..n {
            p.client
                .link(tx)
                .send(
                    Bytes::from(i.to_be_bytes().to_vec()),
                    0,
                    Settlement::Unsettled,
                    Bytes::from_static(b"x"),
                )
                .unwrap();
        }
    };
    send(&mut p, 10);
    assert_eq!(p.client.queued(tx), 10);
    // Four fit the broker's window; the rest wait for its flow.
    let mut out = Vec::new();
    let _ = p.client.poll_transmit(p.now, &mut out);
    assert_eq!(p.client.queued(tx), 6);
    p.server.handle_input(p.now, &out);
    p.run();
    assert_eq!(p.client.queued(tx), 0);
    assert_eq!(accepted(&p.client_events), 10);
    // Held by a window of zero, then forgotten with the link.
    p.mute_client = true;
    send(&mut p, 3);
    assert_eq!(p.client.queued(tx), 3);
    p.client.link(tx).detach(None).unwrap();
    assert_eq!(p.client.queued(tx), 0);
    assert_eq!(
        p.client.queued(LinkId {
            channel: 9,
            handle: 9
        }),
        0
    );
}
