//! Crash consistency of `--data-dir`: the emulator binary is killed with
//! SIGKILL at random moments while several producers publish, restarted on
//! the same directory, and what it serves is checked against what it
//! acknowledged:
//!
//! - every acknowledged event is there exactly once, its body byte for
//!   byte, with the sequence number and offset it had when first seen, in
//!   every later run;
//! - an event that was sent but not acknowledged before the kill is either
//!   there whole (and then stays, with its numbers) or absent (and then
//!   stays absent); the events of one transfer (a batch) come back all
//!   together or not at all;
//! - nothing else is there, and sequence numbers have no gap.
//!
//! The producers never resend (one transfer per unique event id, on the
//! testkit's blocking engine, outcomes recorded as they arrive), so any
//! duplicate or stray event is the store's. `CRASH_ROUNDS` sets the number
//! of kills (30 by default), `CRASH_SEED` the seed (printed; a failing
//! round names it).
//!
//! The second test shows that a second emulator refuses a data directory
//! in use, naming it and the holder's pid, and that a killed emulator
//! leaves no stale lock behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::codec::message::{Body, Message, BATCH_MESSAGE_FORMAT};
use eventhubs_proto::codec::messaging::{DeliveryState, MessageId, Properties, Source, Target};
use eventhubs_proto::codec::performatives::Role;
use eventhubs_proto::codec::{Decode, Encode, Map, Value};
use eventhubs_proto::engine::{Event, LinkConfig, LinkId, Settlement};
use eventhubs_proto::eventhubs::{EventPosition, SplitMix64};
use eventhubs_testkit::tcp::{batch, emulator_plain, EngineClient as Client};
use eventhubs_testkit::TempDir;

const PARTITIONS: u32 = 2;
const PRODUCERS: u64 = 4;
/// Transfers each producer keeps in flight.
const WINDOW: usize = 6;
const WAIT: Duration = Duration::from_secs(30);

fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.next_u64() % n
}

/// The body of event `id`: its id, then bytes drawn from it, of a size
/// drawn from it (mostly small, some tens of KiB, a few hundred KiB).
fn body_of(id: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(id ^ 0xB0D1);
    let size = match below(&mut rng, 100) {
        0..=69 => 8 + below(&mut rng, 500),
        70..=96 => 1_000 + below(&mut rng, 10_000),
        _ => 30_000 + below(&mut rng, 100_000),
    } as usize;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(&id.to_be_bytes());
    while body.len() < size {
        body.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    body.truncate(size);
    body
}

fn message_of(id: u64) -> Message {
    Message {
        body: Body::Data(vec![Bytes::from(body_of(id))]),
        ..Default::default()
    }
}

/// An emulator process on `dir`, and the warnings it logged.
struct Emulator {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

fn spawn_emulator(dir: &Path) -> std::io::Result<Emulator> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventhubs-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line)? == 0 {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            return Err(std::io::Error::other(format!(
                "the emulator exited before listening: {:?}",
                log.lock().unwrap()
            )));
        }
        if let Some(port) = line.trim().strip_prefix("LISTENING ") {
            let port = port.parse().map_err(std::io::Error::other)?;
            // Keep draining stdout so the child never blocks on it.
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            return Ok(Emulator { child, port, log });
        }
    }
}

/// One transfer a producer sent: its events, and its outcome if one came.
#[derive(Debug, Clone)]
struct Sent {
    ids: Vec<u64>,
    outcome: Option<Result<(), String>>,
}

