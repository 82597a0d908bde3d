//! The buffered producer's decisions, without I/O: events are enqueued,
//! routed to a partition on the client, buffered per partition (bounded),
//! and handed out as batches when a batch is full, when its oldest event
//! has waited the maximum wait, or when the caller flushes or closes, with
//! a bounded number of sends in flight per partition and overall. The
//! caller sends each batch (with
//! [`Client::send_routed`](super::Client::send_routed), so keys are kept on
//! the events) and reports its outcome; the producer reports each batch's
//! success or failure with its events.
//!
//! Routing, as the .NET, Java and JavaScript buffered producers route:
//! - a partition id chosen by the caller;
//! - else the event's partition key, hashed as the service hashes keys sent
//!   to the hub ([`crate::eventhubs::partition_key`], lookup3) over the
//!   hub's partition ids in the order the service lists them, so a key
//!   lands where the service would have put it;
//! - else round-robin over the partitions.
//!
//! Polling order for a driver: after enqueueing, after a batch's outcome
//! and when [`BufferedProducer::poll_timeout`] is reached, take every
//! [`BufferedProducer::poll_batch`], then every
//! [`BufferedProducer::poll_event`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::batch::{EventBatch, DEFAULT_MAX_MESSAGE_SIZE};
use super::error::ClientError;
use super::event::EventData;
use super::idempotent::batched_size;
use crate::eventhubs::partition_key::{resolve_partition, RoundRobin};

/// Settings of a [`BufferedProducer`]. [`BufferedOptions::default`] gives
/// the defaults of the .NET buffered producer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferedOptions {
    /// Events a partition may hold before [`BufferedProducer::enqueue`]
    /// reports [`EnqueueError::Full`] (1,500).
    pub max_buffered_events_per_partition: usize,
    /// How long a partly filled batch waits for more events: a batch goes
    /// once its oldest event has waited this long (1 s).
    pub max_wait: Duration,
    /// The largest batch in bytes: the link's max-message-size once known
    /// ([`BufferedProducer::set_max_batch_bytes`]), 1 MiB before.
    pub max_batch_bytes: usize,
    /// Batches of one partition in flight at once (1, which keeps each
    /// partition's events in order; idempotent publishing needs 1).
    pub max_concurrent_sends_per_partition: usize,
    /// Batches in flight at once over every partition; `None` for no limit
    /// beyond the partitions'.
    pub max_concurrent_sends: Option<usize>,
    /// The events are published idempotently: batches are cut with room
    /// for the producer annotations each event then carries.
    pub idempotent: bool,
}

impl Default for BufferedOptions {
    fn default() -> Self {
        BufferedOptions {
            max_buffered_events_per_partition: 1500,
            max_wait: Duration::from_secs(1),
            max_batch_bytes: usize::try_from(DEFAULT_MAX_MESSAGE_SIZE).unwrap_or(usize::MAX),
            max_concurrent_sends_per_partition: 1,
            max_concurrent_sends: None,
            idempotent: false,
        }
    }
}

impl BufferedOptions {
    /// What is wrong with these options, if anything.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::InvalidArgument(what.into()));
        if self.max_buffered_events_per_partition == 0 {
            return bad("the buffer must hold at least one event per partition");
        }
        if self.max_concurrent_sends_per_partition == 0 || self.max_concurrent_sends == Some(0) {
            return bad("at least one send must be allowed in flight");
        }
        if self.idempotent && self.max_concurrent_sends_per_partition > 1 {
            return bad("idempotent publishing sends one batch at a time per partition: set max_concurrent_sends_per_partition to 1");
        }
        if self.max_batch_bytes < 256 {
            return bad("a batch must be allowed at least 256 bytes");
        }
        Ok(())
    }
}

/// Where an enqueued event goes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Route {
    /// By the event's partition key when it has one, else round-robin.
    #[default]
    Auto,
    /// To this partition (the event must have no partition key).
    Partition(String),
}

