//! Byte-exact tests for every constructor of AMQP 1.0 part 1, for the
//! composite types, and for hostile input.

use bytes::Bytes;
use eventhubs_proto::codec::format_code as fc;
use eventhubs_proto::codec::frame::{self, Frame, FrameHeader, ProtocolHeader, ProtocolId};
use eventhubs_proto::codec::message::{Batch, Body, Message, BATCH_MESSAGE_FORMAT};
use eventhubs_proto::codec::messaging::{
    Accepted, DeliveryState, Header, MessageId, Properties, Rejected, Source,
};
use eventhubs_proto::codec::performatives::{
    AmqpError, Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Role,
    SenderSettleMode, Transfer,
};
use eventhubs_proto::codec::sasl::{SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome};
use eventhubs_proto::codec::{
    Array, Decimal128, Decimal32, Decimal64, Decode, DecodeErrorKind, Described, Descriptor,
    Encode, Form, Map, Symbol, Timestamp, Uuid, Value,
};

fn sym(s: &'static str) -> Symbol {
    Symbol::from_static(s)
}

/// Encodes `v`, checks the bytes and the reported length, then decodes the
/// bytes back to `v`.
#[track_caller]
fn exact(v: Value, bytes: &[u8]) {
    let enc = v.to_bytes();
    assert_eq!(&enc[..], bytes, "encoding of {v:?}");
    assert_eq!(v.encoded_len(), bytes.len(), "encoded_len of {v:?}");
    let back = Value::decode_all(&Bytes::copy_from_slice(bytes)).expect("decodes");
    assert_eq!(back, v, "decoding of {bytes:02x?}");
}

/// Decodes a legal encoding that our encoder does not choose.
#[track_caller]
fn decodes(bytes: &[u8], v: Value) {
    assert_eq!(
        Value::decode_all(&Bytes::copy_from_slice(bytes)).expect("decodes"),
        v,
        "{bytes:02x?}"
    );
}

#[track_caller]
fn fails(bytes: &[u8]) -> DecodeErrorKind {
    match Value::decode_all(&Bytes::copy_from_slice(bytes)) {
        Ok(v) => panic!("{bytes:02x?} decoded to {v:?}"),
        Err(e) => e.kind,
    }
}

