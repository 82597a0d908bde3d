//! The codec against wire traces of Microsoft's Rust Event Hubs SDK
//! (`azure_messaging_eventhubs` 0.16 on fe2o3-amqp) talking to a broker
//! built on Apache Qpid Proton (`tests/fixtures/traces/`).
//!
//! Each recorded direction is split into protocol headers and frames and
//! compared three ways: with Proton's own listing of it (the `.txt` next to
//! it), with a hand-written listing of the key fields, and by re-encoding
//! every frame. fe2o3-amqp encodes like us (list8/map8, trailing nulls
//! dropped, defaults left null), so its frames and messages are byte-exact,
//! except the open frame: fe2o3 writes the desired-capabilities array8 with
//! a sym32 element constructor where we use sym8. The broker's frames come
//! from Proton: attaches and flows write defaults out and its messages use
//! map32 sections, so those are value-equal only (see `proton_fixtures.rs`).

mod fixture_support;

use bytes::Bytes;
use bytestring::ByteString;
use eventhubs_proto::codec::frame::{encode_amqp_frame, encode_sasl_frame, Frame};
use eventhubs_proto::codec::message::{
    batch_section_len, Batch, Body, Message, BATCH_MESSAGE_FORMAT,
};
use eventhubs_proto::codec::messaging::{AnnotationKey, MessageId};
use eventhubs_proto::codec::performatives::{Performative, Role};
use eventhubs_proto::codec::sasl::SaslFrame;
use eventhubs_proto::codec::{Decode, Descriptor, Encode, Form, Symbol, Timestamp, Uuid, Value};
use fixture_support::{
    assert_summaries, check_reencode, check_units_reencode, deliveries, fixture, summary, Delivery,
    Enc, Unit,
};

use Enc::{Exact as E, Value as V};

const DIR: &str = "traces/azure_messaging_eventhubs-0.16";
/// The Event Hubs selector filter descriptor, `0x0000468C:0x00000004`.
const SELECTOR_CODE: u64 = 0x0000_468C_0000_0004;
const CONSUMER_SOURCE: &str = "amqps://localhost/eh1/ConsumerGroups/$Default/Partitions/0";
const SAS_PREFIX: &str = "SharedAccessSignature sr=amqps%3a%2f%2flocalhost%2feh1&sig=";

fn sym(s: &'static str) -> Symbol {
    Symbol::from_static(s)
}
fn vstr(s: &str) -> Value {
    Value::String(ByteString::from(s))
}
fn uuid(s: &str) -> Uuid {
    Uuid::parse(s).expect("uuid literal")
}

/// One recorded direction, split and decoded.
struct Trace {
    name: String,
    units: Vec<Unit>,
}

fn load(name: &str) -> Trace {
    let bytes = fixture(&format!("{DIR}/{name}.bin"));
    let units = fixture_support::split_stream(name, &bytes);
    Trace {
        name: name.to_owned(),
        units,
    }
}

/// Proton's listing of a trace, one entry per header or frame: `hdr <hex>`,
/// or `<performative> ch<channel>` plus ` payload=<n>` for transfers.
fn proton_listing(name: &str) -> Vec<String> {
    let text = String::from_utf8(fixture(&format!("{DIR}/{name}.txt")).to_vec()).expect("utf-8");
    text.lines()
        .map(|l| {
            if let Some(h) = l.strip_prefix("protocol header ") {
                return format!("hdr {h}");
            }
            let (head, _) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: odd line {l:?}"));
            let mut words = head.split(' ');
            let perf = words.next().expect("name");
            assert_eq!(words.next(), Some("channel"), "{l}");
            let channel = words.next().expect("channel");
            let mut s = format!("{perf} ch{channel}");
            if words.next() == Some("payload") {
                s.push_str(&format!(" payload={}", words.next().expect("size")));
            }
            s
        })
        .collect()
}

/// Our decoding of a trace in the shape of [`proton_listing`].
fn our_listing(t: &Trace) -> Vec<String> {
    t.units
        .iter()
        .map(|u| match u {
            Unit::Header { header, .. } => format!(
                "hdr {}",
                fixture_support::hex(&header.to_bytes()).replace(' ', "")
            ),
            Unit::Frame {
                channel,
                frame: Frame::Sasl(s),
                ..
            } => {
                let n = match s {
                    SaslFrame::Mechanisms(_) => "sasl-mechanisms",
                    SaslFrame::Init(_) => "sasl-init",
                    SaslFrame::Challenge(_) => "sasl-challenge",
                    SaslFrame::Response(_) => "sasl-response",
                    SaslFrame::Outcome(_) => "sasl-outcome",
                };
                format!("{n} ch{channel}")
            }
            Unit::Frame {
                channel,
                frame:
                    Frame::Amqp {
                        performative,
                        payload,
                        ..
                    },
                ..
            } => {
                let mut s = format!("{} ch{channel}", performative.name());
                if let Performative::Transfer(_) = performative {
                    s.push_str(&format!(" payload={}", payload.len()));
                }
                s
            }
            Unit::Frame {
                channel,
                frame: Frame::Empty { .. },
                ..
            } => format!("empty ch{channel}"),
        })
        .collect()
}

