//! The codec against bytes made by an independent AMQP 1.0 implementation,
//! Apache Qpid Proton 0.40 (`tests/fixtures/proton/`, made by its `gen.py`).
//!
//! Every fixture is decoded and compared with a value built here by hand
//! from what `gen.py` put in, then re-encoded. Our compact re-encoding must
//! equal Proton's bytes whenever both pick the same encoding
//! ([`Enc::Exact`]); otherwise ([`Enc::Value`]) it must decode to an equal
//! value and be strictly shorter. The value-equal-only cases all come from
//! Proton choosing a larger legal encoding than our encoder does:
//!
//! * `proton.Data` writes every list, map and array in its 32-bit form
//!   (list32 `d0`, map32 `d1`, array32 `f0`), even when tiny; we write the
//!   8-bit form whenever size and count fit a byte. So every small compound
//!   value, every message with an annotations, application-properties or
//!   list/map body section, and every performative carrying properties,
//!   filters, capabilities or outcomes (array32 of sym32) is value-equal
//!   only. Compounds too big for the 8-bit form (300-element lists and
//!   arrays, the 200-entry map) are byte-exact.
//! * Proton's performative encoder writes many fields at their default
//!   (`drain=false`, a terminus's `durable=0`/`timeout=0`/`dynamic=false`,
//!   `snd-settle-mode`/`rcv-settle-mode`, `expiry-policy`); the compact form
//!   sends a default as null or drops it when trailing.
//!
//! Scalars, strings, symbols, binaries, described values and the list8
//! performatives without such fields are byte-exact.

mod fixture_support;

use bytes::Bytes;
use bytestring::ByteString;
use eventhubs_proto::codec::format_code as fc;
use eventhubs_proto::codec::frame::{Frame, FrameHeader};
use eventhubs_proto::codec::message::{Body, Message};
use eventhubs_proto::codec::messaging::{AnnotationKey, DeliveryState, MessageId};
use eventhubs_proto::codec::performatives::{
    Performative, ReceiverSettleMode, Role, SenderSettleMode,
};
use eventhubs_proto::codec::sasl::SaslFrame;
use eventhubs_proto::codec::{
    Array, Decimal128, Decimal32, Decimal64, Decode, Described, Descriptor, Encode, Map, Symbol,
    Timestamp, Uuid, Value,
};
use fixture_support::{
    check_reencode, check_units_reencode, deliveries, fixture, fixture_names, hex, split_stream,
    strict_eq, Enc, Unit,
};

use Enc::{Exact as E, Value as V};

// ------------------------------------------------------------------ helpers

/// 2023-11-14T22:13:20.123Z, `TS_MS` in gen.py.
const TS_MS: i64 = 1_700_000_000_123;
/// `FIXED_UUID` in gen.py.
const FIXED_UUID: &str = "01234567-89ab-cdef-0123-456789abcdef";
/// `FIXED_UUID2` in gen.py.
const FIXED_UUID2: &str = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
/// The Event Hubs selector filter descriptor, `0x0000468C:0x00000004`.
const SELECTOR_CODE: u64 = 0x0000_468C_0000_0004;

fn sym(s: &'static str) -> Symbol {
    Symbol::from_static(s)
}
fn vsym(s: &'static str) -> Value {
    Value::Symbol(sym(s))
}
fn vstr(s: &str) -> Value {
    Value::String(ByteString::from(s))
}
fn vbin(b: &[u8]) -> Value {
    Value::Binary(Bytes::copy_from_slice(b))
}
fn uuid(s: &str) -> Uuid {
    Uuid::parse(s).expect("uuid literal")
}
fn ts(ms: i64) -> Value {
    Value::Timestamp(Timestamp(ms))
}
fn array(code: u8, items: Vec<Value>) -> Value {
    Value::Array(Array::new(code, items).expect("consistent array"))
}
fn vmap(entries: Vec<(Value, Value)>) -> Value {
    Value::Map(Map(entries))
}
fn described(d: Descriptor, v: Value) -> Value {
    Value::Described(Box::new(Described::new(d, v)))
}
/// `bytes(i % 256 for i in range(n))`.
fn counting(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 256) as u8).collect()
}

// ------------------------------------------------------------------- values

