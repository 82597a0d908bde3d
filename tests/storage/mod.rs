//! HTTP client, Blob Storage and checkpoint-store scenarios, written once,
//! generic over the runtime. Each adapter's `tests/storage.rs` includes
//! this file and instantiates every scenario with [`storage_tests!`].
//!
//! - The HTTP client against small scripted servers on loopback (plain
//!   threads, so no runtime is assumed): keep-alive reuse, the one retry
//!   on a fresh connection, typed errors (refused, unknown host, time-out,
//!   malformed reply, oversize body, rejected certificate) and HTTPS.
//! - Blob Storage and the blob checkpoint store against Azurite, started
//!   per test (blob service only, loopback, in memory, a free port,
//!   telemetry off). Azurite is found at `$AZURITE_BLOB`, then
//!   `.azurite/node_modules/.bin/azurite-blob` in the workspace (where
//!   `.ci/run` installs it), then on `PATH`.
//! - Interop with the official Python blob checkpoint store
//!   (`azure-eventhub-checkpointstoreblob`) on the same container, through
//!   `tests/storage/checkpointstore.py`.
//!
//! Without Azurite or the Python package a test prints SKIPPED and
//! passes, unless `EVENTHUBS_INTEROP=require` (set by `.ci/run`), which
//! makes it fail.

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use eventhubs_async::checkpoint_store::{
    BlobCheckpointStore, CheckpointStore, MemoryCheckpointStore, PartitionCheckpoint,
    PartitionOwnership,
};
use eventhubs_async::http::{HttpClient, HttpClientError, HttpOptions};
use eventhubs_async::http::{HttpError, Limits};
use eventhubs_async::storage::{
    AccountSas, BlobEndpoint, Condition, ContainerSas, ListBlobs, SharedKeyCredential,
    StorageErrorCode, DEVELOPMENT_ACCOUNT, DEVELOPMENT_KEY,
};
use eventhubs_async::storage::{BlobClient, BlobError, StorageCredential};
use eventhubs_async::transport::{TransportError, TransportKind, TransportOptions};
use eventhubs_async::Runtime;

/// Runs `f`, failing if it takes longer than `secs`.
pub async fn within<R: Runtime, T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    let sleep = R::default().sleep(Duration::from_secs(secs));
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => t,
        futures_util::future::Either::Right(_) => panic!("{what}: no result within {secs} s"),
    }
}

fn required() -> bool {
    std::env::var("EVENTHUBS_INTEROP").as_deref() == Ok("require")
}

/// Says why a peer is missing: a failure under `EVENTHUBS_INTEROP=require`,
/// otherwise SKIPPED.
fn missing(why: &str) {
    if required() {
        panic!("EVENTHUBS_INTEROP=require but {why}");
    }
    println!("SKIPPED: {why}");
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------
// Azurite

/// An Azurite blob service of this test's own, stopped on drop.
pub struct Azurite {
    child: Child,
    port: u16,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn azurite_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AZURITE_BLOB") {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    let local = workspace().join(".azurite/node_modules/.bin/azurite-blob");
    if local.exists() {
        return Some(local);
    }
    let on_path = Command::new("azurite-blob")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    on_path.then(|| PathBuf::from("azurite-blob"))
}

impl Azurite {
    /// Starts Azurite's blob service on a free loopback port, in memory,
    /// without telemetry; `None` (after SKIPPED) when it is not installed.
    pub fn start() -> Option<Azurite> {
        let Some(bin) = azurite_binary() else {
            missing("Azurite is not installed (bash .ci/run installs azurite@3.35.0 into .azurite/; or set AZURITE_BLOB)");
            return None;
        };
        let mut child = Command::new(&bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            const MARK: &str = "successfully listens on http://127.0.0.1:";
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split(MARK).nth(1) {
                    let _ = tx.send(rest.trim().trim_end_matches('/').parse::<u16>().ok());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => Some(Azurite { child, port }),
            other => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("Azurite did not start ({other:?}): {err}");
            }
        }
    }

    /// Its Blob endpoint, path-style.
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{DEVELOPMENT_ACCOUNT}", self.port)
    }

    /// The connection string of its account, as the Azurite docs give it.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={DEVELOPMENT_ACCOUNT};AccountKey={DEVELOPMENT_KEY};BlobEndpoint={};",
            self.blob_endpoint()
        )
    }

    /// A Blob client with the account key.
    pub fn client<R: Runtime>(&self) -> BlobClient<R> {
        BlobClient::from_connection_string(R::default(), &self.connection_string()).expect("client")
    }

    /// A Blob client with another credential.
    pub fn client_with<R: Runtime>(&self, credential: StorageCredential) -> BlobClient<R> {
        let http = HttpClient::new(R::default()).expect("http client");
        let endpoint = BlobEndpoint::parse(&self.blob_endpoint()).expect("endpoint");
        BlobClient::new(http, endpoint, credential)
    }
}

