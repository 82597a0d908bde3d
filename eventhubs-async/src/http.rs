//! An HTTP/1.1 client for Azure's REST APIs, running the core's sans-IO
//! [`Exchange`] over the runtime's TCP and this crate's TLS.
//!
//! [`HttpClient::send`] takes an [`http::Request`] with a [`Bytes`] body
//! and returns the whole [`http::Response`]. Connections are kept per
//! `(scheme, host, port)` for reuse while the server allows (its
//! `Keep-Alive: timeout`, at most [`HttpOptions::with_idle_timeout`]); a
//! request that fails on a reused connection before any byte of a reply
//! came back (the server closed it while idle) is sent once more on a
//! fresh connection. Time-outs bound each connect and each whole request.
//! Errors say what failed: name resolution, a refused connection, the TLS
//! certificate, a time-out, or a malformed reply.
//!
//! URLs are logged without their query, which may hold a SAS signature;
//! headers are never logged.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::http::Exchange;
/// The HTTP types in this module's signatures, from the client core.
pub use eventhubs_proto::http::{HttpError, Limits, RequestError};
use futures_io::AsyncRead;
use futures_util::future::{select, Either};
use futures_util::{AsyncReadExt, AsyncWriteExt};
use http::{Request, Response, Uri};
use tracing::{debug, Instrument};

use crate::runtime::Runtime;
use crate::transport::{self, BoxedStream, Endpoint, TransportError, TransportOptions};

/// How an [`HttpClient`] connects, waits and reuses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    connect_timeout: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    limits: Limits,
    tls: TransportOptions,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_idle_per_host: 8,
            limits: Limits::default(),
            tls: TransportOptions::default(),
        }
    }
}

impl HttpOptions {
    /// The longest a TCP connect plus TLS handshake may take. Default 10 s.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The longest a whole request may take, connect and retry included.
    /// Default 60 s.
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// The longest an idle connection is kept (shorter when the server
    /// says so in `Keep-Alive: timeout=N`). Default 30 s.
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Idle connections kept per host; 0 turns reuse off. Default 8.
    pub fn with_max_idle_per_host(mut self, n: usize) -> Self {
        self.max_idle_per_host = n;
        self
    }

    /// Limits on the replies (head, header count, body).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The trust anchors for HTTPS, as for the AMQP transport (the
    /// `webpki-roots` plus any certificates added there); only its TLS
    /// settings are used.
    pub fn with_tls(mut self, tls: TransportOptions) -> Self {
        self.tls = tls;
        self
    }

