//! Shared helpers of `proton_fixtures.rs` and `wire_traces.rs`: reading
//! fixture files, splitting a recorded byte stream into protocol headers and
//! frames, rendering frames as one-line summaries, re-encoding checks and
//! transfer reassembly.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use eventhubs_proto::codec::frame::{
    encode_amqp_frame, encode_sasl_frame, split_frame, Frame, FrameHeader, ProtocolHeader,
    ProtocolId, EMPTY_FRAME, FRAME_HEADER_LEN,
};
use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::performatives::{AmqpError, Performative, Role};
use eventhubs_proto::codec::sasl::SaslFrame;
use eventhubs_proto::codec::{Decode, Encode, Form, Value};

/// Absolute path of a file under `tests/fixtures/`.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The bytes of a file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> Bytes {
    let p = fixture_path(rel);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
}

/// The sorted file stems in `tests/fixtures/<dir>` that end in `suffix`.
pub fn fixture_names(dir: &str, suffix: &str) -> Vec<String> {
    let p = fixture_path(dir);
    let mut names: Vec<String> = std::fs::read_dir(&p)
        .unwrap_or_else(|e| panic!("listing {}: {e}", p.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 file name")
        })
        .filter_map(|n| n.strip_suffix(suffix).map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// How our compact re-encoding of a peer's bytes must compare with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enc {
    /// The peer chose the encoding we choose: our bytes equal theirs.
    Exact,
    /// The peer chose a legal but larger encoding (32-bit compound forms,
    /// defaults written out, sym32 array elements): our bytes decode to an
    /// equal value and are strictly shorter.
    Value,
}

/// `a == b`, except that floats compare by bit pattern (so `-0.0` and `0.0`
/// differ) and arrays also compare element by element this way.
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| strict_eq(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| strict_eq(ka, kb) && strict_eq(va, vb))
        }
        (Value::Array(x), Value::Array(y)) => {
            x == y
                && x.items()
                    .iter()
                    .zip(y.items())
                    .all(|(a, b)| strict_eq(a, b))
        }
        (Value::Described(x), Value::Described(y)) => {
            x.descriptor == y.descriptor && strict_eq(&x.value, &y.value)
        }
        _ => a == b,
    }
}

/// Checks our re-encoding of `v`, decoded from `theirs`: the reported length
/// is the written length, the bytes decode to `v` again, and they equal
/// `theirs` (`Enc::Exact`) or are strictly shorter (`Enc::Value`). Checks
/// the full form decodes to `v` too.
#[track_caller]
pub fn check_reencode<T>(what: &str, v: &T, theirs: &[u8], enc: Enc)
where
    T: Encode + Decode + PartialEq + std::fmt::Debug,
{
    let ours = v.to_bytes();
    assert_eq!(
        v.encoded_len(),
        ours.len(),
        "{what}: encoded_len differs from the bytes written"
    );
    match enc {
        Enc::Exact => assert_eq!(
            hex(&ours),
            hex(theirs),
            "{what}: compact re-encoding differs from the peer's bytes"
        ),
        Enc::Value => {
            assert_ne!(
                hex(&ours),
                hex(theirs),
                "{what}: listed as value-equal only, but the bytes are equal: mark it Exact"
            );
            assert!(
                ours.len() < theirs.len(),
                "{what}: our encoding ({} bytes) is not smaller than the peer's ({} bytes)\nours   {}\ntheirs {}",
                ours.len(),
                theirs.len(),
                hex(&ours),
                hex(theirs)
            );
        }
    }
    let back = T::decode_all(&ours)
        .unwrap_or_else(|e| panic!("{what}: our compact bytes do not decode: {e}"));
    assert_eq!(&back, v, "{what}: compact round trip");

    let mut full = Vec::new();
    v.encode_as(Form::Full, &mut full);
    assert_eq!(
        v.encoded_len_as(Form::Full),
        full.len(),
        "{what}: full-form encoded_len differs from the bytes written"
    );
    assert!(
        full.len() >= ours.len(),
        "{what}: full form shorter than compact form"
    );
    let back = T::decode_all(&Bytes::from(full))
        .unwrap_or_else(|e| panic!("{what}: our full-form bytes do not decode: {e}"));
    assert_eq!(&back, v, "{what}: full-form round trip");
}

/// Space-separated hex, for readable assertion failures.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// One unit of a recorded byte stream.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Unit {
    /// An 8-byte protocol header.
    Header {
        offset: usize,
        header: ProtocolHeader,
    },
    /// A frame, as split off the stream and decoded.
    Frame {
        offset: usize,
        /// The whole frame, header included.
        raw: Bytes,
        /// The frame's channel as written in its header.
        channel: u16,
        /// The decoded frame.
        frame: Frame,
        /// The frame body minus any transfer payload: the encoded
        /// performative or SASL body (empty for a heartbeat).
        body: Bytes,
    },
}

