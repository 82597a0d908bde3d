//! Microsoft Entra ID (JWT) tokens in the emulator, checked as the service
//! checks them: CBS `put-token` with `type` `jwt` (and a `$management`
//! `security_token` that is a JWT) is accepted only for a token that
//!
//! - is an RS256 JWS (RFC 7515, RFC 7518 3.3) whose signature verifies with
//!   a key of a trusted issuer (by `kid`, or any of the issuer's keys when
//!   the header names none),
//! - has that issuer's `iss`,
//! - has an audience of Event Hubs (`https://eventhubs.azure.net`, with or
//!   without a trailing `/`, or one configured),
//! - is within `nbf` (60 s of clock skew allowed) and `exp` (none),
//! - names an identity (`oid`, `appid`, `azp` or `sub`) holding Send,
//!   Listen or Manage on the hub of the audience.
//!
//! Anything else is refused with 401 and a status description saying why.
//! Without an `EntraId` section the emulator refuses every JWT and says how
//! to enable them.
//!
//! Config.json, inside `UserConfig` (beside Microsoft's `NamespaceConfig`):
//!
//! ```json
//! "EntraId": {
//!   "Issuers": [
//!     {"Issuer": "https://login.microsoftonline.com/<tenant>/v2.0",
//!      "JwksUrl": "http://127.0.0.1:8080/jwks"},
//!     {"Issuer": "https://sts.windows.net/<tenant>/", "JwksFile": "keys.json"},
//!     {"Issuer": "my-issuer", "PublicKeyFile": "key.pem"}
//!   ],
//!   "Audiences": ["https://eventhubs.azure.net"],
//!   "RoleAssignments": [
//!     {"Principal": "<object id or application id>",
//!      "Roles": ["Azure Event Hubs Data Sender"], "Hubs": ["eh1"]}
//!   ]
//! }
//! ```
//!
//! Roles are `Send`, `Listen`, `Manage` or the built-in role names
//! `Azure Event Hubs Data Sender` (Send), `… Data Receiver` (Listen) and
//! `… Data Owner` (all three); `Hubs` defaults to every hub (`*`). Keys come
//! from a JWKS URL (plain HTTP on a loopback address, fetched with the
//! core's HTTP/1.1 exchange when the emulator starts), a JWKS file, or a
//! PEM public key or certificate (inline as `PublicKeyPem`, or a file).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use eventhubs_proto::http::{Exchange, Limits};
use eventhubs_proto::identity::certificate::{certificate_rsa_key, spki_rsa_key, RsaPublicKey};
use eventhubs_proto::identity::jwt::{parse_jwks, DecodedJwt, Jwk};
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde::Deserialize;

/// Audiences accepted unless configured: the Event Hubs resource as SDKs
/// request it (`…/.default` and `…//.default` scopes).
pub const DEFAULT_AUDIENCES: [&str; 2] = [
    "https://eventhubs.azure.net",
    "https://eventhubs.azure.net/",
];

/// How far in the future `nbf` may be.
const NBF_SKEW_SECS: u64 = 60;

/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The status description when no `EntraId` section is configured.
pub const NOT_ENABLED: &str = "Entra ID (JWT) tokens are not enabled in this emulator: add an \"EntraId\" section to Config.json's UserConfig with trusted \"Issuers\" (JwksUrl, JwksFile or PublicKeyPem) and \"RoleAssignments\" (Principal, Roles, Hubs), or use EmulatorConfig::with_entra_id";

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// Keys already at hand.
    Keys(Vec<Jwk>),
    /// A PEM `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE`.
    PublicKeyPem(String),
    /// A file holding such PEM.
    PublicKeyFile(PathBuf),
    /// A JWKS document in a file.
    JwksFile(PathBuf),
    /// A JWKS document at `http://<loopback>:<port>/<path>`.
    JwksUrl(String),
}

/// An issuer whose tokens are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Where its keys come from.
    pub source: KeySource,
    keys: Vec<Jwk>,
}

impl TrustedIssuer {
    /// Trusts `issuer` with keys from `source` (loaded by
    /// [`EntraIdConfig::load_keys`]).
    pub fn new(issuer: impl Into<String>, source: KeySource) -> Self {
        let keys = match &source {
            KeySource::Keys(k) => k.clone(),
            _ => Vec::new(),
        };
        TrustedIssuer {
            issuer: issuer.into(),
            source,
            keys,
        }
    }

