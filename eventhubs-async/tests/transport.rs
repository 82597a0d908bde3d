//! The transports end to end, over loopback TCP: `establish` to the
//! in-process emulator's TLS, WebSocket and WebSocket-over-TLS listeners
//! (a self-signed certificate made here), then a real AMQP exchange through
//! the stream with the sans-IO engine: SASL PLAIN, open, begin, a sender on
//! `eh1/Partitions/0`, one event sent and accepted, and read back. Also the
//! typed errors: an untrusted or misnamed certificate, a server that does
//! not select `AMQPWSB10` or refuses the upgrade; SNI carries the namespace
//! host; the WebSocket byte stream's handling of control and text messages.
//!
//! tokio (with tokio-util's compat layer) is only the test's runtime: the
//! crate under test sees futures-io streams.

// tungstenite's handshake callbacks return its HTTP error response by value.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use async_tungstenite::tungstenite::Message as WsMessage;
use bytes::Bytes;
use eventhubs_async::transport::{
    establish, BoxedStream, TransportError, TransportKind, TransportOptions,
};
use eventhubs_emulator::Emulator;
use eventhubs_proto::codec::message::{Body, Message};
use eventhubs_proto::codec::messaging::{DeliveryState, Source, Target};
use eventhubs_proto::codec::performatives::Role;
use eventhubs_proto::codec::{Decode, Encode};
use eventhubs_proto::engine::Settlement;
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, Event, LinkConfig, SaslConfig, SaslMechanism, SessionConfig, Side,
};
use eventhubs_proto::eventhubs::{ConnectionString, EventPosition};
use futures_util::{AsyncReadExt, AsyncWriteExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// The names the test certificate carries.
const CERT_NAMES: [&str; 2] = ["localhost", "eventhubs.test"];

/// Every test finishes well within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Cert {
    der: Vec<u8>,
    pem: String,
    key_pem: String,
}

fn self_signed(names: &[&str]) -> Cert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names).expect("certificate");
    Cert {
        der: c.cert.der().to_vec(),
        pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
    }
}

/// An emulator with every listener, and the certificate it presents.
fn emulator() -> (Emulator, Cert) {
    let cert = self_signed(&CERT_NAMES);
    let emulator = Emulator::builder()
        .tls(cert.pem.clone(), cert.key_pem.clone())
        .websocket(true)
        .start()
        .expect("emulator starts");
    (emulator, cert)
}

/// Connects TCP where `options` say for `host`, as an adapter does.
async fn connect(host: &str, options: &TransportOptions) -> Compat<TcpStream> {
    let dest = options.destination(host);
    let tcp = TcpStream::connect((dest.host.as_str(), dest.port))
        .await
        .unwrap_or_else(|e| panic!("connect {dest}: {e}"));
    tcp.set_nodelay(true).expect("nodelay");
    tcp.compat()
}

async fn establish_to(
    host: &str,
    options: &TransportOptions,
) -> Result<BoxedStream, TransportError> {
    let tcp = connect(host, options).await;
    establish(tcp, host, options).await
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("the test finished in time")
}

/// The engine over an established stream.
struct Amqp {
    conn: Connection,
    stream: BoxedStream,
    events: VecDeque<Event>,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

impl Amqp {
    fn new(stream: BoxedStream, hostname: &str) -> Amqp {
        let mut c = ConnectionConfig::new(Side::Client, "eventhubs-async-transport-test");
        c.hostname = Some(hostname.into());
        c.sasl = SaslConfig::Client(vec![SaslMechanism::Plain {
            username: "RootManageSharedAccessKey".into(),
            password: "SAS_KEY_VALUE".into(),
        }]);
        Amqp {
            conn: Connection::new(c, Instant::now()),
            stream,
            events: VecDeque::new(),
            out: Vec::new(),
            inbuf: vec![0; 64 * 1024],
        }
    }