/// Splits a recorded stream (one direction of a connection) into its
/// protocol headers and frames: a header, then frames of that layer. After
/// the SASL layer comes the AMQP header: in a server's stream right after
/// its sasl-outcome, in a client's after its last SASL frame. Every frame
/// must decode.
pub fn split_stream(name: &str, stream: &Bytes) -> Vec<Unit> {
    let mut buf = BytesMut::from(&stream[..]);
    let mut units = Vec::new();
    let mut offset = 0;
    let mut layer: Option<ProtocolId> = None;
    while !buf.is_empty() {
        if layer.is_none() {
            let header = ProtocolHeader::parse(&buf)
                .unwrap_or_else(|e| panic!("{name}@{offset}: bad protocol header: {e}"))
                .unwrap_or_else(|| panic!("{name}@{offset}: stream ends inside a protocol header"));
            assert!(header.is_v1_0(), "{name}@{offset}: {header:?}");
            assert_eq!(
                header.to_bytes(),
                buf[..8],
                "{name}@{offset}: protocol header re-encoding"
            );
            let _ = buf.split_to(ProtocolHeader::LEN);
            units.push(Unit::Header { offset, header });
            layer = Some(header.id);
            offset += ProtocolHeader::LEN;
            continue;
        }
        // The client sends its AMQP header right after its last SASL frame
        // (init or response); `AMQP` as a frame size would be 1 GiB.
        if layer == Some(ProtocolId::Sasl) && buf.starts_with(b"AMQP") {
            layer = None;
            continue;
        }
        let raw = split_frame(&mut buf, u32::MAX)
            .unwrap_or_else(|e| panic!("{name}@{offset}: bad frame header: {e}"))
            .unwrap_or_else(|| panic!("{name}@{offset}: stream ends inside a frame"));
        let header = FrameHeader::parse(&raw, u32::MAX)
            .expect("parsed once")
            .expect("8 bytes");
        assert_eq!(header.doff, 2, "{name}@{offset}: extended frame header");
        let frame = Frame::decode(&raw).unwrap_or_else(|e| {
            panic!("{name}@{offset}: frame does not decode: {e}\n{}", hex(&raw))
        });
        let body_start = header.doff as usize * 4;
        let body = match &frame {
            Frame::Amqp { payload, .. } => raw.slice(body_start..raw.len() - payload.len()),
            _ => raw.slice(body_start..),
        };
        match (&frame, layer) {
            (Frame::Sasl(s), Some(ProtocolId::Sasl)) => {
                if matches!(s, SaslFrame::Outcome(_)) {
                    layer = None;
                }
            }
            (Frame::Amqp { .. } | Frame::Empty { .. }, Some(ProtocolId::Amqp)) => {}
            (f, l) => panic!("{name}@{offset}: frame {f:?} in layer {l:?}"),
        }
        offset += raw.len();
        units.push(Unit::Frame {
            offset: offset - raw.len(),
            raw,
            channel: header.channel,
            frame,
            body,
        });
    }
    units
}

fn sym_list(v: &[eventhubs_proto::codec::Symbol]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn err(e: &Option<AmqpError>) -> String {
    e.as_ref()
        .map_or_else(|| "-".to_owned(), |e| e.condition.as_str().to_owned())
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Sender => "sender",
        Role::Receiver => "receiver",
    }
}

/// A delivery state in a few words.
pub fn state(s: &Option<DeliveryState>) -> String {
    match s {
        None => "-".into(),
        Some(DeliveryState::Accepted(_)) => "accepted".into(),
        Some(DeliveryState::Released(_)) => "released".into(),
        Some(DeliveryState::Rejected(r)) => format!("rejected({})", err(&r.error)),
        Some(DeliveryState::Modified(m)) => {
            format!(
                "modified(failed={},undeliverable={})",
                opt(&m.delivery_failed),
                opt(&m.undeliverable_here)
            )
        }
        Some(DeliveryState::Received(r)) => {
            format!("received({},{})", r.section_number, r.section_offset)
        }
    }
}