/// Checks a trace against Proton's listing and `expected`, re-encodes every
/// frame, and returns the (exact, value-only) counts.
fn check_trace(t: &Trace, expected: &[(Enc, String)]) -> (usize, usize) {
    let theirs = proton_listing(&t.name);
    let ours = our_listing(t);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "{}: unit {i} differs from Proton's listing", t.name);
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{}: unit count vs Proton's listing",
        t.name
    );
    assert_summaries(&t.name, &t.units, expected);
    check_units_reencode(&t.name, &t.units, expected)
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

fn line(enc: Enc, s: impl Into<String>) -> (Enc, String) {
    (enc, s.into())
}

/// fe2o3's delivery tags: the delivery count as a big-endian u32.
fn tag_be(n: u32) -> String {
    n.to_be_bytes().escape_ascii().to_string()
}

/// The payload size Proton lists for unit `i` of trace `name`.
fn listed_payload(name: &str, i: usize) -> usize {
    let l = &proton_listing(name)[i];
    l.rsplit_once("payload=")
        .map(|(_, n)| n.parse().expect("size"))
        .unwrap_or_else(|| panic!("{l}"))
}

fn decode(d: &Delivery) -> Message {
    Message::decode_all(&d.payload).unwrap_or_else(|e| panic!("delivery {:?}: {e}", d.delivery_id))
}

fn app_prop<'a>(m: &'a Message, key: &str) -> &'a Value {
    m.application_properties
        .as_ref()
        .expect("application properties")
        .get(&ByteString::from(key))
        .unwrap_or_else(|| panic!("no application property {key}"))
}

fn annotation<'a>(m: &'a Message, key: &'static str) -> &'a Value {
    m.message_annotations
        .as_ref()
        .expect("message annotations")
        .get(&AnnotationKey::Symbol(sym(key)))
        .unwrap_or_else(|| panic!("no annotation {key}"))
}

/// A CBS put-token request from the SDK for `audience`.
fn assert_put_token(m: &Message, audience: &str) {
    let p = m.properties.as_ref().expect("properties");
    assert_eq!(p.message_id, Some(MessageId::Ulong(0)));
    assert_eq!(p.reply_to.as_deref(), Some("rust_amqp_cbs"));
    assert_eq!(app_prop(m, "name"), &vstr(audience));
    assert_eq!(app_prop(m, "operation"), &vstr("put-token"));
    assert_eq!(
        app_prop(m, "type"),
        &vstr("servicebus.windows.net:sastoken")
    );
    assert_eq!(
        app_prop(m, "expiration"),
        &Value::Timestamp(Timestamp(1_795_799_249_000))
    );
    let Body::Value(Value::String(token)) = &m.body else {
        panic!("token body {:?}", m.body)
    };
    assert!(token.starts_with(SAS_PREFIX), "{token}");
    assert!(
        token.ends_with("&se=1795799249&skn=RootManageSharedAccessKey"),
        "{token}"
    );
}

/// A management READ request from the SDK.
fn assert_mgmt_read(m: &Message, id: u64, partition: Option<&str>) {
    let p = m.properties.as_ref().expect("properties");
    assert_eq!(p.message_id, Some(MessageId::Ulong(id)));
    assert_eq!(p.reply_to.as_deref(), Some("eventhubs_management"));
    assert_eq!(app_prop(m, "name"), &vstr("eh1"));
    assert_eq!(app_prop(m, "operation"), &vstr("READ"));
    let Value::String(token) = app_prop(m, "security_token") else {
        panic!("token")
    };
    assert!(token.starts_with(SAS_PREFIX));
    match partition {
        Some(pid) => {
            assert_eq!(app_prop(m, "partition"), &vstr(pid));
            assert_eq!(app_prop(m, "type"), &vstr("com.microsoft:partition"));
        }
        None => assert_eq!(app_prop(m, "type"), &vstr("com.microsoft:eventhub")),
    }
    assert_eq!(m.body, Body::Value(Value::Null));
}

/// A management or CBS response from the broker.
fn assert_response(m: &Message, to: &str, correlation: u64, code: i32, description: &str) {
    assert_eq!(m.header, Some(Default::default()));
    let p = m.properties.as_ref().expect("properties");
    assert_eq!(p.to.as_deref(), Some(to));
    assert_eq!(p.correlation_id, Some(MessageId::Ulong(correlation)));
    assert_eq!(app_prop(m, "status-code"), &Value::Int(code));
    assert_eq!(app_prop(m, "status-description"), &vstr(description));
}

fn map_get<'a>(v: &'a Value, key: &str) -> &'a Value {
    let Value::Map(m) = v else {
        panic!("not a map: {v:?}")
    };
    m.get(&vstr(key)).unwrap_or_else(|| panic!("no key {key}"))
}