    /// The connect time-out.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The request time-out.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpClientError {
    /// The URL cannot be requested (not http or https, no host).
    #[error("cannot request {url}: {reason}")]
    InvalidUrl {
        /// The URL, without its query.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The request cannot be written as HTTP/1.1.
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    /// The host name did not resolve.
    #[error("cannot resolve host {host:?}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// Nothing listens there.
    #[error("connection to {endpoint} refused")]
    Refused {
        /// Where.
        endpoint: Endpoint,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// TCP could not connect for another reason (unreachable, reset).
    #[error("TCP connect to {endpoint} failed: {source}")]
    Connect {
        /// Where.
        endpoint: Endpoint,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// TCP and TLS were not up within the connect time-out.
    #[error("connect to {endpoint} timed out after {after:?}")]
    ConnectTimeout {
        /// Where.
        endpoint: Endpoint,
        /// The time-out.
        after: Duration,
    },
    /// TLS failed: a rejected certificate, or the handshake.
    #[error(transparent)]
    Tls(TransportError),
    /// No complete response within the request time-out.
    #[error("{method} {url} timed out after {after:?}")]
    Timeout {
        /// The method.
        method: String,
        /// The URL, without its query.
        url: String,
        /// The time-out.
        after: Duration,
    },
    /// Reading or writing the connection failed.
    #[error("I/O error with {endpoint}: {source}")]
    Io {
        /// Where.
        endpoint: Endpoint,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The reply is not acceptable HTTP/1.1, exceeds the limits, or the
    /// connection ended before it did.
    #[error("bad HTTP reply from {endpoint}: {source}")]
    Protocol {
        /// Where.
        endpoint: Endpoint,
        /// What was wrong.
        #[source]
        source: HttpError,
    },
}

impl HttpClientError {
    /// True for either time-out.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            HttpClientError::Timeout { .. } | HttpClientError::ConnectTimeout { .. }
        )
    }

    /// True when no connection could be made (resolve, refused, connect,
    /// TLS, connect time-out): the request never reached the server.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            HttpClientError::Resolve { .. }
                | HttpClientError::Refused { .. }
                | HttpClientError::Connect { .. }
                | HttpClientError::ConnectTimeout { .. }
                | HttpClientError::Tls(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    tls: bool,
    host: String,
    port: u16,
}

struct Idle {
    stream: BoxedStream,
    since: Instant,
    keep_for: Duration,
}

/// Where a request goes.
struct Target {
    key: PoolKey,
    /// `scheme://authority/path`: the URL as logged.
    shown: String,
}

impl Target {
    fn of(uri: &Uri) -> Result<Self, HttpClientError> {
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        );
        let invalid = |reason| HttpClientError::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(_) => return Err(invalid("only http and https are supported")),
            None => return Err(invalid("the URL must be absolute (http:// or https://)")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target {
            key: PoolKey { tls, host, port },
            shown,
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.key.host.clone(), self.key.port)
    }
}

struct Inner {
    options: HttpOptions,
    tls: Arc<rustls::ClientConfig>,
    pool: Mutex<HashMap<PoolKey, Vec<Idle>>>,
}

/// An HTTP/1.1 client with a small per-host keep-alive pool. Cheap to
/// clone: clones share the pool.
///
/// Cancellation: dropping the future of [`send`](Self::send) closes its
/// connection (it is not put back in the pool, as its state is unknown);
/// a request already written may have reached the server.
pub struct HttpClient<R: Runtime> {
    runtime: R,
    inner: Arc<Inner>,
}

impl<R: Runtime> Clone for HttpClient<R> {
    fn clone(&self) -> Self {
        HttpClient {
            runtime: self.runtime.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for HttpClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.inner.options)
            .field("idle_connections", &self.idle_connections())
            .finish()
    }
}

/// Runs `f`, giving up after `after`.
async fn within<R: Runtime, T>(rt: &R, after: Duration, f: impl Future<Output = T>) -> Option<T> {
    let sleep = rt.sleep(after);
    match select(pin!(f), sleep).await {
        Either::Left((t, _)) => Some(t),
        Either::Right(_) => None,
    }
}

/// Whether a pooled connection still looks open: a read would wait. A
/// server that closed it (EOF) or sent something unasked makes it unusable.
fn still_open(stream: &mut BoxedStream) -> bool {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let mut byte = [0u8; 1];
    matches!(
        Pin::new(stream).poll_read(&mut cx, &mut byte),
        Poll::Pending
    )
}

/// Is `host` an IP address literal (so it needs no resolution)?
fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

fn connect_error(endpoint: &Endpoint, e: io::Error) -> HttpClientError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        return HttpClientError::Refused {
            endpoint: endpoint.clone(),
            source: e,
        };
    }
    // Socket errors carry an OS error code; resolver failures do not
    // (std and async-std report them as custom errors).
    if !is_ip(&endpoint.host) && e.raw_os_error().is_none() && e.kind() != io::ErrorKind::TimedOut {
        return HttpClientError::Resolve {
            host: endpoint.host.clone(),
            source: e,
        };
    }
    HttpClientError::Connect {
        endpoint: endpoint.clone(),
        source: e,
    }
}

impl<R: Runtime> HttpClient<R> {
    /// A client with default options.
    pub fn new(runtime: R) -> Result<Self, HttpClientError> {
        Self::with_options(runtime, HttpOptions::default())
    }

