//! Blob service requests as data: addressing (path-style and virtual-host
//! URLs), the operations a checkpoint store needs, and authorization.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{Method, Request, Uri};

use super::error::StorageError;
use super::shared_key::{SasToken, SharedKeyCredential};
use crate::http::date::{format_http_date, parse_http_date};

/// Percent-encodes everything but the unreserved characters (RFC 3986
/// 2.3) and, when `keep_slash`, `/`.
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A blob name as a request path: each segment percent-encoded, `/` kept
/// (`127.0.0.1:5672/eh1/$default` → `127.0.0.1%3A5672/eh1/%24default`).
pub fn percent_encode_path(s: &str) -> String {
    percent_encode(s, true)
}

/// A query value, fully percent-encoded (`/` → `%2F`).
pub fn percent_encode_query(s: &str) -> String {
    percent_encode(s, false)
}

/// Decodes `%XX` escapes (and `+` is kept as is). `None` for a broken
/// escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The REST API version sent as `x-ms-version`: accepted by the service
/// and by Azurite since 3.22, and enough for everything here.
pub const DEFAULT_VERSION: &str = "2021-12-02";

/// Where the Blob service of an account answers: `scheme://authority`
/// and a path prefix, which is the account name for path-style URLs
/// (`http://127.0.0.1:10000/devstoreaccount1`, Azurite and IP endpoints)
/// and empty for virtual-host URLs
/// (`https://account.blob.core.windows.net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEndpoint {
    scheme: String,
    authority: String,
    prefix: String,
}

impl BlobEndpoint {
    /// An endpoint URL as a connection string's `BlobEndpoint` gives it,
    /// used as written (path-style when it has a path).
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidEndpoint {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.trim().parse().map_err(|_| invalid("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
                s.to_ascii_lowercase()
            }
            Some(_) => return Err(invalid("the scheme must be http or https")),
            None => return Err(invalid("it has no scheme (http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information is not allowed"));
        }
        if authority.host().is_empty() {
            return Err(invalid("it has no host"));
        }
        if uri.query().is_some() {
            return Err(invalid(
                "it has a query: give a SAS as SharedAccessSignature instead",
            ));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(BlobEndpoint {
            scheme,
            authority: authority.as_str().to_ascii_lowercase(),
            prefix,
        })
    }

    /// The endpoint of `account` at `url`: path-style (`url/account`) when
    /// the host is an IP address or `localhost` and the URL has no path,
    /// as storage emulators serve it; otherwise `url` as is.
    pub fn for_account(url: &str, account: &str) -> Result<Self, StorageError> {
        let mut e = Self::parse(url)?;
        if e.prefix.is_empty() && e.is_local_host() {
            e.prefix = format!("/{account}");
        }
        Ok(e)
    }

    /// `https://<account>.blob.<suffix>` (suffix e.g. `core.windows.net`).
    pub fn for_service(protocol: &str, account: &str, suffix: &str) -> Result<Self, StorageError> {
        Self::parse(&format!("{protocol}://{account}.blob.{suffix}"))
    }

    fn is_local_host(&self) -> bool {
        let host = self.host();
        host == "localhost" || is_ip_literal(host)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, without brackets for IPv6.
    pub fn host(&self) -> &str {
        let host = self
            .authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') {
                    h
                } else {
                    self.authority.as_str()
                }
            });
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// True when the account is in the path (path-style addressing).
    pub fn is_path_style(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// The URL of a container, or of a blob in it, with `query`.
    fn url(&self, container: &str, blob: Option<&str>, query: &str) -> String {
        let mut url = format!(
            "{}://{}{}/{}",
            self.scheme, self.authority, self.prefix, container
        );
        if let Some(blob) = blob {
            url.push('/');
            url.push_str(&percent_encode_path(blob));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}

impl fmt::Display for BlobEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// An IPv4 dotted quad, or an IPv6 literal (which has colons).
fn is_ip_literal(host: &str) -> bool {
    if host.contains(':') {
        return host
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// The access condition of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Unconditional.
    None,
    /// `If-None-Match: *`: only if the blob does not exist.
    IfNoneMatchAny,
    /// `If-Match: "<etag>"`: only if the blob is still at this version
    /// (quoted or not, as listed or as a header gave it).
    IfMatch(String),
}

/// The options of one List Blobs call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListBlobs {
    /// Only blobs whose names start with this.
    pub prefix: Option<String>,
    /// Where to continue: the previous page's `NextMarker`.
    pub marker: Option<String>,
    /// At most this many blobs (the service caps a page at 5,000).
    pub max_results: Option<u32>,
    /// Whether to include metadata (`include=metadata`).
    pub include_metadata: bool,
}

impl ListBlobs {
    /// Blobs under `prefix`, with their metadata.
    pub fn with_metadata(prefix: impl Into<String>) -> Self {
        ListBlobs {
            prefix: Some(prefix.into()),
            include_metadata: true,
            ..ListBlobs::default()
        }
    }

    /// These options, continuing at `marker`.
    pub fn at(mut self, marker: Option<String>) -> Self {
        self.marker = marker;
        self
    }

    /// These options with pages of at most `n` blobs.
    pub fn max_results(mut self, n: u32) -> Self {
        self.max_results = Some(n);
        self
    }
}

/// Checks a container name against the Blob service's naming rules.
pub fn check_container_name(name: &str) -> Result<(), StorageError> {
    let bad = |reason| StorageError::InvalidContainerName {
        name: name.to_owned(),
        reason,
    };
    if name == "$root" || name == "$logs" || name == "$web" {
        return Ok(());
    }
    if name.len() < 3 || name.len() > 63 {
        return Err(bad("it must be 3 to 63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad(
            "only lowercase letters, digits and hyphens are allowed",
        ));
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err(bad(
            "hyphens must stand between letters or digits, one at a time",
        ));
    }
    Ok(())
}

/// Checks a blob name: 1 to 1,024 characters.
pub fn check_blob_name(name: &str) -> Result<(), StorageError> {
    let bad = |reason| StorageError::InvalidBlobName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.chars().count() > 1024 {
        return Err(bad("it is longer than 1,024 characters"));
    }
    Ok(())
}

/// Builds the Blob service requests of one account. The requests carry
/// `x-ms-version` but no date or credential: [`authorize`] adds those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobService {
    endpoint: BlobEndpoint,
    version: String,
}

impl BlobService {
    /// Requests to `endpoint`, with the default `x-ms-version`.
    pub fn new(endpoint: BlobEndpoint) -> Self {
        BlobService {
            endpoint,
            version: DEFAULT_VERSION.to_owned(),
        }
    }

    /// Sends another `x-ms-version`.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &BlobEndpoint {
        &self.endpoint
    }

    /// The `x-ms-version` sent.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn request(
        &self,
        method: Method,
        url: String,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Request<Bytes>, StorageError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header("x-ms-version", &self.version);
        for (n, v) in headers {
            builder = builder.header(n, v);
        }
        builder
            .body(Bytes::new())
            .map_err(|e| StorageError::InvalidEndpoint {
                url,
                reason: e.to_string(),
            })
    }

