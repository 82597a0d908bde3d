//! AMQP primitive types that have no direct Rust counterpart (1.6).

use bytes::Bytes;
use bytestring::ByteString;
use std::fmt;

/// 1.6.21 symbol: a string of ASCII characters, sharing its bytes with the
/// buffer it was decoded from.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Symbol(ByteString);

impl Symbol {
    /// A symbol from a static string. The caller MUST pass ASCII; anything
    /// else is a programming error caught in debug builds.
    pub const fn from_static(s: &'static str) -> Self {
        Symbol(ByteString::from_static(s))
    }

    /// A symbol from any string; `None` when it is not ASCII.
    pub fn new(s: impl Into<ByteString>) -> Option<Self> {
        let s = s.into();
        s.is_ascii().then_some(Symbol(s))
    }

    /// Validates ASCII and wraps without copying.
    pub fn from_bytes(b: Bytes) -> Option<Self> {
        if b.is_ascii() {
            // ASCII is valid UTF-8.
            ByteString::try_from(b).ok().map(Symbol)
        } else {
            None
        }
    }

    /// The symbol for `b` when it is one of the annotation keys the
    /// service stamps on every delivery (`client::event::STAMPED_KEYS`),
    /// without sharing the buffer: such a symbol costs no reference count
    /// (an atomic increment when decoded and a decrement when dropped,
    /// which were a fifth of decoding a received event).
    #[inline]
    pub(crate) fn well_known(b: &[u8]) -> Option<Self> {
        crate::client::event::STAMPED_KEYS
            .iter()
            .find(|k| k.as_bytes() == b)
            .map(|k| Symbol::from_static(k))
    }

    /// The symbol's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The symbol's text, as the string it shares its bytes with.
    pub fn into_string(self) -> ByteString {
        self.0
    }

    /// The symbol's bytes, shared.
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty symbol.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{:?}", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for Symbol {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Symbol {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Symbol {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&'static str> for Symbol {
    /// Panics when `s` is not ASCII: symbol literals are the caller's to get right.
    fn from(s: &'static str) -> Self {
        assert!(s.is_ascii(), "symbol literal {s:?} is not ASCII");
        Symbol::from_static(s)
    }
}

/// 1.6.20 timestamp: milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// `ms` milliseconds since the Unix epoch.
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// As an RFC 3339 UTC instant with milliseconds
    /// (`2024-02-29T23:59:59.999Z`).
    pub fn to_rfc3339(self) -> String {
        crate::management::time::format_rfc3339(self)
    }

    /// As a [`std::time::SystemTime`]; `None` when out of its range.
    pub fn to_system_time(self) -> Option<std::time::SystemTime> {
        let magnitude = std::time::Duration::from_millis(self.0.unsigned_abs());
        if self.0 >= 0 {
            std::time::UNIX_EPOCH.checked_add(magnitude)
        } else {
            std::time::UNIX_EPOCH.checked_sub(magnitude)
        }
    }
}

impl From<std::time::SystemTime> for Timestamp {
    /// The instant, to the millisecond (saturating far outside the range
    /// of an `i64` of milliseconds).
    fn from(t: std::time::SystemTime) -> Self {
        let ms = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
        };
        Timestamp(ms)
    }
}

/// 1.6.22 uuid: an RFC 4122 UUID as its 16 bytes in network order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// A version 4 (random) UUID built from caller-supplied random bits; the
    /// core draws no randomness of its own.
    pub fn from_random_bits(bits: u128) -> Self {
        let mut b = bits.to_be_bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Uuid(b)
    }

    /// Parses the hyphenated 36-character form.
    pub fn parse(s: &str) -> Option<Self> {
        let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
        if s.len() != 36 || hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// 1.6.15 decimal32 (IEEE 754-2008, kept as its raw big-endian bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Decimal32(pub [u8; 4]);

/// 1.6.16 decimal64 (IEEE 754-2008, kept as its raw big-endian bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Decimal64(pub [u8; 8]);

/// 1.6.17 decimal128 (IEEE 754-2008, kept as its raw big-endian bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Decimal128(pub [u8; 16]);

/// The descriptor of a described type (1.2): a numeric code (domain id in
/// the high 32 bits, descriptor id in the low 32) or a symbolic name.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Descriptor {
    /// `ulong` descriptor.
    Code(u64),
    /// `symbol` descriptor.
    Symbol(Symbol),
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Descriptor::Code(c) => write!(f, "0x{:08x}:0x{:08x}", c >> 32, c & 0xffff_ffff),
            Descriptor::Symbol(s) => write!(f, "{s}"),
        }
    }
}

/// An ordered AMQP map (1.6.24). Keys are unique on the wire; order is kept
/// so that re-encoding reproduces the peer's bytes. Lookups are linear, which
/// beats hashing for the handful of entries annotations carry.
#[derive(Clone, PartialEq, Debug)]
pub struct Map<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Map(Vec::new())
    }
}

impl<K, V> Map<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Map(Vec::new())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value for `key`, compared through `Borrow`-like equality.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: PartialEq<Q>,
        Q: ?Sized,
    {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing an existing entry in place.
    pub fn insert(&mut self, key: K, value: V) -> Option<V>
    where
        K: PartialEq,
    {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.0.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: PartialEq<Q>,
        Q: ?Sized,
    {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// Iterates over the entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: PartialEq, V> FromIterator<(K, V)> for Map<K, V> {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut m = Map::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

/// Shorthand kept for readers of the spec: `string` is a UTF-8 [`ByteString`].
pub type AmqpString = ByteString;
