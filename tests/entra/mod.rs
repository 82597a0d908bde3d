//! Entra ID credentials end to end, written once and run by both adapters
//! (`eventhubs-tokio/tests/entra.rs`, `eventhubs-async-std/tests/entra.rs`):
//!
//! - against a real OAuth2 server nobody here wrote, npm's
//!   `oauth2-mock-server` dressed as Entra ID's v2.0 endpoint
//!   (`tests/oauth2/server.mjs`, which checks client secrets and verifies
//!   certificate assertions with Node's crypto): client secret and
//!   certificate credentials get tokens, the emulator trusts the server's
//!   JWKS, and send, receive and information calls are authorised by them;
//!   an identity without the right is refused; a token that expires
//!   mid-stream is replaced without losing an event; workload identity
//!   follows its token file;
//! - against loopback IMDS and App Service endpoints written here, shaped
//!   as Microsoft documents them (tokens signed with the fixture key).
//!
//! Without Node or `npm install --prefix tests/oauth2`, the OAuth2 tests
//! print SKIPPED, unless `EVENTHUBS_INTEROP=require`, which fails them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use eventhubs_async::identity::{
    ClientCertificateCredential, ClientSecretCredential, CredentialError, CredentialOptions,
    DefaultAzureCredential, ManagedIdentityCredential, ManagedIdentityId, ManagedIdentitySource,
    TokenCredential, WorkloadIdentityCredential,
};
use eventhubs_async::transport::{TransportKind, TransportOptions};
use eventhubs_async::{
    Error, EventData, EventPosition, Hub, HubOptions, ReceiveOptions, Runtime, TokenFuture,
    TokenProvider, TokenType, Value,
};
use eventhubs_emulator::entra::{
    EntraIdConfig, JwtRights, KeySource, RoleAssignment, TrustedIssuer,
};
use eventhubs_emulator::{Emulator, EmulatorConfig};
// JWTs are decoded with the core's parser to check what the credentials
// sent: test plumbing, not the client's API.
use eventhubs_async::identity::ClientCertificate;
use eventhubs_proto::identity::jwt::{AssertionOptions, DecodedJwt, ThumbprintHeader};
use futures_util::StreamExt;
use serde_json::json;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SECRET: &str = "s3cret-Value~with+symbols/=";