/// Why an event was not enqueued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The partition's buffer holds its maximum: wait for a batch to go
    /// (back-pressure), or drop or keep the event elsewhere.
    #[error("the buffer of partition {partition} is full ({limit} events)")]
    Full {
        /// The partition.
        partition: String,
        /// Its limit.
        limit: usize,
    },
    /// The hub's partition ids are not known yet
    /// ([`BufferedProducer::set_partitions`]).
    #[error("the hub's partition ids are not known yet")]
    PartitionsUnknown,
    /// The partition chosen is not one of the hub's.
    #[error("partition {partition} is not one of the hub's ({known})")]
    UnknownPartition {
        /// The partition asked for.
        partition: String,
        /// The hub's partitions.
        known: String,
    },
    /// A partition id and a partition key together (the SDKs refuse both).
    #[error("an event with partition key {key:?} cannot be sent to chosen partition {partition}: give one or the other")]
    KeyAndPartition {
        /// The key.
        key: String,
        /// The partition.
        partition: String,
    },
    /// The event alone is larger than a batch may be.
    #[error("the event takes {size} bytes in a batch; a batch may take {max}")]
    TooLarge {
        /// Its size in a batch.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The producer is closing or closed.
    #[error("the buffered producer is closed")]
    Closed,
}

/// Names a batch handed out by [`BufferedProducer::poll_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// A batch to send to `partition`; report its outcome with
/// [`BufferedProducer::batch_done`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReadyBatch {
    /// The batch.
    pub id: BatchId,
    /// Its partition.
    pub partition: String,
    /// Its events, in the order they were enqueued.
    pub events: Vec<EventData>,
}

/// What the buffered producer reports: one per batch. `E` is the error
/// type the caller reports failures with.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BufferedEvent<E = ClientError> {
    /// Every event of the batch was accepted.
    Sent {
        /// The batch.
        id: BatchId,
        /// Its partition.
        partition: String,
        /// Its events.
        events: Vec<EventData>,
    },
    /// The batch failed after the client's retries; its events are not
    /// known to be published.
    Failed {
        /// The batch.
        id: BatchId,
        /// Its partition.
        partition: String,
        /// Its events.
        events: Vec<EventData>,
        /// Why.
        error: E,
    },
}

#[derive(Debug)]
struct Queued {
    /// Enqueue order over the whole producer.
    seq: u64,
    event: EventData,
    size: usize,
    at: Instant,
}

#[derive(Debug, Default)]
struct PartitionBuffer {
    queue: VecDeque<Queued>,
    /// Sum of the queued events' sizes.
    bytes: usize,
    in_flight: usize,
}

#[derive(Debug)]
struct InFlight {
    partition: String,
    /// The lowest enqueue order among its events.
    first_seq: u64,
    events: Vec<EventData>,
}

/// Whether the producer takes events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Every buffered event goes out; nothing new is taken.
    Closing,
}

/// The buffered producer's state: buffers per partition, batches in
/// flight, the round-robin counter, flush marks. `E` is the error type
/// batch failures are reported with.
#[derive(Debug)]
pub struct BufferedProducer<E = ClientError> {
    options: BufferedOptions,
    partitions: Vec<String>,
    buffers: BTreeMap<String, PartitionBuffer>,
    in_flight: BTreeMap<BatchId, InFlight>,
    round_robin: RoundRobin,
    next_seq: u64,
    next_batch: u64,
    /// Events enqueued before this order go out without waiting.
    flush_mark: u64,
    state: State,
    /// Where the next search for a ready partition starts (fairness).
    cursor: usize,
    /// Bytes of an empty batch (its envelope).
    envelope: usize,
    events: VecDeque<BufferedEvent<E>>,
}

impl<E> BufferedProducer<E> {
    /// A producer with `options`; an error when they are invalid.
    pub fn new(options: BufferedOptions) -> Result<Self, ClientError> {
        options.validate()?;
        let envelope = envelope_size(options.idempotent);
        Ok(BufferedProducer {
            options,
            partitions: Vec::new(),
            buffers: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            round_robin: RoundRobin::new(),
            next_seq: 0,
            next_batch: 1,
            flush_mark: 0,
            state: State::Open,
            cursor: 0,
            envelope,
            events: VecDeque::new(),
        })
    }

    /// The options.
    pub fn options(&self) -> &BufferedOptions {
        &self.options
    }

    /// The hub's partition ids, in the order the service lists them
    /// (`partition_ids` of the hub's runtime information): keys are hashed
    /// over this order.
    pub fn set_partitions(&mut self, ids: Vec<String>) {
        self.partitions = ids;
    }

    /// The partition ids routed over.
    pub fn partitions(&self) -> &[String] {
        &self.partitions
    }

    /// The largest batch: the link's max-message-size once it is known.
    pub fn set_max_batch_bytes(&mut self, max: usize) {
        self.options.max_batch_bytes = max.max(256);
    }

