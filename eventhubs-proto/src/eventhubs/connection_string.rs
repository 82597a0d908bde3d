//! Event Hubs connection strings (`Endpoint=sb://…;SharedAccessKeyName=…;
//! SharedAccessKey=…;EntityPath=…`, as the Azure portal gives them and the
//! emulator's `UseDevelopmentEmulator=true`) and the Azure clouds'
//! namespace suffixes.
//!
//! `Endpoint=sb://<fqdn>/;SharedAccessKeyName=<rule>;SharedAccessKey=<key>;EntityPath=<hub>`
//!
//! Segments are split on `;` (empty ones ignored), each at its **first**
//! `=`; keys match case-insensitively and surrounding whitespace is trimmed
//! from keys and values; unknown keys are ignored; a key given twice keeps
//! its last value (as Go does). Parsing reads no environment variables: an
//! adapter reads `AZURE_ENVIRONMENT` itself and passes the value to
//! [`Environment::from_name`].

use std::fmt;
use std::str::FromStr;

use super::sas::{
    FixedSasProvider, SasKeyProvider, SasParseError, SharedAccessSignature, SyncTokenProvider,
    TokenError,
};

/// AMQP port of the emulator when `Endpoint` names none (plain TCP).
pub const EMULATOR_DEFAULT_PORT: u16 = 5672;

/// AMQP-over-TLS port of the service.
pub const AMQPS_PORT: u16 = 5671;

const REDACTED: &str = "<redacted>";

/// Why a connection string was rejected. Messages name the key at fault and
/// never quote a key or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// A segment between `;` has no `=`.
    #[error("connection string segment {position} has no '=' between a key and its value")]
    SegmentWithoutEquals {
        /// 1-based position of the segment, counting empty ones.
        position: usize,
    },
    /// A segment starts with `=`.
    #[error("connection string segment {position} has an empty key before '='")]
    EmptyKey {
        /// 1-based position of the segment, counting empty ones.
        position: usize,
    },
    /// A known key has an empty value.
    #[error("connection string key {key} has an empty value")]
    EmptyValue {
        /// The key, in its canonical spelling.
        key: &'static str,
    },
    /// No `Endpoint`.
    #[error("connection string has no Endpoint (expected Endpoint=sb://<namespace>.servicebus.windows.net/)")]
    MissingEndpoint,
    /// `Endpoint` is not a URL of the form `scheme://host[:port][/path]`.
    #[error("Endpoint {endpoint:?} is not a URL: {reason}")]
    EndpointNotUrl {
        /// The Endpoint value.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `Endpoint` has a scheme other than `sb` or `amqps`.
    #[error("Endpoint {endpoint:?} has scheme {scheme:?}; expected sb:// or amqps://")]
    EndpointScheme {
        /// The Endpoint value.
        endpoint: String,
        /// Its scheme.
        scheme: String,
    },
    /// The port in `Endpoint` is not a number in 1..=65535.
    #[error("Endpoint {endpoint:?} has port {port:?}, which is not a number from 1 to 65535")]
    EndpointPort {
        /// The Endpoint value.
        endpoint: String,
        /// The port text.
        port: String,
    },
    /// `UseDevelopmentEmulator=true` with an Endpoint other than
    /// `sb://<host>` or `sb://<host>:<port>`.
    #[error("UseDevelopmentEmulator=true needs Endpoint sb://<host> or sb://<host>:<port>, got {endpoint:?}")]
    EmulatorEndpoint {
        /// The Endpoint value.
        endpoint: String,
    },
    /// `UseDevelopmentEmulator` is neither `true` nor `false`.
    #[error("UseDevelopmentEmulator must be true or false, got {value:?}")]
    InvalidEmulatorFlag {
        /// The value given.
        value: String,
    },
    /// `SharedAccessKey` without `SharedAccessKeyName`.
    #[error("connection string has SharedAccessKey but no SharedAccessKeyName; both are needed")]
    KeyWithoutKeyName,
    /// `SharedAccessKeyName` without `SharedAccessKey`.
    #[error("connection string has SharedAccessKeyName but no SharedAccessKey; both are needed")]
    KeyNameWithoutKey,
    /// Both a key pair and a `SharedAccessSignature`.
    #[error("connection string has both SharedAccessSignature and SharedAccessKeyName/SharedAccessKey; use one or the other")]
    KeyAndSignature,
    /// `SharedAccessSignature` does not parse.
    #[error("connection string's SharedAccessSignature is malformed: {0}")]
    InvalidSignature(#[source] SasParseError),
    /// No credentials, reported only by [`ConnectionString::require_credentials`].
    #[error("connection string has no credentials: add SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature")]
    NoCredentials,
}

/// Credentials carried by a connection string. `Debug` redacts the key and
/// the signature.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A shared access policy: tokens are signed locally and renewed.
    SharedAccessKey {
        /// `SharedAccessKeyName`: the policy (rule) name.
        key_name: String,
        /// `SharedAccessKey`, as written (signing uses its UTF-8 bytes).
        key: String,
    },
    /// A precomputed `SharedAccessSignature`, usable until its `se`.
    SharedAccessSignature(SharedAccessSignature),
}

