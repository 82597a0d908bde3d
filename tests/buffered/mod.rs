//! The buffered producer and idempotent publishing against the emulator
//! over real sockets, written once, generic over the runtime. Each
//! adapter's `tests/buffered.rs` includes this file and instantiates every
//! scenario with [`buffered_tests!`] for its runtime.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventhubs_async::{
    BufferedProducer, BufferedProducerOptions, EnqueueOptions, Error, EventData, EventPosition,
    EventStream, FailedBatch, Hub, HubOptions, IdempotentError, PartitionPublishingOptions,
    ReceiveOptions, ReceivedEvent, Runtime, SasTokenProvider, SendOptions, SentBatch,
    TransportKind, TransportOptions, Value, WhenFull,
};
use eventhubs_emulator::config::HubConfig;
use eventhubs_emulator::{Emulator, EmulatorConfig};
use futures_util::StreamExt;

/// Runs `f`, failing if it takes longer than `secs`.
pub async fn within<R: Runtime, T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    let sleep = R::default().sleep(Duration::from_secs(secs));
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => t,
        futures_util::future::Either::Right(_) => panic!("{what}: no result within {secs} s"),
    }
}

/// `Some(t)` if `f` completes within `ms`, else `None` (and `f` dropped).
async fn done_within<R: Runtime, T>(ms: u64, f: impl Future<Output = T>) -> Option<T> {
    let sleep = R::default().sleep(Duration::from_millis(ms));
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => Some(t),
        futures_util::future::Either::Right(_) => None,
    }
}

/// An emulator whose hub `eh1` has `partitions` partitions.
fn emulator(partitions: u32) -> Emulator {
    let config = EmulatorConfig {
        hubs: vec![HubConfig {
            name: "eh1".into(),
            partition_count: partitions,
            consumer_groups: vec!["$Default".into()],
        }],
        ..EmulatorConfig::default()
    };
    Emulator::start(config).unwrap()
}

fn hub<R: Runtime>(e: &Emulator, options: HubOptions) -> Hub<R> {
    Hub::from_connection_string(&e.connection_string("eh1"), options).expect("hub")
}

fn n_of(e: &ReceivedEvent) -> i64 {
    e.get("n").and_then(Value::as_i64).expect("n")
}

fn event(n: i64) -> EventData {
    EventData::new(format!("event {n}")).with_property("n", n)
}

/// Every event of `partition`, from the start.
async fn all_of<R: Runtime>(h: &Hub<R>, partition: &str) -> Vec<ReceivedEvent> {
    let info = h.partition_information(partition).await.unwrap();
    if info.is_empty {
        return Vec::new();
    }
    let count = (info.last_sequence_number + 1) as usize;
    let mut s: EventStream = h
        .receiver(
            partition,
            ReceiveOptions::new().with_start_position(EventPosition::Earliest),
        )
        .await
        .unwrap();
    let mut v = Vec::new();
    within::<R, _>(30, "receiving", async {
        while v.len() < count {
            match s.next().await {
                Some(Ok(e)) => v.push(e),
                Some(Err(e)) => panic!("receiver failed after {} events: {e}", v.len()),
                None => panic!("receiver ended after {} events", v.len()),
            }
        }
    })
    .await;
    v
}

/// What the callbacks saw: events sent by partition, failed batches.
#[derive(Default)]
struct Outcomes {
    sent: Mutex<BTreeMap<String, Vec<i64>>>,
    failed: Mutex<Vec<(String, usize, String)>>,
}

impl Outcomes {
    fn options(self: &Arc<Self>) -> BufferedProducerOptions {
        let (s, f) = (self.clone(), self.clone());
        BufferedProducerOptions::new()
            .with_on_success(move |b: SentBatch| {
                let mut sent = s.sent.lock().unwrap();
                let entry = sent.entry(b.partition_id).or_default();
                entry.extend(
                    b.events
                        .iter()
                        .map(|e| e.get("n").and_then(Value::as_i64).expect("n")),
                );
            })
            .with_on_failure(move |b: FailedBatch| {
                f.failed.lock().unwrap().push((
                    b.partition_id,
                    b.events.len(),
                    b.error.to_string(),
                ));
            })
    }