    /// The partition `event` goes to by `route`, without enqueueing it.
    pub fn route(&mut self, event: &EventData, route: &Route) -> Result<String, EnqueueError> {
        if self.partitions.is_empty() {
            return Err(EnqueueError::PartitionsUnknown);
        }
        match (route, &event.partition_key) {
            (Route::Partition(p), Some(k)) => Err(EnqueueError::KeyAndPartition {
                key: k.clone(),
                partition: p.clone(),
            }),
            (Route::Partition(p), None) => {
                if self.partitions.contains(p) {
                    Ok(p.clone())
                } else {
                    Err(EnqueueError::UnknownPartition {
                        partition: p.clone(),
                        known: self.partitions.join(", "),
                    })
                }
            }
            (Route::Auto, Some(k)) => Ok(resolve_partition(k, &self.partitions)
                .unwrap_or_default()
                .to_owned()),
            (Route::Auto, None) => Ok(self
                .round_robin
                .next_partition(&self.partitions)
                .unwrap_or_default()
                .to_owned()),
        }
    }

    /// True when `partition`'s buffer can take another event.
    pub fn has_room(&self, partition: &str) -> bool {
        self.buffers
            .get(partition)
            .is_none_or(|b| b.queue.len() < self.options.max_buffered_events_per_partition)
    }

    /// Buffers `event` for the partition `route` picks; returns that
    /// partition. [`EnqueueError::Full`] when its buffer is full. A caller
    /// that waits for room instead routes once ([`route`](Self::route)),
    /// then asks [`can_take`](Self::can_take) and buffers with
    /// [`enqueue_to`](Self::enqueue_to) when it may.
    pub fn enqueue(
        &mut self,
        now: Instant,
        event: EventData,
        route: Route,
    ) -> Result<String, EnqueueError> {
        if self.state != State::Open {
            return Err(EnqueueError::Closed);
        }
        // A full buffer refuses before the round-robin counter moves on.
        if let Route::Partition(p) = &route {
            self.can_take(&event, p)?;
        }
        let partition = self.route(&event, &route)?;
        self.enqueue_to(now, event, &partition)?;
        Ok(partition)
    }

    /// Whether `partition` takes `event` now: an error when the producer
    /// is closing, the event is too large for a batch, or the partition's
    /// buffer is full ([`EnqueueError::Full`], which passes as batches go
    /// out).
    pub fn can_take(&self, event: &EventData, partition: &str) -> Result<(), EnqueueError> {
        self.size_if_taken(event, partition).map(|_| ())
    }

    fn size_if_taken(&self, event: &EventData, partition: &str) -> Result<usize, EnqueueError> {
        if self.state != State::Open {
            return Err(EnqueueError::Closed);
        }
        let size = batched_size(event, self.options.idempotent);
        let max = self.options.max_batch_bytes;
        if self.envelope + size > max {
            return Err(EnqueueError::TooLarge {
                size: self.envelope + size,
                max,
            });
        }
        if !self.has_room(partition) {
            return Err(self.full(partition));
        }
        Ok(size)
    }

    /// Buffers `event` for `partition` (routed with
    /// [`route`](Self::route)); refused as [`can_take`](Self::can_take)
    /// refuses.
    pub fn enqueue_to(
        &mut self,
        now: Instant,
        event: EventData,
        partition: &str,
    ) -> Result<(), EnqueueError> {
        let size = self.size_if_taken(&event, partition)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let b = self.buffers.entry(partition.to_owned()).or_default();
        b.bytes += size;
        b.queue.push_back(Queued {
            seq,
            event,
            size,
            at: now,
        });
        Ok(())
    }

    fn full(&self, partition: &str) -> EnqueueError {
        EnqueueError::Full {
            partition: partition.to_owned(),
            limit: self.options.max_buffered_events_per_partition,
        }
    }

    /// Every event buffered now goes out without waiting for a full batch
    /// or the maximum wait. Returns a mark for
    /// [`is_flushed`](Self::is_flushed).
    pub fn flush(&mut self) -> u64 {
        self.flush_mark = self.flush_mark.max(self.next_seq);
        self.next_seq
    }

    /// True once every event enqueued before `mark` (from
    /// [`flush`](Self::flush)) has had its batch's outcome reported.
    pub fn is_flushed(&self, mark: u64) -> bool {
        let buffered = self
            .buffers
            .values()
            .filter_map(|b| b.queue.front().map(|q| q.seq));
        let sending = self.in_flight.values().map(|f| f.first_seq);
        buffered.chain(sending).min().is_none_or(|s| s >= mark)
    }

