//! Idempotent publishing as the service does it: producer groups per
//! partition, each with an owner level (producer epoch) and the last
//! sequence number appended.
//!
//! - A publisher link to a partition that desires the
//!   `com.microsoft:idempotent-producer` capability sends none or all
//!   three producer properties (`com.microsoft:producer-id` long,
//!   `com.microsoft:producer-epoch` short,
//!   `com.microsoft:producer-sequence-number` int, null where the broker is
//!   to choose); a link with one or two is refused. The broker assigns a
//!   new group id for a null id (above every id it has seen), keeps the
//!   group's owner level for a null one (0 for a new group), and keeps the
//!   group's last sequence number for a null one (-1, nothing yet, for a
//!   new group); a given sequence number replaces it. Its attach answers
//!   with the three effective values and offers the capability.
//! - An attach with an owner level below the group's is refused with
//!   `com.microsoft:producer-epoch-stolen`; a higher one takes the
//!   partition over, and the next transfer of a link with the old level is
//!   rejected with that condition. Equal levels share the partition.
//! - Every event of a transfer on such a link carries the three keys as
//!   message annotations. An event numbered after the last one is
//!   appended; one at or before it (within half the sequence space) is a
//!   duplicate, acknowledged without being appended again; any other
//!   number is a gap, and the whole transfer is rejected with
//!   `com.microsoft:out-of-order-sequence`. Sequence numbers go from
//!   `i32::MAX` to 0.
//! - Links to the hub (the gateway) cannot be idempotent: the service
//!   deduplicates per partition.
//!
//! The table persists with the partitions ([`crate::store`]): the broker
//! hands out a [`ProducerState`] whenever it changed, and at start the
//! state read back is brought up to date from the restored events' own
//! annotations (those appended after the state was taken).

use std::collections::BTreeMap;

use eventhubs_proto::client::idempotent::{
    next_sequence_number, IDEMPOTENT_PRODUCER_CAPABILITY, PRODUCER_EPOCH, PRODUCER_ID,
    PRODUCER_SEQUENCE_NUMBER,
};
use eventhubs_proto::codec::message::Message;
use eventhubs_proto::codec::performatives::{AmqpError, Attach, Fields};
use eventhubs_proto::codec::{Symbol, Value};

/// One producer group on one partition, as persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The hub's name, as configured.
    pub hub: String,
    /// The partition id.
    pub partition: String,
    /// The producer group.
    pub producer_group_id: i64,
    /// The group's owner level on the partition.
    pub owner_level: i16,
    /// The last sequence number appended (-1 for none).
    pub last_sequence_number: i32,
}

/// The broker's idempotent-producer table, handed out by
/// [`Broker::take_producer_state`](crate::Broker::take_producer_state) and
/// taken back by
/// [`Broker::restore_producer_state`](crate::Broker::restore_producer_state).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    /// The next producer group id the broker assigns.
    pub next_producer_group_id: i64,
    /// Every group on every partition.
    pub producers: Vec<ProducerRecord>,
    /// Per hub and partition, the sequence number of the next event when
    /// the state was taken: restored events from there on bring the table
    /// up to date.
    pub heads: Vec<(String, String, i64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    epoch: i16,
    last: i32,
}

/// What an idempotent attach asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Requested {
    id: Option<i64>,
    epoch: Option<i16>,
    sequence: Option<i32>,
}

/// The producer a link publishes as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Producer {
    pub(crate) id: i64,
    pub(crate) epoch: i16,
}

fn err(condition: &'static str, description: String) -> AmqpError {
    AmqpError::new(Symbol::from_static(condition), description)
}

fn argument_error(description: String) -> AmqpError {
    err("com.microsoft:argument-error", description)
}

/// Key of a slot: hub (lower case), partition, group.
type Key = (String, String, i64);

fn key(hub: &str, partition: &str, id: i64) -> Key {
    (hub.to_ascii_lowercase(), partition.to_owned(), id)
}

/// `to` at or behind `from` within half the sequence space.
fn at_or_behind(from: i32, to: i32) -> bool {
    let space = 1i64 << 31;
    let back = (i64::from(from) - i64::from(to)).rem_euclid(space);
    back < space / 2
}

/// Reads an integer property or annotation: absent, null, or in range.
fn int_of<T: TryFrom<i64>>(v: Option<&Value>, what: &str) -> Result<Option<T>, AmqpError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| argument_error(format!("{what} is not an integer of its type: {v:?}"))),
    }
}

