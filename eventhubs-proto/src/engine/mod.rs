//! The sans-IO AMQP 1.0 engine: bytes in, events and bytes out.
//!
//! This first layer is the connection (2.4) with its SASL prelude (5.3);
//! sessions and links build on [`connection::Event::Frame`].

pub mod connection;
pub mod error;

pub use connection::{Connection, ConnectionConfig, Event, SaslConfig, SaslMechanism, Side};
pub use error::ConnectionError;
