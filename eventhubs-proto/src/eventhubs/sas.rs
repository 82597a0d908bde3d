//! Shared access signatures (Azure's "Authorize access with shared access
//! signatures": `SharedAccessSignature sr=…&sig=…&se=…&skn=…`, HMAC-SHA256
//! over the URL-encoded resource and expiry) and the CBS tokens they make.
//!
//! A SAS token reads
//! `SharedAccessSignature sr=<enc-resource>&sig=<enc-signature>&se=<expiry>&skn=<enc-keyname>`.
//! The signature is HMAC-SHA256, keyed with the UTF-8 bytes of the shared
//! access key *as written*, over `<enc-resource> "\n" <expiry>`, where
//! `<enc-resource>` is exactly the text placed after `sr=`; it is then
//! base64 encoded (standard alphabet, padded) and URL encoded.
//!
//! Tokens reach the service through CBS `put-token`. In this sans-IO core a
//! token source is a [`SyncTokenProvider`]: the engine says which audience
//! it needs a token for ([`TokenRequest`]), and the caller answers with a
//! [`Token`], computed synchronously (SAS keys) or fetched elsewhere
//! (Entra ID / JWT) and handed in later.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The scheme word that starts every SAS token, followed by one space.
pub const SAS_PREFIX: &str = "SharedAccessSignature ";

/// CBS `type` for SAS tokens.
pub const CBS_TYPE_SAS: &str = "servicebus.windows.net:sastoken";

/// CBS `type` for Entra ID (AAD) JWTs, as current SDKs send it.
pub const CBS_TYPE_JWT: &str = "jwt";

/// Longest key name and key .NET accepts (`SharedAccessSignature.cs`).
pub const MAX_KEY_NAME_LEN: usize = 256;

/// Longest key .NET accepts.
pub const MAX_KEY_LEN: usize = 256;

/// How long tokens signed by [`SasKeyProvider`] live unless configured:
/// 2 hours, Go's value (.NET uses 30 min, Python 1 h, Java 20 min).
pub const DEFAULT_SAS_VALIDITY: Duration = Duration::from_secs(2 * 60 * 60);

const REDACTED: &str = "<redacted>";

/// Case of the hex digits in `%XX` escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HexCase {
    /// `%3a` (what Go's `strings.ToLower` leaves behind).
    Lower,
    /// `%3A` (RFC 3986's recommendation; .NET, Python, Go's own escaper).
    Upper,
}

/// How the resource URI is encoded into `sr` (and so into the signed
/// string). The service re-computes the HMAC over `sr` as sent, so every
/// choice is valid as long as it is used for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResourceEncoding {
    /// Go: `strings.ToLower(url.QueryEscape(uri))`. Note that Go lowercases
    /// the *whole* escaped string, host and path included, not only the hex
    /// digits; this does the same.
    #[default]
    GoLowercase,
    /// Python's `quote_plus(uri)`: upper-case hex escapes, case of the URI
    /// kept. (.NET's `WebUtility.UrlEncode` is the same for every character
    /// a namespace or hub name can hold; it differs only for `!*()~`.)
    Uppercase,
}

impl ResourceEncoding {
    /// Encodes `resource` (e.g. `amqps://ns.servicebus.windows.net/hub`)
    /// the way this style writes it after `sr=`.
    pub fn encode(self, resource: &str) -> String {
        match self {
            ResourceEncoding::GoLowercase => {
                query_escape(resource, HexCase::Upper).to_ascii_lowercase()
            }
            ResourceEncoding::Uppercase => query_escape(resource, HexCase::Upper),
        }
    }
}

