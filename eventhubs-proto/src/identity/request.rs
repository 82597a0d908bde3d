//! Token requests as data: method, URL, headers and body, for every flow.
//! A runtime adapter sends them over HTTP/1.1 and hands the status and body
//! to [`super::response::parse_token_response`].
//!
//! - client credentials with a secret or an assertion (RFC 6749 4.4,
//!   RFC 7521/7523) on the v2.0 endpoint:
//!   `POST <authority><tenant>/oauth2/v2.0/token`, a form body;
//! - managed identity on a VM (IMDS): `GET <imds>?api-version=2018-02-01&resource=…`
//!   with `Metadata: true`;
//! - managed identity on App Service / Functions:
//!   `GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=…` with
//!   `X-IDENTITY-HEADER`.
//!
//! `Debug` of a request shows the method, URL and header names; the body
//! (which holds the secret or the assertion) and secret header values are
//! redacted.

use std::fmt;

use crate::eventhubs::sas::{query_escape, HexCase};

use super::cloud::Cloud;
use super::error::{CredentialError, TokenEndpoint};
use super::Secret;

/// `grant_type` of the client credentials grant.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// `client_assertion_type` of a JWT assertion (RFC 7523 2.2).
pub const ASSERTION_TYPE_JWT_BEARER: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The instance metadata service's token endpoint.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// The IMDS API version (what azure-identity and MSAL send).
pub const IMDS_API_VERSION: &str = "2018-02-01";

/// The App Service identity API version.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// The form content type.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// HTTP method of a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET` (managed identity).
    Get,
    /// `POST` (Entra ID's token endpoint).
    Post,
}

impl Method {
    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One HTTP request for a token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHttpRequest {
    endpoint: TokenEndpoint,
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    secret_headers: Vec<&'static str>,
    body: Vec<u8>,
}

impl TokenHttpRequest {
    /// Who answers it.
    pub fn endpoint(&self) -> TokenEndpoint {
        self.endpoint
    }

    /// `GET` or `POST`.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The absolute URL, query included (no secrets in it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Header names and values. Values of [`Self::is_secret_header`]
    /// headers are secrets.
    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }

    /// True for headers whose value is a secret (`X-IDENTITY-HEADER`).
    pub fn is_secret_header(&self, name: &str) -> bool {
        self.secret_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// The body (empty for `GET`). A secret: it holds the client secret or
    /// the assertion.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for TokenHttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if self.is_secret_header(k) {
                    format!("{k}: <redacted>")
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect();
        f.debug_struct("TokenHttpRequest")
            .field("endpoint", &self.endpoint)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field(
                "body",
                &format_args!("<redacted {} bytes>", self.body.len()),
            )
            .finish()
    }
}

/// `application/x-www-form-urlencoded` of `pairs`, in order.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                query_escape(k, HexCase::Upper),
                query_escape(v, HexCase::Upper)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The managed identity resource for a scope: `…/.default` without the
/// suffix (`https://eventhubs.azure.net/.default` →
/// `https://eventhubs.azure.net`), a bare resource unchanged.
pub fn scope_to_resource(scope: &str) -> &str {
    scope
        .strip_suffix("/.default")
        .map(|s| s.trim_end_matches('/'))
        .unwrap_or(scope)
}

/// The `.default` scope of a resource (`https://eventhubs.azure.net` →
/// `https://eventhubs.azure.net/.default`).
pub fn resource_to_scope(resource: &str) -> String {
    if resource.ends_with("/.default") {
        resource.to_owned()
    } else {
        format!("{}/.default", resource.trim_end_matches('/'))
    }
}

/// Checks a tenant id or domain as azure-identity does
/// (`^[0-9a-zA-Z-.]+$`).
pub fn validate_tenant(tenant: &str) -> Result<(), CredentialError> {
    if !tenant.is_empty()
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        Ok(())
    } else {
        Err(CredentialError::Config(format!(
            "tenant {tenant:?} must be a tenant id or domain (letters, digits, '-' and '.')"
        )))
    }
}

/// An application (service principal) of a tenant: where its client
/// credentials requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfidentialClient {
    authority_host: String,
    tenant_id: String,
    client_id: String,
}