/// The SDK's CBS link pair on `ch`, its put-token, and the teardown.
fn cbs_lines(ch: u16, payload: usize) -> Vec<(Enc, String)> {
    vec![
        line(E, format!("ch{ch} attach rust_amqp_cbs-mgmt-sender h=0 sender src=- tgt=$cbs")),
        line(E, format!("ch{ch} attach rust_amqp_cbs-mgmt-receiver h=1 receiver src=$cbs tgt=rust_amqp_cbs")),
        line(E, format!("ch{ch} flow h=1 next-in=0 next-out=0 dc=0 credit=200 drain=false")),
        line(
            E,
            format!("ch{ch} transfer h=0 id=0 tag={} fmt=0x0 settled=false more=false payload={payload}", tag_be(0)),
        ),
        line(E, format!("ch{ch} disposition receiver first=0 last=- settled=true state=accepted")),
    ]
}

fn client_preamble() -> Vec<(Enc, String)> {
    vec![
        line(E, "hdr Sasl"),
        line(E, "sasl-init ANONYMOUS resp=- host=127.0.0.1"),
        line(E, "hdr Amqp"),
    ]
}

fn broker_preamble() -> Vec<(Enc, String)> {
    vec![
        line(E, "hdr Sasl"),
        line(E, "sasl-mechanisms ANONYMOUS"),
        line(E, "sasl-outcome Ok"),
        line(E, "hdr Amqp"),
        line(
            E,
            "ch0 open id= host=- max-frame=32768 channel-max=255 idle=-",
        ),
    ]
}

/// Checks the SDK's open frame.
fn assert_sdk_open(u: &Unit, container: &str) {
    let Performative::Open(o) = perf(u) else {
        panic!("not open")
    };
    assert_eq!(o.container_id, container);
    assert_eq!(
        o.desired_capabilities,
        vec![sym("com.microsoft.georeplication")]
    );
    assert!(o.offered_capabilities.is_empty());
    let props = o.properties.as_ref().expect("properties");
    assert_eq!(
        props.get(&sym("user-agent")),
        Some(&vstr(
            "azsdk-rust-messaging_eventhubs/0.16.0 (1.95.0; linux; x86_64)"
        ))
    );
    assert_eq!(props.get(&sym("version")), Some(&vstr("0.16.0")));
    assert_eq!(props.get(&sym("platform")), Some(&vstr("linux")));
    assert_eq!(
        props.get(&sym("product")),
        Some(&vstr("azure_messaging_eventhubs"))
    );
}

