//! The encoding side: the [`Encode`] trait and writers for each primitive.

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use super::format_code as fc;
use super::types::{Decimal128, Decimal32, Decimal64, Descriptor, Symbol, Timestamp, Uuid};

/// How composite types lay out their field lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Form {
    /// Trailing null fields are omitted and fields equal to their default
    /// are sent as null: the smallest legal encoding.
    #[default]
    Compact,
    /// Every field is sent, defaults written out. Peers that index fields by
    /// position (the official Python SDK does) need this form.
    Full,
}

/// A type that can be written as AMQP bytes.
///
/// `encoded_len` MUST equal the number of bytes `encode` writes, so callers
/// can size a buffer once.
pub trait Encode {
    /// Exact encoded length in `form`.
    fn encoded_len_as(&self, form: Form) -> usize;
    /// Writes the encoding in `form`.
    fn encode_as<B: BufMut>(&self, form: Form, buf: &mut B);

    /// Exact encoded length in the compact form.
    #[inline]
    fn encoded_len(&self) -> usize {
        self.encoded_len_as(Form::Compact)
    }
    /// Writes the compact encoding.
    #[inline]
    fn encode<B: BufMut>(&self, buf: &mut B) {
        self.encode_as(Form::Compact, buf)
    }
    /// Encodes into a new buffer of exactly the right size.
    fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        Bytes::from(v)
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    #[inline]
    fn encoded_len_as(&self, form: Form) -> usize {
        (**self).encoded_len_as(form)
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, form: Form, buf: &mut B) {
        (**self).encode_as(form, buf)
    }
}

impl<T: Encode> Encode for Box<T> {
    #[inline]
    fn encoded_len_as(&self, form: Form) -> usize {
        (**self).encoded_len_as(form)
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, form: Form, buf: &mut B) {
        (**self).encode_as(form, buf)
    }
}

/// `None` is null.
impl<T: Encode> Encode for Option<T> {
    #[inline]
    fn encoded_len_as(&self, form: Form) -> usize {
        self.as_ref().map_or(1, |v| v.encoded_len_as(form))
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, form: Form, buf: &mut B) {
        match self {
            Some(v) => v.encode_as(form, buf),
            None => buf.put_u8(fc::NULL),
        }
    }
}

macro_rules! fixed {
    ($t:ty, $code:expr, $len:expr, |$s:ident, $b:ident| $put:expr) => {
        impl Encode for $t {
            #[inline]
            fn encoded_len_as(&self, _: Form) -> usize {
                1 + $len
            }
            #[inline]
            fn encode_as<B: BufMut>(&self, _: Form, $b: &mut B) {
                let $s = self;
                $b.put_u8($code);
                $put;
            }
        }
    };
}

fixed!(u8, fc::UBYTE, 1, |v, b| b.put_u8(*v));
fixed!(u16, fc::USHORT, 2, |v, b| b.put_u16(*v));
fixed!(i8, fc::BYTE, 1, |v, b| b.put_i8(*v));
fixed!(i16, fc::SHORT, 2, |v, b| b.put_i16(*v));
fixed!(f32, fc::FLOAT, 4, |v, b| b.put_f32(*v));
fixed!(f64, fc::DOUBLE, 8, |v, b| b.put_f64(*v));
fixed!(char, fc::CHAR, 4, |v, b| b.put_u32(*v as u32));
fixed!(Timestamp, fc::TIMESTAMP, 8, |v, b| b.put_i64(v.0));
fixed!(Uuid, fc::UUID, 16, |v, b| b.put_slice(&v.0));
fixed!(Decimal32, fc::DECIMAL32, 4, |v, b| b.put_slice(&v.0));
fixed!(Decimal64, fc::DECIMAL64, 8, |v, b| b.put_slice(&v.0));
fixed!(Decimal128, fc::DECIMAL128, 16, |v, b| b.put_slice(&v.0));

impl Encode for bool {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        1
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        buf.put_u8(if *self {
            fc::BOOLEAN_TRUE
        } else {
            fc::BOOLEAN_FALSE
        })
    }
}

impl Encode for u32 {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        match *self {
            0 => 1,
            1..=255 => 2,
            _ => 5,
        }
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        match *self {
            0 => buf.put_u8(fc::UINT0),
            v @ 1..=255 => buf.put_slice(&[fc::SMALLUINT, v as u8]),
            v => {
                buf.put_u8(fc::UINT);
                buf.put_u32(v)
            }
        }
    }
}

impl Encode for u64 {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        match *self {
            0 => 1,
            1..=255 => 2,
            _ => 9,
        }
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        match *self {
            0 => buf.put_u8(fc::ULONG0),
            v @ 1..=255 => buf.put_slice(&[fc::SMALLULONG, v as u8]),
            v => {
                buf.put_u8(fc::ULONG);
                buf.put_u64(v)
            }
        }
    }
}

