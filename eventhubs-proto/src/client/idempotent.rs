//! Idempotent publishing ("producer groups"): a partition sender attaches
//! with the `com.microsoft:idempotent-producer` capability and either none
//! or all three of the link properties `com.microsoft:producer-id` (long),
//! `com.microsoft:producer-epoch` (short) and
//! `com.microsoft:producer-sequence-number` (int), a null asking the
//! service to choose; the service's attach carries the effective values.
//! Every event then carries the same three keys as message annotations,
//! its sequence number one past the event before it, and the service
//! appends an event only once per producer group, owner level and number:
//! a transfer sent again after a lost acknowledgement is acknowledged
//! without being appended twice. The protocol is the one of the .NET
//! (`EnableIdempotentPartitions`) and JavaScript (`enableIdempotentRetries`)
//! SDKs.
//!
//! How this client keeps the numbers right, where those SDKs are silent or
//! differ:
//! - numbers are given to a transfer when it is first sent, not when it is
//!   queued, and a partition has one transfer in flight at a time (as both
//!   SDKs allow one send at a time per partition): a transfer refused for a
//!   transient reason, or cut off with its link or connection, goes again
//!   with the numbers it had, and nothing behind it has numbers that could
//!   leave a gap;
//! - the state advances when the service accepts a transfer. A send that
//!   fails without an answer (its deadline passed while the link was down)
//!   gives no number back on its own: every new link asks the service for
//!   its last sequence number (the sequence property null, producer id and
//!   owner level kept, as .NET does once it knows them), and numbering goes
//!   on from what the service says;
//! - that answer is checked against what this client numbered: a service
//!   that is past every number this client gave, or behind what it already
//!   acknowledged, means another producer uses the same group and owner
//!   level, and the sends waiting fail with
//!   [`IdempotentError::StateMismatch`];
//! - sequence numbers run from 0 to `i32::MAX` and then start again at 0
//!   (.NET's `NextSequence`).

use bytes::Bytes;

use super::error::ClientError;
use super::event::{partition_key_annotations, EventData};
use super::senders::SparePayloads;
use crate::codec::message::{batch_section_len, Batch, Message, BATCH_MESSAGE_FORMAT};
use crate::codec::messaging::{AnnotationKey, Annotations};
use crate::codec::performatives::{AmqpError, Fields};
use crate::codec::{Encode, Form, Symbol, Value};

/// The desired capability of an idempotent sender link.
pub const IDEMPOTENT_PRODUCER_CAPABILITY: &str = "com.microsoft:idempotent-producer";
/// Link property and message annotation: the producer group id (long).
pub const PRODUCER_ID: &str = "com.microsoft:producer-id";
/// Link property and message annotation: the producer's owner level
/// (short).
pub const PRODUCER_EPOCH: &str = "com.microsoft:producer-epoch";
/// Link property (the last sequence number published) and message
/// annotation (the event's own sequence number), an int.
pub const PRODUCER_SEQUENCE_NUMBER: &str = "com.microsoft:producer-sequence-number";

/// Where an idempotent producer starts on one partition. A field left
/// `None` is chosen by the service: a new producer group id, its current
/// owner level, its last sequence number.
///
/// To continue after a restart with the numbering the service kept, give
/// the producer group id and owner level read from
/// [`PartitionPublishingState`] and leave the starting sequence number
/// unset: the service reports its last sequence number for the group. A
/// starting sequence number overrides the service's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionPublishingOptions {
    /// The producer group to publish in.
    pub producer_group_id: Option<i64>,
    /// The owner level (producer epoch): a producer of the group with a
    /// higher one takes the partition over.
    pub owner_level: Option<i16>,
    /// The sequence number to count from: the first event sent gets the
    /// next one.
    pub starting_sequence_number: Option<i32>,
}

impl PartitionPublishingOptions {
    /// Nothing chosen: the service assigns everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// In producer group `id`.
    #[must_use]
    pub fn producer_group_id(mut self, id: i64) -> Self {
        self.producer_group_id = Some(id);
        self
    }

