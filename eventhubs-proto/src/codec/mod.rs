//! AMQP 1.0 codec: types (part 1), transport (part 2), messaging (part 3)
//! and SASL (part 5).
//!
//! Decoding reads from a shared [`Bytes`](bytes::Bytes) buffer through a
//! [`Decoder`]; binary, string and symbol payloads come back as slices of
//! that buffer. Encoding writes into any [`BufMut`](bytes::BufMut), and
//! every encodable type reports its exact encoded length first, so a buffer
//! is sized once. Composite types (performatives, sections, terminus and
//! outcome types) come from one table-driven macro in `composite`.

mod composite;
mod decode;
mod encode;
mod error;
pub mod frame;
pub mod message;
pub mod messaging;
pub mod performatives;
pub mod sasl;
mod types;
mod value;

pub use decode::{Decode, Decoder};
pub use encode::{Encode, Form};
pub use error::{DecodeError, DecodeErrorKind};
pub use types::{
    AmqpString, Decimal128, Decimal32, Decimal64, Descriptor, Map, Symbol, Timestamp, Uuid,
};
pub use value::{Array, Described, Value};

/// Deepest nesting of compound and described values the decoder accepts.
/// Deeper input is rejected with [`DecodeErrorKind::TooDeep`] rather than
/// risking the stack.
pub const MAX_DEPTH: u32 = 32;

/// Format codes (1.6): the constructor byte of every primitive encoding.
pub mod format_code {
    #![allow(missing_docs)]
    pub const DESCRIBED: u8 = 0x00;
    pub const NULL: u8 = 0x40;
    pub const BOOLEAN_TRUE: u8 = 0x41;
    pub const BOOLEAN_FALSE: u8 = 0x42;
    pub const BOOLEAN: u8 = 0x56;
    pub const UBYTE: u8 = 0x50;
    pub const USHORT: u8 = 0x60;
    pub const UINT: u8 = 0x70;
    pub const SMALLUINT: u8 = 0x52;
    pub const UINT0: u8 = 0x43;
    pub const ULONG: u8 = 0x80;
    pub const SMALLULONG: u8 = 0x53;
    pub const ULONG0: u8 = 0x44;
    pub const BYTE: u8 = 0x51;
    pub const SHORT: u8 = 0x61;
    pub const INT: u8 = 0x71;
    pub const SMALLINT: u8 = 0x54;
    pub const LONG: u8 = 0x81;
    pub const SMALLLONG: u8 = 0x55;
    pub const FLOAT: u8 = 0x72;
    pub const DOUBLE: u8 = 0x82;
    pub const DECIMAL32: u8 = 0x74;
    pub const DECIMAL64: u8 = 0x84;
    pub const DECIMAL128: u8 = 0x94;
    pub const CHAR: u8 = 0x73;
    pub const TIMESTAMP: u8 = 0x83;
    pub const UUID: u8 = 0x98;
    pub const VBIN8: u8 = 0xa0;
    pub const VBIN32: u8 = 0xb0;
    pub const STR8: u8 = 0xa1;
    pub const STR32: u8 = 0xb1;
    pub const SYM8: u8 = 0xa3;
    pub const SYM32: u8 = 0xb3;
    pub const LIST0: u8 = 0x45;
    pub const LIST8: u8 = 0xc0;
    pub const LIST32: u8 = 0xd0;
    pub const MAP8: u8 = 0xc1;
    pub const MAP32: u8 = 0xd1;
    pub const ARRAY8: u8 = 0xe0;
    pub const ARRAY32: u8 = 0xf0;

    /// True for every format code AMQP 1.0 defines.
    pub fn is_valid(code: u8) -> bool {
        matches!(
            code,
            0x00 | 0x40..=0x45 | 0x50..=0x56 | 0x60 | 0x61 | 0x70..=0x74 | 0x80..=0x84 | 0x94 | 0x98
                | 0xa0 | 0xa1 | 0xa3 | 0xb0 | 0xb1 | 0xb3 | 0xc0 | 0xc1 | 0xd0 | 0xd1 | 0xe0 | 0xf0
        )
    }

    /// Width in bytes of the data after a fixed-width code, or `None` for
    /// variable-width, compound and array codes.
    pub fn fixed_width(code: u8) -> Option<usize> {
        Some(match code {
            0x40..=0x45 => 0,
            0x50..=0x56 => 1,
            0x60 | 0x61 => 2,
            0x70..=0x74 => 4,
            0x80..=0x84 => 8,
            0x94 | 0x98 => 16,
            _ => return None,
        })
    }
}
