//! The dynamic AMQP value (1.6) and the typed decoders of primitives.

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use super::decode::{Decode, Decoder};
use super::encode::{compound_len, map_len, put_list_header, put_map_header, Encode, Form};
use super::error::{DecodeError, DecodeErrorKind};
use super::format_code::{self as fc, fixed_width};
use super::types::{Decimal128, Decimal32, Decimal64, Descriptor, Map, Symbol, Timestamp, Uuid};

type R<T> = Result<T, DecodeError>;

/// Any AMQP value.
///
/// Binary, string and symbol values share the bytes they were decoded from.
#[derive(Clone, PartialEq, Debug, Default)]
pub enum Value {
    /// 1.6.1 null.
    #[default]
    Null,
    /// 1.6.2 boolean.
    Bool(bool),
    /// 1.6.3 ubyte.
    Ubyte(u8),
    /// 1.6.4 ushort.
    Ushort(u16),
    /// 1.6.5 uint.
    Uint(u32),
    /// 1.6.6 ulong.
    Ulong(u64),
    /// 1.6.7 byte.
    Byte(i8),
    /// 1.6.8 short.
    Short(i16),
    /// 1.6.9 int.
    Int(i32),
    /// 1.6.10 long.
    Long(i64),
    /// 1.6.11 float.
    Float(f32),
    /// 1.6.12 double.
    Double(f64),
    /// 1.6.13 decimal32.
    Decimal32(Decimal32),
    /// 1.6.14 decimal64.
    Decimal64(Decimal64),
    /// 1.6.15 decimal128.
    Decimal128(Decimal128),
    /// 1.6.16 char.
    Char(char),
    /// 1.6.17 timestamp.
    Timestamp(Timestamp),
    /// 1.6.18 uuid.
    Uuid(Uuid),
    /// 1.6.19 binary.
    Binary(Bytes),
    /// 1.6.20 string.
    String(ByteString),
    /// 1.6.21 symbol.
    Symbol(Symbol),
    /// 1.6.22 list.
    List(Vec<Value>),
    /// 1.6.23 map.
    Map(Map<Value, Value>),
    /// 1.6.24 array: a sequence of values of one type sharing a constructor.
    Array(Array),
    /// 1.2 a described value.
    Described(Box<Described>),
}

/// Rust values as the AMQP primitive of the same type (1.6): `i64` as a
/// long, `&str` as a string, `Vec<u8>` as binary, and so on.
macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v.into())
            }
        }
    )*};
}

value_from!(
    bool => Bool, u8 => Ubyte, u16 => Ushort, u32 => Uint, u64 => Ulong,
    i8 => Byte, i16 => Short, i32 => Int, i64 => Long, f32 => Float, f64 => Double,
    char => Char, Timestamp => Timestamp, Uuid => Uuid, Bytes => Binary, Vec<u8> => Binary,
    ByteString => String, String => String, &str => String, Symbol => Symbol,
);

/// A described value (1.2): a descriptor and the value it describes.
#[derive(Clone, PartialEq, Debug)]
pub struct Described {
    /// The descriptor.
    pub descriptor: Descriptor,
    /// The described value.
    pub value: Value,
}

impl Described {
    /// A described value.
    pub fn new(descriptor: Descriptor, value: Value) -> Self {
        Described { descriptor, value }
    }
}

/// 1.6.24 array: values of a single type encoded with one shared
/// constructor, which may be a described-type constructor.
///
/// The element format code is kept as decoded, so re-encoding reproduces the
/// peer's bytes; the encoder widens it (smalluint to uint, sym8 to sym32,
/// and so on) when an element no longer fits. Equality compares the element
/// type, not the width of its encoding.
#[derive(Clone, Debug)]
pub struct Array {
    descriptor: Option<Descriptor>,
    code: u8,
    items: Vec<Value>,
}

impl PartialEq for Array {
    fn eq(&self, other: &Self) -> bool {
        self.descriptor == other.descriptor
            && element_family(self.code) == element_family(other.code)
            && self.items == other.items
    }
}

impl Array {
    /// An array of elements whose constructor is `code`, each element a
    /// value that `code` (or a wider code of the same type) can carry.
    /// `None` when an element does not match the type.
    pub fn new(code: u8, items: Vec<Value>) -> Option<Self> {
        let a = Array {
            descriptor: None,
            code,
            items,
        };
        a.is_consistent().then_some(a)
    }