/// The producer properties of an attach that desires the capability;
/// `Ok(None)` for an ordinary publisher.
pub(crate) fn requested(attach: &Attach) -> Result<Option<Requested>, AmqpError> {
    if !attach
        .desired_capabilities
        .iter()
        .any(|c| c.as_str() == IDEMPOTENT_PRODUCER_CAPABILITY)
    {
        return Ok(None);
    }
    let props = attach.properties.as_ref();
    let get = |k: &str| props.and_then(|p| p.get(k));
    let present = [PRODUCER_ID, PRODUCER_EPOCH, PRODUCER_SEQUENCE_NUMBER]
        .iter()
        .filter(|k| get(k).is_some())
        .count();
    if present != 0 && present != 3 {
        return Err(argument_error(format!(
            "an idempotent producer sends all of {PRODUCER_ID}, {PRODUCER_EPOCH} and {PRODUCER_SEQUENCE_NUMBER} (null to let the service choose) or none of them; this attach has {present}"
        )));
    }
    Ok(Some(Requested {
        id: int_of(get(PRODUCER_ID), PRODUCER_ID)?,
        epoch: int_of(get(PRODUCER_EPOCH), PRODUCER_EPOCH)?,
        sequence: int_of(get(PRODUCER_SEQUENCE_NUMBER), PRODUCER_SEQUENCE_NUMBER)?,
    }))
}

/// The link properties and capability of the broker's attach for
/// `producer` with `last` appended.
pub(crate) fn reply_properties(producer: Producer, last: i32) -> (Fields, Symbol) {
    let mut f = Fields::new();
    f.insert(Symbol::from_static(PRODUCER_ID), Value::Long(producer.id));
    f.insert(
        Symbol::from_static(PRODUCER_EPOCH),
        Value::Short(producer.epoch),
    );
    f.insert(
        Symbol::from_static(PRODUCER_SEQUENCE_NUMBER),
        Value::Int(last),
    );
    (f, Symbol::from_static(IDEMPOTENT_PRODUCER_CAPABILITY))
}

/// An event's producer annotations, if it has all three.
fn annotations_of(m: &Message) -> Result<Option<(i64, i16, i32)>, AmqpError> {
    let a = m.message_annotations.as_ref();
    let get = |k: &str| a.and_then(|a| a.get(k));
    let id = int_of::<i64>(get(PRODUCER_ID), PRODUCER_ID)?;
    let epoch = int_of::<i16>(get(PRODUCER_EPOCH), PRODUCER_EPOCH)?;
    let seq = int_of::<i32>(get(PRODUCER_SEQUENCE_NUMBER), PRODUCER_SEQUENCE_NUMBER)?;
    Ok(match (id, epoch, seq) {
        (Some(id), Some(epoch), Some(seq)) => Some((id, epoch, seq)),
        _ => None,
    })
}

fn epoch_stolen(partition: &str, id: i64, ours: i16, theirs: i16) -> AmqpError {
    err(
        "com.microsoft:producer-epoch-stolen",
        format!("A producer with a higher epoch '{theirs}' took over producer group '{id}' on partition '{partition}'; this producer with epoch '{ours}' is disconnected."),
    )
}

/// The producer table.
#[derive(Debug, Default)]
pub(crate) struct Producers {
    next_id: i64,
    slots: BTreeMap<Key, Slot>,
    /// Restored events at or after these (hub, partition) sequence numbers
    /// bring the table up to date.
    heads: BTreeMap<(String, String), i64>,
    /// Changed since the last [`Producers::take`].
    dirty: bool,
}

impl Producers {
    pub(crate) fn new() -> Self {
        Producers {
            next_id: 1,
            ..Default::default()
        }
    }

    /// An idempotent publisher attaches to `partition` of `hub`: the
    /// producer it publishes as and the group's last sequence number, or
    /// why it is refused.
    pub(crate) fn attach(
        &mut self,
        hub: &str,
        partition: &str,
        req: Requested,
    ) -> Result<(Producer, i32), AmqpError> {
        let id = match req.id {
            Some(id) => id,
            None => {
                let id = self.next_id;
                self.next_id = id.saturating_add(1);
                id
            }
        };
        self.next_id = self.next_id.max(id.saturating_add(1));
        let k = key(hub, partition, id);
        let existing = self.slots.get(&k).copied();
        let mut slot = existing.unwrap_or(Slot { epoch: 0, last: -1 });
        match req.epoch {
            Some(e) if e < slot.epoch => {
                return Err(epoch_stolen(partition, id, e, slot.epoch));
            }
            Some(e) => slot.epoch = e,
            None => {}
        }
        if let Some(s) = req.sequence {
            if s < 0 {
                return Err(argument_error(format!(
                    "{PRODUCER_SEQUENCE_NUMBER} {s} is negative"
                )));
            }
            slot.last = s;
        }
        if existing != Some(slot) || req.id.is_none() {
            self.dirty = true;
        }
        self.slots.insert(k, slot);
        Ok((
            Producer {
                id,
                epoch: slot.epoch,
            },
            slot.last,
        ))
    }

