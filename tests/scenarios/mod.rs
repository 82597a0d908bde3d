//! Integration scenarios of the async API against the emulator over real
//! sockets, written once, generic over the runtime. Each adapter's
//! `tests/emulator.rs` includes this file and instantiates every scenario
//! with [`scenario_tests!`] for its runtime.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventhubs_async::persist::{CheckpointPersister, FilePersister};
use eventhubs_async::transport::{TransportKind, TransportOptions};
use eventhubs_async::{
    Error, Event, EventStream, Hub, HubOptions, ReceiveOptions, Runtime, SasTokenProvider,
    SendOptions,
};
use eventhubs_emulator::broker::LinkSelector;
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::codec::messaging::MessageId;
use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::codec::{Symbol, Value};
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

fn numbered(range: std::ops::Range<i64>) -> Vec<Event> {
    range
        .map(|i| {
            let mut e = Event::new(format!("event {i}"));
            e.set("n", Value::Long(i));
            e
        })
        .collect()
}

fn n_of(e: &eventhubs_async::ReceivedEvent) -> i64 {
    e.data.get("n").and_then(Value::as_i64).expect("n")
}

async fn take<R: Runtime>(
    s: &mut EventStream,
    count: usize,
) -> Vec<eventhubs_async::ReceivedEvent> {
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
    ReceiveOptions {
        position: Some(eventhubs_proto::eventhubs::EventPosition::Earliest),
        ..ReceiveOptions::default()
    }
}

/// Every send option and every receive option.
pub async fn send_and_receive_options<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::default());
    // Message id, and a partition key that pins both events to one partition.
    let mut keyed = Event::new("keyed");
    keyed.partition_key = Some("device-42".into());
    h.send_with(
        keyed.clone(),
        SendOptions {
            message_id: Some("m-1".into()),
            ..Default::default()
        },
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
    assert_eq!(both[0].partition_id, both[1].partition_id);
    assert_eq!(
        both[0].data.message_id,
        Some(MessageId::String("m-1".into()))
    );
    assert_eq!(both[0].system.partition_key.as_deref(), Some("device-42"));

    // A partitioned sender, and a batch of 300 events of 1 KiB split into
    // several transfers.
    let p1 = hub::<R>(
        &e,
        HubOptions {
            partitioned_sender: Some("1".into()),
            ..HubOptions::default()
        },
    );
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
            ReceiveOptions::default()
                .sequence_number(before + 101, true)
                .consumer_group("cg1")
                .epoch(3)
                .identifier("scenario")
                .prefetch(1)
                .track_last_enqueued(),
        )
        .await
        .unwrap();
    let got = take::<R>(&mut s, 200).await;
    assert_eq!(n_of(&got[0]), 100);
    assert_eq!(n_of(&got[199]), 299);
    let last = got[199]
        .last_enqueued
        .clone()
        .expect("last-enqueued figures");
    assert_eq!(last.sequence_number, Some(after));
    let offset_150 = got[50].system.offset.clone();
    let time_0 = got[0].system.enqueued_time.millis();
    drop(s);
    let mut s = p1
        .receiver("1", ReceiveOptions::default().starting_offset(offset_150))
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
            ReceiveOptions::default().from_timestamp(time_0 - 60_000),
        )
        .await
        .unwrap();
    let first = take::<R>(&mut s, 1).await;
    assert!(first[0].system.sequence_number <= before + 1);
    drop(s);
    let mut s = p1
        .receiver("1", ReceiveOptions::default().latest())
        .await
        .unwrap();
    p1.send(Event::new("after latest")).await.unwrap();
    assert_eq!(
        take::<R>(&mut s, 1).await[0].data.body,
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
    assert!(!matches!(&err, Error::Client(e) if e.is_timeout()), "{err}");
    h.close().await.unwrap();
}

fn certificate() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

async fn round_trip<R: Runtime>(h: &Hub<R>) {
    let s0 = h
        .receiver("0", ReceiveOptions::default().latest())
        .await
        .unwrap();
    let s1 = h
        .receiver("1", ReceiveOptions::default().latest())
        .await
        .unwrap();
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
        HubOptions {
            transport,
            ..HubOptions::default()
        },
    )
    .unwrap();
    round_trip(&h).await;
    // Without trusting the certificate, the connection fails.
    let provider =
        SasTokenProvider::from_key("RootManageSharedAccessKey", "SAS_KEY_VALUE").unwrap();
    let transport = TransportOptions::new(TransportKind::Tls).with_port(port);
    let retry = eventhubs_proto::eventhubs::RetryPolicy {
        max_retries: 1,
        ..Default::default()
    };
    let h = Hub::<R>::new(
        "localhost",
        "eh1",
        provider,
        HubOptions {
            transport,
            retry,
            operation_timeout: Duration::from_secs(5),
            ..HubOptions::default()
        },
    )
    .unwrap();
    assert!(h.send(Event::new("x")).await.is_err());
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
            HubOptions {
                transport,
                ..HubOptions::default()
            },
        )
        .unwrap();
        round_trip(&h).await;
    }
}

/// The emulator drops every connection mid-stream: the receiver resumes
/// after its last event, with no loss and no duplicate.
pub async fn reconnects_without_loss_or_duplicates<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(
        &e,
        HubOptions {
            partitioned_sender: Some("0".into()),
            ..HubOptions::default()
        },
    );
    let mut s = h.receiver("0", earliest().prefetch(7)).await.unwrap();
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
        .map(|e| e.system.sequence_number)
        .collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    // A link detached by the service is re-attached too.
    e.detach_links(
        LinkSelector::Receivers,
        AmqpError::new(Symbol::from_static("amqp:link:detach-forced"), "scenario"),
    )
    .unwrap();
    h.send(Event::new("after detach")).await.unwrap();
    assert_eq!(
        take::<R>(&mut s, 1).await[0].data.body,
        "after detach".as_bytes()
    );
    h.close().await.unwrap();
}

