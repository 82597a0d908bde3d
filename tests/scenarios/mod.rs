//! Integration scenarios of the async API against the emulator over real
//! sockets, written once, generic over the runtime. Each adapter's
//! `tests/emulator.rs` includes this file and instantiates every scenario
//! with [`scenario_tests!`] for its runtime.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventhubs_async::{
    BatchOptions, Checkpoint, CheckpointCadence, CheckpointPersister, Condition, Error, EventData,
    EventPosition, EventStream, FilePersister, Hub, HubOptions, MessageId, PersistFuture,
    ReceiveOptions, ReceivedEvent, RetryPolicy, Runtime, SasTokenProvider, SendOptions,
    TransportFailureKind, TransportKind, TransportOptions, TryAddReason, Value,
};
use eventhubs_emulator::broker::LinkSelector;
use eventhubs_emulator::{Emulator, EmulatorConfig};
// The emulator's fault injection takes the core's AMQP error: test
// plumbing, not the client's API.
use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::codec::Symbol;
use futures_util::StreamExt;

/// Runs `f`, failing if it takes longer than `secs`.
pub async fn within<R: Runtime, T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    let sleep = R::default().sleep(Duration::from_secs(secs));
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => t,
        futures_util::future::Either::Right(_) => panic!("{what}: no result within {secs} s"),
    }
}

fn hub<R: Runtime>(e: &Emulator, options: HubOptions) -> Hub<R> {
    Hub::from_connection_string(&e.connection_string("eh1"), options).expect("hub")
}

fn numbered(range: std::ops::Range<i64>) -> Vec<EventData> {
    range
        .map(|i| EventData::new(format!("event {i}")).with_property("n", i))
        .collect()
}

fn n_of(e: &ReceivedEvent) -> i64 {
    e.get("n").and_then(Value::as_i64).expect("n")
}

async fn take<R: Runtime>(s: &mut EventStream, count: usize) -> Vec<ReceivedEvent> {
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

fn earliest() -> ReceiveOptions {
    ReceiveOptions::new().with_start_position(EventPosition::Earliest)
}

fn from_seq(n: i64, inclusive: bool) -> ReceiveOptions {
    ReceiveOptions::new().with_start_position(EventPosition::sequence_number(n, inclusive))
}

fn partitioned(p: &str) -> HubOptions {
    HubOptions::new().with_partitioned_sender(p)
}

/// Every send option and every receive option.
pub async fn send_and_receive_options<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::default());
    // Message id, content type, correlation id, and a partition key that
    // pins both events to one partition.
    let keyed = EventData::new("keyed").with_partition_key("device-42");
    h.send(
        keyed
            .clone()
            .with_message_id("m-1")
            .with_content_type("text/plain")
            .with_correlation_id(7u64),
    )
    .await
    .unwrap();
    h.send(keyed).await.unwrap();
    let mut both = Vec::new();
    for p in ["0", "1"] {
        let info = h.partition_information(p).await.unwrap();
        if !info.is_empty {
            let mut s = h.receiver(p, earliest()).await.unwrap();
            both.extend(take::<R>(&mut s, (info.last_sequence_number + 1) as usize).await);
        }
    }
    assert_eq!(both.len(), 2, "both keyed events in one partition");
    assert_eq!(both[0].partition_id(), both[1].partition_id());
    assert_eq!(both[0].message_id(), Some(&MessageId::from("m-1")));
    assert_eq!(both[0].content_type(), Some("text/plain"));
    assert_eq!(both[0].correlation_id(), Some(&MessageId::Ulong(7)));
    assert_eq!(both[0].partition_key(), Some("device-42"));

    // A partitioned sender, and a batch of 300 events of 1 KiB split into
    // several transfers.
    let p1 = hub::<R>(&e, partitioned("1"));
    let before = p1
        .partition_information("1")
        .await
        .unwrap()
        .last_sequence_number;
    let mut big = numbered(0..300);
    for ev in &mut big {
        ev.body = vec![b'x'; 1024].into();
    }
    p1.send_batch(big).await.unwrap();
    let after = p1
        .partition_information("1")
        .await
        .unwrap()
        .last_sequence_number;
    assert_eq!(after - before, 300);

    // Start positions: sequence number, offset, timestamp, latest; consumer
    // group, epoch, identifier, prefetch 1, last-enqueued tracking.
    let mut s = p1
        .receiver(
            "1",
            from_seq(before + 101, true)
                .with_consumer_group("cg1")
                .with_owner_level(3)
                .with_identifier("scenario")
                .with_prefetch(1)
                .with_track_last_enqueued(true),
        )
        .await
        .unwrap();
    let got = take::<R>(&mut s, 200).await;
    assert_eq!(n_of(&got[0]), 100);
    assert_eq!(n_of(&got[199]), 299);
    let last = got[199].last_enqueued().expect("last-enqueued figures");
    assert_eq!(last.sequence_number, Some(after));
    let offset_150 = got[50].offset().to_owned();
    let time_0 = got[0].enqueued_time().millis();
    drop(s);
    let mut s = p1
        .receiver(
            "1",
            ReceiveOptions::new().with_start_position(EventPosition::offset(offset_150, false)),
        )
        .await
        .unwrap();
    assert_eq!(
        n_of(&take::<R>(&mut s, 1).await[0]),
        151,
        "starting offset is exclusive"
    );
    drop(s);
    let mut s = p1
        .receiver(
            "1",
            ReceiveOptions::new().with_start_position(EventPosition::enqueued_time(
                eventhubs_async::Timestamp::from_millis(time_0 - 60_000),
                false,
            )),
        )
        .await
        .unwrap();
    let first = take::<R>(&mut s, 1).await;
    assert!(first[0].sequence_number() <= before + 1);
    drop(s);
    let mut s = p1
        .receiver(
            "1",
            ReceiveOptions::new().with_start_position(EventPosition::Latest),
        )
        .await
        .unwrap();
    p1.send(EventData::new("after latest")).await.unwrap();
    assert_eq!(
        take::<R>(&mut s, 1).await[0].body(),
        "after latest".as_bytes()
    );
    drop(s);
    p1.close().await.unwrap();
    h.close().await.unwrap();
}

