//! Management requests as data: the namespace's URL, one request per
//! operation, and their authorization (a SAS signed over the full URL, or
//! an Entra ID token as `Bearer`).

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use http::{Method, Request, Uri};

use super::entity::{ConsumerGroupDescription, HubDescription};
use super::error::ManagementError;
use super::xml::{write_consumer_group_description_entry, write_hub_description_entry};
use crate::eventhubs::sas::{SyncTokenProvider, Token, TokenType};
use crate::eventhubs::ConnectionString;

/// The `api-version` every request carries (azure-event-hubs-go's; the
/// REST docs show `2014-01`, which the service also accepts).
pub const API_VERSION: &str = "2017-04";

/// `Content-Type` of request bodies and entry replies.
pub const ATOM_ENTRY_CONTENT_TYPE: &str = "application/atom+xml;type=entry;charset=utf-8";

/// `Content-Type` of feed replies.
pub const ATOM_FEED_CONTENT_TYPE: &str = "application/atom+xml;type=feed;charset=utf-8";

/// The path listing every event hub of a namespace.
pub const LIST_HUBS_PATH: &str = "$Resources/EventHubs";

/// The port of the emulator's HTTP endpoint (Microsoft's emulator serves
/// its health check there; this project's emulator also management).
pub const EMULATOR_MANAGEMENT_PORT: u16 = 5300;

/// Create only, or update an existing entity: the REST docs' `If-Match: *`
/// (Update Event Hub). Without it, a PUT of an existing entity is a
/// conflict (409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PutMode {
    /// Create; fails with 409 when the entity exists.
    Create,
    /// Update an existing entity (`If-Match: *`): properties not given are
    /// reset to the service's defaults.
    Update,
}

/// Percent-encodes a path segment: everything but letters, digits and
/// `-._~$` (so `$Default` and `$Resources` stay as written).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'$') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn entity_name<'a>(what: &'static str, name: &'a str) -> Result<&'a str, ManagementError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ManagementError::InvalidName {
            entity: what,
            name: name.to_owned(),
            reason: "it is empty or holds control characters",
        });
    }
    Ok(name)
}

/// Where a namespace's management API answers: `https://<namespace host>`
/// on the service, `http://<host>:5300` on an emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementEndpoint {
    /// `scheme://authority`, no trailing slash.
    base: String,
}

impl ManagementEndpoint {
    /// An endpoint URL given as is (`https://ns.servicebus.windows.net/`,
    /// `http://127.0.0.1:5300`): scheme `http` or `https`, a host, no
    /// path, query or user information.
    pub fn parse(url: &str) -> Result<Self, ManagementError> {
        let invalid = |reason: &'static str| ManagementError::InvalidEndpoint {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.trim().parse().map_err(|_| invalid("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            Some(_) => return Err(invalid("the scheme must be http or https")),
            None => return Err(invalid("it has no scheme (https://)")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information is not allowed"));
        }
        if authority.host().is_empty() {
            return Err(invalid("it has no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("it has a path or query; give scheme://host[:port]"));
        }
        Ok(ManagementEndpoint {
            base: format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()),
        })
    }

    /// `https://<fqdn>` for a namespace host such as
    /// `myns.servicebus.windows.net`.
    pub fn for_namespace_host(fqdn: &str) -> Result<Self, ManagementError> {
        Self::parse(&format!("https://{fqdn}"))
    }

    /// The endpoint of a connection string's namespace: `https://<host>`,
    /// or for `UseDevelopmentEmulator=true` `http://<host>:5300`
    /// ([`EMULATOR_MANAGEMENT_PORT`]).
    pub fn from_connection_string(cs: &ConnectionString) -> Result<Self, ManagementError> {
        let host = &cs.fully_qualified_namespace;
        if cs.use_development_emulator {
            Self::parse(&format!("http://{host}:{EMULATOR_MANAGEMENT_PORT}"))
        } else {
            Self::for_namespace_host(host)
        }
    }

    /// `scheme://authority`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (segments already encoded) with the API version.
    fn url(&self, path: &str) -> String {
        format!("{}/{path}?api-version={API_VERSION}", self.base)
    }

    fn hub_path(name: &str) -> Result<String, ManagementError> {
        Ok(encode_segment(entity_name("event hub", name)?))
    }

    fn group_path(hub: &str, group: &str) -> Result<String, ManagementError> {
        Ok(format!(
            "{}/consumergroups/{}",
            Self::hub_path(hub)?,
            encode_segment(entity_name("consumer group", group)?)
        ))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        mode: Option<PutMode>,
    ) -> Result<Request<Bytes>, ManagementError> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(self.url(path));
        if method != Method::GET && method != Method::HEAD {
            builder = builder.header(CONTENT_TYPE, ATOM_ENTRY_CONTENT_TYPE);
        }
        if mode == Some(PutMode::Update) {
            builder = builder.header(IF_MATCH, "*");
        }
        builder
            .body(body)
            .map_err(|e| ManagementError::InvalidRequest {
                reason: e.to_string(),
            })
    }

