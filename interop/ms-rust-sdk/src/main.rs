//! Drives Microsoft's Rust SDK (`azure_messaging_eventhubs` 0.16 on
//! fe2o3-amqp) against the emulator, the way a user of that SDK would.
//!
//! ```text
//! ms-rust-sdk-interop stall-send    [OPTIONS]   short sends in a loop
//! ms-rust-sdk-interop stall-receive [OPTIONS]   short receives in a loop
//! ms-rust-sdk-interop stall         [OPTIONS]   both, one after the other
//! ```
//!
//! Every run is one fresh program's worth of work on a fresh multi-threaded
//! tokio runtime (what `#[tokio::main]` gives a user): open a client, do a
//! short piece of work, close. A run that has not finished within
//! `--timeout` seconds is a stall; the program names the step it was in,
//! prints a closing `N passed, N failed` line and exits non-zero on any
//! stall or error.
//!
//! The emulator is either started here (`--emulator PATH`: the binary is
//! run with `--listen 127.0.0.1:0` and its `LISTENING PORT` line read back)
//! or already running (`--endpoint HOST:PORT`).
//!
//! ```text
//! ms-rust-sdk-interop bench --emulator PATH [OPTIONS]   side by side with our client
//! ```
//!
//! `bench` (the [`bench`] module) runs the same workloads on this project's
//! client and on Microsoft's SDK, each client in a child process of its
//! own, and reports CPU time per event, events/s and their ratios.

use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_messaging_eventhubs::{
    ConsumerClient, EventDataBatchOptions, OpenReceiverOptions, ProducerClient, StartLocation,
    StartPosition,
};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

mod bench;
mod ms;
mod ours;

/// The emulator's default namespace key (see the project README).
pub(crate) const CONNECTION_STRING: &str = "Endpoint=sb://localhost/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE";

const USAGE: &str = "\
usage: ms-rust-sdk-interop (stall-send | stall-receive | stall) [OPTIONS]
       ms-rust-sdk-interop bench --emulator PATH [OPTIONS]   (bench --help)

  --emulator PATH     start this eventhubs-emulator binary on an ephemeral port
  --emulator-log FILE its stderr goes here (default: discarded)
  --endpoint H:P      use an emulator already listening there (default 127.0.0.1:5672)
  --hub NAME          event hub (default eh1)
  --partition ID      partition (default 0)
  --runs N            runs of each workload (default 50)
  --timeout SECS      a run not done by then is a stall (default 10)
  --events N          events per send run (default 1000) and per receive run (default 100)
  --batch-size N      events per batch in a send run (default 100)
  --event-size BYTES  body size (default 1024)
  --keep-going        do not stop at the first stall
  --worker-threads N  tokio worker threads per run (default: one per core)

Built with --features sdk-trace, RUST_LOG (e.g. fe2o3_amqp=trace) logs the
SDK to stderr.";

