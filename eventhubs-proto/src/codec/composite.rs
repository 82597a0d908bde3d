//! The one table-driven definition of AMQP composite types.
//!
//! [`composite!`] turns a field table, written in the order and with the
//! kinds of the specification, into a struct with `Encode` and `Decode`.
//! Field kinds:
//! - `req(T)`: mandatory; null or absent is a decode error.
//! - `opt(T)`: `Option<T>`; null or absent is `None`.
//! - `def(T, default)`: `T`; null or absent is `default`, and the compact
//!   form sends `default` as null.
//! - `multi`: a `symbol multiple` field as `Vec<Symbol>`; a single symbol or
//!   an array decodes, empty encodes as null.

use bytes::BufMut;

use super::decode::Decoder;
use super::encode::{Encode, Form};
use super::error::{DecodeError, DecodeErrorKind};
use super::format_code as fc;
use super::types::Symbol;
use super::value::Value;
use super::Decode;

type R<T> = Result<T, DecodeError>;

/// Length of a described-type header: `0x00` and the ulong descriptor.
#[inline]
pub(crate) fn descriptor_len(code: u64) -> usize {
    1 + code.encoded_len()
}

#[inline]
pub(crate) fn put_descriptor<B: BufMut>(buf: &mut B, code: u64) {
    buf.put_u8(fc::DESCRIBED);
    code.encode(buf);
}

#[inline]
pub(crate) fn def_is_null<T: PartialEq>(v: &T, default: &T, form: Form) -> bool {
    form == Form::Compact && v == default
}

#[inline]
pub(crate) fn def_len<T: Encode + PartialEq>(v: &T, default: &T, form: Form) -> usize {
    if def_is_null(v, default, form) {
        1
    } else {
        v.encoded_len_as(form)
    }
}

#[inline]
pub(crate) fn def_put<T: Encode + PartialEq, B: BufMut>(
    v: &T,
    default: &T,
    form: Form,
    buf: &mut B,
) {
    if def_is_null(v, default, form) {
        buf.put_u8(fc::NULL)
    } else {
        v.encode_as(form, buf)
    }
}

/// Encoded length of a `symbol multiple` field: null when empty, else an
/// array of symbols.
pub(crate) fn multi_len(v: &[Symbol]) -> usize {
    if v.is_empty() {
        return 1;
    }
    let (content, _) = multi_content(v);
    if v.len() <= 255 && content < 255 {
        3 + content
    } else {
        9 + content
    }
}

/// Bytes after the array's size and count, and the element code.
fn multi_content(v: &[Symbol]) -> (usize, u8) {
    let wide = v.iter().any(|s| s.len() > 255);
    let per = if wide { 4 } else { 1 };
    (
        1 + v.iter().map(|s| per + s.len()).sum::<usize>(),
        if wide { fc::SYM32 } else { fc::SYM8 },
    )
}

pub(crate) fn multi_put<B: BufMut>(v: &[Symbol], buf: &mut B) {
    if v.is_empty() {
        return buf.put_u8(fc::NULL);
    }
    let (content, code) = multi_content(v);
    if v.len() <= 255 && content < 255 {
        buf.put_slice(&[fc::ARRAY8, (content + 1) as u8, v.len() as u8]);
    } else {
        buf.put_u8(fc::ARRAY32);
        buf.put_u32((content + 4) as u32);
        buf.put_u32(v.len() as u32);
    }
    buf.put_u8(code);
    for s in v {
        if code == fc::SYM8 {
            buf.put_u8(s.len() as u8);
        } else {
            buf.put_u32(s.len() as u32);
        }
        buf.put_slice(s.as_str().as_bytes());
    }
}