fn key() -> SharedKeyCredential {
    SharedKeyCredential::new(DEVELOPMENT_ACCOUNT, DEVELOPMENT_KEY).expect("key")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn code_of(e: &BlobError) -> Option<StorageErrorCode> {
    e.code().cloned()
}

/// The namespace of a local emulator on its port, as the Python SDK names
/// it (`Endpoint=sb://127.0.0.1:5672`).
const NS: &str = "127.0.0.1:5672";

// ---------------------------------------------------------------------
// Scripted HTTP servers on plain threads

/// What a scripted server does with each request on each connection.
#[derive(Clone, Copy)]
enum Reply {
    /// `200 OK` with a body naming the connection and the request.
    Ok,
    /// The same, then close (without saying so: a keep-alive reply).
    OkThenClose,
    /// Close without a byte.
    Close,
    /// Never answer.
    Silence,
    /// Bytes that are not HTTP.
    Garbage,
    /// A `Content-Length` of 10,000 and that many bytes.
    Big,
    /// `200 OK` whose body is the request's head.
    Echo,
}

/// A server on a free loopback port running `script(connection, request)`;
/// counts the connections it accepted.
struct Scripted {
    port: u16,
    connections: Arc<AtomicUsize>,
}

fn read_request(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

fn serve(mut s: impl Read + Write, connection: usize, script: fn(usize, usize) -> Reply) {
    for request in 0.. {
        let Some(head) = read_request(&mut s) else {
            return;
        };
        match script(connection, request) {
            Reply::Echo => {
                let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len());
                let sent = s
                    .write_all(reply.as_bytes())
                    .and_then(|_| s.write_all(&head));
                if sent.is_err() {
                    return;
                }
            }
            Reply::Ok | Reply::OkThenClose => {
                let body = format!("connection {connection} request {request}");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let sent = s.write_all(reply.as_bytes()).and_then(|_| s.flush());
                if sent.is_err() || matches!(script(connection, request), Reply::OkThenClose) {
                    return;
                }
            }
            Reply::Close => return,
            Reply::Silence => {
                std::thread::sleep(Duration::from_secs(5));
                return;
            }
            Reply::Garbage => {
                let _ = s.write_all(b"SMTP ready\r\n\r\n");
                return;
            }
            Reply::Big => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n");
                let _ = s.write_all(&[b'x'; 10_000]);
                return;
            }
        }
    }
}

impl Scripted {
    fn start(script: fn(usize, usize) -> Reply) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let n = count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream, n, script));
            }
        });
        Scripted { port, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn get(url: &str) -> http::Request<Bytes> {
    http::Request::get(url).body(Bytes::new()).expect("request")
}

async fn body_of<R: Runtime>(client: &HttpClient<R>, url: &str) -> String {
    let r = client.send(get(url)).await.expect("response");
    assert_eq!(r.status(), 200);
    String::from_utf8(r.body().to_vec()).expect("utf-8")
}

/// Keep-alive reuse; a reused connection the server closes before
/// replying is retried once on a fresh one; a fresh one that fails the
/// same way is an error, not retried.
pub async fn http_reuse_and_retry<R: Runtime>() {
    // Connection 0 answers one request, then closes on the second as an
    // idle-closing server would; every other connection answers.
    let server = Scripted::start(|c, r| {
        if c == 0 && r == 1 {
            Reply::Close
        } else {
            Reply::Ok
        }
    });
    let client = HttpClient::new(R::default()).expect("client");
    assert_eq!(
        body_of(&client, &server.url("/a")).await,
        "connection 0 request 0"
    );
    assert_eq!(client.idle_connections(), 1);
    // The pooled connection looks open (the server has not closed it
    // yet), so it is used; the server closes it; the client retries.
    assert_eq!(
        body_of(&client, &server.url("/b")).await,
        "connection 1 request 0"
    );
    assert_eq!(
        body_of(&client, &server.url("/c")).await,
        "connection 1 request 1"
    );
    assert_eq!(server.connections(), 2);

    // A fresh connection closed before any reply: no retry.
    let closing = Scripted::start(|_, _| Reply::Close);
    let e = client.send(get(&closing.url("/"))).await.unwrap_err();
    assert!(
        matches!(&e, HttpClientError::Protocol { source, .. } if source.is_closed_before_response()),
        "{e}"
    );
    assert_eq!(closing.connections(), 1);

    // A connection the server closed while idle goes unused: it is seen
    // closed when taken from the pool (or, had the close not arrived yet,
    // fails and is retried); either way the request succeeds on a fresh
    // connection.
    let once = Scripted::start(|_, _| Reply::OkThenClose);
    assert_eq!(
        body_of(&client, &once.url("/")).await,
        "connection 0 request 0"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        body_of(&client, &once.url("/")).await,
        "connection 1 request 0"
    );
    assert_eq!(once.connections(), 2);

    // Reuse off: every request on its own connection.
    let plain = Scripted::start(|_, _| Reply::Ok);
    let no_pool = HttpClient::with_options(
        R::default(),
        HttpOptions::default().with_max_idle_per_host(0),
    )
    .expect("client");
    body_of(&no_pool, &plain.url("/")).await;
    body_of(&no_pool, &plain.url("/")).await;
    assert_eq!(plain.connections(), 2);
    assert_eq!(no_pool.idle_connections(), 0);
}

/// Every failure is named for what it is.
pub async fn http_errors_are_typed<R: Runtime>() {
    let options = HttpOptions::default()
        .with_request_timeout(Duration::from_millis(500))
        .with_limits(Limits::default().with_max_body_bytes(1024));
    let client = HttpClient::with_options(R::default(), options).expect("client");

    // Refused: a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = client
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpClientError::Refused { .. }), "{e}");
    assert!(e.is_connect() && e.to_string().contains("refused"));

    // An unknown host.
    let e = client
        .send(get("http://no-such-host.invalid/"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HttpClientError::Resolve { host, .. } if host == "no-such-host.invalid"),
        "{e}"
    );

    // A server that never answers: the request time-out.
    let silent = Scripted::start(|_, _| Reply::Silence);
    let e = client
        .send(get(&silent.url("/slow?sig=secret")))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpClientError::Timeout { .. }), "{e}");
    assert!(e.is_timeout());
    assert!(
        !e.to_string().contains("secret"),
        "the query is not shown: {e}"
    );

    // Not HTTP, and too big.
    let garbage = Scripted::start(|_, _| Reply::Garbage);
    let e = client.send(get(&garbage.url("/"))).await.unwrap_err();
    assert!(
        matches!(
            e,
            HttpClientError::Protocol {
                source: HttpError::MalformedHead { .. },
                ..
            }
        ),
        "{e}"
    );
    let big = Scripted::start(|_, _| Reply::Big);
    let e = client.send(get(&big.url("/"))).await.unwrap_err();
    assert!(
        matches!(
            e,
            HttpClientError::Protocol {
                source: HttpError::BodyTooLarge { limit: 1024 },
                ..
            }
        ),
        "{e}"
    );

    // Bad URLs.
    for url in ["ftp://127.0.0.1/", "/relative"] {
        let e = client.send(get(url)).await.unwrap_err();
        assert!(
            matches!(e, HttpClientError::InvalidUrl { .. }),
            "{url}: {e}"
        );
    }
}

