//! The decoding cursor: reads AMQP encodings from a shared [`Bytes`] buffer.

use bytes::Bytes;

use super::error::{DecodeError, DecodeErrorKind};
use super::format_code as fc;
use super::types::{Descriptor, Symbol};
use super::MAX_DEPTH;

/// A type that can be read from AMQP bytes.
pub trait Decode: Sized {
    /// Reads one value (constructor included) from `d`.
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    /// Decodes `bytes` as exactly one value; trailing bytes are an error.
    fn decode_all(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let v = Self::decode(&mut d)?;
        d.finish()?;
        Ok(v)
    }
}

/// Header of a list or map: element count and the bytes holding them.
pub(crate) struct Compound<'a> {
    pub(crate) count: u32,
    pub(crate) body: &'a [u8],
}

/// A cursor over a [`Bytes`] buffer.
///
/// Binary, string and symbol values are returned as slices of the buffer
/// (`Bytes::slice_ref`), so decoding never copies payload bytes. Every
/// length and count is checked against the bytes actually present before
/// anything is allocated, and compound nesting is bounded by
/// [`MAX_DEPTH`].
#[derive(Debug)]
pub struct Decoder<'a> {
    src: &'a Bytes,
    input: &'a [u8],
    depth: u32,
}

type R<T> = Result<T, DecodeError>;

impl<'a> Decoder<'a> {
    /// A decoder over the whole of `src`.
    pub fn new(src: &'a Bytes) -> Self {
        Decoder {
            src,
            input: &src[..],
            depth: 0,
        }
    }