#[test]
fn fixed_width_constructors() {
    exact(Value::Null, &[0x40]);
    exact(Value::Bool(true), &[0x41]);
    exact(Value::Bool(false), &[0x42]);
    decodes(&[0x56, 0x01], Value::Bool(true));
    decodes(&[0x56, 0x00], Value::Bool(false));
    exact(Value::Ubyte(0xab), &[0x50, 0xab]);
    exact(Value::Ushort(0xabcd), &[0x60, 0xab, 0xcd]);
    exact(Value::Uint(0), &[0x43]);
    exact(Value::Uint(7), &[0x52, 0x07]);
    exact(Value::Uint(255), &[0x52, 0xff]);
    exact(Value::Uint(256), &[0x70, 0, 0, 1, 0]);
    decodes(&[0x70, 0, 0, 0, 0], Value::Uint(0));
    decodes(&[0x70, 0, 0, 0, 7], Value::Uint(7));
    exact(Value::Ulong(0), &[0x44]);
    exact(Value::Ulong(200), &[0x53, 200]);
    exact(
        Value::Ulong(u64::MAX),
        &[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    decodes(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0], Value::Ulong(0));
    exact(Value::Byte(-2), &[0x51, 0xfe]);
    exact(Value::Short(-2), &[0x61, 0xff, 0xfe]);
    exact(Value::Int(-128), &[0x54, 0x80]);
    exact(Value::Int(127), &[0x54, 0x7f]);
    exact(Value::Int(128), &[0x71, 0, 0, 0, 0x80]);
    exact(Value::Int(-129), &[0x71, 0xff, 0xff, 0xff, 0x7f]);
    decodes(&[0x71, 0xff, 0xff, 0xff, 0xff], Value::Int(-1));
    exact(Value::Long(-1), &[0x55, 0xff]);
    exact(Value::Long(1 << 40), &[0x81, 0, 0, 1, 0, 0, 0, 0, 0]);
    decodes(&[0x81, 0, 0, 0, 0, 0, 0, 0, 5], Value::Long(5));
    exact(Value::Float(1.5), &[0x72, 0x3f, 0xc0, 0, 0]);
    exact(Value::Double(-2.0), &[0x82, 0xc0, 0, 0, 0, 0, 0, 0, 0]);
    exact(
        Value::Decimal32(Decimal32([1, 2, 3, 4])),
        &[0x74, 1, 2, 3, 4],
    );
    exact(
        Value::Decimal64(Decimal64([1, 2, 3, 4, 5, 6, 7, 8])),
        &[0x84, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    let d128 = [9u8; 16];
    let mut b = vec![0x94];
    b.extend_from_slice(&d128);
    exact(Value::Decimal128(Decimal128(d128)), &b);
    exact(Value::Char('é'), &[0x73, 0, 0, 0, 0xe9]);
    exact(Value::Char('😀'), &[0x73, 0, 1, 0xf6, 0]);
    exact(
        Value::Timestamp(Timestamp(1_700_000_000_123)),
        &[0x83, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b],
    );
    exact(
        Value::Timestamp(Timestamp(-1)),
        &[0x83, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    let u: [u8; 16] = *b"0123456789abcdef";
    let mut b = vec![0x98];
    b.extend_from_slice(&u);
    exact(Value::Uuid(Uuid(u)), &b);
}

#[test]
fn variable_width_constructors() {
    exact(Value::Binary(Bytes::new()), &[0xa0, 0]);
    exact(
        Value::Binary(Bytes::from_static(b"abc")),
        &[0xa0, 3, b'a', b'b', b'c'],
    );
    let big = vec![7u8; 256];
    let mut b = vec![0xb0, 0, 0, 1, 0];
    b.extend_from_slice(&big);
    exact(Value::Binary(Bytes::from(big.clone())), &b);
    decodes(
        &[0xb0, 0, 0, 0, 1, 9],
        Value::Binary(Bytes::from_static(&[9])),
    );

    exact(Value::String("hé".into()), &[0xa1, 3, b'h', 0xc3, 0xa9]);
    let long = "x".repeat(300);
    let mut b = vec![0xb1, 0, 0, 0x01, 0x2c];
    b.extend_from_slice(long.as_bytes());
    exact(Value::String(long.as_str().into()), &b);
    decodes(&[0xb1, 0, 0, 0, 2, b'o', b'k'], Value::String("ok".into()));

    exact(
        Value::Symbol(sym("amqp:accepted:list")),
        &[&[0xa3, 18][..], b"amqp:accepted:list"].concat(),
    );
    decodes(&[0xb3, 0, 0, 0, 1, b'a'], Value::Symbol(sym("a")));
    let mut b = vec![0xb3, 0, 0, 1, 0];
    b.extend_from_slice(&[b's'; 256]);
    exact(Value::Symbol(Symbol::new("s".repeat(256)).unwrap()), &b);
}

#[test]
fn compound_constructors() {
    exact(Value::List(vec![]), &[0x45]);
    decodes(&[0xc0, 1, 0], Value::List(vec![]));
    decodes(&[0xd0, 0, 0, 0, 4, 0, 0, 0, 0], Value::List(vec![]));
    exact(
        Value::List(vec![Value::Uint(1), Value::Null]),
        &[0xc0, 4, 2, 0x52, 1, 0x40],
    );
    decodes(
        &[0xd0, 0, 0, 0, 7, 0, 0, 0, 2, 0x52, 1, 0x40],
        Value::List(vec![Value::Uint(1), Value::Null]),
    );
    // 300 ubytes do not fit list8.
    let items: Vec<Value> = (0..300).map(|i| Value::Ubyte(i as u8)).collect();
    let mut b = vec![0xd0, 0, 0, 0x02, 0x5c, 0, 0, 0x01, 0x2c];
    for i in 0..300 {
        b.extend_from_slice(&[0x50, i as u8]);
    }
    exact(Value::List(items), &b);

    let m = Map(vec![(Value::Symbol(sym("k")), Value::Long(42))]);
    exact(
        Value::Map(m.clone()),
        &[0xc1, 6, 2, 0xa3, 1, b'k', 0x55, 42],
    );
    decodes(
        &[0xd1, 0, 0, 0, 9, 0, 0, 0, 2, 0xa3, 1, b'k', 0x55, 42],
        Value::Map(m),
    );
    exact(Value::Map(Map::new()), &[0xc1, 1, 0]);
}

#[test]
fn array_constructors() {
    let ints = Array::new(fc::INT, vec![Value::Int(1), Value::Int(-1)]).unwrap();
    exact(
        Value::Array(ints),
        &[0xe0, 10, 2, 0x71, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
    );
    let syms = Array::symbols([sym("a"), sym("bc")]);
    exact(
        Value::Array(syms.clone()),
        &[0xe0, 7, 2, 0xa3, 1, b'a', 2, b'b', b'c'],
    );
    decodes(
        &[
            0xf0, 0, 0, 0, 16, 0, 0, 0, 2, 0xb3, 0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c',
        ],
        Value::Array(Array::new(fc::SYM32, syms.items().to_vec()).unwrap()),
    );
    // An array of described types: the descriptor sits once in the constructor.
    let described = Array::described(
        Descriptor::Code(0x24),
        fc::LIST0,
        vec![Value::List(vec![]), Value::List(vec![])],
    )
    .unwrap();
    // Zero-width element constructors (list0 here) decode, but the encoder
    // writes one byte per element at least (list8).
    decodes(
        &[0xe0, 5, 2, 0x00, 0x53, 0x24, 0x45],
        Value::Array(described.clone()),
    );
    exact(
        Value::Array(described.clone()),
        &[0xe0, 9, 2, 0x00, 0x53, 0x24, 0xc0, 1, 0, 1, 0],
    );
    assert_eq!(described.descriptor(), Some(&Descriptor::Code(0x24)));
    // Booleans in arrays take the one-byte form.
    decodes(
        &[0xe0, 4, 2, 0x56, 1, 0],
        Value::Array(Array::new(fc::BOOLEAN, vec![Value::Bool(true), Value::Bool(false)]).unwrap()),
    );
    // An element that does not match the constructor's type is refused.
    assert!(Array::new(fc::INT, vec![Value::Uint(1)]).is_none());
    // Widening when a value outgrows the stored code.
    let widened = Array::new(fc::SMALLUINT, vec![Value::Uint(1), Value::Uint(300)]).unwrap();
    exact(
        Value::Array(widened),
        &[0xe0, 10, 2, 0x70, 0, 0, 0, 1, 0, 0, 1, 0x2c],
    );
}

#[test]
fn described_constructors() {
    let v = Value::Described(Box::new(Described::new(
        Descriptor::Code(0x0000_468C_0000_0004),
        Value::String("amqp.annotation.x-opt-offset > '100'".into()),
    )));
    let enc = v.to_bytes();
    assert_eq!(&enc[..10], &[0x00, 0x80, 0, 0, 0x46, 0x8c, 0, 0, 0, 4]);
    exact(v, &enc);
    let v = Value::Described(Box::new(Described::new(
        Descriptor::Symbol(sym("apache.org:selector-filter:string")),
        Value::String("x".into()),
    )));
    let enc = v.to_bytes();
    exact(v, &enc);
}

#[test]
fn hostile_input_is_a_typed_error() {
    // A list claiming 2^32-1 elements in ten bytes.
    assert!(matches!(
        fails(&[0xd0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]),
        DecodeErrorKind::CountExceedsSize { .. }
    ));
    // An array of nulls (zero-width elements) claiming 2^32-1 elements.
    assert!(matches!(
        fails(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]),
        DecodeErrorKind::CountExceedsSize { .. }
    ));
    // Sizes beyond the input.
    assert!(matches!(
        fails(&[0xb0, 0xff, 0xff, 0xff, 0xff]),
        DecodeErrorKind::UnexpectedEnd { .. }
    ));
    assert!(matches!(
        fails(&[0xd0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
        DecodeErrorKind::UnexpectedEnd { .. }
    ));
    // A size smaller than the count field.
    assert!(matches!(
        fails(&[0xd0, 0, 0, 0, 1, 0, 0, 0, 0]),
        DecodeErrorKind::InvalidSize(1)
    ));
    // Elements that do not fill the declared size.
    assert!(matches!(
        fails(&[0xc0, 3, 1, 0x40, 0x40]),
        DecodeErrorKind::SizeMismatch { .. }
    ));
    // Invalid UTF-8, non-ASCII symbol, bad char, bad boolean, unknown code.
    assert_eq!(fails(&[0xa1, 2, 0xc3, 0x28]), DecodeErrorKind::InvalidUtf8);
    assert_eq!(fails(&[0xa3, 1, 0xe9]), DecodeErrorKind::InvalidSymbol);
    assert_eq!(
        fails(&[0x73, 0, 0, 0xd8, 0]),
        DecodeErrorKind::InvalidChar(0xd800)
    );
    assert!(matches!(
        fails(&[0x56, 2]),
        DecodeErrorKind::InvalidValue { .. }
    ));
    assert_eq!(fails(&[0x57]), DecodeErrorKind::InvalidFormatCode(0x57));
    assert!(matches!(
        fails(&[0xc1, 2, 1, 0x40]),
        DecodeErrorKind::OddMapCount(1)
    ));
    // Nesting: 100 nested lists or 10,000 described values hit the depth bound.
    let mut deep = vec![0x45];
    for _ in 0..100 {
        let mut outer = vec![0xd0];
        outer.extend_from_slice(&(deep.len() as u32 + 4).to_be_bytes());
        outer.extend_from_slice(&1u32.to_be_bytes());
        outer.extend_from_slice(&deep);
        deep = outer;
    }
    assert_eq!(fails(&deep), DecodeErrorKind::TooDeep);
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        deep.extend_from_slice(&[0x00, 0x53, 0x01]);
    }
    deep.push(0x40);
    assert_eq!(fails(&deep), DecodeErrorKind::TooDeep);
    // Errors say where: the bad UTF-8 starts at byte 2.
    let e = Value::decode_all(&Bytes::from_static(&[0xa1, 2, 0xff, 0xff])).unwrap_err();
    assert_eq!(e.offset, 2);
    assert!(e.to_string().contains("at byte 2"), "{e}");
    // Every truncation of a valid encoding is an error, never a panic.
    let v = Value::List(vec![
        Value::Map(Map(vec![(
            Value::Symbol(sym("k")),
            Value::String("v".into()),
        )])),
        Value::Array(Array::symbols([sym("a")])),
        Value::Uuid(Uuid([1; 16])),
    ]);
    let enc = v.to_bytes();
    for n in 0..enc.len() {
        assert!(Value::decode_all(&enc.slice(..n)).is_err());
    }
}

#[test]
fn decoding_is_zero_copy() {
    let v = Value::List(vec![
        Value::Binary(Bytes::from(vec![1u8; 64])),
        Value::String("hello".into()),
    ]);
    let enc = v.to_bytes();
    let range = enc.as_ptr() as usize..enc.as_ptr() as usize + enc.len();
    match Value::decode_all(&enc).unwrap() {
        Value::List(items) => match (&items[0], &items[1]) {
            (Value::Binary(b), Value::String(s)) => {
                assert!(range.contains(&(b.as_ptr() as usize)));
                assert!(range.contains(&(s.as_ptr() as usize)));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn roundtrip_performative(p: Performative) -> Bytes {
    for form in [Form::Compact, Form::Full] {
        let mut buf = Vec::new();
        p.encode_as(form, &mut buf);
        assert_eq!(buf.len(), p.encoded_len_as(form));
        let back = Performative::decode_all(&Bytes::from(buf)).unwrap();
        assert_eq!(back, p);
    }
    p.to_bytes()
}

#[test]
fn performatives_compact_and_full() {
    // End with no error is the empty list.
    assert_eq!(
        &roundtrip_performative(End::default().into())[..],
        &[0x00, 0x53, 0x17, 0x45]
    );
    // Close with an error.
    let close = Close {
        error: Some(AmqpError::new("amqp:internal-error", "boom")),
    };
    let b = roundtrip_performative(close.into());
    assert_eq!(&b[..6], &[0x00, 0x53, 0x18, 0xc0, 0x22, 0x01]);
    // Detach without closed: compact form drops the default and everything after.
    let b = roundtrip_performative(
        Detach {
            handle: 1,
            ..Default::default()
        }
        .into(),
    );
    assert_eq!(&b[..], &[0x00, 0x53, 0x16, 0xc0, 0x03, 0x01, 0x52, 0x01]);
    // The full form writes all three fields, the default explicitly.
    let mut full = Vec::new();
    Performative::from(Detach {
        handle: 1,
        ..Default::default()
    })
    .encode_as(Form::Full, &mut full);
    assert_eq!(
        &full[..],
        &[0x00, 0x53, 0x16, 0xc0, 0x05, 0x03, 0x52, 0x01, 0x42, 0x40]
    );

    let open = Open {
        container_id: "c1".into(),
        hostname: Some("localhost".into()),
        max_frame_size: 65536,
        channel_max: 255,
        idle_time_out: Some(60_000),
        desired_capabilities: vec![sym("com.microsoft.georeplication")],
        properties: Some(Map(vec![(sym("product"), Value::String("x".into()))])),
        ..Default::default()
    };
    roundtrip_performative(open.clone().into());
    let mut full = Vec::new();
    open.encode_as(Form::Full, &mut full);
    // Full form: ten fields.
    let Value::Described(d) = Value::decode_all(&Bytes::from(full)).unwrap() else {
        panic!()
    };
    let Value::List(fields) = &d.value else {
        panic!()
    };
    assert_eq!(fields.len(), 10);
    assert_eq!(fields[2], Value::Uint(65536));

    roundtrip_performative(
        Begin {
            remote_channel: Some(3),
            next_outgoing_id: 1,
            incoming_window: 5000,
            outgoing_window: u32::MAX,
            ..Default::default()
        }
        .into(),
    );
    let mut filter = Map::new();
    filter.insert(
        sym("com.microsoft:session-filter"),
        Value::Described(Box::new(Described::new(
            Descriptor::Code(0x0000_468C_0000_0004),
            Value::String("x".into()),
        ))),
    );
    roundtrip_performative(
        Attach {
            name: "link".into(),
            handle: 7,
            role: Role::Receiver,
            snd_settle_mode: SenderSettleMode::Unsettled,
            source: Some(Box::new(Source {
                filter: Some(filter),
                ..Source::with_address("eh1/ConsumerGroups/$Default/Partitions/0")
            })),
            max_message_size: Some(1 << 20),
            properties: Some(Map(vec![(sym("com.microsoft:epoch"), Value::Long(3))])),
            ..Default::default()
        }
        .into(),
    );
    roundtrip_performative(
        Flow {
            next_incoming_id: Some(1),
            incoming_window: 10,
            next_outgoing_id: 2,
            outgoing_window: 10,
            handle: Some(0),
            delivery_count: Some(5),
            link_credit: Some(300),
            drain: true,
            echo: true,
            ..Default::default()
        }
        .into(),
    );
    roundtrip_performative(
        Transfer {
            handle: 0,
            delivery_id: Some(9),
            delivery_tag: Some(Bytes::from_static(&[0, 0, 0, 9])),
            message_format: Some(BATCH_MESSAGE_FORMAT),
            settled: Some(false),
            more: true,
            ..Default::default()
        }
        .into(),
    );
    roundtrip_performative(
        Disposition {
            role: Role::Receiver,
            first: 1,
            last: Some(4),
            settled: true,
            state: Some(DeliveryState::Rejected(Rejected {
                error: Some(AmqpError::new("amqp:not-found", "no")),
            })),
            ..Default::default()
        }
        .into(),
    );
    // Accepted is an empty list.
    assert_eq!(
        &DeliveryState::Accepted(Accepted {}).to_bytes()[..],
        &[0x00, 0x53, 0x24, 0x45]
    );
}

#[test]
fn composites_decode_by_symbol_and_accept_omitted_fields() {
    // detach by symbolic descriptor, with only the handle.
    let mut b = vec![0x00, 0xa3, 16];
    b.extend_from_slice(b"amqp:detach:list");
    b.extend_from_slice(&[0xc0, 0x03, 0x01, 0x52, 0x05]);
    let p = Performative::decode_all(&Bytes::from(b)).unwrap();
    assert_eq!(
        p,
        Performative::Detach(Detach {
            handle: 5,
            closed: false,
            error: None
        })
    );
    // A mandatory field missing is a typed error naming it.
    let e = Performative::decode_all(&Bytes::from_static(&[0x00, 0x53, 0x16, 0x45])).unwrap_err();
    assert_eq!(
        e.kind,
        DecodeErrorKind::MissingField {
            composite: "Detach",
            field: "handle"
        }
    );
    // Fields beyond those known are skipped.
    let p = Performative::decode_all(&Bytes::from_static(&[
        0x00, 0x53, 0x17, 0xc0, 0x03, 0x02, 0x40, 0x41,
    ]))
    .unwrap();
    assert_eq!(p, Performative::End(End { error: None }));
    // A single symbol where `symbol multiple` is expected.
    let mut b = vec![0x00, 0x53, 0x40, 0xc0, 0x0b, 0x01, 0xa3, 0x08];
    b.extend_from_slice(b"MSSBCBS\0");
    b.pop();
    b[4] = 0x0a;
    b[7] = 0x07;
    let s = SaslFrame::decode_all(&Bytes::from(b)).unwrap();
    assert_eq!(
        s,
        SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: vec![sym("MSSBCBS")]
        })
    );
}

#[test]
fn messages_and_batches() {
    let mut ann = Map::new();
    ann.insert("x-opt-partition-key".into(), Value::String("pk".into()));
    let mut app = Map::new();
    app.insert("n".into(), Value::Long(1));
    let event = Message {
        header: Some(Header {
            durable: true,
            ..Default::default()
        }),
        message_annotations: Some(ann),
        properties: Some(Properties {
            message_id: Some(MessageId::from("id-1")),
            ..Default::default()
        }),
        application_properties: Some(app),
        body: Body::Data(vec![Bytes::from_static(b"hello")]),
        ..Default::default()
    };
    let enc = event.to_bytes();
    assert_eq!(enc.len(), event.encoded_len());
    // The header section: durable=true, the rest defaults and omitted.
    assert_eq!(&enc[..6], &[0x00, 0x53, 0x70, 0xc0, 0x02, 0x01]);
    let back = Message::decode_all(&enc).unwrap();
    assert_eq!(back, event);

    let events: Vec<Message> = (0..3)
        .map(|i| Message::with_data(vec![i as u8; 10]))
        .collect();
    let envelope = Message {
        message_annotations: event.message_annotations.clone(),
        ..Default::default()
    };
    let batch = Batch {
        envelope: &envelope,
        events: &events,
    };
    let enc = batch.to_bytes();
    assert_eq!(enc.len(), batch.encoded_len());
    let outer = Message::decode_all(&enc).unwrap();
    assert_eq!(outer.message_annotations, envelope.message_annotations);
    assert_eq!(outer.unbatch().unwrap(), events);

    // Sections out of order are refused.
    let mut bad = Message::with_data(&b"x"[..]).to_bytes().to_vec();
    bad.extend_from_slice(&Header::default().to_bytes());
    assert!(Message::decode_all(&Bytes::from(bad)).is_err());
}

#[test]
fn frames_and_protocol_headers() {
    assert_eq!(ProtocolHeader::AMQP.to_bytes(), *b"AMQP\x00\x01\x00\x00");
    assert_eq!(ProtocolHeader::TLS.to_bytes(), *b"AMQP\x02\x01\x00\x00");
    assert_eq!(ProtocolHeader::SASL.to_bytes(), *b"AMQP\x03\x01\x00\x00");
    assert_eq!(
        ProtocolHeader::parse(b"AMQP\x03\x01\x00\x00")
            .unwrap()
            .unwrap()
            .id,
        ProtocolId::Sasl
    );
    assert_eq!(ProtocolHeader::parse(b"AMQ").unwrap(), None);
    assert!(ProtocolHeader::parse(b"HTTP/1.1").is_err());
    assert!(ProtocolHeader::parse(b"AMQP\x01\x01\x00\x00").is_err());

    let mut buf = Vec::new();
    let t = Performative::Transfer(Transfer {
        handle: 1,
        delivery_id: Some(0),
        ..Default::default()
    });
    frame::encode_amqp_frame(&mut buf, 3, &t, b"payload", Form::Compact);
    assert_eq!(buf.len(), frame::amqp_frame_len(&t, 7, Form::Compact));
    frame::encode_sasl_frame(
        &mut buf,
        &SaslFrame::Init(SaslInit {
            mechanism: sym("ANONYMOUS"),
            ..Default::default()
        }),
        Form::Compact,
    );
    buf.extend_from_slice(&frame::EMPTY_FRAME);
    let mut stream = bytes::BytesMut::from(&buf[..]);
    let f1 = frame::split_frame(&mut stream, 1024).unwrap().unwrap();
    match Frame::decode(&f1).unwrap() {
        Frame::Amqp {
            channel: 3,
            performative,
            payload,
        } => {
            assert_eq!(performative, t);
            assert_eq!(&payload[..], b"payload");
        }
        other => panic!("{other:?}"),
    }
    let f2 = frame::split_frame(&mut stream, 1024).unwrap().unwrap();
    assert!(matches!(
        Frame::decode(&f2).unwrap(),
        Frame::Sasl(SaslFrame::Init(_))
    ));
    let f3 = frame::split_frame(&mut stream, 1024).unwrap().unwrap();
    assert_eq!(Frame::decode(&f3).unwrap(), Frame::Empty { channel: 0 });
    assert!(stream.is_empty());

    // An extended header (doff = 3) is skipped.
    let mut ext = vec![0, 0, 0, 16, 3, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    ext.extend_from_slice(&[0x00, 0x53, 0x17, 0x45]);
    assert_eq!(
        Frame::decode(&Bytes::from(ext)).unwrap(),
        Frame::Amqp {
            channel: 1,
            performative: End::default().into(),
            payload: Bytes::new()
        }
    );
    // A frame above max-frame-size is refused from its header alone.
    let mut huge = bytes::BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 0][..]);
    assert!(matches!(
        frame::split_frame(&mut huge, 65536).unwrap_err().kind,
        DecodeErrorKind::InvalidFrame("size above max-frame-size")
    ));
    assert!(FrameHeader::parse(&[0, 0, 0, 8, 1, 0, 0, 0], 512).is_err());
    assert!(FrameHeader::parse(&[0, 0, 0, 8, 2, 9, 0, 0], 512).is_err());
    assert!(FrameHeader::parse(&[0, 0, 0, 4, 2, 0, 0, 0], 512).is_err());
    assert_eq!(FrameHeader::parse(&[0, 0, 0], 512).unwrap(), None);

    let outcome = SaslFrame::Outcome(SaslOutcome {
        code: SaslCode::Auth,
        additional_data: None,
    });
    let enc = outcome.to_bytes();
    assert_eq!(&enc[..], &[0x00, 0x53, 0x44, 0xc0, 0x03, 0x01, 0x50, 0x01]);
    assert_eq!(SaslFrame::decode_all(&enc).unwrap(), outcome);
}

/// Whether `b`'s bytes lie inside `src`.
fn shares(src: &Bytes, b: &Bytes) -> bool {
    let (s, p) = (src.as_ptr() as usize, b.as_ptr() as usize);
    p >= s && p < s + src.len()
}

#[test]
fn well_known_annotation_keys_do_not_share_the_buffer() {
    // The keys every delivery carries decode to static symbols (no
    // reference count on the frame); others, and near misses, share it.
    for (key, interned) in [
        ("x-opt-sequence-number", true),
        ("x-opt-offset", true),
        ("x-opt-enqueued-time", true),
        ("x-opt-partition-key", true),
        ("x-opt-publisher", true),
        ("last_enqueued_sequence_number", true),
        ("runtime_info_retrieval_time_utc", true),
        ("x-opt-offset2", false),
        ("x-opt-offsef", false),
        ("x-opt-custom-annotation", false),
    ] {
        let enc = Value::Symbol(Symbol::new(key).unwrap()).to_bytes();
        let Value::Symbol(s) = Value::decode_all(&enc).unwrap() else {
            panic!("{key}: not a symbol");
        };
        assert_eq!(s.as_str(), key);
        assert_eq!(shares(&enc, s.as_bytes()), !interned, "{key}");
    }
}

#[test]
fn unbatch_reports_a_bad_event_after_good_ones() {
    let mut sections: Vec<Bytes> = (0..3)
        .map(|i| Message::with_data(vec![i as u8; 10]).to_bytes())
        .collect();
    // The third event's sections are out of order.
    let mut bad = Message::with_data(&b"x"[..]).to_bytes().to_vec();
    bad.extend_from_slice(&Header::default().to_bytes());
    sections[2] = Bytes::from(bad);
    let outer = Message {
        body: Body::Data(sections.clone()),
        ..Default::default()
    };
    let e = outer.unbatch().unwrap_err();
    assert!(
        matches!(e.kind, DecodeErrorKind::UnexpectedDescriptor { .. }),
        "{e:?}"
    );
    // Trailing bytes after a whole event are refused too.
    let mut trailing = sections[0].to_vec();
    trailing.push(0x40);
    sections[2] = Bytes::from(trailing);
    let outer = Message {
        body: Body::Data(sections),
        ..Default::default()
    };
    assert!(outer.unbatch().is_err());
    // And a good batch's events come back whole.
    let events: Vec<Message> = (0..3).map(|i| Message::with_data(vec![i; 4])).collect();
    let outer = Message {
        body: Body::Data(events.iter().map(|m| m.to_bytes()).collect()),
        ..Default::default()
    };
    assert_eq!(outer.unbatch().unwrap(), events);
}

#[test]
fn a_message_decoded_from_the_middle_of_a_buffer_shares_exactly_its_own_bytes() {
    // The decoder finds a shared slice's place by its distance from the
    // start of the buffer it was given; that buffer is itself a slice here,
    // so a distance taken from the wrong start would point elsewhere.
    let m = Message {
        properties: Some(Properties {
            message_id: Some(MessageId::from("id-1")),
            to: Some("hub/partitions/0".into()),
            content_type: Some(Symbol::new("text/csv").unwrap()),
            ..Default::default()
        }),
        application_properties: Some(Map(vec![("k".into(), Value::String("v".into()))])),
        ..Message::with_data(&b"0123456789abcdef"[..])
    };
    let enc = m.to_bytes();
    let mut framed = vec![0xEE; 7];
    framed.extend_from_slice(&enc);
    framed.extend_from_slice(&[0xEE; 5]);
    let outer = Bytes::from(framed);
    let inner = outer.slice(7..7 + enc.len());
    let back = Message::decode_all(&inner).unwrap();
    assert_eq!(back, m);
    let at = |b: &[u8]| b.as_ptr() as usize - outer.as_ptr() as usize;
    let body = match &back.body {
        Body::Data(d) => d[0].clone(),
        b => panic!("{b:?}"),
    };
    assert_eq!(at(&body), 7 + enc.len() - 16);
    let p = back.properties.as_ref().unwrap();
    let to = p.to.as_ref().unwrap();
    let pos = enc
        .windows(16)
        .position(|w| w == b"hub/partitions/0")
        .unwrap();
    assert_eq!(at(to.as_bytes()), 7 + pos);
    assert!(shares(&inner, content_type_bytes(p)));
}

fn content_type_bytes(p: &Properties) -> &Bytes {
    p.content_type.as_ref().unwrap().as_bytes()
}
