//! Part 3 messaging: message sections (3.2), delivery states (3.4) and
//! terminus types (3.5).

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use super::composite::{composite, descriptor_len, put_descriptor};
use super::decode::{Decode, Decoder};
use super::encode::{Encode, Form};
use super::error::{DecodeError, DecodeErrorKind};
use super::format_code as fc;
use super::performatives::{AmqpError, Fields};
use super::types::{Descriptor, Map, Symbol, Timestamp, Uuid};
use super::value::Value;

type R<T> = Result<T, DecodeError>;

composite! {
    /// 3.2.1 Header: transport headers for a message.
    pub struct Header = (0x70, "amqp:header:list") {
        /// Durability requirements.
        durable: def(bool, false),
        /// Relative message priority.
        priority: def(u8, 4),
        /// Time to live in milliseconds.
        ttl: opt(u32),
        /// Whether this message has not been acquired by any other link.
        first_acquirer: def(bool, false),
        /// Number of unsuccessful previous delivery attempts.
        delivery_count: def(u32, 0),
    }
}

composite! {
    /// 3.2.4 Properties: immutable properties of the bare message.
    pub struct Properties = (0x73, "amqp:properties:list") {
        /// Application message identifier.
        message_id: opt(MessageId),
        /// Creating user id.
        user_id: opt(Bytes),
        /// The address of the node the message is destined for.
        to: opt(ByteString),
        /// The subject of the message.
        subject: opt(ByteString),
        /// The node to send replies to.
        reply_to: opt(ByteString),
        /// Application correlation identifier.
        correlation_id: opt(MessageId),
        /// MIME content type.
        content_type: opt(Symbol),
        /// MIME content encoding.
        content_encoding: opt(Symbol),
        /// The time when this message is considered expired.
        absolute_expiry_time: opt(Timestamp),
        /// The time when this message was created.
        creation_time: opt(Timestamp),
        /// The group this message belongs to.
        group_id: opt(ByteString),
        /// The relative position of this message within its group.
        group_sequence: opt(u32),
        /// The group the reply message belongs to.
        reply_to_group_id: opt(ByteString),
    }
}

/// 3.2.11-3.2.15 message-id-ulong, -uuid, -binary, -string (also the type of
/// correlation-id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// 3.2.11 message-id-ulong.
    Ulong(u64),
    /// 3.2.12 message-id-uuid.
    Uuid(Uuid),
    /// 3.2.13 message-id-binary.
    Binary(Bytes),
    /// 3.2.14 message-id-string.
    String(ByteString),
}

impl Encode for MessageId {
    fn encoded_len_as(&self, f: Form) -> usize {
        match self {
            MessageId::Ulong(v) => v.encoded_len_as(f),
            MessageId::Uuid(v) => v.encoded_len_as(f),
            MessageId::Binary(v) => v.encoded_len_as(f),
            MessageId::String(v) => v.encoded_len_as(f),
        }
    }
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        match self {
            MessageId::Ulong(v) => v.encode_as(f, buf),
            MessageId::Uuid(v) => v.encode_as(f, buf),
            MessageId::Binary(v) => v.encode_as(f, buf),
            MessageId::String(v) => v.encode_as(f, buf),
        }
    }
}

impl Decode for MessageId {
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        match d.peek_u8()? {
            fc::ULONG | fc::SMALLULONG | fc::ULONG0 => u64::decode(d).map(MessageId::Ulong),
            fc::UUID => Uuid::decode(d).map(MessageId::Uuid),
            fc::VBIN8 | fc::VBIN32 => Bytes::decode(d).map(MessageId::Binary),
            fc::STR8 | fc::STR32 => ByteString::decode(d).map(MessageId::String),
            c => {
                d.u8()?;
                Err(d.unexpected("message-id (ulong, uuid, binary or string)", c))
            }
        }
    }
}

impl From<&str> for MessageId {
    fn from(s: &str) -> Self {
        MessageId::String(ByteString::from(s))
    }
}

impl From<String> for MessageId {
    fn from(s: String) -> Self {
        MessageId::String(ByteString::from(s))
    }
}

impl From<u64> for MessageId {
    fn from(n: u64) -> Self {
        MessageId::Ulong(n)
    }
}

impl From<Uuid> for MessageId {
    fn from(u: Uuid) -> Self {
        MessageId::Uuid(u)
    }
}

impl std::fmt::Display for MessageId {
    /// Strings as they are, numbers in decimal, UUIDs hyphenated, binary
    /// ids in hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageId::Ulong(n) => write!(f, "{n}"),
            MessageId::Uuid(u) => write!(f, "{u}"),
            MessageId::Binary(b) => b.iter().try_for_each(|x| write!(f, "{x:02x}")),
            MessageId::String(s) => f.write_str(s),
        }
    }
}

/// A key of an annotations map (3.2.10): a symbol, or a ulong reserved for
/// future use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AnnotationKey {
    /// Symbol key; `x-opt-` prefixed keys are the common case.
    Symbol(Symbol),
    /// Numeric key.
    Ulong(u64),
}

