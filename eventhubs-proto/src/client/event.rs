//! Events as the user sees them, and their mapping to AMQP messages
//! (the `x-opt-*` annotations the service stamps).

use std::fmt;
use std::sync::Arc;

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

/// An event as received from a partition: its body, what the service
/// stamped on it (sequence number, offset, enqueued time, partition key,
/// publisher) and what its sender set (ids, content type, application
/// properties).
///
/// A receiver holds up to its prefetch of these, so an event is kept lean:
/// the body and the offset share the bytes they arrived in, the partition
/// id is shared by the events of a link, and everything most events lack
/// is boxed together, so an event that carries only a body and its stamps
/// is 104 bytes beside its payload. Read it with the accessors;
/// [`to_event_data`](Self::to_event_data) gives an [`EventData`] to send
/// it on.
///
/// ```
/// use eventhubs_proto::client::{EventData, ReceivedEvent};
///
/// let e = ReceivedEvent::new("3", 42, "4096", EventData::new("hello").with_property("n", 1i64));
/// assert_eq!((e.partition_id(), e.sequence_number(), e.offset()), ("3", 42, "4096"));
/// assert_eq!(&e.body()[..], b"hello");
/// assert_eq!(e.get("n").and_then(|v| v.as_i64()), Some(1));
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct ReceivedEvent {
    partition_id: Arc<str>,
    body: Bytes,
    offset: ByteString,
    sequence_number: i64,
    enqueued_time: Timestamp,
    rest: Option<Box<Rest>>,
}

/// Flat, as the accessors read it: the boxed parts show only when set.
impl fmt::Debug for ReceivedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReceivedEvent");
        d.field("partition_id", &self.partition_id())
            .field("sequence_number", &self.sequence_number)
            .field("offset", &self.offset())
            .field("enqueued_time", &self.enqueued_time)
            .field("body", &self.body);
        if let Some(r) = self.rest() {
            let text = [
                ("partition_key", &r.partition_key),
                ("publisher", &r.publisher),
            ];
            for (name, v) in text {
                if let Some(v) = v {
                    d.field(name, v);
                }
            }
            for (name, v) in [
                ("message_id", &r.message_id),
                ("correlation_id", &r.correlation_id),
            ] {
                if let Some(v) = v {
                    d.field(name, v);
                }
            }
            if let Some(c) = &r.content_type {
                d.field("content_type", c);
            }
            if !r.properties.is_empty() {
                d.field("properties", &r.properties);
            }
            if !r.annotations.is_empty() {
                d.field("annotations", &r.annotations);
            }
            if let Some(v) = &r.body_value {
                d.field("body_value", v);
            }
            if let Some(l) = &r.last_enqueued {
                d.field("last_enqueued", l);
            }
        }
        d.finish()
    }
}

/// The parts of a received event that most events lack.
#[derive(Clone, Debug, Default, PartialEq)]
struct Rest {
    partition_key: Option<ByteString>,
    publisher: Option<ByteString>,
    message_id: Option<MessageId>,
    correlation_id: Option<MessageId>,
    content_type: Option<Symbol>,
    properties: ApplicationProperties,
    annotations: Annotations,
    body_value: Option<Value>,
    last_enqueued: Option<LastEnqueuedEventProperties>,
}

impl Rest {
    fn is_empty(&self) -> bool {
        *self == Rest::default()
    }
}

static NO_PROPERTIES: ApplicationProperties = crate::codec::Map(Vec::new());
static NO_ANNOTATIONS: Annotations = crate::codec::Map(Vec::new());

impl ReceivedEvent {
    /// An event of `partition_id` at `sequence_number` and `offset`
    /// carrying `data`, as a receiver would give it: for tests of code
    /// that handles events, and for replaying stored ones.
    pub fn new(
        partition_id: impl Into<Arc<str>>,
        sequence_number: i64,
        offset: impl Into<ByteString>,
        data: EventData,
    ) -> Self {
        let mut e = ReceivedEvent {
            partition_id: partition_id.into(),
            body: data.body,
            offset: offset.into(),
            sequence_number,
            ..Default::default()
        };
        e.edit(|r| {
            r.partition_key = data.partition_key.map(ByteString::from);
            r.message_id = data.message_id;
            r.correlation_id = data.correlation_id;
            // As `EventData::to_message` sends it: a content type that is
            // not ASCII is no symbol, and is left out.
            r.content_type = data
                .content_type
                .and_then(|c| Symbol::new(ByteString::from(c)));
            r.properties = data.properties;
        });
        e
    }

    /// With enqueued time `t`.
    #[must_use]
    pub fn with_enqueued_time(mut self, t: Timestamp) -> Self {
        self.enqueued_time = t;
        self
    }

