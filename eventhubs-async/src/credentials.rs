//! Token providers for CBS, and the `EVENTHUB_*` environment.
//!
//! The client driver asks a [`TokenProvider`] for a token per CBS audience
//! and awaits it, so a provider may fetch one over the network. SAS keys
//! need no fetching: [`SasTokenProvider`] signs at once with the
//! [`eventhubs_proto::eventhubs::sas`] signer, and [`SyncAdapter`] turns
//! any [`SyncTokenProvider`] of the core into a [`TokenProvider`] by
//! reading the wall clock.
//!
//! [`HubEnvironment::from_env`] reads the variables the Go library reads
//! (`EVENTHUB_NAMESPACE`, `EVENTHUB_NAME`, `EVENTHUB_KEY_NAME`,
//! `EVENTHUB_KEY_VALUE`, `EVENTHUB_CONNECTION_STRING`,
//! `AZURE_ENVIRONMENT`) through a caller's lookup function, so it is pure
//! and testable. `Debug` of every type here redacts keys and signatures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventhubs_proto::eventhubs::connection_string::ConnectionStringError;
use eventhubs_proto::eventhubs::sas::{FixedSasProvider, SasKeyProvider};
use eventhubs_proto::eventhubs::{ConnectionString, Environment};

pub use eventhubs_proto::eventhubs::connection_string::Credentials;
pub use eventhubs_proto::eventhubs::sas::{
    SasParseError, SharedAccessSignature, SyncTokenProvider, Token, TokenError, TokenType,
    DEFAULT_SAS_VALIDITY, MAX_KEY_LEN, MAX_KEY_NAME_LEN,
};

use crate::transport::TransportOptions;

/// `EVENTHUB_NAMESPACE`: the namespace name (`myns`) or host name.
pub const EVENTHUB_NAMESPACE: &str = "EVENTHUB_NAMESPACE";
/// `EVENTHUB_NAME`: the event hub.
pub const EVENTHUB_NAME: &str = "EVENTHUB_NAME";
/// `EVENTHUB_KEY_NAME`: the shared access policy name.
pub const EVENTHUB_KEY_NAME: &str = "EVENTHUB_KEY_NAME";
/// `EVENTHUB_KEY_VALUE`: the shared access key.
pub const EVENTHUB_KEY_VALUE: &str = "EVENTHUB_KEY_VALUE";
/// `EVENTHUB_CONNECTION_STRING`: a connection string from the portal.
pub const EVENTHUB_CONNECTION_STRING: &str = "EVENTHUB_CONNECTION_STRING";
/// `AZURE_ENVIRONMENT`: the Azure cloud (`AzurePublicCloud`, ...).
pub const AZURE_ENVIRONMENT: &str = "AZURE_ENVIRONMENT";

const REDACTED: &str = "<redacted>";

/// What [`TokenProvider::token`] returns: a future that owns what it needs.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send + 'static>>;

/// A source of CBS tokens the client driver awaits (Go
/// `auth.TokenProvider`).
///
/// Cancellation: the driver drops a token future only when it closes; an
/// implementation must not rely on being polled to completion.
pub trait TokenProvider: Send + Sync {
    /// A token for `audience` (e.g.
    /// `amqps://ns.servicebus.windows.net/hub/Partitions/0`), valid from
    /// now.
    fn token(&self, audience: &str) -> TokenFuture;
}

impl<P: TokenProvider + ?Sized> TokenProvider for Arc<P> {
    fn token(&self, audience: &str) -> TokenFuture {
        (**self).token(audience)
    }
}

impl<P: TokenProvider + ?Sized> TokenProvider for Box<P> {
    fn token(&self, audience: &str) -> TokenFuture {
        (**self).token(audience)
    }
}

/// The wall clock in Unix seconds (0 if it reads before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Any [`SyncTokenProvider`] of the core as a [`TokenProvider`]: each call
/// reads the clock and answers at once.
pub struct SyncAdapter<P> {
    provider: Mutex<P>,
    clock: fn() -> u64,
}

impl<P> SyncAdapter<P> {
    /// Adapts `provider`, reading the wall clock ([`unix_now`]).
    pub fn new(provider: P) -> Self {
        SyncAdapter::with_clock(provider, unix_now)
    }

