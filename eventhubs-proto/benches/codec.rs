//! Codec throughput: `eventhubs-proto` against `serde_amqp` (the codec of
//! fe2o3-amqp, which Microsoft's Rust SDK uses), doing the same work on the
//! same logical content in the same run.
//!
//! Workloads:
//! - `transfer_1k`: one transfer frame as Event Hubs delivers it to a
//!   receiver: frame header, transfer performative, then a message with a
//!   1 KiB data body, the usual receive-side message annotations, properties
//!   and four application properties.
//! - `batch_100`: one Event Hubs batch message (message format
//!   0x80013700): an envelope whose body is 100 data sections, each a
//!   complete encoded event of ~100 bytes with a partition key annotation and
//!   one application property.
//!
//! Encode builds the bytes from the typed structures into buffers reused
//! across iterations; decode goes from the bytes to the typed structures.
//! The setup checks that each codec's bytes decode with the other codec to
//! the same logical content, so both sides do the same work.
//!
//! Run: `cargo bench -p eventhubs-proto --bench codec`.

use std::hint::black_box;

use bytes::Bytes;
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

use eventhubs_proto::codec::frame::{self, Frame, FRAME_HEADER_LEN};
use eventhubs_proto::codec::message::{Batch, Body, Message, BATCH_MESSAGE_FORMAT};
use eventhubs_proto::codec::messaging::{AnnotationKey, MessageId, Properties};
use eventhubs_proto::codec::performatives::{Performative, Transfer};
use eventhubs_proto::codec::{Decode, Encode, Form, Map, Symbol, Timestamp, Value};

use fe2o3_amqp_types::definitions::Handle;
use fe2o3_amqp_types::messaging::message::__private::Serializable;
use fe2o3_amqp_types::messaging::message::DecodeIntoMessage;
use fe2o3_amqp_types::messaging::{
    ApplicationProperties as FeAppProps, Body as FeBody, Data as FeData, Message as FeMessage,
    MessageAnnotations as FeAnnotations, MessageId as FeMessageId, Properties as FeProperties,
};
use fe2o3_amqp_types::performatives::{Performative as FePerformative, Transfer as FeTransfer};
use fe2o3_amqp_types::primitives::{
    Binary, SimpleValue, Symbol as FeSymbol, Timestamp as FeTimestamp, Value as FeValue,
};
use serde_amqp::read::SliceReader;
use serde_amqp::ser::Serializer;
use serde_amqp::serde::Serialize;

/// The message type a generic fe2o3-amqp receiver decodes into.
type FeMsg = FeMessage<FeBody<FeValue>>;

// ------------------------------------------------------------ the content

const CHANNEL: u16 = 1;
const HANDLE: u32 = 0;
const DELIVERY_ID: u32 = 4711;
const DELIVERY_TAG: [u8; 8] = *b"\x00\x01\x02\x03\x04\x05\x06\x07";
const SEQUENCE_NUMBER: i64 = 1_234_567_890;
const OFFSET: &str = "8589934592";
const ENQUEUED_MS: i64 = 1_700_000_000_123;
const PARTITION_KEY: &str = "device-0042";
const MESSAGE_ID: &str = "3f2c7a90-5b1e-4d6a-9c1f-7e2b8d4a6c10";
const CONTENT_TYPE: &str = "application/json";
const EVENTS: usize = 100;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i as u8).wrapping_add(seed)) % 26)
        .collect()
}

fn event_key(i: usize) -> String {
    format!("pk-{:03}", i % 16)
}

// ----------------------------------------------------- eventhubs-proto side

fn ours_transfer() -> Performative {
    Performative::Transfer(Transfer {
        handle: HANDLE,
        delivery_id: Some(DELIVERY_ID),
        delivery_tag: Some(Bytes::copy_from_slice(&DELIVERY_TAG)),
        message_format: Some(0),
        settled: Some(false),
        ..Default::default()
    })
}