/// A TLS server on a plain thread presenting a fresh self-signed
/// certificate for `localhost`; answers every request with 200.
fn tls_server() -> (u16, Vec<u8>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let der = cert.cert.der().to_vec();
    let key =
        PrivateKeyDer::from_pem_slice(cert.signing_key.serialize_pem().as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der.clone())], key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(tcp) = stream else { return };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                serve(rustls::StreamOwned::new(conn, tcp), n, |_, _| Reply::Ok);
            });
        }
    });
    (port, der)
}

/// HTTPS with a trusted certificate works and reuses its connection; an
/// untrusted one is named as a rejected certificate.
pub async fn https_and_certificates<R: Runtime>() {
    let (port, der) = tls_server();
    let url = format!("https://localhost:{port}/");
    let untrusted = HttpClient::new(R::default()).expect("client");
    let e = untrusted.send(get(&url)).await.unwrap_err();
    assert!(
        matches!(
            e,
            HttpClientError::Tls(TransportError::CertificateRejected { .. })
        ),
        "{e}"
    );
    let tls = TransportOptions::new(TransportKind::Tls).with_trusted_der(der);
    let trusted = HttpClient::with_options(R::default(), HttpOptions::default().with_tls(tls))
        .expect("client");
    assert_eq!(body_of(&trusted, &url).await, "connection 1 request 0");
    assert_eq!(body_of(&trusted, &url).await, "connection 1 request 1");
}

/// A bearer token provider that counts its calls.
struct CountingTokens(AtomicUsize);

impl eventhubs_async::TokenProvider for CountingTokens {
    fn token(&self, audience: &str) -> eventhubs_async::TokenFuture {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        let audience = audience.to_owned();
        Box::pin(async move {
            assert_eq!(audience, eventhubs_async::storage::STORAGE_SCOPE);
            Ok(eventhubs_async::Token {
                token: format!("token-{n}"),
                expires_at_unix: unix_now() as u64 + 3600,
                token_type: eventhubs_async::TokenType::Jwt,
            })
        })
    }
}