    /// An array of described values sharing `descriptor`; `items` are the
    /// described values' bodies.
    pub fn described(descriptor: Descriptor, code: u8, items: Vec<Value>) -> Option<Self> {
        let a = Array {
            descriptor: Some(descriptor),
            code,
            items,
        };
        a.is_consistent().then_some(a)
    }

    /// An array of symbols, the shape of every `symbol multiple` field.
    pub fn symbols(items: impl IntoIterator<Item = Symbol>) -> Self {
        Array {
            descriptor: None,
            code: fc::SYM8,
            items: items.into_iter().map(Value::Symbol).collect(),
        }
    }

    /// The shared descriptor of a described array.
    pub fn descriptor(&self) -> Option<&Descriptor> {
        self.descriptor.as_ref()
    }

    /// The element format code as decoded or given.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The elements (for a described array, their bodies).
    pub fn items(&self) -> &[Value] {
        &self.items
    }

    /// Takes the elements.
    pub fn into_items(self) -> Vec<Value> {
        self.items
    }

    fn is_consistent(&self) -> bool {
        fc::is_valid(self.code)
            && self.code != fc::DESCRIBED
            && self
                .items
                .iter()
                .all(|v| same_type(element_family(self.code), v))
    }

    /// The code the elements are written with: the stored code when every
    /// element fits it, else the widest code of the same type. Zero-width
    /// constructors (uint0, ulong0, true, false, list0) are never written
    /// for elements: the decoder holds element counts to the array's size,
    /// and one byte per element keeps such arrays decodable.
    fn effective_code(&self) -> u8 {
        let items = &self.items;
        let all = |f: &dyn Fn(&Value) -> bool| items.iter().all(f);
        match self.code {
            fc::UINT0 | fc::SMALLUINT if all(&|v| matches!(v, Value::Uint(0..=255))) => {
                fc::SMALLUINT
            }
            fc::UINT0 | fc::SMALLUINT | fc::UINT => fc::UINT,
            fc::ULONG0 | fc::SMALLULONG if all(&|v| matches!(v, Value::Ulong(0..=255))) => {
                fc::SMALLULONG
            }
            fc::ULONG0 | fc::SMALLULONG | fc::ULONG => fc::ULONG,
            fc::SMALLINT if all(&|v| matches!(v, Value::Int(-128..=127))) => fc::SMALLINT,
            fc::SMALLINT | fc::INT => fc::INT,
            fc::SMALLLONG if all(&|v| matches!(v, Value::Long(-128..=127))) => fc::SMALLLONG,
            fc::SMALLLONG | fc::LONG => fc::LONG,
            fc::BOOLEAN_TRUE | fc::BOOLEAN_FALSE | fc::BOOLEAN => fc::BOOLEAN,
            c @ (fc::VBIN8 | fc::STR8 | fc::SYM8) => {
                if all(&|v| v.variable_payload_len() <= 255) {
                    c
                } else {
                    c + 0x10
                }
            }
            c @ (fc::LIST0 | fc::LIST8 | fc::MAP8 | fc::ARRAY8) => {
                compound_element_code(c, all(&|v| v.fits_8bit_compound()))
            }
            c => c,
        }
    }

    /// The element code written and the content length (constructor and
    /// elements) under it. Each element's length is computed once: for
    /// compound elements, `effective_code` then `content_len` would compute
    /// it twice, doubling the work at every level of nesting.
    fn layout(&self) -> (u8, usize) {
        if !matches!(element_family(self.code), fc::LIST8 | fc::MAP8 | fc::ARRAY8) {
            let code = self.effective_code();
            return (code, self.content_len(code));
        }
        let (mut fit, mut elements) = (true, 0);
        for v in &self.items {
            let (f, content) = v.compound_layout();
            fit &= f;
            elements += content;
        }
        let code = match self.code {
            c @ (fc::LIST0 | fc::LIST8 | fc::MAP8 | fc::ARRAY8) => compound_element_code(c, fit),
            c => c,
        };
        let width = if code & 0x10 == 0 { 2 } else { 8 };
        let ctor = 1 + self.descriptor.as_ref().map_or(0, |d| 1 + d.encoded_len());
        (code, ctor + elements + width * self.items.len())
    }