    /// Drives the engine until `f` picks an event.
    async fn until<T>(&mut self, mut f: impl FnMut(&mut Connection, &Event) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(e) = self.events.pop_front() {
                if let Event::Failed(err) = &e {
                    panic!("connection failed: {err}");
                }
                if let Some(v) = f(&mut self.conn, &e) {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for an event");
            let now = Instant::now();
            self.conn.handle_timeout(now);
            self.out.clear();
            let _ = self.conn.poll_transmit(now, &mut self.out);
            if !self.out.is_empty() {
                self.stream.write_all(&self.out).await.expect("write");
                self.stream.flush().await.expect("flush");
            }
            while let Some(e) = self.conn.poll_event() {
                self.events.push_back(e);
            }
            if !self.events.is_empty() {
                continue;
            }
            match tokio::time::timeout(Duration::from_millis(50), self.stream.read(&mut self.inbuf))
                .await
            {
                Ok(Ok(0)) => panic!("the server closed the stream"),
                Ok(Ok(n)) => {
                    self.conn.handle_input(Instant::now(), &self.inbuf[..n]);
                }
                Ok(Err(e)) => panic!("read: {e}"),
                Err(_) => {}
            }
            while let Some(e) = self.conn.poll_event() {
                self.events.push_back(e);
            }
        }
    }
}

/// SASL PLAIN, open, begin, a sender on `eh1/Partitions/0`, one event sent
/// and accepted, then read back by a receiver; then close.
async fn amqp_exchange(stream: BoxedStream, hostname: &str) {
    let mut a = Amqp::new(stream, hostname);
    a.conn.open().expect("open");
    let ch = a
        .conn
        .begin_session(SessionConfig::default())
        .expect("begin");
    let tx = a
        .conn
        .session(ch)
        .attach(LinkConfig {
            name: "transport-test-sender".into(),
            role: Role::Sender,
            source: Some(Source::with_address("transport-test")),
            target: Some(Target::with_address("eh1/Partitions/0")),
            ..Default::default()
        })
        .expect("attach");
    a.until(|_, e| matches!(e, Event::Authenticated { .. }).then_some(()))
        .await;
    a.until(|c, e| match e {
        Event::LinkDetached { error, .. } => panic!("sender refused: {error:?}"),
        _ => (c.credit(tx) > 0).then_some(()),
    })
    .await;
    let body = format!("through {hostname} at {:?}", Instant::now());
    let payload = Message {
        body: Body::Data(vec![Bytes::from(body.clone().into_bytes())]),
        ..Default::default()
    }
    .to_bytes();
    let id = a
        .conn
        .link(tx)
        .send(Bytes::from_static(b"t1"), 0, Settlement::Unsettled, payload)
        .expect("send");
    let state = a
        .until(|_, e| match e {
            Event::Disposition {
                link,
                delivery_id,
                state,
                ..
            } if *link == tx && *delivery_id == id => Some(state.clone()),
            _ => None,
        })
        .await;
    assert!(
        matches!(state, Some(DeliveryState::Accepted(_))),
        "the event was accepted: {state:?}"
    );

    let mut source = Source::with_address("eh1/ConsumerGroups/$Default/Partitions/0");
    source.filter = Some(EventPosition::Earliest.filter_set());
    let rx = a
        .conn
        .session(ch)
        .attach(LinkConfig {
            name: "transport-test-receiver".into(),
            role: Role::Receiver,
            source: Some(source),
            target: Some(Target::with_address("transport-test")),
            ..Default::default()
        })
        .expect("attach receiver");
    a.conn.link(rx).flow(100).expect("flow");
    a.until(|_, e| match e {
        Event::Delivery { link, payload, .. } if *link == rx => {
            let m = Message::decode_all(payload).expect("an AMQP message");
            match &m.body {
                Body::Data(sections) if sections[0][..] == *body.as_bytes() => Some(()),
                _ => None,
            }
        }
        Event::LinkDetached { link, error, .. } if *link == rx => {
            panic!("receiver refused: {error:?}")
        }
        _ => None,
    })
    .await;
    a.conn.close(None).expect("close");
    a.until(|_, e| matches!(e, Event::Closed(_)).then_some(()))
        .await;
}

fn custom(kind: TransportKind, addr: SocketAddr) -> TransportOptions {
    TransportOptions::new(kind).with_custom_endpoint(addr.ip().to_string(), addr.port())
}

#[tokio::test]
async fn plain_amqp_through_establish() {
    within(async {
        let (emulator, _) = emulator();
        let options = TransportOptions::new(TransportKind::Plain).with_port(emulator.addr().port());
        let stream = establish_to("127.0.0.1", &options).await.expect("plain");
        amqp_exchange(stream, "127.0.0.1").await;
    })
    .await;
}

#[tokio::test]
async fn tls_amqp_exchange_with_the_emulator() {
    within(async {
        let (emulator, cert) = emulator();
        let addr = emulator.tls_addr().expect("TLS listener");
        // The namespace host on the listener's port: SNI and the
        // certificate check use "localhost", TCP goes to localhost:port.
        let options = TransportOptions::new(TransportKind::Tls)
            .with_port(addr.port())
            .with_trusted_pem(cert.pem.as_bytes())
            .expect("PEM");
        let stream = establish_to("localhost", &options).await.expect("TLS");
        amqp_exchange(stream, "localhost").await;
    })
    .await;
}

#[tokio::test]
async fn tls_through_a_custom_endpoint_names_the_namespace_host() {
    within(async {
        let (emulator, cert) = emulator();
        // What a client makes of the emulator's service-form connection
        // string: TLS to the namespace host, redirected to the listener.
        let cs: ConnectionString = emulator
            .service_connection_string("eventhubs.test", "eh1")
            .parse()
            .expect("connection string");
        let host = cs.fully_qualified_namespace.as_str();
        assert_eq!(host, "eventhubs.test");
        let tls = emulator.tls_addr().expect("TLS");
        let options = TransportOptions::from_connection_string(&cs)
            .with_custom_endpoint(tls.ip().to_string(), tls.port())
            .with_webpki_roots(false)
            .with_trusted_der(cert.der.clone());
        assert_eq!(options.kind(), TransportKind::Tls);
        let stream = establish_to(host, &options)
            .await
            .expect("TLS to the custom endpoint, verified as eventhubs.test");
        amqp_exchange(stream, host).await;
    })
    .await;
}

#[tokio::test]
async fn websocket_amqp_exchange_with_the_emulator() {
    within(async {
        let (emulator, _) = emulator();
        let addr = emulator.ws_addr().expect("WebSocket listener");
        let options = TransportOptions::new(TransportKind::WebSocketPlain).with_port(addr.port());
        assert_eq!(
            options.websocket_url("127.0.0.1"),
            format!("ws://127.0.0.1:{}/$servicebus/websocket", addr.port())
        );
        let stream = establish_to("127.0.0.1", &options)
            .await
            .expect("WebSocket");
        amqp_exchange(stream, "127.0.0.1").await;
    })
    .await;
}

#[tokio::test]
async fn secure_websocket_amqp_exchange_with_the_emulator() {
    within(async {
        let (emulator, cert) = emulator();
        let options = custom(TransportKind::WebSocket, emulator.wss_addr().expect("WSS"))
            .with_trusted_der(cert.der.clone());
        let stream = establish_to("eventhubs.test", &options)
            .await
            .expect("WebSocket over TLS");
        amqp_exchange(stream, "eventhubs.test").await;
    })
    .await;
}

#[tokio::test]
async fn untrusted_certificates_are_rejected() {
    within(async {
        let (emulator, cert) = emulator();
        let tls = emulator.tls_addr().expect("TLS");
        let wss = emulator.wss_addr().expect("WSS");
        for (options, why) in [
            (custom(TransportKind::Tls, tls), "issuer"),
            (custom(TransportKind::WebSocket, wss), "issuer"),
            // Another certificate of the same subject trusted, not the
            // server's: its key did not sign the server's.
            (
                custom(TransportKind::Tls, tls).with_trusted_der(self_signed(&["localhost"]).der),
                "signature",
            ),
        ] {
            match establish_to("localhost", &options).await {
                Err(TransportError::CertificateRejected { host, reason }) => {
                    assert_eq!(host, "localhost");
                    assert!(reason.to_lowercase().contains(why), "{reason}");
                }
                Err(e) => panic!("{options:?}: expected CertificateRejected, got {e}"),
                Ok(_) => panic!("{options:?}: an untrusted certificate was accepted"),
            }
        }
        // Trusted, but not issued for this name.
        let options = custom(TransportKind::Tls, tls).with_trusted_der(cert.der.clone());
        match establish_to("other.test", &options).await {
            Err(TransportError::CertificateRejected { host, reason }) => {
                assert_eq!(host, "other.test");
                assert!(
                    reason.contains("other.test") || reason.to_lowercase().contains("name"),
                    "{reason}"
                );
            }
            Err(e) => panic!("expected CertificateRejected, got {e}"),
            Ok(_) => panic!("a certificate for another name was accepted"),
        }
        // Not TLS at all on the other side: a handshake error, not a hang.
        let options = custom(TransportKind::Tls, emulator.addr());
        assert!(matches!(
            establish_to("localhost", &options).await,
            Err(TransportError::TlsHandshake { .. })
        ));
    })
    .await;
}

fn ring_server_config(cert: &Cert) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = vec![rustls::pki_types::CertificateDer::from(cert.der.clone())];
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    )
}

