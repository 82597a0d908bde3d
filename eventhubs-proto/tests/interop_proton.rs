//! Interop with Apache Qpid Proton over loopback TCP: our client engine
//! against a Proton broker (`tests/interop/proton_broker.py`), and Proton's
//! client (`tests/interop/proton_client.py`) against our server engine.

mod interop_support;

use std::net::TcpListener;
use std::time::Duration;

use eventhubs_proto::engine::{
    ConnectionConfig, ConnectionError, Event, SaslConfig, SaslMechanism, Side,
};
use interop_support::*;

fn broker(args: &[&str]) -> Option<Peer> {
    if !have_proton() {
        missing("python3 with python-qpid-proton");
        return None;
    }
    let b = proton_broker(args);
    if b.is_none() {
        missing("tests/interop/proton_broker.py did not start");
    }
    b
}

#[test]
fn our_client_against_proton_broker_ten_thousand_unsettled() {
    let Some(b) = broker(&[]) else { return };
    round_trip(
        b.port,
        SaslMechanism::Anonymous,
        "q-unsettled",
        10_000,
        64,
        false,
    );
}

#[test]
fn our_client_against_proton_broker_ten_thousand_presettled() {
    let Some(b) = broker(&[]) else { return };
    round_trip(
        b.port,
        SaslMechanism::Anonymous,
        "q-settled",
        10_000,
        64,
        true,
    );
}

#[test]
fn our_client_against_proton_broker_mebibyte_messages_small_frames() {
    let Some(b) = broker(&["--max-frame-size", "4096"]) else {
        return;
    };
    round_trip(b.port, SaslMechanism::Anonymous, "q-big", 5, 1 << 20, false);
}

#[test]
fn our_client_against_proton_broker_sasl_plain() {
    let Some(b) = broker(&["--user", "user", "--password", "pass"]) else {
        return;
    };
    round_trip(
        b.port,
        SaslMechanism::Plain {
            username: "user".into(),
            password: "pass".into(),
        },
        "q-plain",
        100,
        64,
        false,
    );
    // A wrong password is refused with sasl-outcome auth.
    let mut d = Driver::connect_port(
        b.port,
        client_config(SaslMechanism::Plain {
            username: "user".into(),
            password: "nope".into(),
        }),
    );
    d.conn.open().unwrap();
    let mut failure = None;
    for _ in 0..200 {
        d.turn(Duration::from_millis(20));
        if let Some(Event::Failed(e)) = d.events.pop_front() {
            failure = Some(e);
            break;
        }
    }
    assert!(
        matches!(failure, Some(ConnectionError::SaslFailed(_))),
        "{failure:?}"
    );
}

fn our_server(connections: usize, max_frame_size: u32) -> (u16, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = move || {
        let mut c = ConnectionConfig::new(Side::Server, "eventhubs-proto-broker");
        c.max_frame_size = max_frame_size;
        c.sasl = SaslConfig::Server {
            mechanisms: vec!["ANONYMOUS".into(), "PLAIN".into()],
            plain_check: Some(Box::new(|u: &str, p: &str| u == "user" && p == "pass")),
        };
        c
    };
    (
        port,
        std::thread::spawn(move || serve(listener, config, connections)),
    )
}

fn run_proton_client(port: u16, args: &[&str]) -> serde_summary::Summary {
    let (ok, out) = proton_client(port, args).expect("proton_client.py runs");
    assert!(ok, "proton client failed: {out}");
    serde_summary::parse(&out)
}

/// The client prints one JSON line; the fields we check are plain numbers.
mod serde_summary {
    #[derive(Debug)]
    pub struct Summary {
        pub sent: u64,
        pub received: u64,
        pub ok: bool,
    }
    pub fn parse(s: &str) -> Summary {
        let line = s
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .expect("a JSON summary line");
        let num = |k: &str| -> u64 {
            let at = line
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {line}"))
                + k.len()
                + 3;
            line[at..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap()
        };
        Summary {
            sent: num("sent"),
            received: num("received"),
            ok: line.contains("\"ok\": true") || line.contains("\"ok\":true"),
        }
    }
}

#[test]
fn proton_client_against_our_server() {
    if !have_proton() {
        return missing("python3 with python-qpid-proton");
    }
    let (port, server) = our_server(4, 64 * 1024);
    let s = run_proton_client(
        port,
        &[
            "--sasl",
            "ANONYMOUS",
            "--address",
            "a",
            "--count",
            "10000",
            "--size",
            "64",
        ],
    );
    assert!(s.ok && s.sent == 10_000 && s.received == 10_000, "{s:?}");
    let s = run_proton_client(
        port,
        &[
            "--sasl",
            "ANONYMOUS",
            "--address",
            "b",
            "--count",
            "10000",
            "--size",
            "64",
            "--settled",
        ],
    );
    assert!(s.ok && s.sent == 10_000 && s.received == 10_000, "{s:?}");
    let s = run_proton_client(
        port,
        &[
            "--sasl",
            "PLAIN",
            "--user",
            "user",
            "--password",
            "pass",
            "--address",
            "c",
            "--count",
            "100",
        ],
    );
    assert!(s.ok && s.received == 100, "{s:?}");
    let s = run_proton_client(
        port,
        &[
            "--sasl",
            "ANONYMOUS",
            "--address",
            "d",
            "--count",
            "3",
            "--size",
            "1048576",
        ],
    );
    assert!(s.ok && s.received == 3, "{s:?}");
    let stored = server.join().unwrap();
    assert_eq!(stored, 10_000 + 10_000 + 100 + 3);
}

#[test]
fn proton_client_against_our_server_small_frames() {
    if !have_proton() {
        return missing("python3 with python-qpid-proton");
    }
    let (port, server) = our_server(1, 512);
    let s = run_proton_client(
        port,
        &[
            "--sasl",
            "ANONYMOUS",
            "--address",
            "e",
            "--count",
            "2",
            "--size",
            "1048576",
        ],
    );
    assert!(s.ok && s.received == 2, "{s:?}");
    assert_eq!(server.join().unwrap(), 2);
}
