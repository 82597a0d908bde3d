//! Property tests: arbitrary values, performatives and messages survive an
//! encode/decode round trip in both forms, and `encoded_len` is exact.

use bytes::Bytes;
use bytestring::ByteString;
use eventhubs_proto::codec::format_code as fc;
use eventhubs_proto::codec::message::{Batch, Body, Message};
use eventhubs_proto::codec::messaging::{
    Accepted, AnnotationKey, DeliveryState, Header, MessageId, Modified, Properties, Received,
    Rejected, Released, Source, Target,
};
use eventhubs_proto::codec::performatives::{
    AmqpError, Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative,
    ReceiverSettleMode, Role, SenderSettleMode, Transfer,
};
use eventhubs_proto::codec::{
    Array, Decimal128, Decimal32, Decimal64, Decode, Described, Descriptor, Encode, Form, Map,
    Symbol, Timestamp, Uuid, Value,
};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

fn symbol() -> impl Strategy<Value = Symbol> {
    prop_oneof![
        "[a-z:\\-\\.]{0,12}".prop_map(|s| Symbol::new(s).unwrap()),
        "[ -~]{250,270}".prop_map(|s| Symbol::new(s).unwrap()),
    ]
}

fn string() -> impl Strategy<Value = ByteString> {
    prop_oneof![".{0,12}", ".{250,270}"].prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop_oneof![vec(any::<u8>(), 0..16), vec(any::<u8>(), 250..300)].prop_map(Bytes::from)
}

fn finite_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN is not equal to itself", |f| !f.is_nan())
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan())
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    prop_oneof![
        any::<u64>().prop_map(Descriptor::Code),
        symbol().prop_map(Descriptor::Symbol)
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        prop_oneof![Just(0u32), 0u32..=255, any::<u32>()].prop_map(Value::Uint),
        prop_oneof![Just(0u64), 0u64..=255, any::<u64>()].prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        prop_oneof![-128i32..=127, any::<i32>()].prop_map(Value::Int),
        prop_oneof![-128i64..=127, any::<i64>()].prop_map(Value::Long),
        finite_f32().prop_map(Value::Float),
        finite_f64().prop_map(Value::Double),
        any::<[u8; 4]>().prop_map(|b| Value::Decimal32(Decimal32(b))),
        any::<[u8; 8]>().prop_map(|b| Value::Decimal64(Decimal64(b))),
        any::<[u8; 16]>().prop_map(|b| Value::Decimal128(Decimal128(b))),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t))),
        any::<[u8; 16]>().prop_map(|b| Value::Uuid(Uuid(b))),
        binary().prop_map(Value::Binary),
        string().prop_map(Value::String),
        symbol().prop_map(Value::Symbol),
    ]
}

/// Arrays of one element type, with or without a shared descriptor.
fn array() -> impl Strategy<Value = Array> {
    let items = prop_oneof![
        vec(any::<i32>().prop_map(Value::Int), 0..20).prop_map(|v| (fc::INT, v)),
        vec(any::<u32>().prop_map(Value::Uint), 0..20).prop_map(|v| (fc::SMALLUINT, v)),
        vec(any::<u64>().prop_map(Value::Ulong), 0..20).prop_map(|v| (fc::ULONG, v)),
        vec(any::<bool>().prop_map(Value::Bool), 0..20).prop_map(|v| (fc::BOOLEAN, v)),
        vec(symbol().prop_map(Value::Symbol), 0..8).prop_map(|v| (fc::SYM8, v)),
        vec(string().prop_map(Value::String), 0..8).prop_map(|v| (fc::STR8, v)),
        vec(vec(Just(Value::Null), 0..3).prop_map(Value::List), 0..8).prop_map(|v| (fc::LIST0, v)),
    ];
    (items, of(descriptor())).prop_map(|((code, items), d)| match d {
        Some(d) => Array::described(d, code, items).unwrap(),
        None => Array::new(code, items).unwrap(),
    })
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![scalar(), array().prop_map(Value::Array)];
    leaf.prop_recursive(4, 64, 10, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..10).prop_map(Value::List),
            vec((inner.clone(), inner.clone()), 0..6)
                .prop_map(|kv| Value::Map(kv.into_iter().collect())),
            (descriptor(), inner)
                .prop_map(|(d, v)| Value::Described(Box::new(Described::new(d, v)))),
        ]
    })
}

#[track_caller]
fn roundtrip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: &T) {
    for form in [Form::Compact, Form::Full] {
        let mut buf = Vec::new();
        v.encode_as(form, &mut buf);
        assert_eq!(buf.len(), v.encoded_len_as(form), "encoded_len in {form:?}");
        let back = T::decode_all(&Bytes::from(buf)).expect("decodes");
        assert_eq!(&back, v, "round trip in {form:?}");
    }
}