/// Publishes fresh events (ids from `next_id`) to `target` until the
/// socket dies or `stop` is set; never resends anything.
fn produce(
    port: u16,
    target: String,
    mut next_id: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<Sent> {
    let mut log: Vec<Sent> = Vec::new();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut c) = Client::connect(addr, emulator_plain()) else {
        return log;
    };
    let Ok(tx) = c.sender(&target) else {
        return log;
    };
    let mut rng = SplitMix64::new(seed);
    let mut in_flight: HashMap<u32, usize> = HashMap::new();
    // Bytes sent, to keep the directory small.
    let mut budget: i64 = 400_000;
    while !c.eof && !stop.load(Ordering::Relaxed) {
        while in_flight.len() < WINDOW && c.conn.credit(tx) > 0 && budget > 0 {
            let (ids, format, payload) = if below(&mut rng, 100) < 25 {
                let ids: Vec<u64> = (0..2 + below(&mut rng, 7)).map(|i| next_id + i).collect();
                let events: Vec<Message> = ids.iter().map(|&id| message_of(id)).collect();
                (ids, BATCH_MESSAGE_FORMAT, batch(&events))
            } else {
                (vec![next_id], 0, message_of(next_id).to_bytes())
            };
            if payload.len() > 1_000_000 {
                next_id += ids.len() as u64;
                continue; // above the emulator's max message size
            }
            next_id += ids.len() as u64;
            budget -= payload.len() as i64;
            let tag = c.next_tag();
            let Ok(delivery) = c
                .conn
                .link(tx)
                .send(tag, format, Settlement::Unsettled, payload)
            else {
                return log;
            };
            in_flight.insert(delivery, log.len());
            log.push(Sent { ids, outcome: None });
        }
        c.turn(Duration::from_millis(5));
        while let Some(e) = c.events.pop_front() {
            if let Event::Disposition {
                delivery_id,
                state: Some(state),
                ..
            } = e
            {
                if let Some(i) = in_flight.remove(&delivery_id) {
                    log[i].outcome = Some(match state {
                        DeliveryState::Accepted(_) => Ok(()),
                        other => Err(format!("{other:?}")),
                    });
                }
            }
        }
    }
    log
}

/// Where an event was found: partition, sequence number, offset.
type Place = (u32, i64, u64);

/// What every run must agree with.
#[derive(Default)]
struct Model {
    /// Every transfer sent, in any round.
    sent: Vec<Sent>,
    /// Each event's transfer.
    transfer_of: HashMap<u64, usize>,
    /// Where an event was found the first time it was seen.
    placed: HashMap<u64, Place>,
    /// Events absent from a run after the kill that interrupted them.
    absent: HashSet<u64>,
    /// Figures for the report.
    acked_checked: u64,
    unacked_whole: u64,
    unacked_absent: u64,
}

impl Model {
    fn add(&mut self, log: Vec<Sent>) {
        for s in log {
            for &id in &s.ids {
                self.transfer_of.insert(id, self.sent.len());
            }
            self.sent.push(s);
        }
    }

    /// Checks one run's events (per partition, in order) against the model.
    fn check(&mut self, found: &BTreeMap<u32, Vec<(i64, u64, Message)>>) -> Result<(), String> {
        let mut seen: HashMap<u64, Place> = HashMap::new();
        for (&p, events) in found {
            for (i, (seq, offset, m)) in events.iter().enumerate() {
                if *seq != i as i64 {
                    return Err(format!(
                        "partition {p}: event {i} has sequence number {seq}"
                    ));
                }
                let body = match &m.body {
                    Body::Data(d) if d.len() == 1 => &d[0],
                    other => return Err(format!("partition {p} #{seq}: body {other:?}")),
                };
                let Some(id) = body
                    .get(..8)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
                else {
                    return Err(format!(
                        "partition {p} #{seq}: a body of {} bytes",
                        body.len()
                    ));
                };
                if !self.transfer_of.contains_key(&id) {
                    return Err(format!(
                        "partition {p} #{seq}: event {id:#x} was never sent"
                    ));
                }
                if body[..] != body_of(id)[..] {
                    return Err(format!(
                        "partition {p} #{seq}: event {id:#x} is not the body that was sent ({} bytes, {} sent)",
                        body.len(),
                        body_of(id).len()
                    ));
                }
                if let Some(first) = seen.insert(id, (p, *seq, *offset)) {
                    return Err(format!(
                        "event {id:#x} twice: at {first:?} and at {:?}",
                        (p, seq, offset)
                    ));
                }
            }
        }
        for (&id, place) in &self.placed {
            match seen.get(&id) {
                Some(now) if now == place => {}
                Some(now) => return Err(format!("event {id:#x} moved from {place:?} to {now:?}")),
                None => return Err(format!("event {id:#x}, seen at {place:?} before, is gone")),
            }
        }
        for id in &self.absent {
            if let Some(at) = seen.get(id) {
                return Err(format!(
                    "event {id:#x}, absent after its crash, is back at {at:?}"
                ));
            }
        }
        for (t, s) in self.sent.iter().enumerate() {
            if let Some(Err(e)) = &s.outcome {
                return Err(format!("transfer {t} was refused: {e}"));
            }
            let places: Vec<Option<&Place>> = s.ids.iter().map(|id| seen.get(id)).collect();
            if places.iter().all(Option::is_some) {
                let (p, first, _) = *places[0].unwrap();
                for (k, place) in places.iter().enumerate() {
                    let &(pk, seq, _) = place.unwrap();
                    if pk != p || seq != first + k as i64 {
                        return Err(format!(
                            "transfer {t}: its events are not together in order: {places:?}"
                        ));
                    }
                }
            } else if places.iter().any(Option::is_some) {
                return Err(format!(
                    "transfer {t} of {} events is half there: {places:?}",
                    s.ids.len()
                ));
            } else if s.outcome.is_some() {
                return Err(format!(
                    "transfer {t} ({} events) was acknowledged and is missing",
                    s.ids.len()
                ));
            }
        }
        // Everything checks: the new facts are fixed from now on.
        for s in &self.sent {
            let first_time =
                !self.placed.contains_key(&s.ids[0]) && !self.absent.contains(&s.ids[0]);
            for id in &s.ids {
                match seen.get(id) {
                    Some(place) => {
                        self.placed.insert(*id, *place);
                    }
                    None => {
                        self.absent.insert(*id);
                    }
                }
            }
            if first_time {
                let n = s.ids.len() as u64;
                match (s.outcome.is_some(), seen.contains_key(&s.ids[0])) {
                    (true, _) => self.acked_checked += n,
                    (false, true) => self.unacked_whole += n,
                    (false, false) => self.unacked_absent += n,
                }
            }
        }
        Ok(())
    }
}