    /// Adapts `provider`, reading Unix seconds from `clock`.
    pub fn with_clock(provider: P, clock: fn() -> u64) -> Self {
        SyncAdapter {
            provider: Mutex::new(provider),
            clock,
        }
    }

    /// The provider back.
    pub fn into_inner(self) -> P {
        self.provider
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P: SyncTokenProvider + Send> TokenProvider for SyncAdapter<P> {
    fn token(&self, audience: &str) -> TokenFuture {
        let now = (self.clock)();
        // A provider that panicked holds no partial state worth refusing.
        let result = self
            .provider
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .token(audience, now);
        Box::pin(std::future::ready(result))
    }
}

impl<P: fmt::Debug> fmt::Debug for SyncAdapter<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let provider = self.provider.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("SyncAdapter")
            .field("provider", &*provider)
            .finish_non_exhaustive()
    }
}

/// Where a [`SasTokenProvider`]'s tokens come from. Both `Debug`s redact.
#[derive(Debug, Clone)]
enum SasSource {
    Key(SasKeyProvider),
    Signature(FixedSasProvider),
}

impl SyncTokenProvider for SasSource {
    fn token(&mut self, audience: &str, now_unix: u64) -> Result<Token, TokenError> {
        match self {
            SasSource::Key(p) => p.token(audience, now_unix),
            SasSource::Signature(p) => p.token(audience, now_unix),
        }
    }
}

/// Why SAS credentials could not be taken from a connection string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The connection string does not parse, or has no credentials.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// The key name or key is unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// SAS tokens (Go `sas.TokenProvider`): signed from a key name and key
/// (renewable, [`DEFAULT_SAS_VALIDITY`]
/// each unless set), or one precomputed signature from a connection string
/// (until it expires).
#[derive(Debug)]
pub struct SasTokenProvider {
    inner: SyncAdapter<SasSource>,
}

impl SasTokenProvider {
    fn from_source(source: SasSource) -> Self {
        SasTokenProvider {
            inner: SyncAdapter::new(source),
        }
    }

