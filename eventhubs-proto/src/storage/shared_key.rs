//! Storage credentials: the account key (Shared Key authorization, and
//! SAS tokens signed with it) and SAS tokens given by the user.
//!
//! Shared Key follows the "Authorize with Shared Key" REST page (versions
//! 2015-02-21 and later: a zero `Content-Length` is signed as empty);
//! account and service SAS the "Create an account SAS" and "Create a
//! service SAS" pages (version 2020-12-06 and later).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{HeaderValue, AUTHORIZATION};
use http::Request;
use sha2::Sha256;

use super::error::StorageError;
use super::request::{percent_decode, percent_encode_query};
use crate::http::date::format_iso8601;

/// What `Debug` shows instead of a secret.
const REDACTED: &str = "<redacted>";

/// A storage account name and key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKeyCredential {
    account: String,
    key: Vec<u8>,
}

impl fmt::Debug for SharedKeyCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKeyCredential")
            .field("account", &self.account)
            .field("key", &format_args!("{REDACTED}"))
            .finish()
    }
}

/// The account key is not Base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the storage account key is not valid Base64")]
pub struct InvalidAccountKey;

impl SharedKeyCredential {
    /// A credential from the account name and the Base64 key the portal
    /// shows.
    pub fn new(account: impl Into<String>, key_base64: &str) -> Result<Self, InvalidAccountKey> {
        let key = BASE64
            .decode(key_base64.trim())
            .map_err(|_| InvalidAccountKey)?;
        if key.is_empty() {
            return Err(InvalidAccountKey);
        }
        Ok(SharedKeyCredential {
            account: account.into(),
            key,
        })
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Base64(HMAC-SHA256(key, `string_to_sign`)).
    pub fn sign(&self, string_to_sign: &str) -> String {
        // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(string_to_sign.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    /// Signs `request` (which carries `x-ms-date` and `x-ms-version`
    /// already): sets `Authorization: SharedKey <account>:<signature>`.
    pub fn authorize(&self, request: &mut Request<Bytes>) {
        let signature = self.sign(&string_to_sign(request, &self.account));
        let value = format!("SharedKey {}:{signature}", self.account);
        // Account names are lowercase letters and digits; the signature
        // is Base64: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&value) {
            request.headers_mut().insert(AUTHORIZATION, v);
        }
    }

    /// An account SAS token signed with this key.
    pub fn account_sas(&self, sas: &AccountSas) -> SasToken {
        let start = sas.start_unix.map(format_iso8601).unwrap_or_default();
        let expiry = format_iso8601(sas.expiry_unix);
        let protocol = sas.protocol.as_deref().unwrap_or("");
        let ip = sas.ip.as_deref().unwrap_or("");
        let to_sign = format!(
            "{}\n{}\n{}\n{}\n{start}\n{expiry}\n{ip}\n{protocol}\n{}\n\n",
            self.account, sas.permissions, sas.services, sas.resource_types, sas.version
        );
        let sig = self.sign(&to_sign);
        let mut q = vec![
            ("sv", sas.version.as_str()),
            ("ss", sas.services.as_str()),
            ("srt", sas.resource_types.as_str()),
            ("sp", sas.permissions.as_str()),
            ("se", expiry.as_str()),
        ];
        if !start.is_empty() {
            q.push(("st", &start));
        }
        if !protocol.is_empty() {
            q.push(("spr", protocol));
        }
        if !ip.is_empty() {
            q.push(("sip", ip));
        }
        q.push(("sig", &sig));
        SasToken::from_pairs(&q)
    }

    /// A service SAS token for one container (`sr=c`) signed with this
    /// key.
    pub fn container_sas(&self, container: &str, sas: &ContainerSas) -> SasToken {
        let start = sas.start_unix.map(format_iso8601).unwrap_or_default();
        let expiry = format_iso8601(sas.expiry_unix);
        let protocol = sas.protocol.as_deref().unwrap_or("");
        let ip = sas.ip.as_deref().unwrap_or("");
        // sp, st, se, canonicalized resource, si, sip, spr, sv, sr,
        // snapshot time, encryption scope, rscc, rscd, rsce, rscl, rsct.
        let to_sign = format!(
            "{}\n{start}\n{expiry}\n/blob/{}/{container}\n\n{ip}\n{protocol}\n{}\nc\n\n\n\n\n\n\n",
            sas.permissions, self.account, sas.version
        );
        let sig = self.sign(&to_sign);
        let mut q = vec![
            ("sv", sas.version.as_str()),
            ("sr", "c"),
            ("sp", sas.permissions.as_str()),
            ("se", expiry.as_str()),
        ];
        if !start.is_empty() {
            q.push(("st", &start));
        }
        if !protocol.is_empty() {
            q.push(("spr", protocol));
        }
        if !ip.is_empty() {
            q.push(("sip", ip));
        }
        q.push(("sig", &sig));
        SasToken::from_pairs(&q)
    }
}

/// The parameters of an account SAS (signed version 2020-12-06 or later).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountSas {
    /// `sv`. Default `2021-12-02`.
    pub version: String,
    /// `ss`: services. Default `b` (blob).
    pub services: String,
    /// `srt`: resource types. Default `sco`.
    pub resource_types: String,
    /// `sp`: permissions, in the order `rwdlacup...`. A checkpoint store
    /// needs `rwlac`.
    pub permissions: String,
    /// `st`, Unix seconds.
    pub start_unix: Option<i64>,
    /// `se`, Unix seconds.
    pub expiry_unix: i64,
    /// `spr`: `https` or `https,http`.
    pub protocol: Option<String>,
    /// `sip`: an address or range.
    pub ip: Option<String>,
}

