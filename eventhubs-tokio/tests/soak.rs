//! Soak under faults: producers and receivers on both runtimes (tokio and
//! async-std, through the public `Hub` of `eventhubs-tokio` and
//! `eventhubs-async-std`) against the emulator in a process of its own,
//! every byte through a fault proxy on loopback (`tests/soak/proxy.rs`:
//! delays, splits, stalls, truncations, resets mid-frame, half-closed
//! sockets), while a chaos thread cuts every connection, drops them in the
//! emulator, detaches links and throttles sends at random moments.
//!
//! It checks that no acknowledged event is lost (every receiver sees every
//! producer's numbers without a gap up to its last acknowledged one), that
//! no gap or duplicate reaches a receiver (its sequence numbers go up by
//! one; a producer's number seen twice is a sender's at-least-once
//! duplicate, allowed and counted), that every operation ends by its
//! deadline, and that the resident memory of the client process and of the
//! emulator's stays flat (sampled from `/proc`; the growth from the end of
//! the warm-up to the end is reported and bounded).
//!
//! `SOAK_SECS` sets the duration (default 180 s, what CI runs);
//! `SOAK_SEED` the seed. It prints one summary line (to stderr, past the
//! test harness's capture).

#[path = "../../tests/soak/proxy.rs"]
mod proxy;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eventhubs_async::{EventData, EventPosition, Hub, ReceiveOptions, Runtime, SendOptions, Value};
use eventhubs_emulator::broker::LinkSelector;
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::codec::Symbol;
use eventhubs_proto::eventhubs::SplitMix64;
use futures_util::StreamExt;

use proxy::{FaultProxy, Faults};

/// Producers: 0 and 1 on tokio, 2 and 3 on async-std; producer `p` sends
/// to partition `p % 2`.
const PRODUCERS: usize = 4;
const PARTITIONS: usize = 2;
/// A send's deadline, retries included.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Information requests, receiver attaches, closes.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How late past its deadline an operation may return (scheduling on a
/// loaded machine).
const SLACK: Duration = Duration::from_secs(3);
/// The emulator keeps events this long, so that its memory is bounded by
/// the rate, not the duration.
const RETENTION: Duration = Duration::from_secs(60);
/// How often memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The bound on either process's resident memory growth over the run.
const MAX_GROWTH_KIB: u64 = 24 * 1024;

const EMULATOR_ENV: &str = "EVENTHUBS_SOAK_EMULATOR";

// ---------------------------------------------------------------------
// The ledger: what producers acknowledged and receivers saw.

#[derive(Default)]
struct Ledger {
    /// Per producer: its last acknowledged number (-1: none).
    acked: Vec<AtomicI64>,
    /// Per producer: one past the last number it ever tried to send.
    sent: Vec<AtomicI64>,
    events_acked: AtomicU64,
    sends_ok: AtomicU64,
    send_errors: AtomicU64,
    info_requests: AtomicU64,
    info_errors: AtomicU64,
    received: AtomicU64,
    sender_duplicates: AtomicU64,
    receiver_errors: AtomicU64,
    receiver_reopens: AtomicU64,
    /// Operations that returned later than their deadline and the slack.
    late: AtomicU64,
    violations: Mutex<Vec<String>>,
    violation_count: AtomicU64,
    error_kinds: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Producers have stopped.
    producers_done: AtomicU64,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            acked: (0..PRODUCERS).map(|_| AtomicI64::new(-1)).collect(),
            sent: (0..PRODUCERS).map(|_| AtomicI64::new(0)).collect(),
            ..Ledger::default()
        }
    }

    fn violation(&self, what: String) {
        self.violation_count.fetch_add(1, Ordering::Relaxed);
        let mut v = self.violations.lock().unwrap();
        if v.len() < 40 {
            v.push(what);
        }
    }

    fn error(&self, what: &str, e: &eventhubs_async::Error) {
        // The kind of fault, without the detail that varies.
        let text = e.to_string();
        let kind: String = text.chars().take(100).collect();
        *self
            .error_kinds
            .lock()
            .unwrap()
            .entry(format!("{what}: {kind}"))
            .or_default() += 1;
    }

    fn timed(&self, what: &str, started: Instant, deadline: Duration) {
        let took = started.elapsed();
        if took > deadline + SLACK {
            self.late.fetch_add(1, Ordering::Relaxed);
            self.violation(format!(
                "{what} took {took:?}, past its deadline of {deadline:?}"
            ));
        }
    }
}

