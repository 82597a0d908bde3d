//! The emulator's TLS and AMQP-over-WebSocket listeners.
//!
//! Microsoft's emulator serves plain AMQP only; these let clients test the
//! service's other transports against the same broker:
//!
//! - TLS (`--tls-listen`): AMQP over TLS, as the service serves on 5671.
//! - WebSocket (`--ws-listen`): AMQP in binary WebSocket messages at
//!   `/$servicebus/websocket`, subprotocol `AMQPWSB10` required.
//! - WebSocket over TLS (`--wss-listen`): both, as the service serves on 443.
//!
//! TLS uses `--tls-cert` / `--tls-key` (PEM). The stack is the client's
//! (rustls on ring through futures-rustls, async-tungstenite, and
//! [`eventhubs_ws::WsByteStream`]) run on tokio through
//! tokio-util's compat layer, so the workspace compiles one TLS and one
//! WebSocket implementation, and the client's adapter is exercised from
//! both ends.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use eventhubs_ws::{WsByteStream, WEBSOCKET_PATH, WEBSOCKET_SUBPROTOCOL};
use futures_rustls::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tracing::{info, warn};

use crate::config::{EmulatorConfig, DEFAULT_KEY, DEFAULT_KEY_NAME};
use crate::server::{serve_stream, Emulator, Shared};

/// How long a client has to finish its TLS and WebSocket handshakes.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerError {
    /// A PEM file could not be read.
    #[error("cannot read TLS {what} file {path}: {source}")]
    ReadFile {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The certificate PEM holds no usable certificate.
    #[error("TLS certificate PEM: {reason}")]
    Certificate {
        /// What is wrong.
        reason: String,
    },
    /// The key PEM holds no usable private key.
    #[error("TLS private key PEM: {reason}")]
    PrivateKey {
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("TLS certificate and key rejected: {reason}")]
    Tls {
        /// rustls' reason.
        reason: String,
    },
    /// A TLS listener was asked for without a certificate and key.
    #[error("{listener} needs a TLS certificate and key (--tls-cert and --tls-key)")]
    NeedsIdentity {
        /// Which listener.
        listener: &'static str,
    },
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The emulator's thread or runtime could not start.
    #[error("emulator failed to start: {0}")]
    Start(#[source] io::Error),
}

/// A server certificate chain and private key, ready for the TLS
/// listeners. `Debug` shows neither.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// From PEM text: `cert_pem` holds the chain (leaf first), `key_pem`
    /// the private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ListenerError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ListenerError::Certificate {
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(ListenerError::Certificate {
                reason: "no CERTIFICATE section found".into(),
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| ListenerError::PrivateKey {
                reason: e.to_string(),
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| ListenerError::Tls {
            reason: e.to_string(),
        };
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(tls)?;
        Ok(TlsIdentity {
            config: Arc::new(config),
        })
    }

    /// From PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ListenerError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| ListenerError::ReadFile {
                what,
                path: path.to_owned(),
                source,
            })
        };
        TlsIdentity::from_pem(&read("certificate", cert)?, &read("private key", key)?)
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

/// Which extra listeners to open, and where.
#[derive(Debug, Clone, Default)]
pub struct ListenerOptions {
    /// AMQP over TLS.
    pub tls_listen: Option<SocketAddr>,
    /// AMQP over plain WebSocket.
    pub ws_listen: Option<SocketAddr>,
    /// AMQP over WebSocket over TLS.
    pub wss_listen: Option<SocketAddr>,
    /// The certificate and key of the TLS listeners.
    pub identity: Option<TlsIdentity>,
    /// HTTP: the management API and the health check
    /// ([`crate::http_server`]).
    pub http_listen: Option<SocketAddr>,
    /// When the HTTP address cannot be bound, go on without it (with a
    /// warning) rather than fail: for the binary's default address.
    pub http_optional: bool,
}