/// Every `values/*.bin` fixture: its name, whether our re-encoding is
/// byte-exact, and the value gen.py put in.
fn value_table() -> Vec<(&'static str, Enc, Value)> {
    let selector = "amqp.annotation.x-opt-offset > '100'";
    vec![
        ("null", E, Value::Null),
        ("bool_true", E, Value::Bool(true)),
        ("bool_false", E, Value::Bool(false)),
        ("ubyte_0", E, Value::Ubyte(0)),
        ("ubyte_255", E, Value::Ubyte(255)),
        ("ushort_0", E, Value::Ushort(0)),
        ("ushort_65535", E, Value::Ushort(65535)),
        ("uint_0", E, Value::Uint(0)),
        ("uint_7", E, Value::Uint(7)),
        ("uint_255", E, Value::Uint(255)),
        ("uint_256", E, Value::Uint(256)),
        ("uint_4294967295", E, Value::Uint(u32::MAX)),
        ("ulong_0", E, Value::Ulong(0)),
        ("ulong_7", E, Value::Ulong(7)),
        ("ulong_255", E, Value::Ulong(255)),
        ("ulong_256", E, Value::Ulong(256)),
        ("ulong_18446744073709551615", E, Value::Ulong(u64::MAX)),
        ("byte_min", E, Value::Byte(i8::MIN)),
        ("byte_max", E, Value::Byte(i8::MAX)),
        ("short_min", E, Value::Short(i16::MIN)),
        ("short_max", E, Value::Short(i16::MAX)),
        ("int_neg1", E, Value::Int(-1)),
        ("int_neg128", E, Value::Int(-128)),
        ("int_127", E, Value::Int(127)),
        ("int_128", E, Value::Int(128)),
        ("int_neg129", E, Value::Int(-129)),
        ("int_max", E, Value::Int(i32::MAX)),
        ("int_min", E, Value::Int(i32::MIN)),
        ("int_0", E, Value::Int(0)),
        ("long_neg1", E, Value::Long(-1)),
        ("long_127", E, Value::Long(127)),
        ("long_128", E, Value::Long(128)),
        ("long_neg128", E, Value::Long(-128)),
        ("long_neg129", E, Value::Long(-129)),
        ("long_max", E, Value::Long(i64::MAX)),
        ("long_min", E, Value::Long(i64::MIN)),
        ("long_0", E, Value::Long(0)),
        ("float_1_5", E, Value::Float(1.5)),
        ("float_neg0", E, Value::Float(-0.0)),
        ("double_pi", E, Value::Double(std::f64::consts::PI)),
        ("double_neg0", E, Value::Double(-0.0)),
        (
            "decimal32_raw",
            E,
            Value::Decimal32(Decimal32(0x2250_0001u32.to_be_bytes())),
        ),
        (
            "decimal64_raw",
            E,
            Value::Decimal64(Decimal64(0x2238_0000_0000_0001u64.to_be_bytes())),
        ),
        (
            "decimal128_raw",
            E,
            Value::Decimal128(Decimal128(std::array::from_fn(|i| i as u8 + 1))),
        ),
        ("char_a", E, Value::Char('a')),
        ("char_e_acute", E, Value::Char('\u{e9}')),
        ("char_emoji", E, Value::Char('\u{1F600}')),
        ("timestamp_1700000000123", E, ts(TS_MS)),
        ("timestamp_neg", E, ts(-1)),
        ("uuid_fixed", E, Value::Uuid(uuid(FIXED_UUID))),
        ("binary_empty", E, vbin(b"")),
        ("binary_3", E, vbin(b"\x00\x01\xff")),
        ("binary_255", E, vbin(&counting(255))),
        ("binary_256", E, vbin(&counting(256))),
        ("binary_300", E, vbin(&counting(300))),
        ("string_empty", E, vstr("")),
        ("string_hello", E, vstr("hello")),
        ("string_utf8", E, vstr("h\u{e9}llo w\u{f6}rld")),
        ("string_300", E, vstr(&"0123456789".repeat(30))),
        ("symbol_accepted_list", E, vsym("amqp:accepted:list")),
        ("symbol_empty", E, vsym("")),
        (
            "symbol_300",
            E,
            Value::Symbol(Symbol::new("abcdefghij".repeat(30)).expect("ascii")),
        ),
        // Proton writes the empty list as list0, like us.
        ("list_empty", E, Value::List(vec![])),
        // list32 from Proton, list8 from us.
        (
            "list_mixed",
            V,
            Value::List(vec![
                Value::Uint(1),
                vstr("a"),
                Value::Null,
                Value::Bool(true),
            ]),
        ),
        // 600 bytes of elements: list32 in both.
        (
            "list_300_ubytes",
            E,
            Value::List((0..300).map(|i| Value::Ubyte((i % 256) as u8)).collect()),
        ),
        (
            "list_of_empty_lists",
            V,
            Value::List(vec![Value::List(vec![]), Value::List(vec![])]),
        ),
        (
            "map_eventhubs_annotations",
            V,
            vmap(vec![
                (vsym("x-opt-partition-key"), vstr("pk")),
                (vsym("x-opt-sequence-number"), Value::Long(42)),
            ]),
        ),
        // map32 with count 0 from Proton, map8 from us.
        ("map_empty", V, vmap(vec![])),
        // 1600 bytes of entries: map32 in both.
        (
            "map_200_entries",
            E,
            vmap(
                (0..200)
                    .map(|i| {
                        (
                            Value::Symbol(Symbol::new(format!("k{i:03}")).expect("ascii")),
                            Value::Uint(i),
                        )
                    })
                    .collect(),
            ),
        ),
        // map32 in both, but the nested list, map and array differ.
        (
            "map_string_keys_all_types",
            V,
            vmap(vec![
                (vstr("null"), Value::Null),
                (vstr("bool"), Value::Bool(true)),
                (vstr("ubyte"), Value::Ubyte(200)),
                (vstr("ushort"), Value::Ushort(60000)),
                (vstr("uint"), Value::Uint(4_000_000_000)),
                (vstr("uint0"), Value::Uint(0)),
                (vstr("ulong"), Value::Ulong(1 << 63)),
                (vstr("ulong0"), Value::Ulong(0)),
                (vstr("byte"), Value::Byte(-5)),
                (vstr("short"), Value::Short(-300)),
                (vstr("int"), Value::Int(-70000)),
                (vstr("long"), Value::Long(-(1 << 40))),
                (vstr("float"), Value::Float(0.25)),
                (vstr("double"), Value::Double(-2.5e-300)),
                (
                    vstr("decimal32"),
                    Value::Decimal32(Decimal32(0x2250_0001u32.to_be_bytes())),
                ),
                (
                    vstr("decimal64"),
                    Value::Decimal64(Decimal64(0x2238_0000_0000_0001u64.to_be_bytes())),
                ),
                (
                    vstr("decimal128"),
                    Value::Decimal128(Decimal128(std::array::from_fn(|i| i as u8))),
                ),
                (vstr("char"), Value::Char('\u{20ac}')),
                (vstr("timestamp"), ts(TS_MS)),
                (vstr("uuid"), Value::Uuid(uuid(FIXED_UUID))),
                (vstr("binary"), vbin(b"\xde\xad\xbe\xef")),
                (vstr("string"), vstr("str")),
                (vstr("symbol"), vsym("sym")),
                (vstr("list"), Value::List(vec![Value::Int(1), vstr("two")])),
                (vstr("map"), vmap(vec![(vstr("k"), vstr("v"))])),
                (
                    vstr("array"),
                    array(fc::INT, vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
                ),
                (
                    vstr("described"),
                    described(Descriptor::Symbol(sym("x:d")), vstr("v")),
                ),
            ]),
        ),
        // Arrays: array32 with full-width element constructors from Proton,
        // array8 from us (the element constructor is kept as decoded).
        (
            "array_int",
            V,
            array(
                fc::INT,
                [1, -1, 127, 128, i32::MAX]
                    .into_iter()
                    .map(Value::Int)
                    .collect(),
            ),
        ),
        ("array_int_empty", V, array(fc::INT, vec![])),
        (
            "array_symbol",
            V,
            array(
                fc::SYM32,
                vec![
                    vsym("amqp:accepted:list"),
                    vsym("amqp:rejected:list"),
                    vsym("x"),
                ],
            ),
        ),
        (
            "array_symbol_single",
            V,
            array(fc::SYM32, vec![vsym("com.microsoft:session-filter")]),
        ),
        (
            "array_uint",
            V,
            array(
                fc::UINT,
                [0, 1, 255, 256, u32::MAX]
                    .into_iter()
                    .map(Value::Uint)
                    .collect(),
            ),
        ),
        (
            "array_ulong",
            V,
            array(
                fc::ULONG,
                [0, 1, u64::MAX].into_iter().map(Value::Ulong).collect(),
            ),
        ),
        (
            "array_long",
            V,
            array(
                fc::LONG,
                [0, -1, i64::MAX, i64::MIN]
                    .into_iter()
                    .map(Value::Long)
                    .collect(),
            ),
        ),
        (
            "array_string",
            V,
            array(fc::STR32, vec![vstr("a"), vstr(""), vstr("h\u{e9}llo")]),
        ),
        // Proton writes boolean array elements as 0x56 plus a byte.
        (
            "array_bool",
            V,
            array(
                fc::BOOLEAN,
                vec![Value::Bool(true), Value::Bool(false), Value::Bool(true)],
            ),
        ),
        (
            "array_uuid",
            V,
            array(
                fc::UUID,
                vec![
                    Value::Uuid(uuid(FIXED_UUID)),
                    Value::Uuid(uuid(FIXED_UUID2)),
                ],
            ),
        ),
        (
            "array_double",
            V,
            array(fc::DOUBLE, vec![Value::Double(1.5), Value::Double(-0.0)]),
        ),
        (
            "array_timestamp",
            V,
            array(fc::TIMESTAMP, vec![ts(0), ts(TS_MS)]),
        ),
        (
            "array_binary",
            V,
            array(fc::VBIN32, vec![vbin(b""), vbin(b"\x01\x02")]),
        ),
        // 300 elements: array32 in both.
        (
            "array_300_ubytes",
            E,
            array(
                fc::UBYTE,
                counting(300).into_iter().map(Value::Ubyte).collect(),
            ),
        ),
        (
            "array_of_lists",
            V,
            array(
                fc::LIST32,
                vec![
                    Value::List(vec![Value::Uint(1), vstr("s1")]),
                    Value::List(vec![Value::Uint(2), vstr("s2")]),
                ],
            ),
        ),
        (
            "array_described_symbol_list",
            V,
            Value::Array(
                Array::described(
                    Descriptor::Symbol(sym("x:y")),
                    fc::LIST32,
                    (1..=3)
                        .map(|i| Value::List(vec![vstr(&format!("e{i}")), Value::Uint(i)]))
                        .collect(),
                )
                .expect("consistent array"),
            ),
        ),
        (
            "array_described_ulong_string",
            V,
            Value::Array(
                Array::described(
                    Descriptor::Code(SELECTOR_CODE),
                    fc::STR32,
                    vec![vstr("a"), vstr("bc")],
                )
                .expect("consistent array"),
            ),
        ),
        (
            "described_ulong_selector",
            E,
            described(Descriptor::Code(SELECTOR_CODE), vstr(selector)),
        ),
        (
            "described_symbol_selector",
            E,
            described(
                Descriptor::Symbol(sym("apache.org:selector-filter:string")),
                vstr(selector),
            ),
        ),
        (
            "described_accepted_empty_list",
            E,
            described(Descriptor::Code(0x24), Value::List(vec![])),
        ),
        (
            "nested_list_map_list",
            V,
            Value::List(vec![
                vmap(vec![(
                    vstr("k"),
                    Value::List(vec![
                        Value::Int(1),
                        vstr("x"),
                        vmap(vec![(vsym("inner"), Value::List(vec![Value::Bool(true)]))]),
                    ]),
                )]),
                Value::Ubyte(7),
            ]),
        ),
    ]
}

/// Every fixture file has a table entry and every entry a file, so a new
/// fixture cannot be skipped silently.
#[test]
fn value_table_covers_every_fixture() {
    let files = fixture_names("proton/values", ".bin");
    let table = value_table();
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| !table.iter().any(|(n, ..)| n == f))
        .collect();
    assert!(
        missing.is_empty(),
        "values/*.bin without an expected value: {missing:?}"
    );
    let stale: Vec<&str> = table
        .iter()
        .map(|(n, ..)| *n)
        .filter(|n| !files.iter().any(|f| f == n))
        .collect();
    assert!(
        stale.is_empty(),
        "table entries without a fixture: {stale:?}"
    );
    let mut names: Vec<&str> = table.iter().map(|(n, ..)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), table.len(), "duplicate table entries");
    assert_eq!(files.len(), 91, "fixture count changed: update the table");
}

