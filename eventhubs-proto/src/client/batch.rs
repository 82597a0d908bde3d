//! Event batches (message format 0x80013700) with exact size accounting,
//! and azure-event-hubs-go's `BatchIterator`: a long list of events split into
//! batches that fit a link, grouped by partition key (message format
//! 0x80013700, one data section per event).

use bytes::Bytes;

use super::event::{partition_key_annotations, EventData};
use crate::codec::message::{batch_section_len, Batch, Message, BATCH_MESSAGE_FORMAT};
use crate::codec::{Encode, Form};

/// The max-message-size assumed until a link says otherwise (Standard
/// tier, and what the Python SDK falls back to).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1024 * 1024;

/// Why events could not be batched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// One event alone exceeds the limit.
    #[error("event {index} is {size} bytes once encoded in a batch; the link allows {max} bytes")]
    EventTooLarge {
        /// Its position in the list given.
        index: usize,
        /// Bytes the batch would take with it alone.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The event's partition key differs from the batch's.
    #[error("event partition key {found:?} differs from the batch's {expected:?}")]
    PartitionKeyMismatch {
        /// The batch's key.
        expected: Option<String>,
        /// The event's key.
        found: Option<String>,
    },
}

/// Events that travel in one transfer. Every event shares the batch's
/// partition key. [`EventBatch::size`] is the exact encoded size.
#[derive(Clone, Debug, PartialEq)]
pub struct EventBatch {
    max_size: usize,
    partition_key: Option<String>,
    /// Events keep their own keys ([`EventBatch::with_mixed_keys`]).
    mixed_keys: bool,
    envelope: Message,
    events: Vec<Message>,
    size: usize,
}

impl EventBatch {
    /// An empty batch for events with `partition_key`, limited to
    /// `max_size` bytes (the link's max-message-size).
    pub fn new(partition_key: Option<String>, max_size: usize) -> Self {
        let mut envelope = Message::default();
        if let Some(k) = &partition_key {
            envelope.message_annotations = Some(partition_key_annotations(k));
        }
        let size = Batch {
            envelope: &envelope,
            events: &[],
        }
        .encoded_len_as(Form::Compact);
        EventBatch {
            max_size,
            partition_key,
            mixed_keys: false,
            envelope,
            events: Vec::new(),
            size,
        }
    }

    /// An empty batch for one partition whose events may carry different
    /// partition keys, each kept on its event and none on the envelope:
    /// what a producer that routes keys to partitions itself (a buffered
    /// producer) sends to a partition.
    pub fn with_mixed_keys(max_size: usize) -> Self {
        EventBatch {
            mixed_keys: true,
            ..EventBatch::new(None, max_size)
        }
    }

    /// Adds `event` when it fits; `Ok(false)` when the batch is full.
    pub fn try_add(&mut self, event: &EventData) -> Result<bool, BatchError> {
        if !self.mixed_keys && event.partition_key != self.partition_key {
            return Err(BatchError::PartitionKeyMismatch {
                expected: self.partition_key.clone(),
                found: event.partition_key.clone(),
            });
        }
        let m = event.to_message();
        let add = batch_section_len(&m, Form::Compact);
        if self.size + add > self.max_size {
            return Ok(false);
        }
        self.size += add;
        self.events.push(m);
        Ok(true)
    }

    /// Exact bytes of the encoded batch.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The limit it was built for.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when it holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The partition key shared by its events.
    pub fn partition_key(&self) -> Option<&str> {
        self.partition_key.as_deref()
    }

    /// The transfer payload and its message format.
    pub fn encode(&self) -> (Bytes, u32) {
        self.encode_into(Vec::new())
    }

    /// [`encode`](Self::encode) into `buf`'s allocation (its contents are
    /// dropped): it grows only when it holds less than [`size`](Self::size).
    pub fn encode_into(&self, mut buf: Vec<u8>) -> (Bytes, u32) {
        let b = Batch {
            envelope: &self.envelope,
            events: &self.events,
        };
        buf.clear();
        buf.reserve_exact(self.size);
        b.encode_as(Form::Compact, &mut buf);
        debug_assert_eq!(buf.len(), self.size);
        (Bytes::from(buf), BATCH_MESSAGE_FORMAT)
    }
}