/// Runs `f`, failing if it takes longer than `secs`.
pub async fn within<R: Runtime, T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    let sleep = R::default().sleep(Duration::from_secs(secs));
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => t,
        futures_util::future::Either::Right(_) => panic!("{what}: no result within {secs} s"),
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(name: &str) -> PathBuf {
    root()
        .join("eventhubs-proto/tests/fixtures/identity")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture")
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("eh-entra-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// oauth2-mock-server as Entra ID, killed on drop.
pub struct OAuth2Peer {
    child: Child,
    pub port: u16,
    pub issuer: String,
    _dir: TempDir,
}

impl Drop for OAuth2Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OAuth2Peer {
    /// Starts the server with `clients`; `None` (after SKIPPED) when Node or
    /// the package is missing, a panic under `EVENTHUBS_INTEROP=require`.
    pub fn start(clients: serde_json::Value) -> Option<OAuth2Peer> {
        let dir = root().join("tests/oauth2");
        let missing = if !dir.join("node_modules/oauth2-mock-server").is_dir() {
            Some(
                "oauth2-mock-server is not installed (npm install --prefix tests/oauth2)"
                    .to_string(),
            )
        } else if Command::new("node").arg("--version").output().is_err() {
            Some("node is not installed".to_string())
        } else {
            None
        };
        if let Some(why) = missing {
            if std::env::var("EVENTHUBS_INTEROP").as_deref() == Ok("require") {
                panic!("EVENTHUBS_INTEROP=require but {why}");
            }
            println!("SKIPPED: interop peer unavailable: {why}");
            return None;
        }
        let tmp = TempDir::new("oauth2");
        let config = tmp.0.join("config.json");
        std::fs::write(
            &config,
            json!({"tenant": TENANT, "clients": clients}).to_string(),
        )
        .unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("server output");
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("LISTENING"), "server said {line:?}");
        let port = words.next().unwrap().parse().unwrap();
        let issuer = words.next().unwrap().to_owned();
        Some(OAuth2Peer {
            child,
            port,
            issuer,
            _dir: tmp,
        })
    }

    pub fn authority(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn options(&self) -> CredentialOptions {
        CredentialOptions::default()
            .with_authority_host(&self.authority())
            .unwrap()
    }

    /// The emulator's trust in this server's keys.
    pub fn issuer_config(&self) -> TrustedIssuer {
        TrustedIssuer::new(
            &self.issuer,
            KeySource::JwksUrl(format!("http://127.0.0.1:{}/jwks", self.port)),
        )
    }
}

fn rights(role: &str) -> JwtRights {
    JwtRights::from_role(role).unwrap()
}

/// An emulator trusting `issuers`, with role assignments.
fn emulator(issuers: Vec<TrustedIssuer>, roles: &[(&str, &str)]) -> Emulator {
    let mut entra = EntraIdConfig::new();
    for i in issuers {
        entra = entra.trust(i);
    }
    for (principal, role) in roles {
        entra = entra.assign(RoleAssignment::new(*principal, rights(role)).on_hubs(["eh1"]));
    }
    Emulator::start(EmulatorConfig::default().with_entra_id(entra)).expect("emulator")
}

fn hub<R: Runtime>(e: &Emulator, provider: impl TokenProvider + 'static) -> Hub<R> {
    Hub::new(
        "localhost",
        "eh1",
        provider,
        HubOptions::new()
            .with_transport(TransportOptions::new(TransportKind::Plain).with_port(e.addr().port()))
            .with_partitioned_sender("0"),
    )
    .expect("hub")
}

fn numbered(range: std::ops::Range<i64>) -> Vec<EventData> {
    range
        .map(|i| EventData::new(format!("event {i}")).with_property("n", Value::Long(i)))
        .collect()
}

fn earliest() -> ReceiveOptions {
    ReceiveOptions::new().with_start_position(EventPosition::Earliest)
}

async fn receive_n<R: Runtime>(h: &Hub<R>, n: usize) -> Vec<i64> {
    let mut s = h.receiver("0", earliest()).await.expect("receiver");
    within::<R, _>(30, "receiving", async {
        let mut got = Vec::new();
        while got.len() < n {
            match s.next().await {
                Some(Ok(e)) => got.push(e.get("n").and_then(Value::as_i64).unwrap()),
                Some(Err(e)) => panic!("receiver failed after {}: {e}", got.len()),
                None => panic!("receiver ended after {}", got.len()),
            }
        }
        got
    })
    .await
}

fn is_unauthorized(e: &Error) -> bool {
    e.status() == Some(401) || e.condition() == Some("amqp:unauthorized-access")
}

/// Counts the tokens a provider hands out.
struct Counting<P> {
    inner: P,
    calls: Arc<AtomicUsize>,
}

impl<P: TokenProvider> TokenProvider for Counting<P> {
    fn token(&self, audience: &str) -> TokenFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.token(audience)
    }
}

fn oid_of(token: &str) -> String {
    DecodedJwt::parse(token)
        .unwrap()
        .claim_str("oid")
        .unwrap()
        .to_owned()
}

/// Client secret and certificate credentials, the emulator trusting the
/// OAuth2 server's JWKS; rights per identity; a wrong secret.
pub async fn entra_secret_and_certificate<R: Runtime>() {
    let Some(peer) = OAuth2Peer::start(json!({
        "owner-app": {"certificate_pem": read("leaf.pem"), "oid": "oid-owner"},
        "sender-app": {"secret": SECRET, "oid": "oid-sender"},
        "listener-app": {"secret": SECRET, "oid": "oid-listener"},
    })) else {
        return;
    };
    let e = emulator(
        vec![peer.issuer_config()],
        &[
            ("oid-owner", "Azure Event Hubs Data Owner"),
            ("oid-sender", "Send"),
            ("oid-listener", "Azure Event Hubs Data Receiver"),
        ],
    );

    // The certificate (from the modern PFX, chain sent as x5c): everything works.
    let owner = ClientCertificateCredential::<R>::from_file(
        TENANT,
        "owner-app",
        fixture("chain.aes.pfx"),
        Some("fixture-pass"),
        peer.options(),
    )
    .unwrap()
    .with_assertion_options(AssertionOptions {
        send_chain: true,
        thumbprint: ThumbprintHeader::Sha1,
        ..AssertionOptions::default()
    })
    .unwrap();
    let token = owner
        .get_token("https://eventhubs.azure.net/.default")
        .await
        .expect("certificate token");
    assert_eq!(oid_of(token.secret()), "oid-owner");
    assert!(!format!("{owner:?} {token:?}").contains(token.secret()));
    let h = hub::<R>(&e, owner.clone());
    h.send_batch(numbered(0..3))
        .await
        .expect("send with the owner's JWT");
    assert_eq!(receive_n(&h, 3).await, [0, 1, 2]);
    let info = h.runtime_information().await.expect("hub information");
    assert_eq!(info.partition_ids, ["0", "1"]);
    let p = h
        .partition_information("0")
        .await
        .expect("partition information");
    assert_eq!(p.last_sequence_number, 2);
    h.close().await.unwrap();

    // PEM certificate, no chain.
    let pem = ClientCertificate::from_pem(
        format!("{}{}", read("leaf.pem"), read("leaf.key.pem")).as_bytes(),
        None,
    )
    .unwrap();
    let cred =
        ClientCertificateCredential::<R>::new(TENANT, "owner-app", pem, peer.options()).unwrap();
    cred.get_token("https://eventhubs.azure.net/.default")
        .await
        .expect("PEM certificate token");

    // A sender may send, not receive.
    let sender =
        ClientSecretCredential::<R>::new(TENANT, "sender-app", SECRET, peer.options()).unwrap();
    assert!(!format!("{sender:?}").contains(SECRET));
    let h = hub::<R>(&e, sender);
    h.send_batch(numbered(3..5))
        .await
        .expect("the sender sends");
    let err = match h.receiver("0", earliest()).await {
        Err(err) => err,
        Ok(mut s) => within::<R, _>(30, "refusal", s.next())
            .await
            .expect("an item")
            .expect_err("a refusal"),
    };
    assert!(is_unauthorized(&err), "{err}");
    h.close().await.unwrap();

    // A listener may receive, not send.
    let listener =
        ClientSecretCredential::<R>::new(TENANT, "listener-app", SECRET, peer.options()).unwrap();
    let h = hub::<R>(&e, listener);
    assert_eq!(receive_n(&h, 5).await, [0, 1, 2, 3, 4]);
    let err = within::<R, _>(60, "refused send", h.send(EventData::new("nope")))
        .await
        .expect_err("refused");
    assert!(is_unauthorized(&err), "{err}");
    h.close().await.unwrap();

    // A wrong secret: Entra's error, with its AADSTS code, and no secret.
    let wrong =
        ClientSecretCredential::<R>::new(TENANT, "sender-app", "not-the-secret", peer.options())
            .unwrap();
    let err = wrong
        .get_token("https://eventhubs.azure.net/.default")
        .await
        .unwrap_err();
    match &err {
        CredentialError::Refused {
            status: 401,
            error_codes,
            description,
            ..
        } => {
            assert_eq!(error_codes, &[7000215]);
            assert!(description.as_deref().unwrap().starts_with("AADSTS7000215"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
    let h = hub::<R>(&e, wrong);
    let err = within::<R, _>(60, "failed send", h.send(EventData::new("x")))
        .await
        .expect_err("no token");
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    let _ = h.close().await;

    // As a TokenProvider for another scope (the Blob Storage client asks
    // for https://storage.azure.com/.default): that scope goes to Entra ID,
    // which here knows only Event Hubs.
    let sender =
        ClientSecretCredential::<R>::new(TENANT, "sender-app", SECRET, peer.options()).unwrap();
    let err = TokenProvider::token(&sender, "https://storage.azure.com/.default")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("AADSTS500011") && err.to_string().contains("storage.azure.com"),
        "{err}"
    );
    let t = TokenProvider::token(&sender, "amqps://localhost/eh1/Partitions/0")
        .await
        .expect("CBS audience");
    assert_eq!(t.token_type, TokenType::Jwt);
    assert!(t.expires_at_unix > eventhubs_async::credentials::unix_now() + 3000);

    // An unknown tenant and an unknown application are named.
    let err =
        ClientSecretCredential::<R>::new("other-tenant", "sender-app", SECRET, peer.options())
            .unwrap()
            .get_token("https://eventhubs.azure.net/.default")
            .await
            .unwrap_err();
    assert!(err.to_string().contains("AADSTS90002"), "{err}");
}

/// Tokens living 8 s: the client puts a fresh one before each expires,
/// and a stream of sends and receives loses nothing.
pub async fn entra_token_refreshed_mid_stream<R: Runtime>() {
    let Some(peer) = OAuth2Peer::start(json!({
        "short-app": {"secret": SECRET, "oid": "oid-short", "ttl": 8},
    })) else {
        return;
    };
    let e = emulator(vec![peer.issuer_config()], &[("oid-short", "Manage")]);
    let calls = Arc::new(AtomicUsize::new(0));
    let cred =
        ClientSecretCredential::<R>::new(TENANT, "short-app", SECRET, peer.options()).unwrap();
    let h = hub::<R>(
        &e,
        Counting {
            inner: cred,
            calls: calls.clone(),
        },
    );
    let mut stream = h.receiver("0", earliest()).await.expect("receiver");
    let started = Instant::now();
    let total = 60;
    let sender = async {
        for i in 0..total {
            h.send_batch(numbered(i..i + 1))
                .await
                .unwrap_or_else(|e| panic!("send {i} after {:?}: {e}", started.elapsed()));
            R::default().sleep(Duration::from_millis(350)).await;
        }
    };
    let receiver = async {
        let mut got = Vec::new();
        while got.len() < total as usize {
            match stream.next().await {
                Some(Ok(ev)) => got.push(ev.get("n").and_then(Value::as_i64).unwrap()),
                Some(Err(e)) => panic!(
                    "receiver failed after {} events, {:?}: {e}",
                    got.len(),
                    started.elapsed()
                ),
                None => panic!("receiver ended"),
            }
        }
        got
    };
    let (_, got) = within::<R, _>(90, "stream", futures_util::future::join(sender, receiver)).await;
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "every event, once, in order"
    );
    let elapsed = started.elapsed();
    let tokens = calls.load(Ordering::SeqCst);
    // Over ~21 s of 8 s tokens, each audience got at least two more.
    assert!(elapsed > Duration::from_secs(16), "{elapsed:?}");
    assert!(
        tokens >= 5,
        "only {tokens} tokens handed out in {elapsed:?}"
    );
    println!("{total} events over {elapsed:?} with {tokens} tokens handed out");
    h.close().await.unwrap();
}

/// Workload identity: the federated token file is the assertion and is
/// read again when it changes.
pub async fn entra_workload_identity<R: Runtime>() {
    let Some(peer) = OAuth2Peer::start(json!({
        "wi-app": {"federated_tokens": {"federated-token-one": "oid-a", "federated-token-number-two": "oid-b"}, "oid": "unused"},
    })) else {
        return;
    };
    let dir = TempDir::new("wi");
    let file = dir.0.join("token");
    std::fs::write(&file, "federated-token-one\n").unwrap();
    let cred =
        WorkloadIdentityCredential::<R>::new(TENANT, "wi-app", &file, peer.options()).unwrap();
    let t = cred
        .get_token("https://eventhubs.azure.net/.default")
        .await
        .expect("token");
    assert_eq!(oid_of(t.secret()), "oid-a");
    std::fs::write(&file, "federated-token-number-two").unwrap();
    // Another scope, so the cache does not answer.
    let t = cred
        .get_token("https://eventhubs.azure.net//.default")
        .await
        .expect("token");
    assert_eq!(
        oid_of(t.secret()),
        "oid-b",
        "the changed file was read again"
    );
    std::fs::write(&file, "revoked").unwrap();
    // The provider asks for the default scope: the first token (oid-a), cached.
    let e = emulator(vec![peer.issuer_config()], &[("oid-a", "Manage")]);
    let h = hub::<R>(&e, cred.clone());
    h.send(EventData::new("wi"))
        .await
        .expect("cached token still works");
    h.close().await.unwrap();
    std::fs::remove_file(&file).unwrap();
    let err = WorkloadIdentityCredential::<R>::new(TENANT, "wi-app", &file, peer.options())
        .unwrap()
        .get_token("https://eventhubs.azure.net/.default")
        .await
        .unwrap_err();
    assert!(matches!(err, CredentialError::File { .. }), "{err:?}");
}

/// The environment chain: a secret from the variables, and managed
/// identity unavailable when nothing answers.
pub async fn entra_environment_chain<R: Runtime>() {
    // Nothing configured, IMDS where nothing listens: unavailable, quickly.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let vars = |v: &[(&str, String)]| {
        let m: HashMap<String, String> =
            v.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        move |k: &str| m.get(k).cloned()
    };
    let chain = DefaultAzureCredential::<R>::from_env(
        vars(&[(
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            format!("http://127.0.0.1:{dead_port}"),
        )]),
        CredentialOptions::default(),
    )
    .unwrap();
    assert_eq!(chain.names(), ["ManagedIdentityCredential"]);
    let started = Instant::now();
    let err = chain
        .get_token("https://eventhubs.azure.net/.default")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CredentialError::Chain(r) if r.len() == 1 && r[0].contains("ManagedIdentityCredential")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let Some(peer) = OAuth2Peer::start(json!({"env-app": {"secret": SECRET, "oid": "oid-env"}}))
    else {
        return;
    };
    let chain = DefaultAzureCredential::<R>::from_env(
        vars(&[
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", "env-app".into()),
            ("AZURE_CLIENT_SECRET", SECRET.into()),
            ("AZURE_AUTHORITY_HOST", peer.authority()),
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                format!("http://127.0.0.1:{dead_port}"),
            ),
        ]),
        CredentialOptions::default(),
    )
    .unwrap();
    assert_eq!(
        chain.names(),
        ["ClientSecretCredential", "ManagedIdentityCredential"]
    );
    assert!(!format!("{chain:?}").contains(SECRET));
    let t = chain
        .get_token("https://eventhubs.azure.net/.default")
        .await
        .expect("the secret works");
    assert_eq!(oid_of(t.secret()), "oid-env");
    let e = emulator(vec![peer.issuer_config()], &[("oid-env", "Send")]);
    let h = hub::<R>(&e, chain);
    h.send(EventData::new("env")).await.expect("send");
    h.close().await.unwrap();
}

// ----- managed identity against loopback endpoints -----

const MI_ISSUER: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";

/// A JWT for `oid` valid `ttl` s, signed with the fixture key.
fn mint(oid: &str, ttl: u64) -> (String, u64) {
    let c = ClientCertificate::from_pem(
        format!("{}{}", read("leaf.pem"), read("leaf.key.pem")).as_bytes(),
        None,
    )
    .unwrap();
    let now = eventhubs_async::credentials::unix_now();
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t": c.x5t()});
    let claims = json!({"aud": "https://eventhubs.azure.net", "iss": MI_ISSUER, "iat": now, "nbf": now, "exp": now + ttl, "oid": oid, "appid": "mi-app", "tid": TENANT});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pair = ring::signature::RsaKeyPair::from_der(c.private_key().as_bytes()).unwrap();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    (
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        now + ttl,
    )
}

/// A scripted HTTP/1.1 endpoint on loopback: each request gets the next
/// answer of `reply(n, request)`; requests are recorded.
pub struct Stub {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    pub fn start(reply: impl Fn(usize, &str) -> (u16, String) + Send + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(mut s) = conn else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => req.extend_from_slice(&buf[..k]),
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let (status, body) = reply(n, &text);
                log.lock().unwrap().push(text);
                let reason = if status == 200 { "OK" } else { "Error" };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Stub { port, requests }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// IMDS (a 503 first, then all-string fields) and App Service (number and
/// date forms of expires_on), both authorising the emulator.
pub async fn entra_managed_identity<R: Runtime>() {
    let e = emulator(
        vec![TrustedIssuer::new(
            MI_ISSUER,
            KeySource::PublicKeyFile(fixture("leaf.pub.pem")),
        )],
        &[("oid-mi", "Manage")],
    );
    let imds = Stub::start(|n, _| {
        if n == 0 {
            return (503, r#"{"error":"service_unavailable"}"#.into());
        }
        let (token, exp) = mint("oid-mi", 3600);
        (200, json!({"access_token": token, "refresh_token": "", "expires_in": "3599", "expires_on": exp.to_string(), "not_before": (exp - 3600).to_string(), "resource": "https://eventhubs.azure.net", "token_type": "Bearer"}).to_string())
    });
    let cred = ManagedIdentityCredential::<R>::with_source(
        ManagedIdentitySource::imds_at_host(&imds.url()),
        ManagedIdentityId::ClientId("mi-client".into()),
        CredentialOptions::default(),
    )
    .unwrap();
    let h = hub::<R>(&e, cred);
    h.send_batch(numbered(0..2))
        .await
        .expect("send with the IMDS token");
    assert_eq!(receive_n(&h, 2).await, [0, 1]);
    h.close().await.unwrap();
    let reqs = imds.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "one retry after the 503: {reqs:?}");
    for r in &reqs {
        assert!(r.starts_with("GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Feventhubs.azure.net&client_id=mi-client HTTP/1.1\r\n"), "{r}");
        assert_eq!(header(r, "Metadata"), Some("true"));
    }

    let app = Stub::start(|n, _| {
        let (token, exp) = mint("oid-mi", 3600);
        let expires_on = if n == 0 {
            json!(exp)
        } else {
            json!("12/31/2099 11:59:59 PM +00:00")
        };
        (200, json!({"access_token": token, "expires_on": expires_on, "resource": "https://eventhubs.azure.net", "token_type": "Bearer", "client_id": "mi-app"}).to_string())
    });
    let cred = ManagedIdentityCredential::<R>::with_source(
        ManagedIdentitySource::AppService {
            endpoint: format!("{}/msi/token", app.url()),
            header: "identity-header-value".into(),
        },
        ManagedIdentityId::ObjectId("mi-object".into()),
        CredentialOptions::default(),
    )
    .unwrap();
    assert!(!format!("{cred:?}").contains("identity-header-value"));
    let t = cred
        .get_token("https://eventhubs.azure.net/.default")
        .await
        .expect("App Service token");
    assert!(t.expires_on > eventhubs_async::credentials::unix_now() + 3000);
    let t = cred
        .get_token("https://eventhubs.azure.net//.default")
        .await
        .expect("the 2017 date form");
    assert_eq!(t.expires_on, 4_102_444_799);
    let h = hub::<R>(&e, cred);
    h.send(EventData::new("app service"))
        .await
        .expect("send with the App Service token");
    h.close().await.unwrap();
    for r in app.requests.lock().unwrap().iter() {
        assert!(r.starts_with("GET /msi/token?api-version=2019-08-01&resource=https%3A%2F%2Feventhubs.azure.net&object_id=mi-object HTTP/1.1\r\n"), "{r}");
        assert_eq!(
            header(r, "X-IDENTITY-HEADER"),
            Some("identity-header-value")
        );
    }

    // IMDS without the identity: unavailable. Nobody answering at all: unavailable within the 1 s probe.
    let missing = Stub::start(|_, _| {
        (
            400,
            r#"{"error":"invalid_request","error_description":"Identity not found"}"#.into(),
        )
    });
    let err = ManagedIdentityCredential::<R>::with_source(
        ManagedIdentitySource::imds_at_host(&missing.url()),
        ManagedIdentityId::SystemAssigned,
        CredentialOptions::default(),
    )
    .unwrap()
    .get_token("https://eventhubs.azure.net/.default")
    .await
    .unwrap_err();
    assert!(
        err.is_unavailable() && err.to_string().contains("Identity not found"),
        "{err}"
    );
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let err = ManagedIdentityCredential::<R>::with_source(
        ManagedIdentitySource::imds_at_host(&format!("http://127.0.0.1:{silent_port}")),
        ManagedIdentityId::SystemAssigned,
        CredentialOptions::default(),
    )
    .unwrap()
    .get_token("https://eventhubs.azure.net/.default")
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    drop(silent);
    // An identity the emulator gives no role: the put-token is refused.
    let other = Stub::start(|_, _| {
        let (token, exp) = mint("oid-nobody", 3600);
        (
            200,
            json!({"access_token": token, "expires_on": exp}).to_string(),
        )
    });
    let cred = ManagedIdentityCredential::<R>::with_source(
        ManagedIdentitySource::imds_at_host(&other.url()),
        ManagedIdentityId::SystemAssigned,
        CredentialOptions::default(),
    )
    .unwrap();
    let h = hub::<R>(&e, cred);
    let err = within::<R, _>(60, "refused", h.send(EventData::new("x")))
        .await
        .expect_err("no role");
    assert!(is_unauthorized(&err), "{err}");
    let _ = h.close().await;
}

/// The hub manager with an Entra ID credential, as `Bearer`: a Data Owner
/// of the namespace creates, lists and deletes a hub; an identity with
/// Send only is refused with 401.
pub async fn entra_hub_manager<R: Runtime>() {
    use eventhubs_async::management::{HubDescription, ManagementCredential};
    use eventhubs_async::HubManager;
    use eventhubs_proto::management::ManagementEndpoint;

    let Some(peer) = OAuth2Peer::start(json!({
        "owner-app": {"secret": SECRET, "oid": "oid-owner"},
        "sender-app": {"secret": SECRET, "oid": "oid-sender"},
    })) else {
        return;
    };
    let entra = EntraIdConfig::new()
        .trust(peer.issuer_config())
        .assign(RoleAssignment::new(
            "oid-owner",
            rights("Azure Event Hubs Data Owner"),
        ))
        .assign(RoleAssignment::new("oid-sender", rights("Send")).on_hubs(["eh1"]));
    let e = Emulator::builder()
        .config(EmulatorConfig::default().with_entra_id(entra))
        .management(true)
        .start()
        .expect("emulator");
    let endpoint = ManagementEndpoint::parse(&e.management_endpoint().unwrap()).unwrap();
    let credential = |client: &str| {
        ManagementCredential::entra_id(
            ClientSecretCredential::<R>::new(TENANT, client, SECRET, peer.options()).unwrap(),
        )
    };
    let owner = HubManager::<R>::for_endpoint(endpoint.clone(), credential("owner-app")).unwrap();
    let made = within::<R, _>(
        30,
        "create",
        owner.put("entra-made", &HubDescription::new().with_partition_count(2)),
    )
    .await
    .expect("a Data Owner creates");
    assert_eq!(made.partition_ids, ["0", "1"]);
    let names: Vec<String> = owner
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(names, ["eh1", "entra-made"]);
    let sender = HubManager::<R>::for_endpoint(endpoint, credential("sender-app")).unwrap();
    let err = sender.get("eh1").await.expect_err("Send is not Manage");
    assert_eq!(err.status(), Some(401), "{err}");
    owner.delete("entra-made").await.expect("deleted");
    assert!(owner.get("entra-made").await.unwrap().is_none());
}

#[macro_export]
macro_rules! entra_tests {
    ($rt:ty, $block_on:expr) => {
        entra_tests!(@each $rt, $block_on;
            entra_secret_and_certificate, entra_token_refreshed_mid_stream,
            entra_workload_identity, entra_environment_chain, entra_managed_identity,
            entra_hub_manager);
    };
    (@each $rt:ty, $block_on:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let block_on = $block_on;
                block_on(entra::$name::<$rt>());
            }
        )*
    };
}

/// The official Python SDK with a credential that fetches its JWT from the
/// OAuth2 server (`tests/python_sdk/entra.py`): send and receive succeed, a
/// forged token and an identity without a role are refused.
pub fn python_sdk_with_entra_credential() {
    let have_sdk = Command::new("python3")
        .args(["-c", "import azure.eventhub, azure.core"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_sdk {
        if std::env::var("EVENTHUBS_INTEROP").as_deref() == Ok("require") {
            panic!("EVENTHUBS_INTEROP=require but python3 cannot import azure.eventhub (python3 -m pip install azure-eventhub)");
        }
        println!("SKIPPED: interop peer unavailable: the Python SDK (python3 -m pip install azure-eventhub)");
        return;
    }
    let Some(peer) = OAuth2Peer::start(json!({
        "py-app": {"secret": SECRET, "oid": "oid-py"},
        "py-norole": {"secret": SECRET, "oid": "oid-nobody"},
    })) else {
        return;
    };
    let e = emulator(vec![peer.issuer_config()], &[("oid-py", "Manage")]);
    let output = Command::new("python3")
        .arg(root().join("tests/python_sdk/entra.py"))
        .args(["--port", &e.addr().port().to_string()])
        .args([
            "--token-url",
            &format!("{}/{TENANT}/oauth2/v2.0/token", peer.authority()),
        ])
        .args([
            "--client-id",
            "py-app",
            "--norole-client-id",
            "py-norole",
            "--secret",
            SECRET,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(output.status.success(), "entra.py failed: {last}");
    assert_eq!(last, "3 passed, 0 failed");
}

/// `Hub::from_environment` with `EVENTHUB_NAMESPACE` and `EVENTHUB_NAME`
/// but no SAS credentials takes the `AZURE_*` chain. It sets process
/// variables, so it runs alone in its own test binary.
pub async fn hub_from_environment_uses_the_chain<R: Runtime>() {
    let Some(peer) =
        OAuth2Peer::start(json!({"env-hub-app": {"secret": SECRET, "oid": "oid-env-hub"}}))
    else {
        return;
    };
    let e = emulator(vec![peer.issuer_config()], &[("oid-env-hub", "Manage")]);
    for (k, v) in [
        ("EVENTHUB_NAMESPACE", "127.0.0.1".to_string()),
        ("EVENTHUB_NAME", "eh1".into()),
        ("AZURE_TENANT_ID", TENANT.into()),
        ("AZURE_CLIENT_ID", "env-hub-app".into()),
        ("AZURE_CLIENT_SECRET", SECRET.into()),
        ("AZURE_AUTHORITY_HOST", peer.authority()),
    ] {
        std::env::set_var(k, v);
    }
    for k in [
        "EVENTHUB_CONNECTION_STRING",
        "EVENTHUB_KEY_NAME",
        "EVENTHUB_KEY_VALUE",
    ] {
        std::env::remove_var(k);
    }
    let h = Hub::<R>::from_environment(
        HubOptions::new()
            .with_transport(TransportOptions::new(TransportKind::Plain).with_port(e.addr().port()))
            .with_partitioned_sender("0"),
    )
    .expect("hub from the environment");
    h.send_batch(numbered(0..2))
        .await
        .expect("send authorised by the chain's token");
    assert_eq!(receive_n(&h, 2).await, [0, 1]);
    h.close().await.unwrap();
}