impl Credentials {
    /// A token provider for these credentials: a [`SasKeyProvider`] with
    /// default validity, or a [`FixedSasProvider`].
    pub fn token_provider(&self) -> Result<Box<dyn SyncTokenProvider + Send>, TokenError> {
        Ok(match self {
            Credentials::SharedAccessKey { key_name, key } => {
                Box::new(SasKeyProvider::new(key_name.clone(), key.clone())?)
            }
            Credentials::SharedAccessSignature(sas) => Box::new(FixedSasProvider::new(sas.clone())),
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::SharedAccessKey { key_name, .. } => f
                .debug_struct("SharedAccessKey")
                .field("key_name", key_name)
                .field("key", &format_args!("{REDACTED}"))
                .finish(),
            // SharedAccessSignature's own Debug redacts the signature.
            Credentials::SharedAccessSignature(sas) => {
                f.debug_tuple("SharedAccessSignature").field(sas).finish()
            }
        }
    }
}

/// A parsed Event Hubs connection string. `Debug` redacts secrets; there is
/// deliberately no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `Endpoint` as written (e.g. `sb://ns.servicebus.windows.net/`).
    pub endpoint: String,
    /// The namespace host: the Endpoint's host without scheme, port or
    /// path (e.g. `ns.servicebus.windows.net`; an IPv6 literal keeps its
    /// brackets). Used for TLS SNI, `open.hostname`, audiences and SAS
    /// resources.
    pub fully_qualified_namespace: String,
    /// The AMQP port to dial. Set for the emulator (the Endpoint's port, or
    /// [`EMULATOR_DEFAULT_PORT`]); `None` otherwise, as SDKs ignore the
    /// Endpoint's port on the service and use the transport's default.
    pub port: Option<u16>,
    /// `EntityPath`: the event hub name.
    pub entity_path: Option<String>,
    /// Key pair or signature; `None` when the string carries neither (the
    /// caller may bring its own token provider).
    pub credentials: Option<Credentials>,
    /// `UseDevelopmentEmulator=true`: plain TCP, no TLS.
    pub use_development_emulator: bool,
}