/// A bearer credential sends `Authorization: Bearer <token>` for the
/// storage scope, fetching the token once while it is fresh; Shared Key
/// and SAS sign as they should on the wire.
pub async fn storage_credentials_on_the_wire<R: Runtime>() {
    let echo = Scripted::start(|_, _| Reply::Echo);
    let endpoint = BlobEndpoint::parse(&echo.url("/acct")).expect("endpoint");
    let tokens = Arc::new(CountingTokens(AtomicUsize::new(0)));
    let http = HttpClient::new(R::default()).expect("http");
    let blob = BlobClient::new(
        http.clone(),
        endpoint.clone(),
        StorageCredential::Bearer(tokens.clone()),
    );
    let heads = |r: http::Response<Bytes>| String::from_utf8(r.body().to_vec()).expect("utf-8");
    for _ in 0..2 {
        let request = blob
            .service()
            .get_properties("c00", "a/b")
            .expect("request");
        // HEAD gets no body back: ask with GET to see the echo.
        let (mut parts, body) = request.into_parts();
        parts.method = http::Method::GET;
        let head = heads(
            blob.send(http::Request::from_parts(parts, body))
                .await
                .expect("send"),
        );
        assert!(head.starts_with("GET /acct/c00/a/b HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("\r\nauthorization: Bearer token-0\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-ms-version: 2021-12-02\r\n"), "{head}");
        assert!(head.contains("\r\nx-ms-date: "), "{head}");
    }
    assert_eq!(tokens.0.load(Ordering::SeqCst), 1, "the token is cached");

    let sas = key().account_sas(&AccountSas::new("rl", unix_now() + 60));
    let blob = BlobClient::new(
        http.clone(),
        endpoint.clone(),
        StorageCredential::Sas(sas.clone()),
    );
    let request = blob
        .service()
        .list_blobs("c00", &ListBlobs::with_metadata("p/"))
        .expect("request");
    let head = heads(blob.send(request).await.expect("send"));
    assert!(
        head.contains(&format!("&include=metadata&{} HTTP/1.1", sas.as_query())),
        "{head}"
    );
    assert!(!head.contains("authorization"), "{head}");

    let blob = BlobClient::new(http, endpoint, StorageCredential::SharedKey(key()));
    let request = blob.service().create_container("c00").expect("request");
    let head = heads(blob.send(request).await.expect("send"));
    assert!(
        head.starts_with("PUT /acct/c00?restype=container HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nauthorization: SharedKey devstoreaccount1:"),
        "{head}"
    );
    assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
}

// ---------------------------------------------------------------------
// Blob Storage on Azurite

/// The Blob operations a checkpoint store uses, and their error codes.
pub async fn blob_operations<R: Runtime>() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let blob = azurite.client::<R>();
    let c = "ops";
    blob.create_container(c).await.expect("create container");
    let e = blob.create_container(c).await.unwrap_err();
    assert_eq!(code_of(&e), Some(StorageErrorCode::ContainerAlreadyExists));
    assert!(!blob.create_container_if_missing(c).await.expect("exists"));

    let name = "127.0.0.1:5672/eh1/$default/ownership/0";
    let v1 = blob
        .put_empty_blob(c, name, &[("ownerid", "a")], &Condition::IfNoneMatchAny)
        .await
        .expect("create");
    let etag1 = v1.etag.clone().expect("etag");
    assert!(v1.last_modified_unix_ms.is_some());
    let e = blob
        .put_empty_blob(c, name, &[("ownerid", "b")], &Condition::IfNoneMatchAny)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(StorageErrorCode::BlobAlreadyExists));
    assert_eq!(e.service().map(|s| s.status), Some(409));

    let v2 = blob
        .set_metadata(
            c,
            name,
            &[("ownerid", "b")],
            &Condition::IfMatch(etag1.clone()),
        )
        .await
        .expect("set with the current ETag");
    assert_ne!(v2.etag.as_deref(), Some(etag1.as_str()));
    // A second writer at the same version loses.
    let e = blob
        .set_metadata(c, name, &[("ownerid", "c")], &Condition::IfMatch(etag1))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(StorageErrorCode::ConditionNotMet));

    let p = blob.get_properties(c, name).await.expect("properties");
    assert_eq!(p.version.etag, v2.etag);
    assert_eq!(p.metadata.get("ownerid").map(String::as_str), Some("b"));
    assert_eq!(p.content_length, Some(0));
    let e = blob.get_properties(c, "missing").await.unwrap_err();
    assert_eq!(code_of(&e), Some(StorageErrorCode::BlobNotFound));
    let e = blob
        .set_metadata(c, "missing", &[("k", "v")], &Condition::None)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(StorageErrorCode::BlobNotFound));

    // Listing: the prefix, metadata, bare ETags, and pages.
    for i in 1..5 {
        let n = format!("127.0.0.1:5672/eh1/$default/ownership/{i}");
        blob.put_empty_blob(c, &n, &[("ownerid", "")], &Condition::None)
            .await
            .expect("put");
    }
    blob.put_empty_blob(c, "elsewhere", &[], &Condition::None)
        .await
        .expect("put");
    let page = blob
        .list_blobs_page(
            c,
            &ListBlobs::with_metadata("127.0.0.1:5672/eh1/$default/ownership/").max_results(2),
        )
        .await
        .expect("page");
    assert_eq!(page.blobs.len(), 2);
    assert!(page.next_marker.is_some());
    assert_eq!(
        page.blobs[0].etag, v2.etag,
        "listed ETags are bare, as the header's unquoted"
    );
    assert_eq!(page.blobs[0].metadata_value("ownerid"), Some("b"));
    assert_eq!(page.blobs[1].metadata_value("ownerid"), Some(""));
    let all = blob
        .list_blobs(c, "127.0.0.1:5672/eh1/", Some(2))
        .await
        .expect("all pages");
    assert_eq!(all.len(), 5);
    assert!(blob
        .list_blobs(c, "nothing/", None)
        .await
        .expect("empty")
        .is_empty());
}

/// A store on a fresh container.
async fn store_on<R: Runtime>(azurite: &Azurite, container: &str) -> BlobCheckpointStore<R> {
    let blob = azurite.client::<R>();
    blob.create_container(container).await.expect("container");
    BlobCheckpointStore::new(blob, container)
}