impl ListenerOptions {
    /// Binds the listeners. A TLS one without an identity is an error.
    pub fn bind(self) -> Result<Listeners, ListenerError> {
        let bind = |addr: SocketAddr| -> Result<std::net::TcpListener, ListenerError> {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ListenerError::Bind { addr, source })?;
            Ok(l)
        };
        let with_identity = |addr: Option<SocketAddr>, listener: &'static str| {
            addr.map(|addr| {
                let identity = self
                    .identity
                    .clone()
                    .ok_or(ListenerError::NeedsIdentity { listener })?;
                Ok::<_, ListenerError>((bind(addr)?, identity))
            })
            .transpose()
        };
        let http = match self.http_listen.map(bind).transpose() {
            Ok(l) => l,
            Err(e) if self.http_optional => {
                warn!(error = %e, "no HTTP listener (management API and health check)");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Listeners {
            tls: with_identity(self.tls_listen, "the TLS listener")?,
            wss: with_identity(self.wss_listen, "the WebSocket-over-TLS listener")?,
            ws: self.ws_listen.map(bind).transpose()?,
            http,
        })
    }
}

/// Command-line flags of the extra listeners, as `main` collects them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerArgs {
    /// `--tls-listen ADDR`.
    pub tls_listen: Option<SocketAddr>,
    /// `--ws-listen ADDR`.
    pub ws_listen: Option<SocketAddr>,
    /// `--wss-listen ADDR`.
    pub wss_listen: Option<SocketAddr>,
    /// `--tls-cert PEM`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key PEM`.
    pub tls_key: Option<PathBuf>,
    /// `--http-listen ADDR` or `--http-listen off`; unset means
    /// [`DEFAULT_HTTP_LISTEN`], skipped with a warning if it is taken.
    pub http_listen: Option<Option<SocketAddr>>,
}

/// Where the binary serves HTTP unless told otherwise: Microsoft's
/// emulator's health check port.
pub const DEFAULT_HTTP_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    5300,
));

impl ListenerArgs {
    /// The usage text of these flags.
    pub const USAGE: &'static str =
        "[--tls-listen ADDR] [--ws-listen ADDR] [--wss-listen ADDR] [--tls-cert PEM --tls-key PEM] [--http-listen ADDR|off]";

