//! Sans-IO core of the Azure Event Hubs client.
//!
//! This crate does no I/O, reads no clock, draws no randomness and spawns
//! nothing: bytes, time and seeds come in from the caller (a runtime adapter),
//! and bytes, events and deadlines go out.
//!
//! Layers, bottom up:
//! - [`codec`]: the AMQP 1.0 type system, performatives, message sections and
//!   frames (OASIS AMQP 1.0 parts 1, 2, 3 and 5), decoded zero-copy from
//!   [`bytes::Bytes`] and encoded into any [`bytes::BufMut`].
//! - [`engine`]: the AMQP connection state machine (SASL, open, close,
//!   heartbeats), driven by bytes and time from the caller.
//! - [`eventhubs`]: pure Event Hubs pieces: connection strings and Azure
//!   environments, SAS tokens and token providers, partition-key hashing,
//!   start-position filters, error classification and retry policy.
//! - [`http`]: a sans-IO HTTP/1.1 exchange (requests written, responses
//!   parsed, both bounded), for the Azure REST APIs.
//! - [`storage`]: Azure Blob Storage requests, Shared Key and SAS signing,
//!   storage connection strings and the XML replies.
//! - [`checkpoint`]: partition ownership and checkpoints in the blob layout
//!   all Event Hubs SDKs share, and a sans-IO in-memory store.
//! - [`identity`]: Microsoft Entra ID token requests, responses, client
//!   assertions, certificates and the `AZURE_*` credential chain.
//! - [`processor`]: the event processor's load balancer.
//! - [`management`]: event hub and consumer group management over the
//!   Atom REST API: requests, SAS over the full URL, the XML both ways.
//!
//! # Example
//!
//! Encode an event as an AMQP message in a transfer frame, then split the
//! frame off a byte stream and decode it again; the body comes back as a
//! slice of the received buffer.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use eventhubs_proto::codec::frame::{encode_amqp_frame, split_frame, Frame};
//! use eventhubs_proto::codec::message::{Body, Message};
//! use eventhubs_proto::codec::performatives::{Performative, Transfer};
//! use eventhubs_proto::codec::{Decode, Encode, Form, Value};
//!
//! let mut event = Message::with_data(Bytes::from_static(b"hello"));
//! event.message_annotations = Some(
//!     [("x-opt-partition-key".into(), Value::String("device-7".into()))].into_iter().collect(),
//! );
//! let payload = event.to_bytes();
//! assert_eq!(payload.len(), event.encoded_len());
//!
//! let transfer = Transfer { handle: 0, delivery_id: Some(0), ..Default::default() };
//! let mut wire = Vec::new();
//! encode_amqp_frame(&mut wire, 1, &transfer.into(), &payload, Form::Compact);
//!
//! let mut received = BytesMut::from(&wire[..]);
//! let frame = split_frame(&mut received, 65536)?.expect("a whole frame");
//! let Frame::Amqp { channel: 1, performative: Performative::Transfer(t), payload } = Frame::decode(&frame)?
//! else {
//!     panic!("not a transfer")
//! };
//! assert_eq!(t.delivery_id, Some(0));
//! let decoded = Message::decode_all(&payload)?;
//! assert_eq!(decoded, event);
//! let Body::Data(sections) = &decoded.body else { panic!() };
//! assert_eq!(&sections[0][..], b"hello");
//! # Ok::<(), eventhubs_proto::codec::DecodeError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod checkpoint;
pub mod client;
pub mod codec;
pub mod engine;
pub mod eventhubs;
pub mod http;
pub mod identity;
pub mod management;
pub mod processor;
pub mod storage;
mod xml;