#[test]
fn values_decode_to_the_expected_value() {
    for (name, _, expected) in value_table() {
        let bytes = fixture(&format!("proton/values/{name}.bin"));
        let v = Value::decode_all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            strict_eq(&v, &expected),
            "{name}: decoded {v:?}\nexpected {expected:?}"
        );
    }
}

#[test]
fn values_reencode_exactly_or_to_an_equal_value() {
    let (mut exact, mut value) = (0, 0);
    for (name, enc, expected) in value_table() {
        let bytes = fixture(&format!("proton/values/{name}.bin"));
        let v = Value::decode_all(&bytes).expect("decodes");
        check_reencode(name, &v, &bytes, enc);
        // Encoding the hand-built value gives the same bytes as re-encoding
        // the decoded one.
        assert_eq!(
            hex(&expected.to_bytes()),
            hex(&v.to_bytes()),
            "{name}: hand-built value encodes differently"
        );
        // Floats keep their sign through our encoder, also inside arrays.
        let back = Value::decode_all(&v.to_bytes()).expect("decodes");
        assert!(
            strict_eq(&back, &expected),
            "{name}: round trip lost bits: {back:?}"
        );
        match enc {
            E => exact += 1,
            V => value += 1,
        }
    }
    assert_eq!(
        (exact, value),
        (69, 22),
        "byte-exact / value-equal split changed"
    );
}

/// Proton's array fixtures keep their full-width element constructors when
/// we re-encode them, and their 32-bit compounds become 8-bit ones.
#[test]
fn value_reencoding_details() {
    let v = Value::decode_all(&fixture("proton/values/array_uint.bin")).expect("decodes");
    assert_eq!(
        hex(&v.to_bytes()),
        "e0 16 05 70 00 00 00 00 00 00 00 01 00 00 00 ff 00 00 01 00 ff ff ff ff",
        "array8 with the uint constructor Proton chose"
    );
    let v = Value::decode_all(&fixture("proton/values/array_int_empty.bin")).expect("decodes");
    assert_eq!(hex(&v.to_bytes()), "e0 02 00 71");
    let v = Value::decode_all(&fixture("proton/values/map_empty.bin")).expect("decodes");
    assert_eq!(hex(&v.to_bytes()), "c1 01 00");
    let v = Value::decode_all(&fixture("proton/values/list_mixed.bin")).expect("decodes");
    assert_eq!(hex(&v.to_bytes()), "c0 08 04 52 01 a1 01 61 40 41");
    let v = Value::decode_all(&fixture("proton/values/array_bool.bin")).expect("decodes");
    assert_eq!(hex(&v.to_bytes()), "e0 05 03 56 01 00 01");
    let Value::Array(a) =
        Value::decode_all(&fixture("proton/values/array_described_symbol_list.bin"))
            .expect("decodes")
    else {
        panic!("not an array")
    };
    assert_eq!(a.descriptor(), Some(&Descriptor::Symbol(sym("x:y"))));
    assert_eq!(a.code(), fc::LIST32);
    assert_eq!(a.items().len(), 3);
}

// ----------------------------------------------------------------- messages

fn mid_uuid(s: &str) -> Option<MessageId> {
    Some(MessageId::Uuid(uuid(s)))
}

fn annotation<'a>(m: &'a Message, key: &'static str) -> &'a Value {
    m.message_annotations
        .as_ref()
        .expect("message annotations")
        .get(&AnnotationKey::Symbol(sym(key)))
        .unwrap_or_else(|| panic!("no annotation {key}"))
}

fn app_prop<'a>(m: &'a Message, key: &str) -> &'a Value {
    m.application_properties
        .as_ref()
        .expect("application properties")
        .get(&ByteString::from(key))
        .unwrap_or_else(|| panic!("no application property {key}"))
}

/// The header and properties Proton's `Message.encode()` always writes: empty
/// lists, decoded as every field at its default.
fn assert_default_header_and_properties(m: &Message) {
    assert_eq!(m.header, Some(Default::default()));
    assert_eq!(m.properties, Some(Default::default()));
}

/// The properties gen.py's `all_props` sets, apart from the message id.
fn assert_all_props(m: &Message, id: MessageId) {
    let p = m.properties.as_ref().expect("properties");
    assert_eq!(p.message_id, Some(id));
    assert_eq!(p.user_id.as_deref(), Some(&b"user-\x00-id"[..]));
    assert_eq!(
        p.to.as_deref(),
        Some("amqps://myns.servicebus.windows.net/myhub")
    );
    assert_eq!(p.subject.as_deref(), Some("subject"));
    assert_eq!(p.reply_to.as_deref(), Some("reply-to-address"));
    assert_eq!(p.correlation_id, Some(MessageId::from("corr-1")));
    assert_eq!(p.content_type, Some(sym("application/json")));
    assert_eq!(p.content_encoding, Some(sym("utf-8")));
    assert_eq!(p.absolute_expiry_time, Some(Timestamp(1_700_003_600_123)));
    assert_eq!(p.creation_time, Some(Timestamp(TS_MS)));
    assert_eq!(p.group_id.as_deref(), Some("group-1"));
    assert_eq!(p.group_sequence, Some(7));
    assert_eq!(p.reply_to_group_id.as_deref(), Some("reply-group"));
    assert_eq!(m.header, Some(Default::default()));
    assert_eq!(m.body, Body::Value(vstr("p")));
}

type MessageCheck = fn(&Message);

