//! JSON Web Tokens (RFC 7519) as the project needs them, assembled and
//! taken apart here with serde_json and base64; signing and verifying are
//! RSASSA-PKCS1-v1_5 with SHA-256 (`RS256`, RFC 7518 3.3), done by the
//! caller with `ring` on [`UnsignedJwt::signing_input`] /
//! [`DecodedJwt::signing_input`].
//!
//! - The client assertion of the certificate flow (RFC 7523 3): header
//!   `alg` `RS256`, `typ` `JWT`, `x5t` (the certificate's SHA-1
//!   thumbprint, base64url) and/or `x5t#S256`, optionally `x5c` (the
//!   chain); claims `aud` (the token URL), `iss` = `sub` (the client id),
//!   `jti` (unique), `nbf`, `iat`, `exp`.
//! - Reading a token (header, claims, signature) for the emulator, which
//!   checks Entra ID tokens, and a JSON Web Key Set (RFC 7517) of RSA keys.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::certificate::{ClientCertificate, RsaPublicKey};
use super::Secret;
use crate::codec::Uuid;

/// How long a client assertion is valid: 10 minutes (MSAL, azure-identity).
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// Longest token [`DecodedJwt::parse`] reads (Entra ID tokens are 1–4 KiB).
pub const MAX_JWT_LEN: usize = 64 * 1024;

/// Which thumbprint headers an assertion carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThumbprintHeader {
    /// `x5t`, the SHA-1 thumbprint (azure-identity, the Rust SDK, adal).
    #[default]
    Sha1,
    /// `x5t#S256`, the SHA-256 thumbprint (MSAL's newer form).
    Sha256,
    /// Both.
    Both,
}

/// How to build a client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AssertionOptions {
    /// Its lifetime ([`DEFAULT_ASSERTION_LIFETIME`]).
    pub lifetime: Duration,
    /// Which thumbprints go in the header.
    pub thumbprint: ThumbprintHeader,
    /// Send the certificate chain as `x5c` (needed for subject name /
    /// issuer authentication; `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`).
    pub send_chain: bool,
}

impl Default for AssertionOptions {
    fn default() -> Self {
        AssertionOptions {
            lifetime: DEFAULT_ASSERTION_LIFETIME,
            thumbprint: ThumbprintHeader::default(),
            send_chain: false,
        }
    }
}

/// A JWT's header and claims, encoded, waiting for an RS256 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedJwt {
    signing_input: String,
    expires_at: u64,
}

impl UnsignedJwt {
    /// Any header and claims (`alg` is the caller's business).
    pub fn new(header: &Value, claims: &Value) -> Self {
        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        UnsignedJwt {
            signing_input,
            expires_at,
        }
    }

    /// The client assertion for `client_id` at `token_url` (its `aud`),
    /// issued at `now_unix`, with `jti` made from the caller's 128 random
    /// bits.
    pub fn client_assertion(
        certificate: &ClientCertificate,
        client_id: &str,
        token_url: &str,
        now_unix: u64,
        jti_bits: u128,
        options: AssertionOptions,
    ) -> Self {
        let mut header = Map::new();
        header.insert("alg".into(), "RS256".into());
        header.insert("typ".into(), "JWT".into());
        if options.thumbprint != ThumbprintHeader::Sha256 {
            header.insert("x5t".into(), certificate.x5t().into());
        }
        if options.thumbprint != ThumbprintHeader::Sha1 {
            header.insert("x5t#S256".into(), certificate.x5t_s256().into());
        }
        if options.send_chain {
            header.insert("x5c".into(), certificate.x5c().into());
        }
        let exp = now_unix.saturating_add(options.lifetime.as_secs());
        let claims = json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": Uuid::from_random_bits(jti_bits).to_string(),
            "nbf": now_unix,
            "iat": now_unix,
            "exp": exp,
        });
        UnsignedJwt::new(&Value::Object(header), &claims)
    }

    /// `base64url(header) "." base64url(claims)`: the bytes to sign.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// Its `exp`, Unix seconds (0 if none).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The compact JWS with `signature` appended.
    pub fn sign_with(self, signature: &[u8]) -> Secret {
        Secret::new(format!(
            "{}.{}",
            self.signing_input,
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url segments of JSON objects.
    #[error("the token is not a JWT: {0}")]
    Malformed(&'static str),
}

/// A JWT taken apart, not yet verified. `Debug` shows the header and claims
/// (not secret), not the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodedJwt {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl fmt::Debug for DecodedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedJwt")
            .field("header", &self.header)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl DecodedJwt {
    /// Splits a compact JWS and decodes its header and claims.
    pub fn parse(token: &str) -> Result<Self, JwtError> {
        if token.len() > MAX_JWT_LEN {
            return Err(JwtError::Malformed("longer than 64 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated segments"));
        };
        let object = |seg: &str, what: &'static str| -> Result<Map<String, Value>, JwtError> {
            let bytes = URL_SAFE_NO_PAD
                .decode(seg)
                .map_err(|_| JwtError::Malformed(what))?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(JwtError::Malformed(what)),
            }
        };
        let header = object(h, "the header is not base64url JSON")?;
        let claims = object(c, "the claims are not base64url JSON")?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| JwtError::Malformed("the signature is not base64url"))?;
        Ok(DecodedJwt {
            header,
            claims,
            signing_input: token[..h.len() + 1 + c.len()].to_owned(),
            signature,
        })
    }

    /// What the signature covers.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// A string header field.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A time claim (`exp`, `nbf`, `iat`): Unix seconds, integer or
    /// fractional.
    pub fn claim_time(&self, name: &str) -> Option<u64> {
        let v = self.claims.get(name)?;
        v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        })
    }

    /// The audiences: `aud` as a string or an array of strings.
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// One RSA key of a JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, if given.
    pub kid: Option<String>,
    /// `alg`, if given.
    pub alg: Option<String>,
    /// The key.
    pub key: RsaPublicKey,
    /// The first certificate of `x5c`, DER, if given.
    pub certificate: Option<Vec<u8>>,
}

/// The RSA signing keys of a JWKS document (`{"keys":[…]}`): keys of other
/// types and encryption keys (`use` = `enc`) are skipped.
pub fn parse_jwks(json: &[u8]) -> Result<Vec<Jwk>, JwtError> {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(json) else {
        return Err(JwtError::Malformed("the key set is not a JSON object"));
    };
    let Some(Value::Array(keys)) = doc.get("keys") else {
        return Err(JwtError::Malformed("the key set has no keys array"));
    };
    let mut out = Vec::new();
    for k in keys {
        let s = |name: &str| k.get(name).and_then(Value::as_str);
        if s("kty") != Some("RSA") || s("use") == Some("enc") {
            continue;
        }
        let number =
            |name: &str| s(name).and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok());
        let (Some(n), Some(e)) = (number("n"), number("e")) else {
            return Err(JwtError::Malformed("an RSA key without n and e"));
        };
        let strip = |v: Vec<u8>| {
            let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
            v[first..].to_vec()
        };
        let certificate = k
            .get("x5c")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .and_then(|c| STANDARD.decode(c).ok());
        out.push(Jwk {
            kid: s("kid").map(str::to_owned),
            alg: s("alg").map(str::to_owned),
            key: RsaPublicKey {
                modulus: strip(n),
                exponent: strip(e),
            },
            certificate,
        });
    }
    Ok(out)
}