#[tokio::test]
async fn sni_is_the_namespace_host() {
    within(async {
        let cert = self_signed(&["ns.servicebus.test"]);
        let acceptor = futures_rustls::TlsAcceptor::from(ring_server_config(&cert));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut tls = acceptor.accept(socket.compat()).await.expect("handshake");
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            tls.write_all(b"AMQP").await.expect("write");
            tls.flush().await.expect("flush");
            sni
        });
        let options = custom(TransportKind::Tls, addr).with_trusted_der(cert.der.clone());
        let mut stream = establish_to("ns.servicebus.test", &options)
            .await
            .expect("TLS");
        let mut four = [0u8; 4];
        stream.read_exact(&mut four).await.expect("read");
        assert_eq!(&four, b"AMQP");
        assert_eq!(
            server.await.expect("server").as_deref(),
            Some("ns.servicebus.test"),
            "SNI is the namespace host, not the custom endpoint's address"
        );
    })
    .await;
}

/// How a test server answers a WebSocket upgrade.
type Answer = fn(&Request, Response) -> Result<Response, ErrorResponse>;

/// A one-connection WebSocket server that answers the upgrade with
/// `answer`, then sends `script` and echoes one binary message.
async fn ws_server(answer: Answer, script: Vec<WsMessage>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let Ok(mut ws) = async_tungstenite::accept_hdr_async(socket.compat(), answer).await else {
            return;
        };
        for m in script {
            if ws.send(m).await.is_err() {
                return;
            }
        }
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Binary(b) = m {
                let _ = ws.send(WsMessage::Binary(b)).await;
                let _ = ws.close(None).await;
                return;
            }
        }
    });
    addr
}