    /// Which of `events`, sent on a link publishing as `producer` to
    /// `partition` of `hub`, are appended (the others are duplicates), or
    /// why the transfer is rejected. Advances the group's last sequence
    /// number over the appended ones.
    pub(crate) fn admit(
        &mut self,
        hub: &str,
        partition: &str,
        producer: Producer,
        events: &[Message],
    ) -> Result<Vec<bool>, AmqpError> {
        let k = key(hub, partition, producer.id);
        let Some(slot) = self.slots.get(&k).copied() else {
            return Err(argument_error(format!(
                "producer group '{}' is unknown on partition '{partition}'",
                producer.id
            )));
        };
        if producer.epoch < slot.epoch {
            return Err(epoch_stolen(
                partition,
                producer.id,
                producer.epoch,
                slot.epoch,
            ));
        }
        let mut last = slot.last;
        let mut keep = Vec::with_capacity(events.len());
        for m in events {
            let Some((id, epoch, seq)) = annotations_of(m)? else {
                return Err(argument_error(format!(
                    "an event of an idempotent producer carries {PRODUCER_ID}, {PRODUCER_EPOCH} and {PRODUCER_SEQUENCE_NUMBER} message annotations"
                )));
            };
            if id != producer.id || epoch != producer.epoch {
                return Err(argument_error(format!(
                    "an event annotated for producer group '{id}' epoch '{epoch}' was sent on the link of group '{}' epoch '{}'",
                    producer.id, producer.epoch
                )));
            }
            if seq < 0 {
                return Err(argument_error(format!(
                    "{PRODUCER_SEQUENCE_NUMBER} {seq} is negative"
                )));
            }
            if last >= 0 && at_or_behind(last, seq) {
                keep.push(false);
            } else if seq == next_sequence_number(last) {
                keep.push(true);
                last = seq;
            } else {
                return Err(err(
                    "com.microsoft:out-of-order-sequence",
                    format!(
                        "The sequence number '{seq}' of producer group '{}' on partition '{partition}' is out of order: '{}' was expected.",
                        producer.id,
                        next_sequence_number(last)
                    ),
                ));
            }
        }
        if last != slot.last {
            self.slots.insert(k, Slot { last, ..slot });
            self.dirty = true;
        }
        Ok(keep)
    }