    /// Takes `flag` and its value from `rest` if it is one of these flags:
    /// `Ok(true)` when taken, `Ok(false)` when not one of them, `Err` with a
    /// message when its value is missing or not an address.
    pub fn take(
        &mut self,
        flag: &str,
        rest: &mut impl Iterator<Item = String>,
    ) -> Result<bool, String> {
        let addr = |rest: &mut dyn Iterator<Item = String>| -> Result<SocketAddr, String> {
            let v = rest.next().ok_or(format!("{flag} needs an address"))?;
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not an address such as 127.0.0.1:5671"))
        };
        let path = |rest: &mut dyn Iterator<Item = String>| -> Result<PathBuf, String> {
            rest.next()
                .map(PathBuf::from)
                .ok_or(format!("{flag} needs a file"))
        };
        match flag {
            "--tls-listen" => self.tls_listen = Some(addr(rest)?),
            "--ws-listen" => self.ws_listen = Some(addr(rest)?),
            "--wss-listen" => self.wss_listen = Some(addr(rest)?),
            "--tls-cert" => self.tls_cert = Some(path(rest)?),
            "--tls-key" => self.tls_key = Some(path(rest)?),
            "--http-listen" => {
                let v = rest
                    .next()
                    .ok_or(format!("{flag} needs an address or off"))?;
                self.http_listen = Some(if v.eq_ignore_ascii_case("off") {
                    None
                } else {
                    Some(v.parse().map_err(|_| {
                        format!("{flag}: {v:?} is not an address such as 127.0.0.1:5300, or off")
                    })?)
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Loads the certificate and key and checks the flags fit together.
    pub fn into_options(self) -> Result<ListenerOptions, ListenerError> {
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsIdentity::from_pem_files(cert, key)?),
            (Some(_), None) => {
                return Err(ListenerError::PrivateKey {
                    reason: "--tls-cert needs --tls-key".into(),
                })
            }
            (None, Some(_)) => {
                return Err(ListenerError::Certificate {
                    reason: "--tls-key needs --tls-cert".into(),
                })
            }
            (None, None) => None,
        };
        Ok(ListenerOptions {
            tls_listen: self.tls_listen,
            ws_listen: self.ws_listen,
            wss_listen: self.wss_listen,
            identity,
            http_listen: self.http_listen.unwrap_or(Some(DEFAULT_HTTP_LISTEN)),
            http_optional: self.http_listen.is_none(),
        })
    }
}

/// Bound extra listeners, served by [`crate::server::serve_with`].
#[derive(Debug, Default)]
pub struct Listeners {
    tls: Option<(std::net::TcpListener, TlsIdentity)>,
    ws: Option<std::net::TcpListener>,
    wss: Option<(std::net::TcpListener, TlsIdentity)>,
    http: Option<std::net::TcpListener>,
}

/// Where the extra listeners listen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerAddrs {
    /// AMQP over TLS.
    pub tls: Option<SocketAddr>,
    /// AMQP over plain WebSocket.
    pub ws: Option<SocketAddr>,
    /// AMQP over WebSocket over TLS.
    pub wss: Option<SocketAddr>,
    /// HTTP: the management API and the health check.
    pub http: Option<SocketAddr>,
}

impl Listeners {
    /// Their addresses.
    pub fn addrs(&self) -> ListenerAddrs {
        let addr = |l: &std::net::TcpListener| l.local_addr().ok();
        ListenerAddrs {
            tls: self.tls.as_ref().and_then(|(l, _)| addr(l)),
            ws: self.ws.as_ref().and_then(addr),
            wss: self.wss.as_ref().and_then(|(l, _)| addr(l)),
            http: self.http.as_ref().and_then(addr),
        }
    }

    /// Starts an accept loop per listener on the current tokio runtime.
    pub(crate) fn spawn(self, shared: &Arc<Shared>) -> io::Result<()> {
        if let Some((l, identity)) = self.tls {
            let l = TcpListener::from_std(l)?;
            tokio::spawn(accept_loop(
                l,
                shared.clone(),
                Wrap::Tls(identity.acceptor()),
            ));
        }
        if let Some(l) = self.ws {
            let l = TcpListener::from_std(l)?;
            tokio::spawn(accept_loop(l, shared.clone(), Wrap::WebSocket));
        }
        if let Some((l, identity)) = self.wss {
            let l = TcpListener::from_std(l)?;
            tokio::spawn(accept_loop(
                l,
                shared.clone(),
                Wrap::TlsWebSocket(identity.acceptor()),
            ));
        }
        if let Some(l) = self.http {
            let l = TcpListener::from_std(l)?;
            tokio::spawn(crate::http_server::accept_loop(l, shared.clone()));
        }
        Ok(())
    }
}

#[derive(Clone)]
enum Wrap {
    Tls(TlsAcceptor),
    WebSocket,
    TlsWebSocket(TlsAcceptor),
}

impl Wrap {
    fn name(&self) -> &'static str {
        match self {
            Wrap::Tls(_) => "amqps",
            Wrap::WebSocket => "ws",
            Wrap::TlsWebSocket(_) => "wss",
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, wrap: Wrap) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let Some(slot) = HandshakeSlot::take(&shared) else {
                    info!(%peer, transport = wrap.name(), "connection refused: too many unauthenticated connections");
                    continue;
                };
                let _ = socket.set_nodelay(true);
                tokio::spawn(handshake_and_serve(
                    shared.clone(),
                    socket,
                    peer,
                    wrap.clone(),
                    slot,
                ));
            }
            Err(e) => {
                // Out of descriptors and the like: back off, keep serving.
                warn!(error = %e, transport = wrap.name(), "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A TLS or WebSocket handshake in progress, counted against
/// [`Limits::max_unauthenticated`](crate::limits::Limits::max_unauthenticated)
/// with the broker's unauthenticated connections until it is dropped.
struct HandshakeSlot(Arc<Shared>);

impl HandshakeSlot {
    /// A slot, unless handshakes and unauthenticated connections already
    /// reach the bound.
    fn take(shared: &Arc<Shared>) -> Option<HandshakeSlot> {
        use std::sync::atomic::Ordering;
        let (limit, unauthenticated) = {
            let b = shared.broker.lock().expect("broker");
            (
                b.config().limits.max_unauthenticated,
                b.unauthenticated_connections(),
            )
        };
        let before = shared.handshakes.fetch_add(1, Ordering::AcqRel);
        let slot = HandshakeSlot(shared.clone());
        (before + unauthenticated < limit).then_some(slot)
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0
            .handshakes
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

async fn handshake_and_serve(
    shared: Arc<Shared>,
    socket: TcpStream,
    peer: SocketAddr,
    wrap: Wrap,
    slot: HandshakeSlot,
) {
    let name = wrap.name();
    let failed = |stage: &str, error: &dyn fmt::Display| {
        info!(%peer, transport = name, stage, %error, "handshake failed");
    };
    let timed_out = |stage: &str| failed(stage, &"timed out");
    let socket = socket.compat();
    match wrap {
        Wrap::Tls(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(tls)) => {
                    drop(slot);
                    serve_stream(shared, tls.compat(), peer, name).await
                }
                Ok(Err(e)) => failed("tls", &e),
                Err(_) => timed_out("tls"),
            }
        }
        Wrap::WebSocket => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_websocket(socket)).await {
                Ok(Ok(ws)) => {
                    drop(slot);
                    serve_stream(shared, ws.compat(), peer, name).await
                }
                Ok(Err(e)) => failed("websocket", &e),
                Err(_) => timed_out("websocket"),
            }
        }
        Wrap::TlsWebSocket(acceptor) => {
            let both = async {
                let tls = acceptor
                    .accept(socket)
                    .await
                    .map_err(|e| ("tls", e.to_string()))?;
                accept_websocket(tls)
                    .await
                    .map_err(|e| ("websocket", e.to_string()))
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, both).await {
                Ok(Ok(ws)) => {
                    drop(slot);
                    serve_stream(shared, ws.compat(), peer, name).await
                }
                Ok(Err((stage, e))) => failed(stage, &e),
                Err(_) => timed_out("tls+websocket"),
            }
        }
    }
}

/// The server side of the upgrade: path `/$servicebus/websocket` (a
/// trailing slash too, as .NET sends it), subprotocol `AMQPWSB10` offered
/// and selected.
async fn accept_websocket<S>(
    stream: S,
) -> Result<WsByteStream<S>, async_tungstenite::tungstenite::Error>
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    let ws = async_tungstenite::accept_hdr_async(stream, check_upgrade).await?;
    Ok(WsByteStream::new(ws))
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

// The signature is tungstenite's handshake `Callback`.
#[allow(clippy::result_large_err)]
fn check_upgrade(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let path = request.uri().path();
    if path != WEBSOCKET_PATH && path.strip_suffix('/') != Some(WEBSOCKET_PATH) {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "AMQP over WebSocket is served at /$servicebus/websocket",
        ));
    }
    let offered = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == WEBSOCKET_SUBPROTOCOL);
    if !offered {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol AMQPWSB10 is required",
        ));
    }
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(WEBSOCKET_SUBPROTOCOL),
    );
    Ok(response)
}

