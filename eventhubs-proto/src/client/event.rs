//! Events as the user sees them, and their mapping to AMQP messages
//! (the `x-opt-*` annotations the service stamps).

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::message::{decode_sections, Body, Message, Sections};
use crate::codec::messaging::{
    section_code as sc, AnnotationKey, Annotations, ApplicationProperties, Header, MessageId,
    Properties,
};
use crate::codec::{Decode, DecodeError, Decoder, Encode, Symbol, Timestamp, Value};

/// Message annotation carrying the partition key.
pub const PARTITION_KEY_ANNOTATION: &str = "x-opt-partition-key";
/// Message annotation carrying the sequence number.
pub const SEQUENCE_NUMBER_ANNOTATION: &str = "x-opt-sequence-number";
/// Message annotation carrying the offset (a string).
pub const OFFSET_ANNOTATION: &str = "x-opt-offset";
/// Message annotation carrying the enqueued time.
pub const ENQUEUED_TIME_ANNOTATION: &str = "x-opt-enqueued-time";
/// Message annotation carrying the publisher name.
pub const PUBLISHER_ANNOTATION: &str = "x-opt-publisher";

// Delivery annotations of a receiver that tracks the last-enqueued event.
const LAST_SEQUENCE_NUMBER: &str = "last_enqueued_sequence_number";
const LAST_OFFSET: &str = "last_enqueued_offset";
const LAST_ENQUEUED_TIME: &str = "last_enqueued_time_utc";
const RETRIEVAL_TIME: &str = "runtime_info_retrieval_time_utc";

/// The annotation keys the service stamps on deliveries: the codec decodes
/// them to static symbols ([`Symbol::well_known`]).
pub(crate) const STAMPED_KEYS: [&str; 9] = [
    SEQUENCE_NUMBER_ANNOTATION,
    OFFSET_ANNOTATION,
    ENQUEUED_TIME_ANNOTATION,
    PARTITION_KEY_ANNOTATION,
    PUBLISHER_ANNOTATION,
    LAST_SEQUENCE_NUMBER,
    LAST_OFFSET,
    LAST_ENQUEUED_TIME,
    RETRIEVAL_TIME,
];

/// An event to publish: azure-event-hubs-go's `Event` (`NewEvent`,
/// `NewEventFromString`) before it is sent, built fluently:
///
/// ```
/// use eventhubs_proto::client::EventData;
///
/// let event = EventData::new("temperature 21.5")
///     .with_partition_key("device-7")
///     .with_property("unit", "celsius")
///     .with_property("reading", 42i64)
///     .with_message_id("reading-42")
///     .with_content_type("text/plain");
/// assert_eq!(event.partition_key.as_deref(), Some("device-7"));
/// assert_eq!(event.get("reading").and_then(|v| v.as_i64()), Some(42));
/// ```
#[doc(alias = "Event")]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventData {
    /// The payload, sent as one data section.
    pub body: Bytes,
    /// `properties.message-id` (azure-event-hubs-go's `ID`).
    pub message_id: Option<MessageId>,
    /// Routes the event to the partition the key hashes to; events with
    /// the same key keep their order.
    pub partition_key: Option<String>,
    /// `properties.content-type`.
    pub content_type: Option<String>,
    /// `properties.correlation-id`.
    pub correlation_id: Option<MessageId>,
    /// Application properties (azure-event-hubs-go's `Properties`): string keys and
    /// any simple AMQP value.
    pub properties: ApplicationProperties,
}

impl EventData {
    /// An event carrying `body`.
    pub fn new(body: impl Into<Bytes>) -> Self {
        EventData {
            body: body.into(),
            ..Default::default()
        }
    }

    /// With partition key `key`: the service routes the event to the
    /// partition the key hashes to, and events with one key keep their
    /// order.
    #[must_use]
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// With application property `name` set to `value` (azure-event-hubs-go's
    /// `Event.Set`, by value).
    #[must_use]
    pub fn with_property(mut self, name: impl Into<ByteString>, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }

    /// With `properties.message-id` `id` (azure-event-hubs-go's `Event.ID` and
    /// `SendWithMessageID`): a string, a `u64`, a UUID or bytes.
    #[must_use]
    pub fn with_message_id(mut self, id: impl Into<MessageId>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// With `properties.content-type` `content_type` (a MIME type such as
    /// `application/json`).
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// With `properties.correlation-id` `id`.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<MessageId>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets an application property (azure-event-hubs-go's `Event.Set`).
    pub fn set(&mut self, key: impl Into<ByteString>, value: impl Into<Value>) {
        self.properties.insert(key.into(), value.into());
    }

    /// An application property (azure-event-hubs-go's `Event.Get`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties.get(key)
    }