    /// Takes no more events and sends everything buffered; done when
    /// [`is_idle`](Self::is_idle).
    pub fn close(&mut self) {
        self.state = State::Closing;
        self.flush();
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.state == State::Closing
    }

    /// True when nothing is buffered or in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.buffers.values().all(|b| b.queue.is_empty())
    }

    /// Events buffered, over every partition (not counting those in
    /// flight).
    pub fn buffered(&self) -> usize {
        self.buffers.values().map(|b| b.queue.len()).sum()
    }

    /// Events buffered for `partition`.
    pub fn buffered_for(&self, partition: &str) -> usize {
        self.buffers.get(partition).map_or(0, |b| b.queue.len())
    }

    /// Batches in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn may_send_more(&self) -> bool {
        self.options
            .max_concurrent_sends
            .is_none_or(|m| self.in_flight.len() < m)
    }

    /// Whether `b` has a batch to go at `now`: a batch's worth of bytes, a
    /// full buffer (so that a caller waiting for room does not wait for the
    /// maximum wait), a flush, a close, or an oldest event that waited the
    /// maximum wait.
    fn ready(&self, b: &PartitionBuffer, now: Instant) -> bool {
        let Some(front) = b.queue.front() else {
            return false;
        };
        b.in_flight < self.options.max_concurrent_sends_per_partition
            && (self.envelope + b.bytes >= self.options.max_batch_bytes
                || b.queue.len() >= self.options.max_buffered_events_per_partition
                || front.seq < self.flush_mark
                || self.state == State::Closing
                || front.at + self.options.max_wait <= now)
    }

    /// The next batch to send, if one is due at `now`.
    #[must_use]
    pub fn poll_batch(&mut self, now: Instant) -> Option<ReadyBatch> {
        if !self.may_send_more() || self.buffers.is_empty() {
            return None;
        }
        let names: Vec<String> = self.buffers.keys().cloned().collect();
        let n = names.len();
        let start = self.cursor % n;
        let pick = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.ready(&self.buffers[&names[i]], now))?;
        self.cursor = pick + 1;
        let partition = names[pick].clone();
        let max = self.options.max_batch_bytes;
        let envelope = self.envelope;
        let b = self.buffers.get_mut(&partition)?;
        let mut size = envelope;
        let mut events = Vec::new();
        let mut first_seq = None;
        while let Some(front) = b.queue.front() {
            if !events.is_empty() && size + front.size > max {
                break;
            }
            let q = b.queue.pop_front()?;
            size += q.size;
            b.bytes -= q.size;
            first_seq.get_or_insert(q.seq);
            events.push(q.event);
        }
        b.in_flight += 1;
        let id = BatchId(self.next_batch);
        self.next_batch += 1;
        self.in_flight.insert(
            id,
            InFlight {
                partition: partition.clone(),
                first_seq: first_seq.unwrap_or(0),
                events: events.clone(),
            },
        );
        Some(ReadyBatch {
            id,
            partition,
            events,
        })
    }

    /// The outcome of batch `id`; reported as a [`BufferedEvent`].
    pub fn batch_done(&mut self, id: BatchId, result: Result<(), E>) {
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        if let Some(b) = self.buffers.get_mut(&f.partition) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
        self.events.push_back(match result {
            Ok(()) => BufferedEvent::Sent {
                id,
                partition: f.partition,
                events: f.events,
            },
            Err(error) => BufferedEvent::Failed {
                id,
                partition: f.partition,
                events: f.events,
                error,
            },
        });
    }

    /// The next batch outcome.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<BufferedEvent<E>> {
        self.events.pop_front()
    }

    /// When the next partly filled batch is due (its oldest event reaches
    /// the maximum wait), for a partition that may send.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.may_send_more() {
            return None;
        }
        self.buffers
            .values()
            .filter(|b| b.in_flight < self.options.max_concurrent_sends_per_partition)
            .filter_map(|b| b.queue.front().map(|q| q.at + self.options.max_wait))
            .min()
    }
}

/// Bytes of an empty batch.
fn envelope_size(idempotent: bool) -> usize {
    if idempotent {
        super::idempotent::reserved_envelope_len()
    } else {
        EventBatch::with_mixed_keys(usize::MAX).size()
    }
}

#[cfg(test)]
#[path = "../../tests/unit/buffered.rs"]
mod tests;