/// Splits `events` into batches of at most `max_size` bytes. Events are
/// grouped by partition key, keys in order of first appearance, and keep
/// their order within a key (azure-event-hubs-go's `BatchIterator`).
pub fn split_into_batches(
    events: &[EventData],
    max_size: usize,
) -> Result<Vec<EventBatch>, BatchError> {
    let mut keys: Vec<Option<&String>> = Vec::new();
    for e in events {
        let k = e.partition_key.as_ref();
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let mut batch = EventBatch::new(key.cloned(), max_size);
        for (index, e) in events.iter().enumerate() {
            if e.partition_key.as_ref() != key {
                continue;
            }
            if batch.try_add(e)? {
                continue;
            }
            if !batch.is_empty() {
                out.push(std::mem::replace(
                    &mut batch,
                    EventBatch::new(key.cloned(), max_size),
                ));
                if batch.try_add(e)? {
                    continue;
                }
            }
            // Too large even alone in a batch.
            let mut alone = EventBatch::new(key.cloned(), usize::MAX);
            alone.try_add(e)?;
            return Err(BatchError::EventTooLarge {
                index,
                size: alone.size(),
                max: max_size,
            });
        }
        if !batch.is_empty() {
            out.push(batch);
        }
    }
    Ok(out)
}

/// Splits `events` into batches of at most `max_size` bytes in their
/// order, whatever their partition keys (kept on each event).
pub fn split_into_batches_mixed(
    events: &[EventData],
    max_size: usize,
) -> Result<Vec<EventBatch>, BatchError> {
    let mut out = Vec::new();
    let mut batch = EventBatch::with_mixed_keys(max_size);
    for (index, e) in events.iter().enumerate() {
        if batch.try_add(e)? {
            continue;
        }
        if !batch.is_empty() {
            out.push(std::mem::replace(
                &mut batch,
                EventBatch::with_mixed_keys(max_size),
            ));
            if batch.try_add(e)? {
                continue;
            }
        }
        let mut alone = EventBatch::with_mixed_keys(usize::MAX);
        alone.try_add(e)?;
        return Err(BatchError::EventTooLarge {
            index,
            size: alone.size(),
            max: max_size,
        });
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    Ok(out)
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

    #[test]
    fn size_is_exact_and_the_limit_is_inclusive() {
        let mut b = EventBatch::new(Some("k".into()), 10_000);
        for n in [0, 10, 250, 251, 300, 4000] {
            assert!(b.try_add(&ev(n, Some("k"))).unwrap());
            let (bytes, format) = b.encode();
            assert_eq!(bytes.len(), b.size());
            assert_eq!(format, BATCH_MESSAGE_FORMAT);
        }
        let (bytes, _) = b.encode();
        let inner = Message::decode_all(&bytes).unwrap().unbatch().unwrap();
        assert_eq!(inner.len(), 6);
        // Exactly at the limit fits; one byte less does not.
        let one = ev(100, None);
        let mut probe = EventBatch::new(None, usize::MAX);
        probe.try_add(&one).unwrap();
        let exact = probe.size();
        assert!(EventBatch::new(None, exact).try_add(&one).unwrap());
        assert!(!EventBatch::new(None, exact - 1).try_add(&one).unwrap());
    }

    #[test]
    fn batches_are_byte_exact() {
        // Event "a": one data section, 00 53 75 a0 01 'a'.
        let data_a = [0x00, 0x53, 0x75, 0xa0, 0x01, b'a'];
        let mut b = EventBatch::new(None, 1024);
        assert!(b.try_add(&EventData::new(&b"a"[..])).unwrap());
        assert!(b.try_add(&EventData::new(&b"a"[..])).unwrap());
        // No envelope sections; each event in a data section of its own.
        let mut expected = Vec::new();
        for _ in 0..2 {
            expected.extend_from_slice(&[0x00, 0x53, 0x75, 0xa0, 0x06]);
            expected.extend_from_slice(&data_a);
        }
        assert_eq!(&b.encode().0[..], &expected[..]);
        assert_eq!(b.size(), 22);

        // With a partition key: message-annotations {x-opt-partition-key:
        // "k"} on the envelope and on each event.
        let mut annotations = vec![0x00, 0x53, 0x72, 0xc1, 0x19, 0x02, 0xa3, 0x13];
        annotations.extend_from_slice(b"x-opt-partition-key");
        annotations.extend_from_slice(&[0xa1, 0x01, b'k']);
        let mut keyed = EventData::new(&b"a"[..]);
        keyed.partition_key = Some("k".into());
        let mut b = EventBatch::new(Some("k".into()), 1024);
        assert!(b.try_add(&keyed).unwrap());
        assert!(b.try_add(&keyed).unwrap());
        let mut expected = annotations.clone();
        for _ in 0..2 {
            expected.extend_from_slice(&[0x00, 0x53, 0x75, 0xa0, 36]);
            expected.extend_from_slice(&annotations);
            expected.extend_from_slice(&data_a);
        }
        assert_eq!(&b.encode().0[..], &expected[..]);
        assert_eq!(b.size(), 112);
    }

    #[test]
    fn section_overhead_is_5_below_256_bytes_and_8_above() {
        let mut b = EventBatch::new(None, usize::MAX);
        let before = b.size();
        let small = ev(10, None);
        b.try_add(&small).unwrap();
        assert_eq!(b.size() - before, small.encoded_len() + 5);
        let before = b.size();
        let big = ev(1000, None);
        b.try_add(&big).unwrap();
        assert_eq!(b.size() - before, big.encoded_len() + 8);
    }

    #[test]
    fn splitting_groups_by_key_keeps_order_and_fills_batches() {
        let events: Vec<EventData> = (0..300)
            .map(|i| {
                let mut e = ev(1000, [None, Some("a"), Some("b")][i % 3]);
                e.set("i", crate::codec::Value::Long(i as i64));
                e
            })
            .collect();
        let batches = split_into_batches(&events, 32 * 1024).unwrap();
        let mut seen = Vec::new();
        for b in &batches {
            assert!(b.size() <= 32 * 1024);
            let (bytes, _) = b.encode();
            for m in Message::decode_all(&bytes).unwrap().unbatch().unwrap() {
                let i = m
                    .application_properties
                    .unwrap()
                    .get("i")
                    .unwrap()
                    .as_i64()
                    .unwrap();
                assert_eq!(
                    events[i as usize].partition_key.as_deref(),
                    b.partition_key()
                );
                seen.push(i);
            }
        }
        // Keys in order of first appearance: none, a, b; order kept within.
        let expected: Vec<i64> = (0..3)
            .flat_map(|k| (0..100).map(move |j| 3 * j + k))
            .collect();
        assert_eq!(seen, expected);
        // Each batch but the last of a key is full: the next event would not fit.
        for w in batches.windows(2) {
            if w[0].partition_key() == w[1].partition_key() {
                assert!(w[0].size() + 1000 > 32 * 1024 - 100);
            }
        }
    }

    #[test]
    fn mixed_key_batches_keep_each_events_key_and_none_on_the_envelope() {
        let events: Vec<EventData> = (0..40)
            .map(|i| ev(500, [None, Some("a"), Some("b")][i % 3]))
            .collect();
        let batches = split_into_batches_mixed(&events, 8 * 1024).unwrap();
        assert!(batches.len() > 1);
        let mut keys = Vec::new();
        for b in &batches {
            assert!(b.size() <= 8 * 1024);
            let (bytes, _) = b.encode();
            let outer = Message::decode_all(&bytes).unwrap();
            assert!(outer.message_annotations.is_none());
            for m in outer.unbatch().unwrap() {
                keys.push(
                    m.message_annotations
                        .and_then(|a| a.get("x-opt-partition-key").cloned())
                        .and_then(|v| v.as_str().map(str::to_owned)),
                );
            }
        }
        let expected: Vec<Option<String>> =
            events.iter().map(|e| e.partition_key.clone()).collect();
        assert_eq!(keys, expected, "order and keys kept");
    }

    #[test]
    fn an_event_too_large_alone_is_an_error() {
        let events = vec![ev(10, None), ev(2000, None)];
        let err = split_into_batches(&events, 1024).unwrap_err();
        assert!(
            matches!(
                err,
                BatchError::EventTooLarge {
                    index: 1,
                    max: 1024,
                    ..
                }
            ),
            "{err}"
        );
        assert!(EventBatch::new(None, 1000)
            .try_add(&ev(1, Some("k")))
            .is_err());
    }
}