    /// With publisher `publisher` (`x-opt-publisher`).
    #[must_use]
    pub fn with_publisher(mut self, publisher: impl Into<ByteString>) -> Self {
        let p = publisher.into();
        self.edit(|r| r.publisher = Some(p));
        self
    }

    /// With message annotation `key` set to `value`, beside the stamped
    /// ones (as `iothub-*` annotations come).
    #[must_use]
    pub fn with_annotation(
        mut self,
        key: impl Into<AnnotationKey>,
        value: impl Into<Value>,
    ) -> Self {
        let (k, v) = (key.into(), value.into());
        self.edit(|r| {
            r.annotations.insert(k, v);
        });
        self
    }

    /// With a body that is not a data section (an amqp-value).
    #[must_use]
    pub fn with_body_value(mut self, value: Value) -> Self {
        self.edit(|r| r.body_value = Some(value));
        self
    }

    /// With the partition's last-enqueued figures, as a receiver that
    /// tracks them gives.
    #[must_use]
    pub fn with_last_enqueued(mut self, last: LastEnqueuedEventProperties) -> Self {
        self.edit(|r| r.last_enqueued = Some(last));
        self
    }

    /// Changes the boxed parts, boxing them only when they hold something.
    fn edit(&mut self, f: impl FnOnce(&mut Rest)) {
        let mut rest = self.rest.take().unwrap_or_default();
        f(&mut rest);
        if !rest.is_empty() {
            self.rest = Some(rest);
        }
    }

    fn rest(&self) -> Option<&Rest> {
        self.rest.as_deref()
    }

    /// The partition it came from.
    pub fn partition_id(&self) -> &str {
        &self.partition_id
    }

    /// The payload: the event's data section (its data sections joined,
    /// when a sender split it), sharing the bytes it arrived in. Empty
    /// when the body is an amqp-value or sequence: see
    /// [`body_value`](Self::body_value).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Position in the partition, increasing by one per event
    /// (`x-opt-sequence-number`).
    pub fn sequence_number(&self) -> i64 {
        self.sequence_number
    }

    /// The service's offset (`x-opt-offset`), kept as a string:
    /// geo-replicated hubs use opaque offsets.
    pub fn offset(&self) -> &str {
        &self.offset
    }

    /// When the service enqueued the event (`x-opt-enqueued-time`).
    pub fn enqueued_time(&self) -> Timestamp {
        self.enqueued_time
    }

    /// The partition key it was sent with (`x-opt-partition-key`).
    pub fn partition_key(&self) -> Option<&str> {
        self.rest()?.partition_key.as_deref()
    }

    /// The publisher, for publisher-endpoint sends (`x-opt-publisher`).
    pub fn publisher(&self) -> Option<&str> {
        self.rest()?.publisher.as_deref()
    }

    /// `properties.message-id`.
    pub fn message_id(&self) -> Option<&MessageId> {
        self.rest()?.message_id.as_ref()
    }

    /// `properties.correlation-id`.
    pub fn correlation_id(&self) -> Option<&MessageId> {
        self.rest()?.correlation_id.as_ref()
    }

    /// `properties.content-type`.
    pub fn content_type(&self) -> Option<&str> {
        self.rest()?.content_type.as_ref().map(Symbol::as_str)
    }

    /// Application properties as sent (azure-event-hubs-go's
    /// `Properties`).
    pub fn properties(&self) -> &ApplicationProperties {
        self.rest().map_or(&NO_PROPERTIES, |r| &r.properties)
    }

    /// An application property (azure-event-hubs-go's `Event.Get`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties().get(key)
    }

    /// Every message annotation besides the five stamped ones read
    /// above (`x-opt-*`, `iothub-*`, ...).
    pub fn annotations(&self) -> &Annotations {
        self.rest().map_or(&NO_ANNOTATIONS, |r| &r.annotations)
    }

    /// A body that was not a data section (an amqp-value, or the
    /// amqp-sequence sections as a list of lists), for events sent by
    /// other clients.
    pub fn body_value(&self) -> Option<&Value> {
        self.rest()?.body_value.as_ref()
    }

    /// The partition's last-enqueued figures carried with this delivery,
    /// when the receiver tracks them.
    pub fn last_enqueued(&self) -> Option<&LastEnqueuedEventProperties> {
        self.rest()?.last_enqueued.as_ref()
    }

    /// The event as sent: body, ids, content type, partition key and
    /// application properties, to send it on or compare it.
    pub fn to_event_data(&self) -> EventData {
        let r = self.rest();
        EventData {
            body: self.body.clone(),
            message_id: r.and_then(|r| r.message_id.clone()),
            partition_key: self.partition_key().map(str::to_owned),
            content_type: self.content_type().map(str::to_owned),
            correlation_id: r.and_then(|r| r.correlation_id.clone()),
            properties: self.properties().clone(),
        }
    }
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

