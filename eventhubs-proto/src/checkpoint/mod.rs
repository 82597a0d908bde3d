//! Partition ownership and checkpoints, as every official Event Hubs SDK
//! shares them through one blob container: the records, the blob layout,
//! and a sans-IO in-memory store with the same semantics.
//!
//! The layout (the Python, Go, .NET, Java and JS blob checkpoint stores):
//! one container; empty block blobs whose metadata is the state.
//!
//! | blob | metadata |
//! |---|---|
//! | `<namespace>/<hub>/<consumer group>/ownership/<partition>` | `ownerid` (empty = relinquished) |
//! | `<namespace>/<hub>/<consumer group>/checkpoint/<partition>` | `offset`, `sequencenumber` |
//!
//! Names are written all lowercase. `<namespace>` is the authority of the
//! connection string's `Endpoint` as written, port included
//! ([`namespace_of_endpoint`]: `sb://127.0.0.1:5673` gives
//! `127.0.0.1:5673`), so that clients of every SDK on a non-default port
//! share state.
//!
//! Claims are optimistic: a never-owned partition is claimed by creating
//! its blob with `If-None-Match: *`, an owned one by rewriting its
//! metadata with `If-Match: <ETag of the version listed>`; whoever loses
//! the race gets 409 `BlobAlreadyExists` or 412 `ConditionNotMet` and
//! simply did not win ([`claim_request`]).

mod blob;
mod memory;

pub use blob::{
    checkpoint_blob_name, checkpoint_from_blob, checkpoint_metadata, checkpoint_prefix,
    claim_request, ownership_blob_name, ownership_from_blob, ownership_prefix, ClaimRequest,
    IncompleteCheckpoint, OFFSET_KEY, OWNER_ID_KEY, SEQUENCE_NUMBER_KEY,
};
pub use memory::MemoryStore;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The namespace part of blob names for an Event Hubs `Endpoint`: its
/// authority as written, port included, without scheme, path or user
/// information (`sb://ns.servicebus.windows.net/` gives
/// `ns.servicebus.windows.net`; `sb://127.0.0.1:5672` gives
/// `127.0.0.1:5672`). A bare host is returned as is.
pub fn namespace_of_endpoint(endpoint: &str) -> String {
    let e = endpoint.trim();
    let rest = e.split_once("://").map_or(e, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    authority.to_owned()
}

/// Who owns one partition of a consumer group, and since which version of
/// the record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionOwnership {
    /// The namespace as in [`namespace_of_endpoint`] (e.g.
    /// `myns.servicebus.windows.net`).
    pub fully_qualified_namespace: String,
    /// The event hub.
    pub event_hub_name: String,
    /// The consumer group (e.g. `$Default`).
    pub consumer_group: String,
    /// The partition.
    pub partition_id: String,
    /// The owner (a processor instance id); empty when relinquished.
    pub owner_id: String,
    /// The version of the record this was read at or written as, without
    /// quotes. `None`: never owned (the claim creates the record).
    pub etag: Option<String>,
    /// When the record was last written (the store's clock), ms since the
    /// Unix epoch; the heartbeat that expiry is measured from.
    pub last_modified_unix_ms: Option<i64>,
}

impl PartitionOwnership {
    /// A claim of `partition_id` by `owner_id` of a partition never owned
    /// (no ETag).
    pub fn new(
        fully_qualified_namespace: impl Into<String>,
        event_hub_name: impl Into<String>,
        consumer_group: impl Into<String>,
        partition_id: impl Into<String>,
        owner_id: impl Into<String>,
    ) -> Self {
        PartitionOwnership {
            fully_qualified_namespace: fully_qualified_namespace.into(),
            event_hub_name: event_hub_name.into(),
            consumer_group: consumer_group.into(),
            partition_id: partition_id.into(),
            owner_id: owner_id.into(),
            etag: None,
            last_modified_unix_ms: None,
        }
    }

    /// This record claimed for `owner_id`, at the same version (a claim
    /// or a renewal).
    pub fn claimed_by(&self, owner_id: impl Into<String>) -> Self {
        PartitionOwnership {
            owner_id: owner_id.into(),
            ..self.clone()
        }
    }

    /// This record given up: the same version with an empty owner, which
    /// others may claim at once.
    pub fn relinquished(&self) -> Self {
        self.claimed_by("")
    }

    /// True when nobody owns it (empty owner id).
    pub fn is_relinquished(&self) -> bool {
        self.owner_id.is_empty()
    }

    /// When it was last written, as a [`SystemTime`].
    pub fn last_modified(&self) -> Option<SystemTime> {
        let ms = self.last_modified_unix_ms?;
        let d = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            UNIX_EPOCH.checked_add(d)
        } else {
            UNIX_EPOCH.checked_sub(d)
        }
    }

    /// True when the ownership is active at `now_unix_ms`: an owner is set
    /// and it was written less than `expiration` ago. Otherwise the
    /// partition may be claimed.
    pub fn is_active(&self, now_unix_ms: i64, expiration: Duration) -> bool {
        let Some(at) = self.last_modified_unix_ms else {
            return false;
        };
        let expiration = i64::try_from(expiration.as_millis()).unwrap_or(i64::MAX);
        !self.owner_id.is_empty() && now_unix_ms.saturating_sub(at) < expiration
    }
}

/// How far a consumer group got in one partition: resume after this
/// event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionCheckpoint {
    /// The namespace as in [`namespace_of_endpoint`].
    pub fully_qualified_namespace: String,
    /// The event hub.
    pub event_hub_name: String,
    /// The consumer group.
    pub consumer_group: String,
    /// The partition.
    pub partition_id: String,
    /// `x-opt-offset` of the last event processed (opaque text on
    /// geo-replicated hubs). Always written; `None` only when read from a
    /// record another writer left without it.
    pub offset: Option<String>,
    /// `x-opt-sequence-number` of that event. Always written; `None` only
    /// when read from a record without it.
    pub sequence_number: Option<i64>,
}

impl PartitionCheckpoint {
    /// A checkpoint at the event with this offset and sequence number.
    pub fn new(
        fully_qualified_namespace: impl Into<String>,
        event_hub_name: impl Into<String>,
        consumer_group: impl Into<String>,
        partition_id: impl Into<String>,
        offset: impl Into<String>,
        sequence_number: i64,
    ) -> Self {
        PartitionCheckpoint {
            fully_qualified_namespace: fully_qualified_namespace.into(),
            event_hub_name: event_hub_name.into(),
            consumer_group: consumer_group.into(),
            partition_id: partition_id.into(),
            offset: Some(offset.into()),
            sequence_number: Some(sequence_number),
        }
    }

    /// Where a receiver resumes: after the offset when there is one,
    /// otherwise after the sequence number (as the Go and .NET processors
    /// do); `None` when the record has neither.
    pub fn resume_position(&self) -> Option<crate::eventhubs::EventPosition> {
        use crate::eventhubs::EventPosition;
        match (&self.offset, self.sequence_number) {
            (Some(o), _) if !o.is_empty() => Some(EventPosition::Offset {
                offset: o.clone(),
                inclusive: false,
            }),
            (_, Some(n)) => Some(EventPosition::SequenceNumber {
                sequence_number: n,
                inclusive: false,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