    /// A client with `options`. Fails when the TLS trust anchors are
    /// unusable.
    pub fn with_options(runtime: R, options: HttpOptions) -> Result<Self, HttpClientError> {
        let tls = options.tls.tls_config().map_err(HttpClientError::Tls)?;
        Ok(HttpClient {
            runtime,
            inner: Arc::new(Inner {
                options,
                tls,
                pool: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The runtime it connects and sleeps on.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The options.
    pub fn options(&self) -> &HttpOptions {
        &self.inner.options
    }

    /// Idle connections in the pool, all hosts.
    pub fn idle_connections(&self) -> usize {
        let pool = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pool.values().map(Vec::len).sum()
    }

    /// Sends `request` (an absolute `http://` or `https://` URI) and
    /// returns the whole response, whatever its status.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpClientError> {
        let target = Target::of(request.uri())?;
        let method = request.method().to_string();
        let span = tracing::debug_span!("http", method = %method, url = %target.shown);
        let after = self.inner.options.request_timeout;
        let shown = target.shown.clone();
        let work = self.exchange(target, request).instrument(span);
        match within(&self.runtime, after, work).await {
            Some(result) => result,
            None => Err(HttpClientError::Timeout {
                method,
                url: shown,
                after,
            }),
        }
    }

    async fn exchange(
        &self,
        target: Target,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpClientError> {
        let limits = self.inner.options.limits;
        let mut exchange = Exchange::new(&request, limits)?;
        let (stream, reused) = match self.take_idle(&target.key) {
            Some(stream) => (stream, true),
            None => (self.connect(&target).await?, false),
        };
        let result = match run(stream, &mut exchange, &target).await {
            Err(e) if exchange.retry_on_fresh_connection(reused) => {
                debug!(error = %e, "reused connection failed before any reply; retrying once on a fresh connection");
                exchange = Exchange::new(&request, limits)?;
                let stream = self.connect(&target).await?;
                run(stream, &mut exchange, &target).await
            }
            other => other,
        };
        let (response, stream) = result?;
        debug!(status = response.status().as_u16(), reused, "response");
        self.put_idle(&target.key, &exchange, stream);
        Ok(response)
    }

    async fn connect(&self, target: &Target) -> Result<BoxedStream, HttpClientError> {
        let endpoint = target.endpoint();
        let after = self.inner.options.connect_timeout;
        let work = async {
            let tcp = self
                .runtime
                .connect_tcp(endpoint.host.clone(), endpoint.port)
                .await
                .map_err(|e| connect_error(&endpoint, e))?;
            let stream: BoxedStream = if target.key.tls {
                Box::new(
                    transport::tls_handshake(tcp, &endpoint.host, self.inner.tls.clone())
                        .await
                        .map_err(HttpClientError::Tls)?,
                )
            } else {
                Box::new(tcp)
            };
            debug!(%endpoint, tls = target.key.tls, "connected");
            Ok(stream)
        };
        match within(&self.runtime, after, work).await {
            Some(result) => result,
            None => Err(HttpClientError::ConnectTimeout { endpoint, after }),
        }
    }

    fn take_idle(&self, key: &PoolKey) -> Option<BoxedStream> {
        let mut pool = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let idle = pool.get_mut(key)?;
        while let Some(mut c) = idle.pop() {
            if c.since.elapsed() < c.keep_for && still_open(&mut c.stream) {
                return Some(c.stream);
            }
        }
        None
    }

    fn put_idle(&self, key: &PoolKey, exchange: &Exchange, stream: BoxedStream) {
        let options = &self.inner.options;
        if !exchange.reusable() || options.max_idle_per_host == 0 {
            return;
        }
        // Give the connection up a second before the server would.
        let keep_for = exchange
            .keep_alive_timeout()
            .map_or(options.idle_timeout, |t| {
                options
                    .idle_timeout
                    .min(t.saturating_sub(Duration::from_secs(1)))
            });
        if keep_for.is_zero() {
            return;
        }
        let mut pool = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let idle = pool.entry(key.clone()).or_default();
        idle.push(Idle {
            stream,
            since: Instant::now(),
            keep_for,
        });
        if idle.len() > options.max_idle_per_host {
            idle.remove(0);
        }
    }
}

/// Writes the request and reads until the exchange has its response.
async fn run(
    mut stream: BoxedStream,
    exchange: &mut Exchange,
    target: &Target,
) -> Result<(Response<Bytes>, BoxedStream), HttpClientError> {
    let io_error = |source| HttpClientError::Io {
        endpoint: target.endpoint(),
        source,
    };
    let protocol = |source| HttpClientError::Protocol {
        endpoint: target.endpoint(),
        source,
    };
    if let Some(bytes) = exchange.poll_transmit() {
        stream.write_all(&bytes).await.map_err(io_error)?;
        stream.flush().await.map_err(io_error)?;
    }
    const READ: usize = 16 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(READ);
    loop {
        let filled = buf.len();
        buf.resize(filled + READ, 0);
        let n = stream.read(&mut buf[filled..]).await.map_err(io_error)?;
        buf.truncate(filled + n);
        if n == 0 {
            exchange.handle_eof().map_err(protocol)?;
        } else {
            let consumed = exchange.handle_input(&buf).map_err(protocol)?;
            buf.drain(..consumed);
        }
        if let Some(response) = exchange.poll_response() {
            return Ok((response, stream));
        }
        if n == 0 {
            // handle_eof either completes the response or fails.
            return Err(protocol(HttpError::UnexpectedEof {
                during: "in the body",
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::Cursor;

    /// A connection with nothing to read yet.
    struct Quiet;

    impl AsyncRead for Quiet {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    impl futures_io::AsyncWrite for Quiet {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn pooled_connections_are_checked_before_reuse() {
        let mut quiet: BoxedStream = Box::new(Quiet);
        assert!(still_open(&mut quiet));
        let mut closed: BoxedStream = Box::new(Cursor::new(Vec::new()));
        assert!(!still_open(&mut closed), "EOF: the server closed it");
        let mut chatty: BoxedStream = Box::new(Cursor::new(b"HTTP/1.1 408".to_vec()));
        assert!(!still_open(&mut chatty), "bytes nobody asked for");
    }

    #[test]
    fn targets_and_connect_errors() {
        let t = Target::of(&"https://[::1]/c/b?sig=x".parse().unwrap()).unwrap();
        assert_eq!(
            t.key,
            PoolKey {
                tls: true,
                host: "::1".into(),
                port: 443
            }
        );
        assert_eq!(t.shown, "https://[::1]/c/b");
        let t = Target::of(&"http://h:8080".parse().unwrap()).unwrap();
        assert_eq!((t.key.port, t.key.tls), (8080, false));
        let e = Endpoint::new("h.example", 1);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            connect_error(&e, refused),
            HttpClientError::Refused { .. }
        ));
        let resolver = io::Error::other("failed to lookup address information");
        assert!(matches!(
            connect_error(&e, resolver),
            HttpClientError::Resolve { .. }
        ));
        let ip = Endpoint::new("10.0.0.1", 1);
        let other = io::Error::other("odd");
        assert!(matches!(
            connect_error(&ip, other),
            HttpClientError::Connect { .. }
        ));
        let unreachable = io::Error::from_raw_os_error(113);
        assert!(matches!(
            connect_error(&e, unreachable),
            HttpClientError::Connect { .. }
        ));
    }
}