    /// Writes size, count, constructor and elements.
    fn put_body<B: BufMut>(&self, small: bool, buf: &mut B) {
        let (ecode, content) = self.layout();
        put_size_count(buf, small, content, self.items.len());
        if let Some(d) = &self.descriptor {
            buf.put_u8(fc::DESCRIBED);
            d.encode(buf);
        }
        buf.put_u8(ecode);
        for v in &self.items {
            v.put_body(ecode, buf);
        }
    }

    fn content_len(&self, code: u8) -> usize {
        let ctor = 1 + self.descriptor.as_ref().map_or(0, |d| 1 + d.encoded_len());
        ctor + self.items.iter().map(|v| v.body_len(code)).sum::<usize>()
    }

    /// Whether the array8 form carries `content` bytes of constructor and
    /// elements: count and size fit a byte, and the count is at most the
    /// size, which `array_body` demands of zero-width elements.
    fn fits_8bit(&self, content: usize) -> bool {
        self.items.len() <= 255 && content < 255 && self.items.len() <= content + 1
    }
}

/// The element code of an array of lists, maps or arrays whose stored code
/// is the 8-bit (or list0) one: 8-bit when every element `fit`s it.
fn compound_element_code(code: u8, fit: bool) -> u8 {
    let small = if code == fc::LIST0 { fc::LIST8 } else { code };
    if fit {
        small
    } else {
        small + 0x10
    }
}

/// The type family of a format code, for consistency checks.
fn element_family(code: u8) -> u8 {
    match code {
        fc::BOOLEAN_TRUE | fc::BOOLEAN_FALSE => fc::BOOLEAN,
        fc::UINT0 | fc::SMALLUINT => fc::UINT,
        fc::ULONG0 | fc::SMALLULONG => fc::ULONG,
        fc::SMALLINT => fc::INT,
        fc::SMALLLONG => fc::LONG,
        fc::VBIN32 => fc::VBIN8,
        fc::STR32 => fc::STR8,
        fc::SYM32 => fc::SYM8,
        fc::LIST0 | fc::LIST32 => fc::LIST8,
        fc::MAP32 => fc::MAP8,
        fc::ARRAY32 => fc::ARRAY8,
        c => c,
    }
}

fn same_type(family: u8, v: &Value) -> bool {
    matches!(
        (family, v),
        (fc::NULL, Value::Null)
            | (fc::BOOLEAN, Value::Bool(_))
            | (fc::UBYTE, Value::Ubyte(_))
            | (fc::USHORT, Value::Ushort(_))
            | (fc::UINT, Value::Uint(_))
            | (fc::ULONG, Value::Ulong(_))
            | (fc::BYTE, Value::Byte(_))
            | (fc::SHORT, Value::Short(_))
            | (fc::INT, Value::Int(_))
            | (fc::LONG, Value::Long(_))
            | (fc::FLOAT, Value::Float(_))
            | (fc::DOUBLE, Value::Double(_))
            | (fc::DECIMAL32, Value::Decimal32(_))
            | (fc::DECIMAL64, Value::Decimal64(_))
            | (fc::DECIMAL128, Value::Decimal128(_))
            | (fc::CHAR, Value::Char(_))
            | (fc::TIMESTAMP, Value::Timestamp(_))
            | (fc::UUID, Value::Uuid(_))
            | (fc::VBIN8, Value::Binary(_))
            | (fc::STR8, Value::String(_))
            | (fc::SYM8, Value::Symbol(_))
            | (fc::LIST8, Value::List(_))
            | (fc::MAP8, Value::Map(_))
            | (fc::ARRAY8, Value::Array(_))
    )
}

