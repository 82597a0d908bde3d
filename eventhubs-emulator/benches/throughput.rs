//! Events per second through the emulator over loopback TCP, and through
//! RabbitMQ's AMQP 1.0 plugin with the same client, for a ratio.
//!
//! The client is `eventhubs_proto::engine::Connection` over a blocking
//! `TcpStream` (`tests/support`), SASL PLAIN (the emulator's
//! `RootManageSharedAccessKey`, RabbitMQ's `guest`), so no CBS. Events are
//! 1 KiB. Workloads, each per event:
//!
//! - `ingest_batched`: 1000 events sent in batches of 100 (message format
//!   0x80013700), unsettled, at most 8 batches in flight; timed until all
//!   are accepted.
//! - `deliver_batched`: the 1000 events above (sent untimed) received by a
//!   receiver granted credit for all of them at once. The emulator delivers
//!   each event as a message; RabbitMQ stores a batch as one message, which
//!   the client unbatches.
//!
//! Credit is granted once per iteration, never topped up while transfers
//! are in flight: RabbitMQ 3.10's plugin then sends past the credit, and our
//! engine detaches the link with `amqp:link:transfer-limit-exceeded` as the
//! specification allows (rabbitmq-amqp1.0 issue 50, "Flow control isn't very
//! strict").
//! - `round_trip_single`: 1000 events sent one per transfer (unsettled, up
//!   to the broker's credit) and received back by a receiver granted credit
//!   for all of them at the start; timed from the first send to the last
//!   event received.
//!
//! RabbitMQ is used when it accepts AMQP 1.0 on 127.0.0.1:5672 (see
//! `.ci/rabbitmq.sh`); otherwise its group is skipped with a note. After
//! criterion's report, a summary prints events/s of both and their ratio
//! (from all timed iterations, warm-up included, the same way for both).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::codec::message::{Message, BATCH_MESSAGE_FORMAT};
use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::{Decode, Encode};
use eventhubs_proto::engine::{Event, LinkId, SaslMechanism};
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_testkit::tcp::{batch, emulator_plain, event, EngineClient as Client};

const EVENT_SIZE: usize = 1024;
const EVENTS: u64 = 1000;
const BATCH: usize = 100;
const BATCHES_IN_FLIGHT: usize = 8;
const WAIT: Duration = Duration::from_secs(30);

/// Timed events and time per (broker, workload), for the summary.
type Totals = BTreeMap<(&'static str, &'static str), (u64, Duration)>;
static TOTALS: Mutex<Totals> = Mutex::new(BTreeMap::new());

fn record(broker: &'static str, workload: &'static str, events: u64, took: Duration) {
    let mut t = TOTALS.lock().unwrap();
    let e = t.entry((broker, workload)).or_default();
    e.0 += events;
    e.1 += took;
}

/// One broker with a connected client, a sender and a receiver on one
/// queue or partition.
struct Peer {
    name: &'static str,
    client: Client,
    tx: LinkId,
    rx: LinkId,
    /// A batch stays one message (RabbitMQ) instead of being split into its
    /// events (Event Hubs).
    batches_stay_whole: bool,
    next_event: u64,
    batch_payloads: Vec<bytes::Bytes>,
}

impl Peer {
    fn connect(
        name: &'static str,
        addr: SocketAddr,
        sasl: SaslMechanism,
        send_to: &str,
        receive_from: &str,
        position: Option<EventPosition>,
        batches_stay_whole: bool,
    ) -> Result<Peer, String> {
        let mut client = Client::connect(addr, sasl).map_err(|e| e.to_string())?;
        let tx = client
            .sender(send_to)
            .map_err(|e| format!("sender refused: {e:?}"))?;
        let rx = client
            .receiver(receive_from, position)
            .map_err(|e| format!("receiver refused: {e:?}"))?;
        // Batches are encoded once; their contents do not matter.
        let batch_payloads = (0..EVENTS as usize / BATCH)
            .map(|b| {
                let events: Vec<Message> = (0..BATCH)
                    .map(|i| event((b * BATCH + i) as u64, EVENT_SIZE))
                    .collect();
                batch(&events)
            })
            .collect();
        Ok(Peer {
            name,
            client,
            tx,
            rx,
            batches_stay_whole,
            next_event: 0,
            batch_payloads,
        })
    }