fn fields() -> impl Strategy<Value = Map<Symbol, Value>> {
    vec((symbol(), value()), 0..4).prop_map(|kv| kv.into_iter().collect())
}

fn error() -> impl Strategy<Value = AmqpError> {
    (symbol(), of(string()), of(fields())).prop_map(|(condition, description, info)| AmqpError {
        condition,
        description,
        info,
    })
}

fn delivery_state() -> impl Strategy<Value = DeliveryState> {
    prop_oneof![
        (any::<u32>(), any::<u64>()).prop_map(|(section_number, section_offset)| {
            DeliveryState::Received(Received {
                section_number,
                section_offset,
            })
        }),
        Just(DeliveryState::Accepted(Accepted {})),
        of(error()).prop_map(|error| DeliveryState::Rejected(Rejected { error })),
        Just(DeliveryState::Released(Released {})),
        (of(any::<bool>()), of(any::<bool>()), of(fields())).prop_map(|(a, b, c)| {
            DeliveryState::Modified(Modified {
                delivery_failed: a,
                undeliverable_here: b,
                message_annotations: c,
            })
        }),
    ]
}

fn symbols() -> impl Strategy<Value = Vec<Symbol>> {
    vec(symbol(), 0..3)
}

fn source() -> impl Strategy<Value = Source> {
    (
        of(string()),
        0u32..3,
        symbol(),
        any::<u32>(),
        any::<bool>(),
        of(fields()),
        of(delivery_state()),
        symbols(),
    )
        .prop_map(
            |(
                address,
                durable,
                expiry_policy,
                timeout,
                dynamic,
                filter,
                default_outcome,
                capabilities,
            )| {
                Source {
                    address,
                    durable,
                    expiry_policy,
                    timeout,
                    dynamic,
                    filter,
                    default_outcome,
                    capabilities,
                    ..Default::default()
                }
            },
        )
}

fn target() -> impl Strategy<Value = Target> {
    (of(string()), 0u32..3, any::<bool>(), symbols()).prop_map(
        |(address, durable, dynamic, capabilities)| Target {
            address,
            durable,
            dynamic,
            capabilities,
            ..Default::default()
        },
    )
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Sender), Just(Role::Receiver)]
}

fn performative() -> impl Strategy<Value = Performative> {
    prop_oneof![
        (
            string(),
            of(string()),
            any::<u32>(),
            any::<u16>(),
            of(any::<u32>()),
            symbols(),
            symbols(),
            of(fields())
        )
            .prop_map(|(c, h, mfs, cm, ito, oc, dc, p)| Performative::Open(Open {
                container_id: c,
                hostname: h,
                max_frame_size: mfs,
                channel_max: cm,
                idle_time_out: ito,
                offered_capabilities: oc,
                desired_capabilities: dc,
                properties: p,
                ..Default::default()
            })),
        (
            of(any::<u16>()),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(rc, n, i, o, h)| {
                Performative::Begin(Begin {
                    remote_channel: rc,
                    next_outgoing_id: n,
                    incoming_window: i,
                    outgoing_window: o,
                    handle_max: h,
                    ..Default::default()
                })
            }),
        (
            string(),
            any::<u32>(),
            role(),
            prop_oneof![
                Just(SenderSettleMode::Unsettled),
                Just(SenderSettleMode::Settled),
                Just(SenderSettleMode::Mixed)
            ],
            prop_oneof![
                Just(ReceiverSettleMode::First),
                Just(ReceiverSettleMode::Second)
            ],
            of(source()),
            of(target()),
            of(any::<u32>()),
            of(any::<u64>()),
            of(fields()),
        )
            .prop_map(|(name, handle, role, ssm, rsm, s, t, idc, mms, p)| {
                Performative::Attach(Attach {
                    name,
                    handle,
                    role,
                    snd_settle_mode: ssm,
                    rcv_settle_mode: rsm,
                    source: s.map(Box::new),
                    target: t.map(Box::new),
                    initial_delivery_count: idc,
                    max_message_size: mms,
                    properties: p,
                    ..Default::default()
                })
            }),
        (
            of(any::<u32>()),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            of(any::<u32>()),
            of(any::<u32>()),
            of(any::<u32>()),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(ni, iw, no, ow, h, dc, lc, drain, echo)| Performative::Flow(Flow {
                    next_incoming_id: ni,
                    incoming_window: iw,
                    next_outgoing_id: no,
                    outgoing_window: ow,
                    handle: h,
                    delivery_count: dc,
                    link_credit: lc,
                    drain,
                    echo,
                    ..Default::default()
                })
            ),
        (
            any::<u32>(),
            of(any::<u32>()),
            of(binary()),
            of(any::<u32>()),
            of(any::<bool>()),
            any::<bool>(),
            of(delivery_state()),
            any::<bool>()
        )
            .prop_map(|(h, id, tag, fmt, settled, more, state, aborted)| {
                Performative::Transfer(Transfer {
                    handle: h,
                    delivery_id: id,
                    delivery_tag: tag,
                    message_format: fmt,
                    settled,
                    more,
                    state,
                    aborted,
                    ..Default::default()
                })
            }),
        (
            role(),
            any::<u32>(),
            of(any::<u32>()),
            any::<bool>(),
            of(delivery_state())
        )
            .prop_map(|(role, first, last, settled, state)| {
                Performative::Disposition(Disposition {
                    role,
                    first,
                    last,
                    settled,
                    state,
                    batchable: false,
                })
            }),
        (any::<u32>(), any::<bool>(), of(error())).prop_map(|(handle, closed, error)| {
            Performative::Detach(Detach {
                handle,
                closed,
                error,
            })
        }),
        of(error()).prop_map(|error| Performative::End(End { error })),
        of(error()).prop_map(|error| Performative::Close(Close { error })),
    ]
}