    /// With owner level `level`.
    #[must_use]
    pub fn owner_level(mut self, level: i16) -> Self {
        self.owner_level = Some(level);
        self
    }

    /// Counting from `last`: the first event sent gets the number after it.
    #[must_use]
    pub fn starting_sequence_number(mut self, last: i32) -> Self {
        self.starting_sequence_number = Some(last);
        self
    }

    /// The options that continue from `state` (its group, owner level and
    /// last sequence number).
    pub fn from_state(state: PartitionPublishingState) -> Self {
        PartitionPublishingOptions {
            producer_group_id: Some(state.producer_group_id),
            owner_level: Some(state.owner_level),
            starting_sequence_number: Some(state.last_published_sequence_number),
        }
    }

    /// What is wrong with these options, if anything.
    pub fn validate(&self) -> Result<(), String> {
        match self.starting_sequence_number {
            Some(n) if n < 0 => Err(format!(
                "the starting sequence number {n} is negative (sequence numbers run from 0 to {})",
                i32::MAX
            )),
            _ => Ok(()),
        }
    }
}

/// The publishing state of an idempotent producer on one partition, as
/// the service last confirmed it: its attach, then every accepted
/// transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionPublishingState {
    /// The producer group.
    pub producer_group_id: i64,
    /// The owner level (producer epoch).
    pub owner_level: i16,
    /// The sequence number of the last event the service accepted (or
    /// reported when the link attached).
    pub last_published_sequence_number: i32,
}

/// Why idempotent publishing failed. Every variant is final for the sends
/// it fails; the messages say what the application can do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotentError {
    /// `com.microsoft:producer-epoch-stolen`: a producer of the same group
    /// attached to the partition with a higher owner level.
    #[error("partition {partition}: a producer with a higher owner level took over producer group {} (this one has owner level {}); this producer can no longer publish to the partition: stop it, or take the partition back with a higher owner level ({})", or_unknown(*.producer_group_id), or_unknown(*.owner_level), error_text(.error))]
    EpochStolen {
        /// The partition.
        partition: String,
        /// The producer group, when known.
        producer_group_id: Option<i64>,
        /// Our owner level, when known.
        owner_level: Option<i16>,
        /// The service's error.
        error: AmqpError,
    },
    /// `com.microsoft:out-of-order-sequence`: the service expected another
    /// sequence number.
    #[error("partition {partition}: the service expected another sequence number than {first_sequence_number} from producer group {producer_group_id}: another producer may be publishing with the same group and owner level, or the starting sequence number was wrong; the next send reads the service's sequence number again and goes on from it ({})", error_text(.error))]
    OutOfOrderSequence {
        /// The partition.
        partition: String,
        /// The producer group.
        producer_group_id: i64,
        /// The first sequence number of the refused transfer.
        first_sequence_number: i32,
        /// The service's error.
        error: AmqpError,
    },
    /// A new link found the service's last sequence number outside what
    /// this producer numbered: another producer publishes with the same
    /// group and owner level, or the group's state was reset.
    #[error("partition {partition}: the service's last sequence number for producer group {producer_group_id} is {service}, but this producer had numbered events {acknowledged}..={numbered} only: another producer is publishing with the same group and owner level, or the group's sequence was reset; give each producer its own group (or a higher owner level); the next send goes on from the service's number")]
    StateMismatch {
        /// The partition.
        partition: String,
        /// The producer group.
        producer_group_id: i64,
        /// The last sequence number the service had acknowledged to us.
        acknowledged: i32,
        /// The last sequence number we gave an event.
        numbered: i32,
        /// What the service reported.
        service: i32,
    },
    /// The service attached the link without the producer properties: it
    /// does not offer idempotent publishing on this hub.
    #[error("partition {partition}: the service attached the link without a producer id, owner level and sequence number, so it does not offer idempotent publishing here: turn idempotent publishing off for this hub")]
    NotSupported {
        /// The partition.
        partition: String,
    },
}