fn ours_received_message() -> Message {
    let key = |s: &'static str| AnnotationKey::Symbol(Symbol::from_static(s));
    Message {
        message_annotations: Some(Map(vec![
            (key("x-opt-sequence-number"), Value::Long(SEQUENCE_NUMBER)),
            (key("x-opt-offset"), Value::String(OFFSET.into())),
            (
                key("x-opt-enqueued-time"),
                Value::Timestamp(Timestamp(ENQUEUED_MS)),
            ),
            (
                key("x-opt-partition-key"),
                Value::String(PARTITION_KEY.into()),
            ),
        ])),
        properties: Some(Properties {
            message_id: Some(MessageId::from(MESSAGE_ID)),
            content_type: Some(Symbol::from_static(CONTENT_TYPE)),
            ..Default::default()
        }),
        application_properties: Some(Map(vec![
            (
                ByteString::from_static("sensor"),
                Value::String("thermo-7".into()),
            ),
            (ByteString::from_static("reading"), Value::Long(987_654_321)),
            (ByteString::from_static("calibrated"), Value::Bool(true)),
            (ByteString::from_static("celsius"), Value::Double(21.625)),
        ])),
        body: Body::Data(vec![Bytes::from(payload(1024, 0))]),
        ..Default::default()
    }
}

fn ours_event(i: usize) -> Message {
    Message {
        message_annotations: Some(Map(vec![(
            AnnotationKey::Symbol(Symbol::from_static("x-opt-partition-key")),
            Value::String(event_key(i).into()),
        )])),
        application_properties: Some(Map(vec![(
            ByteString::from_static("seq"),
            Value::Long(i as i64 * 1000),
        )])),
        body: Body::Data(vec![Bytes::from(payload(100, i as u8))]),
        ..Default::default()
    }
}

fn ours_envelope() -> Message {
    Message {
        message_annotations: Some(Map(vec![(
            AnnotationKey::Symbol(Symbol::from_static("x-opt-partition-key")),
            Value::String(event_key(0).into()),
        )])),
        ..Default::default()
    }
}

/// Encodes the message into `payload`, then the frame into `out`; both
/// buffers are reused.
fn ours_encode_transfer(p: &Performative, m: &Message, payload: &mut Vec<u8>, out: &mut Vec<u8>) {
    payload.clear();
    m.encode(payload);
    out.clear();
    frame::encode_amqp_frame(out, CHANNEL, p, payload, Form::Compact);
}

fn ours_decode_transfer(bytes: &Bytes) -> (Transfer, Message) {
    match Frame::decode(bytes).expect("frame") {
        Frame::Amqp {
            performative: Performative::Transfer(t),
            payload,
            ..
        } => (t, Message::decode_all(&payload).expect("message")),
        f => panic!("not a transfer: {f:?}"),
    }
}

fn ours_encode_batch(envelope: &Message, events: &[Message], out: &mut Vec<u8>) {
    out.clear();
    Batch { envelope, events }.encode(out);
}

fn ours_decode_batch(bytes: &Bytes) -> (Message, Vec<Message>) {
    let outer = Message::decode_all(bytes).expect("envelope");
    let inner = outer.unbatch().expect("events");
    (outer, inner)
}

// ------------------------------------------------------------ serde_amqp side

fn fe_transfer() -> FeTransfer {
    FeTransfer {
        handle: Handle(HANDLE),
        delivery_id: Some(DELIVERY_ID),
        delivery_tag: Some(Binary::from(DELIVERY_TAG.to_vec())),
        message_format: Some(0),
        settled: Some(false),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    }
}