/// Every data body decoded from a frame is a slice of that frame.
fn assert_zero_copy(t: &Trace) {
    let mut checked = 0;
    for u in &t.units {
        let Unit::Frame {
            raw,
            frame:
                Frame::Amqp {
                    performative: Performative::Transfer(_),
                    payload,
                    ..
                },
            ..
        } = u
        else {
            continue;
        };
        let m = Message::decode_all(payload).expect("decodes");
        if let Body::Data(sections) = &m.body {
            let range = raw.as_ptr_range();
            for s in sections {
                assert!(
                    range.contains(&s.as_ptr()) && s.as_ptr_range().end <= range.end,
                    "{}: copied",
                    t.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "{}: no data body", t.name);
}

const SINGLE_EVENT_ID: &str = "a665575d-b333-4ce7-a4d8-c7bf61c6f945";
const BATCH_FIRST_ID: &str = "3f9c600a-3c5e-4494-8fce-f1e4a4d879a3";
const LAST_EVENT_ID: &str = "147cdd45-3034-4301-ab7b-0efebfa94b9e";

#[test]
fn producer_client() {
    let t = load("producer.client");
    let mut expected = client_preamble();
    expected.extend([
        // fe2o3 writes desired-capabilities as array8 with a sym32 element
        // constructor; we use sym8.
        line(V, "ch0 open id=ff319d72-5b2b-4ee0-989a-7255c438246a host=localhost max-frame=65536 channel-max=255 idle=-"),
        line(E, "ch0 begin remote=- next-out=0 in-win=2048 out-win=2048"),
        line(E, "ch1 begin remote=- next-out=0 in-win=2048 out-win=2048"),
    ]);
    expected.extend(cbs_lines(1, 312));
    expected.extend([
        line(E, "ch1 detach h=0 closed=true err=-"),
        line(E, "ch1 detach h=1 closed=true err=-"),
        line(E, "ch1 end err=-"),
        line(E, "ch0 attach eventhubs_management-mgmt-sender h=0 sender src=- tgt=$management"),
        line(
            E,
            "ch0 attach eventhubs_management-mgmt-receiver h=1 receiver src=$management tgt=eventhubs_management",
        ),
        line(E, "ch0 flow h=1 next-in=0 next-out=0 dc=0 credit=200 drain=false"),
        line(E, format!("ch0 transfer h=0 id=0 tag={} fmt=0x0 settled=false more=false payload=271", tag_be(0))),
        line(E, "ch0 disposition receiver first=0 last=- settled=true state=accepted"),
        line(E, format!("ch0 transfer h=0 id=1 tag={} fmt=0x0 settled=false more=false payload=287", tag_be(1))),
        line(E, "ch0 disposition receiver first=1 last=- settled=true state=accepted"),
        line(E, "ch1 begin remote=- next-out=0 in-win=2048 out-win=2048"),
    ]);
    expected.extend(cbs_lines(1, 313));
    expected.extend([
        line(E, "ch1 detach h=0 closed=true err=-"),
        line(E, "ch1 detach h=1 closed=true err=-"),
        line(E, "ch1 end err=-"),
        line(E, "ch2 begin remote=- next-out=0 in-win=4294967295 out-win=4294967295"),
        line(E, "ch2 attach DefaultApplicationName-rust-sender h=0 sender src=- tgt=amqps://localhost/eh1/Partitions/0"),
        line(E, format!("ch2 transfer h=0 id=0 tag={} fmt=0x0 settled=false more=false payload=42", tag_be(0))),
        line(
            E,
            format!("ch2 transfer h=0 id=1 tag={} fmt=0x80013700 settled=false more=false payload=2163", tag_be(1)),
        ),
        line(E, format!("ch0 transfer h=0 id=2 tag={} fmt=0x0 settled=false more=false payload=287", tag_be(2))),
        line(E, "ch0 disposition receiver first=2 last=- settled=true state=accepted"),
        line(E, "ch0 detach h=0 closed=true err=-"),
        line(E, "ch0 detach h=1 closed=true err=-"),
        line(E, "ch0 end err=-"),
        line(E, "ch2 detach h=0 closed=false err=-"),
        line(E, "ch2 end err=-"),
        line(E, "ch0 close err=-"),
    ]);
    assert_eq!(check_trace(&t, &expected), (39, 1));
    assert_sdk_open(&t.units[3], "ff319d72-5b2b-4ee0-989a-7255c438246a");
    let Performative::Begin(b) = perf(&t.units[4]) else {
        panic!()
    };
    assert_eq!(b.handle_max, u32::MAX);
    let Performative::Attach(a) = perf(&t.units[6]) else {
        panic!()
    };
    assert_eq!(
        (a.role, a.initial_delivery_count, a.max_message_size),
        (Role::Sender, Some(0), None)
    );

    let ds = deliveries(&t.name, &t.units);
    assert_eq!(ds.len(), 7);
    assert!(ds.iter().all(|d| d.frames == 1 && d.settled == Some(false)));
    assert_put_token(&decode(&ds[0]), "amqps://localhost/eh1/$management");
    assert_mgmt_read(&decode(&ds[1]), 0, None);
    assert_mgmt_read(&decode(&ds[2]), 1, Some("0"));
    assert_put_token(&decode(&ds[3]), "amqps://localhost/eh1/Partitions/0");
    assert_mgmt_read(&decode(&ds[6]), 2, Some("0"));

    let single = decode(&ds[4]);
    assert_eq!(
        single
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone()),
        Some(MessageId::Uuid(uuid(SINGLE_EVENT_ID)))
    );
    assert_eq!(
        single.body,
        Body::Data(vec![Bytes::from_static(b"ms-4943-single")])
    );

    // The batch: format 0x80013700, one data section per event.
    assert_eq!(ds[5].format, Some(BATCH_MESSAGE_FORMAT));
    let batch = decode(&ds[5]);
    assert_eq!(
        batch.properties.as_ref().and_then(|p| p.message_id.clone()),
        Some(MessageId::Uuid(uuid(BATCH_FIRST_ID)))
    );
    let events = batch.unbatch().expect("unbatch");
    assert_eq!(events.len(), 50);
    let Body::Data(sections) = &batch.body else {
        panic!()
    };
    let range = ds[5].payload.as_ptr_range();
    for (i, (e, section)) in events.iter().zip(sections).enumerate() {
        assert_eq!(
            e.body,
            Body::Data(vec![Bytes::from(format!("ms-4943-{i}"))]),
            "event {i}"
        );
        assert!(
            matches!(&e.properties, Some(p) if matches!(p.message_id, Some(MessageId::Uuid(_))))
        );
        assert_eq!(
            (&e.header, &e.message_annotations, &e.application_properties),
            (&None, &None, &None)
        );
        // The inner events share the transfer's buffer.
        let Body::Data(b) = &e.body else {
            unreachable!()
        };
        assert!(range.contains(&b[0].as_ptr()), "event {i} was copied");
        // fe2o3 encodes the events as we do.
        check_reencode(&format!("batch event {i}"), e, section, E);
    }
    assert_eq!(
        events[0]
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone()),
        Some(MessageId::Uuid(uuid(BATCH_FIRST_ID)))
    );
    assert_eq!(
        events[49]
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone()),
        Some(MessageId::Uuid(uuid(LAST_EVENT_ID)))
    );

    // fe2o3's messages are byte-exact, the batch envelope included.
    for (i, d) in ds.iter().enumerate() {
        check_reencode(&format!("producer delivery {i}"), &decode(d), &d.payload, E);
    }

    // Our batch encoder, given the envelope and the 50 events, writes
    // exactly the bytes fe2o3 sent.
    let envelope = Message {
        body: Body::Empty,
        ..batch.clone()
    };
    let b = Batch {
        envelope: &envelope,
        events: &events,
    };
    let ours = b.to_bytes();
    assert_eq!(b.encoded_len(), ours.len());
    assert_eq!(
        fixture_support::hex(&ours),
        fixture_support::hex(&ds[5].payload)
    );
    let section_lens: usize = events
        .iter()
        .map(|e| batch_section_len(e, Form::Compact))
        .sum();
    assert_eq!(
        section_lens,
        ds[5].payload.len() - envelope.encoded_len(),
        "data sections of the batch"
    );
    assert_zero_copy(&t);
}