    /// Signs with shared access policy `key_name` and its `key` (Go
    /// `TokenProviderWithKey`).
    pub fn from_key(
        key_name: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<Self, TokenError> {
        Ok(SasTokenProvider::from_source(SasSource::Key(
            SasKeyProvider::new(key_name, key)?,
        )))
    }

    /// Hands out `signature` for every audience until it expires.
    pub fn from_signature(signature: SharedAccessSignature) -> Self {
        SasTokenProvider::from_source(SasSource::Signature(FixedSasProvider::new(signature)))
    }

    /// From a connection string's credentials.
    pub fn from_credentials(credentials: &Credentials) -> Result<Self, TokenError> {
        match credentials {
            Credentials::SharedAccessKey { key_name, key } => {
                SasTokenProvider::from_key(key_name.clone(), key.clone())
            }
            Credentials::SharedAccessSignature(sas) => {
                Ok(SasTokenProvider::from_signature(sas.clone()))
            }
        }
    }

    /// From the credentials in `connection_string`, which must have some.
    pub fn from_connection_string(connection_string: &str) -> Result<Self, CredentialsError> {
        let cs = ConnectionString::parse(connection_string)?;
        Ok(SasTokenProvider::from_credentials(
            cs.require_credentials()?,
        )?)
    }

    /// From the environment through `lookup` (Go
    /// `TokenProviderWithEnvironmentVars`): `EVENTHUB_KEY_NAME` and
    /// `EVENTHUB_KEY_VALUE`, else `EVENTHUB_CONNECTION_STRING`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let (key, cs) = sas_variables(&lookup)?;
        match key {
            Some((name, value)) => SasTokenProvider::from_key(name, value).map_err(key_error),
            None => {
                let cs = cs.ok_or(EnvError::NoCredentials)?;
                let creds = cs.credentials.as_ref().ok_or(EnvError::NoCredentials)?;
                SasTokenProvider::from_credentials(creds).map_err(|e| EnvError::Invalid {
                    name: EVENTHUB_CONNECTION_STRING,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// [`SasTokenProvider::from_env`] on this process's environment.
    pub fn from_process_env() -> Result<Self, EnvError> {
        SasTokenProvider::from_env(process_lookup)
    }

    /// Signed tokens live `validity` (no effect on a fixed signature).
    pub fn with_validity(self, validity: Duration) -> Self {
        let clock = self.inner.clock;
        let source = match self.inner.into_inner() {
            SasSource::Key(p) => SasSource::Key(p.with_validity(validity)),
            s => s,
        };
        SasTokenProvider {
            inner: SyncAdapter::with_clock(source, clock),
        }
    }

    /// Reads Unix seconds from `clock` instead of the wall clock.
    pub fn with_clock(self, clock: fn() -> u64) -> Self {
        SasTokenProvider {
            inner: SyncAdapter::with_clock(self.inner.into_inner(), clock),
        }
    }
}

impl TokenProvider for SasTokenProvider {
    fn token(&self, audience: &str) -> TokenFuture {
        self.inner.token(audience)
    }
}

/// Why the environment does not describe a hub or its credentials. Each
/// names the variable at fault and never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// A needed variable is unset or empty.
    #[error("environment variable {name} is not set{hint}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// Where else the value could have come from (starts with "; ").
        hint: &'static str,
    },
    /// A variable's value is unusable.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong (secrets never quoted).
        reason: String,
    },
    /// One of a pair of variables is set without the other.
    #[error("environment variable {present} is set but {missing} is not; set both or neither")]
    Incomplete {
        /// The one that is set.
        present: &'static str,
        /// The one that is missing.
        missing: &'static str,
    },
    /// Two variables disagree.
    #[error("environment variables {first} and {second} disagree: {detail}")]
    Mismatch {
        /// The first variable.
        first: &'static str,
        /// The second variable.
        second: &'static str,
        /// How they differ.
        detail: String,
    },
    /// No SAS credentials at all.
    #[error("no SAS credentials in the environment: set EVENTHUB_KEY_NAME and EVENTHUB_KEY_VALUE, or EVENTHUB_CONNECTION_STRING with SharedAccessKeyName/SharedAccessKey or SharedAccessSignature")]
    NoCredentials,
}

fn process_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable's trimmed value; unset and blank are the same (as in Go).
fn get(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Maps a key-check failure to the variable it is about.
fn key_error(e: TokenError) -> EnvError {
    let name = match e {
        TokenError::EmptyKeyName | TokenError::KeyNameTooLong { .. } => EVENTHUB_KEY_NAME,
        _ => EVENTHUB_KEY_VALUE,
    };
    EnvError::Invalid {
        name,
        reason: e.to_string(),
    }
}

type KeyPair = (String, String);

/// The key pair (both or neither) and the parsed connection string.
fn sas_variables(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(Option<KeyPair>, Option<ConnectionString>), EnvError> {
    let key = match (
        get(lookup, EVENTHUB_KEY_NAME),
        get(lookup, EVENTHUB_KEY_VALUE),
    ) {
        (Some(name), Some(value)) => {
            SasKeyProvider::new(name.clone(), value.clone()).map_err(key_error)?;
            Some((name, value))
        }
        (Some(_), None) => {
            return Err(EnvError::Incomplete {
                present: EVENTHUB_KEY_NAME,
                missing: EVENTHUB_KEY_VALUE,
            })
        }
        (None, Some(_)) => {
            return Err(EnvError::Incomplete {
                present: EVENTHUB_KEY_VALUE,
                missing: EVENTHUB_KEY_NAME,
            })
        }
        (None, None) => None,
    };
    let cs = get(lookup, EVENTHUB_CONNECTION_STRING)
        .map(|s| {
            ConnectionString::parse(&s).map_err(|e| EnvError::Invalid {
                name: EVENTHUB_CONNECTION_STRING,
                reason: e.to_string(),
            })
        })
        .transpose()?;
    Ok((key, cs))
}

/// A hub described by the environment (what Go's `NewHubFromEnvironment`
/// reads). `Debug` redacts the key and the connection string's secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct HubEnvironment {
    fully_qualified_namespace: String,
    hub_name: String,
    connection_string: Option<ConnectionString>,
    key: Option<KeyPair>,
    environment: Environment,
}

impl HubEnvironment {
    /// Reads the hub from variables through `lookup` (unset and blank are
    /// the same):
    ///
    /// - `AZURE_ENVIRONMENT`: the cloud, public when unset.
    /// - `EVENTHUB_NAMESPACE`: a namespace name (`myns`, completed with the
    ///   cloud's suffix) or a host name; else the connection string's.
    /// - `EVENTHUB_NAME`: the hub; else the connection string's
    ///   `EntityPath`.
    /// - `EVENTHUB_KEY_NAME` and `EVENTHUB_KEY_VALUE`: both or neither.
    /// - `EVENTHUB_CONNECTION_STRING`: parsed when set; where it names a
    ///   namespace or hub, it must agree with the variables above.
    ///
    /// Credentials are optional here (a caller may bring its own token
    /// provider); [`HubEnvironment::token_provider`] requires them.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let environment = match get(&lookup, AZURE_ENVIRONMENT) {
            None => Environment::default(),
            Some(v) => Environment::from_name(&v).map_err(|e| EnvError::Invalid {
                name: AZURE_ENVIRONMENT,
                reason: e.to_string(),
            })?,
        };
        let (key, cs) = sas_variables(&lookup)?;
        let fully_qualified_namespace = match get(&lookup, EVENTHUB_NAMESPACE) {
            Some(ns) => {
                let fqdn = namespace_host(&ns, environment)?;
                if let Some(cs) = &cs {
                    if !cs.fully_qualified_namespace.eq_ignore_ascii_case(&fqdn) {
                        return Err(EnvError::Mismatch {
                            first: EVENTHUB_NAMESPACE,
                            second: EVENTHUB_CONNECTION_STRING,
                            detail: format!(
                                "namespace {fqdn:?} against the connection string's {:?}",
                                cs.fully_qualified_namespace
                            ),
                        });
                    }
                }
                fqdn
            }
            None => match &cs {
                Some(cs) => cs.fully_qualified_namespace.clone(),
                None => {
                    return Err(EnvError::Missing {
                        name: EVENTHUB_NAMESPACE,
                        hint: "; set it, or EVENTHUB_CONNECTION_STRING",
                    })
                }
            },
        };
        let entity_path = cs.as_ref().and_then(|cs| cs.entity_path.clone());
        let hub_name = match (get(&lookup, EVENTHUB_NAME), entity_path) {
            (Some(name), Some(path)) if name != path => {
                return Err(EnvError::Mismatch {
                    first: EVENTHUB_NAME,
                    second: EVENTHUB_CONNECTION_STRING,
                    detail: format!(
                        "hub {name:?} against the connection string's EntityPath {path:?}"
                    ),
                })
            }
            (Some(name), _) | (None, Some(name)) => name,
            (None, None) => {
                return Err(EnvError::Missing {
                    name: EVENTHUB_NAME,
                    hint: "; set it, or EntityPath in EVENTHUB_CONNECTION_STRING",
                })
            }
        };
        Ok(HubEnvironment {
            fully_qualified_namespace,
            hub_name,
            connection_string: cs,
            key,
            environment,
        })
    }

    /// [`HubEnvironment::from_env`] on this process's environment.
    pub fn from_process_env() -> Result<Self, EnvError> {
        HubEnvironment::from_env(process_lookup)
    }

    /// The namespace host, e.g. `myns.servicebus.windows.net`: TLS SNI,
    /// `open.hostname`, audiences.
    pub fn fully_qualified_namespace(&self) -> &str {
        &self.fully_qualified_namespace
    }

    /// The hub.
    pub fn hub_name(&self) -> &str {
        &self.hub_name
    }

    /// The parsed `EVENTHUB_CONNECTION_STRING`, if set.
    pub fn connection_string(&self) -> Option<&ConnectionString> {
        self.connection_string.as_ref()
    }

    /// `EVENTHUB_KEY_NAME`, if set.
    pub fn key_name(&self) -> Option<&str> {
        self.key.as_ref().map(|(name, _)| name.as_str())
    }

    /// `EVENTHUB_KEY_VALUE`, if set. A secret: do not log it.
    pub fn key_value(&self) -> Option<&str> {
        self.key.as_ref().map(|(_, value)| value.as_str())
    }

    /// `AZURE_ENVIRONMENT`, or the public cloud.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The SAS credentials: the key pair, else the connection string's.
    pub fn credentials(&self) -> Option<Credentials> {
        match &self.key {
            Some((key_name, key)) => Some(Credentials::SharedAccessKey {
                key_name: key_name.clone(),
                key: key.clone(),
            }),
            None => self
                .connection_string
                .as_ref()
                .and_then(|cs| cs.credentials.clone()),
        }
    }

    /// A token provider for [`HubEnvironment::credentials`].
    pub fn token_provider(&self) -> Result<SasTokenProvider, EnvError> {
        let creds = self.credentials().ok_or(EnvError::NoCredentials)?;
        SasTokenProvider::from_credentials(&creds).map_err(key_error)
    }

    /// How to reach the namespace: what the connection string asks for
    /// (plain TCP for the emulator), else TLS.
    pub fn transport_options(&self) -> TransportOptions {
        match &self.connection_string {
            Some(cs) => TransportOptions::from_connection_string(cs),
            None => TransportOptions::default(),
        }
    }
}

impl fmt::Debug for HubEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubEnvironment")
            .field("fully_qualified_namespace", &self.fully_qualified_namespace)
            .field("hub_name", &self.hub_name)
            // ConnectionString's Debug redacts its key and signature.
            .field("connection_string", &self.connection_string)
            .field("key_name", &self.key_name())
            .field("key_value", &self.key.as_ref().map(|_| REDACTED))
            .field("environment", &self.environment)
            .finish()
    }
}

