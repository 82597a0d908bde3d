//! Deterministic simulations of the client core (eventhubs-proto's
//! `Client`) against the broker model, under a virtual clock and a seeded
//! network. A failing seed reproduces exactly: rerun with
//! `SIM_SEED=<seed> cargo test -p eventhubs-emulator --test client_sim`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use eventhubs_emulator::{EmulatorConfig, LinkSelector};
use eventhubs_proto::client::{
    ClientError, ClientEvent, EventData, OpId, ReceivedEvent, ReceiverId, ReceiverOptions,
    SendTarget,
};
use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::codec::Symbol;
use eventhubs_proto::codec::{Timestamp, Value};
use eventhubs_proto::eventhubs::sas::SyncTokenProvider;
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_testkit::sim::{self, Network};

mod model_world;
use model_world::{world, World};

const HOUR: Duration = Duration::from_secs(3600);

fn event(id: i64, key: Option<&str>) -> EventData {
    let mut e = EventData::new(format!("event-{id}").into_bytes());
    e.set("id", Value::Long(id));
    e.partition_key = key.map(str::to_owned);
    e
}

fn id_of(e: &ReceivedEvent) -> i64 {
    e.get("id").and_then(Value::as_i64).expect("id property")
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
            SendTarget::from_partition(partition.map(str::to_owned)).unwrap(),
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
                    got.push(event);
                    let now = w.now();
                    w.peers[c].client.consumed(now, id, 1);
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
    let mut w = world(1, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(sim::options(1, HOUR));
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
        ReceiverOptions::new("0").position(EventPosition::Earliest),
        10,
    );
    assert_eq!(
        all.iter().map(id_of).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter().map(|e| e.sequence_number()).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let now = w.now();
    w.peers[c].client.close_receiver(now, r);
    let e5 = &all[5];
    let cases = [
        (EventPosition::sequence_number(5, true), 5),
        (EventPosition::sequence_number(5, false), 6),
        (EventPosition::offset(e5.offset().to_owned(), true), 5),
        (EventPosition::offset(e5.offset().to_owned(), false), 6),
        (EventPosition::enqueued_time(Timestamp(0), true), 0),
    ];
    for (position, first) in cases {
        let (r, got) = receive(
            &mut w,
            c,
            ReceiverOptions::new("0").position(position.clone()),
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
        .open_receiver(
            now,
            ReceiverOptions::new("0").position(EventPosition::Latest),
        )
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
    let mut w = world(2, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(sim::options(2, HOUR));
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
    assert!(!e.is_timeout(), "{e}");
}

/// Partition keys route consistently, round-robin spreads, and batches
/// grouped by key keep per-key order.
#[test]
fn partition_keys_and_round_robin() {
    let mut w = world(3, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(sim::options(3, HOUR));
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
            ReceiverOptions::new(p).position(EventPosition::Earliest),
            44,
        );
        total += got.len();
        let mut last: HashMap<String, i64> = HashMap::new();
        for e in &got {
            match e.partition_key() {
                Some(k) => {
                    by_key.entry(k.to_owned()).or_default().insert(p.to_owned());
                    let prev = last.insert(k.to_owned(), id_of(e));
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

/// What one seeded run saw.
#[derive(Debug, Default)]
struct Outcome {
    acked: usize,
    failed_ops: usize,
    received: usize,
    /// Events received again (the same id): at-least-once resends after a
    /// lost acknowledgement.
    duplicates: usize,
    /// Acknowledged events never received (a failure when not zero).
    lost: usize,
    /// Resent events the service acknowledged without appending again
    /// (idempotent publishing at work).
    deduplicated: u64,
    drops: u32,
    connects: u32,
    receiver_restarts: u32,
    faults: u32,
    /// A digest of every byte the client and the broker exchanged.
    wire: u64,
}

/// One seeded run: a producer sends small groups of events (to the
/// gateway, by key, to a partition) while a receiver per partition reads
/// from the start, over a network that splits, delays and cuts streams and
/// refuses connects, with tokens that expire during the run. Checks that
/// every acknowledged event is received, no event reaches the user twice,
/// sequence numbers have no gap, and every send completes by its deadline.
///
/// With `idempotent`, the client publishes idempotently: the same plan and
/// faults, but what went to the hub goes to a partition chosen on the
/// client (keys by the service's hashing, the rest round-robin), and no
/// event may be appended twice.
fn run_seed(seed: u64, idempotent: bool) -> Outcome {
    let mut rng = eventhubs_proto::eventhubs::SplitMix64::new(seed);
    let net = Network {
        max_chunk: [7, 512, 4096, 65536][rng.below(4) as usize],
        latency: Duration::from_millis(rng.below(30)),
        drop_ppm: [0, 2_000, 10_000, 30_000][rng.below(4) as usize],
        connect_fail_pct: [0, 10, 30][rng.below(3) as usize],
    };
    let token_validity = Duration::from_secs([180, 600, 7200][rng.below(3) as usize]);
    let mut w = world(seed, EmulatorConfig::default(), net);
    let mut options = sim::options(seed, token_validity);
    options.options.retry.max_retries = 10;
    options.options.retry.max_delay = Duration::from_secs(5);
    options.options.idempotent_publishing = idempotent;
    let c = w.add_client(options);
    let mut round_robin = eventhubs_proto::eventhubs::RoundRobin::new();
    let partitions = ["0", "1"];
    let mut receivers: HashMap<ReceiverId, &str> = HashMap::new();
    let prefetch = 1 + rng.below(40) as u32;
    for p in partitions {
        let now = w.now();
        let id = w.peers[c]
            .client
            .open_receiver(
                now,
                ReceiverOptions::new(p)
                    .position(EventPosition::Earliest)
                    .prefetch(prefetch),
            )
            .unwrap();
        receivers.insert(id, p);
    }
    // The sends, at random instants over the first four minutes, and one
    // after the tokens of the shortest validity had to be refreshed.
    let mut plan: Vec<(Duration, Vec<EventData>, Option<String>)> = Vec::new();
    let mut next_id = 0i64;
    for k in 0..13 {
        let at = if k == 12 {
            Duration::from_secs(400)
        } else {
            Duration::from_millis(rng.below(240_000))
        };
        let n = 1 + rng.below(8) as i64;
        let (key, partition) = match rng.below(3) {
            0 => (None, None),
            1 => (Some(["k1", "k2", "k3"][rng.below(3) as usize]), None),
            _ => (None, Some(partitions[rng.below(2) as usize].to_owned())),
        };
        let events = (next_id..next_id + n).map(|i| event(i, key)).collect();
        next_id += n;
        plan.push((at, events, partition));
    }
    plan.sort_by_key(|p| p.0);
    let mut plan = plan.into_iter().peekable();
    // Service-side faults at random instants: throttling, links detached
    // with a transient condition, slow responses.
    let mut faults: Vec<(Duration, u64)> = (0..rng.below(6))
        .map(|_| (Duration::from_millis(rng.below(300_000)), rng.next_u64()))
        .collect();
    faults.sort();
    let mut faults = faults.into_iter().peekable();
    let mut ops: HashMap<OpId, (Vec<i64>, std::time::Instant)> = HashMap::new();
    let mut out = Outcome::default();
    let mut acked_ids: BTreeSet<i64> = BTreeSet::new();
    let mut seen_ids: BTreeSet<i64> = BTreeSet::new();
    let mut last_seq: HashMap<&str, i64> = HashMap::new();
    let limit = Duration::from_secs(1800);
    let fail = |msg: String| -> ! { panic!("seed {seed}: {msg} (rerun with SIM_SEED={seed})") };
    loop {
        while plan.peek().is_some_and(|p| p.0 <= w.elapsed) {
            let (_, events, partition) = plan.next().unwrap();
            let ids = events.iter().map(|e| e.data_id()).collect();
            let now = w.now();
            let deadline = now.instant + Duration::from_secs(60);
            let client = &mut w.peers[c].client;
            let op = match (idempotent, partition) {
                (true, None) => {
                    // Routed on the client, as a buffered producer does.
                    let p = match events[0].partition_key.as_deref() {
                        Some(k) => eventhubs_proto::eventhubs::resolve_partition(k, &partitions),
                        None => round_robin.next_partition(&partitions),
                    };
                    client.send_routed(now, events, p.unwrap(), deadline)
                }
                (_, partition) => client.send(
                    now,
                    events,
                    SendTarget::from_partition(partition).unwrap(),
                    deadline,
                ),
            }
            .unwrap();
            ops.insert(op, (ids, deadline));
        }
        while faults.peek().is_some_and(|f| f.0 <= w.elapsed) {
            let (_, bits) = faults.next().unwrap();
            let now = w.now();
            let bnow = eventhubs_emulator::Now {
                instant: now.instant,
                unix_ms: now.unix_ms,
            };
            match bits % 4 {
                0 => w.broker.throttle_sends(1 + (bits >> 8) as u32 % 4),
                1 => {
                    let condition = [
                        "amqp:link:detach-forced",
                        "com.microsoft:server-busy",
                        "com.microsoft:timeout",
                    ][(bits >> 8) as usize % 3];
                    let which = [
                        LinkSelector::All,
                        LinkSelector::Senders,
                        LinkSelector::Receivers,
                    ][(bits >> 16) as usize % 3]
                        .clone();
                    w.broker.detach_links(
                        bnow,
                        which,
                        AmqpError::new(Symbol::from_static(condition), "simulated fault"),
                    );
                }
                2 => w
                    .broker
                    .set_response_delay(Duration::from_millis((bits >> 8) % 3000)),
                _ => w.broker.set_response_delay(Duration::ZERO),
            }
            out.faults += 1;
        }
        for (t, ev) in w.take_events(c) {
            match ev {
                ClientEvent::SendComplete { op, result } => {
                    let Some((ids, deadline)) = ops.remove(&op) else {
                        fail(format!("unknown or repeated completion of {op:?}"))
                    };
                    if t > deadline {
                        fail(format!("{op:?} completed after its deadline"));
                    }
                    match result {
                        Ok(()) => {
                            out.acked += ids.len();
                            acked_ids.extend(ids);
                        }
                        Err(e) => {
                            // Credentials are valid and every injected fault
                            // is transient: only running out of time or
                            // retries is an acceptable failure.
                            if e.recovery() == eventhubs_proto::eventhubs::RecoveryKind::Fatal {
                                fail(format!("send failed with a fatal error: {e}"));
                            }
                            out.failed_ops += 1;
                            if std::env::var_os("SIM_VERBOSE").is_some() {
                                println!("seed {seed}: send failed: {e}");
                            }
                        }
                    }
                }
                ClientEvent::Received { receiver, event } => {
                    let p = receivers[&receiver];
                    let seq = event.sequence_number();
                    let expected = last_seq.get(p).map_or(0, |s| s + 1);
                    if seq != expected {
                        fail(format!(
                            "partition {p}: got sequence number {seq}, expected {expected}"
                        ));
                    }
                    last_seq.insert(p, seq);
                    if !seen_ids.insert(id_of(&event)) {
                        out.duplicates += 1;
                        if idempotent {
                            fail(format!("event {} appended twice", id_of(&event)));
                        }
                    }
                    out.received += 1;
                    let now = w.now();
                    w.peers[c].client.consumed(now, receiver, 1);
                }
                ClientEvent::ReceiverClosed { receiver, error } => {
                    // An application reopens a failed receiver after the
                    // last event it processed.
                    let p = receivers
                        .remove(&receiver)
                        .unwrap_or_else(|| fail("unknown receiver closed".into()));
                    if error.as_ref().is_some_and(ClientError::is_ownership_lost) {
                        fail(format!(
                            "receiver lost ownership without a competitor: {error:?}"
                        ));
                    }
                    out.receiver_restarts += 1;
                    let position = match last_seq.get(p) {
                        Some(s) => EventPosition::sequence_number(*s, false),
                        None => EventPosition::Earliest,
                    };
                    let now = w.now();
                    let id = w.peers[c]
                        .client
                        .open_receiver(
                            now,
                            ReceiverOptions::new(p)
                                .position(position)
                                .prefetch(prefetch),
                        )
                        .unwrap();
                    receivers.insert(id, p);
                }
                _ => {}
            }
        }
        let appended = w.broker.stats().events_in as usize;
        let done = plan.peek().is_none()
            && ops.is_empty()
            && out.received == appended
            && w.elapsed >= Duration::from_secs(420);
        if done {
            break;
        }
        if w.elapsed > limit {
            fail(format!(
                "no progress: {} sends pending, received {} of {} appended, {:?}",
                ops.len(),
                out.received,
                appended,
                w.peers[c].client
            ));
        }
        w.step(Duration::from_secs(1));
    }
    let lost: Vec<&i64> = acked_ids.difference(&seen_ids).collect();
    out.lost = lost.len();
    if !lost.is_empty() {
        fail(format!("acknowledged events never received: {lost:?}"));
    }
    out.deduplicated = w.broker.stats().duplicates;
    out.drops = w.peers[c].drops;
    out.connects = w.peers[c].connects;
    out.wire = w.wire_digest();
    out
}

/// A seed replays byte for byte: two runs of one seeded simulation (a
/// hostile network, faults, token refreshes) exchange exactly the same
/// bytes, while other seeds exchange others.
#[test]
fn the_same_seed_gives_the_same_bytes() {
    let mut digests = Vec::new();
    for (seed, idempotent) in [(0, false), (17, false), (105, true), (333, true)] {
        let first = run_seed(seed, idempotent);
        let second = run_seed(seed, idempotent);
        assert_eq!(
            first.wire, second.wire,
            "seed {seed}: the two runs sent different bytes"
        );
        assert_eq!(format!("{first:?}"), format!("{second:?}"), "seed {seed}");
        digests.push(first.wire);
    }
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 4, "different seeds, different bytes");
}

trait DataId {
    fn data_id(&self) -> i64;
}

impl DataId for EventData {
    fn data_id(&self) -> i64 {
        self.get("id").and_then(Value::as_i64).unwrap()
    }
}

/// Runs the seeds (`SIM_SEEDS`, 1,000 by default; `SIM_SEED=n` runs one
/// and prints it) and sums what they saw.
fn run_seeds(idempotent: bool) -> Option<(u64, Outcome)> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        println!("{:?}", run_seed(seed, idempotent));
        return None;
    }
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    // SIM_SEED_FROM: where a longer campaign's slice starts.
    let from: u64 = std::env::var("SIM_SEED_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut total = Outcome::default();
    for seed in from..from + seeds {
        let o = run_seed(seed, idempotent);
        total.acked += o.acked;
        total.failed_ops += o.failed_ops;
        total.received += o.received;
        total.duplicates += o.duplicates;
        total.lost += o.lost;
        total.deduplicated += o.deduplicated;
        total.drops += o.drops;
        total.connects += o.connects;
        total.receiver_restarts += o.receiver_restarts;
        total.faults += o.faults;
    }
    let mode = if idempotent {
        "idempotent"
    } else {
        "at least once"
    };
    println!("{seeds} seeds from {from}, {mode}: {total:?}");
    // The runs must exercise what they claim to.
    assert!(total.drops > seeds as u32 / 2, "{total:?}");
    assert!(total.faults > seeds as u32, "{total:?}");
    assert!(
        total.acked > 0 && total.received >= total.acked,
        "{total:?}"
    );
    Some((seeds, total))
}

/// At least once: lost acknowledgements make the client send again and
/// the service append again, so duplicates are expected (and counted).
#[test]
fn seeded_runs_lose_nothing_duplicate_nothing_and_never_hang() {
    if let Some((_, total)) = run_seeds(false) {
        assert_eq!(total.lost, 0, "{total:?}");
    }
}

/// Idempotent publishing under the same plans and faults: every
/// acknowledged event is received, and none is appended twice, however
/// often a lost acknowledgement makes the client send again.
#[test]
fn idempotent_seeded_runs_append_every_event_exactly_once() {
    if let Some((_, total)) = run_seeds(true) {
        assert_eq!((total.lost, total.duplicates), (0, 0), "{total:?}");
        assert!(
            total.deduplicated > 0,
            "no resend was deduplicated: {total:?}"
        );
    }
}

/// Collects, for `rounds` virtual seconds, the events of client `c`.
fn drain(w: &mut World, c: usize, secs: u64) -> Vec<ClientEvent> {
    let mut all = Vec::new();
    w.run_until(Duration::from_secs(secs), |w| {
        all.extend(w.take_events(c).into_iter().map(|(_, e)| e));
        false
    });
    all.extend(w.take_events(c).into_iter().map(|(_, e)| e));
    all
}

#[test]
fn a_higher_owner_level_steals_the_partition() {
    let mut w = world(4, EmulatorConfig::default(), Network::calm());
    let a = w.add_client(sim::options(41, HOUR));
    let b = w.add_client(sim::options(42, HOUR));
    send(
        &mut w,
        a,
        (0..5).map(|i| event(i, None)).collect(),
        Some("0"),
    )
    .unwrap();
    let opts = |level| {
        ReceiverOptions::new("0")
            .position(EventPosition::Earliest)
            .owner_level(level)
            .identifier(format!("owner-{level}"))
    };
    let (ra, got) = receive(&mut w, a, opts(1), 5);
    assert_eq!(got.len(), 5);
    let now = w.now();
    let rb = w.peers[b].client.open_receiver(now, opts(2)).unwrap();
    let events_a = drain(&mut w, a, 5);
    let stolen = events_a.iter().find_map(|e| match e {
        ClientEvent::ReceiverClosed { receiver, error } if *receiver == ra => Some(error.clone()),
        _ => None,
    });
    let error = stolen
        .expect("the first receiver is closed")
        .expect("with an error");
    assert!(error.is_ownership_lost(), "{error}");
    let events_b = drain(&mut w, b, 5);
    let got_b = events_b
        .iter()
        .filter(|e| matches!(e, ClientEvent::Received { receiver, .. } if *receiver == rb))
        .count();
    assert_eq!(got_b, 5, "the new owner reads the partition");
    // A lower owner level is refused, and does not disturb the owner.
    let now = w.now();
    let rc = w.peers[a].client.open_receiver(now, opts(1)).unwrap();
    let events_a = drain(&mut w, a, 30);
    assert!(
        events_a.iter().any(|e| matches!(e, ClientEvent::ReceiverClosed { receiver, error: Some(_) } if *receiver == rc)),
        "{events_a:?}"
    );
    assert!(!drain(&mut w, b, 1)
        .iter()
        .any(|e| matches!(e, ClientEvent::ReceiverClosed { .. })));
}

#[test]
fn short_lived_tokens_are_refreshed_before_links_lose_them() {
    // Three-minute tokens over twenty virtual minutes: without refreshes
    // the broker detaches the links when the first token expires.
    let mut w = world(5, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(sim::options(5, Duration::from_secs(180)));
    let now = w.now();
    let r = w.peers[c]
        .client
        .open_receiver(
            now,
            ReceiverOptions::new("0").position(EventPosition::Earliest),
        )
        .unwrap();
    let mut received = Vec::new();
    for minute in 0..20 {
        send(&mut w, c, vec![event(minute, None)], Some("0")).unwrap();
        for e in drain(&mut w, c, 60) {
            match e {
                ClientEvent::Received { event, .. } => {
                    received.push(id_of(&event));
                    let now = w.now();
                    w.peers[c].client.consumed(now, r, 1);
                }
                ClientEvent::ReceiverClosed { error, .. } => {
                    panic!("receiver closed at minute {minute}: {error:?}")
                }
                _ => {}
            }
        }
    }
    assert_eq!(received, (0..20).collect::<Vec<_>>());
    assert_eq!(w.peers[c].connects, 1, "one connection throughout");
    assert_eq!(w.broker.stats().tokens_refused, 0);
}

#[test]
fn each_batch_is_encoded_into_the_allocation_the_last_accepted_one_gave_back() {
    for idempotent in [false, true] {
        batches_reuse_the_allocations_accepted_ones_gave_back(idempotent);
    }
}

fn batches_reuse_the_allocations_accepted_ones_gave_back(idempotent: bool) {
    let mut w = world(12, EmulatorConfig::default(), Network::calm());
    let mut options = sim::options(12, HOUR);
    options.options.idempotent_publishing = idempotent;
    let c = w.add_client(options);
    let batch = |b: u8| -> Vec<EventData> {
        (0..50)
            .map(|i| EventData::new(vec![b.wrapping_mul(50).wrapping_add(i); 1024]))
            .collect()
    };
    assert_eq!(w.peers[c].client.kept_payload_bytes(), 0);
    send(&mut w, c, batch(0), Some("0")).unwrap();
    let kept = w.peers[c].client.kept_payload_bytes();
    assert!(
        kept > 50 * 1024,
        "the accepted batch's buffer is kept: {kept} (idempotent {idempotent})"
    );
    for b in 1..5 {
        send(&mut w, c, batch(b), Some("0")).unwrap();
        // One buffer, taken and given back: a batch that took a new one
        // would leave two kept.
        assert_eq!(
            w.peers[c].client.kept_payload_bytes(),
            kept,
            "batch {b} (idempotent {idempotent})"
        );
    }
    let (_, got) = receive(
        &mut w,
        c,
        ReceiverOptions::new("0").position(EventPosition::Earliest),
        250,
    );
    let bodies: Vec<Vec<u8>> = got.iter().map(|e| e.body().to_vec()).collect();
    let sent: Vec<Vec<u8>> = (0..5).flat_map(batch).map(|e| e.body.to_vec()).collect();
    assert_eq!(bodies.len(), 250);
    assert!(
        bodies == sent,
        "every event as sent, none from an earlier batch's bytes (idempotent {idempotent})"
    );
}

#[test]
fn a_wrong_key_fails_operations_with_unauthorized_not_a_timeout() {
    let mut w = world(6, EmulatorConfig::default(), Network::calm());
    let provider =
        eventhubs_proto::eventhubs::sas::SasKeyProvider::new(sim::KEY_NAME, "wrong").unwrap();
    let mut o = sim::options(6, HOUR);
    o.tokens = Some(provider);
    let c = w.add_client(o);
    let err = send(&mut w, c, vec![event(0, None)], None).unwrap_err();
    assert_eq!(
        err.condition().map(|c| c.as_str()),
        Some("amqp:unauthorized-access"),
        "{err}"
    );
}

#[test]
fn plain_sasl_needs_no_cbs() {
    let mut w = world(7, EmulatorConfig::default(), Network::calm());
    let mut o = sim::options(7, HOUR);
    o.tokens = None;
    o.options.credential = eventhubs_proto::client::Credential::Plain {
        key_name: sim::KEY_NAME.into(),
        key: sim::KEY.into(),
    };
    let c = w.add_client(o);
    send(
        &mut w,
        c,
        (0..3).map(|i| event(i, None)).collect(),
        Some("1"),
    )
    .unwrap();
    let (_, got) = receive(
        &mut w,
        c,
        ReceiverOptions::new("1").position(EventPosition::Earliest),
        3,
    );
    assert_eq!(got.len(), 3);
}

#[test]
fn sends_fail_by_their_deadline_when_the_service_is_unreachable() {
    let net = Network {
        connect_fail_pct: 100,
        ..Network::calm()
    };
    let mut w = world(8, EmulatorConfig::default(), net);
    // The default policy (3 retries): sends go on retrying until their
    // deadline all the same.
    let c = w.add_client(sim::options(8, HOUR));
    let now = w.now();
    let deadline = now.instant + Duration::from_secs(20);
    let op = w.peers[c]
        .client
        .send(now, vec![event(0, None)], SendTarget::Hub, deadline)
        .unwrap();
    let mut done = None;
    w.run_until(Duration::from_secs(60), |w| {
        for (t, e) in w.take_events(c) {
            if let ClientEvent::SendComplete { op: o, result } = e {
                assert_eq!(o, op);
                done = Some((t, result));
            }
        }
        done.is_some()
    });
    let (t, result) = done.expect("completed");
    assert!(t <= deadline);
    let error = result.expect_err("timed out");
    assert!(error.is_timeout(), "{error}");
    assert!(
        error.to_string().contains("simulated connect failure"),
        "the time-out names the last cause: {error}"
    );
    assert!(
        w.peers[c].connects > 3,
        "kept trying: {}",
        w.peers[c].connects
    );
}

#[test]
fn close_finishes_sends_then_closes_the_connection() {
    let mut w = world(9, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(sim::options(9, HOUR));
    let now = w.now();
    let op = w.peers[c]
        .client
        .send(
            now,
            vec![event(0, None)],
            SendTarget::Partition("0".into()),
            now.instant + Duration::from_secs(30),
        )
        .unwrap();
    w.peers[c]
        .client
        .close(now, now.instant + Duration::from_secs(30));
    assert_eq!(
        w.peers[c].client.send(
            now,
            vec![event(1, None)],
            SendTarget::Hub,
            now.instant + Duration::from_secs(30)
        ),
        Err(ClientError::Closed)
    );
    let events = drain(&mut w, c, 10);
    let pos_send = events
        .iter()
        .position(|e| matches!(e, ClientEvent::SendComplete { op: o, result: Ok(()) } if *o == op));
    let pos_closed = events.iter().position(|e| matches!(e, ClientEvent::Closed));
    assert!(
        pos_send.is_some() && pos_closed.is_some() && pos_send < pos_closed,
        "{events:?}"
    );
    assert!(w.peers[c].client.is_closed());
    assert_eq!(w.broker.stats().events_in, 1);
    assert!(
        w.broker.connections().is_empty(),
        "the broker saw the connection close"
    );
}

/// With an asynchronous token source, the client asks for the token and
/// connects only once it has one, so the service's window for a first
/// put-token is never spent waiting on the source.
#[test]
fn external_tokens_are_fetched_before_connecting() {
    let mut w = world(10, EmulatorConfig::default(), Network::calm());
    let mut o = sim::options(10, HOUR);
    // The test answers the token request itself.
    o.tokens = None;
    let c = w.add_client(o);
    let now = w.now();
    let op = w.peers[c]
        .client
        .send(
            now,
            vec![event(0, None)],
            SendTarget::Partition("0".into()),
            now.instant + Duration::from_secs(90),
        )
        .unwrap();
    let events = drain(&mut w, c, 30);
    let audience = events
        .iter()
        .find_map(|e| match e {
            ClientEvent::TokenRequired { audience } => Some(audience.clone()),
            _ => None,
        })
        .expect("a token is asked for");
    assert_eq!(audience, "amqps://localhost/eh1/Partitions/0");
    assert!(
        !events.iter().any(|e| matches!(e, ClientEvent::Connect(_))),
        "no connection before the token"
    );
    // The caller's source answers after 30 s.
    let provider_now = w.now();
    let token = eventhubs_proto::eventhubs::sas::SasKeyProvider::new(sim::KEY_NAME, sim::KEY)
        .unwrap()
        .token(&audience, (provider_now.unix_ms / 1000) as u64);
    w.peers[c]
        .client
        .supply_token(provider_now, &audience, token);
    let events = drain(&mut w, c, 10);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::SendComplete { op: o, result: Ok(()) } if *o == op)),
        "{events:?}"
    );
    assert_eq!(w.peers[c].connects, 1);
}

/// `com.microsoft:server-busy` on a transfer: the send waits the service's
/// extra 4–8 s before retrying, then succeeds.
#[test]
fn server_busy_backs_off_at_least_four_seconds() {
    let mut w = world(11, EmulatorConfig::default(), Network::calm());
    let c = w.add_client(sim::options(11, HOUR));
    send(&mut w, c, vec![event(0, None)], Some("0")).unwrap();
    w.broker.throttle_sends(2);
    let start = w.now().instant;
    send(&mut w, c, vec![event(1, None)], Some("0")).unwrap();
    let waited = w.now().instant - start;
    assert!(
        waited >= Duration::from_secs(8),
        "two server-busy back-offs: {waited:?}"
    );
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    assert_eq!(w.broker.stats().events_in, 2);
}

// ---- idempotent publishing -------------------------------------------------

mod idempotent {
    use super::*;
    use eventhubs_proto::client::idempotent::PRODUCER_SEQUENCE_NUMBER;
    use eventhubs_proto::client::{IdempotentError, PartitionPublishingOptions};

    /// An idempotent client, with `partition_publishing` for partition 0.
    fn client(w: &mut World, seed: u64, p0: Option<PartitionPublishingOptions>) -> usize {
        let mut setup = sim::options(seed, HOUR);
        setup.options.idempotent_publishing = true;
        if let Some(p) = p0 {
            setup.options.partition_publishing.insert("0".into(), p);
        }
        w.add_client(setup)
    }

    fn events(range: std::ops::Range<i64>) -> Vec<EventData> {
        range.map(|i| event(i, None)).collect()
    }

    fn producer_sequence(e: &ReceivedEvent) -> i64 {
        e.annotations()
            .get(PRODUCER_SEQUENCE_NUMBER)
            .and_then(Value::as_i64)
            .expect("the producer's sequence number")
    }

    fn idempotent_error(r: Result<(), ClientError>) -> IdempotentError {
        match r {
            Err(ClientError::Idempotent(e)) => *e,
            other => panic!("expected an idempotent publishing error, got {other:?}"),
        }
    }

    #[test]
    fn the_state_is_read_per_partition_and_a_restarted_producer_continues_it() {
        let mut w = world(60, EmulatorConfig::default(), Network::calm());
        let a = client(&mut w, 61, None);
        assert_eq!(w.peers[a].client.partition_publishing_state("0"), None);
        send(&mut w, a, events(0..3), Some("0")).unwrap();
        send(&mut w, a, events(3..5), Some("0")).unwrap();
        let state = w.peers[a]
            .client
            .partition_publishing_state("0")
            .expect("attached");
        assert_eq!(state.owner_level, 0);
        assert_eq!(state.last_published_sequence_number, 4);
        assert_eq!(
            w.peers[a].client.partition_publishing_states().len(),
            1,
            "one partition published to"
        );
        // The process restarts with the group and owner level it saved;
        // the service says where the numbering is.
        let saved = PartitionPublishingOptions::new()
            .producer_group_id(state.producer_group_id)
            .owner_level(state.owner_level);
        let b = client(&mut w, 62, Some(saved));
        send(&mut w, b, events(5..8), Some("0")).unwrap();
        let after = w.peers[b].client.partition_publishing_state("0").unwrap();
        assert_eq!(after.producer_group_id, state.producer_group_id);
        assert_eq!(after.last_published_sequence_number, 7);
        let (_, got) = receive(
            &mut w,
            b,
            ReceiverOptions::new("0").position(EventPosition::Earliest),
            8,
        );
        assert_eq!(
            got.iter().map(id_of).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(
            got.iter().map(producer_sequence).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>(),
            "consecutive numbers across the restart"
        );
        // Options for a partition are set before its first send only.
        assert!(w.peers[b]
            .client
            .set_partition_publishing("0", PartitionPublishingOptions::new())
            .is_err());
        assert!(w.peers[b]
            .client
            .set_partition_publishing("1", PartitionPublishingOptions::new().owner_level(2))
            .is_ok());
    }

    #[test]
    fn a_resend_after_a_lost_acknowledgement_is_appended_once() {
        let mut w = world(63, EmulatorConfig::default(), Network::calm());
        let a = client(&mut w, 64, None);
        send(&mut w, a, events(0..2), Some("1")).unwrap();
        // The service appends the next send but its acknowledgement is
        // lost with the connection: the client sends it again.
        w.broker.set_response_delay(Duration::from_secs(2));
        let now = w.now();
        let op = w.peers[a]
            .client
            .send(
                now,
                events(2..6),
                SendTarget::partition("1").unwrap(),
                now.instant + Duration::from_secs(60),
            )
            .unwrap();
        w.run_until(Duration::from_millis(500), |_| false);
        assert_eq!(w.broker.stats().events_in, 6, "appended, not acknowledged");
        w.cut(a);
        w.broker.set_response_delay(Duration::ZERO);
        let mut result = None;
        w.run_until(Duration::from_secs(60), |w| {
            for (_, e) in w.take_events(a) {
                if let ClientEvent::SendComplete { op: o, result: r } = e {
                    if o == op {
                        result = Some(r);
                    }
                }
            }
            result.is_some()
        });
        result.expect("completed").unwrap();
        let stats = w.broker.stats();
        assert_eq!(stats.events_in, 6, "the resend was not appended again");
        assert_eq!(stats.duplicates, 4);
        let state = w.peers[a].client.partition_publishing_state("1").unwrap();
        assert_eq!(state.last_published_sequence_number, 5);
    }

    #[test]
    fn a_higher_owner_level_takes_the_partition_and_the_old_producer_is_told() {
        let mut w = world(65, EmulatorConfig::default(), Network::calm());
        let group = PartitionPublishingOptions::new().producer_group_id(900);
        let a = client(&mut w, 66, Some(group.owner_level(1)));
        send(&mut w, a, events(0..2), Some("0")).unwrap();
        let b = client(&mut w, 67, Some(group.owner_level(2)));
        send(&mut w, b, events(2..4), Some("0")).unwrap();
        let e = idempotent_error(send(&mut w, a, events(4..5), Some("0")));
        assert!(matches!(e, IdempotentError::EpochStolen { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("higher owner level") && text.contains("900"),
            "{text}"
        );
        assert_eq!(
            ClientError::from(e).recovery(),
            eventhubs_proto::eventhubs::RecoveryKind::Fatal
        );
        // Trying again attaches with the old level and is refused.
        let again = idempotent_error(send(&mut w, a, events(5..6), Some("0")));
        assert!(
            matches!(again, IdempotentError::EpochStolen { .. }),
            "{again:?}"
        );
        send(&mut w, b, events(6..7), Some("0")).unwrap();
        let (_, got) = receive(
            &mut w,
            b,
            ReceiverOptions::new("0").position(EventPosition::Earliest),
            5,
        );
        assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), [0, 1, 2, 3, 6]);
    }

    #[test]
    fn numbers_that_do_not_follow_fail_the_send_and_the_next_one_resyncs() {
        let mut w = world(68, EmulatorConfig::default(), Network::calm());
        let group = PartitionPublishingOptions::new()
            .producer_group_id(901)
            .owner_level(0);
        let a = client(&mut w, 69, Some(group));
        send(&mut w, a, events(0..3), Some("0")).unwrap();
        // Another producer resets the group's numbering to 0.
        let b = client(&mut w, 70, Some(group.starting_sequence_number(0)));
        send(&mut w, b, events(3..4), Some("0")).unwrap();
        let e = idempotent_error(send(&mut w, a, events(4..5), Some("0")));
        match &e {
            IdempotentError::OutOfOrderSequence {
                first_sequence_number,
                producer_group_id,
                ..
            } => assert_eq!((*first_sequence_number, *producer_group_id), (3, 901)),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("another producer"), "{e}");
        // The next send reads the service's number and goes on from it.
        send(&mut w, a, events(5..6), Some("0")).unwrap();
        let state = w.peers[a].client.partition_publishing_state("0").unwrap();
        assert_eq!(state.last_published_sequence_number, 2);
    }

    #[test]
    fn sends_to_the_hub_are_refused_and_routed_keys_are_kept() {
        let mut w = world(71, EmulatorConfig::default(), Network::calm());
        let a = client(&mut w, 72, None);
        let now = w.now();
        let err = w.peers[a]
            .client
            .send(
                now,
                events(0..1),
                SendTarget::Hub,
                now.instant + Duration::from_secs(5),
            )
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::InvalidArgument(m) if m.contains("partitions only") && m.contains("send_routed")),
            "{err}"
        );
        // Keyed events routed on the client keep their keys, in one batch.
        let partitions = ["0", "1"];
        let key = "device-7";
        let p = eventhubs_proto::eventhubs::resolve_partition(key, &partitions).unwrap();
        let mut batch: Vec<EventData> = (0..3).map(|i| event(i, Some(key))).collect();
        batch.push(event(3, Some("other")));
        let now = w.now();
        let op = w.peers[a]
            .client
            .send_routed(now, batch, p, now.instant + Duration::from_secs(60))
            .unwrap();
        let mut done = None;
        w.run_until(Duration::from_secs(30), |w| {
            for (_, e) in w.take_events(a) {
                if let ClientEvent::SendComplete { op: o, result } = e {
                    if o == op {
                        done = Some(result);
                    }
                }
            }
            done.is_some()
        });
        done.expect("completed").unwrap();
        let (_, got) = receive(
            &mut w,
            a,
            ReceiverOptions::new(p).position(EventPosition::Earliest),
            4,
        );
        let keys: Vec<Option<&str>> = got.iter().map(|e| e.partition_key()).collect();
        assert_eq!(keys, [Some(key), Some(key), Some(key), Some("other")]);
    }
}