#[test]
fn producer_broker() {
    let t = load("producer.broker");
    let win = "in-win=2147483647 out-win=2147483647";
    let cbs = |ch: u16| {
        vec![
            // Proton writes the settle modes and terminus defaults out.
            line(V, format!("ch{ch} attach rust_amqp_cbs-mgmt-sender h=0 receiver src=- tgt=$cbs")),
            line(V, format!("ch{ch} flow h=0 next-in=0 next-out=0 dc=0 credit=300 drain=false")),
            line(V, format!("ch{ch} attach rust_amqp_cbs-mgmt-receiver h=1 sender src=$cbs tgt=rust_amqp_cbs")),
            line(V, format!("ch{ch} flow h=0 next-in=1 next-out=0 dc=1 credit=300 drain=false")),
            line(E, format!("ch{ch} transfer h=1 id=0 tag=1 fmt=0x0 settled=- more=false payload=95")),
            line(E, format!("ch{ch} disposition receiver first=0 last=- settled=true state=accepted")),
        ]
    };
    let mut expected = broker_preamble();
    expected.extend([
        line(E, format!("ch0 begin remote=0 next-out=0 {win}")),
        line(E, format!("ch1 begin remote=1 next-out=0 {win}")),
    ]);
    expected.extend(cbs(1));
    expected.extend([
        line(V, "ch0 attach eventhubs_management-mgmt-sender h=0 receiver src=- tgt=$management"),
        line(V, "ch0 flow h=0 next-in=0 next-out=0 dc=0 credit=300 drain=false"),
        line(E, "ch1 detach h=0 closed=true err=-"),
        line(E, "ch1 detach h=1 closed=true err=-"),
        line(E, "ch1 end err=-"),
        line(V, "ch0 attach eventhubs_management-mgmt-receiver h=1 sender src=$management tgt=eventhubs_management"),
        line(V, "ch0 flow h=0 next-in=1 next-out=0 dc=1 credit=300 drain=false"),
        line(E, "ch0 transfer h=1 id=0 tag=1 fmt=0x0 settled=- more=false payload=254"),
        line(E, "ch0 disposition receiver first=0 last=- settled=true state=accepted"),
        line(V, "ch0 flow h=0 next-in=2 next-out=1 dc=2 credit=300 drain=false"),
        line(E, "ch0 transfer h=1 id=1 tag=2 fmt=0x0 settled=- more=false payload=337"),
        line(E, "ch0 disposition receiver first=1 last=- settled=true state=accepted"),
        line(E, format!("ch1 begin remote=1 next-out=0 {win}")),
    ]);
    expected.extend(cbs(1));
    expected.extend([
        line(E, format!("ch2 begin remote=2 next-out=0 {win}")),
        line(E, "ch1 detach h=0 closed=true err=-"),
        line(E, "ch1 detach h=1 closed=true err=-"),
        line(E, "ch1 end err=-"),
        line(V, "ch2 attach DefaultApplicationName-rust-sender h=0 receiver src=- tgt=amqps://localhost/eh1/Partitions/0"),
        line(V, "ch2 flow h=0 next-in=0 next-out=0 dc=0 credit=300 drain=false"),
        line(V, "ch2 flow h=0 next-in=1 next-out=0 dc=1 credit=300 drain=false"),
        line(E, "ch2 disposition receiver first=0 last=- settled=true state=accepted"),
        line(V, "ch2 flow h=0 next-in=2 next-out=0 dc=2 credit=300 drain=false"),
        line(E, "ch2 disposition receiver first=1 last=- settled=true state=accepted"),
        line(V, "ch0 flow h=0 next-in=3 next-out=2 dc=3 credit=300 drain=false"),
        line(E, "ch0 transfer h=1 id=2 tag=3 fmt=0x0 settled=- more=false payload=338"),
        line(E, "ch0 disposition receiver first=2 last=- settled=true state=accepted"),
        line(E, "ch0 detach h=0 closed=true err=-"),
        line(E, "ch0 detach h=1 closed=true err=-"),
        line(E, "ch0 end err=-"),
        line(E, "ch2 detach h=0 closed=false err=-"),
        line(E, "ch2 end err=-"),
        line(E, "ch0 close err=-"),
    ]);
    assert_eq!(check_trace(&t, &expected), (31, 18));
    let Performative::Attach(a) = perf(&t.units[7]) else {
        panic!()
    };
    assert_eq!(a.max_message_size, Some(1_048_576));
    let Performative::Begin(b) = perf(&t.units[5]) else {
        panic!()
    };
    assert_eq!(b.handle_max, 0x7fff_ffff);

    let ds = deliveries(&t.name, &t.units);
    assert_eq!(ds.len(), 5);
    let ms: Vec<Message> = ds.iter().map(decode).collect();
    assert_response(&ms[0], "rust_amqp_cbs", 0, 202, "Accepted");
    assert_eq!(ms[0].body, Body::Value(vstr("")));
    assert_response(&ms[1], "eventhubs_management", 0, 200, "OK");
    let Body::Value(hub) = &ms[1].body else {
        panic!()
    };
    assert_eq!(map_get(hub, "name"), &vstr("eh1"));
    assert_eq!(map_get(hub, "partition_count"), &Value::Int(4));
    assert_eq!(map_get(hub, "type"), &vstr("com.microsoft:eventhub"));
    let Value::Array(ids) = map_get(hub, "partition_ids") else {
        panic!("partition_ids")
    };
    assert_eq!(ids.items(), ["0", "1", "2", "3"].map(vstr).as_slice());
    assert!(matches!(map_get(hub, "created_at"), Value::Timestamp(_)));
    assert_response(&ms[2], "eventhubs_management", 1, 200, "OK");
    let Body::Value(before) = &ms[2].body else {
        panic!()
    };
    assert_eq!(map_get(before, "partition"), &vstr("0"));
    assert_eq!(
        map_get(before, "last_enqueued_sequence_number"),
        &Value::Long(-1)
    );
    assert_eq!(map_get(before, "is_partition_empty"), &Value::Bool(true));
    assert_response(&ms[3], "rust_amqp_cbs", 0, 202, "Accepted");
    assert_response(&ms[4], "eventhubs_management", 2, 200, "OK");
    let Body::Value(after) = &ms[4].body else {
        panic!()
    };
    assert_eq!(map_get(after, "begin_sequence_number"), &Value::Long(0));
    assert_eq!(
        map_get(after, "last_enqueued_sequence_number"),
        &Value::Long(50)
    );
    assert_eq!(map_get(after, "last_enqueued_offset"), &vstr("100"));
    assert_eq!(map_get(after, "is_partition_empty"), &Value::Bool(false));
    // Proton's map32 sections: value-equal only.
    for (d, m) in ds.iter().zip(&ms) {
        check_reencode("broker response", m, &d.payload, V);
    }
}

