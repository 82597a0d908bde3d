//! What goes into and comes out of a [`Processor`](super::Processor):
//! identifiers, the requests it makes of its store and receivers, their
//! answers, and the events it reports to the application.

use std::fmt;

use crate::checkpoint::{PartitionCheckpoint, PartitionOwnership};
use crate::client::ReceivedEvent;
use crate::eventhubs::EventPosition;

/// Names one store request, so its answer finds it (and a late answer to
/// a request that timed out is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreOpId(pub u64);

/// Names one partition receiver the processor asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverKey(pub u64);

/// Names one batch handed to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

/// Names one checkpoint the application asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointRequestId(pub u64);

/// A partition receiver to open.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenReceiver {
    /// Its name in later inputs and commands.
    pub receiver: ReceiverKey,
    /// The partition.
    pub partition_id: String,
    /// The consumer group.
    pub consumer_group: String,
    /// Where it starts.
    pub position: EventPosition,
    /// Its owner level (epoch).
    pub owner_level: Option<i64>,
    /// Its credit.
    pub prefetch: u32,
    /// The identifier shown to the service (and in the `amqp:link:stolen`
    /// text another owner's receiver causes): the owner id.
    pub identifier: String,
}

/// What the processor asks its driver to do. Store requests are answered
/// with [`Processor::handle_store_reply`](super::Processor::handle_store_reply)
/// and the same [`StoreOpId`]; receivers report with the
/// `handle_receiver_*` inputs and their [`ReceiverKey`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Fetch the hub's partition ids (hub runtime information) and hand
    /// them to [`Processor::handle_partition_ids`](super::Processor::handle_partition_ids).
    GetPartitionIds,
    /// List every ownership record of the consumer group.
    ListOwnership {
        /// The request.
        op: StoreOpId,
    },
    /// Claim each record (renewals, new claims, or relinquishments with
    /// an empty owner id); answer with the claims won.
    ClaimOwnership {
        /// The request.
        op: StoreOpId,
        /// The claims.
        claims: Vec<PartitionOwnership>,
    },
    /// List every checkpoint of the consumer group.
    ListCheckpoints {
        /// The request.
        op: StoreOpId,
    },
    /// Write a checkpoint.
    UpdateCheckpoint {
        /// The request.
        op: StoreOpId,
        /// The checkpoint.
        checkpoint: PartitionCheckpoint,
    },
    /// Open a partition receiver.
    OpenReceiver(OpenReceiver),
    /// Close a receiver; anything it still delivers is ignored.
    CloseReceiver {
        /// The receiver.
        receiver: ReceiverKey,
    },
}

/// A store request that failed (or was not answered in time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFailure {
    /// What failed, as the store said it.
    pub message: String,
}

impl StoreFailure {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        StoreFailure {
            message: message.into(),
        }
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The answer to a store request.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StoreReply {
    /// To [`Action::ListOwnership`].
    OwnershipListed(Result<Vec<PartitionOwnership>, StoreFailure>),
    /// To [`Action::ClaimOwnership`]: the claims won, with their new ETag
    /// and last-modified time.
    OwnershipClaimed(Result<Vec<PartitionOwnership>, StoreFailure>),
    /// To [`Action::ListCheckpoints`].
    CheckpointsListed(Result<Vec<PartitionCheckpoint>, StoreFailure>),
    /// To [`Action::UpdateCheckpoint`].
    CheckpointUpdated(Result<(), StoreFailure>),
}

/// Why a receiver ended without being asked to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverFailure {
    /// True when another receiver with an equal or higher owner level took
    /// the partition (`amqp:link:stolen`): the partition has a new owner.
    pub ownership_lost: bool,
    /// What the client or the service said.
    pub message: String,
}

impl ReceiverFailure {
    /// The partition was taken by another receiver (`amqp:link:stolen`).
    pub fn ownership_lost(message: impl Into<String>) -> Self {
        ReceiverFailure {
            ownership_lost: true,
            message: message.into(),
        }
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        ReceiverFailure {
            ownership_lost: false,
            message: message.into(),
        }
    }
}

