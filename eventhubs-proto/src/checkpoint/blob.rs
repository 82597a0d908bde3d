//! The cross-SDK blob layout: names, metadata, and the requests and
//! outcomes of claims and checkpoint writes.

use bytes::Bytes;
use http::{Request, Response};

use super::{PartitionCheckpoint, PartitionOwnership};
use crate::storage::{
    unquote_etag, BlobItem, BlobService, BlobVersion, Condition, ServiceError, StorageError,
    StorageErrorCode,
};

/// Ownership metadata: the owner id (empty when relinquished).
pub const OWNER_ID_KEY: &str = "ownerid";
/// Checkpoint metadata: the offset.
pub const OFFSET_KEY: &str = "offset";
/// Checkpoint metadata: the sequence number, decimal.
pub const SEQUENCE_NUMBER_KEY: &str = "sequencenumber";

fn prefix(namespace: &str, hub: &str, consumer_group: &str, kind: &str) -> String {
    format!("{namespace}/{hub}/{consumer_group}/{kind}/").to_lowercase()
}

/// `<namespace>/<hub>/<consumer group>/ownership/`, lowercase: the List
/// Blobs prefix of a consumer group's ownership records.
pub fn ownership_prefix(namespace: &str, hub: &str, consumer_group: &str) -> String {
    prefix(namespace, hub, consumer_group, "ownership")
}

/// `<namespace>/<hub>/<consumer group>/checkpoint/`, lowercase.
pub fn checkpoint_prefix(namespace: &str, hub: &str, consumer_group: &str) -> String {
    prefix(namespace, hub, consumer_group, "checkpoint")
}

/// The blob of an ownership record, lowercase.
pub fn ownership_blob_name(o: &PartitionOwnership) -> String {
    let p = ownership_prefix(
        &o.fully_qualified_namespace,
        &o.event_hub_name,
        &o.consumer_group,
    );
    p + &o.partition_id.to_lowercase()
}

/// The blob of a checkpoint, lowercase.
pub fn checkpoint_blob_name(c: &PartitionCheckpoint) -> String {
    let p = checkpoint_prefix(
        &c.fully_qualified_namespace,
        &c.event_hub_name,
        &c.consumer_group,
    );
    p + &c.partition_id.to_lowercase()
}

/// The partition id of a listed blob: its last path segment.
fn partition_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The ownership record a listed blob holds, named with the caller's
/// namespace, hub and group. `None` for an entry without `ownerid` (such
/// as a directory placeholder of a hierarchical-namespace account).
pub fn ownership_from_blob(
    namespace: &str,
    hub: &str,
    consumer_group: &str,
    blob: &BlobItem,
) -> Option<PartitionOwnership> {
    let owner = blob.metadata_value(OWNER_ID_KEY)?;
    Some(PartitionOwnership {
        fully_qualified_namespace: namespace.to_owned(),
        event_hub_name: hub.to_owned(),
        consumer_group: consumer_group.to_owned(),
        partition_id: partition_of(&blob.name).to_owned(),
        owner_id: owner.to_owned(),
        etag: blob.etag.clone(),
        last_modified_unix_ms: blob.last_modified_unix.map(|s| s.saturating_mul(1000)),
    })
}

/// The checkpoint a listed blob holds. An empty `offset` (a placeholder
/// some SDKs write) reads as none; a `sequencenumber` that is not a
/// number too. `None` when neither is there (a placeholder).
pub fn checkpoint_from_blob(
    namespace: &str,
    hub: &str,
    consumer_group: &str,
    blob: &BlobItem,
) -> Option<PartitionCheckpoint> {
    let offset = blob
        .metadata_value(OFFSET_KEY)
        .filter(|o| !o.is_empty())
        .map(str::to_owned);
    let sequence_number = blob
        .metadata_value(SEQUENCE_NUMBER_KEY)
        .and_then(|s| s.trim().parse().ok());
    if offset.is_none() && sequence_number.is_none() {
        return None;
    }
    Some(PartitionCheckpoint {
        fully_qualified_namespace: namespace.to_owned(),
        event_hub_name: hub.to_owned(),
        consumer_group: consumer_group.to_owned(),
        partition_id: partition_of(&blob.name).to_owned(),
        offset,
        sequence_number,
    })
}

