//! Arbitrary bytes fed to a server-role engine, in arbitrary chunks and
//! with arbitrary clock steps, either raw or after a valid client handshake
//! (SASL ANONYMOUS, open, begin, attach of a sending link). The engine plays
//! a broker: it accepts links, grants credit and accepts deliveries. It must
//! never panic, and what it buffers stays bounded by its frame and message
//! size limits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::codec::frame::{encode_amqp_frame, encode_sasl_frame, ProtocolHeader};
use eventhubs_proto::codec::messaging::{Source, Target};
use eventhubs_proto::codec::performatives::{Attach, Begin, Open, Role};
use eventhubs_proto::codec::sasl::{SaslFrame, SaslInit};
use eventhubs_proto::codec::{Form, Symbol};
use eventhubs_proto::engine::Settlement;
use eventhubs_proto::engine::{Connection, ConnectionConfig, Event, LinkConfig, SaslConfig, Side};

const MAX_FRAME: u32 = 4096;
const MAX_MESSAGE: u64 = 64 * 1024;

fn handshake() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&ProtocolHeader::SASL.to_bytes());
    let init = SaslInit {
        mechanism: Symbol::from_static("ANONYMOUS"),
        initial_response: None,
        hostname: None,
    };
    encode_sasl_frame(&mut b, &SaslFrame::Init(init), Form::Compact);
    b.extend_from_slice(&ProtocolHeader::AMQP.to_bytes());
    let open = Open {
        container_id: "fuzz-client".into(),
        max_frame_size: 512,
        ..Default::default()
    };
    encode_amqp_frame(&mut b, 0, &open.into(), &[], Form::Compact);
    let begin = Begin {
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        ..Default::default()
    };
    encode_amqp_frame(&mut b, 0, &begin.into(), &[], Form::Compact);
    let attach = Attach {
        name: "l".into(),
        handle: 0,
        role: Role::Sender,
        source: Some(Box::new(Source::with_address("s"))),
        target: Some(Box::new(Target::with_address("q"))),
        initial_delivery_count: Some(0),
        ..Default::default()
    };
    encode_amqp_frame(&mut b, 0, &attach.into(), &[], Form::Compact);
    b
}

/// Feeds `data` (mode byte, then client bytes) to a server-role engine
/// playing a small broker; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut now = start;
    let mut config = ConnectionConfig::new(Side::Server, "fuzz-server");
    config.max_frame_size = MAX_FRAME;
    config.idle_time_out = Some(Duration::from_secs(30));
    config.sasl = SaslConfig::Server {
        mechanisms: vec![
            Symbol::from_static("ANONYMOUS"),
            Symbol::from_static("PLAIN"),
        ],
        plain_check: Some(Box::new(|u: &str, p: &str| u == "u" && p == "p")),
    };
    let mut conn = Connection::new(config, now);
    let mut input = Vec::new();
    if mode & 1 == 1 {
        input.extend_from_slice(&handshake());
    }
    input.extend_from_slice(data);
    // Chunk sizes and clock steps come from the mode byte.
    let chunk = 1 + (mode as usize >> 1) % 97;
    let step = Duration::from_millis(((mode as u64) >> 4) * 997);
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        conn.handle_input(now, piece);
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Opened(_) => {
                    let _ = conn.open();
                }
                Event::LinkAttached {
                    link,
                    peer_initiated: true,
                    ..
                } => {
                    let _ = conn.link(link).answer(LinkConfig {
                        max_message_size: Some(MAX_MESSAGE),
                        ..Default::default()
                    });
                    let _ = conn.link(link).flow(10);
                }
                Event::Delivery {
                    link,
                    delivery_id,
                    settled,
                    payload,
                    ..
                } => {
                    assert!(payload.len() as u64 <= MAX_MESSAGE);
                    if !settled {
                        let _ = conn.link(link).accept(delivery_id);
                    }
                    let _ = conn.link(link).flow(10);
                }
                Event::LinkAttached { link, .. } => {
                    let _ = conn.link(link).send(
                        Bytes::from_static(b"t"),
                        0,
                        Settlement::Unsettled,
                        Bytes::from_static(b"m"),
                    );
                }
                _ => {}
            }
        }
        out.clear();
        let _ = conn.poll_transmit(now, &mut out);
        now += step;
        if let Some(t) = conn.poll_timeout() {
            if t <= now {
                conn.handle_timeout(now);
            }
        }
    }
    let _ = conn.poll_transmit(now, &mut out);
}