    /// Create Container: `PUT /<container>?restype=container` (201; 409
    /// `ContainerAlreadyExists`).
    pub fn create_container(&self, container: &str) -> Result<Request<Bytes>, StorageError> {
        check_container_name(container)?;
        let url = self.endpoint.url(container, None, "restype=container");
        self.request(Method::PUT, url, &[])
    }

    /// List Blobs: `GET /<container>?restype=container&comp=list&…` (200
    /// with an `EnumerationResults` page).
    pub fn list_blobs(
        &self,
        container: &str,
        options: &ListBlobs,
    ) -> Result<Request<Bytes>, StorageError> {
        check_container_name(container)?;
        let mut query = String::from("restype=container&comp=list");
        if let Some(p) = &options.prefix {
            query.push_str("&prefix=");
            query.push_str(&percent_encode_query(p));
        }
        if options.include_metadata {
            query.push_str("&include=metadata");
        }
        if let Some(m) = options.marker.as_deref().filter(|m| !m.is_empty()) {
            query.push_str("&marker=");
            query.push_str(&percent_encode_query(m));
        }
        if let Some(n) = options.max_results {
            query.push_str(&format!("&maxresults={n}"));
        }
        let url = self.endpoint.url(container, None, &query);
        self.request(Method::GET, url, &[])
    }