/// URL query-component escaping (Go `url.QueryEscape`, Python
/// `quote_plus`): ASCII letters, digits and `-_.~` stay, a space becomes
/// `+`, every other byte of the UTF-8 encoding becomes `%XX`.
pub fn query_escape(s: &str, case: HexCase) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let digits = match case {
        HexCase::Upper => UPPER,
        HexCase::Lower => LOWER,
    };
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(digits[usize::from(b >> 4)]));
                out.push(char::from(digits[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

/// Reverses [`query_escape`] (either hex case): `+` becomes a space and
/// `%XX` its byte. `None` for a truncated or non-hex escape or a result
/// that is not UTF-8.
pub fn query_unescape(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Errors producing a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The key name is empty.
    #[error("SAS key name is empty")]
    EmptyKeyName,
    /// The key name is longer than [`MAX_KEY_NAME_LEN`] characters.
    #[error("SAS key name is {len} characters long; the limit is {MAX_KEY_NAME_LEN}")]
    KeyNameTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The key is empty.
    #[error("SAS key is empty")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_LEN`] characters.
    #[error("SAS key is {len} characters long; the limit is {MAX_KEY_LEN}")]
    KeyTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// `now + validity` does not fit in 64-bit Unix seconds.
    #[error("token expiry overflows: now {now_unix} s + validity {validity_secs} s")]
    ExpiryOverflow {
        /// The caller's clock, Unix seconds.
        now_unix: u64,
        /// The configured validity, seconds.
        validity_secs: u64,
    },
    /// A fixed token (a `SharedAccessSignature` from a connection string)
    /// has already expired and cannot be renewed without a key.
    #[error("the shared access signature expired at {expired_at_unix} (now {now_unix}) and cannot be renewed without a key")]
    Expired {
        /// Its `se`, Unix seconds.
        expired_at_unix: u64,
        /// The caller's clock, Unix seconds.
        now_unix: u64,
    },
    /// Any other failure of a caller-defined provider.
    #[error("token provider failed: {0}")]
    Provider(String),
    /// A Microsoft Entra ID credential could not get a token.
    #[error(transparent)]
    Credential(#[from] crate::identity::CredentialError),
}

/// Validates a key name and key the way .NET does: both non-empty and at
/// most 256 characters.
fn check_key(key_name: &str, key: &str) -> Result<(), TokenError> {
    if key_name.is_empty() {
        return Err(TokenError::EmptyKeyName);
    }
    let len = key_name.chars().count();
    if len > MAX_KEY_NAME_LEN {
        return Err(TokenError::KeyNameTooLong { len });
    }
    if key.is_empty() {
        return Err(TokenError::EmptyKey);
    }
    let len = key.chars().count();
    if len > MAX_KEY_LEN {
        return Err(TokenError::KeyTooLong { len });
    }
    Ok(())
}

/// HMAC-SHA256 of `message` keyed with `key`'s UTF-8 bytes.
fn hmac_sha256(key: &str, message: &str) -> Result<[u8; 32], TokenError> {
    // HMAC takes keys of any length; the error arm cannot be reached.
    let mut mac = HmacSha256::new_from_slice(key.as_bytes())
        .map_err(|_| TokenError::Provider("HMAC-SHA256 rejected the key".into()))?;
    mac.update(message.as_bytes());
    Ok(mac.finalize().into_bytes().into())
}

/// The `sig` value, before URL encoding: base64 of the HMAC of
/// `<encoded_resource>\n<expiry>`.
fn raw_signature(key: &str, encoded_resource: &str, expiry: u64) -> Result<String, TokenError> {
    let mac = hmac_sha256(key, &format!("{encoded_resource}\n{expiry}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(mac))
}

/// Signs a SAS token for `resource` (the audience URI, unencoded), valid
/// until `expires_at_unix` (Unix seconds), with `key_name` and `key`.
///
/// `sr` is `resource` encoded per `encoding`; `skn` is the key name
/// query-escaped with upper-case hex (identical to Go's raw `skn` for every
/// name Azure allows: letters, digits, `.`, `-`, `_`).
pub fn sign(
    resource: &str,
    key_name: &str,
    key: &str,
    expires_at_unix: u64,
    encoding: ResourceEncoding,
) -> Result<String, TokenError> {
    check_key(key_name, key)?;
    let sr = encoding.encode(resource);
    let sig = query_escape(&raw_signature(key, &sr, expires_at_unix)?, HexCase::Upper);
    let skn = query_escape(key_name, HexCase::Upper);
    Ok(format!(
        "{SAS_PREFIX}sr={sr}&sig={sig}&se={expires_at_unix}&skn={skn}"
    ))
}

/// Errors parsing a `SharedAccessSignature sr=…&sig=…&se=…&skn=…` string.
/// They never quote the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SasParseError {
    /// The string does not start with `SharedAccessSignature `.
    #[error("a shared access signature must start with \"SharedAccessSignature \"")]
    WrongPrefix,
    /// A `&`-separated pair has no `=`.
    #[error("pair {position} of the shared access signature has no '='")]
    PairWithoutEquals {
        /// 1-based position of the pair.
        position: usize,
    },
    /// A field appears twice.
    #[error("the shared access signature has field {field:?} twice")]
    DuplicateField {
        /// The field name.
        field: &'static str,
    },
    /// No `sr=` (resource).
    #[error("the shared access signature has no resource (sr=)")]
    MissingResource,
    /// No `sig=` (signature).
    #[error("the shared access signature has no signature (sig=)")]
    MissingSignature,
    /// No `se=` (expiry).
    #[error("the shared access signature has no expiry (se=)")]
    MissingExpiry,
    /// `se` is not a decimal number of Unix seconds.
    #[error("the shared access signature's expiry se={value:?} is not a number of Unix seconds")]
    InvalidExpiry {
        /// The `se` value as written.
        value: String,
    },
}

/// A parsed shared access signature, kept verbatim for sending (CBS
/// `put-token` carries the whole string). `Debug` redacts the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedAccessSignature {
    token: String,
    resource: String,
    signature: String,
    expires_at_unix: u64,
    key_name: Option<String>,
}

impl SharedAccessSignature {
    /// Parses `SharedAccessSignature sr=…&sig=…&se=…&skn=…`, the pairs in
    /// any order. `sr`, `sig` and `se` are required, `skn` is optional
    /// (tokens minted for a specific publisher may omit it); unknown pairs
    /// are kept in the token and otherwise ignored.
    pub fn parse(token: &str) -> Result<Self, SasParseError> {
        let body = token
            .strip_prefix(SAS_PREFIX)
            .ok_or(SasParseError::WrongPrefix)?;
        let mut resource = None;
        let mut signature = None;
        let mut expiry = None;
        let mut key_name = None;
        for (i, pair) in body.trim_start().split('&').enumerate() {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair
                .split_once('=')
                .ok_or(SasParseError::PairWithoutEquals { position: i + 1 })?;
            let (slot, field) = match name {
                "sr" => (&mut resource, "sr"),
                "sig" => (&mut signature, "sig"),
                "se" => (&mut expiry, "se"),
                "skn" => (&mut key_name, "skn"),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(SasParseError::DuplicateField { field });
            }
        }
        let resource = resource.ok_or(SasParseError::MissingResource)?;
        let signature = signature.ok_or(SasParseError::MissingSignature)?;
        let expiry = expiry.ok_or(SasParseError::MissingExpiry)?;
        let expires_at_unix =
            parse_unix_seconds(expiry).ok_or_else(|| SasParseError::InvalidExpiry {
                value: expiry.to_owned(),
            })?;
        Ok(SharedAccessSignature {
            token: token.to_owned(),
            resource: resource.to_owned(),
            signature: signature.to_owned(),
            expires_at_unix,
            key_name: key_name.map(str::to_owned),
        })
    }

    /// The whole token string, as given.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The `sr` value as transmitted (still URL-encoded): the string that
    /// was signed.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The `sr` value URL-decoded (e.g. `amqps://ns.servicebus.windows.net/hub`);
    /// `None` when its escapes are malformed.
    pub fn resource_uri(&self) -> Option<String> {
        query_unescape(&self.resource)
    }

    /// `se`: expiry in Unix seconds.
    pub fn expires_at_unix(&self) -> u64 {
        self.expires_at_unix
    }

    /// `skn`, URL-decoded (falling back to the raw text if the escapes are
    /// malformed), when present.
    pub fn key_name(&self) -> Option<String> {
        self.key_name
            .as_deref()
            .map(|k| query_unescape(k).unwrap_or_else(|| k.to_owned()))
    }

    /// True when the signature is the HMAC of `sr` and `se` under `key`
    /// (what the service checks; the emulator uses this). Compared in
    /// constant time.
    pub fn verify(&self, key: &str) -> bool {
        let Some(sig) = query_unescape(&self.signature) else {
            return false;
        };
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else {
            return false;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(key.as_bytes()) else {
            return false;
        };
        mac.update(format!("{}\n{}", self.resource, self.expires_at_unix).as_bytes());
        mac.verify_slice(&sig).is_ok()
    }

    /// The token to hand to CBS, expiring at `se`.
    pub fn to_token(&self) -> Token {
        Token {
            token: self.token.clone(),
            expires_at_unix: self.expires_at_unix,
            token_type: TokenType::SasToken,
        }
    }
}

impl fmt::Debug for SharedAccessSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAccessSignature")
            .field("resource", &self.resource)
            .field("signature", &format_args!("{REDACTED}"))
            .field("expires_at_unix", &self.expires_at_unix)
            .field("key_name", &self.key_name)
            .finish()
    }
}

impl std::str::FromStr for SharedAccessSignature {
    type Err = SasParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Decimal ASCII digits only (no sign, no spaces), fitting in u64.
fn parse_unix_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Kind of a CBS token; selects the `type` application property of
/// `put-token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// A shared access signature: `servicebus.windows.net:sastoken`.
    SasToken,
    /// An Entra ID (AAD) JWT: `jwt`.
    Jwt,
}

impl TokenType {
    /// The CBS `type` value.
    pub fn cbs_type(self) -> &'static str {
        match self {
            TokenType::SasToken => CBS_TYPE_SAS,
            TokenType::Jwt => CBS_TYPE_JWT,
        }
    }
}

/// A token ready for CBS `put-token`. `Debug` redacts the token text.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The token text: a whole `SharedAccessSignature …` string or a raw JWT.
    pub token: String,
    /// When it expires, Unix seconds (0 when unknown).
    pub expires_at_unix: u64,
    /// SAS or JWT.
    pub token_type: TokenType,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token", &format_args!("{REDACTED}"))
            .field("expires_at_unix", &self.expires_at_unix)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// What the core asks its caller for: a token for `audience` (e.g.
/// `amqps://ns.servicebus.windows.net/hub/Partitions/0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    /// The CBS audience (`name` of `put-token`).
    pub audience: String,
}

/// A token source that answers at once, from the caller's clock.
///
/// Asynchronous sources (Entra ID) live in the runtime adapter: it takes
/// the core's [`TokenRequest`], fetches, and hands the [`Token`] back.
pub trait SyncTokenProvider {
    /// A token for `audience`, valid from `now_unix` (Unix seconds).
    fn token(&mut self, audience: &str, now_unix: u64) -> Result<Token, TokenError>;
}

impl<P: SyncTokenProvider + ?Sized> SyncTokenProvider for Box<P> {
    fn token(&mut self, audience: &str, now_unix: u64) -> Result<Token, TokenError> {
        (**self).token(audience, now_unix)
    }
}

/// Signs SAS tokens from a shared access key name and key. `Debug`
/// redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SasKeyProvider {
    key_name: String,
    key: String,
    validity: Duration,
    encoding: ResourceEncoding,
}