impl Value {
    /// The smallest format code that carries this value (0x00 for described).
    fn natural_code(&self) -> u8 {
        match self {
            Value::Null => fc::NULL,
            Value::Bool(true) => fc::BOOLEAN_TRUE,
            Value::Bool(false) => fc::BOOLEAN_FALSE,
            Value::Ubyte(_) => fc::UBYTE,
            Value::Ushort(_) => fc::USHORT,
            Value::Uint(0) => fc::UINT0,
            Value::Uint(1..=255) => fc::SMALLUINT,
            Value::Uint(_) => fc::UINT,
            Value::Ulong(0) => fc::ULONG0,
            Value::Ulong(1..=255) => fc::SMALLULONG,
            Value::Ulong(_) => fc::ULONG,
            Value::Byte(_) => fc::BYTE,
            Value::Short(_) => fc::SHORT,
            Value::Int(-128..=127) => fc::SMALLINT,
            Value::Int(_) => fc::INT,
            Value::Long(-128..=127) => fc::SMALLLONG,
            Value::Long(_) => fc::LONG,
            Value::Float(_) => fc::FLOAT,
            Value::Double(_) => fc::DOUBLE,
            Value::Decimal32(_) => fc::DECIMAL32,
            Value::Decimal64(_) => fc::DECIMAL64,
            Value::Decimal128(_) => fc::DECIMAL128,
            Value::Char(_) => fc::CHAR,
            Value::Timestamp(_) => fc::TIMESTAMP,
            Value::Uuid(_) => fc::UUID,
            Value::Binary(b) => var_code(b.len(), fc::VBIN8),
            Value::String(s) => var_code(s.len(), fc::STR8),
            Value::Symbol(s) => var_code(s.len(), fc::SYM8),
            Value::List(l) if l.is_empty() => fc::LIST0,
            Value::List(_) | Value::Map(_) | Value::Array(_) => {
                let small = self.fits_8bit_compound();
                let base = match self {
                    Value::List(_) => fc::LIST8,
                    Value::Map(_) => fc::MAP8,
                    _ => fc::ARRAY8,
                };
                if small {
                    base
                } else {
                    base + 0x10
                }
            }
            Value::Described(_) => fc::DESCRIBED,
        }
    }

    fn variable_payload_len(&self) -> usize {
        match self {
            Value::Binary(b) => b.len(),
            Value::String(s) => s.len(),
            Value::Symbol(s) => s.len(),
            _ => 0,
        }
    }

    /// Whether a list, map or array fits its 8-bit size and count form.
    fn fits_8bit_compound(&self) -> bool {
        self.compound_layout().0
    }

    /// For a list, map or array: whether it fits its 8-bit size and count
    /// form, and the length of what follows its count. Each element's
    /// length is computed once, so this is linear in the size of the value.
    fn compound_layout(&self) -> (bool, usize) {
        match self {
            Value::List(l) => {
                let content = l.iter().map(Value::encoded_len).sum::<usize>();
                (l.len() <= 255 && content < 255, content)
            }
            Value::Map(m) => {
                let content = map_body_len(m);
                (m.len() * 2 <= 255 && content < 255, content)
            }
            Value::Array(a) => {
                let content = a.layout().1;
                (a.fits_8bit(content), content)
            }
            _ => (true, 0),
        }
    }

    /// Length of the encoding after a constructor of code `code`.
    fn body_len(&self, code: u8) -> usize {
        if let Some(w) = fixed_width(code) {
            return w;
        }
        match (code, self) {
            (fc::VBIN8 | fc::STR8 | fc::SYM8, v) => 1 + v.variable_payload_len(),
            (fc::VBIN32 | fc::STR32 | fc::SYM32, v) => 4 + v.variable_payload_len(),
            (fc::LIST8 | fc::LIST32, Value::List(l)) => {
                let w = if code == fc::LIST8 { 2 } else { 8 };
                w + l.iter().map(Value::encoded_len).sum::<usize>()
            }
            (fc::MAP8 | fc::MAP32, Value::Map(m)) => {
                let w = if code == fc::MAP8 { 2 } else { 8 };
                w + map_body_len(m)
            }
            (fc::ARRAY8 | fc::ARRAY32, Value::Array(a)) => {
                let w = if code == fc::ARRAY8 { 2 } else { 8 };
                w + a.layout().1
            }
            (fc::DESCRIBED, Value::Described(d)) => {
                d.descriptor.encoded_len() + d.value.encoded_len()
            }
            _ => 0,
        }
    }