    /// The AMQP message for this event.
    pub fn to_message(&self) -> Message {
        let mut m = Message::with_data(self.body.clone());
        if self.message_id.is_some() || self.content_type.is_some() || self.correlation_id.is_some()
        {
            m.properties = Some(Properties {
                message_id: self.message_id.clone(),
                correlation_id: self.correlation_id.clone(),
                content_type: self
                    .content_type
                    .as_deref()
                    .and_then(|c| Symbol::new(ByteString::from(c))),
                ..Default::default()
            });
        }
        if !self.properties.is_empty() {
            m.application_properties = Some(self.properties.clone());
        }
        if let Some(key) = &self.partition_key {
            m.message_annotations = Some(partition_key_annotations(key));
        }
        m
    }

    /// Bytes this event takes once encoded as a message.
    pub fn encoded_len(&self) -> usize {
        self.to_message().encoded_len()
    }
}

/// Message annotations holding just `x-opt-partition-key`.
pub(crate) fn partition_key_annotations(key: &str) -> Annotations {
    [(
        AnnotationKey::from(PARTITION_KEY_ANNOTATION),
        Value::String(ByteString::from(key)),
    )]
    .into_iter()
    .collect()
}

/// What the service stamps on an event: its `x-opt-*` message annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemProperties {
    /// Position in the partition, increasing by one per event.
    pub sequence_number: i64,
    /// The service's offset, kept as a string (geo-replicated hubs use
    /// opaque offsets).
    pub offset: String,
    /// When the service enqueued the event.
    pub enqueued_time: Timestamp,
    /// The partition key it was sent with.
    pub partition_key: Option<String>,
    /// The publisher, for publisher-endpoint sends.
    pub publisher: Option<String>,
    /// Every other message annotation (`x-opt-*`, `iothub-*`, ...).
    pub annotations: Annotations,
}

/// The last-enqueued event of a partition as of a delivery, when the
/// receiver asked for it (delivery annotations `last_enqueued_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastEnqueuedEventProperties {
    /// Sequence number of the last event in the partition.
    pub sequence_number: Option<i64>,
    /// Its offset.
    pub offset: Option<String>,
    /// Its enqueued time.
    pub enqueued_time: Option<Timestamp>,
    /// When the service read these figures.
    pub retrieval_time: Option<Timestamp>,
}

/// An event as received from a partition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReceivedEvent {
    /// The partition it came from.
    pub partition_id: String,
    /// Body, ids and application properties as sent.
    pub data: EventData,
    /// A body that was not a data section (an amqp-value or sequence),
    /// for events sent by other clients. Boxed, as are the last-enqueued
    /// figures: both are rare, and a receiver holds up to its prefetch of
    /// events.
    pub body_value: Option<Box<Value>>,
    /// Service annotations.
    pub system: SystemProperties,
    /// Runtime metrics carried with this delivery, when tracking is on.
    pub last_enqueued: Option<Box<LastEnqueuedEventProperties>>,
}

/// Why a received message is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A required system annotation is missing or of the wrong type.
    #[error("received message has no valid {0} annotation")]
    MissingAnnotation(&'static str),
}

/// The value of symbol key `key` in `a`, compared without building a key.
fn annotation<'a>(a: Option<&'a Annotations>, key: &str) -> Option<&'a Value> {
    a?.get(key)
}

fn string_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string()),
        Value::Symbol(s) => Some(s.as_str().to_owned()),
        v => v.as_i64().map(|n| n.to_string()),
    }
}

fn timestamp_of(v: &Value) -> Option<Timestamp> {
    match v {
        Value::Timestamp(t) => Some(*t),
        v => v.as_i64().map(Timestamp),
    }
}

/// The system properties of a received message (its message annotations),
/// gathered one annotation at a time and taken by value: the keys the
/// service stamps fill their fields, every other goes to `annotations`.
#[derive(Default)]
struct SystemFields {
    sequence_number: Option<Value>,
    offset: Option<Value>,
    enqueued_time: Option<Value>,
    partition_key: Option<Value>,
    publisher: Option<Value>,
    annotations: Annotations,
}

impl SystemFields {
    fn entry(&mut self, k: AnnotationKey, v: Value) {
        let slot = match &k {
            AnnotationKey::Symbol(s) => match s.as_str() {
                SEQUENCE_NUMBER_ANNOTATION => &mut self.sequence_number,
                OFFSET_ANNOTATION => &mut self.offset,
                ENQUEUED_TIME_ANNOTATION => &mut self.enqueued_time,
                PARTITION_KEY_ANNOTATION => &mut self.partition_key,
                PUBLISHER_ANNOTATION => &mut self.publisher,
                _ => {
                    self.annotations.insert(k, v);
                    return;
                }
            },
            AnnotationKey::Ulong(_) => {
                self.annotations.insert(k, v);
                return;
            }
        };
        // The first of a repeated key counts, as a lookup would find it.
        slot.get_or_insert(v);
    }

