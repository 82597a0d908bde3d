//! End-to-end throughput of the tokio client over loopback TCP against an
//! in-process emulator, and of Microsoft's Python SDK (`azure-eventhub`)
//! on the same workload against the same emulator, for a ratio.
//!
//! Events are 1 KiB. Workloads, in events (and bytes of body) per second:
//!
//! - `send_batch`: `Hub::send_batch` of 100 events to partition 0 (a
//!   partitioned sender), ten calls one after the other per iteration.
//! - `receive_prefetch`: an `EventStream` with prefetch 300 reading back
//!   1000 of the events sent to partition 0, from a given sequence number.
//!   Each iteration opens a receiver and waits for its first event
//!   untimed; the clock runs over the 1000 events after it (steady state,
//!   without link set-up).
//! - `receive_handler_file_checkpoints`: `Hub::receive` with a handler
//!   that counts events and a `FilePersister` (checkpoints as files,
//!   flushed to disk) at the hub's default checkpoint cadence, prefetch
//!   300, timed like `receive_prefetch` over the 1000 events after the
//!   first.
//!
//! The Python SDK does the same before the criterion groups
//! (`python_throughput.py`: batches of 100 built with
//! `create_batch(partition_id=...)`, sent one after the other after one
//! untimed batch; `receive_batch` with prefetch 300, timed from its first
//! event) on partition 1. It runs only under `cargo bench` (`--bench`), and
//! is skipped with a note when `python3` cannot import `azure.eventhub`.
//! After criterion's report, a summary prints both figures and the ratio
//! (ours over Python's); ours there are all timed iterations together,
//! warm-up included.
//!
//! ```text
//! cargo bench -p eventhubs-tokio --bench throughput -- --warm-up-time 1 --measurement-time 5
//! ```

use std::cell::Cell;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_tokio::{EventData, EventPosition, FilePersister, Hub, HubOptions, ReceiveOptions};
use futures_util::StreamExt;

const EVENT_SIZE: usize = 1024;
const BATCH: usize = 100;
const BATCHES_PER_ITER: usize = 10;
const EVENTS_PER_ITER: u64 = (BATCH * BATCHES_PER_ITER) as u64;
const PREFETCH: u32 = 300;
/// Events the Python SDK sends and then receives.
const PYTHON_EVENTS: u64 = 5000;
const PYTHON_TIMEOUT: Duration = Duration::from_secs(600);
/// Our partition; Python's is "1".
const PARTITION: &str = "0";
const PYTHON_PARTITION: &str = "1";

/// Timed events and time per workload, for the summary.
static SEND: Mutex<(u64, Duration)> = Mutex::new((0, Duration::ZERO));
static RECEIVE: Mutex<(u64, Duration)> = Mutex::new((0, Duration::ZERO));
static HANDLER: Mutex<(u64, Duration)> = Mutex::new((0, Duration::ZERO));

fn record(total: &Mutex<(u64, Duration)>, events: u64, took: Duration) {
    let mut t = total.lock().unwrap();
    t.0 += events;
    t.1 += took;
}

/// Events per second of the Python SDK, or why there are none.
enum Python {
    Measured { send: f64, receive: f64 },
    Skipped(String),
}

