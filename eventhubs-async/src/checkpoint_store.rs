//! Checkpoint stores: where processors keep partition ownership and
//! checkpoints, in the layout every official Event Hubs SDK shares
//! ([`eventhubs_proto::checkpoint`]).
//!
//! - [`CheckpointStore`]: list ownership, claim ownership (returning only
//!   the claims won), list checkpoints, update a checkpoint.
//! - [`BlobCheckpointStore`]: one Blob Storage container, readable and
//!   writable by the Python, Go, .NET, Java and JS processors alike.
//! - [`MemoryCheckpointStore`]: in memory, with the same race semantics,
//!   on an injectable clock (for tests and simulations under virtual
//!   time).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use eventhubs_proto::checkpoint::{
    checkpoint_blob_name, checkpoint_from_blob, checkpoint_metadata, checkpoint_prefix,
    claim_request, ownership_from_blob, ownership_prefix, MemoryStore,
};
pub use eventhubs_proto::checkpoint::{
    namespace_of_endpoint, IncompleteCheckpoint, PartitionCheckpoint, PartitionOwnership,
};
use eventhubs_proto::storage::{Condition, StorageErrorCode};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tracing::debug;

use crate::runtime::Runtime;
use crate::storage::{BlobClient, BlobError};

/// What a [`CheckpointStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a checkpoint store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Blob Storage failed (with the service's error code when it
    /// answered).
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The checkpoint lacks its offset or sequence number.
    #[error(transparent)]
    IncompleteCheckpoint(#[from] IncompleteCheckpoint),
}

impl StoreError {
    /// The storage error code, if the service answered with one (e.g.
    /// `ContainerNotFound`, `AuthenticationFailed`).
    pub fn code(&self) -> Option<&StorageErrorCode> {
        match self {
            StoreError::Blob(e) => e.code(),
            StoreError::IncompleteCheckpoint(_) => None,
        }
    }

    /// True when the service refused the credential (403: a wrong key, an
    /// expired or insufficient SAS, a token without the role).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(self, StoreError::Blob(e) if e.service().is_some_and(|s| s.is_authentication_failure()))
    }
}

/// Where a processor keeps who owns which partition and how far each got.
///
/// Namespaces are as [`namespace_of_endpoint`] gives them; names match
/// case-insensitively.
///
/// Cancellation: dropping a returned future abandons its requests; one
/// already written (a claim, a checkpoint) may still take effect, which
/// the next listing shows.
pub trait CheckpointStore: Send + Sync {
    /// Every ownership record of a consumer group (including relinquished
    /// ones, with an empty owner id).
    fn list_ownership<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionOwnership>>;

    /// Tries each claim (its owner id at its ETag: `None` for a partition
    /// never owned); returns only those won, with their new ETag and
    /// last-modified time. Losing a race is not an error. A claim with an
    /// empty owner id relinquishes the partition.
    fn claim_ownership<'a>(
        &'a self,
        claims: &'a [PartitionOwnership],
    ) -> StoreFuture<'a, Vec<PartitionOwnership>>;

    /// Every checkpoint of a consumer group.
    fn list_checkpoints<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionCheckpoint>>;

    /// Writes a checkpoint (both offset and sequence number required).
    fn update_checkpoint<'a>(&'a self, checkpoint: &'a PartitionCheckpoint) -> StoreFuture<'a, ()>;
}

impl<S: CheckpointStore + ?Sized> CheckpointStore for Arc<S> {
    fn list_ownership<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionOwnership>> {
        (**self).list_ownership(namespace, event_hub, consumer_group)
    }

    fn claim_ownership<'a>(
        &'a self,
        claims: &'a [PartitionOwnership],
    ) -> StoreFuture<'a, Vec<PartitionOwnership>> {
        (**self).claim_ownership(claims)
    }

    fn list_checkpoints<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionCheckpoint>> {
        (**self).list_checkpoints(namespace, event_hub, consumer_group)
    }

    fn update_checkpoint<'a>(&'a self, checkpoint: &'a PartitionCheckpoint) -> StoreFuture<'a, ()> {
        (**self).update_checkpoint(checkpoint)
    }
}

/// The wall clock in ms since the Unix epoch.
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A checkpoint store in memory: the core's [`MemoryStore`] behind a
/// mutex, stamping writes with a clock that can be injected. Clones share
/// the records.
#[derive(Clone)]
pub struct MemoryCheckpointStore {
    store: Arc<Mutex<MemoryStore>>,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl Default for MemoryCheckpointStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCheckpointStore")
            .finish_non_exhaustive()
    }
}

impl MemoryCheckpointStore {
    /// An empty store on the wall clock.
    pub fn new() -> Self {
        Self::with_clock(wall_clock_ms)
    }

    /// An empty store whose last-modified times come from `clock` (ms
    /// since the Unix epoch), e.g. a simulation's virtual clock.
    pub fn with_clock(clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        MemoryCheckpointStore {
            store: Arc::new(Mutex::new(MemoryStore::new())),
            clock: Arc::new(clock),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn list_ownership<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionOwnership>> {
        let records = self
            .lock()
            .list_ownership(namespace, event_hub, consumer_group);
        Box::pin(async move { Ok(records) })
    }

    fn claim_ownership<'a>(
        &'a self,
        claims: &'a [PartitionOwnership],
    ) -> StoreFuture<'a, Vec<PartitionOwnership>> {
        let now = (self.clock)();
        let won = self.lock().claim_ownership(now, claims);
        Box::pin(async move { Ok(won) })
    }

