//! Event hub management (azure-event-hubs-go's `HubManager`): create,
//! update, read, list and delete event hubs and their consumer groups over
//! the Service Bus Atom REST API, on [`HttpClient`], with the core's
//! requests, XML and reply parsing ([`eventhubs_proto::management`]).
//!
//! ```no_run
//! use eventhubs_async::management::HubDescription;
//! use eventhubs_async::{HubManager, HubManagerError, Runtime};
//!
//! async fn demo<R: Runtime>(manager: &HubManager<R>) -> Result<(), HubManagerError> {
//!     let created = manager
//!         .put("telemetry", &HubDescription::new().with_partition_count(4).with_message_retention_in_days(7))
//!         .await?;
//!     assert_eq!(created.partition_ids.len(), 4);
//!     let changed = created.description().with_message_retention_in_days(3);
//!     manager.update("telemetry", &changed).await?;
//!     assert!(manager.get("telemetry").await?.is_some());
//!     manager.delete("telemetry").await?;
//!     assert!(manager.get("telemetry").await?.is_none(), "a missing hub is Ok(None)");
//!     Ok(())
//! }
//! ```
//!
//! Requests are authorized per [`ManagementCredential`]: a SAS token signed
//! over each request's full URL (query included), or an Entra ID token for
//! the Event Hubs scope sent as `Bearer`. Every call ends within the HTTP
//! client's request time-out (60 s by default, as the Go library's); an
//! error reply carries the service's status, `Code` and `Detail`
//! ([`HubManagerError::service`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventhubs_proto::eventhubs::connection_string::ConnectionStringError;
use eventhubs_proto::eventhubs::sas::{TokenError, TokenType};
use eventhubs_proto::eventhubs::{ConnectionString, Environment, EnvironmentError};
use eventhubs_proto::management::{
    authorize, consumer_group_from_response, consumer_groups_from_response, deleted_from_response,
    hub_from_response, hubs_from_response, optional_consumer_group_from_response,
    optional_hub_from_response, sas_audience, PutMode,
};
use http::{Method, Request, Response};
use tracing::debug;

pub use eventhubs_proto::management::{
    ConsumerGroupDescription, ConsumerGroupEntity, EntityStatus, HubDescription, HubEntity,
    ManagementEndpoint, ManagementError, ServiceError,
};

use crate::credentials::{SasTokenProvider, TokenProvider};
use crate::http::{HttpClient, HttpClientError, HttpOptions};
use crate::runtime::Runtime;

/// Attempts of a read (GET) when the service answers 500 or 503.
const READ_ATTEMPTS: u32 = 3;

/// How management requests are authorized.
#[derive(Clone)]
#[non_exhaustive]
pub enum ManagementCredential {
    /// Shared access signatures: the provider is asked for a token for
    /// each request's full URL, query included, as the service checks
    /// (e.g. [`SasTokenProvider`]). Needs a policy with Manage rights.
    SharedAccessSignature(Arc<dyn TokenProvider>),
    /// Entra ID access tokens, sent as `Bearer`: the provider (any
    /// credential of [`crate::identity`]) is asked for the namespace's
    /// Event Hubs scope. Needs the Azure Event Hubs Data Owner role.
    EntraId(Arc<dyn TokenProvider>),
}