    /// Writes the encoding after a constructor of code `code`.
    fn put_body<B: BufMut>(&self, code: u8, buf: &mut B) {
        match (code, self) {
            (
                fc::NULL
                | fc::BOOLEAN_TRUE
                | fc::BOOLEAN_FALSE
                | fc::UINT0
                | fc::ULONG0
                | fc::LIST0,
                _,
            ) => {}
            (fc::BOOLEAN, Value::Bool(b)) => buf.put_u8(*b as u8),
            (_, Value::Ubyte(v)) => buf.put_u8(*v),
            (_, Value::Ushort(v)) => buf.put_u16(*v),
            (fc::SMALLUINT, Value::Uint(v)) => buf.put_u8(*v as u8),
            (_, Value::Uint(v)) => buf.put_u32(*v),
            (fc::SMALLULONG, Value::Ulong(v)) => buf.put_u8(*v as u8),
            (_, Value::Ulong(v)) => buf.put_u64(*v),
            (_, Value::Byte(v)) => buf.put_i8(*v),
            (_, Value::Short(v)) => buf.put_i16(*v),
            (fc::SMALLINT, Value::Int(v)) => buf.put_i8(*v as i8),
            (_, Value::Int(v)) => buf.put_i32(*v),
            (fc::SMALLLONG, Value::Long(v)) => buf.put_i8(*v as i8),
            (_, Value::Long(v)) => buf.put_i64(*v),
            (_, Value::Float(v)) => buf.put_f32(*v),
            (_, Value::Double(v)) => buf.put_f64(*v),
            (_, Value::Decimal32(v)) => buf.put_slice(&v.0),
            (_, Value::Decimal64(v)) => buf.put_slice(&v.0),
            (_, Value::Decimal128(v)) => buf.put_slice(&v.0),
            (_, Value::Char(c)) => buf.put_u32(*c as u32),
            (_, Value::Timestamp(t)) => buf.put_i64(t.0),
            (_, Value::Uuid(u)) => buf.put_slice(&u.0),
            (fc::VBIN8 | fc::STR8 | fc::SYM8 | fc::VBIN32 | fc::STR32 | fc::SYM32, v) => {
                let bytes: &[u8] = match v {
                    Value::Binary(b) => b,
                    Value::String(s) => s.as_bytes(),
                    Value::Symbol(s) => s.as_str().as_bytes(),
                    _ => &[],
                };
                if code & 0x10 == 0 {
                    buf.put_u8(bytes.len() as u8);
                } else {
                    buf.put_u32(bytes.len() as u32);
                }
                buf.put_slice(bytes);
            }
            (fc::LIST8 | fc::LIST32, Value::List(l)) => {
                let body = l.iter().map(Value::encoded_len).sum::<usize>();
                put_size_count(buf, code == fc::LIST8, body, l.len());
                for v in l {
                    v.encode(buf);
                }
            }
            (fc::MAP8 | fc::MAP32, Value::Map(m)) => {
                put_size_count(buf, code == fc::MAP8, map_body_len(m), m.len() * 2);
                for (k, v) in &m.0 {
                    k.encode(buf);
                    v.encode(buf);
                }
            }
            (fc::ARRAY8 | fc::ARRAY32, Value::Array(a)) => a.put_body(code == fc::ARRAY8, buf),
            (fc::DESCRIBED, Value::Described(d)) => {
                d.descriptor.encode(buf);
                d.value.encode(buf);
            }
            _ => debug_assert!(false, "value {self:?} under code 0x{code:02x}"),
        }
    }

    /// The symbol, when this is one.
    pub fn as_symbol(&self) -> Option<&Symbol> {
        match self {
            Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer type that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::Ubyte(v) => v.into(),
            Value::Ushort(v) => v.into(),
            Value::Uint(v) => v.into(),
            Value::Ulong(v) => i64::try_from(v).ok()?,
            Value::Byte(v) => v.into(),
            Value::Short(v) => v.into(),
            Value::Int(v) => v.into(),
            Value::Long(v) => v,
            _ => return None,
        })
    }

    /// True for null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

fn map_body_len(m: &Map<Value, Value>) -> usize {
    m.0.iter()
        .map(|(k, v)| k.encoded_len() + v.encoded_len())
        .sum()
}

fn var_code(len: usize, code8: u8) -> u8 {
    if len <= 255 {
        code8
    } else {
        code8 + 0x10
    }
}