/// `com.microsoft:server-busy` on a send is retried after the service's
/// back-off and succeeds within the deadline.
pub async fn server_busy_is_retried<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::default());
    h.send(Event::new("warm-up")).await.unwrap();
    e.throttle_sends(1).unwrap();
    let started = std::time::Instant::now();
    within::<R, _>(30, "throttled send", h.send(Event::new("throttled once")))
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
            Event::new("x"),
            SendOptions {
                timeout: Some(Duration::from_secs(6)),
                ..Default::default()
            },
        ),
    )
    .await;
    assert!(r.is_err());
    h.close().await.unwrap();
}

/// A listener closed through its handle stops and reports done; a handler
/// error stops the listener and is reported.
pub async fn listener_handle<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(
        &e,
        HubOptions {
            partitioned_sender: Some("0".into()),
            ..HubOptions::default()
        },
    );
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
                        Err("stop at 4")
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
    assert!(handle.err().is_some_and(|e| e.contains("stop at 4")));
    let seen = Arc::new(Mutex::new(0usize));
    let s2 = seen.clone();
    let handle = h
        .receive(
            "0",
            move |_| {
                *s2.lock().unwrap() += 1;
                async { Ok::<(), String>(()) }
            },
            earliest(),
        )
        .await
        .unwrap();
    within::<R, _>(30, "reading", async {
        while *seen.lock().unwrap() < 10 {
            R::default().sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within::<R, _>(10, "close", handle.close()).await.unwrap();
    within::<R, _>(10, "done after close", handle.done()).await;
    h.close().await.unwrap();
}

/// Checkpoints written to a file by one hub are resumed by the next.
pub async fn checkpoints_resume_after_restart<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "eventhubs-scenario-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let persister = Arc::new(FilePersister::new(&dir).unwrap());
    let options = || HubOptions {
        partitioned_sender: Some("1".into()),
        offset_persister: persister.clone(),
        ..HubOptions::default()
    };
    let h = hub::<R>(&e, options());
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
            ReceiveOptions::default(),
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
        HubOptions {
            offset_persister: Arc::new(FilePersister::new(&dir).unwrap()),
            ..options()
        },
    );
    h.send_batch(numbered(5..8)).await.unwrap();
    let mut s = h.receiver("1", ReceiveOptions::default()).await.unwrap();
    let events = take::<R>(&mut s, 3).await;
    let rest: Vec<i64> = events.iter().map(n_of).collect();
    assert_eq!(rest, vec![5, 6, 7]);
    {
        use eventhubs_async::EventCheckpoint as _;
        let cp = events[0].checkpoint();
        assert_eq!(
            (cp.offset.as_str(), cp.sequence_number),
            (
                events[0].system.offset.as_str(),
                events[0].system.sequence_number
            )
        );
    }
    let saved = FilePersister::new(&dir)
        .unwrap()
        .read(e_host(&h), "eh1", "$Default", "1")
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(saved.sequence_number, 4, "the last handled event");
    let _ = saved.resume_position();
    assert_eq!(*got.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    drop(s);
    h.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn e_host<R: Runtime>(h: &Hub<R>) -> &str {
    h.host()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A higher epoch steals the partition; the first stream ends with an
/// ownership-lost error. A wrong key is refused as unauthorised.
pub async fn epochs_and_wrong_keys<R: Runtime>() {
    let e = Emulator::start(EmulatorConfig::default()).unwrap();
    let h = hub::<R>(&e, HubOptions::default());
    let mut a = h
        .receiver("0", ReceiveOptions::default().epoch(1))
        .await
        .unwrap();
    let _b = h
        .receiver("0", ReceiveOptions::default().epoch(2))
        .await
        .unwrap();
    let end = within::<R, _>(10, "stolen", a.next()).await;
    match end {
        Some(Err(err)) => assert!(err.is_ownership_lost(), "{err}"),
        other => panic!("expected ownership lost, got {other:?}"),
    }
    h.close().await.unwrap();
    let cs = e
        .connection_string("eh1")
        .replace("SAS_KEY_VALUE", "not-the-key");
    let mut o = HubOptions::default();
    o.retry.max_retries = 1;
    let h = Hub::<R>::from_connection_string(&cs, o).unwrap();
    let err = h.send(Event::new("x")).await.unwrap_err();
    assert!(
        err.to_string().contains("unauthorized") || err.to_string().contains("401"),
        "{err}"
    );
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
        HubOptions {
            transport: TransportOptions::new(TransportKind::Tls).with_port(port),
            ..HubOptions::default()
        },
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
    assert!(
        !matches!(&err, Error::Client(e) if e.is_timeout()),
        "{text}"
    );
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
        HubOptions {
            transport: TransportOptions::new(TransportKind::Plain).with_port(port),
            operation_timeout: timeout,
            ..HubOptions::default()
        },
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
        assert!(matches!(&err, Error::Client(e) if e.is_timeout()), "{text}");
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
        HubOptions {
            transport: TransportOptions::new(TransportKind::Plain).with_port(relay.port),
            partitioned_sender: Some("0".into()),
            operation_timeout: timeout,
            ..HubOptions::default()
        },
    )
    .unwrap();
    // The sender link is attached and has credit before the peer stalls.
    within::<R, _>(10, "a first send", h.send(Event::new("first")))
        .await
        .unwrap();
    relay.stall();
    // 64 MiB that cannot be read: the socket buffers fill and writes block.
    let big: Vec<Event> = (0..1024)
        .map(|_| Event::new(vec![b'x'; 64 * 1024]))
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
            checkpoints_resume_after_restart, epochs_and_wrong_keys,
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