impl ConnectionString {
    /// Parses a connection string.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        use ConnectionStringError as E;
        let segments = Segments::parse(s)?;
        let use_development_emulator = match segments.emulator {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(E::InvalidEmulatorFlag {
                    value: v.to_owned(),
                })
            }
        };
        let endpoint = segments.endpoint.ok_or(E::MissingEndpoint)?;
        let url = parse_endpoint(endpoint)?;
        let port = if use_development_emulator {
            if url.scheme != "sb" || !matches!(url.path, "" | "/") {
                return Err(E::EmulatorEndpoint {
                    endpoint: endpoint.to_owned(),
                });
            }
            Some(url.port.unwrap_or(EMULATOR_DEFAULT_PORT))
        } else {
            if url.scheme != "sb" && url.scheme != "amqps" {
                return Err(E::EndpointScheme {
                    endpoint: endpoint.to_owned(),
                    scheme: url.scheme,
                });
            }
            None
        };
        Ok(ConnectionString {
            endpoint: endpoint.to_owned(),
            fully_qualified_namespace: url.host,
            port,
            entity_path: segments.entity_path.map(str::to_owned),
            credentials: segments.credentials()?,
            use_development_emulator,
        })
    }

    /// Connection properties for namespace `namespace` (e.g. `myns`) in
    /// `environment`: `sb://myns.servicebus.windows.net/`, no entity path,
    /// no credentials.
    pub fn for_namespace(
        namespace: &str,
        environment: Environment,
    ) -> Result<Self, EnvironmentError> {
        let fqdn = environment.namespace_fqdn(namespace)?;
        Ok(ConnectionString {
            endpoint: format!("sb://{fqdn}/"),
            fully_qualified_namespace: fqdn,
            port: None,
            entity_path: None,
            credentials: None,
            use_development_emulator: false,
        })
    }

    /// The credentials, or [`ConnectionStringError::NoCredentials`] when the
    /// string has none and the caller needs them.
    pub fn require_credentials(&self) -> Result<&Credentials, ConnectionStringError> {
        self.credentials
            .as_ref()
            .ok_or(ConnectionStringError::NoCredentials)
    }

    /// Whether to use TLS: everywhere except the emulator.
    pub fn use_tls(&self) -> bool {
        !self.use_development_emulator
    }

    /// The AMQP port to dial: [`Self::port`], else 5671 (AMQPS).
    pub fn amqp_port(&self) -> u16 {
        self.port.unwrap_or(AMQPS_PORT)
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .field("fully_qualified_namespace", &self.fully_qualified_namespace)
            .field("port", &self.port)
            .field("entity_path", &self.entity_path)
            // Credentials' Debug redacts.
            .field("credentials", &self.credentials)
            .field("use_development_emulator", &self.use_development_emulator)
            .finish()
    }
}

/// The values of a connection string's known keys (case-insensitive;
/// unknown keys are ignored, as the SDKs do).
#[derive(Default)]
struct Segments<'a> {
    endpoint: Option<&'a str>,
    key_name: Option<&'a str>,
    key: Option<&'a str>,
    signature: Option<&'a str>,
    entity_path: Option<&'a str>,
    emulator: Option<&'a str>,
}

impl<'a> Segments<'a> {
    fn parse(s: &'a str) -> Result<Self, ConnectionStringError> {
        use ConnectionStringError as E;
        let mut seg = Segments::default();
        for (i, segment) in s.split(';').enumerate() {
            let position = i + 1;
            if segment.trim().is_empty() {
                continue;
            }
            let (k, v) = segment
                .split_once('=')
                .ok_or(E::SegmentWithoutEquals { position })?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() {
                return Err(E::EmptyKey { position });
            }
            let Some((slot, canonical)) = seg.slot(k) else {
                continue;
            };
            if v.is_empty() {
                return Err(E::EmptyValue { key: canonical });
            }
            *slot = Some(v);
        }
        Ok(seg)
    }

    /// Where the value of key `k` goes, with the key's canonical spelling.
    fn slot(&mut self, k: &str) -> Option<(&mut Option<&'a str>, &'static str)> {
        let known = [
            ("Endpoint", &mut self.endpoint),
            ("SharedAccessKeyName", &mut self.key_name),
            ("SharedAccessKey", &mut self.key),
            ("SharedAccessSignature", &mut self.signature),
            ("EntityPath", &mut self.entity_path),
            ("UseDevelopmentEmulator", &mut self.emulator),
        ];
        known
            .into_iter()
            .find(|(name, _)| k.eq_ignore_ascii_case(name))
            .map(|(name, slot)| (slot, name))
    }