/// Writes the size and count of a compound whose constructor is written;
/// size counts the count field.
fn put_size_count<B: BufMut>(buf: &mut B, small: bool, body: usize, count: usize) {
    if small {
        buf.put_u8((body + 1) as u8);
        buf.put_u8(count as u8);
    } else {
        buf.put_u32((body + 4) as u32);
        buf.put_u32(count as u32);
    }
}

impl Encode for Value {
    fn encoded_len_as(&self, _: Form) -> usize {
        match self {
            // One pass over the elements: natural_code and body_len would
            // each make one, doubling the work at every level of nesting.
            Value::List(l) if l.is_empty() => 1,
            Value::List(_) | Value::Map(_) | Value::Array(_) => {
                let (small, content) = self.compound_layout();
                content + if small { 3 } else { 9 }
            }
            _ => 1 + self.body_len(self.natural_code()),
        }
    }

    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        let code = self.natural_code();
        buf.put_u8(code);
        self.put_body(code, buf);
    }
}

impl Encode for Described {
    fn encoded_len_as(&self, _: Form) -> usize {
        1 + self.descriptor.encoded_len() + self.value.encoded_len()
    }

    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        buf.put_u8(fc::DESCRIBED);
        self.descriptor.encode(buf);
        self.value.encode(buf);
    }
}

impl Encode for Vec<Value> {
    fn encoded_len_as(&self, _: Form) -> usize {
        compound_len(self.len(), self.iter().map(Value::encoded_len).sum())
    }

    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        put_list_header(buf, self.len(), self.iter().map(Value::encoded_len).sum());
        for v in self {
            v.encode(buf);
        }
    }
}

impl Encode for Array {
    fn encoded_len_as(&self, _: Form) -> usize {
        let content = self.layout().1;
        if self.fits_8bit(content) {
            3 + content
        } else {
            9 + content
        }
    }

    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        let content = self.layout().1;
        let small = self.fits_8bit(content);
        buf.put_u8(if small { fc::ARRAY8 } else { fc::ARRAY32 });
        self.put_body(small, buf);
    }
}

// ---------------------------------------------------------------- decoding

impl Decode for Value {
    fn decode(d: &mut Decoder<'_>) -> R<Value> {
        let code = d.u8()?;
        decode_body(d, code)
    }
}

fn decode_body(d: &mut Decoder<'_>, code: u8) -> R<Value> {
    Ok(match code {
        fc::NULL => Value::Null,
        fc::BOOLEAN_TRUE => Value::Bool(true),
        fc::BOOLEAN_FALSE => Value::Bool(false),
        fc::BOOLEAN => Value::Bool(bool_byte(d)?),
        fc::UBYTE => Value::Ubyte(d.u8()?),
        fc::USHORT => Value::Ushort(d.u16()?),
        fc::UINT => Value::Uint(d.u32()?),
        fc::SMALLUINT => Value::Uint(d.u8()? as u32),
        fc::UINT0 => Value::Uint(0),
        fc::ULONG => Value::Ulong(d.u64()?),
        fc::SMALLULONG => Value::Ulong(d.u8()? as u64),
        fc::ULONG0 => Value::Ulong(0),
        fc::BYTE => Value::Byte(d.u8()? as i8),
        fc::SHORT => Value::Short(d.u16()? as i16),
        fc::INT => Value::Int(d.u32()? as i32),
        fc::SMALLINT => Value::Int(d.u8()? as i8 as i32),
        fc::LONG => Value::Long(d.u64()? as i64),
        fc::SMALLLONG => Value::Long(d.u8()? as i8 as i64),
        fc::FLOAT => Value::Float(f32::from_bits(d.u32()?)),
        fc::DOUBLE => Value::Double(f64::from_bits(d.u64()?)),
        fc::DECIMAL32 => Value::Decimal32(Decimal32(d.array()?)),
        fc::DECIMAL64 => Value::Decimal64(Decimal64(d.array()?)),
        fc::DECIMAL128 => Value::Decimal128(Decimal128(d.array()?)),
        fc::CHAR => Value::Char(char_body(d)?),
        fc::TIMESTAMP => Value::Timestamp(Timestamp(d.u64()? as i64)),
        fc::UUID => Value::Uuid(Uuid(d.array()?)),
        fc::VBIN8 | fc::VBIN32 => Value::Binary(d.binary_body(code)?),
        fc::STR8 | fc::STR32 => Value::String(d.string_body(code)?),
        fc::SYM8 | fc::SYM32 => Value::Symbol(d.symbol_body(code)?),
        fc::LIST0 | fc::LIST8 | fc::LIST32 => {
            let c = d.compound(code)?;
            Value::List(d.nested(c.body, |d| (0..c.count).map(|_| Value::decode(d)).collect())?)
        }
        fc::MAP8 | fc::MAP32 => {
            let c = d.compound(code)?;
            Value::Map(Map(d.nested(c.body, |d| {
                (0..c.count / 2)
                    .map(|_| Ok((Value::decode(d)?, Value::decode(d)?)))
                    .collect()
            })?))
        }
        fc::ARRAY8 | fc::ARRAY32 => Value::Array(array_body(d, code)?),
        fc::DESCRIBED => {
            let descriptor = d.descriptor()?;
            let value = d.descend(Value::decode)?;
            Value::Described(Box::new(Described { descriptor, value }))
        }
        _ => return Err(d.unexpected("a value", code)),
    })
}