impl PartialEq<str> for AnnotationKey {
    fn eq(&self, other: &str) -> bool {
        matches!(self, AnnotationKey::Symbol(s) if s.as_str() == other)
    }
}

impl From<Symbol> for AnnotationKey {
    fn from(s: Symbol) -> Self {
        AnnotationKey::Symbol(s)
    }
}

impl From<&'static str> for AnnotationKey {
    fn from(s: &'static str) -> Self {
        AnnotationKey::Symbol(Symbol::from(s))
    }
}

impl Encode for AnnotationKey {
    fn encoded_len_as(&self, f: Form) -> usize {
        match self {
            AnnotationKey::Symbol(s) => s.encoded_len_as(f),
            AnnotationKey::Ulong(v) => v.encoded_len_as(f),
        }
    }
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        match self {
            AnnotationKey::Symbol(s) => s.encode_as(f, buf),
            AnnotationKey::Ulong(v) => v.encode_as(f, buf),
        }
    }
}

impl Decode for AnnotationKey {
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        match d.peek_u8()? {
            fc::SYM8 | fc::SYM32 => Symbol::decode(d).map(AnnotationKey::Symbol),
            fc::ULONG | fc::SMALLULONG | fc::ULONG0 => u64::decode(d).map(AnnotationKey::Ulong),
            c => {
                d.u8()?;
                Err(d.unexpected("annotation key (symbol or ulong)", c))
            }
        }
    }
}

/// 3.2.10 annotations: delivery-annotations, message-annotations, footer.
pub type Annotations = Map<AnnotationKey, Value>;

/// 3.2.5 application-properties: string keys, simple values.
pub type ApplicationProperties = Map<ByteString, Value>;

/// Descriptor codes of the message sections (3.2).
pub mod section_code {
    #![allow(missing_docs)]
    pub const HEADER: u64 = 0x70;
    pub const DELIVERY_ANNOTATIONS: u64 = 0x71;
    pub const MESSAGE_ANNOTATIONS: u64 = 0x72;
    pub const PROPERTIES: u64 = 0x73;
    pub const APPLICATION_PROPERTIES: u64 = 0x74;
    pub const DATA: u64 = 0x75;
    pub const AMQP_SEQUENCE: u64 = 0x76;
    pub const AMQP_VALUE: u64 = 0x77;
    pub const FOOTER: u64 = 0x78;

    /// Maps a section's symbolic descriptor to its code.
    pub fn from_symbol(s: &str) -> Option<u64> {
        Some(match s {
            "amqp:header:list" => HEADER,
            "amqp:delivery-annotations:map" => DELIVERY_ANNOTATIONS,
            "amqp:message-annotations:map" => MESSAGE_ANNOTATIONS,
            "amqp:properties:list" => PROPERTIES,
            "amqp:application-properties:map" => APPLICATION_PROPERTIES,
            "amqp:data:binary" => DATA,
            "amqp:amqp-sequence:list" => AMQP_SEQUENCE,
            "amqp:amqp-value:*" => AMQP_VALUE,
            "amqp:footer:map" => FOOTER,
            _ => return None,
        })
    }
}

/// Length of a section: described header plus the value.
#[inline]
pub(crate) fn section_len<T: Encode + ?Sized>(code: u64, v: &T) -> usize {
    descriptor_len(code) + v.encoded_len()
}

#[inline]
pub(crate) fn put_section<T: Encode + ?Sized, B: BufMut>(code: u64, v: &T, buf: &mut B) {
    put_descriptor(buf, code);
    v.encode(buf);
}

/// Reads a described header and returns the descriptor as a code, mapping
/// symbolic descriptors through `by_symbol`.
pub(crate) fn described_code(
    d: &mut Decoder<'_>,
    what: &'static str,
    by_symbol: fn(&str) -> Option<u64>,
) -> R<u64> {
    let code = d.u8()?;
    if code != fc::DESCRIBED {
        return Err(d.unexpected(what, code));
    }
    Ok(match d.descriptor()? {
        Descriptor::Code(c) => c,
        Descriptor::Symbol(s) => by_symbol(&s).unwrap_or(u64::MAX),
    })
}

composite! {
    /// 3.4.1 Received: partial message data seen by the receiver.
    pub struct Received = (0x23, "amqp:received:list") {
        /// The section number of the first section not yet received in full.
        section_number: req(u32),
        /// The first byte of that section not yet received.
        section_offset: req(u64),
    }
}

composite! {
    /// 3.4.2 Accepted: the terminal outcome of a message processed successfully.
    pub struct Accepted = (0x24, "amqp:accepted:list") {}
}

composite! {
    /// 3.4.3 Rejected: the terminal outcome of a message that is invalid.
    pub struct Rejected = (0x25, "amqp:rejected:list") {
        /// The error that caused the rejection.
        error: opt(AmqpError),
    }
}

composite! {
    /// 3.4.4 Released: the message was not (and will not be) acted upon.
    pub struct Released = (0x26, "amqp:released:list") {}
}