impl AccountSas {
    /// Blob service, all resource types, `permissions`, valid until
    /// `expiry_unix`.
    pub fn new(permissions: impl Into<String>, expiry_unix: i64) -> Self {
        AccountSas {
            version: super::DEFAULT_VERSION.to_owned(),
            services: "b".into(),
            resource_types: "sco".into(),
            permissions: permissions.into(),
            start_unix: None,
            expiry_unix,
            protocol: None,
            ip: None,
        }
    }
}

/// The parameters of a service SAS for a container (signed version
/// 2020-12-06 or later, no stored access policy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerSas {
    /// `sv`. Default `2021-12-02`.
    pub version: String,
    /// `sp`: permissions, in the order `racwdl...`. A checkpoint store
    /// needs `racwl`.
    pub permissions: String,
    /// `st`, Unix seconds.
    pub start_unix: Option<i64>,
    /// `se`, Unix seconds.
    pub expiry_unix: i64,
    /// `spr`: `https` or `https,http`.
    pub protocol: Option<String>,
    /// `sip`: an address or range.
    pub ip: Option<String>,
}

impl ContainerSas {
    /// `permissions` on the container, valid until `expiry_unix`.
    pub fn new(permissions: impl Into<String>, expiry_unix: i64) -> Self {
        ContainerSas {
            version: super::DEFAULT_VERSION.to_owned(),
            permissions: permissions.into(),
            start_unix: None,
            expiry_unix,
            protocol: None,
            ip: None,
        }
    }
}

/// A shared access signature: the query parameters (`sv=…&sig=…`) that
/// authorize a request in place of a key. `Debug` hides `sig`.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    query: String,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("sig") => format!("{k}={REDACTED}"),
                _ => p.to_owned(),
            })
            .collect();
        f.debug_tuple("SasToken").field(&shown.join("&")).finish()
    }
}

impl SasToken {
    /// A token as the portal or `az` prints it, with or without the
    /// leading `?`. It must carry a `sig` parameter.
    pub fn parse(token: &str) -> Result<Self, StorageError> {
        let query = token.trim().trim_start_matches('?');
        if query.is_empty() {
            return Err(StorageError::InvalidSas {
                reason: "it is empty",
            });
        }
        if query.bytes().any(|b| !b.is_ascii_graphic() || b == b'#') {
            return Err(StorageError::InvalidSas {
                reason: "it has characters a URL query cannot carry",
            });
        }
        let has_sig = query.split('&').any(|p| {
            p.split_once('=')
                .is_some_and(|(k, v)| k.eq_ignore_ascii_case("sig") && !v.is_empty())
        });
        if !has_sig {
            return Err(StorageError::InvalidSas {
                reason: "it has no sig parameter",
            });
        }
        if query.split('&').any(|p| percent_decode(p).is_none()) {
            return Err(StorageError::InvalidSas {
                reason: "bad percent-encoding",
            });
        }
        Ok(SasToken {
            query: query.to_owned(),
        })
    }

    fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode_query(v)))
            .collect::<Vec<_>>()
            .join("&");
        SasToken { query }
    }

    /// The query string, without `?`. It is a secret.
    pub fn as_query(&self) -> &str {
        &self.query
    }
}

/// The Shared Key string-to-sign of `request` for `account`:
///
/// ```text
/// VERB \n Content-Encoding \n Content-Language \n Content-Length \n
/// Content-MD5 \n Content-Type \n Date \n If-Modified-Since \n If-Match \n
/// If-None-Match \n If-Unmodified-Since \n Range \n
/// CanonicalizedHeaders CanonicalizedResource
/// ```
///
/// Absent headers and a zero `Content-Length` are empty lines;
/// CanonicalizedHeaders are the `x-ms-*` headers, lowercased, sorted,
/// `name:value\n`; CanonicalizedResource is `/account` + the path as sent
/// (so path-style URLs name the account twice), then each query
/// parameter, lowercased and sorted, as `\nname:decoded value` (repeated
/// names' values sorted and comma-joined).
pub fn string_to_sign(request: &Request<Bytes>, account: &str) -> String {
    let headers = request.headers();
    let header = |name: &str| -> String {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut length = header("content-length");
    if length.is_empty() && !request.body().is_empty() {
        length = request.body().len().to_string();
    }
    if length == "0" {
        length.clear();
    }
    let mut s = String::with_capacity(256);
    s.push_str(request.method().as_str());
    s.push('\n');
    for value in [
        header("content-encoding"),
        header("content-language"),
        length,
        header("content-md5"),
        header("content-type"),
        header("date"),
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    ] {
        s.push_str(&value);
        s.push('\n');
    }
    let mut ms: Vec<(&str, Vec<String>)> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str();
        if n.starts_with("x-ms-") {
            let values = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
                .collect();
            ms.push((n, values));
        }
    }
    ms.sort_by(|a, b| a.0.cmp(b.0));
    for (name, values) in ms {
        s.push_str(name);
        s.push(':');
        s.push_str(&values.join(","));
        s.push('\n');
    }
    s.push('/');
    s.push_str(account);
    s.push_str(request.uri().path());
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for pair in request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)
            .unwrap_or_else(|| k.to_owned())
            .to_ascii_lowercase();
        let v = percent_decode(v).unwrap_or_else(|| v.to_owned());
        match params.iter_mut().find(|(name, _)| *name == k) {
            Some((_, values)) => values.push(v),
            None => params.push((k, vec![v])),
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut values) in params {
        values.sort();
        s.push('\n');
        s.push_str(&name);
        s.push(':');
        s.push_str(&values.join(","));
    }
    s
}