impl SasKeyProvider {
    /// A provider for `key_name`/`key` with [`DEFAULT_SAS_VALIDITY`] and
    /// Go's resource encoding. Fails for an empty or over-long name or key.
    pub fn new(key_name: impl Into<String>, key: impl Into<String>) -> Result<Self, TokenError> {
        let (key_name, key) = (key_name.into(), key.into());
        check_key(&key_name, &key)?;
        Ok(SasKeyProvider {
            key_name,
            key,
            validity: DEFAULT_SAS_VALIDITY,
            encoding: ResourceEncoding::default(),
        })
    }

    /// Tokens live `validity` (whole seconds; sub-second parts are dropped).
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Encode `sr` with `encoding`.
    pub fn with_encoding(mut self, encoding: ResourceEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The key name.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// How long tokens live.
    pub fn validity(&self) -> Duration {
        self.validity
    }
}

impl SyncTokenProvider for SasKeyProvider {
    fn token(&mut self, audience: &str, now_unix: u64) -> Result<Token, TokenError> {
        let validity_secs = self.validity.as_secs();
        let expires_at_unix =
            now_unix
                .checked_add(validity_secs)
                .ok_or(TokenError::ExpiryOverflow {
                    now_unix,
                    validity_secs,
                })?;
        let token = sign(
            audience,
            &self.key_name,
            &self.key,
            expires_at_unix,
            self.encoding,
        )?;
        Ok(Token {
            token,
            expires_at_unix,
            token_type: TokenType::SasToken,
        })
    }
}

impl fmt::Debug for SasKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasKeyProvider")
            .field("key_name", &self.key_name)
            .field("key", &format_args!("{REDACTED}"))
            .field("validity", &self.validity)
            .field("encoding", &self.encoding)
            .finish()
    }
}