    /// `PUT /<hub>` with `description` (Create Event Hub, or Update Event
    /// Hub with [`PutMode::Update`]).
    pub fn put_hub(
        &self,
        name: &str,
        description: &HubDescription,
        mode: PutMode,
    ) -> Result<Request<Bytes>, ManagementError> {
        let body = Bytes::from(write_hub_description_entry(description));
        self.request(Method::PUT, &Self::hub_path(name)?, body, Some(mode))
    }

    /// `GET /<hub>` (Get Event Hub).
    pub fn get_hub(&self, name: &str) -> Result<Request<Bytes>, ManagementError> {
        self.request(Method::GET, &Self::hub_path(name)?, Bytes::new(), None)
    }

    /// `GET /$Resources/EventHubs` (List Event Hubs).
    pub fn list_hubs(&self) -> Result<Request<Bytes>, ManagementError> {
        self.request(Method::GET, LIST_HUBS_PATH, Bytes::new(), None)
    }

    /// `DELETE /<hub>` (Delete Event Hub).
    pub fn delete_hub(&self, name: &str) -> Result<Request<Bytes>, ManagementError> {
        self.request(Method::DELETE, &Self::hub_path(name)?, Bytes::new(), None)
    }

    /// `PUT /<hub>/consumergroups/<group>` (Create Consumer Group, or an
    /// update with [`PutMode::Update`]).
    pub fn put_consumer_group(
        &self,
        hub: &str,
        group: &str,
        description: &ConsumerGroupDescription,
        mode: PutMode,
    ) -> Result<Request<Bytes>, ManagementError> {
        let body = Bytes::from(write_consumer_group_description_entry(description));
        self.request(
            Method::PUT,
            &Self::group_path(hub, group)?,
            body,
            Some(mode),
        )
    }

    /// `GET /<hub>/consumergroups/<group>` (Get Consumer Group).
    pub fn get_consumer_group(
        &self,
        hub: &str,
        group: &str,
    ) -> Result<Request<Bytes>, ManagementError> {
        self.request(
            Method::GET,
            &Self::group_path(hub, group)?,
            Bytes::new(),
            None,
        )
    }

    /// `GET /<hub>/consumergroups` (List Consumer Groups).
    pub fn list_consumer_groups(&self, hub: &str) -> Result<Request<Bytes>, ManagementError> {
        let path = format!("{}/consumergroups", Self::hub_path(hub)?);
        self.request(Method::GET, &path, Bytes::new(), None)
    }

    /// `DELETE /<hub>/consumergroups/<group>` (Delete Consumer Group).
    pub fn delete_consumer_group(
        &self,
        hub: &str,
        group: &str,
    ) -> Result<Request<Bytes>, ManagementError> {
        self.request(
            Method::DELETE,
            &Self::group_path(hub, group)?,
            Bytes::new(),
            None,
        )
    }

    /// Any request (azure-event-hubs-go's `Execute`): `method` on `path`
    /// (relative to the namespace, already percent-encoded where needed,
    /// with its own query or none; `api-version` is added unless the query
    /// has one), with `body` and the Atom entry content type unless
    /// `method` is GET or HEAD.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Request<Bytes>, ManagementError> {
        let path = path.trim_start_matches('/');
        let (path_only, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let url = match query {
            Some(q) if q.split('&').any(|kv| kv.starts_with("api-version=")) => {
                format!("{}/{path_only}?{q}", self.base)
            }
            Some(q) => format!("{}/{path_only}?{q}&api-version={API_VERSION}", self.base),
            None => self.url(path_only),
        };
        let uri: Uri = url.parse().map_err(|_| ManagementError::InvalidRequest {
            reason: format!("{path:?} is not a valid request path"),
        })?;
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        if method != Method::GET && method != Method::HEAD {
            builder = builder.header(CONTENT_TYPE, ATOM_ENTRY_CONTENT_TYPE);
        }
        builder
            .body(body)
            .map_err(|e| ManagementError::InvalidRequest {
                reason: e.to_string(),
            })
    }
}

/// The audience a management request's SAS token is signed for: the full
/// request URL, query included (`https://ns.servicebus.windows.net/hub1?api-version=2017-04`).
pub fn sas_audience(request: &Request<Bytes>) -> String {
    request.uri().to_string()
}

/// Sets `Authorization` from `token`: a shared access signature as is, an
/// Entra ID token as `Bearer <token>` (the REST docs' form; Go sends the
/// bare token, which the emulator also accepts).
pub fn authorize(request: &mut Request<Bytes>, token: &Token) -> Result<(), ManagementError> {
    let value = match token.token_type {
        TokenType::SasToken => token.token.clone(),
        TokenType::Jwt if token.token.starts_with("Bearer ") => token.token.clone(),
        TokenType::Jwt => format!("Bearer {}", token.token),
    };
    let value = HeaderValue::from_str(&value).map_err(|_| ManagementError::InvalidToken)?;
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

/// Signs `request` with a token from `provider` for its full URL
/// ([`sas_audience`]) at `now_unix`, and sets `Authorization`.
pub fn sign(
    request: &mut Request<Bytes>,
    provider: &mut dyn SyncTokenProvider,
    now_unix: u64,
) -> Result<(), ManagementError> {
    let token = provider
        .token(&sas_audience(request), now_unix)
        .map_err(ManagementError::Token)?;
    authorize(request, &token)
}
