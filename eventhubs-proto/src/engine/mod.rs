//! The sans-IO AMQP 1.0 engine: bytes in, events and bytes out.
//!
//! [`Connection`] is the whole engine for one connection, for either side:
//! protocol headers, open/close, heartbeats and idle time-out
//! (`connection.rs`), SASL (`sasl.rs`), and its sessions and links with
//! their windows, credit, deliveries and dispositions (`session.rs`). Sessions and links are
//! commanded through short-lived borrowed handles
//! ([`Connection::session`] gives a [`SessionMut`], [`Connection::link`] a
//! [`LinkMut`]), and every endpoint's state is a pair of halves, ours and
//! the peer's ([`EndpointState`]).
//!
//! Errors say whose fault they are: [`ConnectionError`] is the peer's (bytes
//! that do not decode, a protocol violation) and ends the connection with
//! a close that explains it; [`UsageError`] and [`SendError`] are the
//! caller's and change nothing on the wire.

pub mod connection;
mod endpoint;
pub mod error;
mod handle;
mod sasl;
mod session;

pub use connection::{Connection, ConnectionConfig, Event, SaslConfig, SaslMechanism, Side};
pub use endpoint::{EndpointState, Half};
pub use error::{ConnectionError, SendError, UsageError};
pub use handle::{LinkMut, SessionMut, Settlement};
pub use session::{LinkConfig, LinkId, SessionConfig, DEFAULT_MAX_MESSAGE_SIZE};