/// A checkpoint without both an offset and a sequence number is not
/// written: readers of other SDKs fail on the whole consumer group when
/// one record lacks either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint of partition {partition_id} lacks {missing}: both offset and sequence number are required")]
pub struct IncompleteCheckpoint {
    /// The partition.
    pub partition_id: String,
    /// `offset`, `sequence number`, or both.
    pub missing: &'static str,
}

/// The metadata of a checkpoint blob: both keys, always (Set Blob
/// Metadata replaces the whole set).
pub fn checkpoint_metadata(
    c: &PartitionCheckpoint,
) -> Result<[(&'static str, String); 2], IncompleteCheckpoint> {
    let offset = c.offset.as_deref().filter(|o| !o.is_empty());
    match (offset, c.sequence_number) {
        (Some(o), Some(n)) => Ok([
            (OFFSET_KEY, o.to_owned()),
            (SEQUENCE_NUMBER_KEY, n.to_string()),
        ]),
        (o, n) => Err(IncompleteCheckpoint {
            partition_id: c.partition_id.clone(),
            missing: match (o, n) {
                (None, None) => "offset and sequence number",
                (None, _) => "offset",
                _ => "sequence number",
            },
        }),
    }
}

/// The write that claims (or renews, or relinquishes) one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The ownership blob.
    pub blob: String,
    /// The owner id to write.
    pub owner_id: String,
    /// `None`: create the record (Put Blob, `If-None-Match: *`; 409
    /// `BlobAlreadyExists` loses). `Some`: replace the version listed (Set
    /// Blob Metadata, `If-Match`; 412 `ConditionNotMet` loses).
    pub etag: Option<String>,
}

/// The write that claims `ownership` as given (its owner id, at its
/// ETag). Never both conditions at once: the service refuses that (400
/// `MultipleConditionHeadersNotSupported`).
pub fn claim_request(ownership: &PartitionOwnership) -> ClaimRequest {
    ClaimRequest {
        blob: ownership_blob_name(ownership),
        owner_id: ownership.owner_id.clone(),
        etag: ownership
            .etag
            .as_deref()
            .map(unquote_etag)
            .filter(|e| !e.is_empty())
            .map(str::to_owned),
    }
}

impl ClaimRequest {
    /// The HTTP request in `container`.
    pub fn request(
        &self,
        service: &BlobService,
        container: &str,
    ) -> Result<Request<Bytes>, StorageError> {
        let metadata = [(OWNER_ID_KEY, self.owner_id.as_str())];
        match &self.etag {
            None => {
                service.put_empty_blob(container, &self.blob, &metadata, &Condition::IfNoneMatchAny)
            }
            Some(etag) => service.set_metadata(
                container,
                &self.blob,
                &metadata,
                &Condition::IfMatch(etag.clone()),
            ),
        }
    }

    /// What to do with the reply: `Ok(Some(version))` when
    /// the claim was won, `Ok(None)` when another writer won (409
    /// `BlobAlreadyExists`, 412 `ConditionNotMet`, and a 404 of an
    /// `If-Match` on a record since deleted, which the next listing shows
    /// as never owned), `Err` for anything else.
    pub fn outcome(&self, response: &Response<Bytes>) -> Result<Option<BlobVersion>, ServiceError> {
        if response.status().is_success() {
            return Ok(Some(BlobVersion::of(response)));
        }
        let e = ServiceError::from_response(response);
        let deleted =
            self.etag.is_some() && e.status == 404 && !e.is(&StorageErrorCode::ContainerNotFound);
        if e.is_condition_lost() || deleted {
            Ok(None)
        } else {
            Err(e)
        }
    }
}
