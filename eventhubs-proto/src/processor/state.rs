//! [`Processor`]: the event processor's decisions as a sans-IO state
//! machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::balance::{self, cycle_delay, OwnershipView};
use super::config::{CheckpointPolicy, ConfigError, ProcessorConfig, StopOptions};
use super::io::{
    Action, BatchId, BatchOutcome, CheckpointRefused, CheckpointRequestId, CloseReason, ErrorKind,
    OpenReceiver, PartitionBatch, ProcessorError, ProcessorEvent, ProcessorStats, ReceiverFailure,
    ReceiverKey, StoreFailure, StoreOpId, StoreReply,
};
use crate::checkpoint::{PartitionCheckpoint, PartitionOwnership};
use crate::client::{Now, ReceivedEvent};
use crate::eventhubs::{EventPosition, SplitMix64};

mod checkpoints;
mod cycle;
mod session;
mod stop;

/// Where the processor is in its life.
#[derive(Debug)]
enum Phase {
    /// Not started.
    Idle,
    /// Waiting for the hub's partition ids; asking again at `retry_at`
    /// after a failure.
    Starting { retry_at: Option<Instant> },
    /// Balancing and processing.
    Running,
    /// Stopping gracefully.
    Stopping(Stopping),
    /// Done.
    Stopped,
}

#[derive(Debug)]
struct Stopping {
    options: StopOptions,
    drain_deadline: Instant,
    step: StopStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopStep {
    /// Sessions closing; batches in the application's hands finishing.
    Draining,
    /// Final checkpoints being written.
    Checkpointing,
    /// Ownership being relinquished.
    Relinquishing,
}

/// The load-balancing cycle.
#[derive(Debug)]
enum Cycle {
    /// Between cycles.
    Idle,
    /// Ownership listed at `listed_at`.
    Listing { op: StoreOpId, listed_at: Now },
    /// Claims sent at `sent_at`.
    Claiming {
        op: StoreOpId,
        sent_at: Instant,
        claimed: BTreeSet<String>,
    },
    /// Checkpoints being read for partitions just won.
    ReadingCheckpoints { op: StoreOpId },
}

#[derive(Debug)]
enum OpKind {
    ListOwnership,
    Claim,
    ListCheckpoints,
    Checkpoint { partition: String },
    Relinquish,
}

#[derive(Debug)]
struct PendingOp {
    kind: OpKind,
    deadline: Instant,
}

/// A position in a partition: offset and sequence number of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mark {
    offset: String,
    sequence_number: i64,
}

impl Mark {
    fn of(e: &ReceivedEvent) -> Self {
        Mark {
            offset: e.offset().to_owned(),
            sequence_number: e.sequence_number(),
        }
    }
}

/// Our claim on a partition, as last won.
#[derive(Debug)]
struct Owned {
    ownership: PartitionOwnership,
    /// When others may claim it if we renew no more: the expiry after
    /// the claim that won was sent (the store stamped it later).
    expires_at: Instant,
}

#[derive(Debug)]
enum SessionState {
    Open,
    Closing(CloseReason),
}

/// One run of a receiver on a partition, from initialized to closed.
#[derive(Debug)]
struct Session {
    receiver: ReceiverKey,
    state: SessionState,
    /// Received, not yet handed over, with their arrival.
    pending: VecDeque<(Instant, ReceivedEvent)>,
    /// The batch in the application's hands and its last event.
    in_hand: Option<(BatchId, Mark)>,
    /// The last event handed over (or received, for duplicate checks).
    last_delivered: Option<Mark>,
    last_received: Option<i64>,
}

#[derive(Debug, Default)]
struct CheckpointSlot {
    /// The write in flight: its op, position and waiters.
    writing: Option<(StoreOpId, Mark, Vec<CheckpointRequestId>)>,
    /// The next write, coalesced.
    queued: Option<(Mark, Vec<CheckpointRequestId>)>,
}

#[derive(Debug, Default)]
struct Partition {
    owned: Option<Owned>,
    session: Option<Session>,
    /// After a receiver error while the partition stayed ours: resume
    /// after this event instead of the checkpoint.
    resume_after: Option<Mark>,
    /// The last event of the last batch processed, while owned.
    last_processed: Option<Mark>,
    /// The last checkpoint written by us, while owned.
    last_checkpointed: Option<i64>,
    checkpoint: CheckpointSlot,
    /// [`CheckpointPolicy::Interval`]: when the next write is due.
    checkpoint_due: Option<Instant>,
    /// When the last checkpoint write was issued (or ownership began).
    checkpoint_base: Option<Instant>,
    /// Checkpoint writes of the processor's own that failed in a row.
    checkpoint_failures: u32,
}