    fn wait_credit(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.client.conn.credit(self.tx) == 0 {
            assert!(
                Instant::now() < deadline && !self.client.eof,
                "{}: no credit",
                self.name
            );
            self.client.turn(Duration::from_millis(5));
        }
    }

    /// Handles one event: counts accepted sends and received events (a
    /// delivery is a whole batch when `batched` and the broker keeps them).
    fn on_event(&mut self, e: Event, batched: bool, accepted: &mut u64, received: &mut u64) {
        match e {
            Event::Disposition {
                link,
                state: Some(state),
                ..
            } if link == self.tx => {
                assert!(
                    matches!(state, DeliveryState::Accepted(_)),
                    "{}: send not accepted: {state:?}",
                    self.name
                );
                *accepted += 1;
            }
            Event::Delivery {
                link,
                delivery_id,
                settled,
                payload,
                ..
            } if link == self.rx => {
                let m = Message::decode_all(&payload).expect("a message");
                *received += if batched && self.batches_stay_whole {
                    m.unbatch().expect("a batch").len() as u64
                } else {
                    1
                };
                if !settled {
                    self.client
                        .conn
                        .link(self.rx)
                        .accept(delivery_id)
                        .expect("accept");
                }
            }
            Event::Failed(e) => panic!("{}: connection failed: {e}", self.name),
            Event::LinkError { link, error } => {
                panic!("{}: we detached link {link:?}: {error:?}", self.name)
            }
            Event::LinkDetached {
                link,
                error,
                closed,
            } => panic!(
                "{}: link {link:?} detached (closed {closed}, tx {:?}, rx {:?}): {error:?}",
                self.name, self.tx, self.rx
            ),
            _ => {}
        }
    }

    /// Sends `EVENTS` events in batches and waits until all are accepted.
    fn ingest_batched(&mut self) {
        let batches = self.batch_payloads.len();
        let (mut sent, mut accepted, mut received) = (0usize, 0u64, 0u64);
        let deadline = Instant::now() + WAIT;
        while (accepted as usize) < batches {
            while sent < batches
                && sent - accepted as usize <= BATCHES_IN_FLIGHT
                && self.client.conn.credit(self.tx) > 0
            {
                let payload = self.batch_payloads[sent].clone();
                self.client.send(self.tx, BATCH_MESSAGE_FORMAT, payload);
                sent += 1;
            }
            self.client.turn(Duration::from_millis(5));
            while let Some(e) = self.client.events.pop_front() {
                self.on_event(e, true, &mut accepted, &mut received);
            }
            assert!(Instant::now() < deadline, "{}: ingest timed out", self.name);
        }
        assert_eq!(received, 0, "{}: the receiver had no credit", self.name);
    }

    /// Receives `count` events, with credit for all of them granted at once
    /// (in messages: a whole batch on RabbitMQ, an event on the emulator).
    fn receive(&mut self, count: u64) {
        let (mut accepted, mut received) = (0u64, 0u64);
        let deadline = Instant::now() + WAIT;
        let credit = if self.batches_stay_whole {
            (count as usize).div_ceil(BATCH) as u32
        } else {
            count as u32
        };
        self.client.conn.link(self.rx).flow(credit).expect("flow");
        while received < count {
            self.client.turn(Duration::from_millis(5));
            while let Some(e) = self.client.events.pop_front() {
                self.on_event(e, true, &mut accepted, &mut received);
            }
            assert!(
                Instant::now() < deadline,
                "{}: received {received} of {count}",
                self.name
            );
        }
        // The credit is used up exactly: none is left for the next ingest.
        assert_eq!(received, count, "{}: exactly what was sent", self.name);
    }