    /// A key with its name, or a signature, or neither.
    fn credentials(&self) -> Result<Option<Credentials>, ConnectionStringError> {
        use ConnectionStringError as E;
        Ok(match (self.key_name, self.key, self.signature) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => return Err(E::KeyAndSignature),
            (None, Some(_), None) => return Err(E::KeyWithoutKeyName),
            (Some(_), None, None) => return Err(E::KeyNameWithoutKey),
            (Some(key_name), Some(key), None) => Some(Credentials::SharedAccessKey {
                key_name: key_name.to_owned(),
                key: key.to_owned(),
            }),
            (None, None, Some(sig)) => Some(Credentials::SharedAccessSignature(
                SharedAccessSignature::parse(sig).map_err(E::InvalidSignature)?,
            )),
            (None, None, None) => None,
        })
    }
}

/// The parts of an Endpoint URL the client uses.
struct EndpointUrl<'a> {
    /// Lower-cased scheme.
    scheme: String,
    host: String,
    port: Option<u16>,
    /// Everything after the authority (path, query, fragment).
    path: &'a str,
}

fn parse_endpoint(endpoint: &str) -> Result<EndpointUrl<'_>, ConnectionStringError> {
    let not_url = |reason| ConnectionStringError::EndpointNotUrl {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| not_url("no scheme; expected sb://<host>"))?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(not_url("the scheme is not a URL scheme"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.is_empty() {
        return Err(not_url("no host after the scheme"));
    }
    if authority.contains('@') {
        return Err(not_url("user information before the host is not allowed"));
    }
    let (host, port_text) = split_authority(authority).map_err(not_url)?;
    let port = match port_text {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ConnectionStringError::EndpointPort {
                    endpoint: endpoint.to_owned(),
                    port: p.to_owned(),
                })?,
        ),
    };
    Ok(EndpointUrl {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_owned(),
        port,
        path,
    })
}

/// The host (an IPv6 literal keeps its brackets) and the port text of a
/// URL authority, or why it has none.
fn split_authority(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(inner) = authority.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port.
        let (addr, after) = inner
            .split_once(']')
            .ok_or("an IPv6 host has no closing ']'")?;
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("the IPv6 host is not an address");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("text after the IPv6 host")?),
        };
        return Ok((&authority[..addr.len() + 2], port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err("no host after the scheme");
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("the host may hold only letters, digits, '-', '.' and '_'");
    }
    Ok((host, port))
}

/// Errors about Azure environments and namespace names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironmentError {
    /// The name is none of those [`Environment::from_name`] knows.
    #[error("unknown Azure environment {name:?}; expected AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud or AzureGermanCloud")]
    UnknownEnvironment {
        /// The name given.
        name: String,
    },
    /// The namespace name is empty or holds characters other than ASCII
    /// letters, digits and `-`.
    #[error("namespace name {name:?} must be non-empty and hold only letters, digits and '-'")]
    InvalidNamespaceName {
        /// The name given.
        name: String,
    },
}

/// An Azure cloud, which fixes the Service Bus DNS suffix of namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Environment {
    /// Azure public cloud: `servicebus.windows.net`.
    #[default]
    Public,
    /// Azure China (21Vianet): `servicebus.chinacloudapi.cn`.
    China,
    /// Azure US Government: `servicebus.usgovcloudapi.net`.
    UsGovernment,
    /// Azure Germany (retired sovereign cloud): `servicebus.cloudapi.de`.
    Germany,
}

impl Environment {
    /// Every environment.
    pub const ALL: [Environment; 4] = [
        Environment::Public,
        Environment::China,
        Environment::UsGovernment,
        Environment::Germany,
    ];