/// A `$management` READ of partition `p`: its last sequence number (-1
/// when empty).
fn last_sequence_number(c: &mut Client, tx: LinkId, rx: LinkId, p: u32) -> i64 {
    let mut props: Map<_, Value> = Map::new();
    props.insert("operation".into(), Value::String("READ".into()));
    props.insert("name".into(), Value::String("eh1".into()));
    props.insert(
        "type".into(),
        Value::String("com.microsoft:partition".into()),
    );
    props.insert("partition".into(), Value::String(p.to_string().into()));
    let m = Message {
        properties: Some(Properties {
            message_id: Some(MessageId::Ulong(u64::from(p))),
            reply_to: Some("crash-replies".into()),
            ..Default::default()
        }),
        application_properties: Some(props),
        body: Body::Value(Value::Null),
        ..Default::default()
    };
    let state = c.publish(tx, 0, m.to_bytes());
    assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
    let reply = c.wait_for(WAIT, |_, e| match e {
        Event::Delivery { link, payload, .. } if *link == rx => Some(payload.clone()),
        _ => None,
    });
    let reply = Message::decode_all(&reply).expect("a reply");
    let Body::Value(Value::Map(body)) = reply.body else {
        panic!("partition {p}: no properties in {reply:?}");
    };
    let last = body
        .iter()
        .find(|(k, _)| k.as_str() == Some("last_enqueued_sequence_number"))
        .and_then(|(_, v)| v.as_i64());
    last.expect("last_enqueued_sequence_number")
}