impl ConfidentialClient {
    /// The client `client_id` of `tenant_id`, authenticating at the
    /// cloud's authority.
    pub fn new(
        cloud: &Cloud,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Result<Self, CredentialError> {
        let tenant_id = tenant_id.into();
        let client_id = client_id.into();
        validate_tenant(&tenant_id)?;
        if client_id.trim().is_empty() {
            return Err(CredentialError::Config("the client id is empty".into()));
        }
        Ok(ConfidentialClient {
            authority_host: cloud.authority_host().to_owned(),
            tenant_id,
            client_id,
        })
    }

    /// The tenant.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The application (client) id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `<authority><tenant>/oauth2/v2.0/token`: where the request goes, and
    /// the `aud` of a client assertion.
    pub fn token_url(&self) -> String {
        format!(
            "{}{}/oauth2/v2.0/token",
            self.authority_host, self.tenant_id
        )
    }

    fn post(&self, form: String) -> TokenHttpRequest {
        TokenHttpRequest {
            endpoint: TokenEndpoint::EntraId,
            method: Method::Post,
            url: self.token_url(),
            headers: vec![
                ("Content-Type", FORM_CONTENT_TYPE.to_owned()),
                ("Accept", "application/json".to_owned()),
            ],
            secret_headers: Vec::new(),
            body: form.into_bytes(),
        }
    }

    /// The client credentials grant with a client secret.
    pub fn secret_request(&self, secret: &Secret, scope: &str) -> TokenHttpRequest {
        self.post(form_encode(&[
            ("client_id", &self.client_id),
            ("grant_type", GRANT_CLIENT_CREDENTIALS),
            ("client_secret", secret.expose()),
            ("scope", scope),
        ]))
    }

    /// The client credentials grant with a JWT client assertion: a signed
    /// certificate assertion, or a federated (workload identity) token.
    pub fn assertion_request(&self, assertion: &Secret, scope: &str) -> TokenHttpRequest {
        self.post(form_encode(&[
            ("client_id", &self.client_id),
            ("grant_type", GRANT_CLIENT_CREDENTIALS),
            ("client_assertion_type", ASSERTION_TYPE_JWT_BEARER),
            ("client_assertion", assertion.expose()),
            ("scope", scope),
        ]))
    }
}

/// Which managed identity to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ManagedIdentityId {
    /// The resource's own (system-assigned) identity.
    #[default]
    SystemAssigned,
    /// A user-assigned identity by client (application) id.
    ClientId(String),
    /// A user-assigned identity by object (principal) id.
    ObjectId(String),
    /// A user-assigned identity by Azure resource id
    /// (`/subscriptions/…/userAssignedIdentities/name`).
    ResourceId(String),
}

/// Where a managed identity's tokens come from.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManagedIdentitySource {
    /// The VM / VMSS instance metadata service, at this token URL.
    Imds {
        /// The token URL ([`IMDS_ENDPOINT`] unless overridden).
        endpoint: String,
    },
    /// App Service or Functions: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
    AppService {
        /// `IDENTITY_ENDPOINT`.
        endpoint: String,
        /// `IDENTITY_HEADER`, sent as `X-IDENTITY-HEADER`. A secret.
        header: Secret,
    },
}

impl fmt::Debug for ManagedIdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagedIdentitySource::Imds { endpoint } => {
                f.debug_struct("Imds").field("endpoint", endpoint).finish()
            }
            ManagedIdentitySource::AppService { endpoint, header } => f
                .debug_struct("AppService")
                .field("endpoint", endpoint)
                .field("header", header)
                .finish(),
        }
    }
}

impl ManagedIdentitySource {
    /// IMDS at its usual address.
    pub fn imds() -> Self {
        ManagedIdentitySource::Imds {
            endpoint: IMDS_ENDPOINT.to_owned(),
        }
    }

    /// IMDS under another host (`AZURE_POD_IDENTITY_AUTHORITY_HOST`, a
    /// test endpoint): `<host>/metadata/identity/oauth2/token`.
    pub fn imds_at_host(host: &str) -> Self {
        ManagedIdentitySource::Imds {
            endpoint: format!(
                "{}/metadata/identity/oauth2/token",
                host.trim_end_matches('/')
            ),
        }
    }

    /// Who answers.
    pub fn endpoint_kind(&self) -> TokenEndpoint {
        match self {
            ManagedIdentitySource::Imds { .. } => TokenEndpoint::Imds,
            ManagedIdentitySource::AppService { .. } => TokenEndpoint::AppService,
        }
    }

    /// The token request for `resource` (see [`scope_to_resource`]) and
    /// identity `id`.
    pub fn request(&self, resource: &str, id: &ManagedIdentityId) -> TokenHttpRequest {
        let (endpoint, api_version, resource_id_key) = match self {
            ManagedIdentitySource::Imds { endpoint } => (endpoint, IMDS_API_VERSION, "msi_res_id"),
            // App Service names the resource id `mi_res_id`.
            ManagedIdentitySource::AppService { endpoint, .. } => {
                (endpoint, APP_SERVICE_API_VERSION, "mi_res_id")
            }
        };
        let mut query: Vec<(&str, &str)> =
            vec![("api-version", api_version), ("resource", resource)];
        match id {
            ManagedIdentityId::SystemAssigned => {}
            ManagedIdentityId::ClientId(v) => query.push(("client_id", v)),
            ManagedIdentityId::ObjectId(v) => query.push(("object_id", v)),
            ManagedIdentityId::ResourceId(v) => query.push((resource_id_key, v)),
        }
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        let url = format!("{endpoint}{sep}{}", form_encode(&query));
        let (headers, secret_headers) = match self {
            ManagedIdentitySource::Imds { .. } => (vec![("Metadata", "true".to_owned())], vec![]),
            ManagedIdentitySource::AppService { header, .. } => (
                vec![("X-IDENTITY-HEADER", header.expose().to_owned())],
                vec!["X-IDENTITY-HEADER"],
            ),
        };
        TokenHttpRequest {
            endpoint: self.endpoint_kind(),
            method: Method::Get,
            url,
            headers,
            secret_headers,
            body: Vec::new(),
        }
    }
}