fn fe_received_message() -> FeMsg {
    FeMessage::builder()
        .message_annotations(
            FeAnnotations::builder()
                .insert("x-opt-sequence-number", FeValue::Long(SEQUENCE_NUMBER))
                .insert("x-opt-offset", FeValue::String(OFFSET.into()))
                .insert(
                    "x-opt-enqueued-time",
                    FeValue::Timestamp(FeTimestamp::from_milliseconds(ENQUEUED_MS)),
                )
                .insert("x-opt-partition-key", FeValue::String(PARTITION_KEY.into()))
                .build(),
        )
        .properties(
            FeProperties::builder()
                .message_id(FeMessageId::String(MESSAGE_ID.into()))
                .content_type(FeSymbol::from(CONTENT_TYPE))
                .build(),
        )
        .application_properties(
            FeAppProps::builder()
                .insert("sensor", SimpleValue::String("thermo-7".into()))
                .insert("reading", SimpleValue::Long(987_654_321))
                .insert("calibrated", SimpleValue::Bool(true))
                .insert("celsius", SimpleValue::from(21.625f64))
                .build(),
        )
        .body(FeBody::Data(
            vec![FeData(Binary::from(payload(1024, 0)))]
                .into_iter()
                .collect(),
        ))
        .build()
}

fn fe_event(i: usize) -> FeMsg {
    FeMessage::builder()
        .message_annotations(
            FeAnnotations::builder()
                .insert("x-opt-partition-key", FeValue::String(event_key(i)))
                .build(),
        )
        .application_properties(
            FeAppProps::builder()
                .insert("seq", SimpleValue::Long(i as i64 * 1000))
                .build(),
        )
        .body(FeBody::Data(
            vec![FeData(Binary::from(payload(100, i as u8)))]
                .into_iter()
                .collect(),
        ))
        .build()
}

/// The envelope; its body holds one data section per event, whose buffers
/// the encode benchmark refills in place (so serde_amqp, too, allocates
/// nothing per iteration once warm).
fn fe_envelope() -> FeMsg {
    FeMessage::builder()
        .message_annotations(
            FeAnnotations::builder()
                .insert("x-opt-partition-key", FeValue::String(event_key(0)))
                .build(),
        )
        .body(FeBody::Data(
            (0..EVENTS).map(|_| FeData(Binary::new())).collect(),
        ))
        .build()
}

fn fe_serialize<T: Serialize>(v: &T, out: &mut Vec<u8>) {
    v.serialize(&mut Serializer::new(out))
        .expect("serde_amqp serialize");
}

fn fe_decode_message(bytes: &[u8]) -> FeMsg {
    FeBody::<FeValue>::decode_message_from_reader(SliceReader::new(bytes))
        .expect("serde_amqp message")
}

/// Same steps as ours: the message into `payload`, then an 8-byte frame
/// header, the performative and the payload into `out`. (fe2o3-amqp's frame
/// encoder serializes the performative after the header the same way; its
/// length-delimited codec writes the size, patched here.)
fn fe_encode_transfer(t: &FeTransfer, m: &FeMsg, payload: &mut Vec<u8>, out: &mut Vec<u8>) {
    payload.clear();
    fe_serialize(&Serializable(m), payload);
    out.clear();
    out.extend_from_slice(&[0, 0, 0, 0, 2, 0]);
    out.extend_from_slice(&CHANNEL.to_be_bytes());
    fe_serialize(t, out);
    out.extend_from_slice(payload);
    let size = out.len() as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
}

/// End of the described list that starts `b` (a performative): the
/// descriptor and the list's size field say where it stops. O(1): a few
/// header bytes, no decoding.
fn described_list_end(b: &[u8]) -> usize {
    assert_eq!(b[0], 0x00, "described");
    let mut i = 1 + match b[1] {
        0x44 => 1,
        0x53 => 2,
        0x80 => 9,
        0xa3 => 2 + b[2] as usize,
        0xb3 => 5 + u32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize,
        c => panic!("descriptor code {c:#x}"),
    };
    i += match b[i] {
        0x45 => 1,
        0xc0 => 2 + b[i + 1] as usize,
        0xd0 => 5 + u32::from_be_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]) as usize,
        c => panic!("list code {c:#x}"),
    };
    i
}