impl Partition {
    fn is_idle(&self) -> bool {
        self.owned.is_none()
            && self.session.is_none()
            && self.checkpoint.writing.is_none()
            && self.checkpoint.queued.is_none()
    }
}

/// The event processor as a sans-IO state machine: load balancing over a
/// checkpoint store, one receiver per owned partition, batches handed to
/// the application, checkpoints, and a graceful stop.
///
/// It decides everything and does nothing itself: store requests,
/// receivers to open and close, events for the application and timers
/// come out; their answers, received events, the application's progress
/// and the time go in. The same seed and inputs give the same outputs.
///
/// # Inputs
///
/// [`start`](Self::start), [`handle_partition_ids`](Self::handle_partition_ids),
/// [`handle_store_reply`](Self::handle_store_reply),
/// [`handle_receiver_opened`](Self::handle_receiver_opened),
/// [`handle_received`](Self::handle_received),
/// [`handle_receiver_closed`](Self::handle_receiver_closed),
/// [`handle_batch_done`](Self::handle_batch_done),
/// [`request_checkpoint`](Self::request_checkpoint),
/// [`stop`](Self::stop) and [`handle_timeout`](Self::handle_timeout).
///
/// # Outputs and polling order
///
/// After any input the driver MUST drain [`poll_action`](Self::poll_action)
/// (store requests and receiver commands), then
/// [`poll_event`](Self::poll_event) (for the application), then sleep
/// until [`poll_timeout`](Self::poll_timeout) and call
/// [`handle_timeout`](Self::handle_timeout) then (or earlier, with any
/// other input). Every store request gets exactly one answer; a request
/// that takes longer than [`ProcessorConfig::store_timeout`] is failed by
/// the processor itself and its late answer is ignored. A driver SHOULD
/// hold back a receiver's events while
/// [`accepts_events`](Self::accepts_events) is false (back-pressure).
///
/// # What it guarantees
///
/// - A partition is processed only while this processor owns it: once
///   ownership is lost (found under another owner, renewal lost, receiver
///   stolen, or renewals failing until the ownership expires) nothing
///   more of it is handed over, buffered events are dropped and its
///   receiver is closed.
/// - A new owner starts after the checkpoint (offset if present, else
///   sequence number, exclusive), or at the configured start position.
/// - A receiver failure restarts the partition in the next cycle after
///   the last event handed over, as long as it stayed ours.
/// - A stop hands over: batches handed out are finished (up to the drain
///   time-out), final checkpoints are written if asked, and ownership is
///   relinquished so that others claim it in their next cycle.
#[derive(Debug)]
pub struct Processor {
    config: ProcessorConfig,
    rng: SplitMix64,
    phase: Phase,
    partition_ids: Vec<String>,
    cycle: Cycle,
    cycle_started: Option<Instant>,
    next_cycle: Option<Instant>,
    partitions: BTreeMap<String, Partition>,
    ops: BTreeMap<StoreOpId, PendingOp>,
    receivers: BTreeMap<ReceiverKey, String>,
    batches: BTreeMap<BatchId, String>,
    next_id: u64,
    actions: VecDeque<Action>,
    events: VecDeque<ProcessorEvent>,
    stats: ProcessorStats,
    fair_share: Option<(usize, usize)>,
}

