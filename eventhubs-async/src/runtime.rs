//! What a runtime adapter provides: TCP connects, sleeping and spawning.
//! Everything else (the driver, the Hub API, transports, persistence) is
//! shared by the adapters.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An async runtime, as the client needs it.
pub trait Runtime: Clone + Default + Send + Sync + 'static {
    /// A connected TCP stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Connects TCP to `host:port`.
    fn connect_tcp(&self, host: String, port: u16) -> BoxFuture<io::Result<Self::Tcp>>;

    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;

    /// Runs `future` in the background. Fails when there is no runtime to
    /// run it on (e.g. called outside a tokio runtime).
    fn spawn(&self, future: BoxFuture<()>) -> io::Result<()>;
}
