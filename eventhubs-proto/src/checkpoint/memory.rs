//! A sans-IO store with the blob store's semantics, for tests,
//! simulations under a virtual clock and single-process use.

use std::collections::BTreeMap;

use super::blob::{checkpoint_metadata, IncompleteCheckpoint};
use super::{PartitionCheckpoint, PartitionOwnership};
use crate::storage::unquote_etag;

/// (namespace, hub, consumer group, partition), lowercase, as blob names.
type Key = (String, String, String, String);

fn key(ns: &str, hub: &str, cg: &str, partition: &str) -> Key {
    (
        ns.to_lowercase(),
        hub.to_lowercase(),
        cg.to_lowercase(),
        partition.to_lowercase(),
    )
}

#[derive(Debug, Clone)]
struct Record {
    owner_id: String,
    etag: String,
    last_modified_unix_ms: i64,
}

/// Ownership and checkpoints in memory, with the semantics of the blob
/// layout: names are case-insensitive (lowercased), a claim without an
/// ETag wins only if the partition was never owned, a claim with one only
/// if the record is still at that version (an ETag for a missing record
/// loses), every win gets a new ETag, and checkpoints need both offset and
/// sequence number.
///
/// No clock is read: every write takes `now_unix_ms`, which becomes its
/// last-modified time. ETags are drawn from a counter, so the same calls
/// give the same ETags.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    ownership: BTreeMap<Key, Record>,
    checkpoints: BTreeMap<Key, (Option<String>, Option<i64>)>,
    version: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_etag(&mut self) -> String {
        self.version += 1;
        format!("0x8DD{:012X}", self.version)
    }

    /// Every ownership record of a consumer group, in partition order,
    /// named as the caller names the group.
    pub fn list_ownership(
        &self,
        namespace: &str,
        hub: &str,
        consumer_group: &str,
    ) -> Vec<PartitionOwnership> {
        let (n, h, g, _) = key(namespace, hub, consumer_group, "");
        self.ownership
            .iter()
            .filter(|((kn, kh, kg, _), _)| *kn == n && *kh == h && *kg == g)
            .map(|((_, _, _, p), r)| PartitionOwnership {
                fully_qualified_namespace: namespace.to_owned(),
                event_hub_name: hub.to_owned(),
                consumer_group: consumer_group.to_owned(),
                partition_id: p.clone(),
                owner_id: r.owner_id.clone(),
                etag: Some(r.etag.clone()),
                last_modified_unix_ms: Some(r.last_modified_unix_ms),
            })
            .collect()
    }

    /// Claims each of `claims` at `now_unix_ms`, as the blob store does;
    /// returns only the claims won, with their new ETag and last-modified
    /// time.
    pub fn claim_ownership(
        &mut self,
        now_unix_ms: i64,
        claims: &[PartitionOwnership],
    ) -> Vec<PartitionOwnership> {
        let mut won = Vec::new();
        for claim in claims {
            let k = key(
                &claim.fully_qualified_namespace,
                &claim.event_hub_name,
                &claim.consumer_group,
                &claim.partition_id,
            );
            let wanted = claim.etag.as_deref().map(unquote_etag);
            let wins = match (self.ownership.get(&k), wanted) {
                (None, None) => true,
                (Some(r), Some(etag)) => r.etag == etag,
                _ => false,
            };
            if !wins {
                continue;
            }
            let etag = self.next_etag();
            self.ownership.insert(
                k,
                Record {
                    owner_id: claim.owner_id.clone(),
                    etag: etag.clone(),
                    last_modified_unix_ms: now_unix_ms,
                },
            );
            won.push(PartitionOwnership {
                etag: Some(etag),
                last_modified_unix_ms: Some(now_unix_ms),
                ..claim.clone()
            });
        }
        won
    }

    /// Every checkpoint of a consumer group, in partition order.
    pub fn list_checkpoints(
        &self,
        namespace: &str,
        hub: &str,
        consumer_group: &str,
    ) -> Vec<PartitionCheckpoint> {
        let (n, h, g, _) = key(namespace, hub, consumer_group, "");
        self.checkpoints
            .iter()
            .filter(|((kn, kh, kg, _), _)| *kn == n && *kh == h && *kg == g)
            .map(
                |((_, _, _, p), (offset, sequence_number))| PartitionCheckpoint {
                    fully_qualified_namespace: namespace.to_owned(),
                    event_hub_name: hub.to_owned(),
                    consumer_group: consumer_group.to_owned(),
                    partition_id: p.clone(),
                    offset: offset.clone(),
                    sequence_number: *sequence_number,
                },
            )
            .collect()
    }

    /// Writes a checkpoint (unconditionally, as the blob store does:
    /// ownership is assumed, not enforced). Both offset and sequence
    /// number are required.
    pub fn update_checkpoint(
        &mut self,
        checkpoint: &PartitionCheckpoint,
    ) -> Result<(), IncompleteCheckpoint> {
        checkpoint_metadata(checkpoint)?;
        let k = key(
            &checkpoint.fully_qualified_namespace,
            &checkpoint.event_hub_name,
            &checkpoint.consumer_group,
            &checkpoint.partition_id,
        );
        self.checkpoints
            .insert(k, (checkpoint.offset.clone(), checkpoint.sequence_number));
        Ok(())
    }
}