/// Hub and partition information, with the errors of a missing
/// partition.
pub async fn runtime_information<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::default());
    let info = h.runtime_information().await.unwrap();
    assert_eq!(info.path, "eh1");
    assert_eq!(info.partition_ids, vec!["0", "1"]);
    let p = h.partition_information("0").await.unwrap();
    assert!(p.is_empty);
    let err = h.partition_information("7").await.unwrap_err();
    assert!(
        matches!(&err, Error::Service(_)),
        "the service said so: {err}"
    );
    assert!(!err.is_timeout(), "{err}");
    h.close().await.unwrap();
}

fn certificate() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

async fn round_trip<R: Runtime>(h: &Hub<R>) {
    let latest = || ReceiveOptions::new().with_start_position(EventPosition::Latest);
    let s0 = h.receiver("0", latest()).await.unwrap();
    let s1 = h.receiver("1", latest()).await.unwrap();
    h.send_batch(numbered(0..20))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    let mut both = futures_util::stream::select(s0, s1);
    let mut got = Vec::new();
    within::<R, _>(30, "round trip", async {
        while got.len() < 20 {
            got.push(n_of(&both.next().await.expect("stream").expect("event")));
        }
    })
    .await;
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    drop(both);
    h.close().await.unwrap();
}

/// TLS with a certificate generated here and trusted through an option;
/// SNI and the certificate name are the namespace host.
pub async fn tls_transport<R: Runtime>() {
    let (cert, key) = certificate();
    let e = Emulator::builder().tls(cert.clone(), key).start().unwrap();
    let port = e.tls_addr().unwrap().port();
    let transport = TransportOptions::new(TransportKind::Tls)
        .with_port(port)
        .with_trusted_pem(cert.as_bytes())
        .unwrap();
    let provider =
        SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
    let h = Hub::<R>::new(
        "localhost",
        "eh1",
        provider,
        HubOptions::new().with_transport(transport),
    )
    .unwrap();
    round_trip(&h).await;
    // Without trusting the certificate, the connection fails.
    let provider =
        SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
    let transport = TransportOptions::new(TransportKind::Tls).with_port(port);
    let retry = RetryPolicy {
        max_retries: 1,
        ..Default::default()
    };
    let h = Hub::<R>::new(
        "localhost",
        "eh1",
        provider,
        HubOptions::new()
            .with_transport(transport)
            .with_retry(retry)
            .with_operation_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    assert!(h.send(EventData::new("x")).await.is_err());
}

/// AMQP over WebSocket, plain and over TLS.
pub async fn websocket_transport<R: Runtime>() {
    let (cert, key) = certificate();
    let e = Emulator::builder()
        .tls(cert.clone(), key)
        .websocket(true)
        .start()
        .unwrap();
    for (kind, port) in [
        (TransportKind::WebSocketPlain, e.ws_addr().unwrap().port()),
        (TransportKind::WebSocket, e.wss_addr().unwrap().port()),
    ] {
        let transport = TransportOptions::new(kind)
            .with_port(port)
            .with_trusted_pem(cert.as_bytes())
            .unwrap();
        let provider =
            SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
        let h = Hub::<R>::new(
            "localhost",
            "eh1",
            provider,
            HubOptions::new().with_transport(transport),
        )
        .unwrap();
        round_trip(&h).await;
    }
}

/// The emulator drops every connection mid-stream: the receiver resumes
/// after its last event, with no loss and no duplicate.
pub async fn reconnects_without_loss_or_duplicates<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, partitioned("0"));
    let mut s = h.receiver("0", earliest().with_prefetch(7)).await.unwrap();
    h.send_batch(numbered(0..50)).await.unwrap();
    let first = take::<R>(&mut s, 20).await;
    assert!(e.drop_connections().unwrap() >= 1);
    h.send_batch(numbered(50..100)).await.unwrap();
    assert!(e.drop_connections().unwrap() >= 1);
    let rest = take::<R>(&mut s, 80).await;
    let all: Vec<i64> = first.iter().chain(&rest).map(n_of).collect();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    let seqs: Vec<i64> = first
        .iter()
        .chain(&rest)
        .map(|e| e.sequence_number())
        .collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    // A link detached by the service is re-attached too.
    e.detach_links(
        LinkSelector::Receivers,
        AmqpError::new(Symbol::from_static("amqp:link:detach-forced"), "scenario"),
    )
    .unwrap();
    h.send(EventData::new("after detach")).await.unwrap();
    assert_eq!(
        take::<R>(&mut s, 1).await[0].body(),
        "after detach".as_bytes()
    );
    h.close().await.unwrap();
}