    /// The keys loaded so far.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

/// Rights on event hubs, as a role assignment grants them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JwtRights {
    /// May send.
    pub send: bool,
    /// May receive.
    pub listen: bool,
    /// May manage (implies both).
    pub manage: bool,
}

impl JwtRights {
    fn union(self, o: JwtRights) -> JwtRights {
        JwtRights {
            send: self.send || o.send || o.manage,
            listen: self.listen || o.listen || o.manage,
            manage: self.manage || o.manage,
        }
    }

    fn any(self) -> bool {
        self.send || self.listen || self.manage
    }

    /// Parses a role: `Send`, `Listen`, `Manage` or a built-in role name.
    pub fn from_role(role: &str) -> Option<JwtRights> {
        let r = role.trim().to_ascii_lowercase();
        let r = r.strip_prefix("azure event hubs data ").unwrap_or(&r);
        let (send, listen, manage) = match r {
            "send" | "sender" => (true, false, false),
            "listen" | "receiver" => (false, true, false),
            "manage" | "owner" => (true, true, true),
            _ => return None,
        };
        Some(JwtRights {
            send,
            listen,
            manage,
        })
    }
}

/// Rights of one identity on some hubs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The identity: its object id (`oid`) or application id (`appid`,
    /// `azp`).
    pub principal: String,
    /// What it may do.
    pub rights: JwtRights,
    /// The hubs (case-insensitive), or `*` for all.
    pub hubs: Vec<String>,
}

impl RoleAssignment {
    /// `principal` may do `rights` on every hub.
    pub fn new(principal: impl Into<String>, rights: JwtRights) -> Self {
        RoleAssignment {
            principal: principal.into(),
            rights,
            hubs: vec!["*".into()],
        }
    }

    /// Only on `hubs`.
    pub fn on_hubs<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hubs: I) -> Self {
        self.hubs = hubs.into_iter().map(Into::into).collect();
        self
    }

    fn covers(&self, hub: &str) -> bool {
        self.hubs
            .iter()
            .any(|h| h == "*" || h.eq_ignore_ascii_case(hub))
    }
}

/// Which JWTs the emulator accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntraIdConfig {
    /// Trusted issuers.
    pub issuers: Vec<TrustedIssuer>,
    /// Accepted audiences; empty means [`DEFAULT_AUDIENCES`].
    pub audiences: Vec<String>,
    /// Who may do what.
    pub role_assignments: Vec<RoleAssignment>,
}

/// What an accepted token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtGrant {
    /// The rights on the audience's hub.
    pub rights: JwtRights,
    /// The token's `exp`, Unix seconds.
    pub expires_unix: u64,
    /// The identity it was granted to.
    pub principal: String,
}

impl EntraIdConfig {
    /// An empty configuration: add issuers and role assignments.
    pub fn new() -> Self {
        EntraIdConfig::default()
    }

    /// Trusts `issuer`.
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Adds a role assignment.
    pub fn assign(mut self, assignment: RoleAssignment) -> Self {
        self.role_assignments.push(assignment);
        self
    }