/// A stamped string annotation, sharing the bytes it was decoded from.
fn text_of(v: Value) -> Option<ByteString> {
    match v {
        Value::String(s) => Some(s),
        Value::Symbol(s) => Some(s.into_string()),
        v => v.as_i64().map(|n| ByteString::from(n.to_string())),
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
}

/// The last-enqueued figures of a delivery's annotations, when there are
/// any.
fn last_enqueued(d: Option<&Annotations>) -> Option<LastEnqueuedEventProperties> {
    let d = d?;
    let get = |k: &str| annotation(Some(d), k);
    let l = LastEnqueuedEventProperties {
        sequence_number: get(LAST_SEQUENCE_NUMBER).and_then(Value::as_i64),
        offset: get(LAST_OFFSET)
            .cloned()
            .and_then(text_of)
            .map(|o| (*o).to_owned()),
        enqueued_time: get(LAST_ENQUEUED_TIME).and_then(timestamp_of),
        retrieval_time: get(RETRIEVAL_TIME).and_then(timestamp_of),
    };
    (l != LastEnqueuedEventProperties::default()).then_some(l)
}

impl ReceivedEvent {
    /// Maps a received message to an event of `partition_id`.
    pub fn from_message(partition_id: impl Into<Arc<str>>, m: Message) -> Result<Self, EventError> {
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
            Body::Value(v) => sections.body_value = Some(v),
            Body::Sequence(s) => sections.sequences = s,
        }
        sections.finish(partition_id.into())
    }

    /// Decodes a received message straight into an event of
    /// `partition_id`: what [`Message::decode_all`] then
    /// [`from_message`](Self::from_message) give, without the message in
    /// between (its annotation map, body vector and moves, per event).
    /// The event shares `payload`'s bytes for its body and offset.
    pub fn decode(partition_id: impl Into<Arc<str>>, payload: &Bytes) -> Result<Self, Undecodable> {
        let mut d = Decoder::new(payload);
        let mut sections = EventSections::default();
        decode_sections(&mut d, &mut sections).map_err(Undecodable::Codec)?;
        d.finish().map_err(Undecodable::Codec)?;
        sections
            .finish(partition_id.into())
            .map_err(Undecodable::Event)
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
    last_enqueued: Option<LastEnqueuedEventProperties>,
    properties: Option<Properties>,
    application_properties: Option<ApplicationProperties>,
    /// The first data section, and any after it (rare), which are joined.
    body: Option<Bytes>,
    more_data: Vec<Bytes>,
    body_value: Option<Value>,
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

    fn finish(self, partition_id: Arc<str>) -> Result<ReceivedEvent, EventError> {
        let s = self.system;
        let sequence_number = s
            .sequence_number
            .as_ref()
            .and_then(Value::as_i64)
            .ok_or(EventError::MissingAnnotation(SEQUENCE_NUMBER_ANNOTATION))?;
        let offset = s
            .offset
            .and_then(text_of)
            .ok_or(EventError::MissingAnnotation(OFFSET_ANNOTATION))?;
        let enqueued_time = s
            .enqueued_time
            .as_ref()
            .and_then(timestamp_of)
            .unwrap_or_default();
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
            (None, false) => Some(Value::List(
                self.sequences.into_iter().map(Value::List).collect(),
            )),
            (None, true) => None,
        };
        let props = self.properties.unwrap_or_default();
        let rest = Rest {
            partition_key: s.partition_key.and_then(text_of),
            publisher: s.publisher.and_then(text_of),
            message_id: props.message_id,
            correlation_id: props.correlation_id,
            content_type: props.content_type,
            properties: self.application_properties.unwrap_or_default(),
            annotations: s.annotations,
            body_value,
            last_enqueued: self.last_enqueued,
        };
        Ok(ReceivedEvent {
            partition_id,
            body,
            offset,
            sequence_number,
            enqueued_time,
            rest: (!rest.is_empty()).then(|| Box::new(rest)),
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
            sc::AMQP_VALUE => self.body_value = Some(Value::decode(d)?),
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

    /// `payload` as the service sends an event: `body` stamped with a
    /// sequence number, an offset and an enqueued time.
    fn stamped(body: &'static [u8], extra: impl FnOnce(&mut Message)) -> Bytes {
        let mut m = Message::with_data(Bytes::from_static(body));
        m.message_annotations = Some(
            [
                ("x-opt-sequence-number".into(), Value::Long(42)),
                ("x-opt-offset".into(), Value::String("4096".into())),
                ("x-opt-enqueued-time".into(), Value::Timestamp(Timestamp(7))),
            ]
            .into_iter()
            .collect(),
        );
        extra(&mut m);
        m.to_bytes()
    }

    fn within(part: &[u8], whole: &[u8]) -> bool {
        let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
        p >= w && p + part.len() <= w + whole.len()
    }

    #[test]
    fn an_event_of_a_body_and_its_stamps_is_lean_and_shares_the_payload() {
        if cfg!(target_pointer_width = "64") {
            assert_eq!(std::mem::size_of::<ReceivedEvent>(), 104);
        }
        let payload = stamped(b"a body of some bytes", |_| {});
        let r = ReceivedEvent::decode("0", &payload).unwrap();
        assert!(r.rest.is_none(), "nothing boxed: {r:?}");
        assert!(
            within(r.body(), &payload),
            "the body is a slice of the payload"
        );
        assert!(within(r.offset().as_bytes(), &payload), "so is the offset");
        assert_eq!((r.sequence_number(), r.offset()), (42, "4096"));
        assert_eq!(r.enqueued_time(), Timestamp(7));
        assert!(r.properties().is_empty() && r.annotations().is_empty());
        assert_eq!(
            (r.partition_key(), r.message_id(), r.body_value()),
            (None, None, None)
        );
        // The events of a link share one partition id.
        let id: Arc<str> = "0".into();
        let a = ReceivedEvent::decode(id.clone(), &payload).unwrap();
        let b = ReceivedEvent::decode(id.clone(), &payload).unwrap();
        assert!(std::ptr::eq(a.partition_id(), b.partition_id()));
        assert_eq!(Arc::strong_count(&id), 3);
    }

    #[test]
    fn what_most_events_lack_is_boxed_and_read_back() {
        let payload = stamped(b"x", |m| {
            let a = m.message_annotations.as_mut().unwrap();
            a.insert("x-opt-partition-key".into(), Value::String("k".into()));
            a.insert(
                "iothub-connection-device-id".into(),
                Value::String("d".into()),
            );
            m.application_properties = Some([("n".into(), Value::Long(1))].into_iter().collect());
        });
        let r = ReceivedEvent::decode("1", &payload).unwrap();
        assert!(r.rest.is_some());
        assert_eq!(r.partition_key(), Some("k"));
        assert_eq!(r.get("n"), Some(&Value::Long(1)));
        assert_eq!(
            r.annotations().len(),
            1,
            "the stamped keys are not among them"
        );
        let shown = format!("{r:?}");
        assert!(
            shown.contains("partition_key: \"k\"") && !shown.contains("publisher"),
            "{shown}"
        );
    }

    #[test]
    fn an_event_built_for_a_test_reads_as_a_received_one() {
        let data = EventData::new("hello")
            .with_partition_key("k")
            .with_property("n", 1i64)
            .with_message_id("m")
            .with_correlation_id(7u64)
            .with_content_type("text/plain");
        let e = ReceivedEvent::new("2", 5, "500", data.clone())
            .with_enqueued_time(Timestamp(9))
            .with_publisher("p")
            .with_annotation("x-opt-custom", 3i64);
        assert_eq!(e.to_event_data(), data);
        assert_eq!(
            (e.partition_id(), e.sequence_number(), e.offset()),
            ("2", 5, "500")
        );
        assert_eq!(
            (e.enqueued_time(), e.publisher()),
            (Timestamp(9), Some("p"))
        );
        assert_eq!(e.annotations().get("x-opt-custom"), Some(&Value::Long(3)));
        // Sent and received again, it is the same event.
        let mut m = data.to_message();
        let a = m.message_annotations.get_or_insert_with(Default::default);
        a.insert("x-opt-sequence-number".into(), Value::Long(5));
        a.insert("x-opt-offset".into(), Value::String("500".into()));
        a.insert("x-opt-enqueued-time".into(), Value::Timestamp(Timestamp(9)));
        a.insert("x-opt-publisher".into(), Value::String("p".into()));
        a.insert("x-opt-custom".into(), Value::Long(3));
        assert_eq!(ReceivedEvent::decode("2", &m.to_bytes()).unwrap(), e);
        // With nothing but a body, nothing is boxed.
        assert!(ReceivedEvent::new("2", 5, "500", EventData::new("b"))
            .rest
            .is_none());
    }

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
        assert_eq!(r.to_event_data(), e);
        assert_eq!(r.partition_id(), "3");
        assert_eq!(r.sequence_number(), 42);
        assert_eq!(r.offset(), "4096");
        assert_eq!(r.enqueued_time(), Timestamp(1_700_000_000_123));
        assert_eq!(r.partition_key(), Some("device-7"));
        assert_eq!(r.annotations().len(), 1);
        assert_eq!(r.last_enqueued(), None);
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
        assert_eq!(r.offset(), "7");
        let l = r.last_enqueued().unwrap();
        assert_eq!(l.sequence_number, Some(9));
        assert_eq!(l.offset.as_deref(), Some("99"));
        assert_eq!(l.enqueued_time, Some(Timestamp(5)));
        assert_eq!(l.retrieval_time, Some(Timestamp(6)));
    }
}