impl IdempotentError {
    /// The service's error behind this one, if it sent one.
    pub fn amqp_error(&self) -> Option<&AmqpError> {
        match self {
            IdempotentError::EpochStolen { error, .. }
            | IdempotentError::OutOfOrderSequence { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn or_unknown<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

fn error_text(e: &AmqpError) -> String {
    match e.description.as_deref() {
        Some(d) if !d.is_empty() => format!("{}: {d}", e.condition),
        _ => e.condition.to_string(),
    }
}

/// The sequence number after `n`: `n + 1`, or 0 after `i32::MAX`.
pub fn next_sequence_number(n: i32) -> i32 {
    n.checked_add(1).unwrap_or(0)
}

/// The sequence number `count` events after `last`, wrapping as
/// [`next_sequence_number`] does.
pub fn advance_sequence_number(last: i32, count: u32) -> i32 {
    // Sequence numbers live in 0..=i32::MAX, 2^31 values.
    let space = 1i64 << 31;
    let n = (i64::from(last) + i64::from(count)).rem_euclid(space);
    i32::try_from(n).unwrap_or(0)
}

/// How far `to` is past `from` in the wrapping sequence space, or `None`
/// when it is behind (more than half the space ahead counts as behind).
fn distance(from: i32, to: i32) -> Option<u32> {
    let space = 1i64 << 31;
    let d = (i64::from(to) - i64::from(from)).rem_euclid(space);
    (d < space / 2).then(|| u32::try_from(d).unwrap_or(u32::MAX))
}

/// `n` within `lo..=hi` of the wrapping sequence space.
fn within(lo: i32, hi: i32, n: i32) -> bool {
    match (distance(lo, n), distance(lo, hi)) {
        (Some(d), Some(span)) => d <= span,
        _ => false,
    }
}

/// The sequence numbers a transfer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) first: i32,
    pub(super) last: i32,
}

/// The idempotent state of one partition sender.
#[derive(Debug)]
pub(super) struct Idempotence {
    pub(super) partition: String,
    /// What the first attach asks for; later attaches ask for the
    /// group and owner level known, and the service's sequence number.
    requested: PartitionPublishingOptions,
    /// The state the service confirmed; `None` before the first attach.
    pub(super) state: Option<PartitionPublishingState>,
    /// The last sequence number given to a transfer that may have reached
    /// the service.
    numbered: Option<i32>,
    /// The next attach adopts the service's state without checking it
    /// (after an out-of-order refusal, which has been reported).
    resync: bool,
}

impl Idempotence {
    pub(super) fn new(partition: String, requested: PartitionPublishingOptions) -> Self {
        Idempotence {
            partition,
            requested,
            state: None,
            numbered: None,
            resync: false,
        }
    }

    /// The link properties of the next attach: none when nothing is
    /// chosen, else all three, null where the service is to choose.
    pub(super) fn link_properties(&self) -> Option<Fields> {
        let (id, epoch, seq) = match self.state {
            Some(s) => (Some(s.producer_group_id), Some(s.owner_level), None),
            None => (
                self.requested.producer_group_id,
                self.requested.owner_level,
                self.requested.starting_sequence_number,
            ),
        };
        if id.is_none() && epoch.is_none() && seq.is_none() {
            return None;
        }
        let mut f = Fields::new();
        f.insert(
            Symbol::from_static(PRODUCER_ID),
            id.map_or(Value::Null, Value::Long),
        );
        f.insert(
            Symbol::from_static(PRODUCER_EPOCH),
            epoch.map_or(Value::Null, Value::Short),
        );
        f.insert(
            Symbol::from_static(PRODUCER_SEQUENCE_NUMBER),
            seq.map_or(Value::Null, Value::Int),
        );
        Some(f)
    }

    /// The service's attach arrived with `properties`: the effective
    /// state, checked against what this producer numbered. `Ok(Some(e))`
    /// adopts the service's state but fails the sends waiting with `e`;
    /// `Err` when the service offers no idempotent publishing.
    /// `stamped_waiting` is the range of a transfer still waiting with its
    /// numbers, if there is one.
    pub(super) fn attached(
        &mut self,
        properties: Option<&Fields>,
        stamped_waiting: Option<Stamp>,
    ) -> Result<Option<IdempotentError>, Box<IdempotentError>> {
        let get = |key: &str| properties.and_then(|p| p.get(key)).and_then(Value::as_i64);
        let parsed = (
            get(PRODUCER_ID),
            get(PRODUCER_EPOCH).and_then(|v| i16::try_from(v).ok()),
            get(PRODUCER_SEQUENCE_NUMBER).and_then(|v| i32::try_from(v).ok()),
        );
        let (Some(id), Some(epoch), Some(last)) = parsed else {
            return Err(Box::new(IdempotentError::NotSupported {
                partition: self.partition.clone(),
            }));
        };
        let mut mismatch = None;
        if let (Some(old), false) = (self.state, self.resync) {
            let acked = old.last_published_sequence_number;
            let numbered = self.numbered.unwrap_or(acked);
            if !within(acked, numbered, last) {
                mismatch = Some(IdempotentError::StateMismatch {
                    partition: self.partition.clone(),
                    producer_group_id: id,
                    acknowledged: acked,
                    numbered,
                    service: last,
                });
            }
        }
        self.resync = false;
        self.state = Some(PartitionPublishingState {
            producer_group_id: id,
            owner_level: epoch,
            last_published_sequence_number: last,
        });
        // A transfer still holding numbers goes again with them (unless the
        // sends waiting fail); otherwise numbering goes on from the
        // service's number.
        self.numbered = match (stamped_waiting, &mismatch) {
            (Some(s), None) => Some(s.last),
            _ => None,
        };
        Ok(mismatch)
    }

    /// The transfer carrying `stamp` was accepted.
    pub(super) fn accepted(&mut self, stamp: Stamp) {
        if let Some(s) = self.state.as_mut() {
            // An acceptance behind the state (a late answer after a newer
            // link's report) changes nothing.
            if distance(s.last_published_sequence_number, stamp.last).is_some() {
                s.last_published_sequence_number = stamp.last;
            }
        }
    }

    /// After an out-of-order refusal: the next attach takes the service's
    /// state as it is.
    pub(super) fn resync(&mut self) {
        self.resync = true;
        self.numbered = None;
    }

    /// Gives `pending` its numbers: the next after the last one the
    /// service accepted or reported. With one transfer in flight at a
    /// time, every transfer numbered before has had its answer (accepted,
    /// so the state moved on; refused, so its numbers are free again) or
    /// its link was lost, and the new link's report is the state. `Err`
    /// before the service's state is known (the transfer is given back).
    pub(super) fn stamp(
        &mut self,
        pending: Pending,
        spare: &mut SparePayloads,
    ) -> Result<(Bytes, u32, Stamp), Pending> {
        let Some(state) = self.state else {
            return Err(pending);
        };
        let (bytes, format, stamp) = pending.stamp(
            state.producer_group_id,
            state.owner_level,
            state.last_published_sequence_number,
            spare,
        );
        self.numbered = Some(stamp.last);
        Ok((bytes, format, stamp))
    }

    /// What the service refused, as a typed error, when the condition is
    /// one of idempotent publishing's.
    pub(super) fn refusal(
        &self,
        error: &AmqpError,
        stamp: Option<Stamp>,
    ) -> Option<IdempotentError> {
        match error.condition.as_str() {
            "com.microsoft:producer-epoch-stolen" => Some(IdempotentError::EpochStolen {
                partition: self.partition.clone(),
                producer_group_id: self
                    .state
                    .map(|s| s.producer_group_id)
                    .or(self.requested.producer_group_id),
                owner_level: self
                    .state
                    .map(|s| s.owner_level)
                    .or(self.requested.owner_level),
                error: error.clone(),
            }),
            "com.microsoft:out-of-order-sequence" => Some(IdempotentError::OutOfOrderSequence {
                partition: self.partition.clone(),
                producer_group_id: self.state.map_or(0, |s| s.producer_group_id),
                first_sequence_number: stamp.map_or(0, |s| s.first),
                error: error.clone(),
            }),
            _ => None,
        }
    }
}

/// A transfer of an idempotent sender before it has its numbers: the
/// events as messages carrying the producer annotations with the widest
/// values, so the size it was cut to is an upper bound of what it is once
/// numbered.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    /// The batch envelope; `None` for a single event sent as a plain
    /// message.
    envelope: Option<Box<Message>>,
    messages: Vec<Message>,
}

/// Sets the three producer annotations.
fn put_producer(a: &mut Annotations, id: i64, epoch: i16, sequence: i32) {
    a.insert(AnnotationKey::from(PRODUCER_ID), Value::Long(id));
    a.insert(AnnotationKey::from(PRODUCER_EPOCH), Value::Short(epoch));
    a.insert(
        AnnotationKey::from(PRODUCER_SEQUENCE_NUMBER),
        Value::Int(sequence),
    );
}

/// `event` as a message with the widest producer annotations.
fn reserved_message(event: &EventData) -> Message {
    let mut m = event.to_message();
    put_producer(
        m.message_annotations.get_or_insert_with(Annotations::new),
        i64::MIN,
        i16::MIN,
        i32::MIN,
    );
    m
}

/// A batch envelope for events with `key` (`None` for mixed keys or none).
fn reserved_envelope(key: Option<&str>) -> Message {
    let mut a = key.map(partition_key_annotations).unwrap_or_default();
    put_producer(&mut a, i64::MIN, i16::MIN, i32::MIN);
    Message {
        message_annotations: Some(a),
        ..Message::default()
    }
}

/// Bytes `event` takes in a batch; with `idempotent`, with room for the
/// producer annotations it will carry.
pub(crate) fn batched_size(event: &EventData, idempotent: bool) -> usize {
    let m = if idempotent {
        reserved_message(event)
    } else {
        event.to_message()
    };
    batch_section_len(&m, Form::Compact)
}

/// Bytes of an idempotent batch's envelope.
pub(crate) fn reserved_envelope_len() -> usize {
    envelope_len(&reserved_envelope(None))
}

fn envelope_len(envelope: &Message) -> usize {
    Batch {
        envelope,
        events: &[],
    }
    .encoded_len_as(Form::Compact)
}

impl Pending {
    /// Numbers the events `last + 1`, `last + 2`, ...; the envelope gets the
    /// first event's annotations. Returns the payload, its message format
    /// and the numbers.
    fn stamp(
        mut self,
        id: i64,
        epoch: i16,
        last: i32,
        spare: &mut SparePayloads,
    ) -> (Bytes, u32, Stamp) {
        // Sized before numbering, while the producer annotations hold their
        // widest placeholders: every batch of the same events then asks the
        // spare buffers for the same room, however its numbers encode.
        let room = self.envelope.as_ref().map(|envelope| {
            Batch {
                envelope,
                events: &self.messages,
            }
            .encoded_len_as(Form::Compact)
        });
        let count = u32::try_from(self.messages.len()).unwrap_or(u32::MAX);
        let first = next_sequence_number(last);
        for (i, m) in self.messages.iter_mut().enumerate() {
            let seq = advance_sequence_number(last, u32::try_from(i).unwrap_or(0) + 1);
            put_producer(
                m.message_annotations.get_or_insert_with(Annotations::new),
                id,
                epoch,
                seq,
            );
        }
        let stamp = Stamp {
            first,
            last: advance_sequence_number(last, count),
        };
        match self.envelope.as_mut() {
            None => {
                let m = self.messages.pop().unwrap_or_default();
                (m.to_bytes(), 0, stamp)
            }
            Some(envelope) => {
                put_producer(
                    envelope
                        .message_annotations
                        .get_or_insert_with(Annotations::new),
                    id,
                    epoch,
                    first,
                );
                let b = Batch {
                    envelope,
                    events: &self.messages,
                };
                let room = room.unwrap_or_default();
                let mut v = spare.take(room);
                v.reserve_exact(room);
                b.encode_as(Form::Compact, &mut v);
                (Bytes::from(v), BATCH_MESSAGE_FORMAT, stamp)
            }
        }
    }

    /// Number of events.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.messages.len()
    }
}

/// `events` cut into transfers of at most `max` bytes once numbered: a
/// single event as a plain message, more as batches grouped by partition
/// key (keys in order of first appearance) or, with `mixed_keys`, in
/// order whatever their keys.
pub(super) fn split_pending(
    events: &[EventData],
    max: usize,
    mixed_keys: bool,
) -> Result<Vec<Pending>, super::batch::BatchError> {
    if let [event] = events {
        return single(reserved_message(event), max);
    }
    let mut keys: Vec<Option<&str>> = Vec::new();
    if mixed_keys {
        keys.push(None);
    } else {
        for e in events {
            let k = e.partition_key.as_deref();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let group = events
            .iter()
            .enumerate()
            .filter(|(_, e)| mixed_keys || e.partition_key.as_deref() == key)
            .map(|(i, e)| (i, reserved_message(e)));
        fill(&mut out, group, reserved_envelope(key), max)?;
    }
    Ok(out)
}

/// A transfer already encoded by the caller (a plain message, or a batch
/// with message format 0x80013700) as transfers of at most `max` bytes
/// once numbered: its events keep their sections and the envelope its
/// annotations, with the producer annotations added. An error for bytes
/// that are not a message or a batch.
pub(super) fn pending_from_encoded(
    payload: &Bytes,
    format: u32,
    max: usize,
) -> Result<Vec<Pending>, ClientError> {
    use crate::codec::Decode;
    let bad = |e: crate::codec::DecodeError| {
        ClientError::InvalidArgument(format!("the encoded batch does not decode: {e}"))
    };
    let outer = Message::decode_all(payload).map_err(bad)?;
    let reserve = |mut m: Message| {
        put_producer(
            m.message_annotations.get_or_insert_with(Annotations::new),
            i64::MIN,
            i16::MIN,
            i32::MIN,
        );
        m
    };
    if format != BATCH_MESSAGE_FORMAT {
        return Ok(single(reserve(outer), max)?);
    }
    let events = outer.unbatch().map_err(bad)?;
    let envelope = reserve(Message {
        header: outer.header,
        delivery_annotations: outer.delivery_annotations,
        message_annotations: outer.message_annotations,
        properties: outer.properties,
        application_properties: outer.application_properties,
        footer: outer.footer,
        ..Message::default()
    });
    let mut out = Vec::new();
    fill(
        &mut out,
        events.into_iter().map(reserve).enumerate(),
        envelope,
        max,
    )?;
    Ok(out)
}

/// One event sent as a plain message.
fn single(m: Message, max: usize) -> Result<Vec<Pending>, super::batch::BatchError> {
    let size = m.encoded_len();
    if size > max {
        return Err(super::batch::BatchError::EventTooLarge {
            index: 0,
            size,
            max,
        });
    }
    Ok(vec![Pending {
        envelope: None,
        messages: vec![m],
    }])
}

/// Fills batches with `envelope` of at most `max` bytes from `messages`
/// (with their index in what the caller gave), in order.
fn fill(
    out: &mut Vec<Pending>,
    messages: impl Iterator<Item = (usize, Message)>,
    envelope: Message,
    max: usize,
) -> Result<(), super::batch::BatchError> {
    let empty = envelope_len(&envelope);
    let mut size = empty;
    let mut batch = Vec::new();
    for (index, m) in messages {
        let add = batch_section_len(&m, Form::Compact);
        if empty + add > max {
            return Err(super::batch::BatchError::EventTooLarge {
                index,
                size: empty + add,
                max,
            });
        }
        if size + add > max {
            out.push(Pending {
                envelope: Some(Box::new(envelope.clone())),
                messages: std::mem::take(&mut batch),
            });
            size = empty;
        }
        size += add;
        batch.push(m);
    }
    if !batch.is_empty() {
        out.push(Pending {
            envelope: Some(Box::new(envelope)),
            messages: batch,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decode;

    fn ev(n: usize, key: Option<&str>) -> EventData {
        let mut e = EventData::new(vec![b'x'; n]);
        e.partition_key = key.map(str::to_owned);
        e
    }

    fn producer_annotations(m: &Message) -> (i64, i16, i32) {
        let a = m.message_annotations.as_ref().expect("annotations");
        let get = |k: &str| a.get(k).cloned().expect(k);
        match (
            get(PRODUCER_ID),
            get(PRODUCER_EPOCH),
            get(PRODUCER_SEQUENCE_NUMBER),
        ) {
            (Value::Long(id), Value::Short(epoch), Value::Int(seq)) => (id, epoch, seq),
            other => panic!("wrong annotation types: {other:?}"),
        }
    }

    #[test]
    fn sequence_numbers_wrap_to_zero_after_the_largest_int() {
        assert_eq!(next_sequence_number(5), 6);
        assert_eq!(next_sequence_number(i32::MAX), 0);
        assert_eq!(advance_sequence_number(i32::MAX - 1, 3), 1);
        assert_eq!(advance_sequence_number(-1, 1), 0);
        assert!(within(i32::MAX - 2, 3, 1));
        assert!(!within(5, 10, 4));
        assert!(!within(5, 10, 11));
        assert!(within(5, 5, 5));
    }

    #[test]
    fn link_properties_are_all_or_none() {
        let none = Idempotence::new("0".into(), PartitionPublishingOptions::new());
        assert_eq!(none.link_properties(), None);
        let some = Idempotence::new("0".into(), PartitionPublishingOptions::new().owner_level(3));
        let p = some.link_properties().expect("all three");
        assert_eq!(p.len(), 3);
        assert_eq!(p.get(&Symbol::from_static(PRODUCER_ID)), Some(&Value::Null));
        assert_eq!(
            p.get(&Symbol::from_static(PRODUCER_EPOCH)),
            Some(&Value::Short(3))
        );
        assert_eq!(
            p.get(&Symbol::from_static(PRODUCER_SEQUENCE_NUMBER)),
            Some(&Value::Null)
        );
    }

    fn reply(id: i64, epoch: i16, last: i32) -> Fields {
        let mut f = Fields::new();
        f.insert(Symbol::from_static(PRODUCER_ID), Value::Long(id));
        f.insert(Symbol::from_static(PRODUCER_EPOCH), Value::Short(epoch));
        f.insert(
            Symbol::from_static(PRODUCER_SEQUENCE_NUMBER),
            Value::Int(last),
        );
        f
    }

    #[test]
    fn a_later_attach_asks_for_the_services_sequence_and_checks_it() {
        let mut i = Idempotence::new("0".into(), PartitionPublishingOptions::new());
        assert_eq!(i.attached(Some(&reply(7, 0, -1)), None), Ok(None));
        // Numbered 0..=2, never answered: the service may have 0..=2.
        let pending = split_pending(&[ev(1, None), ev(1, None), ev(1, None)], 1 << 20, false)
            .unwrap()
            .remove(0);
        let (_, _, stamp) = i.stamp(pending, &mut SparePayloads::default()).unwrap();
        assert_eq!(stamp, Stamp { first: 0, last: 2 });
        let p = i.link_properties().unwrap();
        assert_eq!(
            p.get(&Symbol::from_static(PRODUCER_ID)),
            Some(&Value::Long(7))
        );
        assert_eq!(
            p.get(&Symbol::from_static(PRODUCER_SEQUENCE_NUMBER)),
            Some(&Value::Null),
            "the service says where it is"
        );
        // The service has none of them, then (a later link) all of them.
        assert_eq!(i.attached(Some(&reply(7, 0, -1)), Some(stamp)), Ok(None));
        assert_eq!(i.attached(Some(&reply(7, 0, 2)), Some(stamp)), Ok(None));
        assert_eq!(i.state.unwrap().last_published_sequence_number, 2);
        // Past everything numbered: another producer of the group.
        let err = i.attached(Some(&reply(7, 0, 9)), Some(stamp)).unwrap();
        assert!(
            matches!(err, Some(IdempotentError::StateMismatch { service: 9, .. })),
            "{err:?}"
        );
        assert_eq!(
            i.attached(None, None),
            Err(Box::new(IdempotentError::NotSupported {
                partition: "0".into()
            }))
        );
    }

    #[test]
    fn stamped_batches_carry_consecutive_numbers_and_fit_what_was_reserved() {
        let events: Vec<EventData> = (0..50).map(|i| ev(300, [None, Some("a")][i % 2])).collect();
        let max = 4096;
        let pendings = split_pending(&events, max, true).unwrap();
        assert!(pendings.len() > 1);
        let mut i = Idempotence::new("0".into(), PartitionPublishingOptions::new());
        i.attached(Some(&reply(i64::MAX, 2, i32::MAX - 10)), None)
            .unwrap();
        let mut expected = next_sequence_number(i32::MAX - 10);
        for p in pendings {
            let count = p.len();
            let (bytes, format, stamp) = i.stamp(p, &mut SparePayloads::default()).unwrap();
            assert!(bytes.len() <= max, "{} > {max}", bytes.len());
            assert_eq!(format, BATCH_MESSAGE_FORMAT);
            let outer = Message::decode_all(&bytes).unwrap();
            assert_eq!(producer_annotations(&outer), (i64::MAX, 2, stamp.first));
            let inner = outer.unbatch().unwrap();
            assert_eq!(inner.len(), count);
            for m in inner {
                assert_eq!(producer_annotations(&m), (i64::MAX, 2, expected));
                expected = next_sequence_number(expected);
            }
            i.accepted(stamp);
        }
        assert!(expected < 100, "the numbers wrapped to 0");
        // A single event goes as a plain message.
        let p = split_pending(&[ev(10, Some("k"))], max, false)
            .unwrap()
            .remove(0);
        let (bytes, format, _) = i.stamp(p, &mut SparePayloads::default()).unwrap();
        assert_eq!(format, 0);
        let m = Message::decode_all(&bytes).unwrap();
        assert_eq!(producer_annotations(&m).2, expected);
        assert!(m
            .message_annotations
            .unwrap()
            .get("x-opt-partition-key")
            .is_some());
    }

    #[test]
    fn an_encoded_batch_is_numbered_keeping_its_sections() {
        let mut b = crate::client::EventBatch::new(Some("k".into()), 1 << 20);
        for i in 0..4u8 {
            let mut e = ev(50, Some("k"));
            e.set("i", Value::Long(i64::from(i)));
            b.try_add(&e).unwrap();
        }
        let (bytes, format) = b.encode();
        let pendings = pending_from_encoded(&bytes, format, 1 << 20).unwrap();
        assert_eq!(pendings.len(), 1);
        let mut i = Idempotence::new("0".into(), PartitionPublishingOptions::new());
        i.attached(Some(&reply(3, 0, 9)), None).unwrap();
        let (out, format, stamp) = i
            .stamp(
                pendings.into_iter().next().unwrap(),
                &mut SparePayloads::default(),
            )
            .unwrap();
        assert_eq!(
            stamp,
            Stamp {
                first: 10,
                last: 13
            }
        );
        let outer = Message::decode_all(&out).unwrap();
        assert_eq!(format, BATCH_MESSAGE_FORMAT);
        assert!(outer
            .message_annotations
            .as_ref()
            .unwrap()
            .get("x-opt-partition-key")
            .is_some());
        for (n, m) in outer.unbatch().unwrap().iter().enumerate() {
            assert_eq!(producer_annotations(m).2, 10 + n as i32);
            let prop = m.application_properties.as_ref().unwrap().get("i").cloned();
            assert_eq!(prop, Some(Value::Long(n as i64)));
        }
        // Too tight once numbered: cut in two.
        let two = pending_from_encoded(&bytes, format, bytes.len() + 150).unwrap();
        assert_eq!(two.len(), 2);
        assert!(pending_from_encoded(&Bytes::from_static(b"\x00\x53"), 0, 100).is_err());
    }

    #[test]
    fn an_event_too_large_once_numbered_is_refused() {
        let e = ev(1000, None);
        let size = reserved_message(&e).encoded_len();
        assert!(split_pending(std::slice::from_ref(&e), size, false).is_ok());
        assert!(split_pending(&[e], size - 1, false).is_err());
    }
}