/// Every `messages/*.bin` fixture: name, re-encoding expectation, checks.
fn message_table() -> Vec<(&'static str, Enc, MessageCheck)> {
    vec![
        ("body_string", E, |m| {
            assert_default_header_and_properties(m);
            assert_eq!(m.body, Body::Value(vstr("hello")));
        }),
        ("body_bytes", E, |m| {
            assert_default_header_and_properties(m);
            assert_eq!(m.body, Body::Value(vbin(b"\x00\x01binary\xff")));
        }),
        ("body_bytes_inferred", E, |m| {
            assert_default_header_and_properties(m);
            assert_eq!(
                m.body,
                Body::Data(vec![Bytes::from_static(b"\x00\x01binary\xff")])
            );
        }),
        // amqp-value(list32)
        ("body_list", V, |m| {
            assert_eq!(
                m.body,
                Body::Value(Value::List(vec![
                    Value::Long(1),
                    vstr("two"),
                    Value::Null,
                    Value::Bool(true)
                ]))
            );
        }),
        // amqp-sequence(list32)
        ("body_list_inferred", V, |m| {
            assert_eq!(
                m.body,
                Body::Sequence(vec![vec![
                    Value::Long(1),
                    vstr("two"),
                    Value::Null,
                    Value::Bool(true)
                ]])
            );
        }),
        // amqp-value(map32)
        ("body_map", V, |m| {
            assert_eq!(
                m.body,
                Body::Value(vmap(vec![
                    (vstr("k"), vstr("v")),
                    (vsym("s"), Value::Long(1))
                ]))
            );
        }),
        ("body_none", E, |m| {
            assert_default_header_and_properties(m);
            assert_eq!(m.body, Body::Empty);
            assert_eq!(
                (&m.message_annotations, &m.application_properties, &m.footer),
                (&None, &None, &None)
            );
        }),
        ("body_described", E, |m| {
            assert_eq!(
                m.body,
                Body::Value(described(
                    Descriptor::Symbol(sym("x:custom")),
                    vstr("payload")
                ))
            );
        }),
        ("header_all_fields", E, |m| {
            let h = m.header.as_ref().expect("header");
            assert!(h.durable);
            assert_eq!(h.priority, 9);
            assert_eq!(h.ttl, Some(60_500));
            assert!(h.first_acquirer);
            assert_eq!(h.delivery_count, 3);
            assert_eq!(m.properties, Some(Default::default()));
            assert_eq!(m.body, Body::Value(vstr("h")));
        }),
        // priority 4 is the default: Proton leaves it out, we read it back.
        ("header_default_priority", E, |m| {
            let h = m.header.as_ref().expect("header");
            assert_eq!(
                (
                    h.durable,
                    h.priority,
                    h.ttl,
                    h.first_acquirer,
                    h.delivery_count
                ),
                (false, 4, None, false, 0)
            );
        }),
        ("properties_all_id_string", E, |m| {
            assert_all_props(m, MessageId::from("msg-id-1"))
        }),
        ("properties_all_id_uuid", E, |m| {
            assert_all_props(m, MessageId::Uuid(uuid(FIXED_UUID)))
        }),
        ("properties_all_id_ulong", E, |m| {
            assert_all_props(m, MessageId::Ulong(1_234_567_890_123))
        }),
        ("properties_all_id_binary", E, |m| {
            assert_all_props(m, MessageId::Binary(Bytes::from_static(b"\x01\x02\x03id")))
        }),
        ("properties_id_int_corr_uuid", E, |m| {
            let p = m.properties.as_ref().expect("properties");
            assert_eq!(p.message_id, Some(MessageId::Ulong(5)));
            assert_eq!(p.correlation_id, mid_uuid(FIXED_UUID2));
            assert_eq!(
                (p.user_id.as_ref(), p.to.as_ref(), p.group_sequence),
                (None, None, None)
            );
        }),
        ("delivery_annotations", V, |m| {
            let da = m
                .delivery_annotations
                .as_ref()
                .expect("delivery annotations");
            assert_eq!(
                da,
                &Map(vec![
                    (
                        AnnotationKey::Symbol(sym("x-opt-lock-token")),
                        Value::Uuid(uuid(FIXED_UUID))
                    ),
                    (
                        AnnotationKey::Symbol(sym("x-opt-delivery-count")),
                        Value::Int(2)
                    ),
                ])
            );
            assert_eq!(m.body, Body::Value(vstr("i")));
        }),
        ("message_annotations_eventhubs", V, |m| {
            assert_eq!(annotation(m, "x-opt-partition-key"), &vstr("pk-1"));
            assert_eq!(annotation(m, "x-opt-sequence-number"), &Value::Long(42));
            assert_eq!(annotation(m, "x-opt-offset"), &vstr("12345"));
            assert_eq!(annotation(m, "x-opt-enqueued-time"), &ts(TS_MS));
            assert_eq!(m.message_annotations.as_ref().map(Map::len), Some(4));
        }),
        ("message_annotations_ulong_key", V, |m| {
            assert_eq!(
                m.message_annotations,
                Some(Map(vec![
                    (AnnotationKey::Ulong(7), vstr("ulong-keyed")),
                    (AnnotationKey::Symbol(sym("s")), vstr("sym-keyed")),
                ]))
            );
        }),
        ("application_properties_many_types", V, |m| {
            let expected: Vec<(&str, Value)> = vec![
                ("string", vstr("value")),
                ("int", Value::Int(-7)),
                ("long", Value::Long(1 << 40)),
                ("long_small", Value::Long(5)),
                ("bool", Value::Bool(true)),
                ("double", Value::Double(2.5)),
                ("float", Value::Float(0.5)),
                ("timestamp", ts(TS_MS)),
                ("uuid", Value::Uuid(uuid(FIXED_UUID))),
                ("binary", vbin(b"\x00\xff")),
                ("null", Value::Null),
                ("ubyte", Value::Ubyte(1)),
                ("ushort", Value::Ushort(2)),
                ("uint", Value::Uint(3)),
                ("ulong", Value::Ulong(4)),
                ("byte", Value::Byte(-1)),
                ("short", Value::Short(-2)),
                ("char", Value::Char('c')),
                ("symbol", vsym("sym")),
            ];
            let ap = m
                .application_properties
                .as_ref()
                .expect("application properties");
            assert_eq!(ap.len(), expected.len());
            for ((k, v), (ek, ev)) in ap.iter().zip(&expected) {
                assert_eq!((&k[..], v), (*ek, ev));
            }
            assert_eq!(app_prop(m, "uuid"), &Value::Uuid(uuid(FIXED_UUID)));
            assert_eq!(m.body, Body::Value(vstr("ap")));
        }),
        ("all_sections", V, |m| {
            let h = m.header.as_ref().expect("header");
            assert_eq!(
                (
                    h.durable,
                    h.priority,
                    h.ttl,
                    h.first_acquirer,
                    h.delivery_count
                ),
                (true, 5, Some(30_000), false, 1)
            );
            assert_eq!(
                m.delivery_annotations,
                Some(Map(vec![(
                    AnnotationKey::Symbol(sym("x-opt-di")),
                    vstr("d")
                )]))
            );
            assert_eq!(annotation(m, "x-opt-partition-key"), &vstr("pk"));
            assert_eq!(annotation(m, "x-opt-sequence-number"), &Value::Long(1));
            assert_eq!(annotation(m, "x-opt-offset"), &vstr("0"));
            assert_eq!(annotation(m, "x-opt-enqueued-time"), &ts(TS_MS));
            let p = m.properties.as_ref().expect("properties");
            assert_eq!(p.message_id, Some(MessageId::from("id-everything")));
            assert_eq!(p.user_id.as_deref(), Some(&b"u"[..]));
            assert_eq!(p.to.as_deref(), Some("addr"));
            assert_eq!(p.subject.as_deref(), Some("subj"));
            assert_eq!(p.reply_to.as_deref(), Some("rt"));
            assert_eq!(p.correlation_id, Some(MessageId::Ulong(99)));
            assert_eq!(p.content_type, Some(sym("application/octet-stream")));
            assert_eq!(p.content_encoding, Some(sym("identity")));
            assert_eq!(p.absolute_expiry_time, Some(Timestamp(1_700_003_600_123)));
            assert_eq!(p.creation_time, Some(Timestamp(TS_MS)));
            assert_eq!(p.group_id.as_deref(), Some("g"));
            assert_eq!(p.group_sequence, Some(1));
            assert_eq!(p.reply_to_group_id.as_deref(), Some("rg"));
            assert_eq!(app_prop(m, "p"), &vstr("v"));
            assert_eq!(app_prop(m, "n"), &Value::Long(1));
            assert_eq!(m.body, Body::Data(vec![Bytes::from_static(b"everything")]));
            assert_eq!(m.footer, None);
        }),
        ("eventhubs_event_1k", V, |m| {
            let p = m.properties.as_ref().expect("properties");
            assert_eq!(p.message_id, mid_uuid(FIXED_UUID));
            assert_eq!(p.content_type, Some(sym("application/octet-stream")));
            assert_eq!(p.creation_time, Some(Timestamp(TS_MS)));
            assert_eq!(
                annotation(m, "x-opt-sequence-number"),
                &Value::Long(1_234_567)
            );
            assert_eq!(annotation(m, "x-opt-offset"), &vstr("4294967296"));
            assert_eq!(annotation(m, "x-opt-enqueued-time"), &ts(TS_MS));
            assert_eq!(annotation(m, "x-opt-partition-key"), &vstr("device-42"));
            assert_eq!(
                app_prop(m, "Diagnostic-Id"),
                &vstr("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            );
            assert_eq!(app_prop(m, "deviceId"), &vstr("device-42"));
            assert_eq!(app_prop(m, "temperature"), &Value::Double(21.5));
            assert_eq!(app_prop(m, "count"), &Value::Int(3));
            let body: Vec<u8> = (0..1024).map(|i| ((i * 7) % 256) as u8).collect();
            assert_eq!(m.body, Body::Data(vec![Bytes::from(body)]));
        }),
        ("footer_appended", V, |m| {
            assert_eq!(annotation(m, "x-opt-partition-key"), &vstr("pk"));
            assert_eq!(m.body, Body::Value(vstr("with footer")));
            assert_eq!(
                m.footer,
                Some(Map(vec![
                    (AnnotationKey::Symbol(sym("x-opt-footer")), vstr("f")),
                    (
                        AnnotationKey::Symbol(sym("x-hash")),
                        vbin(b"\x01\x02\x03\x04")
                    ),
                ]))
            );
        }),
    ]
}

#[test]
fn message_table_covers_every_fixture() {
    let files = fixture_names("proton/messages", ".bin");
    let table = message_table();
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| !table.iter().any(|(n, ..)| n == f))
        .collect();
    assert!(
        missing.is_empty(),
        "messages/*.bin without checks: {missing:?}"
    );
    let stale: Vec<&str> = table
        .iter()
        .map(|(n, ..)| *n)
        .filter(|n| !files.iter().any(|f| f == n))
        .collect();
    assert!(
        stale.is_empty(),
        "table entries without a fixture: {stale:?}"
    );
    assert_eq!(files.len(), table.len());
}

#[test]
fn messages_decode_with_the_fields_gen_py_set() {
    for (name, _, check) in message_table() {
        let bytes = fixture(&format!("proton/messages/{name}.bin"));
        let m = Message::decode_all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&m);
    }
}