/// A one-line rendering of the key fields of a unit, for comparing a whole
/// stream against an expected listing.
pub fn summary(u: &Unit) -> String {
    let (channel, frame) = match u {
        Unit::Header { header, .. } => return format!("hdr {:?}", header.id),
        Unit::Frame { channel, frame, .. } => (*channel, frame),
    };
    let p = match frame {
        Frame::Empty { channel } => return format!("ch{channel} empty"),
        Frame::Sasl(s) => {
            return match s {
                SaslFrame::Mechanisms(m) => {
                    format!("sasl-mechanisms {}", sym_list(&m.sasl_server_mechanisms))
                }
                SaslFrame::Init(i) => format!(
                    "sasl-init {} resp={} host={}",
                    i.mechanism.as_str(),
                    i.initial_response
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), |r| r.escape_ascii().to_string()),
                    opt(&i.hostname)
                ),
                SaslFrame::Challenge(c) => format!("sasl-challenge {}", c.challenge.escape_ascii()),
                SaslFrame::Response(r) => format!("sasl-response {}", r.response.escape_ascii()),
                SaslFrame::Outcome(o) => format!("sasl-outcome {:?}", o.code),
            }
        }
        Frame::Amqp { performative, .. } => performative,
    };
    let payload = match frame {
        Frame::Amqp { payload, .. } => payload.len(),
        _ => 0,
    };
    let body = match p {
        Performative::Open(o) => format!(
            "open id={} host={} max-frame={} channel-max={} idle={}",
            o.container_id,
            opt(&o.hostname),
            o.max_frame_size,
            o.channel_max,
            opt(&o.idle_time_out)
        ),
        Performative::Begin(b) => format!(
            "begin remote={} next-out={} in-win={} out-win={}",
            opt(&b.remote_channel),
            b.next_outgoing_id,
            b.incoming_window,
            b.outgoing_window
        ),
        Performative::Attach(a) => format!(
            "attach {} h={} {} src={} tgt={}",
            a.name,
            a.handle,
            role(a.role),
            a.source
                .as_ref()
                .map_or_else(|| "none".to_owned(), |s| opt(&s.address)),
            a.target
                .as_ref()
                .map_or_else(|| "none".to_owned(), |t| opt(&t.address)),
        ),
        Performative::Flow(f) => format!(
            "flow h={} next-in={} next-out={} dc={} credit={} drain={}",
            opt(&f.handle),
            opt(&f.next_incoming_id),
            f.next_outgoing_id,
            opt(&f.delivery_count),
            opt(&f.link_credit),
            f.drain
        ),
        Performative::Transfer(t) => {
            let mut s = format!(
                "transfer h={} id={} tag={} fmt={} settled={} more={} payload={payload}",
                t.handle,
                opt(&t.delivery_id),
                t.delivery_tag
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |t| t.escape_ascii().to_string()),
                t.message_format
                    .map_or_else(|| "-".to_owned(), |f| format!("{f:#x}")),
                opt(&t.settled),
                t.more
            );
            if t.aborted {
                s.push_str(" aborted");
            }
            s
        }
        Performative::Disposition(d) => format!(
            "disposition {} first={} last={} settled={} state={}",
            role(d.role),
            d.first,
            opt(&d.last),
            d.settled,
            state(&d.state)
        ),
        Performative::Detach(d) => format!(
            "detach h={} closed={} err={}",
            d.handle,
            d.closed,
            err(&d.error)
        ),
        Performative::End(e) => format!("end err={}", err(&e.error)),
        Performative::Close(c) => format!("close err={}", err(&c.error)),
    };
    format!("ch{channel} {body}")
}