/// The three receivers' filters, in order.
const FILTERS: [&str; 3] = [
    "amqp.annotation.x-opt-sequence-number >'-1'",
    "amqp.annotation.x-opt-sequence-number >='0'",
    "amqp.annotation.x-opt-offset > '-1'",
];
const RECEIVERS: [&str; 3] = [
    "0b1e1320-16f6-498b-823d-b78e6b5063b1",
    "188f06f4-2f6c-4cae-972f-23218bcc0a7c",
    "2cb066f6-a4e7-491f-9969-8b314eec7047",
];

fn assert_selector(u: &Unit, i: usize) {
    let Performative::Attach(a) = perf(u) else {
        panic!("not attach")
    };
    assert_eq!(a.name, RECEIVERS[i]);
    let s = a.source.as_ref().expect("source");
    assert_eq!(s.address.as_deref(), Some(CONSUMER_SOURCE));
    let filter = s.filter.as_ref().expect("filter");
    assert_eq!(filter.len(), 1);
    let Some(Value::Described(d)) = filter.get(&sym("apache.org:selector-filter:string")) else {
        panic!("no selector: {filter:?}")
    };
    assert_eq!(d.descriptor, Descriptor::Code(SELECTOR_CODE));
    assert_eq!(d.value, vstr(FILTERS[i]));
}

