//! What a runtime adapter provides: TCP connects, sleeping, spawning, and
//! running blocking work off the executor. Everything else (the driver,
//! the Hub API, transports, persistence) is shared by the adapters.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A piece of blocking work for [`Runtime::spawn_blocking`].
pub type BlockingJob = Box<dyn FnOnce() + Send + 'static>;

/// An async runtime, as the client needs it. `Default` is the ambient
/// runtime (the one the calling task runs on).
pub trait Runtime: Clone + Default + Send + Sync + 'static {
    /// A connected TCP stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Connects TCP to `host:port`.
    fn connect_tcp(&self, host: String, port: u16) -> BoxFuture<io::Result<Self::Tcp>>;

    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;

    /// Runs `future` in the background. Fails when there is no runtime to
    /// run it on (e.g. called outside a tokio runtime), with an error that
    /// says so.
    fn spawn(&self, future: BoxFuture<()>) -> io::Result<()>;

    /// Runs `job`, which may block (file I/O, `fsync`), on a thread where
    /// blocking does not hold up other tasks; the future completes when it
    /// has run. Fails when there is no runtime to run it on.
    fn spawn_blocking(&self, job: BlockingJob) -> BoxFuture<io::Result<()>>;
}

/// Runs `f` through [`Runtime::spawn_blocking`] and returns its result.
///
/// Dropping the future does not stop `f` once it has started; its result
/// is then dropped.
pub async fn blocking<R: Runtime, T: Send + 'static>(
    rt: &R,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = futures_channel::oneshot::channel();
    rt.spawn_blocking(Box::new(move || {
        let _ = tx.send(f());
    }))
    .await?;
    rx.await
        .map_err(|_| io::Error::other("the blocking job did not complete (it panicked?)"))
}

/// A host name that did not resolve. Adapters return it from
/// [`Runtime::connect_tcp`] inside the `io::Error`
/// ([`ResolveError::into_io`]), so that a DNS failure is reported as
/// such, not as any other I/O error.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of {host} failed: {source}")]
pub struct ResolveError {
    /// The host name.
    pub host: String,
    /// The resolver's error.
    #[source]
    pub source: io::Error,
}

impl ResolveError {
    /// `source`, the failure to resolve `host`.
    pub fn new(host: impl Into<String>, source: io::Error) -> Self {
        ResolveError {
            host: host.into(),
            source,
        }
    }

    /// As an `io::Error` (of kind `NotFound`) carrying this error.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, self)
    }

    /// The resolution failure inside `e`, if it is one.
    pub fn find(e: &io::Error) -> Option<&ResolveError> {
        e.get_ref()?.downcast_ref::<ResolveError>()
    }
}
