//! Launchers for the real peers (Qpid Proton scripts in `tests/interop/`,
//! RabbitMQ started by `.ci/rabbitmq.sh`), and the broker and round trip
//! the interop tests run on the shared blocking driver.
//!
//! When `EVENTHUBS_INTEROP=require` (set by `.ci/run`) a missing peer fails
//! the test; otherwise the test says it was skipped and returns.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::codec::message::{Body, Message};
use eventhubs_proto::codec::messaging::{DeliveryState, Source, Target};
use eventhubs_proto::codec::performatives::Role;
use eventhubs_proto::codec::{Decode, Encode};
use eventhubs_proto::engine::Settlement;
use eventhubs_proto::engine::{
    ConnectionConfig, Event, LinkConfig, LinkId, SaslConfig, SaslMechanism, SessionConfig, Side,
};

/// True when peers must be present (CI).
pub fn required() -> bool {
    std::env::var("EVENTHUBS_INTEROP").is_ok_and(|v| v == "require")
}

/// Reports a missing peer: a failure in CI, a skip elsewhere.
pub fn missing(what: &str) {
    if required() {
        panic!("interop peer unavailable: {what}");
    }
    eprintln!(
        "SKIPPED: interop peer unavailable: {what} (set EVENTHUBS_INTEROP=require to fail instead)"
    );
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A child process killed on drop.
pub struct Peer {
    pub child: Child,
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tests/interop/proton_broker.py` on an ephemeral port; `None`
/// when Python or Proton is missing.
pub fn proton_broker(args: &[&str]) -> Option<Peer> {
    let script = repo_root().join("tests/interop/proton_broker.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", "0", "-q"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take()?);
    out.read_line(&mut line).ok()?;
    let port = line.trim().strip_prefix("LISTENING ")?.parse().ok()?;
    Some(Peer { child, port })
}

/// Runs `tests/interop/proton_client.py` against `port` with `args`;
/// returns its exit success and stdout.
pub fn proton_client(port: u16, args: &[&str]) -> Option<(bool, String)> {
    let script = repo_root().join("tests/interop/proton_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// True when `python3 -c "import proton"` works.
pub fn have_proton() -> bool {
    Command::new("python3")
        .args(["-c", "import proton"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One engine over one TCP stream (the workspace's shared blocking
/// driver).
pub use eventhubs_testkit::tcp::EngineClient as Driver;

/// Our engine as a tiny broker on `listener`, serving connections one at a
/// time until `stop` connections have closed: queues by address, accepting
/// every delivery, feeding receivers as credit allows. Returns the number of
/// messages it stored.
pub fn serve(
    listener: TcpListener,
    config: impl Fn() -> ConnectionConfig,
    connections: usize,
) -> usize {
    let mut queues: HashMap<String, VecDeque<Bytes>> = HashMap::new();
    let mut stored = 0;
    for _ in 0..connections {
        let (stream, _) = listener.accept().expect("accept");
        let mut d = Driver::new(stream, config());
        let mut links: HashMap<LinkId, (Role, String)> = HashMap::new();
        let mut tag = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !d.eof && !d.conn.is_closed() && Instant::now() < deadline {
            d.turn(Duration::from_millis(20));
            while let Some(e) = d.events.pop_front() {
                match e {
                    Event::Opened(_) => d.conn.open().unwrap(),
                    Event::LinkAttached {
                        link,
                        attach,
                        peer_initiated: true,
                    } => {
                        let our_role = if attach.role == Role::Sender {
                            Role::Receiver
                        } else {
                            Role::Sender
                        };
                        let address = match our_role {
                            Role::Receiver => {
                                attach.target.as_ref().and_then(|t| t.address.clone())
                            }
                            Role::Sender => attach.source.as_ref().and_then(|s| s.address.clone()),
                        }
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                        d.conn
                            .link(link)
                            .answer(LinkConfig::answering(&attach))
                            .unwrap();
                        if our_role == Role::Receiver {
                            d.conn.link(link).flow(1000).unwrap();
                        }
                        links.insert(link, (our_role, address));
                    }
                    Event::Delivery {
                        link,
                        delivery_id,
                        settled,
                        payload,
                        ..
                    } => {
                        let address = links.get(&link).map(|(_, a)| a.clone()).unwrap_or_default();
                        queues.entry(address).or_default().push_back(payload);
                        stored += 1;
                        if !settled {
                            d.conn.link(link).accept(delivery_id).unwrap();
                        }
                        if d.conn.credit(link) == 0 {
                            let _ = d.conn.link(link).flow(1000);
                        }
                    }
                    Event::Flow { .. } | Event::Credit { .. } => {}
                    Event::LinkDetached { link, .. } => {
                        links.remove(&link);
                    }
                    Event::Failed(e) => panic!("server connection failed: {e}"),
                    _ => {}
                }
            }
            // Feed senders.
            let senders: Vec<(LinkId, String)> = links
                .iter()
                .filter(|(_, (r, _))| *r == Role::Sender)
                .map(|(l, (_, a))| (*l, a.clone()))
                .collect();
            for (link, address) in senders {
                let q = queues.entry(address).or_default();
                while d.conn.credit(link) > 0 {
                    let Some(m) = q.pop_front() else { break };
                    tag += 1;
                    d.conn
                        .link(link)
                        .send(
                            Bytes::copy_from_slice(&tag.to_be_bytes()),
                            0,
                            Settlement::Unsettled,
                            m,
                        )
                        .unwrap();
                }
            }
        }
        d.flush();
    }
    stored
}

pub fn client_config(sasl: SaslMechanism) -> ConnectionConfig {
    let mut c = ConnectionConfig::new(Side::Client, "eventhubs-proto-interop");
    c.hostname = Some("localhost".into());
    c.sasl = SaslConfig::Client(vec![sasl]);
    c.max_frame_size = 64 * 1024;
    c
}

pub fn event(i: usize, size: usize) -> Bytes {
    let mut body = format!("{i:08}:").into_bytes();
    body.resize(size.max(9), b'x');
    Message {
        body: Body::Data(vec![body.into()]),
        ..Default::default()
    }
    .to_bytes()
}

/// Sends `count` messages of `size` bytes to `address` and reads them back,
/// checking order and content.
pub fn round_trip(
    port: u16,
    sasl: SaslMechanism,
    address: &str,
    count: usize,
    size: usize,
    settled: bool,
) {
    let mut d = Driver::connect_port(port, client_config(sasl));
    d.conn.open().unwrap();
    let ch = d.conn.begin_session(SessionConfig::default()).unwrap();
    let tx = d
        .conn
        .session(ch)
        .attach(LinkConfig {
            name: format!("tx-{address}"),
            role: Role::Sender,
            source: Some(Source::with_address("interop-client")),
            target: Some(Target::with_address(address)),
            ..Default::default()
        })
        .unwrap();
    d.wait_for(Duration::from_secs(10), |_, e| {
        matches!(e, Event::LinkAttached { link, .. } if *link == tx).then_some(())
    });
    let mut sent = 0;
    let mut accepted = 0;
    let within = Duration::from_secs(120);
    while sent < count || (!settled && accepted < count) {
        while sent < count && d.conn.credit(tx) > 0 {
            let settlement = if settled {
                Settlement::Settled
            } else {
                Settlement::Unsettled
            };
            d.conn
                .link(tx)
                .send(
                    Bytes::from((sent as u64).to_be_bytes().to_vec()),
                    0,
                    settlement,
                    event(sent, size),
                )
                .unwrap();
            sent += 1;
        }
        d.wait_for(within, |_, e| match e {
            Event::Disposition {
                state: Some(DeliveryState::Accepted(_)),
                ..
            } => {
                accepted += 1;
                Some(())
            }
            Event::Disposition { state, .. } => panic!("delivery not accepted: {state:?}"),
            Event::Credit { .. } => Some(()),
            _ => None,
        });
        if settled && sent == count {
            break;
        }
    }
    if !settled {
        assert_eq!(accepted, count, "every unsettled delivery accepted");
    }
    let rx = d
        .conn
        .session(ch)
        .attach(LinkConfig {
            name: format!("rx-{address}"),
            role: Role::Receiver,
            source: Some(Source::with_address(address)),
            target: Some(Target::with_address("interop-client")),
            ..Default::default()
        })
        .unwrap();
    d.wait_for(Duration::from_secs(10), |_, e| {
        matches!(e, Event::LinkAttached { link, .. } if *link == rx).then_some(())
    });
    let batch = 500.min(count as u32);
    d.conn.link(rx).flow(batch).unwrap();
    let mut received = 0usize;
    while received < count {
        let (id, payload) = d.wait_for(within, |_, e| match e {
            Event::Delivery {
                link,
                delivery_id,
                payload,
                ..
            } if *link == rx => Some((*delivery_id, payload.clone())),
            _ => None,
        });
        let m = Message::decode_all(&payload).expect("our message comes back intact");
        let Body::Data(sections) = &m.body else {
            panic!("body {:?}", m.body)
        };
        assert_eq!(
            &sections[0][..9],
            format!("{received:08}:").as_bytes(),
            "in order"
        );
        assert_eq!(sections[0].len(), size.max(9));
        d.conn.link(rx).accept(id).unwrap();
        received += 1;
        if d.conn.credit(rx) == 0 && received < count {
            d.conn.link(rx).flow(batch).unwrap();
        }
    }
    d.conn.link(rx).close(None).unwrap();
    d.conn.link(tx).close(None).unwrap();
    d.conn.close(None).unwrap();
    d.wait_for(Duration::from_secs(10), |_, e| {
        matches!(e, Event::Closed(_)).then_some(())
    });
}