#[test]
fn consumer_client() {
    let t = load("consumer.client");
    let mut expected = client_preamble();
    expected.extend([
        line(V, "ch0 open id=14443cbe-c28e-4858-8584-420b91afc0cd host=localhost max-frame=65536 channel-max=255 idle=-"),
        line(E, "ch0 begin remote=- next-out=0 in-win=2048 out-win=2048"),
    ]);
    expected.extend(cbs_lines(0, 337));
    expected.extend([
        line(E, "ch0 detach h=0 closed=true err=-"),
        line(E, "ch0 detach h=1 closed=true err=-"),
        line(E, "ch0 end err=-"),
        line(
            E,
            "ch1 begin remote=- next-out=0 in-win=4294967295 out-win=4294967295",
        ),
    ]);
    for (i, name) in RECEIVERS.iter().enumerate() {
        expected.extend([
            // fe2o3 writes the filter and link properties as map8: exact.
            line(
                E,
                format!("ch1 attach {name} h=0 receiver src={CONSUMER_SOURCE} tgt=-"),
            ),
            line(
                E,
                format!(
                    "ch1 flow h=0 next-in={} next-out=0 dc=0 credit=300 drain=false",
                    51 * i
                ),
            ),
            // Receivers are detached without closed.
            line(E, "ch1 detach h=0 closed=false err=-"),
        ]);
    }
    expected.extend([line(E, "ch1 end err=-"), line(E, "ch0 close err=-")]);
    assert_eq!(check_trace(&t, &expected), (22, 1));
    assert_sdk_open(&t.units[3], "14443cbe-c28e-4858-8584-420b91afc0cd");
    for (i, receiver) in RECEIVERS.iter().enumerate() {
        let u = &t.units[14 + 3 * i];
        assert_selector(u, i);
        let Performative::Attach(a) = perf(u) else {
            unreachable!()
        };
        assert_eq!(
            a.properties
                .as_ref()
                .and_then(|p| p.get(&sym("com.microsoft.com:receiver-name"))),
            Some(&vstr(receiver))
        );
        assert_eq!(a.target.as_ref().map(|t| t.address.is_none()), Some(true));
    }
    let ds = deliveries(&t.name, &t.units);
    assert_eq!(ds.len(), 1);
    let m = decode(&ds[0]);
    assert_put_token(
        &m,
        "amqps://localhost/eh1/ConsumerGroups/$Default/Partitions/0",
    );
    check_reencode("consumer put-token", &m, &ds[0].payload, E);
}

#[test]
fn consumer_broker() {
    let t = load("consumer.broker");
    let win = "in-win=2147483647 out-win=2147483647";
    let mut expected = broker_preamble();
    expected.extend([
        line(E, format!("ch0 begin remote=0 next-out=0 {win}")),
        line(
            V,
            "ch0 attach rust_amqp_cbs-mgmt-sender h=0 receiver src=- tgt=$cbs",
        ),
        line(
            V,
            "ch0 flow h=0 next-in=0 next-out=0 dc=0 credit=300 drain=false",
        ),
        line(
            V,
            "ch0 attach rust_amqp_cbs-mgmt-receiver h=1 sender src=$cbs tgt=rust_amqp_cbs",
        ),
        line(
            V,
            "ch0 flow h=0 next-in=1 next-out=0 dc=1 credit=300 drain=false",
        ),
        line(
            E,
            "ch0 transfer h=1 id=0 tag=1 fmt=0x0 settled=- more=false payload=95",
        ),
        line(
            E,
            "ch0 disposition receiver first=0 last=- settled=true state=accepted",
        ),
        line(E, format!("ch1 begin remote=1 next-out=0 {win}")),
        line(E, "ch0 detach h=0 closed=true err=-"),
        line(E, "ch0 detach h=1 closed=true err=-"),
        line(E, "ch0 end err=-"),
    ]);
    for (r, name) in RECEIVERS.iter().enumerate() {
        expected.push(line(
            V,
            format!("ch1 attach {name} h=0 sender src={CONSUMER_SOURCE} tgt=-"),
        ));
        for seq in 0..51u32 {
            let i = expected.len();
            let id = 51 * r as u32 + seq;
            let payload = listed_payload("consumer.broker", i);
            // Pre-settled events; tags count from "1" on each link.
            expected.push(line(
                E,
                format!("ch1 transfer h=0 id={id} tag={} fmt=0x0 settled=true more=false payload={payload}", seq + 1),
            ));
        }
        expected.push(line(E, "ch1 detach h=0 closed=false err=-"));
    }
    expected.extend([line(E, "ch1 end err=-"), line(E, "ch0 close err=-")]);
    assert_eq!(check_trace(&t, &expected), (168, 7));
    for r in 0..3 {
        assert_selector(&t.units[16 + 53 * r], r);
    }

    // The producer's events, in order, on each of the three receivers.
    let producer = load("producer.client");
    let pd = deliveries(&producer.name, &producer.units);
    let mut sent = vec![decode(&pd[4])];
    sent.extend(decode(&pd[5]).unbatch().expect("unbatch"));
    assert_eq!(sent.len(), 51);

    let ds = deliveries(&t.name, &t.units);
    assert_eq!(ds.len(), 1 + 3 * 51);
    assert_response(&decode(&ds[0]), "rust_amqp_cbs", 0, 202, "Accepted");
    let mut enqueued = Vec::new();
    for (k, d) in ds[1..].iter().enumerate() {
        let seq = k % 51;
        assert_eq!(d.delivery_id, Some(k as u32));
        assert_eq!(d.settled, Some(true));
        let m = decode(d);
        assert_eq!(
            annotation(&m, "x-opt-sequence-number"),
            &Value::Long(seq as i64)
        );
        assert_eq!(
            annotation(&m, "x-opt-offset"),
            &vstr(&(2 * seq).to_string())
        );
        let Value::Timestamp(at) = annotation(&m, "x-opt-enqueued-time") else {
            panic!("enqueued time")
        };
        if k < 51 {
            enqueued.push(*at);
        } else {
            assert_eq!(*at, enqueued[seq], "same event, same enqueued time");
        }
        let p = m.properties.as_ref().expect("properties");
        let sent_id = sent[seq]
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone());
        assert_eq!(p.message_id, sent_id, "event {seq} id");
        assert_eq!(m.body, sent[seq].body, "event {seq} body");
        let expected_body = if seq == 0 {
            "ms-4943-single".to_owned()
        } else {
            format!("ms-4943-{}", seq - 1)
        };
        assert_eq!(m.body, Body::Data(vec![Bytes::from(expected_body)]));
        check_reencode(&format!("event {k}"), &m, &d.payload, V);
    }
    assert_eq!(enqueued[0], Timestamp(1_795_795_649_655));
    assert!(enqueued.windows(2).all(|w| w[0] <= w[1]));
    let last = decode(&ds[51]).properties.and_then(|p| p.message_id);
    assert_eq!(last, Some(MessageId::Uuid(uuid(LAST_EVENT_ID))));
    assert_zero_copy(&t);
}