impl Processor {
    /// A processor with `config`, not yet started.
    pub fn new(config: ProcessorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Processor {
            rng: SplitMix64::new(config.seed ^ 0x9e37_79b9_7f4a_7c15),
            config,
            phase: Phase::Idle,
            partition_ids: Vec::new(),
            cycle: Cycle::Idle,
            cycle_started: None,
            next_cycle: None,
            partitions: BTreeMap::new(),
            ops: BTreeMap::new(),
            receivers: BTreeMap::new(),
            batches: BTreeMap::new(),
            next_id: 1,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: ProcessorStats::default(),
            fair_share: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// This processor's owner id.
    pub fn owner_id(&self) -> &str {
        &self.config.owner_id
    }

    /// The hub's partition ids, once known.
    pub fn partition_ids(&self) -> &[String] {
        &self.partition_ids
    }

    /// Partitions with a receiver running for this processor (the Go
    /// host's `PartitionIDsBeingProcessed`).
    pub fn partitions_being_processed(&self) -> Vec<String> {
        self.partitions
            .iter()
            .filter(|(_, p)| {
                p.owned.is_some()
                    && p.session
                        .as_ref()
                        .is_some_and(|s| matches!(s.state, SessionState::Open))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Partitions this processor holds in the store.
    pub fn owned_partitions(&self) -> Vec<String> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.owned.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Active owners and the fair share seen by the last cycle.
    pub fn last_balance(&self) -> Option<(usize, usize)> {
        self.fair_share
    }

    /// What the processor asked of its store so far.
    pub fn stats(&self) -> ProcessorStats {
        self.stats
    }

    /// True once started and not yet stopping.
    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Starting { .. } | Phase::Running)
    }

    /// True once the stop is complete (or it never started and was
    /// stopped).
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// False while the receiver's partition holds a full batch waiting
    /// for the application: the driver should pause that receiver.
    pub fn accepts_events(&self, receiver: ReceiverKey) -> bool {
        let Some(p) = self.receivers.get(&receiver) else {
            return true;
        };
        self.partitions
            .get(p)
            .and_then(|p| p.session.as_ref())
            .is_none_or(|s| s.pending.len() < self.config.max_batch_size)
    }

    // -----------------------------------------------------------------
    // Outputs

    /// The next thing to do: a store request or a receiver command.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ProcessorEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called
    /// next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        match &self.phase {
            Phase::Idle | Phase::Stopped => return None,
            Phase::Starting { retry_at } => at(*retry_at),
            Phase::Running => {
                if matches!(self.cycle, Cycle::Idle) {
                    at(self.next_cycle);
                }
            }
            Phase::Stopping(s) => {
                if s.step == StopStep::Draining {
                    at(Some(s.drain_deadline));
                }
            }
        }
        for op in self.ops.values() {
            at(Some(op.deadline));
        }
        for p in self.partitions.values() {
            at(p.owned.as_ref().map(|o| o.expires_at));
            at(p.checkpoint_due);
            if let Some(s) = &p.session {
                if matches!(s.state, SessionState::Open) && s.in_hand.is_none() {
                    at(s.pending.front().map(|(t, _)| *t + self.config.max_wait));
                }
            }
        }
        t
    }

    // -----------------------------------------------------------------
    // Inputs

    /// Starts: asks for the hub's partition ids, then balances every
    /// update interval.
    pub fn start(&mut self, now: Now) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        let _ = now;
        info!(owner = %self.config.owner_id, hub = %self.config.event_hub, group = %self.config.consumer_group, "processor starting");
        self.phase = Phase::Starting { retry_at: None };
        self.actions.push_back(Action::GetPartitionIds);
    }

    /// The hub's partition ids (or why they could not be had: asked
    /// again after a cycle's wait).
    pub fn handle_partition_ids(&mut self, now: Now, result: Result<Vec<String>, String>) {
        match result {
            Ok(mut ids) => {
                ids.sort_by(|a, b| natural(a).cmp(&natural(b)));
                ids.dedup();
                self.partition_ids = ids;
                if matches!(self.phase, Phase::Starting { .. }) {
                    self.phase = Phase::Running;
                    self.start_cycle(now);
                }
            }
            Err(message) => {
                self.error(ErrorKind::PartitionIds, None, message);
                match &mut self.phase {
                    Phase::Starting { retry_at } => {
                        *retry_at = Some(
                            now.instant + cycle_delay(&self.config.load_balancing, &mut self.rng),
                        );
                    }
                    Phase::Stopping(_) if self.partition_ids.is_empty() => self.finish_stop(),
                    _ => {}
                }
            }
        }
    }

    /// The answer to store request `op`.
    pub fn handle_store_reply(&mut self, now: Now, op: StoreOpId, reply: StoreReply) {
        let Some(pending) = self.ops.remove(&op) else {
            debug!(
                op = op.0,
                "store answer to a request no longer awaited: ignored"
            );
            return;
        };
        match (pending.kind, reply) {
            (OpKind::ListOwnership, StoreReply::OwnershipListed(r)) => self.on_listed(now, op, r),
            (OpKind::Claim, StoreReply::OwnershipClaimed(r)) => self.on_claimed(now, op, r),
            (OpKind::ListCheckpoints, StoreReply::CheckpointsListed(r)) => {
                self.on_checkpoints(now, op, r)
            }
            (OpKind::Checkpoint { partition }, StoreReply::CheckpointUpdated(r)) => {
                self.on_checkpoint_written(now, op, &partition, r)
            }
            (OpKind::Relinquish, StoreReply::OwnershipClaimed(r)) => self.on_relinquished(r),
            (kind, reply) => {
                debug!(
                    ?kind,
                    ?reply,
                    "store answer of the wrong kind: treated as a failure"
                );
                self.fail_op(now, op, kind, StoreFailure::new("mismatched store answer"));
            }
        }
        self.advance_stop(now);
    }

