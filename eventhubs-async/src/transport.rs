//! The AMQP byte stream over a connected TCP stream: AMQP over TCP or TLS
//! (OASIS AMQP 1.0 part 5.2), or over WebSocket (the OASIS "AMQP WebSocket
//! Binding" as Azure serves it at `/$servicebus/websocket`).
//!
//! A runtime adapter connects TCP to [`TransportOptions::destination`],
//! hands the stream to [`establish`], and gets back a [`BoxedStream`]
//! carrying the AMQP bytes (SASL and AMQP headers exactly as on TCP):
//!
//! | [`TransportKind`] | wire | default port |
//! |---|---|---|
//! | [`Plain`](TransportKind::Plain) | AMQP over TCP (the emulator) | 5672 |
//! | [`Tls`](TransportKind::Tls) | AMQP over TLS, SNI = namespace host | 5671 |
//! | [`WebSocket`](TransportKind::WebSocket) | `wss://host/$servicebus/websocket`, subprotocol `AMQPWSB10` | 443 |
//! | [`WebSocketPlain`](TransportKind::WebSocketPlain) | `ws://host/$servicebus/websocket` (local emulator) | 80 |
//!
//! A custom endpoint (a proxy or Private Link alias) changes only where TCP
//! goes; the namespace host still names the server for TLS (SNI and
//! certificate check) and for the WebSocket `Host` header, as it does for
//! `open.hostname`, CBS audiences and SAS resources.
//!
//! TLS is rustls on the `ring` provider, trusting the Mozilla roots of
//! `webpki-roots` plus any certificates added with
//! [`TransportOptions::with_trusted_der`] or
//! [`TransportOptions::with_trusted_pem`].

use std::fmt;
use std::io;
use std::sync::Arc;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Error as WsError;
use eventhubs_proto::eventhubs::ConnectionString;
use futures_io::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tracing::{debug, Instrument};

pub use eventhubs_ws::{WsByteStream, WEBSOCKET_PATH, WEBSOCKET_SUBPROTOCOL};

/// AMQP over plain TCP (the emulator).
pub const AMQP_PORT: u16 = 5672;

/// AMQP over TLS.
pub const AMQPS_PORT: u16 = 5671;

/// WebSocket over TLS.
pub const HTTPS_PORT: u16 = 443;

/// Plain WebSocket.
pub const HTTP_PORT: u16 = 80;

/// How AMQP bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TransportKind {
    /// AMQP over plain TCP, as the emulator serves it (port 5672).
    Plain,
    /// AMQP over TLS, as the service serves it (port 5671). The default.
    #[default]
    Tls,
    /// AMQP over WebSocket over TLS (port 443), for networks that only let
    /// HTTPS out.
    WebSocket,
    /// AMQP over WebSocket without TLS (port 80): for a local emulator only.
    WebSocketPlain,
}

impl TransportKind {
    /// The TCP port this transport uses unless told otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            TransportKind::Plain => AMQP_PORT,
            TransportKind::Tls => AMQPS_PORT,
            TransportKind::WebSocket => HTTPS_PORT,
            TransportKind::WebSocketPlain => HTTP_PORT,
        }
    }

    /// Whether the stream is encrypted (TLS, directly or under WebSocket).
    pub fn uses_tls(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::WebSocket)
    }

    /// Whether AMQP travels in WebSocket binary messages.
    pub fn uses_websocket(self) -> bool {
        matches!(
            self,
            TransportKind::WebSocket | TransportKind::WebSocketPlain
        )
    }
}

/// A TCP destination: host name or IP address (IPv6 without brackets) and
/// port, ready for a runtime's `connect((host, port))`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint at `host:port`. Brackets around an IPv6 literal are
    /// removed.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: unbracket(&host.into()).to_owned(),
            port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to reach a namespace: the [`TransportKind`], an optional custom
/// endpoint or port, and extra trusted certificates.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportOptions {
    kind: TransportKind,
    port: Option<u16>,
    custom_endpoint: Option<Endpoint>,
    extra_roots: Vec<CertificateDer<'static>>,
    webpki_roots: bool,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions::new(TransportKind::default())
    }
}