    /// Offset of the next byte to read, from the start of the buffer.
    pub fn offset(&self) -> usize {
        (self.input.as_ptr() as usize).saturating_sub(self.src.as_ptr() as usize)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> R<()> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(self.err(DecodeErrorKind::TrailingBytes(self.input.len())))
        }
    }

    /// The rest of the input as a shared slice, consuming it.
    pub fn take_rest(&mut self) -> Bytes {
        let rest = self.input;
        self.input = &rest[rest.len()..];
        self.share(rest)
    }

    pub(crate) fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.offset(),
            kind,
        }
    }

    pub(crate) fn err_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn eof(&self, need: usize) -> DecodeError {
        self.err(DecodeErrorKind::UnexpectedEnd {
            needed: need - self.input.len().min(need),
        })
    }

    /// Peeks at the next byte without consuming it.
    #[inline]
    pub fn peek_u8(&self) -> R<u8> {
        self.input.first().copied().ok_or_else(|| self.eof(1))
    }

    // The primitive reads below are plain slice splits rather than nom's
    // byte parsers: nom's `Input for &[u8]` leaves `take_from` without
    // `#[inline]`, so every byte read became an out-of-line call, which cost
    // about a fifth of decode time (benches/codec.rs). nom parses the frame
    // and protocol headers (frame.rs), where a call per header is nothing.

    #[inline]
    pub(crate) fn u8(&mut self) -> R<u8> {
        match self.input.split_first() {
            Some((&b, rest)) => {
                self.input = rest;
                Ok(b)
            }
            None => Err(self.eof(1)),
        }
    }
    #[inline]
    pub(crate) fn u16(&mut self) -> R<u16> {
        self.array().map(u16::from_be_bytes)
    }
    #[inline]
    pub(crate) fn u32(&mut self) -> R<u32> {
        self.array().map(u32::from_be_bytes)
    }
    #[inline]
    pub(crate) fn u64(&mut self) -> R<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// Takes `n` bytes as a borrowed slice.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        match self.input.split_at_checked(n) {
            Some((v, rest)) => {
                self.input = rest;
                Ok(v)
            }
            None => Err(self.eof(n)),
        }
    }

    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        match self.input.split_first_chunk::<N>() {
            Some((a, rest)) => {
                self.input = rest;
                Ok(*a)
            }
            None => Err(self.eof(N)),
        }
    }

    /// Shares a sub-slice of the input without copying.
    ///
    /// Every slice handed out by this decoder lies within `src`, so its
    /// offset is a pointer difference. `Bytes::slice`, being generic, is
    /// inlined here; `Bytes::slice_ref` is an out-of-line call that checks
    /// the bounds twice (benches/codec.rs).
    #[inline]
    pub(crate) fn share(&self, s: &'a [u8]) -> Bytes {
        if s.is_empty() {
            return Bytes::new();
        }
        let start = (s.as_ptr() as usize).wrapping_sub(self.src.as_ptr() as usize);
        self.src.slice(start..start + s.len())
    }

    /// Runs `f` over exactly `body`, then restores the outer input. Fails if
    /// `f` leaves bytes of `body` unread.
    pub(crate) fn nested<T>(&mut self, body: &'a [u8], f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(DecodeErrorKind::TooDeep));
        }
        let outer = std::mem::replace(&mut self.input, body);
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        let r = r.and_then(|v| {
            if self.input.is_empty() {
                Ok(v)
            } else {
                Err(self.err(DecodeErrorKind::SizeMismatch {
                    remaining: self.input.len(),
                }))
            }
        });
        self.input = outer;
        r
    }

    /// Runs `f` one nesting level deeper (for described values, whose
    /// nesting is not bounded by compound sizes).
    pub(crate) fn descend<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(DecodeErrorKind::TooDeep));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// Reads the size and count of a list or map whose format code `code`
    /// has been consumed; `at` is the code's offset, for errors.
    pub(crate) fn compound(&mut self, code: u8) -> R<Compound<'a>> {
        let (size, width) = match code {
            fc::LIST0 => {
                return Ok(Compound {
                    count: 0,
                    body: &[],
                })
            }
            fc::LIST8 | fc::MAP8 => (self.u8()? as u32, 1u32),
            _ => (self.u32()?, 4u32),
        };
        if size < width {
            return Err(self.err(DecodeErrorKind::InvalidSize(size)));
        }
        if size as usize > self.input.len() {
            return Err(self.eof(size as usize));
        }
        let count = if width == 1 {
            self.u8()? as u32
        } else {
            self.u32()?
        };
        let body = self.take((size - width) as usize)?;
        if count as usize > body.len() {
            return Err(self.err(DecodeErrorKind::CountExceedsSize { count, size }));
        }
        if matches!(code, fc::MAP8 | fc::MAP32) && count % 2 != 0 {
            return Err(self.err(DecodeErrorKind::OddMapCount(count)));
        }
        Ok(Compound { count, body })
    }

    /// Reads a list header (list0, list8 or list32), constructor included.
    pub(crate) fn list_header(&mut self) -> R<Compound<'a>> {
        let code = self.u8()?;
        match code {
            fc::LIST0 | fc::LIST8 | fc::LIST32 => self.compound(code),
            _ => Err(self.unexpected("list", code)),
        }
    }

    /// Reads a map header (map8 or map32), constructor included.
    pub(crate) fn map_header(&mut self) -> R<Compound<'a>> {
        let code = self.u8()?;
        match code {
            fc::MAP8 | fc::MAP32 => self.compound(code),
            _ => Err(self.unexpected("map", code)),
        }
    }

    /// The error for format code `code` found where `expected` was wanted.
    /// Points at the code byte, which has already been consumed.
    pub(crate) fn unexpected(&self, expected: &'static str, code: u8) -> DecodeError {
        let kind = if fc::is_valid(code) {
            DecodeErrorKind::UnexpectedFormatCode {
                expected,
                found: code,
            }
        } else {
            DecodeErrorKind::InvalidFormatCode(code)
        };
        self.err_at(self.offset().saturating_sub(1), kind)
    }

    /// Consumes a null (0x40) if one is next.
    #[inline]
    pub fn take_null(&mut self) -> bool {
        if self.input.first() == Some(&fc::NULL) {
            self.input = &self.input[1..];
            true
        } else {
            false
        }
    }

    /// Reads a descriptor (ulong or symbol) after the 0x00 constructor.
    pub fn descriptor(&mut self) -> R<Descriptor> {
        let code = self.u8()?;
        match code {
            fc::SMALLULONG => Ok(Descriptor::Code(self.u8()? as u64)),
            fc::ULONG => Ok(Descriptor::Code(self.u64()?)),
            fc::ULONG0 => Ok(Descriptor::Code(0)),
            fc::SYM8 | fc::SYM32 => Ok(Descriptor::Symbol(self.symbol_body(code)?)),
            _ => Err(self.unexpected("ulong or symbol descriptor", code)),
        }
    }

    /// Reads a described-type header (`0x00` and the descriptor) and
    /// checks it against the code and symbol of `name`.
    pub(crate) fn expect_descriptor(
        &mut self,
        name: &'static str,
        code: u64,
        symbol: &str,
    ) -> R<()> {
        let at = self.offset();
        let c = self.u8()?;
        if c != fc::DESCRIBED {
            return Err(self.unexpected(name, c));
        }
        let d = self.descriptor()?;
        let ok = match &d {
            Descriptor::Code(c) => *c == code,
            Descriptor::Symbol(s) => s.as_str() == symbol,
        };
        if ok {
            Ok(())
        } else {
            Err(self.err_at(
                at,
                DecodeErrorKind::UnexpectedDescriptor {
                    expected: name,
                    found: d.to_string(),
                },
            ))
        }
    }

    /// Reads the body of a sym8/sym32 whose code has been consumed.
    pub(crate) fn symbol_body(&mut self, code: u8) -> R<Symbol> {
        let len = if code == fc::SYM8 {
            self.u8()? as usize
        } else {
            self.u32()? as usize
        };
        let at = self.offset();
        let s = self.take(len)?;
        if let Some(known) = Symbol::well_known(s) {
            return Ok(known);
        }
        Symbol::from_bytes(self.share(s))
            .ok_or_else(|| self.err_at(at, DecodeErrorKind::InvalidSymbol))
    }

    /// Reads the body of a str8/str32 whose code has been consumed.
    pub(crate) fn string_body(&mut self, code: u8) -> R<bytestring::ByteString> {
        let len = if code == fc::STR8 {
            self.u8()? as usize
        } else {
            self.u32()? as usize
        };
        let at = self.offset();
        let s = self.take(len)?;
        bytestring::ByteString::try_from(self.share(s))
            .map_err(|_| self.err_at(at, DecodeErrorKind::InvalidUtf8))
    }

    /// Reads the body of a vbin8/vbin32 whose code has been consumed.
    pub(crate) fn binary_body(&mut self, code: u8) -> R<Bytes> {
        let len = if code == fc::VBIN8 {
            self.u8()? as usize
        } else {
            self.u32()? as usize
        };
        let s = self.take(len)?;
        Ok(self.share(s))
    }
}