#[test]
fn messages_reencode_exactly_or_to_an_equal_value() {
    let (mut exact, mut value) = (0, 0);
    for (name, enc, _) in message_table() {
        let bytes = fixture(&format!("proton/messages/{name}.bin"));
        let m = Message::decode_all(&bytes).expect("decodes");
        check_reencode(name, &m, &bytes, enc);
        match enc {
            E => exact += 1,
            V => value += 1,
        }
    }
    assert_eq!(
        (exact, value),
        (12, 10),
        "byte-exact / value-equal split changed"
    );
}

/// A data body decoded from a `Bytes` is a slice of it, not a copy; so are
/// strings and binaries in the other sections.
#[test]
fn message_decoding_is_zero_copy() {
    for name in ["body_bytes_inferred", "all_sections", "eventhubs_event_1k"] {
        let bytes = fixture(&format!("proton/messages/{name}.bin"));
        let range = bytes.as_ptr_range();
        let m = Message::decode_all(&bytes).expect("decodes");
        let Body::Data(sections) = &m.body else {
            panic!("{name}: not a data body")
        };
        for s in sections {
            assert!(!s.is_empty());
            assert!(range.contains(&s.as_ptr()), "{name}: data body was copied");
            assert!(s.as_ptr_range().end <= range.end);
        }
    }
    let bytes = fixture("proton/messages/all_sections.bin");
    let range = bytes.as_ptr_range();
    let m = Message::decode_all(&bytes).expect("decodes");
    let p = m.properties.expect("properties");
    assert!(range.contains(&p.user_id.expect("user id").as_ptr()));
    assert!(range.contains(&p.to.expect("to").as_ptr()));
    assert!(range.contains(&p.content_type.expect("content type").as_bytes().as_ptr()));
}

// ------------------------------------------------------------------ streams

fn line(enc: Enc, s: impl Into<String>) -> (Enc, String) {
    (enc, s.into())
}

/// Splits, decodes and re-encodes one recorded stream, checks its summary
/// listing and returns its units.
fn check_stream(file: &str, expected: &[(Enc, String)]) -> Vec<Unit> {
    let bytes = fixture(&format!("proton/streams/{file}"));
    let units = split_stream(file, &bytes);
    assert_eq!(
        layout(&units),
        proton_frame_table(file),
        "{file}: framing differs from Proton's table"
    );
    fixture_support::assert_summaries(file, &units, expected);
    check_units_reencode(file, &units, expected);
    units
}

/// The frame table gen.py wrote for `file` (`NAME.client.bin` or
/// `NAME.server.bin`) into `NAME.txt`, one entry per header or frame:
/// `@offset size hdr <hex>`, or `@offset size <SASL|AMQP> ch=N perf=P
/// payload=Q`, or `@offset size AMQP ch=N empty`.
fn proton_frame_table(file: &str) -> Vec<String> {
    let stem = file.split('.').next().expect("stem");
    let text =
        String::from_utf8(fixture(&format!("proton/streams/{stem}.txt")).to_vec()).expect("utf-8");
    let start = format!("== {file}: ");
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&start));
    lines
        .next()
        .unwrap_or_else(|| panic!("{file}: no frame table"));
    lines
        .take_while(|l| l.starts_with("  @"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (at, size) = (w[0], w[1]);
            match w[2] {
                "protocol" => format!("{at} {size} hdr {}", w[5]),
                kind if l.contains("(empty frame") => format!("{at} {size} {kind} {} empty", w[3]),
                kind => {
                    let perf = w[5].trim_start_matches("perf=").trim_end_matches('B');
                    let payload = w[6].trim_start_matches("payload=").trim_end_matches('B');
                    format!("{at} {size} {kind} {} perf={perf} payload={payload}", w[3])
                }
            }
        })
        .collect()
}

/// Our split of a stream in the shape of [`proton_frame_table`].
fn layout(units: &[Unit]) -> Vec<String> {
    units
        .iter()
        .map(|u| match u {
            Unit::Header { offset, header } => format!(
                "@{offset} 8 hdr {}",
                hex(&header.to_bytes()).replace(' ', "")
            ),
            Unit::Frame {
                offset,
                raw,
                channel,
                frame,
                body,
            } => {
                let (kind, payload) = match frame {
                    Frame::Sasl(_) => ("SASL", 0),
                    Frame::Empty { .. } => {
                        return format!("@{offset} {} AMQP ch={channel} empty", raw.len())
                    }
                    Frame::Amqp { payload, .. } => ("AMQP", payload.len()),
                };
                format!(
                    "@{offset} {} {kind} ch={channel} perf={} payload={payload}",
                    raw.len(),
                    body.len()
                )
            }
        })
        .collect()
}

/// Both sides announced max-frame-size `max`: every frame fits it, Proton
/// fills split transfers up to exactly `max`, and our frame header parser
/// accepts those frames at `max` and refuses them one byte lower.
fn assert_max_frame_size(units: &[Unit], max: u32) {
    let mut full = 0;
    for u in units {
        let Unit::Frame { raw, .. } = u else { continue };
        assert!(raw.len() <= max as usize);
        assert!(FrameHeader::parse(raw, max).expect("fits").is_some());
        if raw.len() == max as usize {
            full += 1;
            assert!(FrameHeader::parse(raw, max - 1).is_err());
        }
    }
    assert!(full > 0, "no frame of exactly {max} bytes");
}

fn perf(u: &Unit) -> &Performative {
    match u {
        Unit::Frame {
            frame: Frame::Amqp { performative, .. },
            ..
        } => performative,
        u => panic!("not a performative: {u:?}"),
    }
}

fn sasl(u: &Unit) -> &SaslFrame {
    match u {
        Unit::Frame {
            frame: Frame::Sasl(s),
            ..
        } => s,
        u => panic!("not a SASL frame: {u:?}"),
    }
}

/// A message as gen.py's `send_message` puts it on the wire.
fn decode_delivery(payload: &Bytes) -> Message {
    Message::decode_all(payload).unwrap_or_else(|e| panic!("delivery payload does not decode: {e}"))
}

