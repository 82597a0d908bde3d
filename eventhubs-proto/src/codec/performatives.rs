//! Part 2 transport: the nine performatives (2.7), the error type (2.8.14)
//! and the restricted types they use.

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use super::composite::composite;
use super::decode::{Decode, Decoder};
use super::encode::{Encode, Form};
use super::error::{DecodeError, DecodeErrorKind};
use super::messaging::{DeliveryState, Source, Target};
use super::types::{Map, Symbol};
use super::value::Value;

/// 2.8.1 role: which end of a link an attach or disposition speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// `false`: the sending end.
    #[default]
    Sender,
    /// `true`: the receiving end.
    Receiver,
}

impl Encode for Role {
    fn encoded_len_as(&self, _: Form) -> usize {
        1
    }
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        (*self == Role::Receiver).encode_as(f, buf)
    }
}

impl Decode for Role {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(if bool::decode(d)? {
            Role::Receiver
        } else {
            Role::Sender
        })
    }
}

/// A `ubyte`-valued restricted type with named values.
macro_rules! ubyte_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $val:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vm])* $variant = $val,)*
        }

        impl Encode for $name {
            fn encoded_len_as(&self, _: Form) -> usize {
                2
            }
            fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
                (*self as u8).encode_as(f, buf)
            }
        }

        impl Decode for $name {
            fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                let at = d.offset();
                match u8::decode(d)? {
                    $($val => Ok($name::$variant),)*
                    v => Err(d.err_at(at, DecodeErrorKind::InvalidValue { ty: stringify!($name), value: v.to_string() })),
                }
            }
        }
    };
}
pub(crate) use ubyte_enum;

ubyte_enum! {
    /// 2.8.2 sender-settle-mode.
    SenderSettleMode {
        /// The sender sends all deliveries unsettled.
        Unsettled = 0,
        /// The sender sends all deliveries settled.
        Settled = 1,
        /// The sender may send a mix of settled and unsettled deliveries.
        #[default]
        Mixed = 2,
    }
}

ubyte_enum! {
    /// 2.8.3 receiver-settle-mode.
    ReceiverSettleMode {
        /// The receiver settles spontaneously.
        #[default]
        First = 0,
        /// The receiver settles only after the sender has settled.
        Second = 1,
    }
}

/// 2.8.12 fields / 3.2.17 filter-set: a map of symbol keys to any value.
pub type Fields = Map<Symbol, Value>;

composite! {
    /// 2.8.14 error: details of an error, its condition a symbol such as
    /// `amqp:not-found` or `com.microsoft:server-busy`.
    pub struct AmqpError = (0x1d, "amqp:error:list") {
        /// The error condition.
        condition: req(Symbol),
        /// Human-readable description.
        description: opt(ByteString),
        /// Extra information about the error.
        info: opt(Fields),
    }
}

impl AmqpError {
    /// An error with `condition` and a description.
    pub fn new(condition: impl Into<Symbol>, description: impl Into<ByteString>) -> Self {
        AmqpError {
            condition: condition.into(),
            description: Some(description.into()),
            info: None,
        }
    }
}

composite! {
    /// 2.7.1 Open: negotiate connection parameters.
    pub struct Open = (0x10, "amqp:open:list") {
        /// The id of the source container.
        container_id: req(ByteString),
        /// The name of the target host.
        hostname: opt(ByteString),
        /// Proposed maximum frame size.
        max_frame_size: def(u32, u32::MAX),
        /// The maximum channel number that can be used on the connection.
        channel_max: def(u16, u16::MAX),
        /// Idle time-out, in milliseconds.
        idle_time_out: opt(u32),
        /// Locales available for outgoing text.
        outgoing_locales: multi,
        /// Desired locales for incoming text in decreasing level of preference.
        incoming_locales: multi,
        /// The extension capabilities the sender supports.
        offered_capabilities: multi,
        /// The extension capabilities the sender can use if the receiver supports them.
        desired_capabilities: multi,
        /// Connection properties.
        properties: opt(Fields),
    }
}

