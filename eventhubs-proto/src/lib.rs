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
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod codec;
pub mod engine;
pub mod eventhubs;