#[test]
fn stream_sasl_anonymous_client() {
    let d3 = "transfer h=0 id=2 tag=d3 fmt=0x0 settled=-";
    let expected = vec![
        line(E, "hdr Sasl"),
        line(E, "sasl-init ANONYMOUS resp=anonymous host=-"),
        line(E, "hdr Amqp"),
        // array32 capabilities, map32 properties
        line(
            V,
            "ch0 open id=eventhubs-proto-client host=myns.servicebus.windows.net max-frame=512 channel-max=7 idle=15000",
        ),
        line(E, "ch0 begin remote=- next-out=0 in-win=16 out-win=2147483647"),
        line(E, "ch1 begin remote=- next-out=0 in-win=2147483647 out-win=2147483647"),
        // explicit settle modes and terminus defaults, array32, map32
        line(V, "ch0 attach sender-link h=0 sender src=client-outbox tgt=myhub/Partitions/0"),
        line(
            V,
            "ch0 attach receiver-link h=1 receiver src=myhub/ConsumerGroups/$Default/Partitions/0 tgt=client-inbox",
        ),
        // drain=false written out
        line(V, "ch0 flow h=1 next-in=- next-out=0 dc=0 credit=0 drain=false"),
        line(E, "ch0 transfer h=0 id=0 tag=d1 fmt=0x0 settled=- more=false payload=61"),
        line(E, "ch0 transfer h=0 id=1 tag=d2 fmt=0x0 settled=- more=false payload=61"),
        line(E, format!("ch0 {d3} more=true payload=488")),
        line(E, format!("ch0 {d3} more=true payload=488")),
        line(E, format!("ch0 {d3} more=true payload=488")),
        line(E, format!("ch0 {d3} more=false payload=93")),
        line(E, "ch0 transfer h=0 id=3 tag=d4 fmt=0x0 settled=- more=false payload=61"),
        line(E, "ch0 transfer h=0 id=4 tag=d5 fmt=0x0 settled=- more=false payload=61"),
        line(E, "ch0 transfer h=0 id=5 tag=presettled fmt=0x0 settled=true more=false payload=28"),
        line(E, "ch0 disposition sender first=4 last=- settled=true state=-"),
        line(V, "ch0 flow h=1 next-in=0 next-out=9 dc=0 credit=3 drain=false"),
        line(E, "ch0 disposition receiver first=0 last=1 settled=true state=accepted"),
        line(E, "ch1 end err=-"),
        line(E, "ch0 empty"),
        // map32 error info
        line(V, "ch0 detach h=0 closed=true err=amqp:link:detach-forced"),
        line(E, "ch0 detach h=1 closed=false err=-"),
        line(E, "ch0 end err=-"),
        line(V, "ch0 close err=amqp:connection:forced"),
    ];
    let units = check_stream("sasl_anonymous.client.bin", &expected);
    assert_max_frame_size(&units, 512);

    let Performative::Open(open) = perf(&units[3]) else {
        unreachable!()
    };
    assert_eq!(open.offered_capabilities, vec![sym("ANONYMOUS-RELAY")]);
    assert_eq!(
        open.desired_capabilities,
        vec![sym("com.microsoft:cbs"), sym("APACHE.ORG:NO_LOCAL")]
    );
    let props = open.properties.as_ref().expect("properties");
    assert_eq!(
        props.get(&sym("product")),
        Some(&vstr("eventhubs-proto-fixtures"))
    );
    assert_eq!(props.get(&sym("version")), Some(&vstr("0.0.0")));
    assert_eq!(props.get(&sym("platform")), Some(&vstr("python")));
    assert_eq!(
        props.get(&sym("com.microsoft:client-agent")),
        Some(&vstr("fixtures/1.0"))
    );
    let Performative::Begin(b) = perf(&units[4]) else {
        unreachable!()
    };
    assert_eq!(b.handle_max, 0x7fff_ffff);

    let Performative::Attach(snd) = perf(&units[6]) else {
        unreachable!()
    };
    assert_eq!(
        (snd.snd_settle_mode, snd.rcv_settle_mode),
        (SenderSettleMode::Mixed, ReceiverSettleMode::First)
    );
    assert_eq!(
        (snd.initial_delivery_count, snd.max_message_size),
        (Some(0), Some(1024 * 1024))
    );
    let t = snd.target.as_ref().expect("target");
    assert_eq!(
        (t.durable, t.expiry_policy.as_str(), t.timeout, t.dynamic),
        (2, "never", 30, false)
    );
    assert_eq!(
        t.capabilities,
        vec![sym("com.microsoft:topic"), sym("x-cap")]
    );
    let props = snd.properties.as_ref().expect("link properties");
    assert_eq!(
        props.get(&sym("com.microsoft:timeout")),
        Some(&Value::Uint(60000))
    );
    assert_eq!(
        props.get(&sym("com.microsoft:entity-type")),
        Some(&vsym("com.microsoft:eventhub"))
    );

    let Performative::Attach(rcv) = perf(&units[7]) else {
        unreachable!()
    };
    assert_eq!(
        (rcv.role, rcv.snd_settle_mode, rcv.rcv_settle_mode),
        (
            Role::Receiver,
            SenderSettleMode::Unsettled,
            ReceiverSettleMode::Second
        )
    );
    let s = rcv.source.as_ref().expect("source");
    assert_eq!(s.distribution_mode, Some(sym("copy")));
    assert_eq!(s.expiry_policy.as_str(), "session-end");
    let filter = s.filter.as_ref().expect("filter");
    assert_eq!(filter.len(), 1);
    assert_eq!(
        filter.get(&sym("apache.org:selector-filter:string")),
        Some(&described(
            Descriptor::Symbol(sym("apache.org:selector-filter:string")),
            vstr("amqp.annotation.x-opt-offset > '100'")
        ))
    );
    assert_eq!(
        s.outcomes,
        [
            "amqp:accepted:list",
            "amqp:rejected:list",
            "amqp:released:list",
            "amqp:modified:list"
        ]
        .map(sym)
        .to_vec()
    );
    // A multiple field given as one bare symbol.
    assert_eq!(s.capabilities, vec![sym("com.microsoft:session-filter")]);
    let props = rcv.properties.as_ref().expect("link properties");
    assert_eq!(
        props.get(&sym("com.microsoft:epoch")),
        Some(&Value::Long(7))
    );
    assert_eq!(
        props.get(&sym("com.microsoft:receiver-name")),
        Some(&vstr("r1"))
    );

    let Performative::Detach(d) = perf(&units[23]) else {
        unreachable!()
    };
    let e = d.error.as_ref().expect("error");
    assert_eq!(e.description.as_deref(), Some("sender going away"));
    assert_eq!(
        e.info.as_ref().and_then(|i| i.get(&sym("x-opt-code"))),
        Some(&Value::Int(1))
    );
    let Performative::Close(c) = perf(&units[26]) else {
        unreachable!()
    };
    let e = c.error.as_ref().expect("error");
    assert_eq!(e.description.as_deref(), Some("closing fixture connection"));
    assert_eq!(
        e.info.as_ref().and_then(|i| i.get(&sym("x-opt-info"))),
        Some(&vstr("bye"))
    );

    // The six deliveries, d3 reassembled from four frames.
    let ds = deliveries("sasl_anonymous.client", &units);
    assert_eq!(ds.len(), 6);
    for (i, d) in ds.iter().enumerate() {
        let m = decode_delivery(&d.payload);
        if i == 5 {
            assert_eq!(d.settled, Some(true));
            assert_eq!(m.body, Body::Value(vstr("fire and forget")));
            assert_default_header_and_properties(&m);
            continue;
        }
        let n = i as u64 + 1;
        assert_eq!(d.tag.as_deref(), Some(format!("d{n}").as_bytes()));
        assert_eq!(d.frames, if n == 3 { 4 } else { 1 });
        assert_eq!(
            m.properties.as_ref().and_then(|p| p.message_id.clone()),
            Some(MessageId::Ulong(n))
        );
        assert_eq!(annotation(&m, "x-opt-partition-key"), &vstr("pk"));
        // inferred=True turns bytes into a data section; a str stays an
        // amqp-value.
        let body = if n == 3 {
            let b: Vec<u8> = (0..1500).map(|j| ((j * 13) % 256) as u8).collect();
            Body::Data(vec![Bytes::from(b)])
        } else {
            Body::Value(vstr(&format!("event {n}")))
        };
        assert_eq!(m.body, body);
        check_reencode(&format!("delivery d{n}"), &m, &d.payload, V);
    }
}