#[derive(Clone, Debug)]
struct Options {
    emulator: Option<String>,
    emulator_log: Option<String>,
    endpoint: String,
    hub: String,
    partition: String,
    runs: usize,
    timeout: Duration,
    events: Option<usize>,
    batch_size: usize,
    event_size: usize,
    keep_going: bool,
    worker_threads: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            emulator: None,
            emulator_log: None,
            endpoint: "127.0.0.1:5672".into(),
            hub: "eh1".into(),
            partition: "0".into(),
            runs: 50,
            timeout: Duration::from_secs(10),
            events: None,
            batch_size: 100,
            event_size: 1024,
            keep_going: false,
            worker_threads: None,
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(String, Options), String> {
    let command = args.next().ok_or("no subcommand")?;
    let mut o = Options::default();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        }
        match flag.as_str() {
            "--emulator" => o.emulator = Some(value(&flag)?),
            "--emulator-log" => o.emulator_log = Some(value(&flag)?),
            "--endpoint" => o.endpoint = value(&flag)?,
            "--hub" => o.hub = value(&flag)?,
            "--partition" => o.partition = value(&flag)?,
            "--runs" => o.runs = num(&flag, value(&flag)?)?,
            "--timeout" => {
                let secs: f64 = num(&flag, value(&flag)?)?;
                o.timeout = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or(format!(
                        "--timeout: {secs} is not a positive number of seconds"
                    ))?;
            }
            "--events" => o.events = Some(num(&flag, value(&flag)?)?),
            "--batch-size" => o.batch_size = num(&flag, value(&flag)?)?,
            "--event-size" => o.event_size = num(&flag, value(&flag)?)?,
            "--keep-going" => o.keep_going = true,
            "--worker-threads" => o.worker_threads = Some(num(&flag, value(&flag)?)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    Ok((command, o))
}

/// The step a run is in, so that a stall says where it stopped.
#[derive(Clone, Default)]
struct Step(Arc<Mutex<String>>);

impl Step {
    fn set(&self, s: impl Into<String>) {
        *self.0.lock().unwrap() = s.into();
    }
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

enum Outcome {
    Done(Duration),
    Failed(String),
    Stalled(String),
}

/// Runs one piece of work on its own multi-threaded runtime, as a fresh
/// program would, and gives up on it after `timeout`.
fn run_once<F, Fut>(o: &Options, work: F) -> Outcome
where
    F: FnOnce(Step) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let timeout = o.timeout;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = o.worker_threads {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return Outcome::Failed(format!("runtime: {e}")),
    };
    let step = Step::default();
    let fut = work(step.clone());
    let started = Instant::now();
    let result = rt.block_on(async { tokio::time::timeout(timeout, tokio::spawn(fut)).await });
    let outcome = match result {
        Ok(Ok(Ok(()))) => Outcome::Done(started.elapsed()),
        Ok(Ok(Err(e))) => Outcome::Failed(format!("{} failed: {e}", step.get())),
        Ok(Err(join)) => Outcome::Failed(format!("{} panicked: {join}", step.get())),
        Err(_) => Outcome::Stalled(step.get()),
    };
    // The SDK's connection tasks of a stalled run are abandoned, not awaited.
    rt.shutdown_background();
    outcome
}

async fn send_run(o: Options, step: Step, events: usize) -> Result<(), BoxError> {
    step.set("open producer");
    let producer = ProducerClient::builder()
        .with_custom_endpoint(format!("amqp://{}", o.endpoint))
        .open_with_connection_string(CONNECTION_STRING, Some(&o.hub))
        .await?;
    let body = vec![b'x'; o.event_size];
    let mut sent = 0;
    while sent < events {
        let n = o.batch_size.min(events - sent);
        step.set(format!("create_batch at event {sent}"));
        let batch = producer
            .create_batch(Some(EventDataBatchOptions {
                partition_id: Some(o.partition.clone()),
                ..Default::default()
            }))
            .await?;
        for _ in 0..n {
            if !batch.try_add_event_data(body.clone(), None)? {
                return Err(format!("batch full after {} events", batch.len()).into());
            }
        }
        step.set(format!("send_batch at event {sent}"));
        producer.send_batch(batch, None).await?;
        sent += n;
    }
    step.set("close producer");
    producer.close().await?;
    Ok(())
}

async fn receive_run(o: Options, step: Step, events: usize) -> Result<(), BoxError> {
    step.set("open consumer");
    let consumer = ConsumerClient::builder()
        .with_custom_endpoint(format!("amqp://{}", o.endpoint))
        .open_with_connection_string(CONNECTION_STRING, Some(&o.hub))
        .await?;
    step.set("open receiver");
    let receiver = consumer
        .open_receiver_on_partition(
            o.partition.clone(),
            Some(OpenReceiverOptions {
                start_position: Some(StartPosition {
                    location: StartLocation::Earliest,
                    inclusive: true,
                }),
                ..Default::default()
            }),
        )
        .await?;
    let mut received = 0;
    {
        let mut stream = receiver.stream_events();
        while received < events {
            step.set(format!("receive at event {received}"));
            match stream.next().await {
                Some(event) => {
                    let event = event?;
                    if event.event_data().body().map(<[u8]>::len) != Some(o.event_size) {
                        return Err(format!("event {received} has an unexpected body").into());
                    }
                    received += 1;
                }
                None => return Err(format!("stream ended after {received} events").into()),
            }
        }
    }
    step.set("close receiver");
    receiver.close().await?;
    step.set("close consumer");
    consumer.close().await?;
    Ok(())
}

#[derive(Default)]
struct Tally {
    passed: usize,
    stalled: usize,
    failed: usize,
    total: Duration,
}

fn run_loop(name: &str, o: &Options, mut one: impl FnMut() -> Outcome) -> Tally {
    let mut t = Tally::default();
    for run in 1..=o.runs {
        match one() {
            Outcome::Done(d) => {
                t.passed += 1;
                t.total += d;
            }
            Outcome::Failed(e) => {
                t.failed += 1;
                eprintln!("{name} run {run}/{}: FAILED: {e}", o.runs);
            }
            Outcome::Stalled(step) => {
                t.stalled += 1;
                eprintln!(
                    "{name} run {run}/{}: STALLED in {step} (not finished within {:?})",
                    o.runs, o.timeout
                );
            }
        }
        if (t.stalled + t.failed) > 0 && !o.keep_going {
            break;
        }
    }
    let mean = if t.passed > 0 {
        t.total / t.passed as u32
    } else {
        Duration::ZERO
    };
    println!(
        "{name}: {} runs, {} finished, {} stalled, {} failed (mean {:.1} ms per finished run)",
        t.passed + t.stalled + t.failed,
        t.passed,
        t.stalled,
        t.failed,
        mean.as_secs_f64() * 1e3
    );
    t
}

fn stall_send(o: &Options) -> Tally {
    let events = o.events.unwrap_or(1000);
    run_loop("stall-send", o, || {
        let o = o.clone();
        run_once(&o.clone(), move |step| send_run(o, step, events))
    })
}

fn stall_receive(o: &Options) -> Result<Tally, String> {
    let events = o.events.unwrap_or(100);
    // The partition must hold the events a run reads: seed it with the same
    // SDK (a seeding attempt that stalls is tried again, and reported).
    let mut seeded = false;
    for attempt in 1..=5 {
        let seed = o.clone();
        match run_once(&o.clone(), move |step| send_run(seed, step, events)) {
            Outcome::Done(_) => {
                seeded = true;
                break;
            }
            Outcome::Failed(e) => eprintln!("stall-receive: seeding attempt {attempt}: {e}"),
            Outcome::Stalled(s) => {
                eprintln!("stall-receive: seeding attempt {attempt}: STALLED in {s}")
            }
        }
    }
    if !seeded {
        return Err("could not seed the partition".into());
    }
    Ok(run_loop("stall-receive", o, || {
        let o = o.clone();
        run_once(&o.clone(), move |step| receive_run(o, step, events))
    }))
}

/// A started emulator, killed when dropped.
pub(crate) struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_emulator(path: &str, log: Option<&str>) -> Result<(Emulator, String), String> {
    start_emulator_with(path, log, &[], None)
}

/// Runs `cmd`'s process on `cpu` only, when one is given.
pub(crate) fn pin_to(cmd: &mut std::process::Command, cpu: Option<usize>) {
    use std::os::unix::process::CommandExt;
    let Some(cpu) = cpu else {
        return;
    };
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes the sched_setaffinity system call on a set built on its stack,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts the emulator at `path` on an ephemeral port with `args` besides.
pub(crate) fn start_emulator_with(
    path: &str,
    log: Option<&str>,
    args: &[&str],
    cpu: Option<usize>,
) -> Result<(Emulator, String), String> {
    let stderr = match log {
        Some(f) => Stdio::from(std::fs::File::create(f).map_err(|e| format!("{f}: {e}"))?),
        None => Stdio::null(),
    };
    let mut cmd = std::process::Command::new(path);
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr);
    pin_to(&mut cmd, cpu);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {path}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let emulator = Emulator(child);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let port = rt.block_on(async {
        let mut lines = BufReader::new(tokio::process::ChildStdout::from_std(stdout)?).lines();
        let wait = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = line.strip_prefix("LISTENING ") {
                    return Ok(port.trim().to_string());
                }
            }
            Err(std::io::Error::other(
                "the emulator exited before listening",
            ))
        });
        wait.await
            .unwrap_or_else(|_| Err(std::io::Error::other("no LISTENING line within 30 s")))
    });
    let port = port.map_err(|e| format!("{path}: {e}"))?;
    Ok((emulator, format!("127.0.0.1:{port}")))
}