/// The frame header parsed by hand (as fe2o3-amqp's codec does), the
/// performative deserialized from its exact slice, then the message from
/// the rest. fe2o3-amqp itself deserializes the performative through an
/// `IoReader` over the frame buffer, which is slower than this `from_slice`
/// path: the baseline here is serde_amqp at its best.
fn fe_decode_transfer(bytes: &[u8]) -> (FeTransfer, FeMsg) {
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let doff = bytes[4] as usize * 4;
    assert!(size == bytes.len() && doff >= FRAME_HEADER_LEN && bytes[5] == 0);
    let _channel = u16::from_be_bytes([bytes[6], bytes[7]]);
    let body = &bytes[doff..];
    let end = described_list_end(body);
    let t = match serde_amqp::from_slice::<FePerformative>(&body[..end]).expect("performative") {
        FePerformative::Transfer(t) => t,
        p => panic!("not a transfer: {p:?}"),
    };
    (t, fe_decode_message(&body[end..]))
}

fn fe_encode_batch(envelope: &mut FeMsg, events: &[FeMsg], out: &mut Vec<u8>) {
    let FeBody::Data(sections) = &mut envelope.body else {
        unreachable!()
    };
    for (section, event) in sections.iter_mut().zip(events) {
        section.0.clear();
        fe_serialize(&Serializable(event), &mut section.0);
    }
    out.clear();
    fe_serialize(&Serializable(&*envelope), out);
}

fn fe_decode_batch(bytes: &[u8]) -> (FeMsg, Vec<FeMsg>) {
    let outer = fe_decode_message(bytes);
    let FeBody::Data(sections) = &outer.body else {
        panic!("batch body is not data")
    };
    let inner = sections.iter().map(|d| fe_decode_message(&d.0)).collect();
    (outer, inner)
}

// --------------------------------------------------------------- checks

/// Our typed transfer as the other codec's, field by field.
fn same_transfer(ours: &Transfer, fe: &FeTransfer) -> bool {
    ours.handle == fe.handle.0
        && ours.delivery_id == fe.delivery_id
        && ours.delivery_tag.as_deref() == fe.delivery_tag.as_deref().map(|v| &v[..])
        && ours.message_format == fe.message_format
        && ours.settled == fe.settled
        && ours.more == fe.more
        && ours.state.is_none()
        && fe.state.is_none()
}

/// Cross-checks: each codec's bytes decode with the other codec to the
/// content the other side started from.
fn check_transfer(
    ours_bytes: &Bytes,
    fe_bytes: &[u8],
    p: &Performative,
    m: &Message,
    ft: &FeTransfer,
    fm: &FeMsg,
) {
    let Performative::Transfer(t) = p else {
        unreachable!()
    };
    let (t1, m1) = ours_decode_transfer(ours_bytes);
    assert_eq!((&t1, &m1), (t, m), "ours -> ours");
    let (t2, m2) = ours_decode_transfer(&Bytes::copy_from_slice(fe_bytes));
    assert_eq!((&t2, &m2), (t, m), "serde_amqp -> ours");
    let (ft1, fm1) = fe_decode_transfer(fe_bytes);
    assert_eq!((&ft1, &fm1), (ft, fm), "serde_amqp -> serde_amqp");
    let (ft2, fm2) = fe_decode_transfer(ours_bytes);
    assert_eq!(&fm2, fm, "ours -> serde_amqp (message)");
    assert!(same_transfer(t, &ft2), "ours -> serde_amqp (transfer)");
}

fn check_batch(
    ours_bytes: &Bytes,
    fe_bytes: &[u8],
    envelope: &Message,
    events: &[Message],
    fe_events: &[FeMsg],
) {
    let (o, inner) = ours_decode_batch(ours_bytes);
    assert_eq!(o.message_annotations, envelope.message_annotations);
    assert_eq!(inner, events, "ours -> ours");
    let (o, inner) = ours_decode_batch(&Bytes::copy_from_slice(fe_bytes));
    assert_eq!(o.message_annotations, envelope.message_annotations);
    assert_eq!(inner, events, "serde_amqp -> ours");
    let (_, inner) = fe_decode_batch(fe_bytes);
    assert_eq!(inner, fe_events, "serde_amqp -> serde_amqp");
    let (_, inner) = fe_decode_batch(ours_bytes);
    assert_eq!(inner, fe_events, "ours -> serde_amqp");
}