/// The claim protocol and checkpoints, on any store.
async fn store_semantics(store: &dyn CheckpointStore) {
    let (hub, cg) = ("EH1", "$Default");
    assert!(store
        .list_ownership(NS, hub, cg)
        .await
        .expect("list")
        .is_empty());
    assert!(store
        .list_checkpoints(NS, hub, cg)
        .await
        .expect("list")
        .is_empty());

    // First claim wins; a second claim of the same version (never owned)
    // loses: only what was won comes back.
    let a = PartitionOwnership::new(NS, hub, cg, "0", "owner-a");
    let won = store
        .claim_ownership(std::slice::from_ref(&a))
        .await
        .expect("claim");
    assert_eq!(won.len(), 1);
    let v1 = won[0].clone();
    assert!(v1.etag.is_some() && v1.last_modified_unix_ms.is_some());
    let b = a.claimed_by("owner-b");
    assert!(store.claim_ownership(&[b]).await.expect("claim").is_empty());

    let listed = store.list_ownership(NS, hub, cg).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].owner_id, "owner-a");
    assert_eq!(listed[0].etag, v1.etag);
    assert_eq!(
        (
            listed[0].event_hub_name.as_str(),
            listed[0].consumer_group.as_str()
        ),
        (hub, cg)
    );

    // Renewal with the new ETag; the old one then loses.
    let renewed = store
        .claim_ownership(std::slice::from_ref(&v1))
        .await
        .expect("renew");
    assert_eq!(renewed.len(), 1);
    assert_ne!(renewed[0].etag, v1.etag);
    let stale = v1.claimed_by("owner-b");
    assert!(store
        .claim_ownership(&[stale])
        .await
        .expect("steal")
        .is_empty());
    // A mixed batch: a new partition is won, the stale one is not.
    let batch = [
        PartitionOwnership::new(NS, hub, cg, "1", "owner-b"),
        v1.claimed_by("owner-b"),
    ];
    let won = store.claim_ownership(&batch).await.expect("batch");
    assert_eq!(
        won.iter()
            .map(|o| o.partition_id.as_str())
            .collect::<Vec<_>>(),
        ["1"]
    );

    // Relinquish: an empty owner, at once claimable by its ETag.
    let released = store
        .claim_ownership(&[renewed[0].relinquished()])
        .await
        .expect("relinquish");
    assert_eq!(released.len(), 1);
    let listed = store.list_ownership(NS, hub, cg).await.expect("list");
    let p0 = listed.iter().find(|o| o.partition_id == "0").expect("0");
    assert!(p0.is_relinquished());
    let taken = store
        .claim_ownership(&[p0.claimed_by("owner-b")])
        .await
        .expect("take");
    assert_eq!(taken.len(), 1);

    // Checkpoint create, then update.
    let cp = PartitionCheckpoint::new(NS, hub, cg, "0", "4096", 41);
    store
        .update_checkpoint(&cp)
        .await
        .expect("create checkpoint");
    let cp2 = PartitionCheckpoint::new(NS, hub, cg, "0", "8192", 42);
    store
        .update_checkpoint(&cp2)
        .await
        .expect("update checkpoint");
    let cps = store.list_checkpoints(NS, hub, cg).await.expect("list");
    assert_eq!(cps, vec![cp2.clone()]);
    let mut incomplete = cp2;
    incomplete.sequence_number = None;
    assert!(store.update_checkpoint(&incomplete).await.is_err());
}

/// The blob store on Azurite: claims, renewal, relinquish, checkpoints,
/// names exactly as the other SDKs write them.
pub async fn blob_checkpoint_store<R: Runtime>() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let store = store_on::<R>(&azurite, "claims").await;
    store_semantics(&store).await;
    let names: Vec<String> = store
        .blob_client()
        .list_blobs("claims", "", None)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(
        names,
        [
            "127.0.0.1:5672/eh1/$default/checkpoint/0",
            "127.0.0.1:5672/eh1/$default/ownership/0",
            "127.0.0.1:5672/eh1/$default/ownership/1",
        ]
    );
    let p = store
        .blob_client()
        .get_properties("claims", "127.0.0.1:5672/eh1/$default/checkpoint/0")
        .await
        .expect("properties");
    assert_eq!(p.metadata.get("offset").map(String::as_str), Some("8192"));
    assert_eq!(
        p.metadata.get("sequencenumber").map(String::as_str),
        Some("42")
    );
}