    /// Loads every issuer's keys from its source: reads files, fetches JWKS
    /// URLs. An issuer left without keys is an error.
    pub fn load_keys(&mut self) -> Result<(), String> {
        for issuer in &mut self.issuers {
            let keys = match &issuer.source {
                KeySource::Keys(k) => k.clone(),
                KeySource::PublicKeyPem(text) => pem_keys(text.as_bytes())?,
                KeySource::PublicKeyFile(path) => pem_keys(&read(path)?)?,
                KeySource::JwksFile(path) => {
                    parse_jwks(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?
                }
                KeySource::JwksUrl(url) => {
                    let body = fetch(url)?;
                    parse_jwks(&body).map_err(|e| format!("{url}: {e}"))?
                }
            };
            if keys.is_empty() {
                return Err(format!(
                    "Entra ID issuer {:?}: no RSA signing key found",
                    issuer.issuer
                ));
            }
            issuer.keys = keys;
        }
        Ok(())
    }

    /// Checks `token` for `hub` at `now_unix` (see the module docs).
    pub fn check(&self, token: &str, hub: &str, now_unix: u64) -> Result<JwtGrant, String> {
        let jwt = DecodedJwt::parse(token).map_err(|e| format!("InvalidToken: {e}"))?;
        match jwt.header_str("alg") {
            Some("RS256") => {}
            other => {
                return Err(format!(
                    "InvalidToken: signature algorithm {other:?} is not RS256"
                ))
            }
        }
        let iss = jwt.claim_str("iss").unwrap_or_default();
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer.trim_end_matches('/') == iss.trim_end_matches('/'))
            .ok_or_else(|| format!("InvalidIssuer: the issuer {iss:?} is not trusted"))?;
        let kid = jwt.header_str("kid");
        let candidates: Vec<&Jwk> = issuer
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "InvalidSignature: no key {kid:?} among the issuer's keys"
            ));
        }
        let verified = candidates.iter().any(|k| {
            RsaPublicKeyComponents {
                n: &k.key.modulus,
                e: &k.key.exponent,
            }
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                jwt.signing_input(),
                jwt.signature(),
            )
            .is_ok()
        });
        if !verified {
            return Err("InvalidSignature: The token has an invalid signature.".into());
        }
        let defaults: Vec<String> = DEFAULT_AUDIENCES.iter().map(|s| s.to_string()).collect();
        let accepted = if self.audiences.is_empty() {
            &defaults
        } else {
            &self.audiences
        };
        let audiences = jwt.audiences();
        let norm = |a: &str| a.trim_end_matches('/').to_ascii_lowercase();
        if !audiences
            .iter()
            .any(|a| accepted.iter().any(|x| norm(x) == norm(a)))
        {
            return Err(format!(
                "InvalidAudience: the token's audience {audiences:?} is not Event Hubs ({accepted:?})"
            ));
        }
        let exp = jwt
            .claim_time("exp")
            .ok_or("InvalidToken: the token has no exp")?;
        if exp <= now_unix {
            return Err("ExpiredToken: The token is expired.".into());
        }
        if jwt
            .claim_time("nbf")
            .is_some_and(|nbf| nbf > now_unix + NBF_SKEW_SECS)
        {
            return Err("InvalidToken: the token is not valid yet (nbf)".into());
        }
        let ids: Vec<&str> = ["oid", "appid", "azp", "sub"]
            .iter()
            .filter_map(|c| jwt.claim_str(c))
            .collect();
        let rights = self
            .role_assignments
            .iter()
            .filter(|r| ids.contains(&r.principal.as_str()) && r.covers(hub))
            .fold(JwtRights::default(), |acc, r| acc.union(r.rights));
        if !rights.any() {
            return Err(format!(
                "Unauthorized: the identity {:?} has no role on '{hub}' (assign it Send, Listen or Manage in the emulator's EntraId RoleAssignments)",
                ids.first().copied().unwrap_or("")
            ));
        }
        Ok(JwtGrant {
            rights,
            expires_unix: exp,
            principal: ids.first().copied().unwrap_or_default().to_owned(),
        })
    }
}

/// The broker's check of a put-token `jwt`: `config` may be absent.
pub(crate) fn check_put_token(
    config: Option<&EntraIdConfig>,
    token: &str,
    entity_path: &str,
    now_unix: u64,
) -> Result<JwtGrant, String> {
    let config = config.ok_or_else(|| NOT_ENABLED.to_string())?;
    let hub = entity_path.split('/').next().unwrap_or_default();
    config.check(token, hub, now_unix)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// RSA keys of PEM `PUBLIC KEY` / `CERTIFICATE` blocks.
fn pem_keys(text: &[u8]) -> Result<Vec<Jwk>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("not PEM: {e}"))?;
    let mut keys = Vec::new();
    for b in blocks {
        let key: Option<RsaPublicKey> = match b.tag() {
            "PUBLIC KEY" => spki_rsa_key(b.contents()).map_err(|e| e.to_string())?,
            "CERTIFICATE" => certificate_rsa_key(b.contents()).map_err(|e| e.to_string())?,
            _ => None,
        };
        keys.extend(key.map(|key| Jwk {
            kid: None,
            alg: Some("RS256".into()),
            key,
            certificate: None,
        }));
    }
    Ok(keys)
}

