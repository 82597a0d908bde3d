//! Deterministic simulations of the client core (eventhubs-proto's
//! `Client`) against the broker model, under a virtual clock and a seeded
//! network. A failing seed reproduces exactly: rerun with
//! `SIM_SEED=<seed> cargo test -p eventhubs-emulator --test client_sim`.

mod sim;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use eventhubs_emulator::EmulatorConfig;
use eventhubs_proto::client::{
    ClientError, ClientEvent, EventData, OpId, ReceivedEvent, ReceiverId, ReceiverOptions,
};
use eventhubs_proto::codec::{Timestamp, Value};
use eventhubs_proto::eventhubs::EventPosition;
use sim::{Network, World};

const HOUR: Duration = Duration::from_secs(3600);

fn event(id: i64, key: Option<&str>) -> EventData {
    let mut e = EventData::new(format!("event-{id}").into_bytes());
    e.set("id", Value::Long(id));
    e.partition_key = key.map(str::to_owned);
    e
}

fn id_of(e: &ReceivedEvent) -> i64 {
    e.data
        .get("id")
        .and_then(Value::as_i64)
        .expect("id property")
}

/// Sends `events` and runs until the send completes; returns its result.
fn send(
    w: &mut World,
    c: usize,
    events: Vec<EventData>,
    partition: Option<&str>,
) -> Result<(), ClientError> {
    let now = w.now();
    let op = w.peers[c]
        .client
        .send(
            now,
            events,
            partition.map(str::to_owned),
            now.instant + Duration::from_secs(60),
        )
        .unwrap();
    let mut result = None;
    let mut other = Vec::new();
    w.run_until(Duration::from_secs(120), |w| {
        for (t, ev) in w.take_events(c) {
            match ev {
                ClientEvent::SendComplete { op: o, result: r } if o == op => result = Some(r),
                ev => other.push((t, ev)),
            }
        }
        result.is_some()
    });
    w.peers[c].events.splice(0..0, other);
    result.expect("send completed")
}

/// Opens a receiver and collects events until `count` arrived or a
/// virtual minute passes.
fn receive(
    w: &mut World,
    c: usize,
    options: ReceiverOptions,
    count: usize,
) -> (ReceiverId, Vec<ReceivedEvent>) {
    let now = w.now();
    let id = w.peers[c].client.open_receiver(now, options).unwrap();
    let mut got = Vec::new();
    w.run_until(Duration::from_secs(60), |w| {
        for (_, ev) in w.take_events(c) {
            match ev {
                ClientEvent::Received { receiver, event } if receiver == id => {
                    got.push(*event);
                    let now = w.now();
                    w.peers[c].client.add_credit(now, id, 1);
                }
                ClientEvent::ReceiverClosed { receiver, error } if receiver == id => {
                    panic!("receiver closed: {error:?}")
                }
                _ => {}
            }
        }
        got.len() >= count
    });
    (id, got)
}