fn bool_byte(d: &mut Decoder<'_>) -> R<bool> {
    match d.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(d.err_at(
            d.offset() - 1,
            DecodeErrorKind::InvalidValue {
                ty: "boolean",
                value: b.to_string(),
            },
        )),
    }
}

fn char_body(d: &mut Decoder<'_>) -> R<char> {
    let u = d.u32()?;
    char::from_u32(u).ok_or_else(|| d.err_at(d.offset() - 4, DecodeErrorKind::InvalidChar(u)))
}

fn array_body(d: &mut Decoder<'_>, code: u8) -> R<Array> {
    let (size, width) = if code == fc::ARRAY8 {
        (d.u8()? as u32, 1u32)
    } else {
        (d.u32()?, 4u32)
    };
    if size < width + 1 {
        return Err(d.err(DecodeErrorKind::InvalidSize(size)));
    }
    if size as usize > d.remaining() {
        return Err(d.err(DecodeErrorKind::UnexpectedEnd {
            needed: size as usize - d.remaining(),
        }));
    }
    let count = if width == 1 { d.u8()? as u32 } else { d.u32()? };
    let body = d.take((size - width) as usize)?;
    d.nested(body, |d| {
        let mut ecode = d.u8()?;
        let mut descriptor = None;
        if ecode == fc::DESCRIBED {
            descriptor = Some(d.descriptor()?);
            ecode = d.u8()?;
        }
        if !fc::is_valid(ecode) || ecode == fc::DESCRIBED {
            return Err(d.unexpected("an array element constructor", ecode));
        }
        // Every element takes at least one byte, except those of zero-width
        // types; for those the count is held to the size of the array32
        // encoding the encoder would write (size and count fields 4 bytes,
        // descriptor canonical), so that a few bytes cannot demand a huge
        // allocation and whatever decodes re-encodes to bytes that decode.
        let min = fixed_width(ecode).unwrap_or(1);
        let fits = if min == 0 {
            let ctor = 1 + descriptor.as_ref().map_or(0, |d| 1 + d.encoded_len());
            count as usize <= 4 + ctor
        } else {
            (count as usize).saturating_mul(min) <= d.remaining()
        };
        if !fits {
            return Err(d.err(DecodeErrorKind::CountExceedsSize { count, size }));
        }
        let mut items = Vec::with_capacity(count as usize);
        for _ in 0..count {
            items.push(decode_body(d, ecode)?);
        }
        Ok(Array {
            descriptor,
            code: ecode,
            items,
        })
    })
}

macro_rules! typed {
    ($t:ty, $name:literal, |$d:ident| { $($code:pat => $e:expr),* $(,)? }) => {
        impl Decode for $t {
            #[inline]
            fn decode($d: &mut Decoder<'_>) -> R<$t> {
                let code = $d.u8()?;
                match code {
                    $($code => $e,)*
                    _ => Err($d.unexpected($name, code)),
                }
            }
        }
    };
}