/// Builds an in-process [`Emulator`] with extra listeners:
///
/// ```no_run
/// # let (cert_pem, key_pem) = (Vec::new(), Vec::new());
/// use eventhubs_emulator::Emulator;
/// let emulator = Emulator::builder()
///     .tls(cert_pem, key_pem)
///     .websocket(true)
///     .start()
///     .expect("starts");
/// let tls = emulator.tls_addr().expect("TLS listener");
/// let wss = emulator.wss_addr().expect("WebSocket over TLS listener");
/// ```
///
/// Every listener is on 127.0.0.1 and an ephemeral port unless set.
/// `Debug` does not show the private key.
#[derive(Clone)]
pub struct EmulatorBuilder {
    config: EmulatorConfig,
    listen: SocketAddr,
    tls_pem: Option<(Vec<u8>, Vec<u8>)>,
    identity: Option<TlsIdentity>,
    tls_listen: Option<SocketAddr>,
    websocket: bool,
    ws_listen: Option<SocketAddr>,
    wss_listen: Option<SocketAddr>,
    management: bool,
    http_listen: Option<SocketAddr>,
}

impl fmt::Debug for EmulatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorBuilder")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("tls", &(self.tls_pem.is_some() || self.identity.is_some()))
            .field("tls_listen", &self.tls_listen)
            .field("websocket", &self.websocket)
            .field("ws_listen", &self.ws_listen)
            .field("wss_listen", &self.wss_listen)
            .field("management", &self.management)
            .field("http_listen", &self.http_listen)
            .finish_non_exhaustive()
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            config: EmulatorConfig::default(),
            listen: loopback(),
            tls_pem: None,
            identity: None,
            tls_listen: None,
            websocket: false,
            ws_listen: None,
            wss_listen: None,
            management: false,
            http_listen: None,
        }
    }
}

