//! Azure Blob Storage over [`HttpClient`]: the operations a checkpoint
//! store needs, with the core's request building, signing and XML
//! parsing ([`eventhubs_proto::storage`]).
//!
//! [`BlobClient`] authorizes every request with a [`StorageCredential`]:
//! the account key (Shared Key), a SAS token given by the user, or a
//! bearer token from a [`TokenProvider`] (Entra ID, scope
//! [`STORAGE_SCOPE`]). `503 ServerBusy` and `500` replies are retried
//! twice with back-off; every other error reply comes back as a
//! [`ServiceError`] carrying the storage error code.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use eventhubs_proto::eventhubs::sas::{Token, TokenError};
use eventhubs_proto::storage::{authorize, parse_list_blobs, Authorization, BlobService};
use http::{Request, Response};

/// The Blob Storage types in this module's signatures (credentials,
/// endpoints, conditions, listings, errors), from the client core.
pub use eventhubs_proto::storage::{
    unquote_etag, AccountSas, BlobEndpoint, BlobItem, BlobProperties, BlobVersion, Condition,
    ContainerSas, InvalidAccountKey, ListBlobs, ListBlobsPage, SasToken, ServiceError,
    SharedKeyCredential, StorageConnectionString, StorageConnectionStringError, StorageCredentials,
    StorageError, StorageErrorCode, XmlError, DEVELOPMENT_ACCOUNT, DEVELOPMENT_BLOB_ENDPOINT,
    DEVELOPMENT_KEY,
};
use tracing::debug;

use crate::credentials::{unix_now, TokenProvider};
use crate::http::{HttpClient, HttpClientError, HttpOptions};
use crate::runtime::Runtime;

/// The OAuth 2.0 scope of Azure Storage, asked of a bearer
/// [`TokenProvider`].
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// Attempts per request when the service answers 500 or 503.
const ATTEMPTS: u32 = 3;

/// How requests are authorized.
#[derive(Clone)]
#[non_exhaustive]
pub enum StorageCredential {
    /// The account key: every request is signed (Shared Key).
    SharedKey(SharedKeyCredential),
    /// An account or service SAS, appended to every request's query.
    Sas(SasToken),
    /// Bearer tokens for [`STORAGE_SCOPE`] (Entra ID); cached until five
    /// minutes before they expire.
    Bearer(Arc<dyn TokenProvider>),
    /// No credential (public containers).
    Anonymous,
}

