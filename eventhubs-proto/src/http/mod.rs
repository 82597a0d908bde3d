//! A sans-IO HTTP/1.1 exchange (RFC 9112), for Azure's REST APIs (Blob
//! Storage, Entra ID tokens, hub management).
//!
//! Requests and responses are the [`http`] crate's types with
//! [`bytes::Bytes`] bodies. Nothing here touches a socket or a clock: the
//! caller writes the bytes [`Exchange::poll_transmit`] gives and feeds back
//! what it reads.
//!
//! - [`write_request`], [`ResponseParser`] and [`Exchange`]: the client
//!   side. Responses are framed by `Content-Length`, chunked coding (with
//!   trailers) or the end of the connection; `HEAD`, `1xx`, `204` and `304`
//!   have no body; `Connection: close`, HTTP/1.0 and read-to-end bodies end
//!   the connection's reuse.
//! - [`RequestParser`] and [`write_response`]: the server side, on the same
//!   body framing ([`BodyDecoder`]).
//! - [`date`]: HTTP dates to and from Unix seconds.
//!
//! Every size is bounded by [`Limits`]; hostile bytes give an
//! [`HttpError`], never a panic or an allocation beyond the limits.
//!
//! ```
//! use bytes::Bytes;
//! use eventhubs_proto::http::{Exchange, Limits};
//!
//! let request = http::Request::get("http://127.0.0.1:10000/devstoreaccount1?comp=list")
//!     .body(Bytes::new())?;
//! let mut exchange = Exchange::new(&request, Limits::default())?;
//! let wire = exchange.poll_transmit().expect("the request");
//! assert!(wire.starts_with(b"GET /devstoreaccount1?comp=list HTTP/1.1\r\nhost: 127.0.0.1:10000\r\n"));
//!
//! let reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
//! assert_eq!(exchange.handle_input(reply)?, reply.len());
//! let response = exchange.poll_response().expect("complete");
//! assert_eq!(response.status(), 200);
//! assert_eq!(&response.body()[..], b"hello");
//! assert!(exchange.reusable());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
pub mod date;
mod error;
mod framing;
mod server;

pub use client::{write_request, Exchange, ResponseParser, Trailers};
pub use error::{HttpError, RequestError};
pub use framing::{BodyDecoder, BodyLength, Limits};
pub use server::{write_response, RequestParser};

#[cfg(test)]
mod tests;