fn select(p: &'static str) -> impl Fn(Response) -> Response {
    move |mut r: Response| {
        r.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
        r
    }
}

#[tokio::test]
async fn a_server_that_does_not_select_amqpwsb10_is_a_typed_error() {
    within(async {
        let answers: [Answer; 2] = [|_, r| Ok(r), |_, r| Ok(select("amqp")(r))];
        for answer in answers {
            let addr = ws_server(answer, vec![]).await;
            let options = custom(TransportKind::WebSocketPlain, addr);
            match establish_to("localhost", &options).await {
                Err(TransportError::SubprotocolNotSelected { url, .. }) => {
                    assert_eq!(url, "ws://localhost/$servicebus/websocket")
                }
                Err(e) => panic!("expected SubprotocolNotSelected, got {e}"),
                Ok(_) => panic!("a server without AMQPWSB10 was accepted"),
            }
        }
        let addr = ws_server(
            |_, _| {
                let mut r = ErrorResponse::new(Some("no".into()));
                *r.status_mut() = StatusCode::FORBIDDEN;
                Err(r)
            },
            vec![],
        )
        .await;
        match establish_to("localhost", &custom(TransportKind::WebSocketPlain, addr)).await {
            Err(TransportError::WebSocketRefused { status, .. }) => assert_eq!(status, 403),
            Err(e) => panic!("expected WebSocketRefused, got {e}"),
            Ok(_) => panic!("a refused upgrade was accepted"),
        }
    })
    .await;
}

