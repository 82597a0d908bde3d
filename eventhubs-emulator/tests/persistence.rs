//! `--data-dir`: events survive a restart of the in-process emulator with
//! their sequence numbers and offsets; a torn end is dropped, other damage
//! refused.

use std::fs;
use std::path::Path;
use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::codec::message::{Message, BATCH_MESSAGE_FORMAT};
use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::{Decode, Encode, Value};
use eventhubs_proto::engine::{Event, LinkId};
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_testkit::tcp::{batch, emulator_plain, event, event_number, EngineClient as Client};
use eventhubs_testkit::TempDir;

const WAIT: Duration = Duration::from_secs(10);

fn start(dir: &Path) -> std::io::Result<Emulator> {
    Emulator::start(EmulatorConfig::default().with_data_dir(dir))
}

/// Sends `payload` and waits for it to be accepted.
fn publish(c: &mut Client, tx: LinkId, format: u32, payload: bytes::Bytes) {
    let state = c.publish(tx, format, payload);
    assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
}

/// (event number, sequence number, offset) of every event of `partition`.
fn read_all(emu: &Emulator, partition: u32, expected: usize) -> Vec<(u64, i64, String)> {
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let rx = c
        .receiver(
            &format!("eh1/ConsumerGroups/$Default/Partitions/{partition}"),
            Some(EventPosition::Earliest),
        )
        .expect("receiver");
    c.conn.link(rx).flow(1000).unwrap();
    let mut out = Vec::new();
    while out.len() < expected {
        let payload = c
            .until(WAIT, |_, e| match e {
                Event::Delivery { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("only {} of {expected} events", out.len()));
        let m = Message::decode_all(&payload).unwrap();
        let a = m.message_annotations.as_ref().unwrap();
        let seq = a
            .get("x-opt-sequence-number")
            .and_then(Value::as_i64)
            .unwrap();
        let offset = a
            .get("x-opt-offset")
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        out.push((event_number(&m).unwrap(), seq, offset));
    }
    // Nothing more.
    assert!(c
        .until(Duration::from_millis(200), |_, e| matches!(
            e,
            Event::Delivery { .. }
        )
        .then_some(()))
        .is_none());
    out
}

#[test]
fn events_survive_a_restart_with_their_numbers_and_new_ones_continue() {
    let tmp = TempDir::new("restart");
    let (p0, p1) = {
        let emu = start(&tmp.0).expect("emulator");
        let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
        let tx0 = c.sender("eh1/Partitions/0").expect("sender");
        for i in 0..5 {
            publish(&mut c, tx0, 0, event(i, 300).to_bytes());
        }
        let tx1 = c.sender("eh1/Partitions/1").expect("sender");
        let events: Vec<Message> = (100..103).map(|i| event(i, 1024)).collect();
        publish(&mut c, tx1, BATCH_MESSAGE_FORMAT, batch(&events));
        (read_all(&emu, 0, 5), read_all(&emu, 1, 3))
    };
    assert_eq!(
        p0.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]
    );
    assert!(tmp.0.join("eh1/0/00000000000000000000.log").is_file());

    let emu = start(&tmp.0).expect("restarted emulator");
    assert_eq!(read_all(&emu, 0, 5), p0, "same events, numbers and offsets");
    assert_eq!(read_all(&emu, 1, 3), p1);
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let tx0 = c.sender("eh1/Partitions/0").expect("sender");
    publish(&mut c, tx0, 0, event(5, 300).to_bytes());
    let again = read_all(&emu, 0, 6);
    assert_eq!(&again[..5], &p0[..]);
    assert_eq!(again[5].0, 5);
    assert_eq!(again[5].1, 5, "the numbering continues");
    let last_offset: u64 = p0[4].2.parse().unwrap();
    let new_offset: u64 = again[5].2.parse().unwrap();
    assert!(new_offset > last_offset);
    drop(emu);

    // Three runs: everything still there.
    let emu = start(&tmp.0).expect("third run");
    assert_eq!(read_all(&emu, 0, 6), again);
}

#[test]
fn a_torn_last_record_is_dropped_and_other_damage_is_an_error() {
    let tmp = TempDir::new("torn");
    let segment = tmp.0.join("eh1/0/00000000000000000000.log");
    let expected = {
        let emu = start(&tmp.0).expect("emulator");
        let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
        let tx = c.sender("eh1/Partitions/0").expect("sender");
        for i in 0..3 {
            publish(&mut c, tx, 0, event(i, 200).to_bytes());
        }
        read_all(&emu, 0, 3)
    };
    let good = fs::read(&segment).unwrap();
    // A crash mid-write: a record cut short, a record whose checksum fails
    // at the very end, a tail of zeros.
    let mut cut = good.clone();
    cut.extend_from_slice(&(500u32).to_le_bytes());
    cut.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    let mut bad_sum = good.clone();
    bad_sum.extend_from_slice(&(30u32).to_le_bytes());
    bad_sum.extend_from_slice(&[0xAB; 34]);
    let mut zeros = good.clone();
    zeros.extend_from_slice(&[0; 100]);
    for torn in [cut, bad_sum, zeros] {
        fs::write(&segment, &torn).unwrap();
        let emu = start(&tmp.0).expect("a torn end is not fatal");
        assert_eq!(read_all(&emu, 0, 3), expected);
        drop(emu);
        assert_eq!(fs::read(&segment).unwrap(), good, "the torn end is cut off");
    }

    // A flipped byte inside the first record is damage, not a torn write.
    let mut flipped = good.clone();
    flipped[40] ^= 0xFF;
    fs::write(&segment, &flipped).unwrap();
    let e = start(&tmp.0).err().expect("corruption is an error");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    let text = e.to_string();
    assert!(text.contains("00000000000000000000.log"), "{text}");
    assert!(
        text.contains("corrupt at byte 8: the record fails its checksum"),
        "{text}"
    );

    // Not a segment at all.
    fs::write(&segment, b"hello, world").unwrap();
    let text = start(&tmp.0).err().expect("an error").to_string();
    assert!(text.contains("not an emulator segment"), "{text}");
}

/// An idempotent producer's group and sequence number survive a restart:
/// the resend of an event acknowledged before it is a duplicate, the next
/// number is appended, a gap refused.
#[test]
fn idempotent_producer_state_survives_a_restart() {
    use eventhubs_proto::client::idempotent::{
        IDEMPOTENT_PRODUCER_CAPABILITY, PRODUCER_EPOCH, PRODUCER_ID, PRODUCER_SEQUENCE_NUMBER,
    };
    use eventhubs_proto::codec::messaging::{AnnotationKey, Annotations, Source, Target};
    use eventhubs_proto::codec::performatives::{Fields, Role};
    use eventhubs_proto::codec::Symbol;
    use eventhubs_proto::engine::LinkConfig;

    let group = 4242i64;
    let attach = |c: &mut Client| {
        let mut p = Fields::new();
        p.insert(Symbol::from_static(PRODUCER_ID), Value::Long(group));
        p.insert(Symbol::from_static(PRODUCER_EPOCH), Value::Short(3));
        p.insert(Symbol::from_static(PRODUCER_SEQUENCE_NUMBER), Value::Null);
        c.attach(LinkConfig {
            name: "idem".into(),
            role: Role::Sender,
            source: Some(Source::with_address("client")),
            target: Some(Target::with_address("eh1/Partitions/0")),
            desired_capabilities: vec![Symbol::from_static(IDEMPOTENT_PRODUCER_CAPABILITY)],
            properties: Some(p),
            ..Default::default()
        })
        .expect("idempotent sender")
    };
    let stamped = |n: u64, seq: i32| {
        let mut m = event(n, 100);
        let mut a = Annotations::new();
        a.insert(AnnotationKey::from(PRODUCER_ID), Value::Long(group));
        a.insert(AnnotationKey::from(PRODUCER_EPOCH), Value::Short(3));
        a.insert(
            AnnotationKey::from(PRODUCER_SEQUENCE_NUMBER),
            Value::Int(seq),
        );
        m.message_annotations = Some(a);
        m.to_bytes()
    };
    let outcome = |c: &mut Client, tx: LinkId, payload: bytes::Bytes| {
        while c.conn.credit(tx) == 0 {
            c.turn(Duration::from_millis(20));
        }
        let id = c.send(tx, 0, payload);
        c.until(WAIT, |_, e| match e {
            Event::Disposition {
                delivery_id,
                state: Some(s),
                ..
            } if *delivery_id == id => Some(s.clone()),
            _ => None,
        })
        .expect("an outcome")
    };
    let tmp = TempDir::new("idempotent");
    {
        let emu = start(&tmp.0).expect("emulator");
        let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
        let tx = attach(&mut c);
        for (n, seq) in [(0, 0), (1, 1), (1, 1)] {
            let s = outcome(&mut c, tx, stamped(n, seq));
            assert!(matches!(s, DeliveryState::Accepted(_)), "{s:?}");
        }
        assert_eq!(read_all(&emu, 0, 2).len(), 2);
    }
    assert!(tmp.0.join("producers.state").is_file());
    let emu = start(&tmp.0).expect("restarted emulator");
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let tx = attach(&mut c);
    let dup = outcome(&mut c, tx, stamped(1, 1));
    assert!(matches!(dup, DeliveryState::Accepted(_)), "{dup:?}");
    let gap = outcome(&mut c, tx, stamped(9, 5));
    match &gap {
        DeliveryState::Rejected(r) => assert_eq!(
            r.error.as_ref().map(|e| e.condition.as_str()),
            Some("com.microsoft:out-of-order-sequence")
        ),
        other => panic!("{other:?}"),
    }
    let next = outcome(&mut c, tx, stamped(2, 2));
    assert!(matches!(next, DeliveryState::Accepted(_)), "{next:?}");
    let all = read_all(&emu, 0, 3);
    assert_eq!(
        all.iter().map(|e| e.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "the duplicate was not appended again"
    );
}