fn message_id() -> impl Strategy<Value = MessageId> {
    prop_oneof![
        any::<u64>().prop_map(MessageId::Ulong),
        any::<[u8; 16]>().prop_map(|b| MessageId::Uuid(Uuid(b))),
        binary().prop_map(MessageId::Binary),
        string().prop_map(MessageId::String),
    ]
}

fn annotations() -> impl Strategy<Value = Map<AnnotationKey, Value>> {
    vec(
        (
            prop_oneof![
                symbol().prop_map(AnnotationKey::Symbol),
                any::<u64>().prop_map(AnnotationKey::Ulong)
            ],
            value(),
        ),
        0..4,
    )
    .prop_map(|kv| kv.into_iter().collect())
}

fn message() -> impl Strategy<Value = Message> {
    let header = (
        any::<bool>(),
        any::<u8>(),
        of(any::<u32>()),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(d, p, t, f, c)| Header {
            durable: d,
            priority: p,
            ttl: t,
            first_acquirer: f,
            delivery_count: c,
        });
    let props = (
        of(message_id()),
        of(binary()),
        of(string()),
        of(string()),
        of(message_id()),
        of(symbol()),
        of(any::<i64>()),
        of(any::<u32>()),
    )
        .prop_map(|(id, uid, to, subj, cid, ct, ts, gs)| Properties {
            message_id: id,
            user_id: uid,
            to,
            subject: subj,
            correlation_id: cid,
            content_type: ct,
            creation_time: ts.map(Timestamp),
            group_sequence: gs,
            ..Default::default()
        });
    let app = vec((string(), scalar()), 0..4)
        .prop_map(|kv| kv.into_iter().collect::<Map<ByteString, Value>>());
    let body = prop_oneof![
        Just(Body::Empty),
        vec(binary(), 1..4).prop_map(Body::Data),
        vec(vec(value(), 0..4), 1..3).prop_map(Body::Sequence),
        value().prop_map(Body::Value),
    ];
    (
        of(header),
        of(annotations()),
        of(annotations()),
        of(props),
        of(app),
        body,
        of(annotations()),
    )
        .prop_map(|(header, da, ma, properties, ap, body, footer)| Message {
            header,
            delivery_annotations: da,
            message_annotations: ma,
            properties,
            application_properties: ap,
            body,
            footer,
        })
}