fn main() -> ExitCode {
    #[cfg(feature = "sdk-trace")]
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut raw = std::env::args().skip(1);
    match std::env::args().nth(1).as_deref() {
        Some("worker") => {
            raw.next();
            return match bench::WorkerOptions::parse(raw)
                .map_err(BoxError::from)
                .and_then(bench::worker)
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ms-rust-sdk-interop worker: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some("bench") => {
            raw.next();
            let o = match bench::parse_bench(raw) {
                Ok(o) => o,
                Err(e) => {
                    if !e.is_empty() {
                        eprintln!("ms-rust-sdk-interop: {e}");
                    }
                    eprintln!("{}", bench::BENCH_USAGE);
                    return ExitCode::from(2);
                }
            };
            return match bench::bench(o) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ms-rust-sdk-interop bench: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let (command, mut o) = match parse_args(std::env::args().skip(1)) {
        Ok(v) => v,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("ms-rust-sdk-interop: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let _emulator = match &o.emulator {
        Some(path) => match start_emulator(path, o.emulator_log.as_deref()) {
            Ok((emulator, endpoint)) => {
                o.endpoint = endpoint;
                Some(emulator)
            }
            Err(e) => {
                eprintln!("ms-rust-sdk-interop: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut tallies = Vec::new();
    let mut setup_error = None;
    match command.as_str() {
        "stall-send" => tallies.push(stall_send(&o)),
        "stall-receive" => match stall_receive(&o) {
            Ok(t) => tallies.push(t),
            Err(e) => setup_error = Some(e),
        },
        "stall" => {
            tallies.push(stall_send(&o));
            match stall_receive(&o) {
                Ok(t) => tallies.push(t),
                Err(e) => setup_error = Some(e),
            }
        }
        other => {
            eprintln!("ms-rust-sdk-interop: unknown subcommand {other}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let passed: usize = tallies.iter().map(|t| t.passed).sum();
    let mut failed: usize = tallies.iter().map(|t| t.stalled + t.failed).sum();
    if let Some(e) = setup_error {
        eprintln!("ms-rust-sdk-interop: {e}");
        failed += 1;
    }
    // The closing line CI reads.
    println!("ms-rust-sdk: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