    fn finish(self) -> Result<SystemProperties, EventError> {
        Ok(SystemProperties {
            sequence_number: self
                .sequence_number
                .as_ref()
                .and_then(Value::as_i64)
                .ok_or(EventError::MissingAnnotation(SEQUENCE_NUMBER_ANNOTATION))?,
            offset: self
                .offset
                .as_ref()
                .and_then(string_of)
                .ok_or(EventError::MissingAnnotation(OFFSET_ANNOTATION))?,
            enqueued_time: self
                .enqueued_time
                .as_ref()
                .and_then(timestamp_of)
                .unwrap_or_default(),
            partition_key: self.partition_key.as_ref().and_then(string_of),
            publisher: self.publisher.as_ref().and_then(string_of),
            annotations: self.annotations,
        })
    }
}

/// The last-enqueued figures of a delivery's annotations, when there are
/// any.
fn last_enqueued(d: Option<&Annotations>) -> Option<Box<LastEnqueuedEventProperties>> {
    let d = d?;
    let get = |k: &str| annotation(Some(d), k);
    let l = LastEnqueuedEventProperties {
        sequence_number: get(LAST_SEQUENCE_NUMBER).and_then(Value::as_i64),
        offset: get(LAST_OFFSET).and_then(string_of),
        enqueued_time: get(LAST_ENQUEUED_TIME).and_then(timestamp_of),
        retrieval_time: get(RETRIEVAL_TIME).and_then(timestamp_of),
    };
    (l != LastEnqueuedEventProperties::default()).then(|| Box::new(l))
}

impl ReceivedEvent {
    /// Maps a received message to an event of `partition_id`.
    pub fn from_message(partition_id: &str, m: Message) -> Result<Self, EventError> {
        let mut system = SystemFields::default();
        for (k, v) in m.message_annotations.into_iter().flat_map(|a| a.0) {
            system.entry(k, v);
        }
        let mut sections = EventSections {
            system,
            last_enqueued: last_enqueued(m.delivery_annotations.as_ref()),
            properties: m.properties,
            application_properties: m.application_properties,
            ..Default::default()
        };
        match m.body {
            Body::Data(d) => d.into_iter().for_each(|b| sections.data(b)),
            Body::Empty => {}
            Body::Value(v) => sections.body_value = Some(Box::new(v)),
            Body::Sequence(s) => sections.sequences = s,
        }
        sections.finish(partition_id)
    }

    /// Decodes a received message straight into an event of
    /// `partition_id`: what [`Message::decode_all`] then
    /// [`from_message`](Self::from_message) give, without the message in
    /// between (its annotation map, body vector and moves, per event).
    pub fn decode(partition_id: &str, payload: &Bytes) -> Result<Self, Undecodable> {
        let mut d = Decoder::new(payload);
        let mut sections = EventSections::default();
        decode_sections(&mut d, &mut sections).map_err(Undecodable::Codec)?;
        d.finish().map_err(Undecodable::Codec)?;
        sections.finish(partition_id).map_err(Undecodable::Event)
    }
}

/// Why a received message could not be read as an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Undecodable {
    /// Its bytes are not an AMQP message.
    #[error("{0}")]
    Codec(DecodeError),
    /// It is a message, but not an event.
    #[error("{0}")]
    Event(EventError),
}

/// The parts of a received message an event keeps, as the sections come.
#[derive(Default)]
struct EventSections {
    system: SystemFields,
    last_enqueued: Option<Box<LastEnqueuedEventProperties>>,
    properties: Option<Properties>,
    application_properties: Option<ApplicationProperties>,
    /// The first data section, and any after it (rare), which are joined.
    body: Option<Bytes>,
    more_data: Vec<Bytes>,
    body_value: Option<Box<Value>>,
    sequences: Vec<Vec<Value>>,
}

impl EventSections {
    fn data(&mut self, b: Bytes) {
        if self.body.is_none() {
            self.body = Some(b);
        } else {
            self.more_data.push(b);
        }
    }

    fn finish(self, partition_id: &str) -> Result<ReceivedEvent, EventError> {
        let system = self.system.finish()?;
        let body = match (self.body, self.more_data.is_empty()) {
            (None, _) => Bytes::new(),
            (Some(b), true) => b,
            (Some(b), false) => {
                // Several data sections are one body, joined (rare).
                let sections: Vec<Bytes> = std::iter::once(b).chain(self.more_data).collect();
                sections.concat().into()
            }
        };
        let body_value = match (self.body_value, self.sequences.is_empty()) {
            (Some(v), _) => Some(v),
            (None, false) => Some(Box::new(Value::List(
                self.sequences.into_iter().map(Value::List).collect(),
            ))),
            (None, true) => None,
        };
        let props = self.properties.unwrap_or_default();
        Ok(ReceivedEvent {
            partition_id: partition_id.to_owned(),
            data: EventData {
                body,
                message_id: props.message_id,
                partition_key: system.partition_key.clone(),
                content_type: props.content_type.map(|c| c.as_str().to_owned()),
                correlation_id: props.correlation_id,
                properties: self.application_properties.unwrap_or_default(),
            },
            body_value,
            system,
            last_enqueued: self.last_enqueued,
        })
    }
}