impl fmt::Debug for TransportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportOptions")
            .field("kind", &self.kind)
            .field("port", &self.port)
            .field("custom_endpoint", &self.custom_endpoint)
            .field("extra_roots", &self.extra_roots.len())
            .field("webpki_roots", &self.webpki_roots)
            .finish()
    }
}

impl TransportOptions {
    /// Options for `kind`: its default port, no custom endpoint, the
    /// `webpki-roots` trust anchors only.
    pub fn new(kind: TransportKind) -> Self {
        TransportOptions {
            kind,
            port: None,
            custom_endpoint: None,
            extra_roots: Vec::new(),
            webpki_roots: true,
        }
    }

    /// What a connection string asks for: [`TransportKind::Plain`] on its
    /// port for the emulator (`UseDevelopmentEmulator=true`), otherwise
    /// [`TransportKind::Tls`] on 5671.
    pub fn from_connection_string(cs: &ConnectionString) -> Self {
        if cs.use_tls() {
            TransportOptions::new(TransportKind::Tls)
        } else {
            TransportOptions::new(TransportKind::Plain).with_port(cs.amqp_port())
        }
    }

    /// Uses `kind`, keeping the other settings.
    pub fn with_kind(mut self, kind: TransportKind) -> Self {
        self.kind = kind;
        self
    }

    /// Dials the namespace host on `port` instead of the kind's default
    /// (the emulator's `Endpoint=sb://host:port`).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Dials `host:port` instead of the namespace host (a proxy or Private
    /// Link alias). TLS and the WebSocket `Host` header still name the
    /// namespace host given to [`establish`].
    pub fn with_custom_endpoint(mut self, host: impl Into<String>, port: u16) -> Self {
        self.custom_endpoint = Some(Endpoint::new(host, port));
        self
    }

    /// Also trusts this DER-encoded certificate as a root (e.g. a local
    /// emulator's self-signed certificate). It is checked when a TLS
    /// connection is made.
    pub fn with_trusted_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(CertificateDer::from(der.into()));
        self
    }

    /// Also trusts every certificate in this PEM text. Fails when the text
    /// is not PEM or holds no certificate.
    pub fn with_trusted_pem(mut self, pem: &[u8]) -> Result<Self, TransportError> {
        let mut found = 0;
        for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = item.map_err(|e| TransportError::InvalidTrustedCertificate {
                index: self.extra_roots.len() + index,
                reason: format!("bad PEM: {e}"),
            })?;
            self.extra_roots.push(cert);
            found += 1;
        }
        if found == 0 {
            return Err(TransportError::InvalidTrustedCertificate {
                index: self.extra_roots.len(),
                reason: "the PEM text holds no CERTIFICATE section".into(),
            });
        }
        Ok(self)
    }

    /// Whether to trust the Mozilla roots of `webpki-roots` (the default).
    /// Turn off to trust only the certificates added here.
    pub fn with_webpki_roots(mut self, enabled: bool) -> Self {
        self.webpki_roots = enabled;
        self
    }

    /// The transport.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// The port override, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The custom endpoint, if any.
    pub fn custom_endpoint(&self) -> Option<&Endpoint> {
        self.custom_endpoint.as_ref()
    }

    /// The extra trusted certificates, DER.
    pub fn trusted_certificates(&self) -> &[CertificateDer<'static>] {
        &self.extra_roots
    }

    /// Where to connect TCP for namespace host `host`: the custom endpoint
    /// if set, otherwise `host` on the port override or the kind's default
    /// (5672 plain, 5671 TLS, 443 WebSocket over TLS, 80 plain WebSocket).
    pub fn destination(&self, host: &str) -> Endpoint {
        match &self.custom_endpoint {
            Some(e) => e.clone(),
            None => Endpoint::new(host, self.port.unwrap_or(self.kind.default_port())),
        }
    }

    /// The WebSocket URL for namespace host `host`, e.g.
    /// `wss://ns.servicebus.windows.net/$servicebus/websocket`. It names a
    /// port only when the namespace host is dialled on a non-default one.
    pub fn websocket_url(&self, host: &str) -> String {
        let (scheme, default) = if self.kind.uses_tls() {
            ("wss", HTTPS_PORT)
        } else {
            ("ws", HTTP_PORT)
        };
        let host = unbracket(host);
        let authority = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        match (self.custom_endpoint.is_none(), self.port) {
            (true, Some(port)) if port != default => {
                format!("{scheme}://{authority}:{port}{WEBSOCKET_PATH}")
            }
            _ => format!("{scheme}://{authority}{WEBSOCKET_PATH}"),
        }
    }

    /// The rustls client configuration these options describe: the ring
    /// provider, TLS 1.2 and 1.3, and the trust anchors.
    pub fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, TransportError> {
        let roots = self.root_store()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::TlsConfig {
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

impl TransportOptions {
    fn root_store(&self) -> Result<rustls::RootCertStore, TransportError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for (index, cert) in self.extra_roots.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|e| TransportError::InvalidTrustedCertificate {
                    index,
                    reason: e.to_string(),
                })?;
        }
        Ok(roots)
    }
}