/// Runs `f` on runtime `R`, giving up after `d` (None).
async fn within<R: Runtime, T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    let sleep = R::default().sleep(d);
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => Some(t),
        futures_util::future::Either::Right(_) => None,
    }
}

fn hub<R: Runtime>(connection_string: &str, seed: u64) -> Hub<R> {
    let options = eventhubs_async::HubOptions::new()
        .with_operation_timeout(OPERATION_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(5))
        .with_seed(seed);
    Hub::from_connection_string(connection_string, options).expect("hub")
}

async fn producer<R: Runtime>(
    connection_string: String,
    p: usize,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let hub: Hub<R> = hub(&connection_string, seed);
    let partition = (p % PARTITIONS).to_string();
    let mut rng = SplitMix64::new(seed);
    let mut n: i64 = 0;
    let mut batches = 0u64;
    while !stop.load(Ordering::Acquire) {
        let k = 1 + (rng.next_u64() % 4) as i64;
        let batch: Vec<EventData> = (n..n + k)
            .map(|i| {
                EventData::new(format!("producer {p} event {i}"))
                    .with_property("p", p as i64)
                    .with_property("n", i)
            })
            .collect();
        ledger.sent[p].store(n + k, Ordering::Release);
        // At least once: the same batch again until it is acknowledged.
        loop {
            let started = Instant::now();
            let options = SendOptions::new()
                .with_partition_id(partition.clone())
                .with_timeout(SEND_TIMEOUT);
            let r = hub.send_batch_with(batch.clone(), options).await;
            ledger.timed("send", started, SEND_TIMEOUT);
            match r {
                Ok(()) => {
                    ledger.acked[p].store(n + k - 1, Ordering::Release);
                    ledger.sends_ok.fetch_add(1, Ordering::Relaxed);
                    ledger.events_acked.fetch_add(k as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    ledger.send_errors.fetch_add(1, Ordering::Relaxed);
                    ledger.error("send", &e);
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    R::default().sleep(Duration::from_millis(100)).await;
                }
            }
        }
        n += k;
        batches += 1;
        if batches.is_multiple_of(50) {
            let started = Instant::now();
            ledger.info_requests.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = hub.partition_information(&partition).await {
                ledger.info_errors.fetch_add(1, Ordering::Relaxed);
                ledger.error("partition_information", &e);
            }
            ledger.timed("partition_information", started, OPERATION_TIMEOUT);
        }
        R::default()
            .sleep(Duration::from_millis(5 + rng.next_u64() % 20))
            .await;
    }
    let started = Instant::now();
    let _ = hub.close().await;
    ledger.timed("close (producer)", started, OPERATION_TIMEOUT);
    ledger.producers_done.fetch_add(1, Ordering::AcqRel);
}

/// What one receiver has seen.
struct Seen {
    last_sequence: Option<i64>,
    /// Per producer, the highest number seen (-1: none).
    max: Vec<i64>,
}

impl Seen {
    /// Caught up: producers stopped and every acknowledged event of this
    /// partition's producers seen.
    fn caught_up(&self, partition: usize, ledger: &Ledger) -> bool {
        ledger.producers_done.load(Ordering::Acquire) == PRODUCERS as u64
            && (0..PRODUCERS)
                .filter(|p| p % PARTITIONS == partition)
                .all(|p| self.max[p] >= ledger.acked[p].load(Ordering::Acquire))
    }
}

async fn receiver<R: Runtime>(
    connection_string: String,
    partition: usize,
    group: &'static str,
    ledger: Arc<Ledger>,
    give_up: Arc<AtomicBool>,
    seed: u64,
) -> Seen {
    let name = format!("receiver {group}/{partition}");
    let hub: Hub<R> = hub(&connection_string, seed);
    let mut seen = Seen {
        last_sequence: None,
        max: vec![-1; PRODUCERS],
    };
    'open: while !seen.caught_up(partition, &ledger) && !give_up.load(Ordering::Acquire) {
        let position = match seen.last_sequence {
            None => EventPosition::Earliest,
            Some(s) => EventPosition::SequenceNumber {
                sequence_number: s,
                inclusive: false,
            },
        };
        let options = ReceiveOptions::new()
            .with_consumer_group(group)
            .with_start_position(position)
            .with_prefetch(300);
        let started = Instant::now();
        let opened = within::<R, _>(
            OPERATION_TIMEOUT + SLACK + SLACK,
            hub.receiver(&partition.to_string(), options),
        )
        .await;
        ledger.timed(&format!("{name}: open"), started, OPERATION_TIMEOUT);
        let mut stream = match opened {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                ledger.receiver_errors.fetch_add(1, Ordering::Relaxed);
                ledger.error(&format!("{name}: open"), &e);
                R::default().sleep(Duration::from_millis(200)).await;
                ledger.receiver_reopens.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            None => {
                ledger.receiver_reopens.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        loop {
            let next = within::<R, _>(Duration::from_secs(1), stream.next()).await;
            match next {
                None => {
                    if seen.caught_up(partition, &ledger) || give_up.load(Ordering::Acquire) {
                        let started = Instant::now();
                        let closed =
                            within::<R, _>(OPERATION_TIMEOUT + SLACK, stream.close()).await;
                        if closed.is_none() {
                            ledger.violation(format!("{name}: close did not return"));
                        }
                        ledger.timed(&format!("{name}: close"), started, OPERATION_TIMEOUT);
                        break 'open;
                    }
                }
                Some(Some(Ok(e))) => {
                    ledger.received.fetch_add(1, Ordering::Relaxed);
                    let seq = e.sequence_number();
                    match seen.last_sequence {
                        None if seq != 0 => ledger.violation(format!(
                            "{name}: the first event has sequence number {seq}, not 0"
                        )),
                        Some(l) if seq <= l => ledger.violation(format!(
                            "{name}: sequence number {seq} again (after {l}): a duplicate delivered"
                        )),
                        Some(l) if seq > l + 1 => ledger.violation(format!(
                            "{name}: sequence numbers {} to {} missing: a gap",
                            l + 1,
                            seq - 1
                        )),
                        _ => {}
                    }
                    seen.last_sequence = Some(seq.max(seen.last_sequence.unwrap_or(-1)));
                    let p = e.get("p").and_then(Value::as_i64);
                    let n = e.get("n").and_then(Value::as_i64);
                    let (Some(p), Some(n)) = (p, n) else {
                        ledger.violation(format!("{name}: an event without p and n"));
                        continue;
                    };
                    let p = p as usize;
                    if p >= PRODUCERS || p % PARTITIONS != partition {
                        ledger.violation(format!("{name}: producer {p}'s event here"));
                        continue;
                    }
                    if n > seen.max[p] + 1 {
                        ledger.violation(format!(
                            "{name}: producer {p}'s events {} to {} missing",
                            seen.max[p] + 1,
                            n - 1
                        ));
                    }
                    if n <= seen.max[p] {
                        ledger.sender_duplicates.fetch_add(1, Ordering::Relaxed);
                    } else {
                        seen.max[p] = n;
                    }
                    if n >= ledger.sent[p].load(Ordering::Acquire) {
                        ledger.violation(format!("{name}: producer {p}'s {n} was never sent"));
                    }
                }
                Some(Some(Err(e))) => {
                    ledger.receiver_errors.fetch_add(1, Ordering::Relaxed);
                    ledger.error(&format!("{name}: stream"), &e);
                    ledger.receiver_reopens.fetch_add(1, Ordering::Relaxed);
                    continue 'open;
                }
                Some(None) => {
                    ledger.violation(format!("{name}: the stream ended while its hub is open"));
                    ledger.receiver_reopens.fetch_add(1, Ordering::Relaxed);
                    continue 'open;
                }
            }
        }
    }
    let started = Instant::now();
    let _ = hub.close().await;
    ledger.timed(&format!("{name}: hub close"), started, OPERATION_TIMEOUT);
    seen
}

/// Everything one runtime runs: its producers and one receiver per
/// partition in its consumer group.
async fn workload<R: Runtime>(
    connection_string: String,
    producers: std::ops::Range<usize>,
    group: &'static str,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    give_up: Arc<AtomicBool>,
    seed: u64,
) -> Vec<Seen> {
    let producers = producers.map(|p| {
        producer::<R>(
            connection_string.clone(),
            p,
            ledger.clone(),
            stop.clone(),
            seed ^ (p as u64 + 1).wrapping_mul(0x9e37_79b9),
        )
    });
    let receivers = (0..PARTITIONS).map(|partition| {
        receiver::<R>(
            connection_string.clone(),
            partition,
            group,
            ledger.clone(),
            give_up.clone(),
            seed ^ (partition as u64 + 11).wrapping_mul(0x7f4a_7c15),
        )
    });
    let (_, seen) = futures_util::future::join(
        futures_util::future::join_all(producers),
        futures_util::future::join_all(receivers),
    )
    .await;
    seen
}

// ---------------------------------------------------------------------
// The emulator in a process of its own (this test binary, re-run on the
// ignored test below), so that its memory is its own.

struct EmulatorProcess {
    child: Child,
    stdin: ChildStdin,
    port: u16,
    stats: Arc<Mutex<Option<String>>>,
}

impl EmulatorProcess {
    fn start() -> EmulatorProcess {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "soak_emulator_process",
                "--include-ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(EMULATOR_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the emulator process");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(Mutex::new(None));
        let st = stats.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness may print "test soak_emulator_process ... "
                // before a line.
                let after = |tag: &str| {
                    line.find(tag)
                        .map(|i| line[i + tag.len()..].trim().to_string())
                };
                if let Some(port) = after("SOAK-EMULATOR-PORT ") {
                    let _ = tx.send(port.parse::<u16>().expect("port"));
                } else if let Some(s) = after("SOAK-EMULATOR-STATS ") {
                    *st.lock().unwrap() = Some(s);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the emulator process printed its port");
        EmulatorProcess {
            child,
            stdin,
            port,
            stats,
        }
    }

    fn command(&mut self, c: &str) {
        let _ = writeln!(self.stdin, "{c}");
        let _ = self.stdin.flush();
    }

    /// Ends it (stdin closed), waiting for its counters.
    fn stop(mut self) -> Option<String> {
        self.command("stats");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stats.lock().unwrap().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.stats.lock().unwrap().clone()
    }
}

/// The emulator process (run by [`soak`] with `EVENTHUBS_SOAK_EMULATOR`
/// set): prints its port, then obeys one command a line on stdin (`drop`,
/// `detach`, `throttle N`, `stats`) until stdin closes.
#[test]
#[ignore = "the soak's emulator process, started by the soak test itself"]
fn soak_emulator_process() {
    assert!(
        std::env::var_os(EMULATOR_ENV).is_some(),
        "run by the soak test, with {EMULATOR_ENV} set"
    );
    let config = EmulatorConfig {
        retention_ms: RETENTION.as_millis() as i64,
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).expect("emulator");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "SOAK-EMULATOR-PORT {}", emu.addr().port());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("drop"), _) => {
                let _ = emu.drop_connections();
            }
            (Some("detach"), _) => {
                let _ = emu.detach_links(
                    LinkSelector::All,
                    AmqpError::new(Symbol::from_static("amqp:link:detach-forced"), "soak"),
                );
            }
            (Some("throttle"), Some(n)) => {
                let _ = emu.throttle_sends(n.parse().unwrap_or(1));
            }
            (Some("stats"), _) => {
                if let Ok(s) = emu.stats() {
                    let _ = writeln!(
                        out,
                        "SOAK-EMULATOR-STATS events_in={} events_out={} connections={} throttled={} links_detached={}",
                        s.events_in, s.events_out, s.connections_accepted, s.throttled, s.links_detached
                    );
                    let _ = out.flush();
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------
// Memory.

/// VmRSS of process `pid` ("self" for this one), in KiB.
fn rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The median of the samples taken in `[from, to)`.
fn median(samples: &[(Duration, u64)], from: Duration, to: Duration) -> Option<u64> {
    let mut v: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, r)| *r)
        .collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

struct Growth {
    baseline: u64,
    end: u64,
    max: u64,
}

impl Growth {
    fn of(samples: &[(Duration, u64)], warmup: Duration, run: Duration) -> Growth {
        let window = Duration::from_secs(15);
        let baseline = median(samples, warmup, warmup + window)
            .or_else(|| samples.first().map(|s| s.1))
            .unwrap_or(0);
        let end = median(samples, run.saturating_sub(window), run + window)
            .or_else(|| samples.last().map(|s| s.1))
            .unwrap_or(0);
        let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
        Growth { baseline, end, max }
    }

    fn growth(&self) -> i64 {
        self.end as i64 - self.baseline as i64
    }

    fn show(&self) -> String {
        format!(
            "{:.1} MiB after warm-up, {:.1} MiB at the end ({:+.1} MiB), peak {:.1} MiB",
            self.baseline as f64 / 1024.0,
            self.end as f64 / 1024.0,
            self.growth() as f64 / 1024.0,
            self.max as f64 / 1024.0
        )
    }
}

/// Past the harness's capture, so CI logs show it.
fn report(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

// ---------------------------------------------------------------------

#[test]
fn soak() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x50a4);
    let run = Duration::from_secs(secs);
    // Past the retention (the emulator's log full), and a quarter of the
    // run.
    let warmup = (RETENTION + Duration::from_secs(15))
        .max(run / 4)
        .min(run / 2);

    let mut emulator = EmulatorProcess::start();
    let emulator_pid = emulator.child.id().to_string();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], emulator.port));
    let proxy = FaultProxy::start(upstream, Faults::hostile(), seed).expect("proxy");
    let connection_string = format!(
        "Endpoint=sb://127.0.0.1:{};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1",
        proxy.addr().port()
    );

    let ledger = Arc::new(Ledger::new());
    let stop = Arc::new(AtomicBool::new(false));
    let give_up = Arc::new(AtomicBool::new(false));

    let tokio_side = {
        let (cs, l, s, g) = (
            connection_string.clone(),
            ledger.clone(),
            stop.clone(),
            give_up.clone(),
        );
        thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio")
                .block_on(workload::<eventhubs_tokio::TokioRuntime>(
                    cs,
                    0..2,
                    "$Default",
                    l,
                    s,
                    g,
                    seed,
                ))
        })
    };
    let async_std_side = {
        let (cs, l, s, g) = (
            connection_string.clone(),
            ledger.clone(),
            stop.clone(),
            give_up.clone(),
        );
        thread::spawn(move || {
            async_std::task::block_on(workload::<eventhubs_async_std::AsyncStdRuntime>(
                cs,
                2..4,
                "cg1",
                l,
                s,
                g,
                seed,
            ))
        })
    };

    // Chaos and memory, from this thread.
    let mut rng = SplitMix64::new(seed ^ 0xc4a05);
    let started = Instant::now();
    let mut next_fault = started + Duration::from_secs(3);
    let mut next_sample = started;
    let mut next_progress = started + Duration::from_secs(30);
    let mut client_rss: Vec<(Duration, u64)> = Vec::new();
    let mut emulator_rss: Vec<(Duration, u64)> = Vec::new();
    let mut chaos: [u64; 4] = [0; 4]; // cut, drop, detach, throttle
    let mut recent: VecDeque<String> = VecDeque::new();
    while started.elapsed() < run {
        let now = Instant::now();
        if now >= next_sample {
            let t = started.elapsed();
            if let Some(r) = rss_kib("self") {
                client_rss.push((t, r));
            }
            if let Some(r) = rss_kib(&emulator_pid) {
                emulator_rss.push((t, r));
            }
            next_sample = now + SAMPLE_EVERY;
        }
        if now >= next_fault {
            let action = rng.next_u64() % 8;
            let what = match action {
                0..=2 => {
                    proxy.cut_all();
                    chaos[0] += 1;
                    "cut"
                }
                3 => {
                    emulator.command("drop");
                    chaos[1] += 1;
                    "drop"
                }
                4 | 5 => {
                    emulator.command("detach");
                    chaos[2] += 1;
                    "detach"
                }
                _ => {
                    emulator.command(&format!("throttle {}", 1 + rng.next_u64() % 5));
                    chaos[3] += 1;
                    "throttle"
                }
            };
            recent.push_back(what.to_string());
            if recent.len() > 5 {
                recent.pop_front();
            }
            next_fault = now + Duration::from_millis(2_000 + rng.next_u64() % 6_000);
        }
        if now >= next_progress {
            report(&format!(
                "soak {:>5} s: acked {} events, received {}, send errors {}, receiver reopens {}, violations {}, client rss {} KiB, emulator rss {} KiB",
                started.elapsed().as_secs(),
                ledger.events_acked.load(Ordering::Relaxed),
                ledger.received.load(Ordering::Relaxed),
                ledger.send_errors.load(Ordering::Relaxed),
                ledger.receiver_reopens.load(Ordering::Relaxed),
                ledger.violation_count.load(Ordering::Relaxed),
                client_rss.last().map_or(0, |s| s.1),
                emulator_rss.last().map_or(0, |s| s.1),
            ));
            next_progress = now + Duration::from_secs(60);
        }
        thread::sleep(Duration::from_millis(50));
    }
    // The last samples at full load, then the drain: no more faults, the
    // producers stop, the receivers catch up.
    let t = started.elapsed();
    if let Some(r) = rss_kib("self") {
        client_rss.push((t, r));
    }
    if let Some(r) = rss_kib(&emulator_pid) {
        emulator_rss.push((t, r));
    }
    proxy.set_faults_on(false);
    stop.store(true, Ordering::Release);
    let drain_started = Instant::now();
    let drain_limit = Duration::from_secs(90);
    while !(tokio_side.is_finished() && async_std_side.is_finished()) {
        if drain_started.elapsed() > drain_limit {
            give_up.store(true, Ordering::Release);
        }
        thread::sleep(Duration::from_millis(50));
    }
    let drained = drain_started.elapsed();
    let mut seen = tokio_side.join().expect("tokio side");
    seen.extend(async_std_side.join().expect("async-std side"));
    let emulator_stats = emulator.stop();
    let proxy_stats = proxy.stats();
    drop(proxy);

    // Every receiver saw every acknowledged event.
    let acked: Vec<i64> = ledger
        .acked
        .iter()
        .map(|a| a.load(Ordering::Acquire))
        .collect();
    for (i, s) in seen.iter().enumerate() {
        let partition = i % PARTITIONS;
        for p in (0..PRODUCERS).filter(|p| p % PARTITIONS == partition) {
            if s.max[p] < acked[p] {
                ledger.violation(format!(
                    "receiver {i} (partition {partition}) saw producer {p} up to {}, but {} were acknowledged: lost",
                    s.max[p], acked[p]
                ));
            }
        }
    }
    let client = Growth::of(&client_rss, warmup, run);
    let emu = Growth::of(&emulator_rss, warmup, run);
    report(&format!(
        "soak: {} s (seed {seed}), {} events acknowledged in {} sends ({} send errors, retried), {} received by 4 receivers ({} sender duplicates, {} receiver errors, {} reopens), {} information requests ({} errors), {} operations past their deadline, {} violations; drained in {:.1} s",
        secs,
        ledger.events_acked.load(Ordering::Relaxed),
        ledger.sends_ok.load(Ordering::Relaxed),
        ledger.send_errors.load(Ordering::Relaxed),
        ledger.received.load(Ordering::Relaxed),
        ledger.sender_duplicates.load(Ordering::Relaxed),
        ledger.receiver_errors.load(Ordering::Relaxed),
        ledger.receiver_reopens.load(Ordering::Relaxed),
        ledger.info_requests.load(Ordering::Relaxed),
        ledger.info_errors.load(Ordering::Relaxed),
        ledger.late.load(Ordering::Relaxed),
        ledger.violation_count.load(Ordering::Relaxed),
        drained.as_secs_f64(),
    ));
    report(&format!(
        "soak faults: chaos {} cuts, {} emulator drops, {} link detaches, {} throttles; proxy {:?}",
        chaos[0], chaos[1], chaos[2], chaos[3], proxy_stats
    ));
    report(&format!(
        "soak emulator: {}",
        emulator_stats.as_deref().unwrap_or("no counters")
    ));
    report(&format!(
        "soak memory: client {}; emulator {}",
        client.show(),
        emu.show()
    ));
    for (k, v) in ledger.error_kinds.lock().unwrap().iter() {
        report(&format!("soak error {v:>6} x {k}"));
    }

    let violations = ledger.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} violations, the first: {violations:#?}",
        ledger.violation_count.load(Ordering::Relaxed)
    );
    assert!(
        ledger.events_acked.load(Ordering::Relaxed) > 10 * secs,
        "too little went through to judge"
    );
    assert!(
        chaos.iter().all(|&c| c > 0) || secs < 60,
        "every kind of fault was injected: {chaos:?}"
    );
    for (who, g) in [("client", &client), ("emulator", &emu)] {
        assert!(
            g.growth() < MAX_GROWTH_KIB as i64,
            "the {who}'s resident memory grew: {}",
            g.show()
        );
    }
}