impl Sections for EventSections {
    fn section(&mut self, code: u64, d: &mut Decoder<'_>) -> Result<(), DecodeError> {
        match code {
            // The header is not part of an event.
            sc::HEADER => {
                Header::decode_fields(d)?;
            }
            sc::DELIVERY_ANNOTATIONS => {
                self.last_enqueued = last_enqueued(Some(&Annotations::decode(d)?))
            }
            sc::MESSAGE_ANNOTATIONS => {
                // Entry by entry: the stamped keys fill their fields, and
                // no map is built for them.
                let c = d.map_header()?;
                d.nested(c.body, |d| {
                    for _ in 0..c.count / 2 {
                        let k = AnnotationKey::decode(d)?;
                        let v = Value::decode(d)?;
                        self.system.entry(k, v);
                    }
                    Ok(())
                })?;
            }
            sc::PROPERTIES => self.properties = Some(Properties::decode_fields(d)?),
            sc::APPLICATION_PROPERTIES => {
                self.application_properties = Some(ApplicationProperties::decode(d)?)
            }
            sc::DATA => self.data(Bytes::decode(d)?),
            sc::AMQP_SEQUENCE => self.sequences.push(Vec::<Value>::decode(d)?),
            sc::AMQP_VALUE => self.body_value = Some(Box::new(Value::decode(d)?)),
            // The footer is not part of an event either.
            _ => {
                Annotations::decode(d)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decode;

    #[test]
    fn event_round_trips_through_a_message_with_system_annotations() {
        let mut e = EventData::new(&b"payload"[..]);
        e.message_id = Some("id-1".into());
        e.partition_key = Some("device-7".into());
        e.content_type = Some("application/json".into());
        e.set("count", Value::Long(3));
        e.set("flag", Value::Bool(true));
        let mut m = Message::decode_all(&e.to_message().to_bytes()).unwrap();
        let ann = m.message_annotations.get_or_insert_with(Default::default);
        ann.insert("x-opt-sequence-number".into(), Value::Long(42));
        ann.insert("x-opt-offset".into(), Value::String("4096".into()));
        ann.insert(
            "x-opt-enqueued-time".into(),
            Value::Timestamp(Timestamp(1_700_000_000_123)),
        );
        ann.insert(
            "iothub-connection-device-id".into(),
            Value::String("d1".into()),
        );
        let r = ReceivedEvent::from_message("3", m).unwrap();
        assert_eq!(r.data, e);
        assert_eq!(r.partition_id, "3");
        assert_eq!(r.system.sequence_number, 42);
        assert_eq!(r.system.offset, "4096");
        assert_eq!(r.system.enqueued_time, Timestamp(1_700_000_000_123));
        assert_eq!(r.system.partition_key.as_deref(), Some("device-7"));
        assert_eq!(r.system.annotations.len(), 1);
        assert_eq!(r.last_enqueued, None);
    }

    #[test]
    fn missing_sequence_number_is_an_error_and_runtime_metrics_are_read() {
        let m = Message::with_data(Bytes::from_static(b"x"));
        assert_eq!(
            ReceivedEvent::from_message("0", m.clone()),
            Err(EventError::MissingAnnotation(SEQUENCE_NUMBER_ANNOTATION))
        );
        let mut m = m;
        m.message_annotations = Some(
            [
                ("x-opt-sequence-number".into(), Value::Long(1)),
                ("x-opt-offset".into(), Value::Long(7)),
            ]
            .into_iter()
            .collect(),
        );
        m.delivery_annotations = Some(
            [
                ("last_enqueued_sequence_number".into(), Value::Long(9)),
                ("last_enqueued_offset".into(), Value::String("99".into())),
                (
                    "last_enqueued_time_utc".into(),
                    Value::Timestamp(Timestamp(5)),
                ),
                (
                    "runtime_info_retrieval_time_utc".into(),
                    Value::Timestamp(Timestamp(6)),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let r = ReceivedEvent::from_message("0", m).unwrap();
        assert_eq!(r.system.offset, "7");
        let l = r.last_enqueued.unwrap();
        assert_eq!(l.sequence_number, Some(9));
        assert_eq!(l.offset.as_deref(), Some("99"));
        assert_eq!(l.enqueued_time, Some(Timestamp(5)));
        assert_eq!(l.retrieval_time, Some(Timestamp(6)));
    }
}