/// `com.microsoft:server-busy` on a send is retried after the service's
/// back-off and succeeds within the deadline.
pub async fn server_busy_is_retried<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::default());
    h.send(EventData::new("warm-up")).await.unwrap();
    e.throttle_sends(1).unwrap();
    let started = std::time::Instant::now();
    within::<R, _>(
        30,
        "throttled send",
        h.send(EventData::new("throttled once")),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited the server-busy back-off"
    );
    // Throttled for longer than the deadline: the send fails in time.
    e.throttle_sends(1000).unwrap();
    let r = within::<R, _>(
        30,
        "send under throttling",
        h.send_with(
            EventData::new("x"),
            SendOptions::new().with_timeout(Duration::from_secs(6)),
        ),
    )
    .await;
    let err = r.expect_err("throttled past the deadline");
    assert!(err.is_timeout() && err.is_transient(), "{err}");
    assert_eq!(err.condition(), Some("com.microsoft:server-busy"), "{err}");
    h.close().await.unwrap();
}

/// The error a handler returned, as its own type.
#[derive(Debug)]
struct GaveUp(i64);

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handler gave up at event {}", self.0)
    }
}

impl std::error::Error for GaveUp {}

/// A listener closed through its handle stops and reports done; a handler
/// error stops the listener and is kept with its type.
pub async fn listener_handle<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, partitioned("0"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let handle = h
        .receive(
            "0",
            move |ev| {
                let s2 = s2.clone();
                async move {
                    s2.lock().unwrap().push(n_of(&ev));
                    if n_of(&ev) == 4 {
                        Err(GaveUp(4))
                    } else {
                        Ok(())
                    }
                }
            },
            earliest(),
        )
        .await
        .unwrap();
    h.send_batch(numbered(0..10)).await.unwrap();
    within::<R, _>(30, "handler error stops the listener", handle.done()).await;
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    let err = handle.err().expect("the handler's error");
    assert!(matches!(*err, Error::Handler(_)), "{err}");
    assert_eq!(err.handler_error::<GaveUp>().map(|g| g.0), Some(4));
    let source = std::error::Error::source(&*err).expect("the handler's error is the source");
    assert_eq!(source.downcast_ref::<GaveUp>().map(|g| g.0), Some(4));
    assert_eq!(
        err.to_string(),
        "the event handler failed: handler gave up at event 4"
    );
    let closed = handle.close().await.expect_err("close returns the error");
    assert!(Arc::ptr_eq(&closed, &err));
    // The last handled event (3) was checkpointed when it stopped: the
    // next receive without a start position resumes at 4.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let handle = h
        .receive(
            "0",
            move |ev| {
                s2.lock().unwrap().push(n_of(&ev));
                async { Ok::<(), String>(()) }
            },
            ReceiveOptions::new(),
        )
        .await
        .unwrap();
    within::<R, _>(30, "reading", async {
        while seen.lock().unwrap().len() < 6 {
            R::default().sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), (4..10).collect::<Vec<_>>());
    within::<R, _>(10, "close", handle.close()).await.unwrap();
    within::<R, _>(10, "done after close", handle.done()).await;
    assert!(handle.err().is_none());
    h.close().await.unwrap();
}

/// Checkpoints written to a file by one hub are resumed by the next.
pub async fn checkpoints_resume_after_restart<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let dir = temp_dir("restart");
    let persister = Arc::new(FilePersister::<R>::new(&dir).unwrap());
    let h = hub::<R>(
        &e,
        partitioned("1").with_checkpoint_persister(persister.clone()),
    );
    h.send_batch(numbered(0..5)).await.unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let handle = h
        .receive(
            "1",
            move |ev| {
                g.lock().unwrap().push(n_of(&ev));
                async { Ok::<(), String>(()) }
            },
            ReceiveOptions::new(),
        )
        .await
        .unwrap();
    within::<R, _>(30, "first run", async {
        while got.lock().unwrap().len() < 5 {
            R::default().sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    handle.close().await.unwrap();
    h.close().await.unwrap();
    drop(h);
    // A new client (a restarted process) with the same directory.
    let h = hub::<R>(
        &e,
        partitioned("1")
            .with_checkpoint_persister(Arc::new(FilePersister::<R>::new(&dir).unwrap())),
    );
    h.send_batch(numbered(5..8)).await.unwrap();
    let mut s = h.receiver("1", ReceiveOptions::new()).await.unwrap();
    let events = take::<R>(&mut s, 3).await;
    let rest: Vec<i64> = events.iter().map(n_of).collect();
    assert_eq!(rest, vec![5, 6, 7]);
    {
        use eventhubs_async::EventCheckpoint as _;
        let cp = events[0].checkpoint();
        assert_eq!(
            (cp.offset.as_str(), cp.sequence_number),
            (events[0].offset(), events[0].sequence_number())
        );
    }
    let saved = FilePersister::<R>::new(&dir)
        .unwrap()
        .read(h.host(), "eh1", "$Default", "1")
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(saved.sequence_number, 4, "the last handled event");
    assert_eq!(*got.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    // The stream's own helper checkpoints an event; close waits for the
    // detach.
    s.checkpoint(&events[2]).await.unwrap();
    s.close().await.unwrap();
    let saved = persister
        .read(h.host(), "eh1", "$Default", "1")
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(saved.sequence_number, events[2].sequence_number());
    assert!(e.links().unwrap().iter().all(|l| l.role != "receiver"));
    h.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp_dir(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "eventhubs-scenario-{what}-{}-{}",
        std::process::id(),
        rand_suffix()
    ))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A persister that records every write, in memory.
#[derive(Default)]
struct Recording {
    writes: Mutex<Vec<i64>>,
}

impl CheckpointPersister for Recording {
    fn write<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> PersistFuture<'a, ()> {
        self.writes.lock().unwrap().push(checkpoint.sequence_number);
        Box::pin(async { Ok(()) })
    }

    fn read<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> PersistFuture<'a, Option<Checkpoint>> {
        Box::pin(async { Ok(None) })
    }
}

/// `receive` checkpoints on the cadence asked for (every 3 events; every
/// 200 ms; only at the stop), and always at the stop. A write in progress
/// when the next is due is not waited for: the next one writes the
/// latest handled event.
pub async fn checkpoints_on_the_chosen_cadence<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let run = |cadence: CheckpointCadence| {
        let e = &e;
        async move {
            let recording = Arc::new(Recording::default());
            let h = hub::<R>(
                e,
                HubOptions::new().with_checkpoint_persister(recording.clone()),
            );
            let count = Arc::new(Mutex::new(0));
            let c = count.clone();
            let handle = h
                .receive(
                    "0",
                    move |_| {
                        *c.lock().unwrap() += 1;
                        async { Ok::<(), String>(()) }
                    },
                    earliest().with_checkpoint_cadence(cadence),
                )
                .await
                .unwrap();
            within::<R, _>(30, "eight events", async {
                while *count.lock().unwrap() < 8 {
                    R::default().sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            // Whatever the cadence wrote by now (writes run in a task of
            // their own: give them a moment).
            R::default().sleep(Duration::from_millis(300)).await;
            let before_stop = recording.writes.lock().unwrap().clone();
            handle.close().await.unwrap();
            let after_stop = recording.writes.lock().unwrap().clone();
            h.close().await.unwrap();
            (before_stop, after_stop)
        }
    };
    let h = hub::<R>(&e, partitioned("0"));
    h.send_batch(numbered(0..8)).await.unwrap();
    h.close().await.unwrap();

    // Every 3 events: after the third (sequence number 2), then the latest
    // handled when the next is due; the last handled (7) by the stop.
    let (before, after) = run(CheckpointCadence::every_events(3)).await;
    assert_eq!(before.first(), Some(&2), "{before:?}");
    assert!(before.len() >= 2 && before.len() <= 3, "{before:?}");
    assert!(before.windows(2).all(|w| w[0] < w[1]), "{before:?}");
    assert_eq!(after.last(), Some(&7), "{after:?}");
    assert!(after.len() <= 3, "{after:?}");

    // Every 200 ms: one write for the burst of eight.
    let (before, after) = run(CheckpointCadence::every(Duration::from_millis(200))).await;
    assert_eq!(before.last(), Some(&7), "{before:?}");
    assert!(before.len() <= 2, "{before:?}");
    assert_eq!(after, before, "nothing new to write at the stop");

    // Only at the stop: nothing before, the last handled event at the stop.
    let (before, after) = run(CheckpointCadence::at_stop_only()).await;
    assert_eq!(before, Vec::<i64>::new());
    assert_eq!(after, vec![7]);

    // Every event.
    let (_, after) = run(CheckpointCadence::every_event()).await;
    assert_eq!(after.last(), Some(&7), "{after:?}");
    assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");
}

/// Sends to two partitions and by partition key, all on one hub: one AMQP
/// connection carries them.
pub async fn per_send_routing_on_one_connection<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::new());
    h.send_with(
        EventData::new("to 0"),
        SendOptions::new().with_partition_id("0"),
    )
    .await
    .unwrap();
    h.send_batch_with(numbered(0..3), SendOptions::new().with_partition_id("1"))
        .await
        .unwrap();
    h.send_batch_with(
        numbered(0..4),
        SendOptions::new().with_partition_key("device-7"),
    )
    .await
    .unwrap();
    let info0 = h.partition_information("0").await.unwrap();
    let info1 = h.partition_information("1").await.unwrap();
    let total = (info0.last_sequence_number + 1) + (info1.last_sequence_number + 1);
    assert_eq!(total, 8);
    assert!(info0.last_sequence_number >= 0 && info1.last_sequence_number >= 2);
    // The keyed events are together, in order, in one partition.
    let mut keyed = Vec::new();
    for p in ["0", "1"] {
        let mut s = h.receiver(p, earliest()).await.unwrap();
        let info = h.partition_information(p).await.unwrap();
        for ev in take::<R>(&mut s, (info.last_sequence_number + 1) as usize).await {
            if ev.partition_key() == Some("device-7") {
                keyed.push((p, n_of(&ev)));
            }
        }
        s.close().await.unwrap();
    }
    assert_eq!(keyed.len(), 4);
    assert!(keyed.iter().all(|(p, _)| *p == keyed[0].0));
    assert_eq!(
        keyed.iter().map(|k| k.1).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    let stats = e.stats().unwrap();
    assert_eq!(
        stats.connections_accepted, 1,
        "one connection for every route"
    );
    // Conflicting routes are the caller's error, said so.
    let err = h
        .send_with(
            EventData::new("x"),
            SendOptions::new()
                .with_partition_id("0")
                .with_partition_key("k"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    let err = h
        .send_with(
            EventData::new("x").with_partition_key("a"),
            SendOptions::new().with_partition_key("b"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    h.close().await.unwrap();
}

/// A batch sized to the link refuses the event that would overflow it,
/// giving it back; what fits goes out as one transfer.
pub async fn batches_refuse_the_event_that_would_overflow<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::new());
    let mut batch = h
        .create_batch(BatchOptions::new().with_partition_id("1"))
        .await
        .unwrap();
    assert_eq!(batch.partition_id(), Some("1"));
    assert!(batch.max_size_in_bytes() >= 256 * 1024, "the link's limit");
    // Limited to 8 KiB: seven 1 KiB events fit, the eighth does not.
    let mut small = h
        .create_batch(
            BatchOptions::new()
                .with_partition_id("1")
                .with_max_size(8 * 1024),
        )
        .await
        .unwrap();
    assert_eq!(small.max_size_in_bytes(), 8 * 1024);
    let mut i = 0;
    let refused = loop {
        let ev = EventData::new(vec![b'x'; 1024]).with_property("n", i);
        match small.try_add(ev) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(refused.reason(), TryAddReason::Full);
    assert_eq!(small.len(), 7);
    assert!(small.size_in_bytes() <= 8 * 1024);
    let back = refused.into_event();
    assert_eq!(back.get("n").and_then(Value::as_i64), Some(7));
    assert!(matches!(
        small.try_add(EventData::new(vec![0; 9000])),
        Err(e) if e.reason() == TryAddReason::TooLarge
    ));
    h.send_event_batch(small).await.unwrap();
    batch.try_add(back).unwrap();
    h.send_event_batch(batch).await.unwrap();
    let mut s = h.receiver("1", earliest()).await.unwrap();
    let got: Vec<i64> = take::<R>(&mut s, 8).await.iter().map(n_of).collect();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    s.close().await.unwrap();
    h.close().await.unwrap();
}

/// A `receiver()` future dropped before it returns leaves no link
/// attached, whenever it is dropped; a send dropped before its transfer
/// went out publishes nothing.
pub async fn dropped_futures_leave_nothing_behind<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::new());
    h.runtime_information().await.unwrap();
    let no_receivers = || async {
        within::<R, _>(10, "no receiver link left", async {
            while e.links().unwrap().iter().any(|l| l.role == "receiver") {
                R::default().sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    };
    for delay_ms in [0u64, 1, 2, 5, 10, 20, 50] {
        let opening = h.receiver("0", earliest());
        let cut = R::default().sleep(Duration::from_millis(delay_ms));
        match futures_util::future::select(Box::pin(opening), cut).await {
            // Opened before the cut: dropping the stream detaches too.
            futures_util::future::Either::Left((stream, _)) => drop(stream.unwrap()),
            futures_util::future::Either::Right((_, opening)) => drop(opening),
        }
        no_receivers().await;
    }
    // Held up by a slow put-token, the receiver is dropped before any
    // attach: none ever appears.
    e.set_response_delay(Duration::from_millis(500)).unwrap();
    let opening = h.receiver("1", earliest().with_consumer_group("cg1"));
    let cut = R::default().sleep(Duration::from_millis(100));
    match futures_util::future::select(Box::pin(opening), cut).await {
        futures_util::future::Either::Left(_) => panic!("opened despite the delay"),
        futures_util::future::Either::Right((_, opening)) => drop(opening),
    }
    R::default().sleep(Duration::from_millis(800)).await;
    no_receivers().await;
    // A send whose sender link waits for its token is cancelled when
    // dropped: the event is never published.
    let sending = h.send_with(
        EventData::new("dropped"),
        SendOptions::new().with_partition_id("1"),
    );
    let cut = R::default().sleep(Duration::from_millis(100));
    match futures_util::future::select(Box::pin(sending), cut).await {
        futures_util::future::Either::Left(_) => panic!("sent despite the delay"),
        futures_util::future::Either::Right((_, sending)) => drop(sending),
    }
    e.set_response_delay(Duration::ZERO).unwrap();
    R::default().sleep(Duration::from_millis(800)).await;
    h.send_with(
        EventData::new("kept"),
        SendOptions::new().with_partition_id("1"),
    )
    .await
    .unwrap();
    let info = h.partition_information("1").await.unwrap();
    assert_eq!(info.last_sequence_number, 0, "only the event not dropped");
    h.close().await.unwrap();
}

/// A higher epoch steals the partition; the first stream ends with an
/// ownership-lost error. A wrong key is refused: the error's chain goes
/// down to the put-token's status and AMQP condition.
pub async fn epochs_and_wrong_keys<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::default());
    let mut a = h
        .receiver("0", ReceiveOptions::new().with_owner_level(1))
        .await
        .unwrap();
    let _b = h
        .receiver("0", ReceiveOptions::new().with_owner_level(2))
        .await
        .unwrap();
    let end = within::<R, _>(10, "stolen", a.next()).await;
    match end {
        Some(Err(err)) => {
            assert!(err.is_ownership_lost(), "{err}");
            assert_eq!(err.condition(), Some("amqp:link:stolen"));
        }
        other => panic!("expected ownership lost, got {other:?}"),
    }
    h.close().await.unwrap();
    let cs = e
        .connection_string("eh1")
        .replace("SAS_KEY_VALUE", "not-the-key");
    let o = HubOptions::new().with_retry(RetryPolicy {
        max_retries: 1,
        ..Default::default()
    });
    let h = Hub::<R>::from_connection_string(&cs, o).unwrap();
    let err = h.send(EventData::new("x")).await.unwrap_err();
    assert!(
        matches!(err, Error::Service(_)),
        "the service said so: {err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the service refused the token for amqps://127.0.0.1/eh1"),
        "{err}"
    );
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(err.condition(), Some("amqp:unauthorized-access"), "{err}");
    assert!(!err.is_transient());
    // The chain: the refusal, then the condition the service gave.
    let mut chain = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(c) = cause {
        chain.push(c.to_string());
        cause = c.source();
    }
    assert_eq!(chain.len(), 2, "{chain:?}");
    let condition = std::error::Error::source(&err)
        .and_then(|c| c.downcast_ref::<Condition>())
        .expect("the condition is the source");
    assert_eq!(condition.status(), Some(401));
    assert_eq!(condition.symbol(), Some("amqp:unauthorized-access"));
    assert!(
        chain[1].starts_with("status 401 amqp:unauthorized-access"),
        "{chain:?}"
    );
    h.close().await.unwrap();
}

/// A TLS listener whose certificate the client does not trust: the
/// request fails at once (a permanent failure, not retried until the
/// deadline), with an error that names the certificate problem.
pub async fn untrusted_certificate_fails_at_once<R: Runtime>() {
    let (cert, key) = certificate();
    let e = Emulator::builder().tls(cert, key).start().unwrap();
    let port = e.tls_addr().unwrap().port();
    let provider =
        SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
    let h = Hub::<R>::new(
        "localhost",
        "eh1",
        provider,
        HubOptions::new().with_transport(TransportOptions::new(TransportKind::Tls).with_port(port)),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = within::<R, _>(2, "runtime_information", h.runtime_information())
        .await
        .expect_err("the certificate is not trusted");
    let text = err.to_string();
    assert!(
        text.contains("certificate") && text.contains("rejected"),
        "the error names the certificate problem: {text}"
    );
    assert!(!err.is_timeout(), "{text}");
    // The transport's failure, with the TLS error as its typed source.
    match &err {
        Error::Transport(t) => {
            assert_eq!(t.kind(), TransportFailureKind::CertificateRejected);
            let source = std::error::Error::source(t).expect("a typed cause");
            assert!(
                source
                    .downcast_ref::<eventhubs_async::TransportError>()
                    .is_some(),
                "{source:?}"
            );
        }
        other => panic!("expected a transport failure, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    h.close().await.unwrap();
}

fn unreachable_hub<R: Runtime>(host: &str, port: u16, timeout: Duration) -> Hub<R> {
    let provider =
        SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
    Hub::<R>::new(
        host,
        "eh1",
        provider,
        HubOptions::new()
            .with_transport(TransportOptions::new(TransportKind::Plain).with_port(port))
            .with_operation_timeout(timeout),
    )
    .unwrap()
}

/// An unknown host and a port nobody listens on: transient failures, tried
/// again until the deadline, which reports the last cause.
pub async fn unknown_hosts_and_refused_ports_fail_by_the_deadline<R: Runtime>() {
    let timeout = Duration::from_secs(3);
    let free_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (host, port, cause) in [
        (
            "nosuchhost.invalid",
            5672,
            "DNS lookup of nosuchhost.invalid failed".to_owned(),
        ),
        (
            "127.0.0.1",
            free_port,
            format!("TCP connect to 127.0.0.1:{free_port} refused"),
        ),
    ] {
        let h = unreachable_hub::<R>(host, port, timeout);
        let started = std::time::Instant::now();
        let err = within::<R, _>(10, "runtime_information", h.runtime_information())
            .await
            .expect_err("nothing to reach");
        let took = started.elapsed();
        let text = err.to_string();
        assert!(err.is_timeout(), "{text}");
        // The last cause is a transport failure with its I/O error.
        let last = std::error::Error::source(&err).expect("the last cause");
        let io = last
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        assert!(io.is_some(), "the I/O error is kept: {last:?}");
        assert!(
            text.starts_with("timed out after") && text.contains(&cause),
            "the time-out names the last cause ({cause}): {text}"
        );
        assert!(
            took >= timeout - Duration::from_millis(100) && took < timeout + Duration::from_secs(2),
            "failed by the deadline: {took:?}"
        );
        h.close().await.unwrap();
    }
}

/// A TCP relay to `upstream` that can stop reading what the client sends
/// (a peer that accepted the connection and then stalls).
struct StallingRelay {
    port: u16,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl StallingRelay {
    fn start(upstream: std::net::SocketAddr) -> StallingRelay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (st, dn) = (stalled.clone(), done.clone());
        std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            while !dn.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = std::net::TcpStream::connect(upstream).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (st, dn) = (st.clone(), dn.clone());
                // Client to server, until stalled: then nothing is read.
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let (mut from, mut to) = (client, server);
                    let mut buf = vec![0; 16 * 1024];
                    loop {
                        while st.load(Ordering::Relaxed) && !dn.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        if dn.load(Ordering::Relaxed) {
                            break;
                        }
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = from.shutdown(std::net::Shutdown::Both);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
                // Server to client, always.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (s2, c2);
                    let _ = std::io::copy(&mut from, &mut to);
                });
            }
        });
        StallingRelay {
            port,
            stalled,
            done,
        }
    }

    fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for StallingRelay {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The peer accepted the connection and then stopped reading, with sends
/// filling the socket: `close` still returns by its deadline.
pub async fn close_returns_by_its_deadline_when_the_peer_stops_reading<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let relay = StallingRelay::start(e.addr());
    let timeout = Duration::from_secs(3);
    let provider =
        SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
    let h = Hub::<R>::new(
        "127.0.0.1",
        "eh1",
        provider,
        HubOptions::new()
            .with_transport(TransportOptions::new(TransportKind::Plain).with_port(relay.port))
            .with_partitioned_sender("0")
            .with_operation_timeout(timeout),
    )
    .unwrap();
    // The sender link is attached and has credit before the peer stalls.
    within::<R, _>(10, "a first send", h.send(EventData::new("first")))
        .await
        .unwrap();
    relay.stall();
    // 64 MiB that cannot be read: the socket buffers fill and writes block.
    let big: Vec<EventData> = (0..1024)
        .map(|_| EventData::new(vec![b'x'; 64 * 1024]))
        .collect();
    let send = h.send_batch(big);
    let close = async {
        R::default().sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        within::<R, _>(10, "close", h.close()).await.unwrap();
        started.elapsed()
    };
    let (sent, took) = futures_util::future::join(send, close).await;
    assert!(sent.is_err(), "the send cannot have completed");
    assert!(
        took < timeout + Duration::from_secs(2),
        "close returned by its deadline: {took:?}"
    );
    drop(relay);
}

/// Instantiates every scenario as a `#[test]` for one runtime:
/// `scenario_tests!(MyRuntime, |f| block_on(f));`
#[macro_export]
macro_rules! scenario_tests {
    ($rt:ty, $block_on:expr) => {
        scenario_tests!(@each $rt, $block_on;
            send_and_receive_options, runtime_information, tls_transport, websocket_transport,
            reconnects_without_loss_or_duplicates, server_busy_is_retried, listener_handle,
            checkpoints_resume_after_restart, checkpoints_on_the_chosen_cadence,
            per_send_routing_on_one_connection, batches_refuse_the_event_that_would_overflow,
            dropped_futures_leave_nothing_behind, epochs_and_wrong_keys,
            untrusted_certificate_fails_at_once,
            unknown_hosts_and_refused_ports_fail_by_the_deadline,
            close_returns_by_its_deadline_when_the_peer_stops_reading);
    };
    (@each $rt:ty, $block_on:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let block_on = $block_on;
                block_on(scenarios::$name::<$rt>());
            }
        )*
    };
}