typed!(bool, "boolean", |d| {
    fc::BOOLEAN_TRUE => Ok(true),
    fc::BOOLEAN_FALSE => Ok(false),
    fc::BOOLEAN => bool_byte(d),
});
typed!(u8, "ubyte", |d| { fc::UBYTE => d.u8() });
typed!(u16, "ushort", |d| { fc::USHORT => d.u16() });
typed!(u32, "uint", |d| {
    fc::UINT => d.u32(),
    fc::SMALLUINT => Ok(d.u8()? as u32),
    fc::UINT0 => Ok(0),
});
typed!(u64, "ulong", |d| {
    fc::ULONG => d.u64(),
    fc::SMALLULONG => Ok(d.u8()? as u64),
    fc::ULONG0 => Ok(0),
});
typed!(i8, "byte", |d| { fc::BYTE => Ok(d.u8()? as i8) });
typed!(i16, "short", |d| { fc::SHORT => Ok(d.u16()? as i16) });
typed!(i32, "int", |d| {
    fc::INT => Ok(d.u32()? as i32),
    fc::SMALLINT => Ok(d.u8()? as i8 as i32),
});
typed!(i64, "long", |d| {
    fc::LONG => Ok(d.u64()? as i64),
    fc::SMALLLONG => Ok(d.u8()? as i8 as i64),
});
typed!(f32, "float", |d| { fc::FLOAT => Ok(f32::from_bits(d.u32()?)) });
typed!(f64, "double", |d| { fc::DOUBLE => Ok(f64::from_bits(d.u64()?)) });
typed!(char, "char", |d| { fc::CHAR => char_body(d) });
typed!(Timestamp, "timestamp", |d| { fc::TIMESTAMP => Ok(Timestamp(d.u64()? as i64)) });
typed!(Uuid, "uuid", |d| { fc::UUID => Ok(Uuid(d.array()?)) });
typed!(Bytes, "binary", |d| { c @ (fc::VBIN8 | fc::VBIN32) => d.binary_body(c) });
typed!(ByteString, "string", |d| { c @ (fc::STR8 | fc::STR32) => d.string_body(c) });
typed!(Symbol, "symbol", |d| { c @ (fc::SYM8 | fc::SYM32) => d.symbol_body(c) });
typed!(Array, "array", |d| { c @ (fc::ARRAY8 | fc::ARRAY32) => array_body(d, c) });

/// Null decodes as `None`.
impl<T: Decode> Decode for Option<T> {
    #[inline]
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        if d.take_null() {
            Ok(None)
        } else {
            T::decode(d).map(Some)
        }
    }
}

impl<T: Decode> Decode for Box<T> {
    #[inline]
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        T::decode(d).map(Box::new)
    }
}

impl Decode for Described {
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        match Value::decode(d)? {
            Value::Described(b) => Ok(*b),
            _ => Err(d.err(DecodeErrorKind::UnexpectedFormatCode {
                expected: "described value",
                found: 0,
            })),
        }
    }
}

impl Decode for Descriptor {
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        d.descriptor()
    }
}

/// Decodes a map (map8 or map32) with typed keys and values.
impl<K: Decode + PartialEq, V: Decode> Decode for Map<K, V> {
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        let c = d.map_header()?;
        d.nested(c.body, |d| {
            let mut v = Vec::with_capacity(c.count as usize / 2);
            for _ in 0..c.count / 2 {
                v.push((K::decode(d)?, V::decode(d)?));
            }
            Ok(Map(v))
        })
    }
}

/// Decodes a list (list0, list8 or list32) of values.
impl Decode for Vec<Value> {
    fn decode(d: &mut Decoder<'_>) -> R<Self> {
        let c = d.list_header()?;
        d.nested(c.body, |d| (0..c.count).map(|_| Value::decode(d)).collect())
    }
}

/// Encodes a map with typed keys and values.
impl<K: Encode, V: Encode> Encode for Map<K, V> {
    fn encoded_len_as(&self, _: Form) -> usize {
        let body = self
            .0
            .iter()
            .map(|(k, v)| k.encoded_len() + v.encoded_len())
            .sum();
        map_len(self.len(), body)
    }

    fn encode_as<B: BufMut>(&self, _: Form, buf: &mut B) {
        let body = self
            .0
            .iter()
            .map(|(k, v)| k.encoded_len() + v.encoded_len())
            .sum();
        put_map_header(buf, self.len(), body);
        for (k, v) in &self.0 {
            k.encode(buf);
            v.encode(buf);
        }
    }
}