#[test]
fn send_and_receive_from_every_start_position() {
    let mut w = World::new(1, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(World::options(1, HOUR));
    // Ten events to partition 0, one at a time and as a batch.
    send(&mut w, c, vec![event(0, None)], Some("0")).unwrap();
    send(
        &mut w,
        c,
        (1..10).map(|i| event(i, None)).collect(),
        Some("0"),
    )
    .unwrap();
    let (r, all) = receive(
        &mut w,
        c,
        ReceiverOptions {
            position: EventPosition::Earliest,
            ..ReceiverOptions::new("0")
        },
        10,
    );
    assert_eq!(
        all.iter().map(id_of).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter()
            .map(|e| e.system.sequence_number)
            .collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let now = w.now();
    w.peers[c].client.close_receiver(now, r);
    let e5 = &all[5];
    let cases = [
        (EventPosition::sequence_number(5, true), 5),
        (EventPosition::sequence_number(5, false), 6),
        (EventPosition::offset(e5.system.offset.clone(), true), 5),
        (EventPosition::offset(e5.system.offset.clone(), false), 6),
        (EventPosition::enqueued_time(Timestamp(0), true), 0),
    ];
    for (position, first) in cases {
        let (r, got) = receive(
            &mut w,
            c,
            ReceiverOptions {
                position: position.clone(),
                ..ReceiverOptions::new("0")
            },
            10 - first as usize,
        );
        assert_eq!(got.first().map(id_of), Some(first), "{position}");
        assert_eq!(got.len(), 10 - first as usize, "{position}");
        let now = w.now();
        w.peers[c].client.close_receiver(now, r);
    }
    // Latest: only what is sent after the receiver attached.
    let now = w.now();
    let latest = w.peers[c]
        .client
        .open_receiver(now, ReceiverOptions::new("0"))
        .unwrap();
    w.run_until(Duration::from_secs(1), |_| false);
    send(&mut w, c, vec![event(10, None)], Some("0")).unwrap();
    let mut got = Vec::new();
    w.run_until(Duration::from_secs(10), |w| {
        for (_, ev) in w.take_events(c) {
            if let ClientEvent::Received { receiver, event } = ev {
                assert_eq!(receiver, latest);
                got.push(id_of(&event));
            }
        }
        !got.is_empty()
    });
    assert_eq!(got, vec![10]);
}

#[test]
fn hub_and_partition_information() {
    let mut w = World::new(2, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(World::options(2, HOUR));
    send(
        &mut w,
        c,
        (0..3).map(|i| event(i, None)).collect(),
        Some("1"),
    )
    .unwrap();
    let now = w.now();
    let deadline = now.instant + Duration::from_secs(30);
    let hub_op = w.peers[c]
        .client
        .get_hub_information(now, deadline)
        .unwrap();
    let part_op = w.peers[c]
        .client
        .get_partition_information(now, "1", deadline)
        .unwrap();
    let missing_op = w.peers[c]
        .client
        .get_partition_information(now, "9", deadline)
        .unwrap();
    let mut results: HashMap<OpId, ClientEvent> = HashMap::new();
    assert!(w.run_until(Duration::from_secs(30), |w| {
        for (_, ev) in w.take_events(c) {
            match &ev {
                ClientEvent::HubInformation { op, .. }
                | ClientEvent::PartitionInformation { op, .. } => {
                    results.insert(*op, ev);
                }
                _ => {}
            }
        }
        results.len() == 3
    }));
    let Some(ClientEvent::HubInformation { result: Ok(h), .. }) = results.get(&hub_op) else {
        panic!("{results:?}")
    };
    assert_eq!(h.path, "eh1");
    assert_eq!(h.partition_ids, vec!["0", "1"]);
    let Some(ClientEvent::PartitionInformation { result: Ok(p), .. }) = results.get(&part_op)
    else {
        panic!("{results:?}")
    };
    assert_eq!(
        (
            p.partition_id.as_str(),
            p.begin_sequence_number,
            p.last_sequence_number,
            p.is_empty
        ),
        ("1", 0, 2, false)
    );
    let Some(ClientEvent::PartitionInformation { result: Err(e), .. }) = results.get(&missing_op)
    else {
        panic!("{results:?}")
    };
    assert!(!matches!(e, ClientError::Timeout), "{e}");
}

/// Partition keys route consistently, round-robin spreads, and batches
/// grouped by key keep per-key order.
#[test]
fn partition_keys_and_round_robin() {
    let mut w = World::new(3, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(World::options(3, HOUR));
    let events: Vec<EventData> = (0..40)
        .map(|i| event(i, Some(["a", "b", "c", "d"][i as usize % 4])))
        .collect();
    send(&mut w, c, events, None).unwrap();
    for i in 40..44 {
        send(&mut w, c, vec![event(i, None)], None).unwrap();
    }
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut total = 0;
    let mut unkeyed = BTreeSet::new();
    for p in ["0", "1"] {
        let (_, got) = receive(
            &mut w,
            c,
            ReceiverOptions {
                position: EventPosition::Earliest,
                ..ReceiverOptions::new(p)
            },
            44,
        );
        total += got.len();
        let mut last: HashMap<String, i64> = HashMap::new();
        for e in &got {
            match &e.system.partition_key {
                Some(k) => {
                    by_key.entry(k.clone()).or_default().insert(p.to_owned());
                    let prev = last.insert(k.clone(), id_of(e));
                    assert!(prev.is_none_or(|x| x < id_of(e)), "order within key {k}");
                }
                None => {
                    unkeyed.insert(p.to_owned());
                }
            }
        }
    }
    assert_eq!(total, 44);
    assert!(by_key.values().all(|ps| ps.len() == 1), "{by_key:?}");
    assert_eq!(unkeyed.len(), 2, "round-robin reaches both partitions");
}