/// GETs `url` (plain HTTP on a loopback address) with the core's HTTP/1.1
/// exchange; the body of a 200.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let fail = |why: String| format!("cannot fetch the JWKS at {url}: {why}");
    let uri: http::Uri = url.parse().map_err(|e| fail(format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(fail(
            "only http:// on a loopback address is fetched; use JwksFile otherwise".into(),
        ));
    }
    let host = uri.host().ok_or_else(|| fail("no host".into()))?;
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot resolve {host}: {e}")))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .copied()
        .ok_or_else(|| fail(format!("{host} is not a loopback address")))?;
    let request = http::Request::get(uri.clone())
        .header("accept", "application/json")
        .body(Bytes::new())
        .map_err(|e| fail(e.to_string()))?;
    let mut exchange =
        Exchange::new(&request, Limits::default()).map_err(|e| fail(e.to_string()))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(|e| fail(e.to_string()))?;
    let io = |e: std::io::Error| fail(e.to_string());
    stream.set_read_timeout(Some(FETCH_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(FETCH_TIMEOUT)).map_err(io)?;
    while let Some(bytes) = exchange.poll_transmit() {
        stream.write_all(&bytes).map_err(io)?;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let response = loop {
        if let Some(r) = exchange.poll_response() {
            break r;
        }
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            exchange.handle_eof().map_err(|e| fail(e.to_string()))?;
            match exchange.poll_response() {
                Some(r) => break r,
                None => return Err(fail("the connection closed before a response".into())),
            }
        }
        pending.extend_from_slice(&buf[..n]);
        let used = exchange
            .handle_input(&pending)
            .map_err(|e| fail(e.to_string()))?;
        pending.drain(..used);
    };
    if response.status() != 200 {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    Ok(response.into_body().to_vec())
}

// ----- Config.json -----

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct EntraIdJson {
    #[serde(default)]
    issuers: Vec<IssuerJson>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    role_assignments: Vec<AssignmentJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct IssuerJson {
    issuer: String,
    jwks_url: Option<String>,
    jwks_file: Option<PathBuf>,
    public_key_pem: Option<String>,
    public_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AssignmentJson {
    principal: String,
    roles: Vec<String>,
    #[serde(default)]
    hubs: Vec<String>,
}

impl EntraIdJson {
    /// The configuration, with relative files resolved against `base`.
    pub(crate) fn into_config(self, base: Option<&Path>) -> Result<EntraIdConfig, String> {
        let resolve = |p: PathBuf| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        };
        let mut issuers = Vec::new();
        for i in self.issuers {
            let mut sources = Vec::new();
            sources.extend(i.jwks_url.map(KeySource::JwksUrl));
            sources.extend(i.jwks_file.map(|p| KeySource::JwksFile(resolve(p))));
            sources.extend(i.public_key_pem.map(KeySource::PublicKeyPem));
            sources.extend(
                i.public_key_file
                    .map(|p| KeySource::PublicKeyFile(resolve(p))),
            );
            let [source] = <[KeySource; 1]>::try_from(sources).map_err(|s| {
                format!(
                    "EntraId issuer {:?} needs exactly one of JwksUrl, JwksFile, PublicKeyPem, PublicKeyFile (found {})",
                    i.issuer,
                    s.len()
                )
            })?;
            issuers.push(TrustedIssuer::new(i.issuer, source));
        }
        let mut role_assignments = Vec::new();
        for a in self.role_assignments {
            let mut rights = JwtRights::default();
            for r in &a.roles {
                rights = rights.union(JwtRights::from_role(r).ok_or_else(|| {
                    format!(
                        "EntraId role {r:?} of {:?} is none of Send, Listen, Manage, Azure Event Hubs Data Sender/Receiver/Owner",
                        a.principal
                    )
                })?);
            }
            let hubs = if a.hubs.is_empty() {
                vec!["*".to_string()]
            } else {
                a.hubs
            };
            role_assignments.push(RoleAssignment {
                principal: a.principal,
                rights,
                hubs,
            });
        }
        Ok(EntraIdConfig {
            issuers,
            audiences: self.audiences,
            role_assignments,
        })
    }
}