/// Why a transport could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The namespace host is neither a DNS name nor an IP address, so it
    /// cannot name a TLS server or a WebSocket host.
    #[error("{host:?} is not a valid host name or IP address")]
    InvalidHost {
        /// The host given.
        host: String,
    },
    /// An extra trusted certificate could not be parsed or used.
    #[error("extra trusted certificate {index} is unusable: {reason}")]
    InvalidTrustedCertificate {
        /// Its 0-based position among the extra certificates.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {reason}")]
    TlsConfig {
        /// rustls' reason.
        reason: String,
    },
    /// The server's certificate is not trusted or does not name the host.
    #[error("TLS: the certificate presented for {host} was rejected: {reason}")]
    CertificateRejected {
        /// The namespace host the certificate had to name.
        host: String,
        /// rustls' reason (unknown issuer, name mismatch, expired, ...).
        reason: String,
    },
    /// The TLS handshake failed for another reason (I/O, a TLS alert from
    /// the server, no common protocol version).
    #[error("TLS handshake with {host} failed: {source}")]
    TlsHandshake {
        /// The namespace host.
        host: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server answered the WebSocket upgrade with an HTTP status other
    /// than 101.
    #[error("WebSocket upgrade of {url} refused with HTTP status {status}")]
    WebSocketRefused {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The server upgraded the connection but did not select the
    /// `AMQPWSB10` subprotocol.
    #[error("WebSocket server at {url} did not select subprotocol AMQPWSB10: {reason}")]
    SubprotocolNotSelected {
        /// The URL requested.
        url: String,
        /// What it did instead.
        reason: String,
    },
    /// The WebSocket handshake failed otherwise (I/O, malformed HTTP).
    #[error("WebSocket handshake with {url} failed: {source}")]
    WebSocketHandshake {
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A byte stream carrying AMQP: what [`establish`] returns, boxed.
pub trait AmqpStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + ?Sized> AmqpStream for T {}

/// The established AMQP byte stream.
pub type BoxedStream = Box<dyn AmqpStream>;

/// Establishes the AMQP byte stream over `tcp`, a stream already connected
/// to [`TransportOptions::destination`]`(host)`, for namespace host `host`
/// (e.g. `ns.servicebus.windows.net`): nothing more for
/// [`TransportKind::Plain`]; a TLS handshake naming `host` for
/// [`TransportKind::Tls`]; TLS then a WebSocket upgrade to
/// `wss://host/$servicebus/websocket` with subprotocol `AMQPWSB10` for
/// [`TransportKind::WebSocket`]; only the upgrade for
/// [`TransportKind::WebSocketPlain`].
///
/// The AMQP protocol header is the caller's to send, on the returned
/// stream. Callers SHOULD bound this with a time-out of their runtime.
pub async fn establish<S>(
    tcp: S,
    host: &str,
    options: &TransportOptions,
) -> Result<BoxedStream, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::debug_span!("transport", host, kind = ?options.kind);
    async move {
        let stream: BoxedStream = match options.kind {
            TransportKind::Plain => Box::new(tcp),
            TransportKind::Tls => Box::new(tls_connect(tcp, host, options).await?),
            TransportKind::WebSocket => {
                let tls = tls_connect(tcp, host, options).await?;
                Box::new(websocket_connect(tls, host, options).await?)
            }
            TransportKind::WebSocketPlain => {
                check_host(host)?;
                Box::new(websocket_connect(tcp, host, options).await?)
            }
        };
        debug!("transport established");
        Ok(stream)
    }
    .instrument(span)
    .await
}

/// `host` without the brackets of an IPv6 literal.
fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The TLS server name for `host`; also the check that `host` is a usable
/// host name.
fn check_host(host: &str) -> Result<ServerName<'static>, TransportError> {
    ServerName::try_from(unbracket(host).to_owned()).map_err(|_| TransportError::InvalidHost {
        host: host.to_owned(),
    })
}

async fn tls_connect<S>(
    tcp: S,
    host: &str,
    options: &TransportOptions,
) -> Result<futures_rustls::client::TlsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tls_handshake(tcp, host, options.tls_config()?).await
}

/// A TLS handshake over `tcp` naming `host` (SNI and certificate check)
/// with `config`; also used by the HTTP client, which builds its config
/// once.
pub(crate) async fn tls_handshake<S>(
    tcp: S,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<futures_rustls::client::TlsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = check_host(host)?;
    let stream = futures_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(host, e))?;
    let (_, state) = stream.get_ref();
    debug!(
        version = ?state.protocol_version(),
        cipher_suite = ?state.negotiated_cipher_suite().map(|s| s.suite()),
        "TLS handshake complete"
    );
    Ok(stream)
}