/// Runs `cases` cases of `strategy` through `test` on a thread with a
/// large stack: proptest's recursive value generation and shrinking go deep
/// in debug builds and overflowed libtest's default 2 MiB thread stack.
fn check<S>(strategy: fn() -> S, cases: u32, test: impl Fn(S::Value) + Send + 'static)
where
    S: Strategy + 'static,
    S::Value: std::fmt::Debug,
{
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let strategy = strategy();
            let config = ProptestConfig {
                cases,
                failure_persistence: None,
                ..ProptestConfig::default()
            };
            let mut runner = proptest::test_runner::TestRunner::new(config);
            let result = runner.run(&strategy, |v| {
                test(v);
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
        })
        .expect("spawn")
        .join()
        .expect("property holds");
}

#[test]
fn values_roundtrip() {
    check(value, 512, |v| roundtrip(&v));
}

#[test]
fn performatives_roundtrip() {
    check(performative, 512, |p| roundtrip(&p));
}

#[test]
fn messages_roundtrip() {
    check(message, 512, |m| roundtrip(&m));
}

#[test]
fn batches_roundtrip() {
    check(
        || (message(), vec(message(), 0..5)),
        256,
        |(envelope, events)| {
            let batch = Batch {
                envelope: &envelope,
                events: &events,
            };
            let bytes = batch.to_bytes();
            assert_eq!(bytes.len(), batch.encoded_len());
            let outer = Message::decode_all(&bytes).unwrap();
            assert_eq!(&outer.message_annotations, &envelope.message_annotations);
            assert_eq!(&outer.properties, &envelope.properties);
            if !events.is_empty() {
                assert_eq!(outer.unbatch().unwrap(), events);
            }
        },
    );
}

/// Arbitrary bytes never panic the decoders.
#[test]
fn arbitrary_bytes_never_panic() {
    check(
        || vec(any::<u8>(), 0..512),
        2048,
        |b| {
            let b = Bytes::from(b);
            let _ = Value::decode_all(&b);
            let _ = Message::decode_all(&b);
            let _ = Performative::decode_all(&b);
            let _ = eventhubs_proto::codec::frame::Frame::decode(&b);
        },
    );
}

/// The Event Hubs annotations a delivery carries, some of them of the wrong
/// type or missing, to merge into a message's own.
fn stamped() -> impl Strategy<Value = Vec<(AnnotationKey, Value)>> {
    let key = |k: &'static str| AnnotationKey::Symbol(Symbol::from_static(k));
    (
        of(prop_oneof![
            any::<i64>().prop_map(Value::Long),
            Just(Value::String("7".into()))
        ]),
        of(prop_oneof![
            string().prop_map(Value::String),
            any::<i64>().prop_map(Value::Long)
        ]),
        of(any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t)))),
        of(string().prop_map(Value::String)),
        of(symbol().prop_map(Value::Symbol)),
        any::<bool>(),
    )
        .prop_map(move |(seq, offset, time, pk, publisher, repeat)| {
            let mut v = Vec::new();
            let mut put = |k, x: Option<Value>| {
                if let Some(x) = x {
                    v.push((key(k), x));
                }
            };
            put("x-opt-sequence-number", seq.clone());
            put("x-opt-offset", offset);
            put("x-opt-enqueued-time", time);
            put("x-opt-partition-key", pk);
            put("x-opt-publisher", publisher);
            if repeat {
                // A repeated key: the first one counts, both ways.
                put("x-opt-sequence-number", Some(Value::Long(-1)));
            }
            v
        })
}

/// Decoding a delivery straight into an event gives what decoding the
/// message and mapping it gives: the same event, or an error both ways.
#[test]
fn received_events_decode_as_their_messages_map() {
    use eventhubs_proto::client::ReceivedEvent;
    check(
        || (message(), stamped()),
        512,
        |(mut m, stamps)| {
            let ann = m.message_annotations.get_or_insert_with(Map::new);
            let mut merged: Vec<_> = stamps;
            merged.extend(std::mem::take(&mut ann.0));
            ann.0 = merged;
            let bytes = m.to_bytes();
            let direct = ReceivedEvent::decode("3", &bytes);
            let mapped = Message::decode_all(&bytes).map(|m| ReceivedEvent::from_message("3", m));
            match (&direct, &mapped) {
                (Ok(a), Ok(Ok(b))) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
                (Err(_), Ok(Err(_)) | Err(_)) => {}
                _ => panic!("decode {direct:?} but decode_all and from_message {mapped:?}"),
            }
            // A well-formed message always decodes: the errors are missing
            // or mistyped annotations, never the codec.
            assert!(mapped.is_ok());
        },
    );
}

/// Arbitrary bytes: the direct decode agrees with the two steps on whether
/// they are an event, and never panics.
#[test]
fn received_event_decode_of_arbitrary_bytes_agrees() {
    use eventhubs_proto::client::ReceivedEvent;
    check(
        || vec(any::<u8>(), 0..512),
        2048,
        |b| {
            let b = Bytes::from(b);
            let direct = ReceivedEvent::decode("0", &b).ok();
            let mapped = Message::decode_all(&b)
                .ok()
                .and_then(|m| ReceivedEvent::from_message("0", m).ok());
            // Compared as printed: a NaN in an annotation is unequal to
            // itself.
            assert_eq!(format!("{direct:?}"), format!("{mapped:?}"));
        },
    );
}
