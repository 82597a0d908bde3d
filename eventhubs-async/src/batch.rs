//! [`EventDataBatch`]: a batch bounded by the sender link's
//! max-message-size, as every official SDK offers (`create_batch`,
//! `try_add`), with the client core's exact size accounting.

use eventhubs_proto::client::{EventBatch, EventData, SendTarget};

/// Events that go to the service in one transfer, at most the link's
/// max-message-size once encoded (its size is counted exactly, byte for
/// byte, as the batch will be encoded). Made by
/// [`Hub::create_batch`](crate::Hub::create_batch) for one destination (a
/// partition, a partition key, or the service's round-robin), filled with
/// [`try_add`](Self::try_add) and sent with
/// [`Hub::send_event_batch`](crate::Hub::send_event_batch).
///
/// This is the Go library's `EventBatch` (`NewEventBatch`) with a size
/// limit; `Hub::send_batch` still takes any number of events and splits
/// them.
///
/// ```no_run
/// # async fn run<R: eventhubs_async::Runtime>(hub: eventhubs_async::Hub<R>) -> Result<(), eventhubs_async::Error> {
/// use eventhubs_async::{BatchOptions, EventData};
///
/// let mut batch = hub.create_batch(BatchOptions::new().with_partition_id("0")).await?;
/// for i in 0.. {
///     if let Err(full) = batch.try_add(EventData::new(format!("reading {i}"))) {
///         // Send what fits, and start the next batch with the event that did not.
///         hub.send_event_batch(batch).await?;
///         batch = hub.create_batch(BatchOptions::new().with_partition_id("0")).await?;
///         batch.try_add(full.into_event()).expect("an empty batch takes a small event");
///     }
///     # if i == 10_000 { break }
/// }
/// hub.send_event_batch(batch).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct EventDataBatch {
    batch: EventBatch,
    target: SendTarget,
}

impl EventDataBatch {
    pub(crate) fn new(target: SendTarget, partition_key: Option<String>, max_size: usize) -> Self {
        EventDataBatch {
            batch: EventBatch::new(partition_key, max_size),
            target,
        }
    }

    /// Adds `event` when it fits. When it does not (or cannot be in this
    /// batch), the error gives it back ([`TryAddError::into_event`]) and
    /// says why.
    ///
    /// In a batch for a partition key, an event without a key gets the
    /// batch's; one with another key is refused. In a batch for a
    /// partition, an event with a key is refused.
    pub fn try_add(&mut self, mut event: EventData) -> Result<(), TryAddError> {
        let key = self.batch.partition_key();
        match (&self.target, key, event.partition_key.as_deref()) {
            (SendTarget::Partition(_), _, Some(_)) => {
                return Err(TryAddError::new(event, TryAddReason::PartitionKey))
            }
            (_, Some(k), None) => event.partition_key = Some(k.to_owned()),
            (_, k, e) if k != e => return Err(TryAddError::new(event, TryAddReason::PartitionKey)),
            _ => {}
        }
        match self.batch.try_add(&event) {
            Ok(true) => Ok(()),
            Ok(false) => {
                // Would it fit an empty batch? (Counted exactly, as the
                // batch is: only when it does not fit this one.)
                let mut alone =
                    EventBatch::new(event.partition_key.clone(), self.max_size_in_bytes());
                let reason = if !self.batch.is_empty() && alone.try_add(&event) == Ok(true) {
                    TryAddReason::Full
                } else {
                    TryAddReason::TooLarge
                };
                Err(TryAddError::new(event, reason))
            }
            Err(_) => Err(TryAddError::new(event, TryAddReason::PartitionKey)),
        }
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// True when it holds no event.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Exact bytes of the batch once encoded.
    pub fn size_in_bytes(&self) -> usize {
        self.batch.size()
    }

    /// The limit: the link's max-message-size, or the smaller one asked
    /// for.
    pub fn max_size_in_bytes(&self) -> usize {
        self.batch.max_size()
    }

    /// The partition it is for, if it is for one.
    pub fn partition_id(&self) -> Option<&str> {
        match &self.target {
            SendTarget::Partition(p) => Some(p),
            _ => None,
        }
    }

    /// The partition key of its events, if it is for one.
    pub fn partition_key(&self) -> Option<&str> {
        self.batch.partition_key()
    }

    pub(crate) fn into_parts(self) -> (EventBatch, SendTarget) {
        (self.batch, self.target)
    }
}

/// Why [`EventDataBatch::try_add`] refused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryAddReason {
    /// The batch is full: send it and add the event to a new one.
    Full,
    /// The event is too large even alone in a batch.
    TooLarge,
    /// Its partition key does not belong in this batch (another key, or
    /// any key in a batch for a partition).
    PartitionKey,
}

/// An event [`EventDataBatch::try_add`] did not add, given back, and why.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", match .reason {
    TryAddReason::Full => "the batch is full",
    TryAddReason::TooLarge => "the event is larger than the link's max-message-size",
    TryAddReason::PartitionKey => "the event's partition key does not belong in this batch",
})]
pub struct TryAddError {
    event: Box<EventData>,
    reason: TryAddReason,
}

impl TryAddError {
    fn new(event: EventData, reason: TryAddReason) -> Self {
        TryAddError {
            event: Box::new(event),
            reason,
        }
    }

    /// Why.
    pub fn reason(&self) -> TryAddReason {
        self.reason
    }

    /// True when the batch is full (and the event would fit an empty one).
    pub fn is_full(&self) -> bool {
        self.reason == TryAddReason::Full
    }

    /// The event, back.
    pub fn into_event(self) -> EventData {
        *self.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_that_would_overflow_is_given_back() {
        let mut b = EventDataBatch::new(SendTarget::Partition("0".into()), None, 4096);
        let mut added = 0;
        let refused = loop {
            match b.try_add(EventData::new(vec![b'x'; 1000])) {
                Ok(()) => added += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(added, 4);
        assert!(refused.is_full());
        assert!(b.size_in_bytes() <= 4096);
        assert!(b.size_in_bytes() + 1000 > 4096);
        assert_eq!(refused.into_event().body.len(), 1000);
        let mut keyed = EventDataBatch::new(SendTarget::Hub, Some("k".into()), 4096);
        keyed.try_add(EventData::new("a")).unwrap();
        let e = keyed
            .try_add(EventData::new("b").with_partition_key("other"))
            .unwrap_err();
        assert_eq!(e.reason(), TryAddReason::PartitionKey);
        let e = EventDataBatch::new(SendTarget::Hub, None, 100)
            .try_add(EventData::new(vec![0; 200]))
            .unwrap_err();
        assert_eq!(e.reason(), TryAddReason::TooLarge);
    }
}