/// `Hub::receive` checkpoints to Blob Storage through a `StorePersister`
/// over the blob store, in the shared layout; a new hub resumes after the
/// last handled event, and the blob holds its offset and sequence number.
pub async fn hub_checkpoints_in_blob_storage<R: Runtime>() {
    use eventhubs_async::{
        CheckpointCadence, CheckpointPersister, EventData, Hub, HubOptions, ReceiveOptions,
        StorePersister,
    };
    use futures_util::StreamExt;
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let store = store_on::<R>(&azurite, "hub-checkpoints").await;
    let persister = Arc::new(StorePersister::new(store.clone()));
    let emulator =
        eventhubs_emulator::Emulator::start(eventhubs_emulator::EmulatorConfig::default())
            .expect("emulator");
    let options = || {
        HubOptions::new()
            .with_partitioned_sender("1")
            .with_checkpoint_persister(persister.clone())
    };
    let hub = Hub::<R>::from_connection_string(&emulator.connection_string("eh1"), options())
        .expect("hub");
    hub.send_batch((0..12).map(|i| EventData::new(format!("event {i}"))))
        .await
        .expect("send");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let listener = hub
        .receive(
            "1",
            move |e| {
                s2.lock().unwrap().push(e.sequence_number());
                async { Ok::<(), std::io::Error>(()) }
            },
            ReceiveOptions::new().with_checkpoint_cadence(CheckpointCadence::every_events(5)),
        )
        .await
        .expect("receive");
    while seen.lock().unwrap().len() < 12 {
        R::default().sleep(Duration::from_millis(20)).await;
    }
    listener.close().await.expect("stopped cleanly");
    // The blob, as every SDK names and reads it.
    let namespace = hub.host().to_owned();
    let checkpoints = store
        .list_checkpoints(&namespace, "eh1", "$Default")
        .await
        .expect("list");
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    assert_eq!(checkpoints[0].partition_id, "1");
    assert_eq!(checkpoints[0].sequence_number, Some(11));
    let read = persister
        .read(&namespace, "eh1", "$Default", "1")
        .await
        .expect("read")
        .expect("a checkpoint");
    assert_eq!(read.sequence_number, 11);
    hub.close().await.expect("close");
    // A restarted hub resumes after it.
    let hub = Hub::<R>::from_connection_string(&emulator.connection_string("eh1"), options())
        .expect("hub");
    hub.send(EventData::new("after the restart"))
        .await
        .expect("send");
    let mut s = hub
        .receiver("1", ReceiveOptions::new())
        .await
        .expect("receiver");
    let next = s.next().await.expect("an event").expect("event");
    assert_eq!(next.sequence_number(), 12);
    assert_eq!(next.body(), "after the restart".as_bytes());
    s.close().await.expect("detached");
    hub.close().await.expect("close");
}

/// The in-memory store has the same semantics, on an injected clock.
pub async fn memory_checkpoint_store<R: Runtime>() {
    let now = Arc::new(std::sync::atomic::AtomicI64::new(1_000));
    let clock = now.clone();
    let store = MemoryCheckpointStore::with_clock(move || clock.load(Ordering::SeqCst));
    within::<R, _>(10, "the in-memory store", store_semantics(&store)).await;
    now.store(5_000, Ordering::SeqCst);
    let o = PartitionOwnership::new(NS, "other", "$default", "7", "x");
    let won = store.claim_ownership(&[o]).await.expect("claim");
    assert_eq!(won[0].last_modified_unix_ms, Some(5_000));
}

/// Listing follows `NextMarker` over many pages.
pub async fn paging<R: Runtime>() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let store = store_on::<R>(&azurite, "paging").await.with_page_size(3);
    let claims: Vec<_> = (0..10)
        .map(|p| PartitionOwnership::new(NS, "eh1", "$Default", p.to_string(), "me"))
        .collect();
    assert_eq!(
        store.claim_ownership(&claims).await.expect("claims").len(),
        10
    );
    for p in 0..7 {
        let cp = PartitionCheckpoint::new(
            NS,
            "eh1",
            "$Default",
            p.to_string(),
            (p * 100).to_string(),
            p,
        );
        store.update_checkpoint(&cp).await.expect("checkpoint");
    }
    let mut listed: Vec<String> = store
        .list_ownership(NS, "eh1", "$Default")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.partition_id)
        .collect();
    listed.sort_by_key(|p| p.parse::<u32>().unwrap());
    assert_eq!(listed, (0..10).map(|p| p.to_string()).collect::<Vec<_>>());
    assert_eq!(
        store
            .list_checkpoints(NS, "eh1", "$Default")
            .await
            .expect("list")
            .len(),
        7
    );
    let page = store
        .blob_client()
        .list_blobs_page(
            "paging",
            &ListBlobs::with_metadata("127.0.0.1:5672/eh1/$default/ownership/").max_results(3),
        )
        .await
        .expect("page");
    assert_eq!(page.blobs.len(), 3, "pages really are 3 long");
}

