//! AMQP over WebSocket (the OASIS "AMQP WebSocket Binding" as Azure serves
//! it) as a plain byte stream on [`futures_io`]: [`WsByteStream`] turns an
//! upgraded WebSocket connection into the `AsyncRead + AsyncWrite` stream an
//! AMQP engine reads and writes, for a client and for a server alike. The
//! handshakes stay with their callers (the client's `establish`, the
//! emulator's listener); this crate is the part both share.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::{Sink, Stream};
use tracing::debug;

/// The WebSocket path of the AMQP endpoint.
pub const WEBSOCKET_PATH: &str = "/$servicebus/websocket";

/// The WebSocket subprotocol for AMQP 1.0 (binary frames).
pub const WEBSOCKET_SUBPROTOCOL: &str = "AMQPWSB10";

/// A WebSocket connection as a byte stream: each write goes out as one
/// binary message; reads return the bytes of binary messages in order.
///
/// Pings are answered by the WebSocket layer and pongs ignored; a close
/// message or the end of the connection reads as end of stream; a text
/// message is an [`io::ErrorKind::InvalidData`] error, as AMQP never
/// travels in text. Both the client (`eventhubs_async::transport::establish`)
/// and a server (the emulator's listener) use it.
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    unread: Bytes,
    read_closed: bool,
}

impl<S> WsByteStream<S> {
    /// Wraps an upgraded WebSocket connection.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsByteStream {
            ws,
            unread: Bytes::new(),
            read_closed: false,
        }
    }

    /// The WebSocket connection.
    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.ws
    }
}

impl<S> fmt::Debug for WsByteStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsByteStream")
            .field("unread", &self.unread.len())
            .field("read_closed", &self.read_closed)
            .finish()
    }
}

fn ws_to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        }
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if !self.unread.is_empty() {
                let n = buf.len().min(self.unread.len());
                let chunk = self.unread.split_to(n);
                buf[..n].copy_from_slice(&chunk);
                return Poll::Ready(Ok(n));
            }
            if self.read_closed {
                return Poll::Ready(Ok(0));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.unread = data,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    debug!(?frame, "WebSocket closed by peer");
                    self.read_closed = true;
                }
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "WebSocket text message on an AMQP stream: AMQP travels in binary messages only",
                    )))
                }
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) | None => {
                    self.read_closed = true;
                }
                Some(Err(e)) => return Poll::Ready(Err(ws_to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(ws_to_io)?;
        ws.as_mut()
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_to_io)?;
        // Start it on its way now, so that a caller that writes and then
        // only reads still gets its bytes out; an error shows on the next
        // write or flush.
        let _ = ws.poll_flush(cx);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_to_io)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(ws_to_io(e))),
        }
    }
}