impl ManagementCredential {
    /// SAS tokens signed with shared access policy `key_name` and `key`.
    pub fn shared_access_key(
        key_name: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<Self, TokenError> {
        Ok(ManagementCredential::SharedAccessSignature(Arc::new(
            SasTokenProvider::from_key(key_name, key)?,
        )))
    }

    /// Entra ID tokens from `credential`.
    pub fn entra_id(credential: impl TokenProvider + 'static) -> Self {
        ManagementCredential::EntraId(Arc::new(credential))
    }
}

impl fmt::Debug for ManagementCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManagementCredential::SharedAccessSignature(_) => {
                "SharedAccessSignature(<token provider>)"
            }
            ManagementCredential::EntraId(_) => "EntraId(<token provider>)",
        })
    }
}

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubManagerError {
    /// The service refused (its status, code and detail), its reply could
    /// not be read, or a name or endpoint cannot be used.
    #[error(transparent)]
    Management(#[from] ManagementError),
    /// No response: connect, TLS, time-out, malformed HTTP.
    #[error(transparent)]
    Http(#[from] HttpClientError),
    /// The token provider gave no token.
    #[error("no token for the management request: {0}")]
    Token(#[from] TokenError),
    /// The connection string is malformed or has no credentials.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// The namespace name or Azure environment is not usable.
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
}

impl HubManagerError {
    /// The service's error reply, when it answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            HubManagerError::Management(e) => e.service(),
            _ => None,
        }
    }

    /// The HTTP status of the service's error reply.
    pub fn status(&self) -> Option<u16> {
        self.service().map(|e| e.status)
    }
}

/// Manages the event hubs of one namespace (Go `HubManager`).
///
/// Cancellation, for every async method: dropping the future abandons
/// the HTTP exchange and its connection. A request already written may
/// still take effect at the service (a hub created, updated or deleted);
/// read it back with [`get`](Self::get) to know.
pub struct HubManager<R: Runtime> {
    http: HttpClient<R>,
    endpoint: ManagementEndpoint,
    credential: ManagementCredential,
    /// The audience an Entra ID provider is asked for: the namespace, so
    /// that it picks its Event Hubs scope.
    namespace_audience: String,
}

impl<R: Runtime> Clone for HubManager<R> {
    fn clone(&self) -> Self {
        HubManager {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            credential: self.credential.clone(),
            namespace_audience: self.namespace_audience.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for HubManager<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubManager")
            .field("endpoint", &self.endpoint.base_url())
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> HubManager<R> {
    /// A manager for the namespace at `endpoint` (an emulator's
    /// [`management endpoint`](ManagementEndpoint::parse), a custom
    /// host), authorized by `credential`, with its own [`HttpClient`].
    pub fn for_endpoint(
        endpoint: ManagementEndpoint,
        credential: ManagementCredential,
    ) -> Result<Self, HubManagerError> {
        let http = HttpClient::with_options(R::default(), HttpOptions::default())?;
        let host = endpoint
            .base_url()
            .split_once("://")
            .map_or("", |(_, h)| h)
            .to_owned();
        Ok(HubManager {
            http,
            endpoint,
            credential,
            namespace_audience: format!("sb://{host}/"),
        })
    }

    /// A manager for `namespace` (a short name, completed with
    /// `environment`'s Service Bus suffix, or a host name) authorized by
    /// `credential` (Go `NewHubManagerFromAzureEnvironment`).
    pub fn new(
        namespace: &str,
        credential: ManagementCredential,
        environment: Environment,
    ) -> Result<Self, HubManagerError> {
        let host = if namespace.contains('.') || namespace == "localhost" {
            namespace.to_owned()
        } else {
            environment.namespace_fqdn(namespace)?
        };
        Self::for_endpoint(ManagementEndpoint::for_namespace_host(&host)?, credential)
    }

    /// A manager for a connection string's namespace with its key or
    /// signature (Go `NewHubManagerFromConnectionString`; an `EntityPath`
    /// is ignored). For `UseDevelopmentEmulator=true` the endpoint is
    /// `http://<host>:5300`; an emulator elsewhere takes
    /// [`with_endpoint`](Self::with_endpoint).
    pub fn from_connection_string(connection_string: &str) -> Result<Self, HubManagerError> {
        let cs = ConnectionString::parse(connection_string)?;
        let provider = SasTokenProvider::from_credentials(cs.require_credentials()?)?;
        Self::for_endpoint(
            ManagementEndpoint::from_connection_string(&cs)?,
            ManagementCredential::SharedAccessSignature(Arc::new(provider)),
        )
    }

    /// This manager, sending to `endpoint` instead (e.g. the URL an
    /// embedded emulator's `management_endpoint()` gives, parsed).
    pub fn with_endpoint(mut self, endpoint: ManagementEndpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// This manager, sending with `http` (shared pool, other time-outs or
    /// trust anchors).
    pub fn with_http(mut self, http: HttpClient<R>) -> Self {
        self.http = http;
        self
    }

    /// Where requests go.
    pub fn endpoint(&self) -> &ManagementEndpoint {
        &self.endpoint
    }

    /// Creates hub `name` (Go `Put`); unset properties take the service's
    /// defaults. An existing hub is a 409 conflict: use
    /// [`update`](Self::update) to change one.
    pub async fn put(
        &self,
        name: &str,
        description: &HubDescription,
    ) -> Result<HubEntity, HubManagerError> {
        self.put_hub(name, description, PutMode::Create).await
    }

    /// Updates hub `name` (`If-Match: *`): the service changes the
    /// retention (and status and metadata) and resets properties not given
    /// to their defaults; the partition count cannot change. A missing hub
    /// is an error. `hub.description()` of a [`get`](Self::get) is the
    /// place to start from.
    pub async fn update(
        &self,
        name: &str,
        description: &HubDescription,
    ) -> Result<HubEntity, HubManagerError> {
        self.put_hub(name, description, PutMode::Update).await
    }

    async fn put_hub(
        &self,
        name: &str,
        description: &HubDescription,
        mode: PutMode,
    ) -> Result<HubEntity, HubManagerError> {
        let request = self.endpoint.put_hub(name, description, mode)?;
        Ok(hub_from_response(&self.send(request).await?)?)
    }

    /// Hub `name`, or `Ok(None)` when it does not exist (the service's
    /// empty feed, or 404).
    pub async fn get(&self, name: &str) -> Result<Option<HubEntity>, HubManagerError> {
        let request = self.endpoint.get_hub(name)?;
        Ok(optional_hub_from_response(&self.send(request).await?)?)
    }

    /// Every hub of the namespace.
    pub async fn list(&self) -> Result<Vec<HubEntity>, HubManagerError> {
        let request = self.endpoint.list_hubs()?;
        Ok(hubs_from_response(&self.send(request).await?)?)
    }

    /// Deletes hub `name` and its events. A missing hub is an error whose
    /// [`status`](HubManagerError::status) is 404.
    pub async fn delete(&self, name: &str) -> Result<(), HubManagerError> {
        let request = self.endpoint.delete_hub(name)?;
        Ok(deleted_from_response(&self.send(request).await?)?)
    }

    /// Creates consumer group `group` of hub `hub`.
    pub async fn put_consumer_group(
        &self,
        hub: &str,
        group: &str,
        description: &ConsumerGroupDescription,
    ) -> Result<ConsumerGroupEntity, HubManagerError> {
        self.put_group(hub, group, description, PutMode::Create)
            .await
    }

    /// Updates consumer group `group` (`If-Match: *`).
    pub async fn update_consumer_group(
        &self,
        hub: &str,
        group: &str,
        description: &ConsumerGroupDescription,
    ) -> Result<ConsumerGroupEntity, HubManagerError> {
        self.put_group(hub, group, description, PutMode::Update)
            .await
    }

    async fn put_group(
        &self,
        hub: &str,
        group: &str,
        description: &ConsumerGroupDescription,
        mode: PutMode,
    ) -> Result<ConsumerGroupEntity, HubManagerError> {
        let request = self
            .endpoint
            .put_consumer_group(hub, group, description, mode)?;
        Ok(consumer_group_from_response(&self.send(request).await?)?)
    }

    /// Consumer group `group` of `hub`, or `Ok(None)` when the group does
    /// not exist.
    pub async fn get_consumer_group(
        &self,
        hub: &str,
        group: &str,
    ) -> Result<Option<ConsumerGroupEntity>, HubManagerError> {
        let request = self.endpoint.get_consumer_group(hub, group)?;
        Ok(optional_consumer_group_from_response(
            &self.send(request).await?,
        )?)
    }

    /// The consumer groups of `hub`.
    pub async fn list_consumer_groups(
        &self,
        hub: &str,
    ) -> Result<Vec<ConsumerGroupEntity>, HubManagerError> {
        let request = self.endpoint.list_consumer_groups(hub)?;
        Ok(consumer_groups_from_response(&self.send(request).await?)?)
    }

    /// Deletes consumer group `group` of `hub`.
    pub async fn delete_consumer_group(
        &self,
        hub: &str,
        group: &str,
    ) -> Result<(), HubManagerError> {
        let request = self.endpoint.delete_consumer_group(hub, group)?;
        Ok(deleted_from_response(&self.send(request).await?)?)
    }

    /// Any request the typed calls do not cover (Go `Execute`): `method` on
    /// `path` (relative to the namespace, with its own query or none;
    /// `api-version` is added unless given) with `body`, authorized. The
    /// response is returned whatever its status.
    pub async fn execute(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Bytes>, HubManagerError> {
        let request = self.endpoint.raw(method, path, body)?;
        self.send(request).await
    }

    /// A raw `POST` (Go `Post`).
    pub async fn post(&self, path: &str, body: Bytes) -> Result<Response<Bytes>, HubManagerError> {
        self.execute(Method::POST, path, body).await
    }

    /// Authorizes and sends `request`; a read is tried again after 500 and
    /// 503 replies (twice, 250 ms then 1 s later).
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HubManagerError> {
        let retry = request.method() == Method::GET;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut signed = request.clone();
            self.authorize(&mut signed).await?;
            let response = self.http.send(signed).await?;
            let status = response.status().as_u16();
            debug!(method = %request.method(), path = %request.uri().path(), status, "management request");
            if !retry || !(status == 500 || status == 503) || attempt >= READ_ATTEMPTS {
                return Ok(response);
            }
            let delay = Duration::from_millis(250 << (2 * (attempt - 1)));
            self.http.runtime().sleep(delay).await;
        }
    }

    async fn authorize(&self, request: &mut Request<Bytes>) -> Result<(), HubManagerError> {
        let token = match &self.credential {
            ManagementCredential::SharedAccessSignature(p) => {
                p.token(&sas_audience(request)).await?
            }
            ManagementCredential::EntraId(p) => {
                let mut token = p.token(&self.namespace_audience).await?;
                token.token_type = TokenType::Jwt;
                token
            }
        };
        Ok(authorize(request, &token)?)
    }
}
