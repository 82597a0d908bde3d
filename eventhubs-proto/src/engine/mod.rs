//! The sans-IO AMQP 1.0 engine: bytes in, events and bytes out.
//!
//! [`Connection`] is the whole engine for one connection, for either side:
//! protocol headers, SASL, open/close, heartbeats and idle time-out
//! (`connection.rs`), and its sessions and links with their windows, credit,
//! deliveries and dispositions (`session.rs`). Commands name sessions by
//! local channel and links by [`LinkId`].

pub mod connection;
pub mod error;
mod session;

pub use connection::{Connection, ConnectionConfig, Event, SaslConfig, SaslMechanism, Side};
pub use error::{ConnectionError, SendError};
pub use session::{LinkConfig, LinkId, SessionConfig, DEFAULT_MAX_MESSAGE_SIZE};