impl Encode for i32 {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        if (-128..=127).contains(self) {
            2
        } else {
            5
        }
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        if (-128..=127).contains(self) {
            buf.put_slice(&[fc::SMALLINT, *self as i8 as u8])
        } else {
            buf.put_u8(fc::INT);
            buf.put_i32(*self)
        }
    }
}

impl Encode for i64 {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        if (-128..=127).contains(self) {
            2
        } else {
            9
        }
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        if (-128..=127).contains(self) {
            buf.put_slice(&[fc::SMALLLONG, *self as i8 as u8])
        } else {
            buf.put_u8(fc::LONG);
            buf.put_i64(*self)
        }
    }
}

/// Length of a variable-width value of `n` payload bytes.
#[inline]
pub(crate) fn variable_len(n: usize) -> usize {
    if n <= 255 {
        2 + n
    } else {
        5 + n
    }
}

/// Writes a variable-width header: the 8-bit code and length when `n` fits
/// in a byte, the 32-bit ones otherwise.
#[inline]
pub(crate) fn put_variable_header<B: BufMut>(buf: &mut B, code8: u8, code32: u8, n: usize) {
    if n <= 255 {
        buf.put_slice(&[code8, n as u8]);
    } else {
        buf.put_u8(code32);
        buf.put_u32(n as u32);
    }
}

impl Encode for [u8] {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        variable_len(self.len())
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        put_variable_header(buf, fc::VBIN8, fc::VBIN32, self.len());
        buf.put_slice(self)
    }
}

impl Encode for Bytes {
    #[inline]
    fn encoded_len_as(&self, f: Form) -> usize {
        self[..].encoded_len_as(f)
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        self[..].encode_as(f, buf)
    }
}

impl Encode for str {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        variable_len(self.len())
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        put_variable_header(buf, fc::STR8, fc::STR32, self.len());
        buf.put_slice(self.as_bytes())
    }
}

impl Encode for ByteString {
    #[inline]
    fn encoded_len_as(&self, f: Form) -> usize {
        (**self).encoded_len_as(f)
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        (**self).encode_as(f, buf)
    }
}

impl Encode for Symbol {
    #[inline]
    fn encoded_len_as(&self, _: Form) -> usize {
        variable_len(self.len())
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        put_variable_header(buf, fc::SYM8, fc::SYM32, self.len());
        buf.put_slice(self.as_str().as_bytes())
    }
}

impl Encode for Descriptor {
    #[inline]
    fn encoded_len_as(&self, f: Form) -> usize {
        match self {
            Descriptor::Code(c) => c.encoded_len_as(f),
            Descriptor::Symbol(s) => s.encoded_len_as(f),
        }
    }
    #[inline]
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        match self {
            Descriptor::Code(c) => c.encode_as(f, buf),
            Descriptor::Symbol(s) => s.encode_as(f, buf),
        }
    }
}

/// Length of a list or map holding `count` elements in `body` bytes.
#[inline]
pub(crate) fn compound_len(count: usize, body: usize) -> usize {
    if count == 0 {
        1
    } else if body < 255 && count <= 255 {
        3 + body
    } else {
        9 + body
    }
}

/// Writes a list header for `count` elements in `body` bytes (list0 when
/// empty).
#[inline]
pub(crate) fn put_list_header<B: BufMut>(buf: &mut B, count: usize, body: usize) {
    if count == 0 {
        buf.put_u8(fc::LIST0);
    } else {
        put_compound_header(buf, fc::LIST8, fc::LIST32, count, body)
    }
}

/// Writes a list8/map8 header when size and count fit a byte, else the
/// 32-bit form.
#[inline]
pub(crate) fn put_compound_header<B: BufMut>(
    buf: &mut B,
    code8: u8,
    code32: u8,
    count: usize,
    body: usize,
) {
    if body < 255 && count <= 255 {
        buf.put_slice(&[code8, (body + 1) as u8, count as u8]);
    } else {
        buf.put_u8(code32);
        buf.put_u32((body + 4) as u32);
        buf.put_u32(count as u32);
    }
}

/// Length of a map of `count` key/value pairs whose encodings take `body`
/// bytes.
#[inline]
pub(crate) fn map_len(pairs: usize, body: usize) -> usize {
    if body < 255 && pairs * 2 <= 255 {
        3 + body
    } else {
        9 + body
    }
}

/// Writes a map header for `pairs` entries in `body` bytes.
#[inline]
pub(crate) fn put_map_header<B: BufMut>(buf: &mut B, pairs: usize, body: usize) {
    put_compound_header(buf, fc::MAP8, fc::MAP32, pairs * 2, body)
}