#[test]
fn stream_sasl_anonymous_server() {
    let expected = vec![
        line(E, "hdr Sasl"),
        // Proton's generated encoder writes array8 of sym8, like us.
        line(E, "sasl-mechanisms ANONYMOUS"),
        line(E, "sasl-outcome Ok"),
        line(E, "hdr Amqp"),
        line(V, "ch0 open id=eventhubs-proto-server host=- max-frame=512 channel-max=3 idle=60000"),
        line(E, "ch0 begin remote=0 next-out=0 in-win=2147483647 out-win=2147483647"),
        line(E, "ch1 begin remote=1 next-out=0 in-win=2147483647 out-win=2147483647"),
        line(V, "ch0 attach sender-link h=0 receiver src=client-outbox tgt=myhub/Partitions/0"),
        line(
            V,
            "ch0 attach receiver-link h=1 sender src=myhub/ConsumerGroups/$Default/Partitions/0 tgt=client-inbox",
        ),
        line(V, "ch0 flow h=0 next-in=0 next-out=0 dc=0 credit=10 drain=false"),
        line(E, "ch0 disposition receiver first=0 last=- settled=true state=accepted"),
        line(V, "ch0 disposition receiver first=1 last=- settled=true state=rejected(amqp:internal-error)"),
        line(E, "ch0 disposition receiver first=2 last=- settled=true state=released"),
        line(V, "ch0 disposition receiver first=3 last=- settled=true state=modified(failed=true,undeliverable=true)"),
        line(E, "ch0 disposition receiver first=4 last=- settled=false state=received(1,10)"),
        line(E, "ch0 disposition receiver first=4 last=- settled=false state=accepted"),
        line(E, "ch0 transfer h=1 id=0 tag=s0 fmt=0x0 settled=- more=false payload=109"),
        line(E, "ch0 transfer h=1 id=1 tag=s1 fmt=0x0 settled=- more=true payload=487"),
        line(E, "ch0 transfer h=1 id=1 tag=s1 fmt=0x0 settled=- more=false payload=315"),
        line(E, "ch1 end err=-"),
        line(E, "ch0 empty"),
        line(E, "ch0 empty"),
        line(E, "ch0 detach h=0 closed=true err=-"),
        line(E, "ch0 detach h=1 closed=true err=-"),
        line(E, "ch0 end err=amqp:session:unattached-handle"),
        line(E, "ch0 close err=-"),
    ];
    let units = check_stream("sasl_anonymous.server.bin", &expected);

    let SaslFrame::Mechanisms(m) = sasl(&units[1]) else {
        unreachable!()
    };
    assert_eq!(m.sasl_server_mechanisms, vec![sym("ANONYMOUS")]);
    let Performative::Open(o) = perf(&units[4]) else {
        unreachable!()
    };
    assert_eq!(
        o.offered_capabilities,
        vec![sym("ANONYMOUS-RELAY"), sym("com.microsoft:cbs")]
    );
    let props = o.properties.as_ref().expect("properties");
    assert_eq!(props.get(&sym("x-opt-server")), Some(&vstr("fake")));
    assert_eq!(props.get(&sym("x-opt-int")), Some(&Value::Int(-5)));

    let Performative::Attach(a) = perf(&units[8]) else {
        unreachable!()
    };
    let s = a.source.as_ref().expect("source");
    let sel = s
        .filter
        .as_ref()
        .and_then(|f| f.get(&sym("apache.org:selector-filter:string")));
    assert!(
        matches!(sel, Some(Value::Described(d)) if d.value == vstr("amqp.annotation.x-opt-offset > '100'"))
    );

    let Performative::Disposition(d) = perf(&units[11]) else {
        unreachable!()
    };
    let Some(DeliveryState::Rejected(r)) = &d.state else {
        panic!("{d:?}")
    };
    let e = r.error.as_ref().expect("error");
    assert_eq!(e.description.as_deref(), Some("rejected by fixture"));
    assert_eq!(
        e.info.as_ref().and_then(|i| i.get(&sym("x-opt-reason"))),
        Some(&vstr("test"))
    );
    let Performative::Disposition(d) = perf(&units[13]) else {
        unreachable!()
    };
    let Some(DeliveryState::Modified(m)) = &d.state else {
        panic!("{d:?}")
    };
    assert_eq!(
        m.message_annotations
            .as_ref()
            .and_then(|a| a.get(&sym("x-opt-retry"))),
        Some(&Value::Long(1))
    );
    let Performative::End(e) = perf(&units[24]) else {
        unreachable!()
    };
    assert_eq!(
        e.error.as_ref().and_then(|e| e.description.as_deref()),
        Some("end from server")
    );

    let ds = deliveries("sasl_anonymous.server", &units);
    assert_eq!(ds.len(), 2);
    for (i, (d, body)) in ds
        .iter()
        .zip([vstr("server msg 1"), vstr(&"x".repeat(700))])
        .enumerate()
    {
        assert_eq!(d.frames, i + 1);
        let m = decode_delivery(&d.payload);
        assert_eq!(
            annotation(&m, "x-opt-sequence-number"),
            &Value::Long(i as i64)
        );
        assert_eq!(
            annotation(&m, "x-opt-offset"),
            &vstr(&(i * 100).to_string())
        );
        assert_eq!(annotation(&m, "x-opt-enqueued-time"), &ts(TS_MS + i as i64));
        assert_eq!(m.body, Body::Value(body));
        check_reencode(&format!("delivery s{i}"), &m, &d.payload, V);
    }
}

#[test]
fn stream_sasl_plain() {
    let units = check_stream(
        "sasl_plain.client.bin",
        &[
            line(E, "hdr Sasl"),
            line(E, "sasl-init PLAIN resp=\\x00user@example\\x00secret-password host=-"),
            line(E, "hdr Amqp"),
            line(
                E,
                "ch0 open id=plain-client host=myns.servicebus.windows.net max-frame=32768 channel-max=32767 idle=-",
            ),
            line(E, "ch0 close err=-"),
        ],
    );
    let SaslFrame::Init(i) = sasl(&units[1]) else {
        unreachable!()
    };
    assert_eq!(
        i.initial_response.as_deref(),
        Some(&b"\0user@example\0secret-password"[..])
    );
    check_stream(
        "sasl_plain.server.bin",
        &[
            line(E, "hdr Sasl"),
            line(E, "sasl-mechanisms PLAIN,ANONYMOUS"),
            line(E, "sasl-outcome Ok"),
            line(E, "hdr Amqp"),
            line(
                E,
                "ch0 open id=plain-server host=- max-frame=32768 channel-max=32767 idle=-",
            ),
            line(E, "ch0 close err=-"),
        ],
    );
}

#[test]
fn stream_sasl_plain_auth_failure() {
    check_stream(
        "sasl_plain_auth_failure.client.bin",
        &[
            line(E, "hdr Sasl"),
            line(E, "sasl-init PLAIN resp=\\x00user@example\\x00wrong host=-"),
        ],
    );
    let units = check_stream(
        "sasl_plain_auth_failure.server.bin",
        &[
            line(E, "hdr Sasl"),
            line(E, "sasl-mechanisms PLAIN,ANONYMOUS"),
            line(E, "sasl-outcome Auth"),
        ],
    );
    let SaslFrame::Outcome(o) = sasl(&units[2]) else {
        unreachable!()
    };
    assert_eq!(o.code as u8, 1);
    assert_eq!(o.additional_data, None);
}

#[test]
fn stream_amqp_no_sasl() {
    let units = check_stream(
        "amqp_no_sasl.client.bin",
        &[
            line(E, "hdr Amqp"),
            line(
                E,
                "ch0 open id=bare-client host=- max-frame=32768 channel-max=32767 idle=-",
            ),
            line(
                E,
                "ch0 begin remote=- next-out=0 in-win=2147483647 out-win=2147483647",
            ),
            line(V, "ch0 attach bare-sender h=0 sender src=- tgt=queue"),
            line(
                E,
                "ch0 transfer h=0 id=0 tag=t fmt=0x0 settled=- more=false payload=20",
            ),
            line(E, "ch0 close err=-"),
        ],
    );
    let ds = deliveries("amqp_no_sasl.client", &units);
    assert_eq!(ds.len(), 1);
    let m = decode_delivery(&ds[0].payload);
    assert_eq!(m.body, Body::Value(vstr("no sasl")));
    check_reencode("no-sasl delivery", &m, &ds[0].payload, E);

    let units = check_stream(
        "amqp_no_sasl.server.bin",
        &[
            line(E, "hdr Amqp"),
            line(
                E,
                "ch0 open id=bare-server host=- max-frame=32768 channel-max=32767 idle=-",
            ),
            line(
                E,
                "ch0 begin remote=0 next-out=0 in-win=2147483647 out-win=2147483647",
            ),
            // the source is omitted (null) in the server's attach
            line(V, "ch0 attach bare-sender h=0 receiver src=none tgt=queue"),
            line(
                V,
                "ch0 flow h=0 next-in=0 next-out=0 dc=0 credit=1 drain=false",
            ),
            line(
                E,
                "ch0 disposition receiver first=0 last=- settled=true state=accepted",
            ),
            line(E, "ch0 close err=-"),
        ],
    );
    let Performative::Attach(a) = perf(&units[3]) else {
        unreachable!()
    };
    assert_eq!(a.source, None);
}