composite! {
    /// 3.4.5 Modified: the message was modified but not processed.
    pub struct Modified = (0x27, "amqp:modified:list") {
        /// Count the transfer as an unsuccessful delivery attempt.
        delivery_failed: opt(bool),
        /// Prevent redelivery to this link endpoint.
        undeliverable_here: opt(bool),
        /// Message attributes to combine with the existing annotations.
        message_annotations: opt(Fields),
    }
}

/// 3.4 delivery state: the outcome of a delivery or its progress.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum DeliveryState {
    Received(Received),
    Accepted(Accepted),
    Rejected(Rejected),
    Released(Released),
    Modified(Modified),
}

impl DeliveryState {
    /// True for the terminal outcomes (everything but received).
    pub fn is_outcome(&self) -> bool {
        !matches!(self, DeliveryState::Received(_))
    }

    fn code_from_symbol(s: &str) -> Option<u64> {
        Some(match s {
            Received::SYMBOL => Received::CODE,
            Accepted::SYMBOL => Accepted::CODE,
            Rejected::SYMBOL => Rejected::CODE,
            Released::SYMBOL => Released::CODE,
            Modified::SYMBOL => Modified::CODE,
            _ => return None,
        })
    }
}

impl Encode for DeliveryState {
    fn encoded_len_as(&self, f: Form) -> usize {
        match self {
            DeliveryState::Received(s) => s.encoded_len_as(f),
            DeliveryState::Accepted(s) => s.encoded_len_as(f),
            DeliveryState::Rejected(s) => s.encoded_len_as(f),
            DeliveryState::Released(s) => s.encoded_len_as(f),
            DeliveryState::Modified(s) => s.encoded_len_as(f),
        }
    }
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        match self {
            DeliveryState::Received(s) => s.encode_as(f, buf),
            DeliveryState::Accepted(s) => s.encode_as(f, buf),
            DeliveryState::Rejected(s) => s.encode_as(f, buf),
            DeliveryState::Released(s) => s.encode_as(f, buf),
            DeliveryState::Modified(s) => s.encode_as(f, buf),
        }
    }
}

impl Decode for DeliveryState {
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        let at = d.offset();
        let code = described_code(d, "delivery-state", DeliveryState::code_from_symbol)?;
        d.descend(|d| {
            Ok(match code {
                Received::CODE => DeliveryState::Received(Received::decode_fields(d)?),
                Accepted::CODE => DeliveryState::Accepted(Accepted::decode_fields(d)?),
                Rejected::CODE => DeliveryState::Rejected(Rejected::decode_fields(d)?),
                Released::CODE => DeliveryState::Released(Released::decode_fields(d)?),
                Modified::CODE => DeliveryState::Modified(Modified::decode_fields(d)?),
                c => {
                    return Err(d.err_at(
                        at,
                        DecodeErrorKind::UnexpectedDescriptor {
                            expected: "delivery-state",
                            found: Descriptor::Code(c).to_string(),
                        },
                    ))
                }
            })
        })
    }
}

/// 3.5.5 terminus-expiry-policy `session-end`, the default.
pub const SESSION_END: Symbol = Symbol::from_static("session-end");

composite! {
    /// 3.5.3 Source: where a link's messages come from.
    pub struct Source = (0x28, "amqp:source:list") {
        /// The address of the source.
        address: opt(ByteString),
        /// Terminus durability (0 none, 1 configuration, 2 unsettled-state).
        durable: def(u32, 0),
        /// Terminus expiry policy.
        expiry_policy: def(Symbol, SESSION_END),
        /// Duration in seconds that an expiring source is retained.
        timeout: def(u32, 0),
        /// Request a dynamically created node.
        dynamic: def(bool, false),
        /// Properties of the dynamically created node.
        dynamic_node_properties: opt(Fields),
        /// The distribution mode of the link.
        distribution_mode: opt(Symbol),
        /// A set of predicates to filter the messages admitted onto the link.
        filter: opt(Fields),
        /// Default outcome for unsettled transfers.
        default_outcome: opt(DeliveryState),
        /// Descriptors for the outcomes that can be chosen on this link.
        outcomes: multi,
        /// The extension capabilities the sender supports or desires.
        capabilities: multi,
    }
}

composite! {
    /// 3.5.4 Target: where a link's messages go.
    pub struct Target = (0x29, "amqp:target:list") {
        /// The address of the target.
        address: opt(ByteString),
        /// Terminus durability.
        durable: def(u32, 0),
        /// Terminus expiry policy.
        expiry_policy: def(Symbol, SESSION_END),
        /// Duration in seconds that an expiring target is retained.
        timeout: def(u32, 0),
        /// Request a dynamically created node.
        dynamic: def(bool, false),
        /// Properties of the dynamically created node.
        dynamic_node_properties: opt(Fields),
        /// The extension capabilities the sender supports or desires.
        capabilities: multi,
    }
}

impl Source {
    /// A source with only an address.
    pub fn with_address(address: impl Into<ByteString>) -> Self {
        Source {
            address: Some(address.into()),
            ..Default::default()
        }
    }
}

impl Target {
    /// A target with only an address.
    pub fn with_address(address: impl Into<ByteString>) -> Self {
        Target {
            address: Some(address.into()),
            ..Default::default()
        }
    }
}