    /// Looks up an `AZURE_ENVIRONMENT` value, case-insensitively, with the
    /// names go-autorest's `EnvironmentFromName` accepts: `AzurePublicCloud`
    /// or `AzureCloud`, `AzureChinaCloud`, `AzureUSGovernmentCloud` or
    /// `AzureUSGovernment`, `AzureGermanCloud`. Surrounding whitespace is
    /// ignored. An empty value is an error: an adapter that finds the
    /// variable unset or empty should use [`Environment::default`] (public).
    pub fn from_name(name: &str) -> Result<Self, EnvironmentError> {
        let n = name.trim();
        let is = |s: &str| n.eq_ignore_ascii_case(s);
        if is("AzurePublicCloud") || is("AzureCloud") {
            Ok(Environment::Public)
        } else if is("AzureChinaCloud") {
            Ok(Environment::China)
        } else if is("AzureUSGovernmentCloud") || is("AzureUSGovernment") {
            Ok(Environment::UsGovernment)
        } else if is("AzureGermanCloud") {
            Ok(Environment::Germany)
        } else {
            Err(EnvironmentError::UnknownEnvironment {
                name: name.to_owned(),
            })
        }
    }

    /// The canonical name (`AzurePublicCloud`, …).
    pub fn name(self) -> &'static str {
        match self {
            Environment::Public => "AzurePublicCloud",
            Environment::China => "AzureChinaCloud",
            Environment::UsGovernment => "AzureUSGovernmentCloud",
            Environment::Germany => "AzureGermanCloud",
        }
    }

    /// The Service Bus / Event Hubs DNS suffix, without a leading dot.
    pub fn service_bus_suffix(self) -> &'static str {
        match self {
            Environment::Public => "servicebus.windows.net",
            Environment::China => "servicebus.chinacloudapi.cn",
            Environment::UsGovernment => "servicebus.usgovcloudapi.net",
            Environment::Germany => "servicebus.cloudapi.de",
        }
    }

    /// `<namespace>.<suffix>`, e.g. `myns.servicebus.windows.net`. The
    /// namespace is the bare name (ASCII letters, digits, `-`), not an FQDN.
    pub fn namespace_fqdn(self, namespace: &str) -> Result<String, EnvironmentError> {
        let ok = !namespace.is_empty()
            && namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(EnvironmentError::InvalidNamespaceName {
                name: namespace.to_owned(),
            });
        }
        Ok(format!("{namespace}.{}", self.service_bus_suffix()))
    }
}

impl FromStr for Environment {
    type Err = EnvironmentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionStringError as E;

    const KEY: &str = "c2VjcmV0U0VDUkVUa2V5MTIzNDU2Nzg5MA==";

    fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        ConnectionString::parse(s)
    }

    #[test]
    fn portal_string() {
        let cs = parse(&format!(
            "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY};EntityPath=hub1"
        ))
        .expect("valid");
        assert_eq!(cs.endpoint, "sb://myns.servicebus.windows.net/");
        assert_eq!(cs.fully_qualified_namespace, "myns.servicebus.windows.net");
        assert_eq!(cs.port, None);
        assert_eq!(cs.amqp_port(), 5671);
        assert!(cs.use_tls());
        assert_eq!(cs.entity_path.as_deref(), Some("hub1"));
        assert!(!cs.use_development_emulator);
        assert_eq!(
            cs.credentials,
            Some(Credentials::SharedAccessKey {
                key_name: "RootManageSharedAccessKey".into(),
                key: KEY.into(),
            })
        );
        assert!(cs.require_credentials().is_ok());
    }

    #[test]
    fn keys_case_insensitive_first_equals_empty_segments_unknown_keys() {
        let cs: ConnectionString = format!(
            ";;endpoint=amqps://MyNs.servicebus.windows.net;sharedaccesskeyname=r;SHAREDACCESSKEY={KEY};;Foo=bar=baz; entitypath = h ;"
        )
        .parse()
        .expect("valid");
        assert_eq!(cs.fully_qualified_namespace, "MyNs.servicebus.windows.net");
        assert_eq!(cs.entity_path.as_deref(), Some("h"));
        match &cs.credentials {
            // The key keeps its trailing '=': split at the first '='.
            Some(Credentials::SharedAccessKey { key, .. }) => assert_eq!(key, KEY),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn signature_credentials() {
        let sas = "SharedAccessSignature sr=amqps%3a%2f%2fmyns.servicebus.windows.net%2fhub&sig=SIGVALUE%3D&se=1700000000&skn=Root";
        let cs = parse(&format!(
            "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessSignature={sas}"
        ))
        .expect("valid");
        match cs.require_credentials() {
            Ok(Credentials::SharedAccessSignature(s)) => {
                assert_eq!(s.expires_at_unix(), 1_700_000_000);
                assert_eq!(s.as_str(), sas);
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut provider = cs
            .require_credentials()
            .expect("has credentials")
            .token_provider()
            .expect("provider");
        let token = provider.token("amqps://x/y", 1_600_000_000).expect("token");
        assert_eq!(token.token, sas);
        assert_eq!(token.expires_at_unix, 1_700_000_000);
    }

    #[test]
    fn key_credentials_provider() {
        let cs = parse("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=keyName;SharedAccessKey=key")
            .expect("valid");
        let mut p = cs
            .require_credentials()
            .expect("has credentials")
            .token_provider()
            .expect("provider");
        let t = p.token("audience", 1_578_099_723 - 7200).expect("token");
        assert_eq!(t.token, "SharedAccessSignature sr=audience&sig=8UM0iIfFCfeBSqxSdBMW8pUbhAm7mnjSUaIZTZx8V0g%3D&se=1578099723&skn=keyName");
    }

    #[test]
    fn no_credentials_is_an_error_only_on_request() {
        let cs = parse("Endpoint=sb://ns.servicebus.windows.net/;EntityPath=hub").expect("valid");
        assert_eq!(cs.credentials, None);
        assert_eq!(cs.require_credentials(), Err(E::NoCredentials));
        assert!(E::NoCredentials.to_string().contains("no credentials"));
    }

    #[test]
    fn emulator() {
        let cs = parse("Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")
            .expect("valid");
        assert!(cs.use_development_emulator);
        assert!(!cs.use_tls());
        assert_eq!(cs.fully_qualified_namespace, "localhost");
        assert_eq!(cs.port, Some(5672));
        assert_eq!(cs.amqp_port(), 5672);

        let cs = parse("Endpoint=sb://192.168.1.20:15672/;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=TRUE")
            .expect("valid");
        assert_eq!(cs.fully_qualified_namespace, "192.168.1.20");
        assert_eq!(cs.port, Some(15672));

        let cs = parse("Endpoint=sb://[::1]:5673;UseDevelopmentEmulator=true").expect("valid");
        assert_eq!(cs.fully_qualified_namespace, "[::1]");
        assert_eq!(cs.port, Some(5673));

        let cs =
            parse("Endpoint=sb://ns.servicebus.windows.net:1234/;UseDevelopmentEmulator=false")
                .expect("valid");
        assert!(!cs.use_development_emulator);
        assert_eq!(cs.port, None, "the service ignores the Endpoint's port");

        for bad in [
            "Endpoint=amqps://localhost;UseDevelopmentEmulator=true",
            "Endpoint=sb://localhost/hub;UseDevelopmentEmulator=true",
            "Endpoint=sb://localhost:5672/x;UseDevelopmentEmulator=true",
        ] {
            assert!(
                matches!(parse(bad), Err(E::EmulatorEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn emulator_flag_values() {
        assert_eq!(
            parse("Endpoint=sb://localhost;UseDevelopmentEmulator=yes"),
            Err(E::InvalidEmulatorFlag {
                value: "yes".into()
            })
        );
        assert_eq!(
            parse("Endpoint=sb://localhost;UseDevelopmentEmulator=1"),
            Err(E::InvalidEmulatorFlag { value: "1".into() })
        );
    }

    #[test]
    fn malformed_segments() {
        assert_eq!(
            parse("Endpoint=sb://ns/;garbage;SharedAccessKeyName=a"),
            Err(E::SegmentWithoutEquals { position: 2 })
        );
        assert_eq!(
            parse("Endpoint=sb://ns/;=value"),
            Err(E::EmptyKey { position: 2 })
        );
        assert_eq!(
            parse("Endpoint=sb://ns/;EntityPath="),
            Err(E::EmptyValue { key: "EntityPath" })
        );
        assert_eq!(parse("Endpoint="), Err(E::EmptyValue { key: "Endpoint" }));
        assert_eq!(
            parse("Endpoint=sb://ns/;SharedAccessKey= "),
            Err(E::EmptyValue {
                key: "SharedAccessKey"
            })
        );
        // Unknown keys may be empty: they are ignored entirely.
        assert!(parse("Endpoint=sb://ns/;Whatever=").is_ok());
        assert_eq!(parse(""), Err(E::MissingEndpoint));
        assert_eq!(
            parse("SharedAccessKeyName=a;SharedAccessKey=b"),
            Err(E::MissingEndpoint)
        );
    }

    #[test]
    fn bad_endpoints() {
        let not_url = |s: &str| matches!(parse(s), Err(E::EndpointNotUrl { .. }));
        assert!(not_url("Endpoint=ns.servicebus.windows.net"));
        assert!(not_url("Endpoint=sb://"));
        assert!(not_url("Endpoint=sb:///path"));
        assert!(not_url("Endpoint=sb://user@ns/"));
        assert!(not_url("Endpoint=sb://bad host/"));
        assert!(not_url("Endpoint=sb://[::1/"));
        assert!(not_url("Endpoint=sb://[zz]/"));
        assert!(not_url("Endpoint=sb://[::1]x/"));
        assert!(not_url("Endpoint=1sb://ns/"));
        assert!(not_url("Endpoint=sb://:5672/"));
        assert_eq!(
            parse("Endpoint=https://ns.servicebus.windows.net/"),
            Err(E::EndpointScheme {
                endpoint: "https://ns.servicebus.windows.net/".into(),
                scheme: "https".into()
            })
        );
        assert!(matches!(
            parse("Endpoint=amqp://ns/"),
            Err(E::EndpointScheme { .. })
        ));
        for port in ["0", "65536", "x", "", "+1"] {
            assert_eq!(
                parse(&format!("Endpoint=sb://ns:{port}/")),
                Err(E::EndpointPort {
                    endpoint: format!("sb://ns:{port}/"),
                    port: port.into()
                }),
                "port {port:?}"
            );
        }
        // Scheme case does not matter.
        assert!(parse("Endpoint=SB://ns.servicebus.windows.net/").is_ok());
        assert!(parse("Endpoint=AMQPS://ns.servicebus.windows.net").is_ok());
    }

    #[test]
    fn credential_combinations() {
        let base = "Endpoint=sb://ns.servicebus.windows.net/";
        let sas = "SharedAccessSignature sr=a&sig=b&se=1";
        assert_eq!(
            parse(&format!("{base};SharedAccessKey=k")),
            Err(E::KeyWithoutKeyName)
        );
        assert_eq!(
            parse(&format!("{base};SharedAccessKeyName=n")),
            Err(E::KeyNameWithoutKey)
        );
        assert_eq!(
            parse(&format!(
                "{base};SharedAccessKeyName=n;SharedAccessKey=k;SharedAccessSignature={sas}"
            )),
            Err(E::KeyAndSignature)
        );
        assert_eq!(
            parse(&format!(
                "{base};SharedAccessKey=k;SharedAccessSignature={sas}"
            )),
            Err(E::KeyAndSignature)
        );
        assert_eq!(
            parse(&format!(
                "{base};SharedAccessKeyName=n;SharedAccessSignature={sas}"
            )),
            Err(E::KeyAndSignature)
        );
        assert_eq!(
            parse(&format!("{base};SharedAccessSignature=sr=a&sig=b&se=1")),
            Err(E::InvalidSignature(SasParseError::WrongPrefix))
        );
        assert_eq!(
            parse(&format!(
                "{base};SharedAccessSignature=SharedAccessSignature sr=a&sig=b"
            )),
            Err(E::InvalidSignature(SasParseError::MissingExpiry))
        );
        let e = parse(&format!(
            "{base};SharedAccessSignature=SharedAccessSignature sr=a&sig=SECRET&se=tomorrow"
        ))
        .expect_err("bad se");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(e.to_string().contains("tomorrow"), "{e}");
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        assert!(E::MissingEndpoint.to_string().contains("no Endpoint"));
        assert!(E::KeyWithoutKeyName
            .to_string()
            .contains("no SharedAccessKeyName"));
        assert!(E::KeyNameWithoutKey
            .to_string()
            .contains("no SharedAccessKey"));
        assert!(E::SegmentWithoutEquals { position: 3 }
            .to_string()
            .contains("segment 3 has no '='"));
    }

    #[test]
    fn debug_redacts_key_and_signature() {
        let cs = parse(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"
        ))
        .expect("valid");
        let dbg = format!("{cs:?}");
        assert!(!dbg.contains(KEY), "{dbg}");
        assert!(!dbg.contains("c2VjcmV0"), "{dbg}");
        assert!(dbg.contains("Root") && dbg.contains("ns.servicebus.windows.net"));
        let creds = cs.credentials.clone().expect("credentials");
        assert!(!format!("{creds:?}").contains(KEY));
        assert!(!format!("{creds:#?}").contains(KEY));

        let cs = parse("Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=a&sig=TOPSECRETSIG&se=1&skn=Root")
            .expect("valid");
        let dbg = format!("{cs:?}");
        assert!(!dbg.contains("TOPSECRETSIG"), "{dbg}");
        assert!(!format!("{cs:#?}").contains("TOPSECRETSIG"));
        assert!(!format!("{:?}", cs.credentials).contains("TOPSECRETSIG"));
    }

    #[test]
    fn environments() {
        assert_eq!(
            Environment::from_name("AzurePublicCloud"),
            Ok(Environment::Public)
        );
        assert_eq!(
            Environment::from_name("azurecloud"),
            Ok(Environment::Public)
        );
        assert_eq!(
            Environment::from_name("AZURECHINACLOUD"),
            Ok(Environment::China)
        );
        assert_eq!(
            Environment::from_name("AzureUSGovernmentCloud"),
            Ok(Environment::UsGovernment)
        );
        assert_eq!(
            Environment::from_name("azureusgovernment"),
            Ok(Environment::UsGovernment)
        );
        assert_eq!(
            " AzureGermanCloud ".parse::<Environment>(),
            Ok(Environment::Germany)
        );
        assert!(matches!(
            Environment::from_name("Mars"),
            Err(EnvironmentError::UnknownEnvironment { .. })
        ));
        assert!(Environment::from_name("").is_err());
        assert_eq!(Environment::default(), Environment::Public);
        for env in Environment::ALL {
            assert_eq!(Environment::from_name(env.name()), Ok(env));
            assert_eq!(env.to_string(), env.name());
        }
        assert_eq!(
            Environment::Public.namespace_fqdn("myns").as_deref(),
            Ok("myns.servicebus.windows.net")
        );
        assert_eq!(
            Environment::China.namespace_fqdn("myns").as_deref(),
            Ok("myns.servicebus.chinacloudapi.cn")
        );
        assert_eq!(
            Environment::UsGovernment.namespace_fqdn("my-ns").as_deref(),
            Ok("my-ns.servicebus.usgovcloudapi.net")
        );
        assert_eq!(
            Environment::Germany.namespace_fqdn("myns").as_deref(),
            Ok("myns.servicebus.cloudapi.de")
        );
        for bad in ["", "my.ns", "ns/x", "ns name"] {
            assert!(matches!(
                Environment::Public.namespace_fqdn(bad),
                Err(EnvironmentError::InvalidNamespaceName { .. })
            ));
        }
        let cs = ConnectionString::for_namespace("myns", Environment::China).expect("valid");
        assert_eq!(
            cs.fully_qualified_namespace,
            "myns.servicebus.chinacloudapi.cn"
        );
        assert_eq!(cs.endpoint, "sb://myns.servicebus.chinacloudapi.cn/");
        assert_eq!(cs.credentials, None);
        // What it builds parses back to itself.
        let reparsed = parse(&format!("Endpoint={}", cs.endpoint)).expect("valid");
        assert_eq!(reparsed, cs);
    }
}