composite! {
    /// 2.7.2 Begin: begin a session on a channel.
    pub struct Begin = (0x11, "amqp:begin:list") {
        /// The remote channel for this session (set when answering a begin).
        remote_channel: opt(u16),
        /// The transfer-id of the first transfer id the sender will send.
        next_outgoing_id: req(u32),
        /// The initial incoming-window of the sender.
        incoming_window: req(u32),
        /// The initial outgoing-window of the sender.
        outgoing_window: req(u32),
        /// The maximum handle value that can be used on the session.
        handle_max: def(u32, u32::MAX),
        /// The extension capabilities the sender supports.
        offered_capabilities: multi,
        /// The extension capabilities the sender can use if the receiver supports them.
        desired_capabilities: multi,
        /// Session properties.
        properties: opt(Fields),
    }
}

composite! {
    /// 2.7.3 Attach: attach a link to a session.
    pub struct Attach = (0x12, "amqp:attach:list") {
        /// The name of the link.
        name: req(ByteString),
        /// The handle for the link while attached.
        handle: req(u32),
        /// Role of the link endpoint.
        role: req(Role),
        /// Settlement policy for the sender.
        snd_settle_mode: def(SenderSettleMode, SenderSettleMode::Mixed),
        /// The settlement policy of the receiver.
        rcv_settle_mode: def(ReceiverSettleMode, ReceiverSettleMode::First),
        /// The source for messages.
        source: opt(Box<Source>),
        /// The target for messages.
        target: opt(Box<Target>),
        /// Unsettled delivery state.
        unsettled: opt(Map<Value, Value>),
        /// Whether `unsettled` is incomplete.
        incomplete_unsettled: def(bool, false),
        /// The sender's initial value for delivery-count.
        initial_delivery_count: opt(u32),
        /// The maximum message size supported by the link endpoint.
        max_message_size: opt(u64),
        /// The extension capabilities the sender supports.
        offered_capabilities: multi,
        /// The extension capabilities the sender can use if the receiver supports them.
        desired_capabilities: multi,
        /// Link properties.
        properties: opt(Fields),
    }
}

composite! {
    /// 2.7.4 Flow: update link and session flow-control state.
    pub struct Flow = (0x13, "amqp:flow:list") {
        /// The expected transfer-id of the next incoming transfer frame.
        next_incoming_id: opt(u32),
        /// The sender's incoming-window.
        incoming_window: req(u32),
        /// The transfer-id that will be assigned to the next outgoing transfer frame.
        next_outgoing_id: req(u32),
        /// The sender's outgoing-window.
        outgoing_window: req(u32),
        /// The link the flow state applies to, if any.
        handle: opt(u32),
        /// The link's delivery-count.
        delivery_count: opt(u32),
        /// The current maximum number of messages that can be received.
        link_credit: opt(u32),
        /// The number of available messages.
        available: opt(u32),
        /// Whether the sender should use up all its credit.
        drain: def(bool, false),
        /// Whether the receiver of this flow should answer with its own.
        echo: def(bool, false),
        /// Link state properties.
        properties: opt(Fields),
    }
}

composite! {
    /// 2.7.5 Transfer: transfer a message (or a frame of one).
    pub struct Transfer = (0x14, "amqp:transfer:list") {
        /// The link handle.
        handle: req(u32),
        /// Alias for the delivery-tag.
        delivery_id: opt(u32),
        /// The delivery tag.
        delivery_tag: opt(Bytes),
        /// The message format.
        message_format: opt(u32),
        /// Whether the delivery is settled by the sender.
        settled: opt(bool),
        /// Whether more frames of this delivery follow.
        more: def(bool, false),
        /// The receiver settle mode for this delivery.
        rcv_settle_mode: opt(ReceiverSettleMode),
        /// The state of the delivery at the sender.
        state: opt(DeliveryState),
        /// Whether this resumes a delivery.
        resume: def(bool, false),
        /// Whether the delivery is aborted.
        aborted: def(bool, false),
        /// Whether the transfer may be batched.
        batchable: def(bool, false),
    }
}

composite! {
    /// 2.7.6 Disposition: inform the peer of delivery state changes.
    pub struct Disposition = (0x15, "amqp:disposition:list") {
        /// The role of the sender of this frame.
        role: req(Role),
        /// The lower bound of the delivery-ids covered.
        first: req(u32),
        /// The upper bound (inclusive) of the delivery-ids covered.
        last: opt(u32),
        /// Whether the deliveries are settled.
        settled: def(bool, false),
        /// The new delivery state.
        state: opt(DeliveryState),
        /// Whether the disposition may be batched.
        batchable: def(bool, false),
    }
}