impl EmulatorBuilder {
    /// Entities and keys (default: Microsoft's emulator defaults).
    pub fn config(mut self, config: EmulatorConfig) -> Self {
        self.config = config;
        self
    }

    /// The plain AMQP listener's address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Serves AMQP over TLS with this certificate chain and key (PEM),
    /// and WebSocket over TLS too when [`EmulatorBuilder::websocket`] is on.
    /// The PEM is checked by [`EmulatorBuilder::start`].
    pub fn tls(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls_pem = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Serves AMQP over TLS with `identity`.
    pub fn tls_identity(mut self, identity: TlsIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The TLS listener's address.
    pub fn tls_listen(mut self, addr: SocketAddr) -> Self {
        self.tls_listen = Some(addr);
        self
    }

    /// Serves AMQP over WebSocket (and over WebSocket over TLS when a TLS
    /// identity is set).
    pub fn websocket(mut self, enabled: bool) -> Self {
        self.websocket = enabled;
        self
    }

    /// The plain WebSocket listener's address (turns it on).
    pub fn ws_listen(mut self, addr: SocketAddr) -> Self {
        self.ws_listen = Some(addr);
        self
    }

    /// The WebSocket-over-TLS listener's address (turns it on; needs TLS).
    pub fn wss_listen(mut self, addr: SocketAddr) -> Self {
        self.wss_listen = Some(addr);
        self
    }

    /// Serves the management API (and the health check) over HTTP, on
    /// 127.0.0.1 and an ephemeral port unless
    /// [`EmulatorBuilder::http_listen`] says where; see
    /// [`Emulator::management_endpoint`].
    pub fn management(mut self, enabled: bool) -> Self {
        self.management = enabled;
        self
    }

    /// The HTTP listener's address (turns it on).
    pub fn http_listen(mut self, addr: SocketAddr) -> Self {
        self.http_listen = Some(addr);
        self
    }

    /// Binds every listener and starts the emulator on its own thread.
    pub fn start(self) -> Result<Emulator, ListenerError> {
        let identity = match (self.identity, &self.tls_pem) {
            (Some(identity), _) => Some(identity),
            (None, Some((cert, key))) => Some(TlsIdentity::from_pem(cert, key)?),
            (None, None) => None,
        };
        let tls = identity.is_some();
        let options = ListenerOptions {
            tls_listen: self.tls_listen.or(tls.then(loopback)),
            ws_listen: self.ws_listen.or(self.websocket.then(loopback)),
            wss_listen: self.wss_listen.or((self.websocket && tls).then(loopback)),
            identity,
            http_listen: self.http_listen.or(self.management.then(loopback)),
            http_optional: false,
        };
        let listeners = options.bind()?;
        Emulator::launch(self.listen, self.config, listeners).map_err(ListenerError::Start)
    }
}

impl Emulator {
    /// A builder for an emulator with TLS and WebSocket listeners.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The AMQP-over-TLS listener's address, if one runs.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.extra.tls
    }

    /// The plain AMQP-over-WebSocket listener's address, if one runs.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.extra.ws
    }