    /// A receiver is attached.
    pub fn handle_receiver_opened(&mut self, now: Now, receiver: ReceiverKey) {
        let _ = now;
        if let Some(p) = self.receivers.get(&receiver) {
            debug!(partition = %p, receiver = receiver.0, "receiver open");
        }
    }

    /// An event from a receiver. Events of a receiver that is closed or
    /// closing are dropped: nothing more is handed over from a partition
    /// once it is lost.
    pub fn handle_received(&mut self, now: Now, receiver: ReceiverKey, event: ReceivedEvent) {
        let Some(pid) = self.receivers.get(&receiver).cloned() else {
            return;
        };
        let Some(s) = self
            .partitions
            .get_mut(&pid)
            .and_then(|p| p.session.as_mut())
        else {
            return;
        };
        if !matches!(s.state, SessionState::Open) {
            return;
        }
        let seq = event.sequence_number();
        if s.last_received.is_some_and(|last| seq <= last) {
            debug!(partition = %pid, seq, "event at or before one already received: dropped");
            return;
        }
        s.last_received = Some(seq);
        s.pending.push_back((now.instant, event));
        self.try_deliver(now, &pid);
    }

    /// A receiver ended: closed as asked (`None`) or failed.
    pub fn handle_receiver_closed(
        &mut self,
        now: Now,
        receiver: ReceiverKey,
        failure: Option<ReceiverFailure>,
    ) {
        let Some(pid) = self.receivers.remove(&receiver) else {
            return;
        };
        match failure {
            Some(f) if f.ownership_lost => {
                info!(partition = %pid, owner = %self.config.owner_id, "receiver taken by another owner: ownership lost");
                self.lose(now, &pid, CloseReason::OwnershipLost);
            }
            other => {
                let message = other.map_or_else(
                    || "the receiver closed without being asked to".to_owned(),
                    |f| f.message,
                );
                self.error(ErrorKind::Receiver, Some(pid.clone()), message.clone());
                self.close_session(&pid, CloseReason::Error(message));
            }
        }
        self.advance_stop(now);
    }

    /// The application is done with `batch`.
    pub fn handle_batch_done(&mut self, now: Now, batch: BatchId, outcome: BatchOutcome) {
        let Some(pid) = self.batches.remove(&batch) else {
            return;
        };
        let Some(p) = self.partitions.get_mut(&pid) else {
            return;
        };
        let mark = match p.session.as_mut() {
            Some(s) if s.in_hand.as_ref().is_some_and(|(b, _)| *b == batch) => {
                s.in_hand.take().map(|(_, m)| m)
            }
            _ => None,
        };
        match outcome {
            BatchOutcome::Processed => {
                if let (Some(mark), true) = (mark, p.owned.is_some()) {
                    p.last_processed = Some(mark.clone());
                    match self.config.checkpoint_policy {
                        CheckpointPolicy::AfterBatch => {
                            self.enqueue_checkpoint(now, &pid, mark, None);
                        }
                        CheckpointPolicy::Interval(d) => {
                            let base = p.checkpoint_base.unwrap_or(now.instant);
                            let due = *p.checkpoint_due.get_or_insert(base + d);
                            if due <= now.instant {
                                p.checkpoint_due = None;
                                self.enqueue_checkpoint(now, &pid, mark, None);
                            }
                        }
                        CheckpointPolicy::Manual => {}
                    }
                }
            }
            BatchOutcome::Failed(message) => {
                self.error(ErrorKind::Handler, Some(pid.clone()), message);
            }
        }
        self.try_finish_session(&pid);
        self.try_deliver(now, &pid);
        self.advance_stop(now);
    }