composite! {
    /// 2.7.7 Detach: detach the link endpoint from the session.
    pub struct Detach = (0x16, "amqp:detach:list") {
        /// The link handle.
        handle: req(u32),
        /// Whether the link is closed (not just detached).
        closed: def(bool, false),
        /// Error causing the detach.
        error: opt(AmqpError),
    }
}

composite! {
    /// 2.7.8 End: end the session.
    pub struct End = (0x17, "amqp:end:list") {
        /// Error causing the end.
        error: opt(AmqpError),
    }
}

composite! {
    /// 2.7.9 Close: signal a connection close.
    pub struct Close = (0x18, "amqp:close:list") {
        /// Error causing the close.
        error: opt(AmqpError),
    }
}

/// Any of the nine performatives (2.7), decoded by descriptor.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Performative {
    Open(Open),
    Begin(Begin),
    Attach(Attach),
    Flow(Flow),
    Transfer(Transfer),
    Disposition(Disposition),
    Detach(Detach),
    End(End),
    Close(Close),
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            Performative::Open($p) => $e,
            Performative::Begin($p) => $e,
            Performative::Attach($p) => $e,
            Performative::Flow($p) => $e,
            Performative::Transfer($p) => $e,
            Performative::Disposition($p) => $e,
            Performative::Detach($p) => $e,
            Performative::End($p) => $e,
            Performative::Close($p) => $e,
        }
    };
}

impl Performative {
    /// The performative's name as the spec writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Performative::Open(_) => "open",
            Performative::Begin(_) => "begin",
            Performative::Attach(_) => "attach",
            Performative::Flow(_) => "flow",
            Performative::Transfer(_) => "transfer",
            Performative::Disposition(_) => "disposition",
            Performative::Detach(_) => "detach",
            Performative::End(_) => "end",
            Performative::Close(_) => "close",
        }
    }
}

impl Encode for Performative {
    fn encoded_len_as(&self, form: Form) -> usize {
        dispatch!(self, p => p.encoded_len_as(form))
    }
    fn encode_as<B: BufMut>(&self, form: Form, buf: &mut B) {
        dispatch!(self, p => p.encode_as(form, buf))
    }
}

impl Decode for Performative {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let at = d.offset();
        let code = d.u8()?;
        if code != super::format_code::DESCRIBED {
            return Err(d.unexpected("performative", code));
        }
        let desc = d.descriptor()?;
        let code = match &desc {
            super::Descriptor::Code(c) => *c,
            super::Descriptor::Symbol(s) => match s.as_str() {
                Open::SYMBOL => Open::CODE,
                Begin::SYMBOL => Begin::CODE,
                Attach::SYMBOL => Attach::CODE,
                Flow::SYMBOL => Flow::CODE,
                Transfer::SYMBOL => Transfer::CODE,
                Disposition::SYMBOL => Disposition::CODE,
                Detach::SYMBOL => Detach::CODE,
                End::SYMBOL => End::CODE,
                Close::SYMBOL => Close::CODE,
                _ => u64::MAX,
            },
        };
        d.descend(|d| {
            Ok(match code {
                Open::CODE => Performative::Open(Open::decode_fields(d)?),
                Begin::CODE => Performative::Begin(Begin::decode_fields(d)?),
                Attach::CODE => Performative::Attach(Attach::decode_fields(d)?),
                Flow::CODE => Performative::Flow(Flow::decode_fields(d)?),
                Transfer::CODE => Performative::Transfer(Transfer::decode_fields(d)?),
                Disposition::CODE => Performative::Disposition(Disposition::decode_fields(d)?),
                Detach::CODE => Performative::Detach(Detach::decode_fields(d)?),
                End::CODE => Performative::End(End::decode_fields(d)?),
                Close::CODE => Performative::Close(Close::decode_fields(d)?),
                _ => {
                    return Err(d.err_at(
                        at,
                        DecodeErrorKind::UnexpectedDescriptor {
                            expected: "performative",
                            found: desc.to_string(),
                        },
                    ))
                }
            })
        })
    }
}

macro_rules! from_variant {
    ($($t:ident),*) => {$(
        impl From<$t> for Performative {
            fn from(p: $t) -> Self {
                Performative::$t(p)
            }
        }
    )*};
}
from_variant!(
    Open,
    Begin,
    Attach,
    Flow,
    Transfer,
    Disposition,
    Detach,
    End,
    Close
);