/// A wrong key is `AuthenticationFailed`; a missing container is
/// `ContainerNotFound`; a read-only SAS cannot claim.
pub async fn storage_errors<R: Runtime>() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let wrong = SharedKeyCredential::new(DEVELOPMENT_ACCOUNT, "d3Jvbmcga2V5IQ==").expect("base64");
    let store = BlobCheckpointStore::new(
        azurite.client_with::<R>(StorageCredential::SharedKey(wrong)),
        "any",
    );
    let e = store
        .list_ownership(NS, "eh1", "$default")
        .await
        .unwrap_err();
    // The service answers a wrong signature with 403 AuthenticationFailed;
    // Azurite 3.35.0 with 403 AuthorizationFailure and the service's
    // AuthenticationFailed message.
    assert!(e.is_authentication_failure(), "{e}");
    assert!(
        matches!(
            e.code(),
            Some(StorageErrorCode::AuthenticationFailed | StorageErrorCode::AuthorizationFailure)
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("Server failed to authenticate the request"),
        "{e}"
    );

    let missing = BlobCheckpointStore::new(azurite.client::<R>(), "missing");
    let e = missing
        .list_ownership(NS, "eh1", "$default")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&StorageErrorCode::ContainerNotFound), "{e}");
    let claim = PartitionOwnership::new(NS, "eh1", "$default", "0", "me");
    let e = missing
        .claim_ownership(std::slice::from_ref(&claim))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&StorageErrorCode::ContainerNotFound), "{e}");
    let cp = PartitionCheckpoint::new(NS, "eh1", "$default", "0", "1", 1);
    let e = missing.update_checkpoint(&cp).await.unwrap_err();
    assert_eq!(e.code(), Some(&StorageErrorCode::ContainerNotFound), "{e}");

    azurite
        .client::<R>()
        .create_container("readonly")
        .await
        .expect("container");
    let sas = key().container_sas("readonly", &ContainerSas::new("rl", unix_now() + 3600));
    let ro = BlobCheckpointStore::new(
        azurite.client_with::<R>(StorageCredential::Sas(sas)),
        "readonly",
    );
    assert!(ro
        .list_ownership(NS, "eh1", "$default")
        .await
        .expect("list")
        .is_empty());
    let e = ro.claim_ownership(&[claim]).await.unwrap_err();
    assert_eq!(
        e.code().map(|c| c.as_str().to_owned()).as_deref(),
        Some("AuthorizationPermissionMismatch"),
        "{e}"
    );
}

/// Account and container SAS tokens (made with the key, as a user would
/// copy them from the portal) authorize the whole store; a connection
/// string with `SharedAccessSignature` too.
pub async fn sas_tokens<R: Runtime>() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    azurite
        .client::<R>()
        .create_container("sas")
        .await
        .expect("container");
    let account = key().account_sas(&AccountSas::new("rwlac", unix_now() + 3600));
    let store = BlobCheckpointStore::new(
        azurite.client_with::<R>(StorageCredential::Sas(account.clone())),
        "sas",
    );
    store_semantics(&store).await;
    let container = key().container_sas("sas", &ContainerSas::new("racwl", unix_now() + 3600));
    let store = BlobCheckpointStore::new(
        azurite.client_with::<R>(StorageCredential::Sas(container)),
        "sas",
    );
    assert_eq!(
        store
            .list_ownership(NS, "eh1", "$default")
            .await
            .expect("list")
            .len(),
        2
    );
    let cs = format!(
        "BlobEndpoint={};SharedAccessSignature={}",
        azurite.blob_endpoint(),
        account.as_query()
    );
    let store =
        BlobCheckpointStore::from_connection_string(R::default(), &cs, "sas").expect("store");
    assert_eq!(
        store
            .list_checkpoints(NS, "eh1", "$default")
            .await
            .expect("list")
            .len(),
        1
    );
    // An expired SAS is refused.
    let expired = key().account_sas(&AccountSas::new("rwlac", unix_now() - 60));
    let store = BlobCheckpointStore::new(
        azurite.client_with::<R>(StorageCredential::Sas(expired)),
        "sas",
    );
    let e = store
        .list_ownership(NS, "eh1", "$default")
        .await
        .unwrap_err();
    assert!(e.is_authentication_failure(), "{e}");
}

// ---------------------------------------------------------------------
// Interop with the official Python blob checkpoint store

const PY_MODULE: &str = "azure.eventhub.extensions.checkpointstoreblob";

fn have_python_store() -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {PY_MODULE}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing("python3 cannot import azure.eventhub.extensions.checkpointstoreblob (pip install azure-eventhub-checkpointstoreblob)");
    }
    ok
}