// ------------------------------------------------------------ benchmarks

fn pair<F: FnMut(), G: FnMut()>(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    mut ours: F,
    mut fe: G,
) {
    g.bench_function("eventhubs-proto", |b| b.iter(&mut ours));
    g.bench_function("serde_amqp", |b| b.iter(&mut fe));
}

fn transfer_1k(c: &mut Criterion) {
    let p = ours_transfer();
    let m = ours_received_message();
    let ft = fe_transfer();
    let fm = fe_received_message();

    let (mut payload, mut out) = (Vec::new(), Vec::new());
    ours_encode_transfer(&p, &m, &mut payload, &mut out);
    let ours_bytes = Bytes::from(out.clone());
    fe_encode_transfer(&ft, &fm, &mut payload, &mut out);
    let fe_bytes = Bytes::from(out.clone());
    check_transfer(&ours_bytes, &fe_bytes, &p, &m, &ft, &fm);
    eprintln!(
        "transfer_1k: frame {} bytes (eventhubs-proto), {} bytes (serde_amqp)",
        ours_bytes.len(),
        fe_bytes.len()
    );

    // Both sides are credited with the same bytes, so the throughput ratio
    // is the time ratio.
    let mut g = c.benchmark_group("transfer_1k/encode");
    g.throughput(Throughput::Bytes(ours_bytes.len() as u64));
    let (mut p1, mut o1, mut p2, mut o2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    pair(
        &mut g,
        || {
            ours_encode_transfer(black_box(&p), black_box(&m), &mut p1, &mut o1);
            black_box(&o1);
        },
        || {
            fe_encode_transfer(black_box(&ft), black_box(&fm), &mut p2, &mut o2);
            black_box(&o2);
        },
    );
    g.finish();

    let mut g = c.benchmark_group("transfer_1k/decode");
    g.throughput(Throughput::Bytes(ours_bytes.len() as u64));
    pair(
        &mut g,
        || {
            black_box(ours_decode_transfer(black_box(&ours_bytes)));
        },
        || {
            black_box(fe_decode_transfer(black_box(&fe_bytes)));
        },
    );
    g.finish();
}

fn batch_100(c: &mut Criterion) {
    let envelope = ours_envelope();
    let events: Vec<Message> = (0..EVENTS).map(ours_event).collect();
    let mut fe_env = fe_envelope();
    let fe_events: Vec<FeMsg> = (0..EVENTS).map(fe_event).collect();

    let mut out = Vec::new();
    ours_encode_batch(&envelope, &events, &mut out);
    let ours_bytes = Bytes::from(out.clone());
    fe_encode_batch(&mut fe_env, &fe_events, &mut out);
    let fe_bytes = Bytes::from(out.clone());
    check_batch(&ours_bytes, &fe_bytes, &envelope, &events, &fe_events);
    eprintln!(
        "batch_100: message {} bytes (eventhubs-proto), {} bytes (serde_amqp); send with message-format {BATCH_MESSAGE_FORMAT:#x}",
        ours_bytes.len(),
        fe_bytes.len()
    );

    let mut g = c.benchmark_group("batch_100/encode");
    g.throughput(Throughput::Elements(EVENTS as u64));
    let (mut o1, mut o2) = (Vec::new(), Vec::new());
    pair(
        &mut g,
        || {
            ours_encode_batch(black_box(&envelope), black_box(&events), &mut o1);
            black_box(&o1);
        },
        || {
            fe_encode_batch(&mut fe_env, black_box(&fe_events), &mut o2);
            black_box(&o2);
        },
    );
    g.finish();

    let mut g = c.benchmark_group("batch_100/decode");
    g.throughput(Throughput::Elements(EVENTS as u64));
    pair(
        &mut g,
        || {
            black_box(ours_decode_batch(black_box(&ours_bytes)));
        },
        || {
            black_box(fe_decode_batch(black_box(&fe_bytes)));
        },
    );
    g.finish();
}

criterion_group!(benches, transfer_1k, batch_100);
criterion_main!(benches);