#[test]
fn stream_drain_and_abort() {
    let src = "myhub/ConsumerGroups/$Default/Partitions/1";
    check_stream(
        "drain_and_abort.client.bin",
        &[
            line(E, "hdr Sasl"),
            line(E, "sasl-init ANONYMOUS resp=anonymous host=-"),
            line(E, "hdr Amqp"),
            line(
                E,
                "ch0 open id=drain-client host=- max-frame=512 channel-max=32767 idle=-",
            ),
            line(
                E,
                "ch0 begin remote=- next-out=0 in-win=2147483647 out-win=2147483647",
            ),
            line(
                V,
                format!("ch0 attach drain-receiver h=0 receiver src={src} tgt=drain-client"),
            ),
            // drain=true is not a default: byte-exact
            line(
                E,
                "ch0 flow h=0 next-in=0 next-out=0 dc=0 credit=5 drain=true",
            ),
            line(
                E,
                "ch0 disposition receiver first=0 last=- settled=true state=accepted",
            ),
            line(
                V,
                "ch0 flow h=0 next-in=1 next-out=0 dc=5 credit=2 drain=false",
            ),
            line(
                E,
                "ch0 disposition receiver first=2 last=- settled=true state=accepted",
            ),
            line(E, "ch0 close err=-"),
        ],
    );
    let aborted = "transfer h=0 id=1 tag=aborted fmt=0x0";
    let units = check_stream(
        "drain_and_abort.server.bin",
        &[
            line(E, "hdr Sasl"),
            line(E, "sasl-mechanisms ANONYMOUS"),
            line(E, "sasl-outcome Ok"),
            line(E, "hdr Amqp"),
            line(
                E,
                "ch0 open id=drain-server host=- max-frame=512 channel-max=32767 idle=-",
            ),
            line(
                E,
                "ch0 begin remote=0 next-out=0 in-win=2147483647 out-win=2147483647",
            ),
            line(
                V,
                format!("ch0 attach drain-receiver h=0 sender src={src} tgt=drain-client"),
            ),
            line(
                E,
                "ch0 transfer h=0 id=0 tag=m1 fmt=0x0 settled=- more=false payload=21",
            ),
            line(
                E,
                "ch0 flow h=0 next-in=0 next-out=1 dc=5 credit=0 drain=true",
            ),
            line(E, format!("ch0 {aborted} settled=- more=true payload=483")),
            line(E, format!("ch0 {aborted} settled=- more=true payload=483")),
            line(E, format!("ch0 {aborted} settled=- more=true payload=234")),
            line(
                E,
                format!("ch0 {aborted} settled=true more=false payload=0 aborted"),
            ),
            line(
                E,
                "ch0 transfer h=0 id=2 tag=m2 fmt=0x0 settled=- more=false payload=24",
            ),
            line(E, "ch0 close err=-"),
        ],
    );
    assert_max_frame_size(&units, 512);
    let Performative::Transfer(t) = perf(&units[12]) else {
        unreachable!()
    };
    assert!(t.aborted && t.settled == Some(true) && !t.more && !t.resume);
    let ds = deliveries("drain_and_abort.server", &units);
    assert_eq!(ds.len(), 3);
    assert_eq!(
        decode_delivery(&ds[0].payload).body,
        Body::Value(vstr("only one"))
    );
    // The aborted delivery is raw streamed bytes, not a message.
    assert!(ds[1].aborted);
    assert_eq!((ds[1].frames, ds[1].settled), (4, Some(true)));
    assert_eq!(ds[1].payload[..], counting(1200)[..]);
    assert_eq!(
        decode_delivery(&ds[2].payload).body,
        Body::Value(vstr("after abort"))
    );
}

// --------------------------------------------------------- negative tests

/// Every recorded frame of every Proton stream.
fn all_stream_frames() -> Vec<(String, Unit)> {
    let mut out = Vec::new();
    for name in fixture_names("proton/streams", ".bin") {
        let bytes = fixture(&format!("proton/streams/{name}.bin"));
        for u in split_stream(&name, &bytes) {
            if matches!(u, Unit::Frame { .. }) {
                out.push((name.clone(), u));
            }
        }
    }
    out
}

/// Rewrites the size field of a frame cut to `len` bytes.
fn cut_frame(raw: &Bytes, len: usize) -> Bytes {
    let mut v = raw[..len].to_vec();
    v[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Bytes::from(v)
}

/// A performative or SASL body cut anywhere fails to decode, on its own and
/// inside a frame whose size says it ends there. (A transfer's payload is
/// opaque, so only its performative is cut.)
#[test]
fn truncated_frame_bodies_are_errors() {
    let mut cuts = 0;
    for (name, u) in all_stream_frames() {
        let Unit::Frame {
            offset,
            raw,
            frame,
            body,
            channel,
        } = &u
        else {
            unreachable!()
        };
        for n in 0..body.len() {
            let short = body.slice(..n);
            let what = format!("{name}@{offset} cut to {n} of {}", body.len());
            match frame {
                Frame::Sasl(_) => assert!(SaslFrame::decode_all(&short).is_err(), "{what}"),
                _ => assert!(Performative::decode_all(&short).is_err(), "{what}"),
            }
            let f = Frame::decode(&cut_frame(raw, 8 + n));
            match (frame, n) {
                // An AMQP frame with no body at all is a heartbeat.
                (Frame::Amqp { .. }, 0) => {
                    assert_eq!(f, Ok(Frame::Empty { channel: *channel }), "{what}")
                }
                _ => assert!(f.is_err(), "{what}: frame decoded to {f:?}"),
            }
            cuts += 1;
        }
        // Frames cut inside their header, or whose size is not what they hold.
        for n in 0..8 {
            assert!(
                Frame::decode(&raw.slice(..n)).is_err(),
                "{name}@{offset}: header cut to {n}"
            );
        }
        assert!(
            Frame::decode(&raw.slice(..raw.len() - 1)).is_err(),
            "{name}@{offset}: one byte short"
        );
    }
    assert!(cuts > 3500, "{cuts}");
}

/// Every value fixture cut short fails to decode.
#[test]
fn truncated_values_are_errors() {
    for (name, ..) in value_table() {
        let bytes = fixture(&format!("proton/values/{name}.bin"));
        for n in 0..bytes.len() {
            assert!(
                Value::decode_all(&bytes.slice(..n)).is_err(),
                "{name} cut to {n}"
            );
        }
        let mut long = bytes.to_vec();
        long.push(0x40);
        assert!(
            Value::decode_all(&Bytes::from(long)).is_err(),
            "{name} with a trailing byte"
        );
    }
}

/// A message cut between two sections is a shorter valid message; cut
/// anywhere else it fails to decode.
#[test]
fn truncated_messages_fail_except_at_section_boundaries() {
    for (name, ..) in message_table() {
        let bytes = fixture(&format!("proton/messages/{name}.bin"));
        let m = Message::decode_all(&bytes).expect("decodes");
        // Section boundaries, from our own encoding of each section.
        let mut bounds = vec![0];
        let mut at = 0;
        let mut d = eventhubs_proto::codec::Decoder::new(&bytes);
        while !d.is_empty() {
            Value::decode(&mut d).expect("a section is a described value");
            at = d.offset();
            bounds.push(at);
        }
        assert_eq!(at, bytes.len());
        let mut ok = 0;
        for n in 0..bytes.len() {
            let r = Message::decode_all(&bytes.slice(..n));
            if bounds.contains(&n) {
                let part = r.unwrap_or_else(|e| panic!("{name} cut at section boundary {n}: {e}"));
                assert_ne!(part, m);
                ok += 1;
            } else {
                assert!(r.is_err(), "{name} cut to {n} decoded");
            }
        }
        assert_eq!(ok, bounds.len() - 1);
    }
}

/// Single-byte corruptions of real frames decode or fail, never panic.
#[test]
fn corrupted_frames_never_panic() {
    for (_, u) in all_stream_frames() {
        let Unit::Frame { raw, .. } = &u else {
            unreachable!()
        };
        // Only the first 64 bytes: the rest is transfer payload or repeats.
        for i in 0..raw.len().min(64) {
            for b in [
                0x00,
                0x40,
                0x45,
                0xa1,
                0xb0,
                0xc0,
                0xd0,
                0xe0,
                0xf0,
                0xff,
                raw[i] ^ 0x01,
            ] {
                let mut v = raw.to_vec();
                v[i] = b;
                let _ = Frame::decode(&Bytes::from(v));
            }
        }
    }
}