/// Compares the summaries of `units` with `expected`, reporting the first
/// difference with its neighbours.
#[track_caller]
pub fn assert_summaries(name: &str, units: &[Unit], expected: &[(Enc, String)]) {
    let got: Vec<String> = units.iter().map(summary).collect();
    for (i, (g, (_, e))) in got.iter().zip(expected).enumerate() {
        assert_eq!(
            g,
            e,
            "{name}: unit {i} differs; got so far:\n{}",
            got[..=i].join("\n")
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{name}: unit count; got:\n{}",
        got.join("\n")
    );
}

/// Re-encodes every unit and checks it against the recorded bytes according
/// to `expected[i].0`: performatives and SASL bodies in the compact and full
/// forms, whole frames with the frame encoders, heartbeats and protocol
/// headers byte for byte. Returns (exact, value-only) frame counts.
#[track_caller]
pub fn check_units_reencode(
    name: &str,
    units: &[Unit],
    expected: &[(Enc, String)],
) -> (usize, usize) {
    assert_eq!(units.len(), expected.len(), "{name}: unit count");
    let (mut exact, mut value) = (0, 0);
    for (u, (enc, line)) in units.iter().zip(expected) {
        let Unit::Frame {
            offset,
            raw,
            channel,
            frame,
            body,
        } = u
        else {
            assert_eq!(
                *enc,
                Enc::Exact,
                "{name}: protocol headers are always exact"
            );
            continue;
        };
        let what = format!("{name}@{offset} {line}");
        match frame {
            Frame::Empty { channel: c } => {
                assert_eq!(*enc, Enc::Exact, "{what}");
                assert_eq!(*c, *channel);
                assert_eq!(raw[..], EMPTY_FRAME[..], "{what}: heartbeat bytes");
            }
            Frame::Sasl(s) => {
                check_reencode(&what, s, body, *enc);
                let mut v = Vec::new();
                encode_sasl_frame(&mut v, s, Form::Compact);
                check_frame(&what, &v, raw, *enc);
            }
            Frame::Amqp {
                channel: c,
                performative,
                payload,
            } => {
                assert_eq!(c, channel);
                check_reencode(&what, performative, body, *enc);
                let mut v = Vec::new();
                encode_amqp_frame(&mut v, *c, performative, payload, Form::Compact);
                check_frame(&what, &v, raw, *enc);
                // The re-encoded frame decodes to the same frame.
                assert_eq!(
                    &Frame::decode(&Bytes::from(v)).expect("our frame decodes"),
                    frame,
                    "{what}"
                );
            }
        }
        match enc {
            Enc::Exact => exact += 1,
            Enc::Value => value += 1,
        }
    }
    (exact, value)
}

fn check_frame(what: &str, ours: &[u8], theirs: &[u8], enc: Enc) {
    let size = u32::from_be_bytes(ours[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(size, ours.len(), "{what}: frame size field");
    assert_eq!(ours[4..8], theirs[4..8], "{what}: doff, type and channel");
    match enc {
        Enc::Exact => assert_eq!(hex(ours), hex(theirs), "{what}: frame re-encoding"),
        Enc::Value => assert!(
            ours.len() < theirs.len(),
            "{what}: our frame is not smaller"
        ),
    }
    assert!(ours.len() >= FRAME_HEADER_LEN);
}

/// A whole delivery: the transfers of one (channel, handle) up to the one
/// with `more=false`, their payloads joined.
#[derive(Debug)]
pub struct Delivery {
    pub channel: u16,
    pub handle: u32,
    pub delivery_id: Option<u32>,
    pub tag: Option<Bytes>,
    pub format: Option<u32>,
    pub settled: Option<bool>,
    pub aborted: bool,
    pub frames: usize,
    pub payload: Bytes,
}

/// Reassembles the transfers of `units` into deliveries, checking that the
/// continuation frames repeat the first frame's delivery-id, tag and format
/// (Proton and fe2o3 write them on every frame) and that no delivery is
/// left incomplete.
pub fn deliveries(name: &str, units: &[Unit]) -> Vec<Delivery> {
    let mut open: Vec<Delivery> = Vec::new();
    let mut done = Vec::new();
    for u in units {
        let Unit::Frame {
            offset,
            frame:
                Frame::Amqp {
                    channel,
                    performative: Performative::Transfer(t),
                    payload,
                },
            ..
        } = u
        else {
            continue;
        };
        let i = match open
            .iter()
            .position(|d| d.channel == *channel && d.handle == t.handle)
        {
            Some(i) => {
                let d = &open[i];
                assert_eq!(
                    t.delivery_id, d.delivery_id,
                    "{name}@{offset}: continuation delivery-id"
                );
                assert_eq!(t.delivery_tag, d.tag, "{name}@{offset}: continuation tag");
                assert_eq!(
                    t.message_format, d.format,
                    "{name}@{offset}: continuation format"
                );
                i
            }
            None => {
                open.push(Delivery {
                    channel: *channel,
                    handle: t.handle,
                    delivery_id: t.delivery_id,
                    tag: t.delivery_tag.clone(),
                    format: t.message_format,
                    settled: t.settled,
                    aborted: false,
                    frames: 0,
                    payload: Bytes::new(),
                });
                open.len() - 1
            }
        };
        let d = &mut open[i];
        d.frames += 1;
        let mut joined = BytesMut::from(&d.payload[..]);
        joined.extend_from_slice(payload);
        d.payload = if d.frames == 1 {
            payload.clone()
        } else {
            joined.freeze()
        };
        if t.settled.is_some() {
            d.settled = t.settled;
        }
        if t.aborted {
            d.aborted = true;
        }
        if !t.more {
            done.push(open.remove(i));
        }
    }
    assert!(open.is_empty(), "{name}: incomplete deliveries {open:?}");
    done
}