impl fmt::Debug for StorageCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageCredential::SharedKey(k) => f.debug_tuple("SharedKey").field(k).finish(),
            StorageCredential::Sas(s) => f.debug_tuple("Sas").field(s).finish(),
            StorageCredential::Bearer(_) => f.write_str("Bearer(<token provider>)"),
            StorageCredential::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Why a Blob Storage call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The service answered with an error (its status and code).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// No response: connect, TLS, time-out, malformed HTTP.
    #[error(transparent)]
    Http(#[from] HttpClientError),
    /// A name, metadata or endpoint given is not usable.
    #[error(transparent)]
    Request(#[from] StorageError),
    /// The storage connection string is malformed.
    #[error(transparent)]
    ConnectionString(#[from] StorageConnectionStringError),
    /// A List Blobs reply did not parse.
    #[error("bad reply from the Blob service: {0}")]
    Xml(#[from] XmlError),
    /// The token provider gave no token.
    #[error("no storage token: {0}")]
    Token(#[from] TokenError),
}

impl BlobError {
    /// The service's error, if it answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            BlobError::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The storage error code, if the service answered with one.
    pub fn code(&self) -> Option<&StorageErrorCode> {
        self.service().and_then(|e| e.code.as_ref())
    }

    /// True for the code `code`.
    pub fn is(&self, code: &StorageErrorCode) -> bool {
        self.code() == Some(code)
    }
}

/// A Blob service client for one account.
///
/// Cancellation, for every async method: as [`HttpClient::send`]: the
/// exchange and its connection are abandoned, and a request already
/// written may still take effect.
pub struct BlobClient<R: Runtime> {
    runtime: R,
    http: HttpClient<R>,
    service: BlobService,
    credential: StorageCredential,
    bearer: Arc<Mutex<Option<Token>>>,
}

impl<R: Runtime> Clone for BlobClient<R> {
    fn clone(&self) -> Self {
        BlobClient {
            runtime: self.runtime.clone(),
            http: self.http.clone(),
            service: self.service.clone(),
            credential: self.credential.clone(),
            bearer: self.bearer.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for BlobClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobClient")
            .field("endpoint", &self.service.endpoint().to_string())
            .field("version", &self.service.version())
            .field("credential", &self.credential)
            .finish()
    }
}

impl<R: Runtime> BlobClient<R> {
    /// A client for the account a storage connection string names
    /// (`UseDevelopmentStorage=true` for Azurite on its default port),
    /// with its own [`HttpClient`].
    pub fn from_connection_string(runtime: R, connection_string: &str) -> Result<Self, BlobError> {
        let cs = StorageConnectionString::parse(connection_string)?;
        let http = HttpClient::with_options(runtime, HttpOptions::default())?;
        let credential = match cs.credentials {
            StorageCredentials::SharedKey(k) => StorageCredential::SharedKey(k),
            StorageCredentials::Sas(s) => StorageCredential::Sas(s),
            _ => StorageCredential::Anonymous,
        };
        Ok(Self::new(http, cs.blob_endpoint, credential))
    }

    /// A client for the Blob service at `endpoint` over `http`.
    pub fn new(http: HttpClient<R>, endpoint: BlobEndpoint, credential: StorageCredential) -> Self {
        BlobClient {
            runtime: http.runtime().clone(),
            http,
            service: BlobService::new(endpoint),
            credential,
            bearer: Arc::new(Mutex::new(None)),
        }
    }

    /// This client with another credential (e.g. a bearer token provider
    /// for an endpoint from a connection string).
    pub fn with_credential(mut self, credential: StorageCredential) -> Self {
        self.credential = credential;
        self
    }

    /// Sends another `x-ms-version` (default `2021-12-02`).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.service = self.service.with_version(version);
        self
    }

    /// The request builder.
    pub fn service(&self) -> &BlobService {
        &self.service
    }

    /// Create Container.
    pub async fn create_container(&self, container: &str) -> Result<(), BlobError> {
        let request = self.service.create_container(container)?;
        self.execute(request).await.map(drop)
    }

    /// Create Container, succeeding if it exists; `true` when it was
    /// created.
    pub async fn create_container_if_missing(&self, container: &str) -> Result<bool, BlobError> {
        match self.create_container(container).await {
            Ok(()) => Ok(true),
            Err(e) if e.is(&StorageErrorCode::ContainerAlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One page of List Blobs.
    pub async fn list_blobs_page(
        &self,
        container: &str,
        options: &ListBlobs,
    ) -> Result<ListBlobsPage, BlobError> {
        let request = self.service.list_blobs(container, options)?;
        let response = self.execute(request).await?;
        Ok(parse_list_blobs(response.body())?)
    }

    /// Every blob under `prefix`, with metadata, following `NextMarker`
    /// page by page (`page_size`: `maxresults`, or the service's 5,000).
    pub async fn list_blobs(
        &self,
        container: &str,
        prefix: &str,
        page_size: Option<u32>,
    ) -> Result<Vec<BlobItem>, BlobError> {
        let mut options = ListBlobs::with_metadata(prefix);
        options.max_results = page_size;
        let mut blobs = Vec::new();
        loop {
            let page = self.list_blobs_page(container, &options).await?;
            blobs.extend(page.blobs);
            match page.next_marker {
                Some(marker) if options.marker.as_deref() != Some(marker.as_str()) => {
                    options.marker = Some(marker);
                }
                _ => return Ok(blobs),
            }
        }
    }

    /// Put Blob of an empty block blob with `metadata`.
    pub async fn put_empty_blob(
        &self,
        container: &str,
        blob: &str,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<BlobVersion, BlobError> {
        let request = self
            .service
            .put_empty_blob(container, blob, metadata, condition)?;
        Ok(BlobVersion::of(&self.execute(request).await?))
    }

    /// Set Blob Metadata (replacing all of it).
    pub async fn set_metadata(
        &self,
        container: &str,
        blob: &str,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<BlobVersion, BlobError> {
        let request = self
            .service
            .set_metadata(container, blob, metadata, condition)?;
        Ok(BlobVersion::of(&self.execute(request).await?))
    }

    /// Get Blob Properties.
    pub async fn get_properties(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<BlobProperties, BlobError> {
        let request = self.service.get_properties(container, blob)?;
        Ok(BlobProperties::of(&self.execute(request).await?))
    }

    /// Sends `request`; an error reply becomes [`BlobError::Service`].
    pub async fn execute(&self, request: Request<Bytes>) -> Result<Response<Bytes>, BlobError> {
        let response = self.send(request).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(ServiceError::from_response(&response).into())
        }
    }

    /// Authorizes and sends `request`, retrying 500 and 503 replies, and
    /// returns the last response whatever its status.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, BlobError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut signed = request.clone();
            self.authorize(&mut signed).await?;
            let response = self.http.send(signed).await?;
            let status = response.status().as_u16();
            if !(status == 500 || status == 503) || attempt >= ATTEMPTS {
                return Ok(response);
            }
            let delay = Duration::from_millis(250 << (2 * (attempt - 1)));
            debug!(status, attempt, ?delay, "storage busy; retrying");
            self.runtime.sleep(delay).await;
        }
    }

    async fn authorize(&self, request: &mut Request<Bytes>) -> Result<(), BlobError> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        match &self.credential {
            StorageCredential::SharedKey(k) => {
                authorize(request, Authorization::SharedKey(k), now)?
            }
            StorageCredential::Sas(s) => authorize(request, Authorization::Sas(s), now)?,
            StorageCredential::Anonymous => authorize(request, Authorization::Anonymous, now)?,
            StorageCredential::Bearer(provider) => {
                let token = self.bearer_token(provider.as_ref()).await?;
                authorize(request, Authorization::Bearer(&token), now)?;
            }
        }
        Ok(())
    }

    async fn bearer_token(&self, provider: &dyn TokenProvider) -> Result<String, TokenError> {
        let now = unix_now();
        {
            let cached = self.bearer.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(t) = cached.as_ref() {
                if t.expires_at_unix == 0 || t.expires_at_unix > now + 300 {
                    return Ok(t.token.clone());
                }
            }
        }
        let token = provider.token(STORAGE_SCOPE).await?;
        let text = token.token.clone();
        *self.bearer.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
        Ok(text)
    }
}