/// `EVENTHUB_NAMESPACE` as a host: a bare name gets the cloud's suffix; a
/// dotted value is taken as the host name itself.
fn namespace_host(ns: &str, environment: Environment) -> Result<String, EnvError> {
    let invalid = |reason: String| EnvError::Invalid {
        name: EVENTHUB_NAMESPACE,
        reason,
    };
    if ns.contains('.') {
        let ok = ns.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !ok {
            return Err(invalid(format!("{ns:?} is not a host name")));
        }
        Ok(ns.to_ascii_lowercase())
    } else {
        environment
            .namespace_fqdn(ns)
            .map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::collections::HashMap;

    const KEY: &str = "c2VjcmV0LWtleS12YWx1ZQ==";

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn now_token(p: &dyn TokenProvider, audience: &str) -> Result<Token, TokenError> {
        p.token(audience)
            .now_or_never()
            .expect("SAS tokens are ready at once")
    }

    fn fixed_clock() -> u64 {
        1_700_000_000
    }

    #[test]
    fn key_provider_signs_verifiable_tokens() {
        let p = SasTokenProvider::from_key("Root", KEY)
            .expect("valid")
            .with_clock(fixed_clock);
        let t = now_token(&p, "amqps://ns.servicebus.windows.net/hub").expect("token");
        assert_eq!(t.token_type, TokenType::SasToken);
        assert_eq!(t.expires_at_unix, 1_700_000_000 + 2 * 3600);
        let sas = SharedAccessSignature::parse(&t.token).expect("parses");
        assert!(sas.verify(KEY));
        assert_eq!(sas.key_name().as_deref(), Some("Root"));
        assert_eq!(
            sas.resource_uri().as_deref(),
            Some("amqps://ns.servicebus.windows.net/hub")
        );
        let p = p.with_validity(Duration::from_secs(60));
        assert_eq!(
            now_token(&p, "a").expect("token").expires_at_unix,
            1_700_000_060
        );
        assert!(matches!(
            SasTokenProvider::from_key("", KEY),
            Err(TokenError::EmptyKeyName)
        ));
    }

    #[test]
    fn wall_clock_by_default() {
        let before = unix_now();
        let p = SasTokenProvider::from_key("Root", KEY).expect("valid");
        let t = now_token(&p, "a").expect("token");
        let after = unix_now();
        assert!((before + 7200..=after + 7200).contains(&t.expires_at_unix));
    }

    #[test]
    fn connection_string_providers() {
        let p = SasTokenProvider::from_connection_string(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"
        ))
        .expect("valid");
        let t = now_token(&p, "aud").expect("token");
        assert!(SharedAccessSignature::parse(&t.token)
            .expect("parses")
            .verify(KEY));

        let sig = "SharedAccessSignature sr=aud&sig=SIGNATURE%3D&se=1700000100&skn=Root";
        let p = SasTokenProvider::from_connection_string(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature={sig}"
        ))
        .expect("valid")
        .with_clock(fixed_clock);
        assert_eq!(now_token(&p, "anything").expect("token").token, sig);
        let p = p.with_clock(|| 1_700_000_100);
        assert!(matches!(
            now_token(&p, "anything"),
            Err(TokenError::Expired { .. })
        ));

        assert_eq!(
            SasTokenProvider::from_connection_string("Endpoint=sb://ns/").map(|_| ()),
            Err(CredentialsError::ConnectionString(
                ConnectionStringError::NoCredentials
            ))
        );
        assert!(matches!(
            SasTokenProvider::from_connection_string("garbage"),
            Err(CredentialsError::ConnectionString(_))
        ));
    }

    /// A caller's own synchronous provider, counting calls.
    #[derive(Debug)]
    struct Counting {
        calls: u64,
    }

    impl SyncTokenProvider for Counting {
        fn token(&mut self, audience: &str, now_unix: u64) -> Result<Token, TokenError> {
            self.calls += 1;
            if audience == "fail" {
                return Err(TokenError::Provider("no".into()));
            }
            Ok(Token {
                token: format!("{audience}@{now_unix}#{}", self.calls),
                expires_at_unix: now_unix + 1,
                token_type: TokenType::Jwt,
            })
        }
    }

    #[test]
    fn sync_adapter_passes_the_clock_and_keeps_state() {
        let a = SyncAdapter::with_clock(Counting { calls: 0 }, fixed_clock);
        assert_eq!(now_token(&a, "x").expect("t").token, "x@1700000000#1");
        assert_eq!(now_token(&a, "y").expect("t").token, "y@1700000000#2");
        assert_eq!(
            now_token(&a, "fail"),
            Err(TokenError::Provider("no".into()))
        );
        assert_eq!(a.into_inner().calls, 3);

        // Shared behind Arc and boxed as a trait object, as a driver holds it.
        let shared: Arc<dyn TokenProvider> =
            Arc::new(SyncAdapter::new(
                Box::new(Counting { calls: 0 }) as Box<dyn SyncTokenProvider + Send>
            ));
        let boxed: Box<dyn TokenProvider> = Box::new(shared.clone());
        assert!(now_token(&boxed, "z").expect("t").token.starts_with("z@"));
        assert!(now_token(&*shared, "z").expect("t").token.ends_with("#2"));
    }

    #[test]
    fn environment_with_key_pair() {
        let e = HubEnvironment::from_env(env(&[
            (EVENTHUB_NAMESPACE, "myns"),
            (EVENTHUB_NAME, "hub1"),
            (EVENTHUB_KEY_NAME, "Root"),
            (EVENTHUB_KEY_VALUE, KEY),
        ]))
        .expect("valid");
        assert_eq!(e.fully_qualified_namespace(), "myns.servicebus.windows.net");
        assert_eq!(e.hub_name(), "hub1");
        assert_eq!(e.key_name(), Some("Root"));
        assert_eq!(e.key_value(), Some(KEY));
        assert_eq!(e.environment(), Environment::Public);
        assert_eq!(e.connection_string(), None);
        assert_eq!(
            e.transport_options(),
            TransportOptions::new(crate::TransportKind::Tls)
        );
        let t = now_token(&e.token_provider().expect("provider"), "a").expect("token");
        assert!(SharedAccessSignature::parse(&t.token)
            .expect("sas")
            .verify(KEY));

        let p = SasTokenProvider::from_env(env(&[
            (EVENTHUB_KEY_NAME, "Root"),
            (EVENTHUB_KEY_VALUE, KEY),
        ]))
        .expect("provider");
        let t = now_token(&p, "a").expect("token");
        assert!(SharedAccessSignature::parse(&t.token)
            .expect("sas")
            .verify(KEY));
    }

    #[test]
    fn environment_from_connection_string_alone() {
        let cs = format!(
            "Endpoint=sb://localhost:5673;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY};UseDevelopmentEmulator=true;EntityPath=eh1"
        );
        let e = HubEnvironment::from_env(env(&[(EVENTHUB_CONNECTION_STRING, &cs)])).expect("valid");
        assert_eq!(e.fully_qualified_namespace(), "localhost");
        assert_eq!(e.hub_name(), "eh1");
        assert_eq!(e.key_name(), None);
        assert!(matches!(
            e.credentials(),
            Some(Credentials::SharedAccessKey { ref key_name, .. }) if key_name == "RootManageSharedAccessKey"
        ));
        let o = e.transport_options();
        assert_eq!(o.kind(), crate::TransportKind::Plain);
        assert_eq!(o.destination("localhost").port, 5673);
        let t = now_token(&e.token_provider().expect("provider"), "a").expect("token");
        assert!(SharedAccessSignature::parse(&t.token)
            .expect("sas")
            .verify(KEY));
        assert!(SasTokenProvider::from_env(env(&[(EVENTHUB_CONNECTION_STRING, &cs)])).is_ok());
    }

    #[test]
    fn key_pair_wins_over_connection_string() {
        let e = HubEnvironment::from_env(env(&[
            (EVENTHUB_KEY_NAME, "Other"),
            (EVENTHUB_KEY_VALUE, "otherkey"),
            (
                EVENTHUB_CONNECTION_STRING,
                &format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY};EntityPath=h"),
            ),
        ]))
        .expect("valid");
        assert!(matches!(
            e.credentials(),
            Some(Credentials::SharedAccessKey { ref key_name, .. }) if key_name == "Other"
        ));
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, EnvError)> = vec![
            (
                vec![(EVENTHUB_NAME, "h")],
                EnvError::Missing {
                    name: EVENTHUB_NAMESPACE,
                    hint: "; set it, or EVENTHUB_CONNECTION_STRING",
                },
            ),
            (
                vec![(EVENTHUB_NAMESPACE, "ns"), (EVENTHUB_NAME, "  ")],
                EnvError::Missing {
                    name: EVENTHUB_NAME,
                    hint: "; set it, or EntityPath in EVENTHUB_CONNECTION_STRING",
                },
            ),
            (
                vec![
                    (EVENTHUB_NAMESPACE, "ns"),
                    (EVENTHUB_NAME, "h"),
                    (EVENTHUB_KEY_NAME, "Root"),
                ],
                EnvError::Incomplete {
                    present: EVENTHUB_KEY_NAME,
                    missing: EVENTHUB_KEY_VALUE,
                },
            ),
            (
                vec![
                    (EVENTHUB_NAMESPACE, "ns"),
                    (EVENTHUB_NAME, "h"),
                    (EVENTHUB_KEY_VALUE, KEY),
                ],
                EnvError::Incomplete {
                    present: EVENTHUB_KEY_VALUE,
                    missing: EVENTHUB_KEY_NAME,
                },
            ),
        ];
        for (vars, expected) in cases {
            assert_eq!(
                HubEnvironment::from_env(env(&vars)),
                Err(expected),
                "{vars:?}"
            );
        }
        let invalid = |vars: &[(&str, &str)]| match HubEnvironment::from_env(env(vars)) {
            Err(EnvError::Invalid { name, reason }) => (name, reason),
            other => panic!("{vars:?}: {other:?}"),
        };
        let (name, reason) = invalid(&[
            (EVENTHUB_NAMESPACE, "ns"),
            (EVENTHUB_NAME, "h"),
            (AZURE_ENVIRONMENT, "MarsCloud"),
        ]);
        assert_eq!(name, AZURE_ENVIRONMENT);
        assert!(reason.contains("MarsCloud"), "{reason}");
        let (name, _) = invalid(&[(EVENTHUB_NAMESPACE, "bad ns"), (EVENTHUB_NAME, "h")]);
        assert_eq!(name, EVENTHUB_NAMESPACE);
        let (name, _) = invalid(&[(EVENTHUB_NAMESPACE, "a..b"), (EVENTHUB_NAME, "h")]);
        assert_eq!(name, EVENTHUB_NAMESPACE);
        let long = "k".repeat(300);
        let (name, reason) = invalid(&[
            (EVENTHUB_NAMESPACE, "ns"),
            (EVENTHUB_NAME, "h"),
            (EVENTHUB_KEY_NAME, "Root"),
            (EVENTHUB_KEY_VALUE, &long),
        ]);
        assert_eq!(name, EVENTHUB_KEY_VALUE);
        assert!(!reason.contains(&long));
        let (name, reason) = invalid(&[(
            EVENTHUB_CONNECTION_STRING,
            &format!("Endpoint=ftp://x/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"),
        )]);
        assert_eq!(name, EVENTHUB_CONNECTION_STRING);
        assert!(!reason.contains(KEY), "{reason}");
        assert!(EnvError::Missing {
            name: EVENTHUB_NAME,
            hint: ""
        }
        .to_string()
        .contains("EVENTHUB_NAME"));

        let mismatch = HubEnvironment::from_env(env(&[
            (EVENTHUB_NAMESPACE, "other"),
            (EVENTHUB_NAME, "h"),
            (
                EVENTHUB_CONNECTION_STRING,
                "Endpoint=sb://ns.servicebus.windows.net/;EntityPath=h",
            ),
        ]));
        assert!(matches!(
            mismatch,
            Err(EnvError::Mismatch {
                first: EVENTHUB_NAMESPACE,
                ..
            })
        ));
        let mismatch = HubEnvironment::from_env(env(&[
            (EVENTHUB_NAME, "h2"),
            (
                EVENTHUB_CONNECTION_STRING,
                "Endpoint=sb://ns.servicebus.windows.net/;EntityPath=h",
            ),
        ]));
        assert!(matches!(
            mismatch,
            Err(EnvError::Mismatch {
                first: EVENTHUB_NAME,
                ..
            })
        ));

        // No credentials is fine for the hub, not for a SAS provider.
        let e = HubEnvironment::from_env(env(&[(EVENTHUB_NAMESPACE, "ns"), (EVENTHUB_NAME, "h")]))
            .expect("valid");
        assert_eq!(e.credentials(), None);
        assert!(matches!(e.token_provider(), Err(EnvError::NoCredentials)));
        assert!(matches!(
            SasTokenProvider::from_env(env(&[])),
            Err(EnvError::NoCredentials)
        ));
        assert!(matches!(
            SasTokenProvider::from_env(env(&[(EVENTHUB_CONNECTION_STRING, "Endpoint=sb://ns/")])),
            Err(EnvError::NoCredentials)
        ));
    }

    #[test]
    fn environments_and_host_names() {
        let e = HubEnvironment::from_env(env(&[
            (EVENTHUB_NAMESPACE, "myns"),
            (EVENTHUB_NAME, "h"),
            (AZURE_ENVIRONMENT, "AzureChinaCloud"),
        ]))
        .expect("valid");
        assert_eq!(e.environment(), Environment::China);
        assert_eq!(
            e.fully_qualified_namespace(),
            "myns.servicebus.chinacloudapi.cn"
        );
        let e = HubEnvironment::from_env(env(&[
            (EVENTHUB_NAMESPACE, "MyNs.servicebus.windows.net"),
            (EVENTHUB_NAME, "h"),
            (
                EVENTHUB_CONNECTION_STRING,
                "Endpoint=sb://myns.servicebus.windows.net/",
            ),
        ]))
        .expect("host names and connection strings agree case-insensitively");
        assert_eq!(e.fully_qualified_namespace(), "myns.servicebus.windows.net");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let sig_secret = "TOPSECRETSIGNATURE";
        let e = HubEnvironment::from_env(env(&[
            (EVENTHUB_NAMESPACE, "ns"),
            (EVENTHUB_NAME, "h"),
            (EVENTHUB_KEY_NAME, "Root"),
            (EVENTHUB_KEY_VALUE, KEY),
            (
                EVENTHUB_CONNECTION_STRING,
                &format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"),
            ),
        ]))
        .expect("valid");
        for dbg in [format!("{e:?}"), format!("{e:#?}")] {
            assert!(!dbg.contains(KEY), "{dbg}");
            assert!(dbg.contains("Root") && dbg.contains("<redacted>"), "{dbg}");
        }
        let p = SasTokenProvider::from_key("Root", KEY).expect("valid");
        for dbg in [format!("{p:?}"), format!("{p:#?}")] {
            assert!(!dbg.contains(KEY), "{dbg}");
            assert!(dbg.contains("Root"), "{dbg}");
        }
        let p = SasTokenProvider::from_connection_string(&format!(
            "Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=a&sig={sig_secret}&se=1&skn=Root"
        ))
        .expect("valid");
        assert!(!format!("{p:?}").contains(sig_secret));
        let t = now_token(
            &SasTokenProvider::from_key("Root", KEY).expect("valid"),
            "aud",
        )
        .expect("token");
        let sig = t
            .token
            .split("sig=")
            .nth(1)
            .expect("sig")
            .split('&')
            .next()
            .expect("value");
        assert!(!format!("{t:?}").contains(sig));
        // Errors do not quote secrets either.
        let err = HubEnvironment::from_env(env(&[(
            EVENTHUB_CONNECTION_STRING,
            &format!("Endpoint=sb://ns/;SharedAccessKey={KEY}"),
        )]))
        .expect_err("key without name");
        assert!(!format!("{err} {err:?}").contains(KEY));
    }
}