/// Decodes a `symbol multiple` field: null, one symbol or an array.
pub(crate) fn multi_decode(d: &mut Decoder<'_>) -> R<Vec<Symbol>> {
    if d.take_null() {
        return Ok(Vec::new());
    }
    match d.peek_u8()? {
        fc::SYM8 | fc::SYM32 => Ok(vec![Symbol::decode(d)?]),
        _ => {
            let at = d.offset();
            let arr = super::value::Array::decode(d)?;
            arr.into_items()
                .into_iter()
                .map(|v| match v {
                    Value::Symbol(s) => Ok(s),
                    _ => Err(d.err_at(
                        at,
                        DecodeErrorKind::UnexpectedFormatCode {
                            expected: "array of symbol",
                            found: fc::ARRAY8,
                        },
                    )),
                })
                .collect()
        }
    }
}

#[inline]
pub(crate) fn missing(
    d: &Decoder<'_>,
    composite: &'static str,
    field: &'static str,
) -> DecodeError {
    d.err(DecodeErrorKind::MissingField { composite, field })
}

macro_rules! field_type {
    (req $t:ty) => { $t };
    (opt $t:ty) => { Option<$t> };
    (def $t:ty, $d:expr) => { $t };
    (multi) => { Vec<$crate::codec::Symbol> };
}

macro_rules! field_default {
    (req $t:ty) => {
        <$t as Default>::default()
    };
    (opt $t:ty) => {
        None
    };
    (def $t:ty, $d:expr) => {
        $d
    };
    (multi) => {
        Vec::new()
    };
}

macro_rules! field_is_null {
    ($form:ident, $v:expr, req $t:ty) => {
        false
    };
    ($form:ident, $v:expr, opt $t:ty) => {
        $v.is_none()
    };
    ($form:ident, $v:expr, def $t:ty, $d:expr) => {
        $crate::codec::composite::def_is_null($v, &$d, $form)
    };
    ($form:ident, $v:expr, multi) => {
        $v.is_empty()
    };
}

macro_rules! field_len {
    ($form:ident, $v:expr, req $t:ty) => {
        $crate::codec::Encode::encoded_len_as($v, $form)
    };
    ($form:ident, $v:expr, opt $t:ty) => {
        $crate::codec::Encode::encoded_len_as($v, $form)
    };
    ($form:ident, $v:expr, def $t:ty, $d:expr) => {
        $crate::codec::composite::def_len($v, &$d, $form)
    };
    ($form:ident, $v:expr, multi) => {
        $crate::codec::composite::multi_len($v)
    };
}

macro_rules! field_put {
    ($form:ident, $buf:ident, $v:expr, req $t:ty) => {
        $crate::codec::Encode::encode_as($v, $form, $buf)
    };
    ($form:ident, $buf:ident, $v:expr, opt $t:ty) => {
        $crate::codec::Encode::encode_as($v, $form, $buf)
    };
    ($form:ident, $buf:ident, $v:expr, def $t:ty, $d:expr) => {
        $crate::codec::composite::def_put($v, &$d, $form, $buf)
    };
    ($form:ident, $buf:ident, $v:expr, multi) => {
        $crate::codec::composite::multi_put($v, $buf)
    };
}

macro_rules! field_decode {
    ($d:ident, $present:expr, $c:expr, $f:expr, req $t:ty) => {
        if $present && !$d.take_null() {
            <$t as $crate::codec::Decode>::decode($d)
        } else {
            Err($crate::codec::composite::missing($d, $c, $f))
        }
    };
    ($d:ident, $present:expr, $c:expr, $f:expr, opt $t:ty) => {
        if $present {
            <Option<$t> as $crate::codec::Decode>::decode($d)
        } else {
            Ok(None)
        }
    };
    ($d:ident, $present:expr, $c:expr, $f:expr, def $t:ty, $dflt:expr) => {
        if $present && !$d.take_null() {
            <$t as $crate::codec::Decode>::decode($d)
        } else {
            Ok($dflt)
        }
    };
    ($d:ident, $present:expr, $c:expr, $f:expr, multi) => {
        if $present {
            $crate::codec::composite::multi_decode($d)
        } else {
            Ok(Vec::new())
        }
    };
}