    /// A restored event, number `sequence_number` of `partition` of `hub`:
    /// when it was appended after the state was taken, its annotations
    /// bring the table up to date.
    pub(crate) fn replay(&mut self, hub: &str, partition: &str, sequence_number: i64, m: &Message) {
        let head = self
            .heads
            .get(&(hub.to_ascii_lowercase(), partition.to_owned()))
            .copied()
            .unwrap_or(0);
        if sequence_number < head {
            return;
        }
        let Ok(Some((id, epoch, seq))) = annotations_of(m) else {
            return;
        };
        let k = key(hub, partition, id);
        let slot = self.slots.entry(k).or_insert(Slot { epoch, last: -1 });
        slot.epoch = slot.epoch.max(epoch);
        slot.last = seq;
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// The table, with `heads` (hub name, partition id, next sequence
    /// number) recorded.
    pub(crate) fn snapshot(&self, heads: Vec<(String, String, i64)>) -> ProducerState {
        ProducerState {
            next_producer_group_id: self.next_id,
            producers: self
                .slots
                .iter()
                .map(|((hub, partition, id), s)| ProducerRecord {
                    hub: hub.clone(),
                    partition: partition.clone(),
                    producer_group_id: *id,
                    owner_level: s.epoch,
                    last_sequence_number: s.last,
                })
                .collect(),
            heads,
        }
    }

    /// A hub was deleted: its producer groups go with it.
    pub(crate) fn forget_hub(&mut self, hub: &str) {
        let hub = hub.to_ascii_lowercase();
        let before = self.slots.len();
        self.slots.retain(|(h, _, _), _| *h != hub);
        self.heads.retain(|(h, _), _| *h != hub);
        if self.slots.len() != before {
            self.dirty = true;
        }
    }

    /// True once, after each change.
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Takes back a persisted table.
    pub(crate) fn restore(&mut self, state: ProducerState) {
        self.next_id = self.next_id.max(state.next_producer_group_id);
        for r in state.producers {
            self.next_id = self.next_id.max(r.producer_group_id.saturating_add(1));
            self.slots.insert(
                key(&r.hub, &r.partition, r.producer_group_id),
                Slot {
                    epoch: r.owner_level,
                    last: r.last_sequence_number,
                },
            );
        }
        for (hub, partition, head) in state.heads {
            self.heads
                .insert((hub.to_ascii_lowercase(), partition), head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhubs_proto::codec::messaging::{AnnotationKey, Annotations};

    fn event(id: i64, epoch: i16, seq: i32) -> Message {
        let mut a = Annotations::new();
        a.insert(AnnotationKey::from(PRODUCER_ID), Value::Long(id));
        a.insert(AnnotationKey::from(PRODUCER_EPOCH), Value::Short(epoch));
        a.insert(
            AnnotationKey::from(PRODUCER_SEQUENCE_NUMBER),
            Value::Int(seq),
        );
        Message {
            message_annotations: Some(a),
            ..Message::with_data(&b"x"[..])
        }
    }

    #[test]
    fn numbers_past_the_last_append_duplicates_are_skipped_gaps_refused() {
        let mut p = Producers::new();
        let (producer, last) = p.attach("eh1", "0", Requested::default()).unwrap();
        assert_eq!((producer, last), (Producer { id: 1, epoch: 0 }, -1));
        let batch: Vec<Message> = (0..3).map(|s| event(1, 0, s)).collect();
        assert_eq!(p.admit("eh1", "0", producer, &batch).unwrap(), [true; 3]);
        assert_eq!(p.admit("eh1", "0", producer, &batch).unwrap(), [false; 3]);
        let overlap: Vec<Message> = (2..5).map(|s| event(1, 0, s)).collect();
        assert_eq!(
            p.admit("eh1", "0", producer, &overlap).unwrap(),
            [false, true, true]
        );
        let gap = p
            .admit("eh1", "0", producer, &[event(1, 0, 9)])
            .unwrap_err();
        assert_eq!(
            gap.condition.as_str(),
            "com.microsoft:out-of-order-sequence"
        );
        // A second producer gets its own group; the same group reattaching
        // finds its last number.
        let (other, _) = p.attach("eh1", "0", Requested::default()).unwrap();
        assert_eq!(other.id, 2);
        let again = Requested {
            id: Some(1),
            epoch: Some(0),
            sequence: None,
        };
        assert_eq!(p.attach("EH1", "0", again).unwrap().1, 4);
    }

    #[test]
    fn a_higher_epoch_takes_over_and_a_lower_one_is_refused() {
        let mut p = Producers::new();
        let ask = |epoch| Requested {
            id: Some(40),
            epoch: Some(epoch),
            sequence: None,
        };
        let (old, _) = p.attach("eh1", "1", ask(1)).unwrap();
        let (new, _) = p.attach("eh1", "1", ask(2)).unwrap();
        let stolen = p.admit("eh1", "1", old, &[event(40, 1, 0)]).unwrap_err();
        assert_eq!(
            stolen.condition.as_str(),
            "com.microsoft:producer-epoch-stolen"
        );
        assert_eq!(
            p.admit("eh1", "1", new, &[event(40, 2, 0)]).unwrap(),
            [true]
        );
        assert_eq!(
            p.attach("eh1", "1", ask(1)).unwrap_err().condition.as_str(),
            "com.microsoft:producer-epoch-stolen"
        );
        // Assigned ids stay above chosen ones.
        assert_eq!(p.attach("eh1", "1", Requested::default()).unwrap().0.id, 41);
    }

    #[test]
    fn numbers_wrap_and_a_snapshot_with_replay_restores_the_table() {
        let mut p = Producers::new();
        let ask = Requested {
            id: None,
            epoch: None,
            sequence: Some(i32::MAX - 1),
        };
        let (producer, _) = p.attach("eh1", "0", ask).unwrap();
        let wrap: Vec<Message> = [i32::MAX, 0, 1]
            .into_iter()
            .map(|s| event(producer.id, 0, s))
            .collect();
        assert_eq!(p.admit("eh1", "0", producer, &wrap).unwrap(), [true; 3]);
        assert_eq!(
            p.admit("eh1", "0", producer, &[event(producer.id, 0, i32::MAX)])
                .unwrap(),
            [false]
        );
        let state = p.snapshot(vec![("eh1".into(), "0".into(), 3)]);
        let mut q = Producers::new();
        q.restore(state);
        // Event 3 of the partition was appended after the snapshot.
        q.replay("eh1", "0", 2, &event(producer.id, 0, 1));
        q.replay("eh1", "0", 3, &event(producer.id, 0, 2));
        let again = Requested {
            id: Some(producer.id),
            epoch: None,
            sequence: None,
        };
        assert_eq!(q.attach("eh1", "0", again).unwrap().1, 2);
        assert_eq!(q.attach("eh1", "0", Requested::default()).unwrap().0.id, 2);
    }
}