/// Runs `checkpointstore.py` with `args`; returns its JSON output.
fn python(args: &[&str]) -> serde_json::Value {
    let script = workspace().join("tests/storage/checkpointstore.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "checkpointstore.py {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad JSON from Python ({e}): {stdout}"))
}

/// Our records are read by Python's `list_ownership` and
/// `list_checkpoints` with the same values, and Python's by ours.
pub async fn python_interop<R: Runtime>() {
    if !have_python_store() {
        return;
    }
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let store = store_on::<R>(&azurite, "interop").await;
    let cs = azurite.connection_string();
    // The namespace keeps the port and mixed case, as an Endpoint is
    // written; both sides lowercase the blob names.
    let (ns, hub, cg) = ("LocalHost:5672", "Eh1", "$Default");

    // Ours write: partitions 0 and 1 owned by us, 2 relinquished;
    // checkpoints on 0 and 1.
    let claims: Vec<_> = ["0", "1", "2"]
        .iter()
        .map(|p| PartitionOwnership::new(ns, hub, cg, *p, "rust-owner"))
        .collect();
    let won = store.claim_ownership(&claims).await.expect("claims");
    assert_eq!(won.len(), 3);
    let p2 = won
        .iter()
        .find(|o| o.partition_id == "2")
        .expect("2")
        .relinquished();
    let released = store.claim_ownership(&[p2]).await.expect("relinquish");
    store
        .update_checkpoint(&PartitionCheckpoint::new(ns, hub, cg, "0", "1024", 10))
        .await
        .expect("cp");
    store
        .update_checkpoint(&PartitionCheckpoint::new(ns, hub, cg, "1", "2048", 20))
        .await
        .expect("cp");
    let ours = store.list_ownership(ns, hub, cg).await.expect("list");

    let read = python(&["read", &cs, "interop", ns, hub, cg]);
    let py_owners = read["ownership"].as_array().expect("ownership");
    assert_eq!(py_owners.len(), 3, "{read}");
    for o in &ours {
        let p = py_owners
            .iter()
            .find(|p| p["partition_id"] == o.partition_id.as_str())
            .unwrap_or_else(|| panic!("Python lists no ownership of {}: {read}", o.partition_id));
        // Python reads an empty `<ownerid/>` as None.
        if o.owner_id.is_empty() {
            assert!(p["owner_id"].is_null() || p["owner_id"] == "", "{p}");
        } else {
            assert_eq!(p["owner_id"], o.owner_id.as_str());
        }
        assert_eq!(p["etag"], o.etag.as_deref().unwrap());
        assert_eq!(p["fully_qualified_namespace"], ns);
        let py_ms = (p["last_modified_time"].as_f64().unwrap() * 1000.0).round() as i64;
        assert_eq!(
            Some(py_ms),
            o.last_modified_unix_ms,
            "last-modified of {}",
            o.partition_id
        );
    }
    assert_eq!(released[0].owner_id, "");
    let mut py_cps: Vec<(String, String, i64)> = read["checkpoints"]
        .as_array()
        .expect("checkpoints")
        .iter()
        .map(|c| {
            (
                c["partition_id"].as_str().unwrap().to_owned(),
                c["offset"].as_str().unwrap().to_owned(),
                c["sequence_number"].as_i64().unwrap(),
            )
        })
        .collect();
    py_cps.sort();
    assert_eq!(
        py_cps,
        [
            ("0".into(), "1024".into(), 10),
            ("1".into(), "2048".into(), 20)
        ]
    );

    // Python writes: it steals partition 1 at the ETag it listed, claims
    // the relinquished 2 and a new 3, and checkpoints 1 and 3.
    let wrote = python(&["write", &cs, "interop", ns, hub, cg, "python-owner"]);
    let py_won: Vec<&str> = wrote["claimed"]
        .as_array()
        .expect("claimed")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(py_won, ["1", "2", "3"], "{wrote}");
    let owners = store.list_ownership(ns, hub, cg).await.expect("list");
    let owner_of = |p: &str| {
        owners
            .iter()
            .find(|o| o.partition_id == p)
            .map(|o| o.owner_id.clone())
    };
    assert_eq!(owner_of("0").as_deref(), Some("rust-owner"));
    for p in ["1", "2", "3"] {
        assert_eq!(
            owner_of(p).as_deref(),
            Some("python-owner"),
            "partition {p}"
        );
    }
    let py_etag = wrote["etags"]["1"].as_str().expect("etag");
    let ours_1 = owners.iter().find(|o| o.partition_id == "1").unwrap();
    assert_eq!(
        ours_1
            .etag
            .as_deref()
            .map(eventhubs_async::storage::unquote_etag),
        Some(eventhubs_async::storage::unquote_etag(py_etag))
    );
    let mut cps: Vec<(String, Option<String>, Option<i64>)> = store
        .list_checkpoints(ns, hub, cg)
        .await
        .expect("list")
        .into_iter()
        .map(|c| (c.partition_id, c.offset, c.sequence_number))
        .collect();
    cps.sort();
    assert_eq!(
        cps,
        [
            ("0".into(), Some("1024".into()), Some(10)),
            ("1".into(), Some("3072".into()), Some(30)),
            ("3".into(), Some("5120".into()), Some(50)),
        ]
    );
    // Our old ETag for partition 1 now loses to Python's write.
    let stale = won.iter().find(|o| o.partition_id == "1").unwrap().clone();
    assert!(store
        .claim_ownership(&[stale])
        .await
        .expect("claim")
        .is_empty());
}

/// Instantiates every scenario as a `#[test]` for runtime `$rt`, run by
/// `$block_on`.
#[macro_export]
macro_rules! storage_tests {
    ($rt:ty, $block_on:expr) => {
        storage_tests!(@each $rt, $block_on;
            http_reuse_and_retry, http_errors_are_typed, https_and_certificates,
            storage_credentials_on_the_wire, blob_operations,
            blob_checkpoint_store, memory_checkpoint_store, paging, storage_errors, sas_tokens,
            python_interop, hub_checkpoints_in_blob_storage);
    };
    (@each $rt:ty, $block_on:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let block_on = $block_on;
                block_on(storage::within::<$rt, _>(120, stringify!($name), storage::$name::<$rt>()));
            }
        )*
    };
}