/// Hands out one precomputed shared access signature (from a connection
/// string) for every audience, until it expires. It cannot be renewed: Go
/// sends it with expiration `"0"` and never refreshes; this reports its
/// real `se` so the caller knows when links will be detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedSasProvider {
    sas: SharedAccessSignature,
}

impl FixedSasProvider {
    /// A provider for `sas`.
    pub fn new(sas: SharedAccessSignature) -> Self {
        FixedSasProvider { sas }
    }
}

impl SyncTokenProvider for FixedSasProvider {
    fn token(&mut self, _audience: &str, now_unix: u64) -> Result<Token, TokenError> {
        if now_unix >= self.sas.expires_at_unix {
            return Err(TokenError::Expired {
                expired_at_unix: self.sas.expires_at_unix,
                now_unix,
            });
        }
        Ok(self.sas.to_token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_vector() {
        // From the Go SDK's `sas` package tests (azure-amqp-common-go).
        let token = sign(
            "audience",
            "keyName",
            "key",
            1_578_099_723,
            ResourceEncoding::GoLowercase,
        );
        assert_eq!(
            token.as_deref(),
            Ok("SharedAccessSignature sr=audience&sig=8UM0iIfFCfeBSqxSdBMW8pUbhAm7mnjSUaIZTZx8V0g%3D&se=1578099723&skn=keyName")
        );
    }

    #[test]
    fn extra_vector_lowercase() {
        let token = sign(
            "amqps://myns.servicebus.windows.net/myhub",
            "RootManageSharedAccessKey",
            "c2VjcmV0",
            1_700_000_000,
            ResourceEncoding::GoLowercase,
        );
        assert_eq!(
            token.as_deref(),
            Ok("SharedAccessSignature sr=amqps%3a%2f%2fmyns.servicebus.windows.net%2fmyhub&sig=JAnZBDf%2FFjNNuJR2xLEwrK4Uz5XV9IohWua9y9r9k8k%3D&se=1700000000&skn=RootManageSharedAccessKey")
        );
    }

    #[test]
    fn extra_vector_uppercase() {
        let token = sign(
            "amqps://myns.servicebus.windows.net/myhub",
            "RootManageSharedAccessKey",
            "c2VjcmV0",
            1_700_000_000,
            ResourceEncoding::Uppercase,
        );
        assert_eq!(
            token.as_deref(),
            Ok("SharedAccessSignature sr=amqps%3A%2F%2Fmyns.servicebus.windows.net%2Fmyhub&sig=BDTLkcXYiXN5uABFKrI3DoqOyI1pL9TjUV7Kadl%2FSZ4%3D&se=1700000000&skn=RootManageSharedAccessKey")
        );
    }

    #[test]
    fn go_lowercases_the_whole_resource() {
        assert_eq!(
            ResourceEncoding::GoLowercase.encode("amqps://MyNs.servicebus.windows.net/Hub"),
            "amqps%3a%2f%2fmyns.servicebus.windows.net%2fhub"
        );
        assert_eq!(
            ResourceEncoding::Uppercase.encode("amqps://MyNs.servicebus.windows.net/Hub"),
            "amqps%3A%2F%2FMyNs.servicebus.windows.net%2FHub"
        );
    }

    #[test]
    fn query_escape_matches_go_and_python() {
        assert_eq!(
            query_escape("a b+c/d:e=f&g?h~i_j.k-l", HexCase::Upper),
            "a+b%2Bc%2Fd%3Ae%3Df%26g%3Fh~i_j.k-l"
        );
        assert_eq!(query_escape("é", HexCase::Upper), "%C3%A9");
        assert_eq!(query_escape("é", HexCase::Lower), "%c3%a9");
        assert_eq!(
            query_unescape("a+b%2Bc%2fd%3Ae").as_deref(),
            Some("a b+c/d:e")
        );
        assert_eq!(query_unescape("%C3%A9").as_deref(), Some("é"));
        assert_eq!(query_unescape("%2"), None);
        assert_eq!(query_unescape("%zz"), None);
        assert_eq!(query_unescape("%FF"), None);
    }

    #[test]
    fn sign_rejects_bad_keys() {
        let e = ResourceEncoding::GoLowercase;
        assert_eq!(sign("r", "", "k", 1, e), Err(TokenError::EmptyKeyName));
        assert_eq!(sign("r", "n", "", 1, e), Err(TokenError::EmptyKey));
        let long = "x".repeat(257);
        assert_eq!(
            sign("r", &long, "k", 1, e),
            Err(TokenError::KeyNameTooLong { len: 257 })
        );
        assert_eq!(
            sign("r", "n", &long, 1, e),
            Err(TokenError::KeyTooLong { len: 257 })
        );
        assert!(sign("r", &"x".repeat(256), &"y".repeat(256), 1, e).is_ok());
    }

    #[test]
    fn parse_any_order() {
        let s = "SharedAccessSignature skn=keyName&se=1578099723&sig=8UM0iIfFCfeBSqxSdBMW8pUbhAm7mnjSUaIZTZx8V0g%3D&sr=audience";
        let sas = SharedAccessSignature::parse(s).expect("valid");
        assert_eq!(sas.expires_at_unix(), 1_578_099_723);
        assert_eq!(sas.resource(), "audience");
        assert_eq!(sas.key_name().as_deref(), Some("keyName"));
        assert_eq!(sas.as_str(), s);
        assert!(sas.verify("key"));
        assert!(!sas.verify("other"));
        let token = sas.to_token();
        assert_eq!(token.token_type, TokenType::SasToken);
        assert_eq!(token.expires_at_unix, 1_578_099_723);
        assert_eq!(token.token, s);
    }

    #[test]
    fn parse_round_trips_sign() {
        for enc in [ResourceEncoding::GoLowercase, ResourceEncoding::Uppercase] {
            let t = sign(
                "amqps://myns.servicebus.windows.net/myhub",
                "Root",
                "c2VjcmV0",
                1_700_000_000,
                enc,
            )
            .expect("valid key");
            let sas: SharedAccessSignature = t.parse().expect("parses");
            assert!(sas.verify("c2VjcmV0"));
            assert_eq!(
                sas.resource_uri().as_deref(),
                Some("amqps://myns.servicebus.windows.net/myhub")
            );
        }
    }

    #[test]
    fn parse_errors() {
        use SasParseError::*;
        let p = SharedAccessSignature::parse;
        assert_eq!(p("sr=a&sig=b&se=1"), Err(WrongPrefix));
        assert_eq!(p("sharedaccesssignature sr=a&sig=b&se=1"), Err(WrongPrefix));
        assert_eq!(
            p("SharedAccessSignature sr=a&sig=b&skn=k"),
            Err(MissingExpiry)
        );
        assert_eq!(
            p("SharedAccessSignature sr=a&sig=b&se=soon"),
            Err(InvalidExpiry {
                value: "soon".into()
            })
        );
        assert_eq!(
            p("SharedAccessSignature sr=a&sig=b&se=-5"),
            Err(InvalidExpiry { value: "-5".into() })
        );
        assert_eq!(
            p("SharedAccessSignature sr=a&sig=b&se="),
            Err(InvalidExpiry { value: "".into() })
        );
        assert_eq!(
            p("SharedAccessSignature sr=a&sig=b&se=99999999999999999999"),
            Err(InvalidExpiry {
                value: "99999999999999999999".into()
            })
        );
        assert_eq!(p("SharedAccessSignature sig=b&se=1"), Err(MissingResource));
        assert_eq!(p("SharedAccessSignature sr=a&se=1"), Err(MissingSignature));
        assert_eq!(
            p("SharedAccessSignature sr=a&sig&se=1"),
            Err(PairWithoutEquals { position: 2 })
        );
        assert_eq!(
            p("SharedAccessSignature sr=a&sig=b&se=1&se=2"),
            Err(DuplicateField { field: "se" })
        );
        // skn is optional, unknown pairs are ignored.
        let sas = p("SharedAccessSignature sr=a&sig=b&se=1&x=y").expect("valid");
        assert_eq!(sas.key_name(), None);
    }

    #[test]
    fn debug_redacts_secrets() {
        let sas = SharedAccessSignature::parse(
            "SharedAccessSignature sr=audience&sig=SECRETSIG%3D&se=1578099723&skn=keyName",
        )
        .expect("valid");
        let dbg = format!("{sas:?}");
        assert!(!dbg.contains("SECRETSIG"), "{dbg}");
        assert!(dbg.contains("1578099723"));

        let token = sas.to_token();
        let dbg = format!("{token:?}");
        assert!(!dbg.contains("SECRETSIG"), "{dbg}");
        assert!(dbg.contains("SasToken"));

        let provider = SasKeyProvider::new("keyName", "SUPERSECRETKEY").expect("valid");
        let dbg = format!("{provider:?}");
        assert!(!dbg.contains("SUPERSECRETKEY"), "{dbg}");
        assert!(dbg.contains("keyName"));

        let dbg = format!("{:?}", FixedSasProvider::new(sas));
        assert!(!dbg.contains("SECRETSIG"), "{dbg}");
    }

    #[test]
    fn sas_key_provider_signs_per_audience() {
        let mut p = SasKeyProvider::new("keyName", "key")
            .expect("valid")
            .with_validity(Duration::from_secs(3600));
        assert_eq!(p.validity(), Duration::from_secs(3600));
        assert_eq!(p.key_name(), "keyName");
        let t = p.token("audience", 1_578_096_123).expect("signs");
        assert_eq!(t.expires_at_unix, 1_578_099_723);
        assert_eq!(t.token_type, TokenType::SasToken);
        assert_eq!(
            t.token,
            "SharedAccessSignature sr=audience&sig=8UM0iIfFCfeBSqxSdBMW8pUbhAm7mnjSUaIZTZx8V0g%3D&se=1578099723&skn=keyName"
        );
        assert_eq!(
            p.token("a", u64::MAX),
            Err(TokenError::ExpiryOverflow {
                now_unix: u64::MAX,
                validity_secs: 3600
            })
        );
        assert_eq!(
            SasKeyProvider::new("", "k").map(|_| ()),
            Err(TokenError::EmptyKeyName)
        );

        let mut upper = SasKeyProvider::new("RootManageSharedAccessKey", "c2VjcmV0")
            .expect("valid")
            .with_encoding(ResourceEncoding::Uppercase)
            .with_validity(Duration::from_secs(100));
        let t = upper
            .token("amqps://myns.servicebus.windows.net/myhub", 1_699_999_900)
            .expect("signs");
        assert!(t
            .token
            .contains("sig=BDTLkcXYiXN5uABFKrI3DoqOyI1pL9TjUV7Kadl%2FSZ4%3D"));

        let mut boxed: Box<dyn SyncTokenProvider> = Box::new(p);
        assert!(boxed.token("audience", 0).is_ok());
    }

    #[test]
    fn default_validity_is_two_hours() {
        let mut p = SasKeyProvider::new("n", "k").expect("valid");
        let t = p.token("aud", 1000).expect("signs");
        assert_eq!(t.expires_at_unix, 1000 + 7200);
    }

    #[test]
    fn fixed_provider_until_expiry() {
        let sas = SharedAccessSignature::parse("SharedAccessSignature sr=a&sig=b&se=100&skn=k")
            .expect("valid");
        let mut p = FixedSasProvider::new(sas);
        let t = p.token("anything", 99).expect("still valid");
        assert_eq!(t.expires_at_unix, 100);
        assert_eq!(
            p.token("anything", 100),
            Err(TokenError::Expired {
                expired_at_unix: 100,
                now_unix: 100
            })
        );
    }

    #[test]
    fn token_types() {
        assert_eq!(
            TokenType::SasToken.cbs_type(),
            "servicebus.windows.net:sastoken"
        );
        assert_eq!(TokenType::Jwt.cbs_type(), "jwt");
        let jwt = Token {
            token: "eyJhbGciOi.secret.part".into(),
            expires_at_unix: 5,
            token_type: TokenType::Jwt,
        };
        assert!(!format!("{jwt:?}").contains("secret"));
        let req = TokenRequest {
            audience: "amqps://ns/hub".into(),
        };
        assert_eq!(req.audience, "amqps://ns/hub");
    }
}
