//! The connection engine in a deterministic in-memory pair: a client and a
//! server engine wired together under a virtual clock.

use std::time::{Duration, Instant};

use eventhubs_proto::codec::frame::{Frame, ProtocolHeader};
use eventhubs_proto::codec::performatives::{AmqpError, Performative};
use eventhubs_proto::codec::sasl::SaslCode;
use eventhubs_proto::codec::Symbol;
use eventhubs_proto::engine::connection::PlainCheck;
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, ConnectionError, Event, SaslConfig, SaslMechanism, Side,
};
use eventhubs_testkit::pair::*;

#[test]
fn sasl_anonymous_open_and_close() {
    let mut p = Pair::new(
        client_config(vec![SaslMechanism::Anonymous]),
        server_config(&["MSSBCBS", "ANONYMOUS"], None),
    );
    p.client.open().unwrap();
    p.run();
    assert_eq!(
        p.client_events[0],
        Event::Authenticated {
            mechanism: Symbol::from_static("ANONYMOUS"),
            user: None
        }
    );
    assert!(opened(&p.client_events) && opened(&p.server_events));
    let remote = p.client.remote_open().unwrap();
    assert_eq!(remote.container_id, "server-1");
    assert_eq!(p.client.peer_max_frame_size(), 64 * 1024);
    assert_eq!(
        p.server.remote_open().unwrap().hostname.as_deref(),
        Some("localhost")
    );

    p.client
        .close(Some(AmqpError::new("amqp:internal-error", "bye")))
        .unwrap();
    p.run();
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Closed(Some(err)) if err.condition == "amqp:internal-error")));
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Closed(None))));
    assert!(p.client.is_closed() && p.server.is_closed());
}

#[test]
fn sasl_plain_accepted_and_refused() {
    let check = || -> PlainCheck {
        Box::new(|u: &str, pw: &str| u == "RootManageSharedAccessKey" && pw == "secret")
    };
    let plain = |pw: &str| SaslMechanism::Plain {
        username: "RootManageSharedAccessKey".into(),
        password: pw.into(),
    };

    let mut p = Pair::new(
        client_config(vec![plain("secret")]),
        server_config(&["PLAIN"], Some(check())),
    );
    p.client.open().unwrap();
    p.run();
    assert!(p.server_events.contains(&Event::Authenticated {
        mechanism: Symbol::from_static("PLAIN"),
        user: Some("RootManageSharedAccessKey".into())
    }));
    assert!(opened(&p.client_events));

    let mut p = Pair::new(
        client_config(vec![plain("wrong")]),
        server_config(&["PLAIN"], Some(check())),
    );
    p.client.open().unwrap();
    p.run();
    assert!(p
        .client_events
        .contains(&Event::Failed(ConnectionError::SaslFailed(SaslCode::Auth))));
    assert!(p
        .server_events
        .contains(&Event::Failed(ConnectionError::SaslFailed(SaslCode::Auth))));
    assert!(
        !opened(&p.server_events),
        "no AMQP after a failed SASL outcome"
    );
    // The password never shows in Debug output.
    assert!(!format!("{:?}", plain("hunter2")).contains("hunter2"));
}

#[test]
fn no_common_mechanism_fails_the_client() {
    let mut p = Pair::new(
        client_config(vec![SaslMechanism::External]),
        server_config(&["ANONYMOUS"], None),
    );
    p.run();
    assert!(
        matches!(p.client_events.last(), Some(Event::Failed(ConnectionError::NoSaslMechanism(m))) if m == &["ANONYMOUS"])
    );
}

#[test]
fn handshake_byte_at_a_time_without_sasl() {
    let mut cc = ConnectionConfig::new(Side::Client, "c");
    cc.sasl = SaslConfig::None;
    let mut p = Pair::new(cc, ConnectionConfig::new(Side::Server, "s"));
    p.chunk = 1;
    p.client.open().unwrap();
    p.run();
    assert!(opened(&p.client_events) && opened(&p.server_events));
}