#[tokio::test]
async fn the_emulator_requires_amqpwsb10_and_its_path() {
    within(async {
        let (emulator, _) = emulator();
        let addr = emulator.ws_addr().expect("WebSocket listener");
        for (path, protocol, status) in [
            ("/$servicebus/websocket", Some("amqp"), 400),
            ("/$servicebus/websocket", None, 400),
            ("/elsewhere", Some("AMQPWSB10"), 404),
        ] {
            use async_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("ws://127.0.0.1:{}{path}", addr.port())
                .into_client_request()
                .expect("request");
            if let Some(p) = protocol {
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
            }
            let tcp = TcpStream::connect(addr).await.expect("connect");
            match async_tungstenite::client_async(request, tcp.compat()).await {
                Err(async_tungstenite::tungstenite::Error::Http(r)) => {
                    assert_eq!(r.status().as_u16(), status, "{path} {protocol:?}")
                }
                Err(e) => panic!("{path} {protocol:?}: expected an HTTP refusal, got {e}"),
                Ok(_) => panic!("{path} {protocol:?}: upgraded"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn websocket_byte_stream_skips_control_messages_and_refuses_text() {
    within(async {
        let addr = ws_server(
            |_, r| Ok(select("AMQPWSB10")(r)),
            vec![
                WsMessage::Ping(Bytes::from_static(b"ping")),
                WsMessage::Binary(Bytes::new()),
                WsMessage::Binary(Bytes::from_static(b"AMQP")),
                WsMessage::Pong(Bytes::from_static(b"pong")),
                WsMessage::Binary(Bytes::from_static(b"\x00\x01\x00\x00")),
                WsMessage::Text("not AMQP".into()),
            ],
        )
        .await;
        let mut s = establish_to("localhost", &custom(TransportKind::WebSocketPlain, addr))
            .await
            .expect("upgrade");
        // Binary payloads only, in order, across message boundaries; ping,
        // pong and the empty message contribute nothing (and no EOF).
        let mut eight = [0u8; 8];
        s.read_exact(&mut eight).await.expect("binary bytes");
        assert_eq!(&eight, b"AMQP\x00\x01\x00\x00");
        let e = s.read(&mut eight).await.expect_err("text is refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);

        // Writes are binary messages: the server echoes one, then closes,
        // which reads as end of stream.
        let addr = ws_server(|_, r| Ok(select("AMQPWSB10")(r)), vec![]).await;
        let mut s = establish_to("localhost", &custom(TransportKind::WebSocketPlain, addr))
            .await
            .expect("upgrade");
        s.write_all(b"hello").await.expect("write");
        s.flush().await.expect("flush");
        let mut back = Vec::new();
        s.read_to_end(&mut back)
            .await
            .expect("echo, then end of stream");
        assert_eq!(back, b"hello");
    })
    .await;
}

#[tokio::test]
async fn stalled_and_garbage_clients_do_not_block_the_listeners() {
    within(async {
        let (emulator, cert) = emulator();
        let tls = emulator.tls_addr().expect("TLS");
        let wss = emulator.wss_addr().expect("WSS");
        let ws = emulator.ws_addr().expect("WS");
        // One client per listener that connects and says nothing, one that
        // sends garbage instead of a handshake.
        let mut idle = Vec::new();
        for addr in [tls, wss, ws] {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
            let mut garbage = TcpStream::connect(addr).await.expect("connect").compat();
            garbage
                .write_all(b"\x00\x01garbage\r\n\r\n")
                .await
                .expect("write");
            let mut rest = Vec::new();
            // The server gives up on it (an alert or an HTTP error, then
            // end of stream) rather than hanging.
            let _ = garbage.read_to_end(&mut rest).await;
        }
        // Meanwhile, real clients are served on every listener.
        for (kind, addr) in [
            (TransportKind::Tls, tls),
            (TransportKind::WebSocket, wss),
            (TransportKind::WebSocketPlain, ws),
        ] {
            let options = custom(kind, addr).with_trusted_der(cert.der.clone());
            let stream = establish_to("localhost", &options)
                .await
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            amqp_exchange(stream, "localhost").await;
        }
        drop(idle);
    })
    .await;
}