    /// Sends `EVENTS` events one per transfer and receives them back, with
    /// credit for all of them granted at the start.
    fn round_trip_single(&mut self) {
        let (mut sent, mut accepted, mut received) = (0u64, 0u64, 0u64);
        let deadline = Instant::now() + WAIT;
        self.client
            .conn
            .link(self.rx)
            .flow(EVENTS as u32)
            .expect("flow");
        while accepted < EVENTS || received < EVENTS {
            while sent < EVENTS && self.client.conn.credit(self.tx) > 0 {
                let payload = event(self.next_event, EVENT_SIZE).to_bytes();
                self.next_event += 1;
                self.client.send(self.tx, 0, payload);
                sent += 1;
            }
            self.client.turn(Duration::from_millis(5));
            while let Some(e) = self.client.events.pop_front() {
                self.on_event(e, false, &mut accepted, &mut received);
            }
            assert!(
                Instant::now() < deadline,
                "{}: round trip: sent {sent}, accepted {accepted}, received {received}",
                self.name
            );
        }
    }
}

fn bench_peer(c: &mut Criterion, peer: &mut Peer) {
    let mut group = c.benchmark_group(peer.name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    let name = peer.name;
    group.bench_function("ingest_batched", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                peer.wait_credit();
                let t = Instant::now();
                peer.ingest_batched();
                took += t.elapsed();
                peer.receive(EVENTS);
            }
            record(name, "ingest_batched", iters * EVENTS, took);
            took
        })
    });
    group.bench_function("deliver_batched", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                peer.wait_credit();
                peer.ingest_batched();
                let t = Instant::now();
                peer.receive(EVENTS);
                took += t.elapsed();
            }
            record(name, "deliver_batched", iters * EVENTS, took);
            took
        })
    });
    group.bench_function("round_trip_single", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                peer.round_trip_single();
                took += t.elapsed();
            }
            record(name, "round_trip_single", iters * EVENTS, took);
            took
        })
    });
    group.finish();
}

/// RabbitMQ on 127.0.0.1:5672 with a fresh queue, or why not.
fn rabbitmq() -> Result<Peer, String> {
    let addr: SocketAddr = "127.0.0.1:5672".parse().expect("address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let queue = format!("/queue/eventhubs-bench-{}-{nonce}", std::process::id());
    Peer::connect(
        "rabbitmq",
        addr,
        SaslMechanism::Plain {
            username: "guest".into(),
            password: "guest".into(),
        },
        &queue,
        &queue,
        None,
        true,
    )
}

fn throughput(c: &mut Criterion) {
    // A short retention bounds the emulator's memory: every event ingested
    // stays in the partition until it expires.
    let config = EmulatorConfig {
        retention_ms: 5_000,
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).expect("emulator");
    let mut emulator = Peer::connect(
        "emulator",
        emu.addr(),
        emulator_plain(),
        "eh1/Partitions/0",
        "eh1/ConsumerGroups/$Default/Partitions/0",
        Some(EventPosition::Latest),
        false,
    )
    .expect("the emulator answers");
    bench_peer(c, &mut emulator);
    match rabbitmq() {
        Ok(mut peer) => bench_peer(c, &mut peer),
        Err(why) => println!(
            "note: RabbitMQ's AMQP 1.0 plugin is not reachable on 127.0.0.1:5672 ({why}); \
             skipping the peer group (start it with `bash .ci/rabbitmq.sh`)"
        ),
    }
    summary();
}

fn summary() {
    let totals = TOTALS.lock().unwrap();
    let rate = |broker, workload| {
        totals
            .get(&(broker, workload))
            .filter(|(_, d)| !d.is_zero())
            .map(|(n, d)| *n as f64 / d.as_secs_f64())
    };
    println!("\nsummary: events/s over loopback TCP, 1 KiB events (all timed iterations)");
    for workload in ["ingest_batched", "deliver_batched", "round_trip_single"] {
        let emulator = rate("emulator", workload);
        let rabbit = rate("rabbitmq", workload);
        let show = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0}"));
        let ratio = match (emulator, rabbit) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        println!(
            "  {workload:<18} emulator {:>9}  rabbitmq {:>9}  emulator/rabbitmq {ratio}",
            show(emulator),
            show(rabbit)
        );
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