    /// Put Blob of an empty block blob with `metadata`, under `condition`
    /// (`If-None-Match: *` to create only: 201, or 409
    /// `BlobAlreadyExists`).
    pub fn put_empty_blob(
        &self,
        container: &str,
        blob: &str,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<Request<Bytes>, StorageError> {
        check_container_name(container)?;
        check_blob_name(blob)?;
        let mut headers = vec![(
            HeaderName::from_static("x-ms-blob-type"),
            HeaderValue::from_static("BlockBlob"),
        )];
        push_metadata(&mut headers, metadata)?;
        push_condition(&mut headers, condition)?;
        let url = self.endpoint.url(container, Some(blob), "");
        self.request(Method::PUT, url, &headers)
    }

    /// Set Blob Metadata: `PUT /<container>/<blob>?comp=metadata`, which
    /// replaces all of the blob's metadata (200; 412 `ConditionNotMet`
    /// for a stale `If-Match`; 404 `BlobNotFound`).
    pub fn set_metadata(
        &self,
        container: &str,
        blob: &str,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<Request<Bytes>, StorageError> {
        check_container_name(container)?;
        check_blob_name(blob)?;
        let mut headers = Vec::new();
        push_metadata(&mut headers, metadata)?;
        push_condition(&mut headers, condition)?;
        let url = self.endpoint.url(container, Some(blob), "comp=metadata");
        self.request(Method::PUT, url, &headers)
    }

    /// Get Blob Properties: `HEAD /<container>/<blob>` (200 with
    /// `x-ms-meta-*`, `ETag`, `Last-Modified`; 404 without a body).
    pub fn get_properties(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<Request<Bytes>, StorageError> {
        check_container_name(container)?;
        check_blob_name(blob)?;
        let url = self.endpoint.url(container, Some(blob), "");
        self.request(Method::HEAD, url, &[])
    }
}

fn push_metadata(
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    metadata: &[(&str, &str)],
) -> Result<(), StorageError> {
    for (name, value) in metadata {
        let bad = |reason| StorageError::InvalidMetadata {
            name: (*name).to_owned(),
            reason,
        };
        let first = name
            .bytes()
            .next()
            .ok_or_else(|| bad("the name is empty"))?;
        let identifier = (first.is_ascii_alphabetic() || first == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !identifier {
            return Err(bad("names must be C# identifiers (letters, digits, _)"));
        }
        let header = HeaderName::try_from(format!("x-ms-meta-{}", name.to_ascii_lowercase()))
            .map_err(|_| bad("not a header name"))?;
        if value.bytes().any(|b| !(b == b' ' || b.is_ascii_graphic())) {
            return Err(bad("values must be printable ASCII"));
        }
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad("not a header value"))?;
        headers.push((header, value));
    }
    Ok(())
}

fn push_condition(
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    condition: &Condition,
) -> Result<(), StorageError> {
    match condition {
        Condition::None => {}
        Condition::IfNoneMatchAny => {
            headers.push((http::header::IF_NONE_MATCH, HeaderValue::from_static("*")));
        }
        Condition::IfMatch(etag) => {
            let bare = super::xml::unquote_etag(etag);
            let value = HeaderValue::from_str(&format!("\"{bare}\"")).map_err(|_| {
                StorageError::InvalidMetadata {
                    name: "If-Match".into(),
                    reason: "the ETag has characters a header cannot carry",
                }
            })?;
            headers.push((http::header::IF_MATCH, value));
        }
    }
    Ok(())
}

/// How a request is authorized.
#[derive(Debug, Clone, Copy)]
pub enum Authorization<'a> {
    /// Shared Key: the request is signed with the account key.
    SharedKey(&'a SharedKeyCredential),
    /// A SAS token: its parameters are appended to the query.
    Sas(&'a SasToken),
    /// An OAuth 2.0 access token (Entra ID): `Authorization: Bearer …`.
    Bearer(&'a str),
    /// Nothing (public containers; tests).
    Anonymous,
}

/// Dates and authorizes `request` at `unix_secs` (the caller's wall
/// clock): sets `x-ms-date`, then signs it, appends the SAS or sets the
/// bearer token.
pub fn authorize(
    request: &mut Request<Bytes>,
    auth: Authorization<'_>,
    unix_secs: i64,
) -> Result<(), StorageError> {
    let date = HeaderValue::from_str(&format_http_date(unix_secs))
        .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
    request.headers_mut().insert("x-ms-date", date);
    match auth {
        Authorization::SharedKey(key) => key.authorize(request),
        Authorization::Sas(sas) => {
            let uri = request.uri();
            let joined = match uri.query() {
                Some(q) if !q.is_empty() => format!("{}?{q}&{}", uri.path(), sas.as_query()),
                _ => format!("{}?{}", uri.path(), sas.as_query()),
            };
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = Some(joined.parse().map_err(|_| StorageError::InvalidSas {
                reason: "it does not fit in a URL query",
            })?);
            *request.uri_mut() = Uri::from_parts(parts).map_err(|_| StorageError::InvalidSas {
                reason: "it does not fit in a URL query",
            })?;
        }
        Authorization::Bearer(token) => {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| StorageError::InvalidBearerToken)?;
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        Authorization::Anonymous => {}
    }
    Ok(())
}

/// The version of a blob a write or Get Blob Properties reports: `ETag`
/// (without quotes) and `Last-Modified`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlobVersion {
    /// The ETag, unquoted.
    pub etag: Option<String>,
    /// `Last-Modified`, ms since the Unix epoch (1 s resolution).
    pub last_modified_unix_ms: Option<i64>,
}

impl BlobVersion {
    /// The version in a response's headers.
    pub fn of(response: &http::Response<Bytes>) -> Self {
        let h = response.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        BlobVersion {
            etag: text("etag").map(|e| super::xml::unquote_etag(e).to_owned()),
            last_modified_unix_ms: text("last-modified")
                .and_then(parse_http_date)
                .map(|s| s.saturating_mul(1000)),
        }
    }
}

/// What Get Blob Properties reports of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlobProperties {
    /// ETag and Last-Modified.
    pub version: BlobVersion,
    /// `Content-Length`: the blob's size.
    pub content_length: Option<u64>,
    /// The `x-ms-meta-*` headers, names lowercased (header names are
    /// case-insensitive).
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl BlobProperties {
    /// The properties in a Get Blob Properties response's headers.
    pub fn of(response: &http::Response<Bytes>) -> Self {
        let h = response.headers();
        let metadata = h
            .iter()
            .filter_map(|(name, value)| {
                let key = name.as_str().strip_prefix("x-ms-meta-")?;
                Some((
                    key.to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ))
            })
            .collect();
        BlobProperties {
            version: BlobVersion::of(response),
            content_length: h
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
            metadata,
        }
    }
}