/// Why the processor stopped processing a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Another processor owns it now: it was claimed from us (stolen or
    /// found in the store under another owner), our renewal lost the
    /// race, our receiver was taken by a new owner's (`amqp:link:stolen`),
    /// or renewals failed until the ownership expired.
    OwnershipLost,
    /// The processor is stopping.
    Shutdown,
    /// The receiver failed; the partition is still ours and is opened
    /// again in the next cycle, after the last event delivered.
    Error(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::OwnershipLost => f.write_str("ownership lost"),
            CloseReason::Shutdown => f.write_str("shutdown"),
            CloseReason::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// What failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Fetching the hub's partition ids.
    PartitionIds,
    /// Listing ownership.
    ListOwnership,
    /// Claiming, renewing or relinquishing ownership.
    ClaimOwnership,
    /// Listing checkpoints.
    ListCheckpoints,
    /// Writing a checkpoint.
    UpdateCheckpoint,
    /// A partition receiver.
    Receiver,
    /// The application's handler reported a failure for a batch.
    Handler,
    /// Batches were still being processed when the stop's drain time-out
    /// passed.
    DrainTimeout,
}

/// An error the processor reports: what failed, on which partition, and
/// what was said. Processing goes on (the next cycle retries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessorError {
    /// What failed.
    pub kind: ErrorKind,
    /// The partition, when it concerns one.
    pub partition_id: Option<String>,
    /// What was said.
    pub message: String,
}

impl fmt::Display for ProcessorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::PartitionIds => "getting the hub's partition ids",
            ErrorKind::ListOwnership => "listing ownership",
            ErrorKind::ClaimOwnership => "claiming ownership",
            ErrorKind::ListCheckpoints => "listing checkpoints",
            ErrorKind::UpdateCheckpoint => "writing a checkpoint",
            ErrorKind::Receiver => "receiving",
            ErrorKind::Handler => "processing a batch",
            ErrorKind::DrainTimeout => "draining on stop",
        };
        match &self.partition_id {
            Some(p) => write!(f, "{what} (partition {p}) failed: {}", self.message),
            None => write!(f, "{what} failed: {}", self.message),
        }
    }
}

impl std::error::Error for ProcessorError {}

/// Events of one partition handed to the application in order. The
/// application reports when it is done with
/// [`Processor::handle_batch_done`](super::Processor::handle_batch_done);
/// the next batch of the partition waits until then.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionBatch {
    /// The batch.
    pub batch: BatchId,
    /// The partition.
    pub partition_id: String,
    /// The events, at least one, in sequence-number order.
    pub events: Vec<ReceivedEvent>,
}

/// How the application fared with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Processed: it may be checkpointed.
    Processed,
    /// The handler failed: not checkpointed by the processor.
    Failed(String),
}

/// What the processor reports to the application.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ProcessorEvent {
    /// This processor owns a partition and starts receiving it.
    PartitionInitialized {
        /// The partition.
        partition_id: String,
        /// Where its receiver starts (after the checkpoint, or the
        /// configured start position).
        position: EventPosition,
    },
    /// Events to process.
    Events(PartitionBatch),
    /// Processing of a partition stopped; nothing more comes from it
    /// until it is initialized again.
    PartitionClosed {
        /// The partition.
        partition_id: String,
        /// Why.
        reason: CloseReason,
    },
    /// Something failed; processing goes on.
    Error(ProcessorError),
    /// A checkpoint the application asked for is written (or failed).
    CheckpointUpdated {
        /// The request.
        request: CheckpointRequestId,
        /// Its outcome.
        result: Result<(), ProcessorError>,
    },
    /// The stop is complete: partitions relinquished; nothing more will
    /// happen.
    Stopped,
}

/// Why a checkpoint request was refused at once.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointRefused {
    /// This processor does not own the partition (any more): a checkpoint
    /// now could move its new owner's back.
    NotOwned(String),
    /// The processor has stopped or is relinquishing.
    Stopped,
}

impl fmt::Display for CheckpointRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointRefused::NotOwned(p) => write!(
                f,
                "partition {p} is not owned by this processor: its checkpoint belongs to its owner"
            ),
            CheckpointRefused::Stopped => f.write_str("the processor has stopped"),
        }
    }
}

impl std::error::Error for CheckpointRefused {}

/// Counters of what the processor asked of its store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessorStats {
    /// Load-balancing cycles started.
    pub cycles: u64,
    /// Ownership listings.
    pub list_ownership: u64,
    /// Claim rounds.
    pub claim_rounds: u64,
    /// Individual claims (one Blob request each): renewals, new claims,
    /// relinquishments.
    pub claims: u64,
    /// Checkpoint listings.
    pub list_checkpoints: u64,
    /// Checkpoint writes.
    pub checkpoint_writes: u64,
    /// Store requests that failed or timed out.
    pub store_failures: u64,
}

impl ProcessorStats {
    /// Blob Storage requests these amount to (a listing is one request
    /// for up to 5,000 blobs; each claim and checkpoint write is one).
    pub fn storage_requests(&self) -> u64 {
        self.list_ownership + self.claims + self.list_checkpoints + self.checkpoint_writes
    }
}