    /// Asks for a checkpoint of `partition_id` after the event at
    /// `offset` / `sequence_number` (an event the application processed).
    /// Writes to one partition are serialised; a newer request while one
    /// is in flight replaces an older queued one, whose waiters complete
    /// with it. Refused for a partition this processor does not own.
    pub fn request_checkpoint(
        &mut self,
        now: Now,
        partition_id: &str,
        offset: impl Into<String>,
        sequence_number: i64,
    ) -> Result<CheckpointRequestId, CheckpointRefused> {
        match &self.phase {
            Phase::Stopped => return Err(CheckpointRefused::Stopped),
            Phase::Stopping(s) if s.step == StopStep::Relinquishing => {
                return Err(CheckpointRefused::Stopped)
            }
            _ => {}
        }
        if self
            .partitions
            .get(partition_id)
            .is_none_or(|p| p.owned.is_none())
        {
            return Err(CheckpointRefused::NotOwned(partition_id.to_owned()));
        }
        let id = CheckpointRequestId(self.next());
        let mark = Mark {
            offset: offset.into(),
            sequence_number,
        };
        self.enqueue_checkpoint(now, partition_id, mark, Some(id));
        Ok(id)
    }

    /// Stops gracefully: no more claims; receivers close; batches in the
    /// application's hands are finished (up to `options.drain_timeout`);
    /// final checkpoints are written if asked (always under
    /// [`CheckpointPolicy::Interval`]); ownership is relinquished; then
    /// [`ProcessorEvent::Stopped`].
    pub fn stop(&mut self, now: Now, options: StopOptions) {
        match self.phase {
            Phase::Idle | Phase::Starting { .. } => {
                self.finish_stop();
                return;
            }
            Phase::Stopping(_) | Phase::Stopped => return,
            Phase::Running => {}
        }
        info!(owner = %self.config.owner_id, "processor stopping");
        self.phase = Phase::Stopping(Stopping {
            options,
            drain_deadline: now.instant + options.drain_timeout,
            step: StopStep::Draining,
        });
        self.next_cycle = None;
        match std::mem::replace(&mut self.cycle, Cycle::Idle) {
            Cycle::Listing { op, .. } | Cycle::ReadingCheckpoints { op } => {
                self.ops.remove(&op);
            }
            c @ Cycle::Claiming { .. } => self.cycle = c,
            Cycle::Idle => {}
        }
        let ids: Vec<String> = self.partitions.keys().cloned().collect();
        for p in &ids {
            self.close_session(p, CloseReason::Shutdown);
        }
        self.advance_stop(now);
    }

    /// Timers: cycles, store time-outs, batch waits, ownership expiry,
    /// interval checkpoints, the stop's drain time-out.
    pub fn handle_timeout(&mut self, now: Now) {
        let t = now.instant;
        if let Phase::Starting { retry_at } = &mut self.phase {
            if retry_at.is_some_and(|r| r <= t) {
                *retry_at = None;
                self.actions.push_back(Action::GetPartitionIds);
            }
        }
        let due: Vec<StoreOpId> = self
            .ops
            .iter()
            .filter(|(_, o)| o.deadline <= t)
            .map(|(id, _)| *id)
            .collect();
        for op in due {
            if let Some(pending) = self.ops.remove(&op) {
                let failure = StoreFailure::new(format!(
                    "no answer within {:?}",
                    self.config.store_timeout()
                ));
                self.fail_op(now, op, pending.kind, failure);
            }
        }
        let expired: Vec<String> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.owned.as_ref().is_some_and(|o| o.expires_at <= t))
            .map(|(id, _)| id.clone())
            .collect();
        for p in expired {
            info!(partition = %p, owner = %self.config.owner_id, "ownership expired without renewal");
            self.error(
                ErrorKind::ClaimOwnership,
                Some(p.clone()),
                "the ownership expired before it could be renewed".into(),
            );
            self.lose(now, &p, CloseReason::OwnershipLost);
        }
        let ids: Vec<String> = self.partitions.keys().cloned().collect();
        for pid in &ids {
            self.try_deliver(now, pid);
            let p = self.partitions.get_mut(pid).expect("listed");
            if p.checkpoint_due.is_some_and(|d| d <= t) {
                p.checkpoint_due = None;
                if let (Some(mark), true) = (p.last_processed.clone(), p.owned.is_some()) {
                    if p.last_checkpointed < Some(mark.sequence_number) {
                        self.enqueue_checkpoint(now, pid, mark, None);
                    }
                }
            }
        }
        if matches!(self.phase, Phase::Running)
            && matches!(self.cycle, Cycle::Idle)
            && self.next_cycle.is_some_and(|c| c <= t)
        {
            self.start_cycle(now);
        }
        self.advance_stop(now);
    }
}

/// Sorts partition ids numerically when they are numbers ("2" before
/// "10"), by text otherwise.
fn natural(id: &str) -> (u64, &str) {
    (id.parse().unwrap_or(u64::MAX), id)
}