#[test]
fn idle_peer_is_closed_with_resource_limit_exceeded() {
    let mut sc = server_config(&["ANONYMOUS"], None);
    sc.idle_time_out = Some(Duration::from_secs(4));
    let mut p = Pair::new(client_config(vec![SaslMechanism::Anonymous]), sc);
    p.client.open().unwrap();
    p.run();
    // While both talk, heartbeats keep the connection up for ten minutes.
    let start = p.now;
    p.advance(start + Duration::from_secs(600));
    assert!(!p.server.is_closed(), "{:?}", p.server_events);
    let empties = count_empty_frames(&p.server_wire);
    assert!(
        empties > 0,
        "server sends heartbeats at half the client's 60 s"
    );
    // Now the client goes silent: the server gives up after 4 s.
    p.mute_client = true;
    let silent_from = p.now;
    p.advance(silent_from + Duration::from_secs(10));
    assert!(p
        .server_events
        .contains(&Event::Failed(ConnectionError::IdleTimeout)));
    let last = last_performative(&p.server_wire).unwrap();
    assert!(
        matches!(&last, Performative::Close(c) if c.error.as_ref().unwrap().condition == "amqp:resource-limit-exceeded"),
        "{last:?}"
    );
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    let mut sc = ConnectionConfig::new(Side::Server, "s");
    sc.max_frame_size = 512;
    let mut cc = ConnectionConfig::new(Side::Client, "c");
    cc.sasl = SaslConfig::None;
    let mut p = Pair::new(cc, sc);
    p.client.open().unwrap();
    p.run();
    // A frame header announcing 1 GiB: refused before any body arrives.
    let now = p.now;
    p.server.handle_input(now, &[0x40, 0, 0, 0, 2, 0, 0, 0]);
    let e = p.server.poll_event().unwrap();
    assert!(
        matches!(&e, Event::Failed(ConnectionError::Protocol(err)) if err.condition == "amqp:connection:framing-error"),
        "{e:?}"
    );
    let mut out = Vec::new();
    let _ = p.server.poll_transmit(now, &mut out);
    let last = last_performative(&out).unwrap();
    assert!(
        matches!(&last, Performative::Close(c) if c.error.as_ref().unwrap().condition == "amqp:connection:framing-error")
    );
}

#[test]
fn wrong_protocol_header_is_answered_then_refused() {
    let mut s = Connection::new(server_config(&["ANONYMOUS"], None), Instant::now());
    let now = Instant::now();
    s.handle_input(now, b"AMQP\x00\x01\x00\x00");
    assert!(matches!(
        s.poll_event(),
        Some(Event::Failed(ConnectionError::UnsupportedProtocol(_)))
    ));
    let mut out = Vec::new();
    let _ = s.poll_transmit(now, &mut out);
    assert_eq!(&out[..], &ProtocolHeader::SASL.to_bytes());
    let mut s = Connection::new(server_config(&["ANONYMOUS"], None), now);
    s.handle_input(now, b"GET / HTTP/1.1\r\n");
    assert!(matches!(
        s.poll_event(),
        Some(Event::Failed(ConnectionError::UnsupportedProtocol(_)))
    ));
}

#[test]
fn garbage_after_open_closes_with_decode_error() {
    let mut cc = ConnectionConfig::new(Side::Client, "c");
    cc.sasl = SaslConfig::None;
    let mut p = Pair::new(cc, ConnectionConfig::new(Side::Server, "s"));
    p.client.open().unwrap();
    p.run();
    let now = p.now;
    // A well-framed frame whose body is not a performative.
    p.server
        .handle_input(now, &[0, 0, 0, 10, 2, 0, 0, 0, 0x57, 0x00]);
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::Failed(ConnectionError::Protocol(e))) if e.condition == "amqp:decode-error"
    ));
}

fn count_empty_frames(wire: &[u8]) -> usize {
    frames(wire)
        .iter()
        .filter(|f| matches!(f, Frame::Empty { .. }))
        .count()
}

fn last_performative(wire: &[u8]) -> Option<Performative> {
    performatives(wire).pop()
}

#[test]
fn sasl_external_and_mssbcbs() {
    for (client, server) in [
        (SaslMechanism::External, "EXTERNAL"),
        (SaslMechanism::MssbCbs, "MSSBCBS"),
    ] {
        let mut p = Pair::new(
            client_config(vec![client]),
            server_config(&["PLAIN", server], None),
        );
        p.client.open().unwrap();
        p.run();
        assert!(p.server_events.contains(&Event::Authenticated {
            mechanism: Symbol::from_static(server),
            user: None
        }));
        assert!(
            opened(&p.client_events) && opened(&p.server_events),
            "{server}"
        );
    }
}