/// Sorts a handshake error: a rejected certificate, or anything else.
fn tls_error(host: &str, e: io::Error) -> TransportError {
    let rejected = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(c) => Some(c.to_string()),
            _ => None,
        });
    match rejected {
        Some(reason) => TransportError::CertificateRejected {
            host: host.to_owned(),
            reason,
        },
        None => TransportError::TlsHandshake {
            host: host.to_owned(),
            source: e,
        },
    }
}

async fn websocket_connect<S>(
    stream: S,
    host: &str,
    options: &TransportOptions,
) -> Result<WsByteStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let url = options.websocket_url(host);
    let handshake_error = |source: WsError| TransportError::WebSocketHandshake {
        url: url.clone(),
        source: Box::new(source),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(handshake_error)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(WEBSOCKET_SUBPROTOCOL),
    );
    let (ws, response) = match async_tungstenite::client_async(request, stream).await {
        Ok(ok) => ok,
        Err(WsError::Http(response)) => {
            return Err(TransportError::WebSocketRefused {
                url,
                status: response.status().as_u16(),
            })
        }
        Err(WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(e))) => {
            return Err(TransportError::SubprotocolNotSelected {
                url,
                reason: e.to_string(),
            })
        }
        Err(e) => return Err(handshake_error(e)),
    };
    // tungstenite checks this too; the stream must not carry AMQP to a
    // server that did not agree to it, whatever that check becomes.
    let selected = response.headers().get("Sec-WebSocket-Protocol");
    if selected.map(HeaderValue::as_bytes) != Some(WEBSOCKET_SUBPROTOCOL.as_bytes()) {
        return Err(TransportError::SubprotocolNotSelected {
            url,
            reason: format!("it selected {selected:?}"),
        });
    }
    debug!(%url, "WebSocket upgraded");
    Ok(WsByteStream::new(ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let host = "ns.servicebus.windows.net";
        let d = |o: TransportOptions| o.destination(host);
        assert_eq!(
            d(TransportOptions::new(TransportKind::Tls)),
            Endpoint::new(host, 5671)
        );
        assert_eq!(
            d(TransportOptions::new(TransportKind::WebSocket)),
            Endpoint::new(host, 443)
        );
        assert_eq!(
            d(TransportOptions::new(TransportKind::Plain)),
            Endpoint::new(host, 5672)
        );
        assert_eq!(
            d(TransportOptions::new(TransportKind::WebSocketPlain)),
            Endpoint::new(host, 80)
        );
        assert_eq!(
            d(TransportOptions::new(TransportKind::Plain).with_port(15672)),
            Endpoint::new(host, 15672)
        );
        let custom = TransportOptions::new(TransportKind::Tls)
            .with_port(1)
            .with_custom_endpoint("proxy.example", 8443);
        assert_eq!(d(custom), Endpoint::new("proxy.example", 8443));
        let v6 = TransportOptions::new(TransportKind::Plain).destination("[::1]");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:5672");
    }

    #[test]
    fn from_connection_strings() {
        let emu: ConnectionString = "Endpoint=sb://localhost:6000;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true"
            .parse()
            .expect("valid");
        let o = TransportOptions::from_connection_string(&emu);
        assert_eq!(o.kind(), TransportKind::Plain);
        assert_eq!(
            o.destination(&emu.fully_qualified_namespace),
            Endpoint::new("localhost", 6000)
        );
        let emu: ConnectionString = "Endpoint=sb://localhost;UseDevelopmentEmulator=true"
            .parse()
            .expect("valid");
        assert_eq!(
            TransportOptions::from_connection_string(&emu).destination("localhost"),
            Endpoint::new("localhost", 5672)
        );
        let svc: ConnectionString = "Endpoint=sb://ns.servicebus.windows.net:1234/"
            .parse()
            .expect("valid");
        let o = TransportOptions::from_connection_string(&svc);
        assert_eq!(o.kind(), TransportKind::Tls);
        assert_eq!(
            o.destination(&svc.fully_qualified_namespace),
            Endpoint::new("ns.servicebus.windows.net", 5671)
        );
    }

    #[test]
    fn websocket_urls() {
        let wss = TransportOptions::new(TransportKind::WebSocket);
        assert_eq!(
            wss.websocket_url("ns.servicebus.windows.net"),
            "wss://ns.servicebus.windows.net/$servicebus/websocket"
        );
        assert_eq!(
            wss.clone().with_port(443).websocket_url("h"),
            "wss://h/$servicebus/websocket"
        );
        assert_eq!(
            wss.clone().with_port(8443).websocket_url("h"),
            "wss://h:8443/$servicebus/websocket"
        );
        // A custom endpoint does not change the URL: Host names the namespace.
        assert_eq!(
            wss.with_custom_endpoint("127.0.0.1", 9000)
                .websocket_url("ns.servicebus.windows.net"),
            "wss://ns.servicebus.windows.net/$servicebus/websocket"
        );
        let ws = TransportOptions::new(TransportKind::WebSocketPlain).with_port(5000);
        assert_eq!(
            ws.websocket_url("::1"),
            "ws://[::1]:5000/$servicebus/websocket"
        );
        assert_eq!(
            ws.websocket_url("[::1]"),
            "ws://[::1]:5000/$servicebus/websocket"
        );
    }

    #[test]
    fn hosts() {
        assert!(check_host("ns.servicebus.windows.net").is_ok());
        assert!(check_host("127.0.0.1").is_ok());
        assert!(check_host("[::1]").is_ok());
        for bad in ["", "bad host", "a/b", "x..y"] {
            assert!(
                matches!(check_host(bad), Err(TransportError::InvalidHost { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn trusted_pem_errors_are_typed() {
        let o = TransportOptions::new(TransportKind::Tls);
        assert!(matches!(
            o.clone().with_trusted_pem(b"not pem at all"),
            Err(TransportError::InvalidTrustedCertificate { index: 0, .. })
        ));
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            o.clone().with_trusted_pem(bad),
            Err(TransportError::InvalidTrustedCertificate { index: 0, .. })
        ));
        // DER that is no certificate is caught when the config is built.
        let o = o.with_trusted_der(vec![1, 2, 3]);
        assert!(matches!(
            o.tls_config(),
            Err(TransportError::InvalidTrustedCertificate { index: 0, .. })
        ));
    }

    #[test]
    fn webpki_roots_can_be_turned_off() {
        let with = TransportOptions::new(TransportKind::Tls);
        let without = with.clone().with_webpki_roots(false);
        assert!(with.tls_config().is_ok());
        assert!(without.tls_config().is_ok());
        assert_eq!(
            with.root_store().expect("roots").len(),
            webpki_roots::TLS_SERVER_ROOTS.len()
        );
        assert!(without.root_store().expect("roots").is_empty());
        assert!(format!("{without:?}").contains("webpki_roots: false"));
    }
}