    /// The AMQP-over-WebSocket-over-TLS listener's address, if one runs.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.extra.wss
    }

    /// The HTTP listener's address (management API, health check), if one
    /// runs.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.extra.http
    }

    /// The management API's base URL (`http://127.0.0.1:PORT`), for a
    /// hub manager beside [`Emulator::connection_string`], if the HTTP
    /// listener runs.
    pub fn management_endpoint(&self) -> Option<String> {
        self.extra.http.map(|a| format!("http://{a}"))
    }

    /// A connection string in the service's form (TLS, no
    /// `UseDevelopmentEmulator`) for hub `entity` on namespace host `host`
    /// (the name the TLS certificate carries), with the default policy.
    /// Service connection strings name no port: dial [`Emulator::tls_addr`]
    /// or [`Emulator::wss_addr`] as the transport's custom endpoint.
    pub fn service_connection_string(&self, host: &str, entity: &str) -> String {
        format!(
            "Endpoint=sb://{host}/;SharedAccessKeyName={DEFAULT_KEY_NAME};SharedAccessKey={DEFAULT_KEY};EntityPath={entity}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_pem() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn listening(addr: SocketAddr) -> bool {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
    }

    #[test]
    fn builder_opens_what_it_is_asked_for() {
        let (cert, key) = identity_pem();

        let plain = Emulator::builder().start().expect("starts");
        assert!(listening(plain.addr()));
        assert_eq!(
            (plain.tls_addr(), plain.ws_addr(), plain.wss_addr()),
            (None, None, None)
        );

        let ws_only = Emulator::builder().websocket(true).start().expect("starts");
        assert!(ws_only.ws_addr().is_some_and(listening));
        assert_eq!((ws_only.tls_addr(), ws_only.wss_addr()), (None, None));

        let tls_only = Emulator::builder()
            .tls(cert.clone(), key.clone())
            .start()
            .expect("starts");
        assert!(tls_only.tls_addr().is_some_and(listening));
        assert_eq!((tls_only.ws_addr(), tls_only.wss_addr()), (None, None));

        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let all = Emulator::builder()
            .config(EmulatorConfig::default())
            .listen(loopback)
            .tls_identity(TlsIdentity::from_pem(cert.as_bytes(), key.as_bytes()).expect("identity"))
            .tls_listen(loopback)
            .ws_listen(loopback)
            .wss_listen(loopback)
            .start()
            .expect("starts");
        let addrs = [
            all.addr(),
            all.tls_addr().expect("tls"),
            all.ws_addr().expect("ws"),
            all.wss_addr().expect("wss"),
        ];
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() != 0 && listening(*a)));
        let ports: std::collections::HashSet<u16> = addrs.iter().map(|a| a.port()).collect();
        assert_eq!(ports.len(), 4, "{addrs:?}");
        assert_eq!(
            all.service_connection_string("eventhubs.test", "eh1"),
            "Endpoint=sb://eventhubs.test/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;EntityPath=eh1"
        );
    }

    #[test]
    fn builder_errors() {
        let (cert, key) = identity_pem();
        assert!(matches!(
            Emulator::builder()
                .wss_listen(SocketAddr::from(([127, 0, 0, 1], 0)))
                .start(),
            Err(ListenerError::NeedsIdentity { .. })
        ));
        assert!(matches!(
            Emulator::builder()
                .tls("not a certificate", key.clone())
                .start(),
            Err(ListenerError::Certificate { .. })
        ));
        // The key of another certificate.
        let (_, other_key) = identity_pem();
        assert!(matches!(
            Emulator::builder().tls(cert.clone(), other_key).start(),
            Err(ListenerError::Tls { .. })
        ));
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        assert!(matches!(
            Emulator::builder()
                .ws_listen(taken.local_addr().expect("addr"))
                .start(),
            Err(ListenerError::Bind { .. })
        ));
        let dbg = format!("{:?}", Emulator::builder().tls(cert, key.clone()));
        assert!(
            !dbg.contains(key.trim()) && !dbg.contains("PRIVATE"),
            "{dbg}"
        );
    }

    fn args(list: &[&str]) -> Result<ListenerArgs, String> {
        let mut a = ListenerArgs::default();
        let mut it = list.iter().map(|s| s.to_string());
        while let Some(flag) = it.next() {
            if !a.take(&flag, &mut it)? {
                return Err(format!("unknown {flag}"));
            }
        }
        Ok(a)
    }

    #[test]
    fn flags() {
        let a = args(&[
            "--tls-listen",
            "127.0.0.1:5671",
            "--ws-listen",
            "0.0.0.0:80",
            "--wss-listen",
            "[::1]:443",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .expect("valid");
        assert_eq!(a.tls_listen, Some("127.0.0.1:5671".parse().expect("addr")));
        assert_eq!(a.ws_listen, Some("0.0.0.0:80".parse().expect("addr")));
        assert_eq!(a.wss_listen, Some("[::1]:443".parse().expect("addr")));
        assert_eq!(a.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(a.tls_key, Some(PathBuf::from("k.pem")));
        assert!(args(&["--tls-listen"])
            .expect_err("no value")
            .contains("needs an address"));
        assert!(args(&["--ws-listen", "localhost"])
            .expect_err("not an address")
            .contains("not an address"));
        assert!(args(&["--tls-cert"])
            .expect_err("no value")
            .contains("needs a file"));
        assert_eq!(args(&["--other"]), Err("unknown --other".into()));
    }

    #[test]
    fn flag_combinations() {
        let a = args(&["--tls-cert", "c.pem"]).expect("parses");
        assert!(matches!(
            a.into_options(),
            Err(ListenerError::PrivateKey { .. })
        ));
        let a = args(&["--tls-key", "k.pem"]).expect("parses");
        assert!(matches!(
            a.into_options(),
            Err(ListenerError::Certificate { .. })
        ));
        let a = args(&[
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ])
        .expect("parses");
        match a.into_options() {
            Err(e @ ListenerError::ReadFile { .. }) => {
                assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let a = args(&["--tls-listen", "127.0.0.1:0"]).expect("parses");
        let options = a.into_options().expect("no identity needed yet");
        assert!(matches!(
            options.bind(),
            Err(ListenerError::NeedsIdentity { .. })
        ));
        let a = args(&["--wss-listen", "127.0.0.1:0"]).expect("parses");
        assert!(matches!(
            a.into_options().expect("options").bind(),
            Err(ListenerError::NeedsIdentity { .. })
        ));
        let a = args(&["--ws-listen", "127.0.0.1:0"]).expect("parses");
        let bound = a.into_options().expect("options").bind().expect("binds");
        let addrs = bound.addrs();
        assert!(addrs.ws.is_some_and(|a| a.port() != 0));
        assert_eq!((addrs.tls, addrs.wss), (None, None));
    }

    #[test]
    fn bad_pem() {
        assert!(matches!(
            TlsIdentity::from_pem(b"nothing", b"nothing"),
            Err(ListenerError::Certificate { .. })
        ));
        let cert = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            TlsIdentity::from_pem(cert, b"nothing"),
            Err(ListenerError::PrivateKey { .. })
        ));
        // A key that is not one: rustls refuses the pair.
        let key = b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            TlsIdentity::from_pem(cert, key),
            Err(ListenerError::Tls { .. })
        ));
    }

    #[test]
    fn upgrade_checks() {
        let request = |path: &str, protocols: Option<&str>| {
            let mut b = Request::builder().uri(path);
            if let Some(p) = protocols {
                b = b.header("Sec-WebSocket-Protocol", p);
            }
            b.body(()).expect("request")
        };
        let ok = check_upgrade(
            &request("/$servicebus/websocket", Some("amqp, AMQPWSB10")),
            Response::new(()),
        )
        .expect("accepted");
        assert_eq!(
            ok.headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.as_bytes()),
            Some(&b"AMQPWSB10"[..])
        );
        assert!(check_upgrade(
            &request("/$servicebus/websocket/", Some("AMQPWSB10")),
            Response::new(())
        )
        .is_ok());
        let status = |r: Result<Response, ErrorResponse>| r.expect_err("refused").status();
        assert_eq!(
            status(check_upgrade(
                &request("/other", Some("AMQPWSB10")),
                Response::new(())
            )),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(check_upgrade(
                &request("/$servicebus/websocket", Some("amqp")),
                Response::new(())
            )),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(check_upgrade(
                &request("/$servicebus/websocket", None),
                Response::new(())
            )),
            StatusCode::BAD_REQUEST
        );
    }
}