/// Every frame of every trace re-encodes in the full form to the same value
/// too (checked by `check_units_reencode`); here, the whole traces decode
/// again from our own compact encoding of them, frame after frame.
#[test]
fn traces_reencode_as_whole_streams() {
    for name in [
        "producer.client",
        "producer.broker",
        "consumer.client",
        "consumer.broker",
    ] {
        let t = load(name);
        let mut ours = Vec::new();
        for u in &t.units {
            match u {
                Unit::Header { header, .. } => ours.extend_from_slice(&header.to_bytes()),
                Unit::Frame {
                    frame: Frame::Sasl(s),
                    ..
                } => encode_sasl_frame(&mut ours, s, Form::Compact),
                Unit::Frame {
                    frame:
                        Frame::Amqp {
                            channel,
                            performative,
                            payload,
                        },
                    ..
                } => encode_amqp_frame(&mut ours, *channel, performative, payload, Form::Compact),
                Unit::Frame { raw, .. } => ours.extend_from_slice(raw),
            }
        }
        let again = fixture_support::split_stream(name, &Bytes::from(ours));
        assert_eq!(again.len(), t.units.len());
        for (a, b) in again.iter().zip(&t.units) {
            assert_eq!(summary(a), summary(b));
            if let (Unit::Frame { frame: fa, .. }, Unit::Frame { frame: fb, .. }) = (a, b) {
                assert_eq!(fa, fb);
            }
        }
    }
}

// --------------------------------------------------------- negative tests

/// Every SDK and broker frame body cut anywhere fails to decode; a frame
/// whose size field says it ends early fails too.
#[test]
fn truncated_trace_frames_are_errors() {
    let mut cuts = 0;
    for name in [
        "producer.client",
        "producer.broker",
        "consumer.client",
        "consumer.broker",
    ] {
        let t = load(name);
        for u in &t.units {
            let Unit::Frame {
                offset,
                raw,
                frame,
                body,
                ..
            } = u
            else {
                continue;
            };
            for n in 0..body.len() {
                let short = body.slice(..n);
                let ok = match frame {
                    Frame::Sasl(_) => SaslFrame::decode_all(&short).is_ok(),
                    _ => Performative::decode_all(&short).is_ok(),
                };
                assert!(
                    !ok,
                    "{name}@{offset}: body cut to {n} of {} decoded",
                    body.len()
                );
                if n > 0 {
                    let mut v = raw[..8 + n].to_vec();
                    v[..4].copy_from_slice(&((8 + n) as u32).to_be_bytes());
                    assert!(
                        Frame::decode(&Bytes::from(v)).is_err(),
                        "{name}@{offset}: frame cut to {n}"
                    );
                }
                cuts += 1;
            }
        }
    }
    assert!(cuts > 7000, "{cuts}");
}

/// Event payloads cut short: an error, or (when cut exactly between two
/// sections) a message with fewer sections; a batch cut inside an event
/// fails to unbatch.
#[test]
fn truncated_trace_messages() {
    let t = load("producer.client");
    let ds = deliveries(&t.name, &t.units);
    let batch = &ds[5].payload;
    let full = Message::decode_all(batch).expect("decodes");
    let Body::Data(sections) = &full.body else {
        panic!()
    };
    let mut boundaries = 0;
    for n in 0..batch.len() {
        if let Ok(m) = Message::decode_all(&batch.slice(..n)) {
            boundaries += 1;
            let Body::Data(s) = &m.body else {
                assert_eq!(m.body, Body::Empty);
                continue;
            };
            assert!(s.len() < sections.len());
            assert_eq!(m.unbatch().expect("whole events").len(), s.len());
        }
    }
    // Cut before the properties, after them, and after each of the first
    // 49 data sections.
    assert_eq!(boundaries, 1 + 1 + 49);
    // A data section whose bytes are a cut event fails to unbatch.
    let mut cut = full.clone();
    let Body::Data(s) = &mut cut.body else {
        unreachable!()
    };
    s[7] = s[7].slice(..s[7].len() - 3);
    assert!(cut.unbatch().is_err());
    assert_eq!(cut.encoded_len(), cut.to_bytes().len());
}