    fn sent_count(&self) -> usize {
        self.sent.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// The hashing vectors of the service's partition key resolution (Jenkins
/// lookup3 `hashlittle2`, the two halves folded and taken modulo the
/// partition count), over 32 partitions.
const VECTORS_32: [(&str, &str); 4] = [("7", "31"), ("131", "2"), ("FWfAT", "5"), ("$0cb", "29")];

/// Keyed events go where the service would put them: the published
/// vectors, and for 200 more keys the partition the emulator chooses when
/// the same key is sent to the hub (the gateway). Keys stay on the events.
pub async fn keys_land_where_the_service_puts_them<R: Runtime>() {
    let e = emulator(32);
    let h = hub::<R>(&e, HubOptions::default());
    let outcomes = Arc::new(Outcomes::default());
    let producer: BufferedProducer = h
        .buffered_producer(outcomes.options().with_max_wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(producer.partition_ids().len(), 32);
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    let mut n = 0;
    for (key, expected) in VECTORS_32 {
        let p = producer
            .enqueue(event(n).with_partition_key(key))
            .await
            .unwrap();
        assert_eq!(p, expected, "key {key:?}");
        chosen.insert(key.to_owned(), p);
        n += 1;
    }
    let keys: Vec<String> = (0..200).map(|i| format!("device-{i}")).collect();
    for key in &keys {
        let p = producer
            .enqueue_with(
                event(n),
                EnqueueOptions::new().with_partition_key(key.clone()),
            )
            .await
            .unwrap();
        chosen.insert(key.clone(), p);
        n += 1;
    }
    within::<R, _>(30, "flush", producer.flush()).await.unwrap();
    assert_eq!(outcomes.sent_count(), n as usize);
    assert!(outcomes.failed.lock().unwrap().is_empty());

    // The same keys sent to the gateway, which routes them itself.
    let gateway = hub::<R>(&e, HubOptions::default());
    for key in chosen.keys() {
        gateway
            .send_with(
                EventData::new("via the gateway").with_property("n", -1i64),
                SendOptions::new().with_partition_key(key.clone()),
            )
            .await
            .unwrap();
    }
    let mut via_producer: BTreeMap<String, String> = BTreeMap::new();
    let mut via_gateway: BTreeMap<String, String> = BTreeMap::new();
    for p in producer.partition_ids() {
        for ev in all_of(&h, p).await {
            let key = ev.partition_key().expect("the key is kept").to_owned();
            let into = if n_of(&ev) < 0 {
                &mut via_gateway
            } else {
                &mut via_producer
            };
            assert_eq!(into.insert(key, p.clone()), None, "a key once per route");
        }
    }
    assert_eq!(via_producer, chosen, "events went where enqueue said");
    assert_eq!(via_gateway, chosen, "the gateway agrees on every key");
    producer.close().await.unwrap();
    h.close().await.unwrap();
}

/// Flush sends everything buffered before it returns, close sends the
/// rest: every event enqueued is received once, in its partition's order,
/// and reported sent.
pub async fn flush_and_close_lose_nothing<R: Runtime>() {
    let e = emulator(4);
    let h = hub::<R>(&e, HubOptions::default());
    let outcomes = Arc::new(Outcomes::default());
    let producer = h
        .buffered_producer(
            outcomes
                .options()
                .with_max_wait(Duration::from_secs(60))
                .with_max_concurrent_sends_per_partition(2),
        )
        .await
        .unwrap();
    // Round-robin, by key and to a chosen partition.
    for n in 0..600i64 {
        let mut ev = event(n);
        ev.body = vec![b'x'; 512].into();
        match n % 3 {
            0 => producer.enqueue(ev).await.unwrap(),
            1 => producer
                .enqueue(ev.with_partition_key(format!("k{}", n % 17)))
                .await
                .unwrap(),
            _ => producer
                .enqueue_with(ev, EnqueueOptions::new().with_partition_id("3"))
                .await
                .unwrap(),
        };
    }
    within::<R, _>(30, "flush", producer.flush()).await.unwrap();
    assert_eq!(producer.buffered(), 0);
    assert_eq!(outcomes.sent_count(), 600, "flush waited for every batch");
    for n in 600..1000i64 {
        producer.enqueue(event(n)).await.unwrap();
    }
    let clone = producer.clone();
    within::<R, _>(30, "close", producer.close()).await.unwrap();
    assert_eq!(outcomes.sent_count(), 1000, "close sent the rest");
    assert!(outcomes.failed.lock().unwrap().is_empty());
    let refused = clone.enqueue(event(1000)).await.unwrap_err();
    assert!(refused.is_closed(), "{refused}");

    let mut seen = BTreeSet::new();
    for p in ["0", "1", "2", "3"] {
        let events = all_of(&h, p).await;
        let ns: Vec<i64> = events.iter().map(n_of).collect();
        let reported = outcomes.sent.lock().unwrap()[p].clone();
        assert_eq!(
            ns, reported,
            "partition {p}: received as reported, in order"
        );
        for n in ns {
            assert!(seen.insert(n), "event {n} received twice");
        }
    }
    assert_eq!(seen, (0..1000).collect::<BTreeSet<_>>());
    h.close().await.unwrap();
}

/// A full buffer refuses with BufferFull when told to, and otherwise
/// makes enqueue wait until a batch has gone; an enqueue given up while
/// it waits buffers nothing.
pub async fn a_full_buffer_refuses_or_waits_as_configured<R: Runtime>() {
    for when_full in [WhenFull::Fail, WhenFull::Wait] {
        let e = emulator(2);
        let h = hub::<R>(&e, HubOptions::default());
        let outcomes = Arc::new(Outcomes::default());
        let producer = h
            .buffered_producer(
                outcomes
                    .options()
                    .with_max_wait(Duration::from_secs(60))
                    .with_max_buffered_events_per_partition(5)
                    .with_when_full(when_full),
            )
            .await
            .unwrap();
        let to0 = || EnqueueOptions::new().with_partition_id("0");
        producer.enqueue_with(event(0), to0()).await.unwrap();
        producer.flush().await.unwrap();
        // The next transfer is refused with server-busy: its batch stays
        // in flight for the service's back-off (4 s and more).
        e.throttle_sends(1).unwrap();
        for n in 1..=5 {
            producer.enqueue_with(event(n), to0()).await.unwrap();
        }
        within::<R, _>(5, "the full buffer's batch goes", async {
            while producer.buffered_for("0") > 0 {
                R::default().sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        for n in 6..=10 {
            producer.enqueue_with(event(n), to0()).await.unwrap();
        }
        assert_eq!(producer.buffered_for("0"), 5);
        // Another partition has room.
        producer
            .enqueue_with(event(100), EnqueueOptions::new().with_partition_id("1"))
            .await
            .unwrap();
        let mut expected: Vec<i64> = (0..=10).collect();
        match when_full {
            WhenFull::Fail => {
                let err = producer.enqueue_with(event(11), to0()).await.unwrap_err();
                match &err {
                    Error::BufferFull {
                        partition_id,
                        limit,
                    } => assert_eq!((partition_id.as_str(), *limit), ("0", 5)),
                    other => panic!("expected BufferFull, got {other}"),
                }
            }
            _ => {
                // Given up while waiting: not buffered.
                let gave_up =
                    done_within::<R, _>(300, producer.enqueue_with(event(-7), to0())).await;
                assert!(gave_up.is_none(), "enqueue waited for room");
                let started = std::time::Instant::now();
                let p = within::<R, _>(
                    30,
                    "enqueue waits for room",
                    producer.enqueue_with(event(11), to0()),
                )
                .await
                .unwrap();
                assert_eq!(p, "0");
                assert!(
                    started.elapsed() >= Duration::from_secs(2),
                    "enqueue returned only once the throttled batch had gone: {:?}",
                    started.elapsed()
                );
                expected.push(11);
            }
        }
        within::<R, _>(30, "close", producer.close()).await.unwrap();
        assert!(outcomes.failed.lock().unwrap().is_empty());
        let ns: Vec<i64> = all_of(&h, "0").await.iter().map(n_of).collect();
        assert_eq!(
            ns, expected,
            "{when_full:?}: every event buffered, in order, once"
        );
        h.close().await.unwrap();
    }
}

/// A TCP relay to `upstream` that can lose what the service sends
/// (acknowledgements included) and then cut every connection, as a
/// network that fails after the service has appended a transfer.
struct AckLosingRelay {
    port: u16,
    losing: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl AckLosingRelay {
    fn start(upstream: std::net::SocketAddr) -> AckLosingRelay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let losing = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let sockets: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (ls, dn, socks) = (losing.clone(), done.clone(), sockets.clone());
        std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            while !dn.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = std::net::TcpStream::connect(upstream).unwrap();
                socks.lock().unwrap().push(client.try_clone().unwrap());
                socks.lock().unwrap().push(server.try_clone().unwrap());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    let _ = std::io::copy(&mut from, &mut to);
                });
                let ls = ls.clone();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let (mut from, mut to) = (s2, c2);
                    let mut buf = vec![0; 16 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) if ls.load(Ordering::Relaxed) => {}
                            Ok(n) => {
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        AckLosingRelay {
            port,
            losing,
            done,
            sockets,
        }
    }

    /// What the service sends from now on is lost.
    fn lose(&self) {
        self.losing.store(true, Ordering::Relaxed);
    }

    /// Every connection is cut; new ones relay both ways again.
    fn cut(&self) {
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.losing.store(false, Ordering::Relaxed);
    }
}

impl Drop for AckLosingRelay {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// A hub of the emulator through `relay`.
fn relayed<R: Runtime>(relay: &AckLosingRelay, options: HubOptions) -> Hub<R> {
    let provider =
        SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
    Hub::new(
        "localhost",
        "eh1",
        provider,
        options.with_transport(TransportOptions::new(TransportKind::Plain).with_port(relay.port)),
    )
    .expect("hub")
}

/// Sends a batch of 20 whose acknowledgement is lost with the connection:
/// the hub sends it again on a new connection. Returns how many events the
/// partition then holds (21 when appended once: a warm-up event and the
/// batch).
async fn send_across_a_cut<R: Runtime>(e: &Emulator, options: HubOptions) -> Vec<i64> {
    let relay = AckLosingRelay::start(e.addr());
    let h = relayed::<R>(&relay, options.with_partitioned_sender("0"));
    h.send(event(-1)).await.unwrap();
    let before = e.stats().unwrap().events_in;
    relay.lose();
    let events: Vec<EventData> = (0..20).map(event).collect();
    let send = h.send_batch(events);
    let cut = async {
        within::<R, _>(10, "the service appends the batch", async {
            while e.stats().unwrap().events_in < before + 20 {
                R::default().sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        relay.cut();
    };
    let (sent, ()) = within::<R, _>(
        60,
        "send across the cut",
        futures_util::future::join(send, cut),
    )
    .await;
    sent.expect("the send completes on the new connection");
    let direct = hub::<R>(e, HubOptions::default());
    let ns = all_of(&direct, "0").await.iter().map(n_of).collect();
    h.close().await.unwrap();
    direct.close().await.unwrap();
    ns
}

/// An idempotent send whose acknowledgement is lost with its connection
/// is sent again and appended once; the same cut without idempotent
/// publishing appends the batch twice (what idempotence is for).
pub async fn an_idempotent_send_across_a_connection_cut_appends_once<R: Runtime>() {
    let e = emulator(2);
    let ns = send_across_a_cut::<R>(&e, HubOptions::default().with_idempotent_publishing()).await;
    assert_eq!(ns, (-1..20).collect::<Vec<_>>(), "appended once, in order");
    assert!(
        e.stats().unwrap().duplicates >= 1,
        "the resend was acknowledged as a duplicate: {:?}",
        e.stats().unwrap()
    );

    let plain = emulator(2);
    let ns = send_across_a_cut::<R>(&plain, HubOptions::default()).await;
    assert_eq!(
        ns.len(),
        41,
        "without idempotence the resend is appended again: {ns:?}"
    );
}

/// The state per partition can be read, saved and given back: a new hub
/// restored from it continues the numbering. A producer of the same group
/// with a higher owner level takes the partition (the old one gets
/// producer-epoch-stolen). (A gap, out-of-order-sequence, cannot be made
/// through the public API, which numbers consecutively and whose starting
/// number replaces the service's; the emulator's model tests and the
/// core's simulations refuse one.)
pub async fn publishing_state_restore_epoch_and_sequence_errors<R: Runtime>() {
    let e = emulator(2);
    let first = hub::<R>(&e, HubOptions::default().with_idempotent_publishing());
    assert_eq!(first.partition_publishing_state("0").await.unwrap(), None);
    let to0 = || SendOptions::new().with_partition_id("0");
    first
        .send_batch_with((0..5).map(event), to0())
        .await
        .unwrap();
    let state = first
        .partition_publishing_state("0")
        .await
        .unwrap()
        .expect("state after a send");
    let states = first.partition_publishing_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states["0"], state);
    // Not a partition: refused with a message that says what to do.
    let err = first.send(event(99)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    first.close().await.unwrap();

    // A restarted process continues from the saved state.
    let restored = hub::<R>(
        &e,
        HubOptions::default()
            .with_idempotent_publishing()
            .with_partition_publishing("0", PartitionPublishingOptions::from_state(state)),
    );
    restored.send_with(event(5), to0()).await.unwrap();
    let after = restored
        .partition_publishing_state("0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.producer_group_id, state.producer_group_id);
    assert_eq!(
        after.last_published_sequence_number,
        state.last_published_sequence_number + 1
    );

    // A higher owner level of the same group takes the partition.
    let thief = hub::<R>(
        &e,
        HubOptions::default()
            .with_idempotent_publishing()
            .with_partition_publishing(
                "0",
                PartitionPublishingOptions::new()
                    .producer_group_id(state.producer_group_id)
                    .owner_level(state.owner_level + 1),
            ),
    );
    thief.send_with(event(6), to0()).await.unwrap();
    let err = restored.send_with(event(-2), to0()).await.unwrap_err();
    assert!(err.is_producer_epoch_stolen(), "{err}");
    assert!(
        matches!(&err, Error::Idempotent(e) if matches!(**e, IdempotentError::EpochStolen { .. })),
        "{err:?}"
    );
    assert_eq!(err.condition(), Some("com.microsoft:producer-epoch-stolen"));
    thief.close().await.unwrap();

    let direct = hub::<R>(&e, HubOptions::default());
    let ns: Vec<i64> = all_of(&direct, "0").await.iter().map(n_of).collect();
    assert_eq!(
        ns,
        (0..7).collect::<Vec<_>>(),
        "the refused event was not appended"
    );
    restored.close().await.unwrap();
}

/// The buffered producer on an idempotent hub: keys and round-robin over
/// the partitions, each partition's events numbered and appended once,
/// its state there to read.
pub async fn buffered_and_idempotent<R: Runtime>() {
    let e = emulator(4);
    let h = hub::<R>(&e, HubOptions::default().with_idempotent_publishing());
    let outcomes = Arc::new(Outcomes::default());
    let producer = h.buffered_producer(outcomes.options()).await.unwrap();
    for n in 0..400i64 {
        let ev = if n % 2 == 0 {
            event(n).with_partition_key(format!("k{n}"))
        } else {
            event(n)
        };
        producer.enqueue(ev).await.unwrap();
    }
    within::<R, _>(30, "close", producer.close()).await.unwrap();
    assert!(outcomes.failed.lock().unwrap().is_empty());
    assert_eq!(outcomes.sent_count(), 400);
    let states = h.partition_publishing_states().await.unwrap();
    let mut seen = BTreeSet::new();
    for p in ["0", "1", "2", "3"] {
        let ns: Vec<i64> = all_of(&h, p).await.iter().map(n_of).collect();
        assert_eq!(ns, outcomes.sent.lock().unwrap()[p]);
        assert!(states.contains_key(p), "partition {p} has a state");
        seen.extend(ns);
    }
    assert_eq!(seen.len(), 400);
    // A buffered producer cannot send several batches of one partition at
    // once with idempotent publishing.
    let err = h
        .buffered_producer(
            BufferedProducerOptions::new().with_max_concurrent_sends_per_partition(2),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    h.close().await.unwrap();
}

/// Instantiates every scenario as a `#[test]` for one runtime:
/// `buffered_tests!(MyRuntime, |f| block_on(f));`
#[macro_export]
macro_rules! buffered_tests {
    ($rt:ty, $block_on:expr) => {
        buffered_tests!(@each $rt, $block_on;
            keys_land_where_the_service_puts_them, flush_and_close_lose_nothing,
            a_full_buffer_refuses_or_waits_as_configured,
            an_idempotent_send_across_a_connection_cut_appends_once,
            publishing_state_restore_epoch_and_sequence_errors, buffered_and_idempotent);
    };
    (@each $rt:ty, $block_on:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let block_on = $block_on;
                block_on(buffered::$name::<$rt>());
            }
        )*
    };
}
