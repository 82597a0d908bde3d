//! Microsoft Entra ID credentials: tokens fetched over HTTPS with
//! [`HttpClient`] from the requests the core builds
//! ([`eventhubs_proto::identity`]), cached per scope, and handed to CBS as
//! `jwt` tokens through [`TokenProvider`](crate::TokenProvider).
//!
//! - [`ClientSecretCredential`]: a service principal and its secret.
//! - [`ClientCertificateCredential`]: a service principal and its
//!   certificate (PEM or PFX), as an RS256 client assertion signed here
//!   with ring.
//! - [`ManagedIdentityCredential`]: IMDS on VMs, the App Service / Functions
//!   endpoint; system- or user-assigned; the endpoints' retry rules and a
//!   1 s first probe when no endpoint is there.
//! - [`WorkloadIdentityCredential`]: a federated token file (AKS), re-read
//!   when it changes.
//! - [`DefaultAzureCredential`] and [`EnvironmentCredential`]: the
//!   credentials the `AZURE_*` variables describe, tried in the Go
//!   library's order (client secret, certificate, then managed identity,
//!   with workload identity before managed identity as today's SDKs do).
//!
//! Every credential implements [`TokenCredential`] (a token for a scope)
//! and [`TokenProvider`](crate::TokenProvider) (the Event Hubs scope for a
//! CBS audience; an `https://` scope, as the Blob Storage client asks, as
//! it is). A cached token is handed out while [`AccessToken::is_fresh`];
//! the client core asks again before expiry, and gets a fresh one. `Debug` never
//! shows a secret, an assertion or a token, and neither do errors or logs.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::eventhubs::sas::{Token, TokenType};
use eventhubs_proto::identity::request::TokenHttpRequest;
use eventhubs_proto::identity::retry::{parse_retry_after, TOKEN_REQUEST_TIMEOUT};
use eventhubs_proto::identity::{parse_token_response, AttemptOutcome};
use futures_util::future::{select, Either};
use futures_util::lock::Mutex as AsyncMutex;
use tracing::debug;

/// The Entra ID types in this module's signatures (certificates, clouds,
/// endpoints, retry rules, client assertions, environment errors), from
/// the client core.
pub use eventhubs_proto::identity::{
    certificate::CertificateError,
    cloud::Cloud,
    env::EnvVarError,
    error::TokenEndpoint,
    jwt::{AssertionOptions, ThumbprintHeader},
    retry::RetryRules,
};
pub use eventhubs_proto::identity::{
    AccessToken, ClientCertificate, CredentialError, ManagedIdentityId, ManagedIdentitySource,
    Secret,
};

use crate::credentials::unix_now;
use crate::http::{HttpClient, HttpOptions};
use crate::runtime::{BoxFuture, Runtime};

mod chain;
mod client;
mod managed;

pub use chain::{
    ChainError, ChainedTokenCredential, DefaultAzureCredential, EnvironmentCredential,
};
pub use client::{ClientCertificateCredential, ClientSecretCredential, WorkloadIdentityCredential};
pub use managed::ManagedIdentityCredential;

/// A source of Entra ID access tokens (azure-identity's `TokenCredential`).
pub trait TokenCredential: Send + Sync {
    /// A token for `scope` (e.g. `https://eventhubs.azure.net/.default`).
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>>;
}

impl<C: TokenCredential + ?Sized> TokenCredential for std::sync::Arc<C> {
    fn get_token(&self, scope: &str) -> BoxFuture<Result<AccessToken, CredentialError>> {
        (**self).get_token(scope)
    }
}

/// What every credential is built with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CredentialOptions {
    /// The cloud: authority host and the Event Hubs resource.
    pub cloud: Cloud,
    /// The scope [`TokenProvider::token`](crate::TokenProvider::token) asks for; the cloud's Event Hubs
    /// scope unless set.
    pub scope: Option<String>,
    /// HTTP settings (TLS trust, time-outs); requests time out after 30 s.
    pub http: HttpOptions,
    /// Unix seconds now (the wall clock unless replaced, for tests).
    pub clock: fn() -> u64,
}

impl Default for CredentialOptions {
    fn default() -> Self {
        CredentialOptions {
            cloud: Cloud::default(),
            scope: None,
            http: HttpOptions::default().with_request_timeout(TOKEN_REQUEST_TIMEOUT),
            clock: unix_now,
        }
    }
}

impl CredentialOptions {
    /// With another cloud.
    pub fn with_cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = cloud;
        self
    }

    /// With another authority host (`https://`, or `http://` on loopback).
    pub fn with_authority_host(mut self, host: &str) -> Result<Self, CredentialError> {
        self.cloud = self.cloud.with_authority_host(host)?;
        Ok(self)
    }

    /// With another default scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// With other HTTP settings.
    pub fn with_http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Reading Unix seconds from `clock`.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    fn scope(&self) -> String {
        self.scope
            .clone()
            .unwrap_or_else(|| self.cloud.eventhubs_scope())
    }
}

/// What each credential shares: its HTTP client, runtime, scope and cache.
pub(crate) struct Common<R: Runtime> {
    pub(crate) runtime: R,
    pub(crate) http: HttpClient<R>,
    pub(crate) scope: String,
    pub(crate) clock: fn() -> u64,
    cache: AsyncMutex<HashMap<String, AccessToken>>,
}