    fn list_checkpoints<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionCheckpoint>> {
        let records = self
            .lock()
            .list_checkpoints(namespace, event_hub, consumer_group);
        Box::pin(async move { Ok(records) })
    }

    fn update_checkpoint<'a>(&'a self, checkpoint: &'a PartitionCheckpoint) -> StoreFuture<'a, ()> {
        let result = self.lock().update_checkpoint(checkpoint);
        Box::pin(async move { Ok(result?) })
    }
}

/// Claims in flight at once.
const CLAIMS_IN_FLIGHT: usize = 16;

/// A checkpoint store in one Blob Storage container, in the layout the
/// official SDKs share: readable and writable by their processors.
///
/// The container must exist (as with the other SDKs; a missing one is
/// `ContainerNotFound`). Claims create a never-owned record with
/// `If-None-Match: *` and replace a listed one with `If-Match`;
/// checkpoints are written without a condition (ownership is assumed,
/// not enforced), creating the blob on the first write.
pub struct BlobCheckpointStore<R: Runtime> {
    blob: BlobClient<R>,
    container: String,
    page_size: Option<u32>,
}

impl<R: Runtime> Clone for BlobCheckpointStore<R> {
    fn clone(&self) -> Self {
        BlobCheckpointStore {
            blob: self.blob.clone(),
            container: self.container.clone(),
            page_size: self.page_size,
        }
    }
}

impl<R: Runtime> std::fmt::Debug for BlobCheckpointStore<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobCheckpointStore")
            .field("blob", &self.blob)
            .field("container", &self.container)
            .finish()
    }
}

impl<R: Runtime> BlobCheckpointStore<R> {
    /// A store in `container` of the account `blob` talks to.
    pub fn new(blob: BlobClient<R>, container: impl Into<String>) -> Self {
        BlobCheckpointStore {
            blob,
            container: container.into(),
            page_size: None,
        }
    }

    /// A store in `container` of the account a storage connection string
    /// names.
    pub fn from_connection_string(
        runtime: R,
        connection_string: &str,
        container: impl Into<String>,
    ) -> Result<Self, BlobError> {
        Ok(Self::new(
            BlobClient::from_connection_string(runtime, connection_string)?,
            container,
        ))
    }

    /// Lists with pages of at most `n` blobs (`maxresults`; the service's
    /// default is 5,000).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n);
        self
    }

    /// The Blob client.
    pub fn blob_client(&self) -> &BlobClient<R> {
        &self.blob
    }

    /// The container.
    pub fn container(&self) -> &str {
        &self.container
    }

    async fn claim(
        &self,
        claim: &PartitionOwnership,
    ) -> Result<Option<PartitionOwnership>, BlobError> {
        let write = claim_request(claim);
        let request = write.request(self.blob.service(), &self.container)?;
        let response = self.blob.send(request).await?;
        match write.outcome(&response)? {
            Some(version) => {
                debug!(partition = %claim.partition_id, owner = %claim.owner_id, "claim won");
                Ok(Some(PartitionOwnership {
                    etag: version.etag,
                    last_modified_unix_ms: version.last_modified_unix_ms,
                    ..claim.clone()
                }))
            }
            None => {
                debug!(partition = %claim.partition_id, owner = %claim.owner_id, status = response.status().as_u16(), "claim lost");
                Ok(None)
            }
        }
    }
}

impl<R: Runtime> CheckpointStore for BlobCheckpointStore<R> {
    fn list_ownership<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionOwnership>> {
        Box::pin(async move {
            let prefix = ownership_prefix(namespace, event_hub, consumer_group);
            let blobs = self
                .blob
                .list_blobs(&self.container, &prefix, self.page_size)
                .await?;
            Ok(blobs
                .iter()
                .filter_map(|b| ownership_from_blob(namespace, event_hub, consumer_group, b))
                .collect())
        })
    }

    fn claim_ownership<'a>(
        &'a self,
        claims: &'a [PartitionOwnership],
    ) -> StoreFuture<'a, Vec<PartitionOwnership>> {
        Box::pin(async move {
            type Claim<'b> = Pin<
                Box<dyn Future<Output = Result<Option<PartitionOwnership>, BlobError>> + Send + 'b>,
            >;
            let pending: Vec<Claim<'a>> = claims
                .iter()
                .map(|c| Box::pin(self.claim(c)) as Claim<'a>)
                .collect();
            let won: Vec<Option<PartitionOwnership>> = stream::iter(pending)
                .buffered(CLAIMS_IN_FLIGHT)
                .try_collect()
                .await?;
            Ok(won.into_iter().flatten().collect())
        })
    }

    fn list_checkpoints<'a>(
        &'a self,
        namespace: &'a str,
        event_hub: &'a str,
        consumer_group: &'a str,
    ) -> StoreFuture<'a, Vec<PartitionCheckpoint>> {
        Box::pin(async move {
            let prefix = checkpoint_prefix(namespace, event_hub, consumer_group);
            let blobs = self
                .blob
                .list_blobs(&self.container, &prefix, self.page_size)
                .await?;
            Ok(blobs
                .iter()
                .filter_map(|b| checkpoint_from_blob(namespace, event_hub, consumer_group, b))
                .collect())
        })
    }

    fn update_checkpoint<'a>(&'a self, checkpoint: &'a PartitionCheckpoint) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let fields = checkpoint_metadata(checkpoint)?;
            let metadata: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let blob = checkpoint_blob_name(checkpoint);
            match self
                .blob
                .set_metadata(&self.container, &blob, &metadata, &Condition::None)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is(&StorageErrorCode::BlobNotFound) => {
                    self.blob
                        .put_empty_blob(&self.container, &blob, &metadata, &Condition::None)
                        .await?;
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}