fn python_baseline(connection_string: &str) -> Python {
    let import = Command::new("python3")
        .args(["-c", "import azure.eventhub"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match import {
        Ok(s) if s.success() => {}
        Ok(_) => {
            return Python::Skipped(
                "python3 cannot import azure.eventhub (pip install azure-eventhub)".into(),
            )
        }
        Err(e) => return Python::Skipped(format!("python3 does not run: {e}")),
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_throughput.py");
    println!("python: azure-eventhub sending and receiving {PYTHON_EVENTS} events of {EVENT_SIZE} bytes ...");
    let mut child = match Command::new("python3")
        .arg(script)
        .args(["--events", &PYTHON_EVENTS.to_string()])
        .args(["--batch", &BATCH.to_string()])
        .args(["--size", &EVENT_SIZE.to_string()])
        .args(["--partition", PYTHON_PARTITION])
        .args(["--prefetch", &PREFETCH.to_string()])
        // Passed in the environment, not on the command line.
        .env("EVENTHUB_CONNECTION_STRING", connection_string)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Python::Skipped(format!("cannot start {script}: {e}")),
    };
    let deadline = Instant::now() + PYTHON_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Python::Skipped(format!(
                    "{script} did not finish within {} s",
                    PYTHON_TIMEOUT.as_secs()
                ));
            }
        }
    }
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return Python::Skipped(format!("{script}: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        stdout.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    match (
        out.status.success(),
        value("send_events_per_s"),
        value("receive_events_per_s"),
    ) {
        (true, Some(send), Some(receive)) => Python::Measured { send, receive },
        _ => Python::Skipped(format!(
            "{script} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// One batch; cloning it shares the bodies.
fn events() -> Vec<EventData> {
    let event = EventData::new(vec![b'x'; EVENT_SIZE]);
    vec![event; BATCH]
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let emulator = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let cs = emulator.connection_string("eh1");

    let python = if benching {
        python_baseline(&cs)
    } else {
        Python::Skipped("only under cargo bench".into())
    };
    match &python {
        Python::Measured { send, receive } => println!(
            "python: azure-eventhub {send:.0} events/s sending, {receive:.0} events/s receiving"
        ),
        Python::Skipped(why) => println!("python: comparison skipped: {why}"),
    }

    let hub = {
        let _guard = rt.enter();
        Hub::from_connection_string(&cs, HubOptions::new().with_partitioned_sender(PARTITION))
            .expect("hub")
    };
    let batch = events();
    let send_batches = |n: usize| {
        let (hub, batch) = (&hub, &batch);
        async move {
            for _ in 0..n {
                hub.send_batch(batch.iter().cloned())
                    .await
                    .expect("send_batch");
            }
        }
    };
    // Connects and opens the sender link before anything is timed.
    rt.block_on(send_batches(1));

    let throughput = Throughput::ElementsAndBytes {
        elements: EVENTS_PER_ITER,
        bytes: EVENTS_PER_ITER * EVENT_SIZE as u64,
    };

    let mut group = criterion.benchmark_group("eventhubs_tokio");
    group
        .throughput(throughput.clone())
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10);
    group.bench_function("send_batch_100x1KiB", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    send_batches(BATCHES_PER_ITER).await;
                }
                let took = start.elapsed();
                record(&SEND, iters * EVENTS_PER_ITER, took);
                took
            })
        })
    });

    // Reads back what was sent, from the start of the partition; sends more
    // (untimed) when the reader catches up.
    let cursor = Cell::new(0i64);
    group.bench_function("receive_prefetch_300", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let from = cursor.get();
                    let needed = from + EVENTS_PER_ITER as i64; // inclusive
                    loop {
                        let info = hub.partition_information(PARTITION).await.expect("info");
                        if info.last_sequence_number >= needed {
                            break;
                        }
                        send_batches(BATCHES_PER_ITER).await;
                    }
                    let mut stream = hub
                        .receiver(
                            PARTITION,
                            ReceiveOptions::new()
                                .with_start_position(EventPosition::sequence_number(from, true))
                                .with_prefetch(PREFETCH),
                        )
                        .await
                        .expect("receiver");
                    let first = stream.next().await.expect("stream").expect("event");
                    assert_eq!(first.sequence_number(), from);
                    let start = Instant::now();
                    for i in 1..=EVENTS_PER_ITER as i64 {
                        let e = stream.next().await.expect("stream").expect("event");
                        assert_eq!(e.sequence_number(), from + i);
                        assert_eq!(e.body().len(), EVENT_SIZE);
                    }
                    took += start.elapsed();
                    drop(stream);
                    cursor.set(needed + 1);
                }
                record(&RECEIVE, iters * EVENTS_PER_ITER, took);
                took
            })
        })
    });
    // The same reads through `Hub::receive`, checkpointing to files.
    let dir = std::env::temp_dir().join(format!(
        "eventhubs-bench-checkpoints-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let checkpointing = {
        let _guard = rt.enter();
        Hub::from_connection_string(
            &cs,
            HubOptions::new().with_checkpoint_persister(std::sync::Arc::new(
                FilePersister::new(&dir).expect("dir"),
            )),
        )
        .expect("hub")
    };
    group.bench_function("receive_handler_file_checkpoints", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let from = cursor.get();
                    let needed = from + EVENTS_PER_ITER as i64; // inclusive
                    loop {
                        let info = hub.partition_information(PARTITION).await.expect("info");
                        if info.last_sequence_number >= needed {
                            break;
                        }
                        send_batches(BATCHES_PER_ITER).await;
                    }
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
                    let handle = checkpointing
                        .receive(
                            PARTITION,
                            move |e| {
                                let _ = tx.send(e.sequence_number());
                                async { Ok::<(), std::convert::Infallible>(()) }
                            },
                            ReceiveOptions::new()
                                .with_start_position(EventPosition::sequence_number(from, true))
                                .with_prefetch(PREFETCH),
                        )
                        .await
                        .expect("receive");
                    assert_eq!(rx.recv().await, Some(from));
                    let start = Instant::now();
                    for i in 1..=EVENTS_PER_ITER as i64 {
                        assert_eq!(rx.recv().await, Some(from + i));
                    }
                    took += start.elapsed();
                    handle.close().await.expect("listener");
                    cursor.set(needed + 1);
                }
                record(&HANDLER, iters * EVENTS_PER_ITER, took);
                took
            })
        })
    });
    group.finish();
    criterion.final_summary();

    rt.block_on(hub.close()).expect("close");
    rt.block_on(checkpointing.close()).expect("close");
    let _ = std::fs::remove_dir_all(&dir);
    drop(emulator);

    summary(&python);
}

fn summary(python: &Python) {
    let rate = |t: &Mutex<(u64, Duration)>| {
        let (events, took) = *t.lock().unwrap();
        (events > 0 && !took.is_zero()).then(|| events as f64 / took.as_secs_f64())
    };
    let mib = |eps: f64| eps * EVENT_SIZE as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "summary: {EVENT_SIZE}-byte events over loopback to one partition; batches of {BATCH}; \
         receive with prefetch {PREFETCH}, timed after the first event"
    );
    for (name, ours, theirs) in [
        (
            "send_batch",
            rate(&SEND),
            match python {
                Python::Measured { send, .. } => Some(*send),
                Python::Skipped(_) => None,
            },
        ),
        (
            "receive",
            rate(&RECEIVE),
            match python {
                Python::Measured { receive, .. } => Some(*receive),
                Python::Skipped(_) => None,
            },
        ),
        ("receive+ckpt", rate(&HANDLER), None),
    ] {
        let Some(ours) = ours else {
            println!("  {name:<11} not run");
            continue;
        };
        let line = format!(
            "  {name:<11} eventhubs-tokio {ours:>9.0} events/s ({:>7.2} MiB/s)",
            mib(ours)
        );
        match theirs {
            Some(py) => println!(
                "{line}   azure-eventhub (Python) {py:>8.0} events/s ({:>6.2} MiB/s)   ratio {:.1}x",
                mib(py),
                ours / py
            ),
            None => println!("{line}   Python not measured"),
        }
    }
}