impl<R: Runtime> fmt::Debug for Common<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Common")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Common<R> {
    pub(crate) fn new(options: &CredentialOptions) -> Result<Self, CredentialError> {
        let runtime = R::default();
        let http = HttpClient::with_options(runtime.clone(), options.http.clone())
            .map_err(|e| CredentialError::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Common {
            runtime,
            http,
            scope: options.scope(),
            clock: options.clock,
            cache: AsyncMutex::new(HashMap::new()),
        })
    }

    /// The same HTTP client, runtime, scope and clock, with an empty cache.
    pub(crate) fn share(&self) -> Self {
        Common {
            runtime: self.runtime.clone(),
            http: self.http.clone(),
            scope: self.scope.clone(),
            clock: self.clock,
            cache: AsyncMutex::new(HashMap::new()),
        }
    }

    /// The cached token for `scope` while fresh, else `fetch`'s (one fetch
    /// at a time: concurrent callers wait for it and share it).
    pub(crate) async fn cached<F, Fut>(
        &self,
        scope: &str,
        fetch: F,
    ) -> Result<AccessToken, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, CredentialError>>,
    {
        let mut cache = self.cache.lock().await;
        let now = (self.clock)();
        if let Some(t) = cache.get(scope).filter(|t| t.is_fresh(now)) {
            return Ok(t.clone());
        }
        let token = fetch().await?;
        debug!(scope, expires_on = token.expires_on, "token acquired");
        cache.insert(scope.to_owned(), token.clone());
        Ok(token)
    }

    /// Sends `request`, retrying by `rules`; the first attempt waits at most
    /// `first_timeout` when given (a probe), and `on_no_answer` turns a
    /// first attempt without an answer into the caller's error. Errors are
    /// scrubbed of `secret` before they are logged or returned.
    pub(crate) async fn fetch(
        &self,
        request: &TokenHttpRequest,
        rules: RetryRules,
        first_timeout: Option<Duration>,
        on_no_answer: Option<&(dyn Fn(String) -> CredentialError + Sync)>,
        secret: &str,
    ) -> Result<AccessToken, CredentialError> {
        let endpoint = request.endpoint();
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let send = self.http.send(to_http(request)?);
            let result = match (attempts, first_timeout) {
                (1, Some(t)) => match within(&self.runtime, t, send).await {
                    Some(r) => r.map_err(|e| e.to_string()),
                    None => Err(format!("no answer within {t:?}")),
                },
                _ => send.await.map_err(|e| e.to_string()),
            };
            let (outcome, error) = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    match parse_token_response(endpoint, status, response.body(), (self.clock)()) {
                        Ok(token) => return Ok(token),
                        Err(e) => (
                            AttemptOutcome::Status {
                                status,
                                retry_after,
                            },
                            e.scrub(secret),
                        ),
                    }
                }
                Err(reason) => {
                    if attempts == 1 {
                        if let Some(f) = on_no_answer {
                            return Err(f(reason));
                        }
                    }
                    (
                        AttemptOutcome::NoResponse,
                        CredentialError::Transport { endpoint, reason },
                    )
                }
            };
            match rules.next_delay(attempts, outcome, started.elapsed()) {
                Some(delay) => {
                    debug!(endpoint = endpoint.name(), attempts, ?delay, error = %error, "token request failed; retrying");
                    self.runtime.sleep(delay).await;
                }
                None => return Err(error),
            }
        }
    }
}

/// The core's request as an `http` request.
fn to_http(request: &TokenHttpRequest) -> Result<http::Request<Bytes>, CredentialError> {
    let mut b = http::Request::builder()
        .method(request.method().as_str())
        .uri(request.url());
    for (name, value) in request.headers() {
        b = b.header(*name, value.as_str());
    }
    b.body(Bytes::copy_from_slice(request.body()))
        .map_err(|e| CredentialError::Config(format!("cannot build the token request: {e}")))
}

/// `future`'s output, or `None` after `after`.
async fn within<R: Runtime, F: Future>(
    runtime: &R,
    after: Duration,
    future: F,
) -> Option<F::Output> {
    let future = pin!(future);
    match select(future, runtime.sleep(after)).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// A token for CBS.
pub(crate) fn cbs_token(t: AccessToken) -> Token {
    Token {
        expires_at_unix: t.expires_on,
        token: t.into_secret(),
        token_type: TokenType::Jwt,
    }
}

/// The scope to ask for when a [`TokenProvider`](crate::TokenProvider) is
/// asked for `audience`: a CBS audience (`amqps://…`, `sb://…`) means the
/// credential's scope (Event Hubs); an `https://` resource or `…/.default`
/// scope (as the Blob Storage client asks for) is used as it is.
pub(crate) fn scope_for(audience: &str, default_scope: String) -> String {
    if audience.starts_with("https://") {
        eventhubs_proto::identity::request::resource_to_scope(audience)
    } else {
        default_scope
    }
}

/// `TokenProvider` for a credential: its scope for every CBS audience.
macro_rules! token_provider_via_scope {
    ($($t:ident),*) => {$(
        impl<R: $crate::runtime::Runtime> $crate::credentials::TokenProvider for $t<R> {
            fn token(&self, audience: &str) -> $crate::credentials::TokenFuture {
                let scope = $crate::identity::scope_for(audience, self.default_scope());
                let fut = $crate::identity::TokenCredential::get_token(self, &scope);
                Box::pin(async move {
                    fut.await
                        .map($crate::identity::cbs_token)
                        .map_err(eventhubs_proto::eventhubs::sas::TokenError::from)
                })
            }
        }
    )*};
}
pub(crate) use token_provider_via_scope;
