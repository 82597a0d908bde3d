//! Decodes a raw AMQP byte stream (as captured from one direction of a
//! connection, protocol header first) and prints every frame.
//!
//! `cargo run -p eventhubs-proto --example decode_stream [FILE]`; without
//! FILE it reads the checked-in trace of Microsoft's Rust SDK producer.

use bytes::BytesMut;
use eventhubs_proto::codec::frame::{split_frame, Frame, ProtocolHeader, ProtocolId};
use eventhubs_proto::codec::message::{Message, BATCH_MESSAGE_FORMAT};
use eventhubs_proto::codec::performatives::Performative;
use eventhubs_proto::codec::Decode;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/traces/azure_messaging_eventhubs-0.16/producer.client.bin"
        )
        .to_string()
    });
    let mut buf = BytesMut::from(&std::fs::read(&path)?[..]);
    let mut offset = 0usize;
    let mut message_format = 0u32;
    let mut partial = Vec::new();
    while !buf.is_empty() {
        if buf.starts_with(b"AMQP") {
            let header = ProtocolHeader::parse(&buf)?.ok_or("truncated protocol header")?;
            println!(
                "{offset:>6}  protocol header {:?} {}.{}.{}",
                header.id, header.major, header.minor, header.revision
            );
            let _ = buf.split_to(ProtocolHeader::LEN);
            offset += ProtocolHeader::LEN;
            if header.id == ProtocolId::Tls {
                break;
            }
            continue;
        }
        let frame = split_frame(&mut buf, u32::MAX)?.ok_or("truncated frame")?;
        let len = frame.len();
        match Frame::decode(&frame)? {
            Frame::Empty { channel } => println!("{offset:>6}  [{channel}] (empty frame)"),
            Frame::Sasl(s) => println!("{offset:>6}  sasl {s:?}"),
            Frame::Amqp {
                channel,
                performative,
                payload,
            } => {
                println!(
                    "{offset:>6}  [{channel}] {} {performative:?}",
                    performative.name()
                );
                if let Performative::Transfer(t) = &performative {
                    message_format = t.message_format.unwrap_or(message_format);
                    partial.extend_from_slice(&payload);
                    if !t.more {
                        let message = Message::decode_all(&std::mem::take(&mut partial).into())?;
                        if message_format == BATCH_MESSAGE_FORMAT {
                            println!("          batch of {} events", message.unbatch()?.len());
                        } else {
                            println!("          {message:?}");
                        }
                    }
                }
            }
        }
        offset += len;
    }
    Ok(())
}
