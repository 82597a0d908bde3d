//! Errors raised while decoding AMQP bytes.

use std::fmt;

/// Bytes that do not decode as AMQP 1.0.
///
/// Carries what failed ([`DecodeErrorKind`]) and the byte offset, from the
/// start of the buffer handed to the decoder, at which it was detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct DecodeError {
    /// Offset of the offending byte from the start of the input.
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended before the value did.
    UnexpectedEnd {
        /// Bytes still needed at this point.
        needed: usize,
    },
    /// A format code that AMQP 1.0 does not define.
    InvalidFormatCode(u8),
    /// A valid format code where another type was required.
    UnexpectedFormatCode {
        /// What the decoder was reading.
        expected: &'static str,
        /// The format code found.
        found: u8,
    },
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// A symbol containing non-ASCII bytes.
    InvalidSymbol,
    /// A char that is not a Unicode scalar value.
    InvalidChar(u32),
    /// A compound or array whose element count cannot fit in its size.
    CountExceedsSize {
        /// Element count claimed.
        count: u32,
        /// Bytes available for the elements.
        size: u32,
    },
    /// A compound or array whose declared size is too small for its count
    /// field or larger than the input.
    InvalidSize(u32),
    /// A compound whose elements did not use exactly its declared size.
    SizeMismatch {
        /// Bytes left unread inside the compound.
        remaining: usize,
    },
    /// A map with an odd number of elements.
    OddMapCount(u32),
    /// Nesting deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    TooDeep,
    /// A described type whose descriptor is not the one expected.
    UnexpectedDescriptor {
        /// The type being decoded.
        expected: &'static str,
        /// The descriptor found, rendered for diagnostics.
        found: String,
    },
    /// A mandatory field of a composite type was null or absent.
    MissingField {
        /// The composite type.
        composite: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A value outside the range its restricted type allows.
    InvalidValue {
        /// The restricted type.
        ty: &'static str,
        /// The value, rendered for diagnostics.
        value: String,
    },
    /// Bytes left over after a complete value where none were expected.
    TrailingBytes(usize),
    /// A frame header that is malformed.
    InvalidFrame(&'static str),
    /// A protocol header that is not `AMQP` followed by a known id.
    InvalidProtocolHeader([u8; 8]),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match self {
            UnexpectedEnd { needed } => write!(f, "input ended, {needed} more byte(s) needed"),
            InvalidFormatCode(c) => write!(f, "invalid format code 0x{c:02x}"),
            UnexpectedFormatCode { expected, found } => {
                write!(f, "expected {expected}, found format code 0x{found:02x}")
            }
            InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            InvalidSymbol => f.write_str("symbol is not ASCII"),
            InvalidChar(c) => write!(f, "char 0x{c:x} is not a Unicode scalar value"),
            CountExceedsSize { count, size } => {
                write!(f, "{count} elements cannot fit in {size} bytes")
            }
            InvalidSize(s) => write!(f, "invalid compound size {s}"),
            SizeMismatch { remaining } => {
                write!(
                    f,
                    "{remaining} byte(s) left inside a compound after its last element"
                )
            }
            OddMapCount(c) => write!(f, "map with odd element count {c}"),
            TooDeep => write!(f, "nesting deeper than {}", super::MAX_DEPTH),
            UnexpectedDescriptor { expected, found } => {
                write!(f, "expected {expected}, found descriptor {found}")
            }
            MissingField { composite, field } => {
                write!(f, "mandatory field {field} of {composite} is missing")
            }
            InvalidValue { ty, value } => write!(f, "{value} is not a valid {ty}"),
            TrailingBytes(n) => write!(f, "{n} trailing byte(s)"),
            InvalidFrame(why) => write!(f, "invalid frame: {why}"),
            InvalidProtocolHeader(h) => write!(f, "invalid protocol header {h:02x?}"),
        }
    }
}