/// Every event of every partition, in order: (sequence number, offset,
/// message).
fn read_everything(port: u16) -> BTreeMap<u32, Vec<(i64, u64, Message)>> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = Client::connect(addr, emulator_plain()).expect("connect");
    let tx = c.sender("$management").expect("management sender");
    let rx = c
        .attach(LinkConfig {
            name: "crash-replies".into(),
            role: Role::Receiver,
            source: Some(Source::with_address("$management")),
            target: Some(Target::with_address("crash-replies")),
            ..Default::default()
        })
        .expect("management receiver");
    c.conn.link(rx).flow(100).unwrap();
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let last = last_sequence_number(&mut c, tx, rx, p);
        let link = c
            .receiver(
                &format!("eh1/ConsumerGroups/$Default/Partitions/{p}"),
                Some(EventPosition::Earliest),
            )
            .expect("receiver");
        c.conn.link(link).flow(1_000_000).unwrap();
        let mut events = Vec::new();
        while (events.len() as i64) < last + 1 {
            let payload = c.wait_for(WAIT, |_, e| match e {
                Event::Delivery {
                    link: l, payload, ..
                } if *l == link => Some(payload.clone()),
                _ => None,
            });
            let m = Message::decode_all(&payload).expect("an event");
            let a = m.message_annotations.as_ref().expect("annotations");
            let seq = a
                .get("x-opt-sequence-number")
                .and_then(Value::as_i64)
                .expect("sequence number");
            let offset: u64 = a
                .get("x-opt-offset")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .expect("offset");
            events.push((seq, offset, m));
        }
        out.insert(p, events);
    }
    out
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged_and_tears_nothing() {
    let rounds: u64 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("CRASH_SEED={seed} CRASH_ROUNDS={rounds}");
    let tmp = TempDir::new("kill");
    let mut rng = SplitMix64::new(seed);
    let mut model = Model::default();
    let mut torn_logged = 0usize;
    let started = Instant::now();
    let fail =
        |round: u64, why: String| -> ! { panic!("round {round}: {why} (CRASH_SEED={seed})") };
    for round in 0..=rounds {
        let t0 = Instant::now();
        let mut emu = spawn_emulator(&tmp.0).unwrap_or_else(|e| fail(round, e.to_string()));
        let t1 = Instant::now();
        // What this run serves after the previous kill.
        let found = read_everything(emu.port);
        if std::env::var_os("CRASH_VERBOSE").is_some() {
            println!(
                "round {round}: started in {:?}, read {} events in {:?}",
                t1 - t0,
                found.values().map(Vec::len).sum::<usize>(),
                t1.elapsed()
            );
        }
        if let Err(why) = model.check(&found) {
            fail(round, why);
        }
        torn_logged += emu
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("dropping the torn end"))
            .count();
        if round == rounds {
            let _ = emu.child.kill();
            let _ = emu.child.wait();
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|k| {
                // Two producers per partition, and one to the hub (round
                // robin) in every other round.
                let target = if k == 3 && round % 2 == 1 {
                    "eh1".to_string()
                } else {
                    format!("eh1/Partitions/{}", k % u64::from(PARTITIONS))
                };
                let first_id = (round << 40) | (k << 32);
                let stop = stop.clone();
                let port = emu.port;
                let seed = rng.next_u64();
                std::thread::spawn(move || produce(port, target, first_id, seed, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30 + below(&mut rng, 700)));
        emu.child.kill().expect("SIGKILL");
        let _ = emu.child.wait();
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            model.add(p.join().expect("producer"));
        }
    }
    let transfers = model.sent.len();
    let acked = model.sent.iter().filter(|s| s.outcome.is_some()).count();
    println!(
        "{rounds} kills in {:.1} s: {transfers} transfers ({acked} acknowledged); events checked: {} acknowledged, {} unacknowledged found whole, {} unacknowledged absent; {torn_logged} torn appends dropped at restart",
        started.elapsed().as_secs_f64(),
        model.acked_checked,
        model.unacked_whole,
        model.unacked_absent
    );
    assert!(model.acked_checked > 0, "nothing was acknowledged");
}

#[test]
fn a_second_emulator_refuses_the_directory_and_a_killed_one_leaves_no_lock() {
    let tmp = TempDir::new("lock");
    let mut first = spawn_emulator(&tmp.0).expect("first emulator");
    let second = Command::new(env!("CARGO_BIN_EXE_eventhubs-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--data-dir",
        ])
        .arg(&tmp.0)
        .stdin(Stdio::null())
        .output()
        .expect("second emulator");
    assert!(!second.status.success(), "the second emulator started");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&tmp.0.display().to_string()),
        "the message names the directory: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.child.id())),
        "the message names the holder: {stderr}"
    );
    assert!(String::from_utf8_lossy(&second.stdout).is_empty());

    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    let mut third = spawn_emulator(&tmp.0).expect("the lock went with the killed process");
    assert_eq!(
        fs::read_to_string(tmp.0.join("emulator.lock"))
            .unwrap()
            .trim(),
        third.child.id().to_string()
    );
    let _ = third.child.kill();
    let _ = third.child.wait();
}