/// Defines a composite type (1.4 of the AMQP spec) from its field table.
macro_rules! composite {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = ($code:literal, $sym:literal) {
            $( $(#[$fmeta:meta])* $field:ident : $kind:ident $(($($arg:tt)*))? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $crate::codec::composite::field_type!($kind $($($arg)*)?), )*
        }

        /// Mandatory fields zeroed, the others at the specification's defaults.
        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $crate::codec::composite::field_default!($kind $($($arg)*)?), )* }
            }
        }

        impl $name {
            /// Numeric descriptor (domain 0x00000000).
            pub const CODE: u64 = $code;
            /// Symbolic descriptor.
            pub const SYMBOL: &'static str = $sym;
            const FIELDS: usize = <[&str]>::len(&[$(stringify!($field)),*]);

            /// True when `d` names this type, by code or by symbol.
            #[allow(dead_code)]
            pub(crate) fn is(d: &$crate::codec::Descriptor) -> bool {
                match d {
                    $crate::codec::Descriptor::Code(c) => *c == $code,
                    $crate::codec::Descriptor::Symbol(s) => s.as_str() == $sym,
                }
            }

            #[allow(unused_variables, unused_mut, unused_assignments)]
            fn field_count(&self, form: $crate::codec::Form) -> usize {
                if form == $crate::codec::Form::Full {
                    return Self::FIELDS;
                }
                let mut n = 0;
                let mut i = 0;
                $(
                    i += 1;
                    if !$crate::codec::composite::field_is_null!(form, &self.$field, $kind $($($arg)*)?) {
                        n = i;
                    }
                )*
                n
            }

            #[allow(unused_variables, unused_mut, unused_assignments)]
            fn fields_len(&self, form: $crate::codec::Form, count: usize) -> usize {
                let mut len = 0;
                let mut i = 0;
                $(
                    if i < count {
                        len += $crate::codec::composite::field_len!(form, &self.$field, $kind $($($arg)*)?);
                    }
                    i += 1;
                )*
                len
            }

            /// Decodes the field list that follows this type's descriptor.
            #[allow(unused_variables, unused_mut, unused_assignments)]
            pub(crate) fn decode_fields(d: &mut $crate::codec::Decoder<'_>) -> Result<Self, $crate::codec::DecodeError> {
                let c = d.list_header()?;
                d.nested(c.body, |d| {
                    let mut i = 0u32;
                    $(
                        let $field = $crate::codec::composite::field_decode!(d, i < c.count, stringify!($name), stringify!($field), $kind $($($arg)*)?)?;
                        i += 1;
                    )*
                    // Fields a later version of the spec may add are skipped.
                    while i < c.count {
                        <$crate::codec::Value as $crate::codec::Decode>::decode(d)?;
                        i += 1;
                    }
                    Ok($name { $($field),* })
                })
            }
        }

        impl $crate::codec::Encode for $name {
            fn encoded_len_as(&self, form: $crate::codec::Form) -> usize {
                let count = self.field_count(form);
                $crate::codec::composite::descriptor_len($code)
                    + $crate::codec::encode::compound_len(count, self.fields_len(form, count))
            }

            #[allow(unused_variables, unused_mut, unused_assignments)]
            fn encode_as<B: bytes::BufMut>(&self, form: $crate::codec::Form, buf: &mut B) {
                $crate::codec::composite::put_descriptor(buf, $code);
                let count = self.field_count(form);
                $crate::codec::encode::put_list_header(buf, count, self.fields_len(form, count));
                let mut i = 0;
                $(
                    if i < count {
                        $crate::codec::composite::field_put!(form, buf, &self.$field, $kind $($($arg)*)?);
                    }
                    i += 1;
                )*
            }
        }

        impl $crate::codec::Decode for $name {
            fn decode(d: &mut $crate::codec::Decoder<'_>) -> Result<Self, $crate::codec::DecodeError> {
                d.expect_descriptor(stringify!($name), $code, $sym)?;
                d.descend(Self::decode_fields)
            }
        }
    };
}

pub(crate) use {
    composite, field_decode, field_default, field_is_null, field_len, field_put, field_type,
};
