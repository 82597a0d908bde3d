//! The side-by-side benchmark: this project's client (`eventhubs-tokio`)
//! and Microsoft's Rust SDK on the same workloads against the same
//! emulator, in one run.
//!
//! `bench` starts the emulator binary and, for every workload and run,
//! runs each client in a child process of its own (this binary again, as
//! `worker`), ours and Microsoft's in turn (which goes first alternates
//! from run to run). Each child does one workload and prints a `RESULT`
//! line; the parent reads the child's CPU time (user + system) and peak
//! resident memory from `wait4`, so the figures are those of the whole
//! client process: runtime, connection set-up and close included. On a
//! shared two-core machine CPU time per event is the figure that holds;
//! events/s is the child's own measure of the workload's wall time.
//!
//! Workloads (events of `--event-size`, 1 KiB by default):
//!
//! | name | what one client does |
//! |---|---|
//! | `send` | `--events` events to partition 0 in batches of `--batch-size` (100), one batch after the other |
//! | `send-rr` | the same without a partition: the service spreads them round-robin |
//! | `single` | `--single-events` events one at a time to partition 1, each awaited, with a receiver on that partition in the same process: the send's round trip and send-to-receive latency, p50 and p99 |
//! | `receive` | `--receive-events` events from partition 2 (seeded once, by our client, untimed) from the earliest, prefetch 300 |
//! | `memory` | 32 receivers on a hub of 32 partitions, each with prefetch 300, left unread (all credit filled) and then with nothing to read (from the latest): resident memory over the same process before the receivers, per link |

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{pin_to, start_emulator_with, BoxError};

/// The hub of the send, single and receive workloads.
pub const HUB: &str = "bench";
/// Its partitions: send (0), single (1), receive (2), round-robin over all.
const HUB_PARTITIONS: u32 = 4;
/// The hub of the memory workload.
pub const WIDE_HUB: &str = "wide";
/// Its partitions, each with a receiver.
pub const WIDE_PARTITIONS: u32 = 32;
/// The prefetch of every receiver.
pub const PREFETCH: u32 = 300;

pub const SEND_PARTITION: &str = "0";
pub const SINGLE_PARTITION: &str = "1";
pub const RECEIVE_PARTITION: &str = "2";

pub const BENCH_USAGE: &str = "\
usage: ms-rust-sdk-interop bench --emulator PATH [OPTIONS]

  --emulator PATH            the eventhubs-emulator binary (started once per workload)
  --workloads LIST           comma-separated: send,send-rr,single,receive,memory (default: all)
  --clients LIST             ours,ms (default: both)
  --runs N                   runs of each workload per client (default 3)
  --events N                 events per send run (default 200000)
  --receive-events N         events per receive run (default 400000)
  --single-events N          events per single run (default 2000)
  --memory-events N          events seeded per partition for memory (default 400)
  --batch-size N             events per batch (default 100)
  --event-size BYTES         body size (default 1024)
  --ms-sdk-outcome-delay MS  the emulator's hold of Microsoft's SDK's outcomes (default 20)
  --worker-threads N         tokio worker threads of each client (default: one per core)
  --stall-timeout-ms MS      a send not acknowledged by then is a stall, counted (default 2000)
  --emulator-log FILE        the emulator's stderr (default: discarded)
  --cpus none|same|split     where the processes run: anywhere (default); the emulator and
                             each client on CPU 0; the emulator on CPU 0, each client on CPU 1";

/// What `bench` was asked for.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub emulator: PathBuf,
    pub emulator_log: Option<String>,
    pub workloads: Vec<String>,
    pub clients: Vec<String>,
    pub runs: usize,
    pub events: u64,
    pub receive_events: u64,
    pub single_events: u64,
    pub memory_events: u64,
    pub batch_size: usize,
    pub event_size: usize,
    pub outcome_delay_ms: u64,
    pub worker_threads: Option<usize>,
    pub stall_timeout: Duration,
    /// The CPUs of the emulator and of each client (`--cpus`).
    pub cpus: (Option<usize>, Option<usize>),
}

pub const WORKLOADS: &[&str] = &["send", "send-rr", "single", "receive", "memory"];

fn list(v: &str, allowed: &[&str], flag: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    match items.iter().find(|i| !allowed.contains(&i.as_str())) {
        Some(bad) => Err(format!(
            "{flag}: {bad:?} is not one of {}",
            allowed.join(",")
        )),
        None => Ok(items),
    }
}

pub fn parse_bench(mut args: impl Iterator<Item = String>) -> Result<BenchOptions, String> {
    let mut o = BenchOptions {
        emulator: PathBuf::new(),
        emulator_log: None,
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        clients: vec!["ours".into(), "ms".into()],
        runs: 3,
        events: 200_000,
        receive_events: 400_000,
        single_events: 2000,
        memory_events: 400,
        batch_size: 100,
        event_size: 1024,
        outcome_delay_ms: 20,
        worker_threads: None,
        stall_timeout: Duration::from_secs(2),
        cpus: (None, None),
    };
    let mut emulator = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        }
        match flag.as_str() {
            "--emulator" => emulator = Some(PathBuf::from(value()?)),
            "--emulator-log" => o.emulator_log = Some(value()?),
            "--workloads" => o.workloads = list(&value()?, WORKLOADS, &flag)?,
            "--clients" => o.clients = list(&value()?, &["ours", "ms"], &flag)?,
            "--runs" => o.runs = num(&flag, value()?)?,
            "--events" => o.events = num(&flag, value()?)?,
            "--receive-events" => o.receive_events = num(&flag, value()?)?,
            "--single-events" => o.single_events = num(&flag, value()?)?,
            "--memory-events" => o.memory_events = num(&flag, value()?)?,
            "--batch-size" => o.batch_size = num(&flag, value()?)?,
            "--event-size" => o.event_size = num(&flag, value()?)?,
            "--ms-sdk-outcome-delay" => o.outcome_delay_ms = num(&flag, value()?)?,
            "--worker-threads" => o.worker_threads = Some(num(&flag, value()?)?),
            "--stall-timeout-ms" => o.stall_timeout = Duration::from_millis(num(&flag, value()?)?),
            "--cpus" => {
                o.cpus = match value()?.as_str() {
                    "none" => (None, None),
                    "same" => (Some(0), Some(0)),
                    "split" => (Some(0), Some(1)),
                    v => return Err(format!("--cpus: {v:?} is not none, same or split")),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    o.emulator = emulator.ok_or("--emulator PATH is required")?;
    if o.batch_size == 0 || o.event_size < 8 {
        return Err("--batch-size must be at least 1 and --event-size at least 8".into());
    }
    if o.memory_events < u64::from(PREFETCH) {
        return Err(format!(
            "--memory-events must be at least the prefetch ({PREFETCH})"
        ));
    }
    Ok(o)
}

/// One workload as a child process runs it.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub client: String,
    pub workload: String,
    pub endpoint: String,
    pub events: u64,
    pub batch_size: usize,
    pub event_size: usize,
    /// `memory`: `earliest` (the links fill) or `latest` (they stay empty).
    pub position: String,
    pub worker_threads: Option<usize>,
    /// A send not acknowledged by then is a stall.
    pub stall_timeout: Duration,
}

impl WorkerOptions {
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--client".into(),
            self.client.clone(),
            "--workload".into(),
            self.workload.clone(),
            "--endpoint".into(),
            self.endpoint.clone(),
            "--events".into(),
            self.events.to_string(),
            "--batch-size".into(),
            self.batch_size.to_string(),
            "--event-size".into(),
            self.event_size.to_string(),
            "--position".into(),
            self.position.clone(),
            "--stall-timeout-ms".into(),
            self.stall_timeout.as_millis().to_string(),
        ];
        if let Some(n) = self.worker_threads {
            a.extend(["--worker-threads".into(), n.to_string()]);
        }
        a
    }

    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut o = WorkerOptions {
            client: String::new(),
            workload: String::new(),
            endpoint: String::new(),
            events: 0,
            batch_size: 100,
            event_size: 1024,
            position: "earliest".into(),
            worker_threads: None,
            stall_timeout: Duration::from_secs(2),
        };
        while let Some(flag) = args.next() {
            let v = args.next().ok_or(format!("{flag} needs a value"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?}"));
            match flag.as_str() {
                "--client" => o.client = v,
                "--workload" => o.workload = v,
                "--endpoint" => o.endpoint = v,
                "--events" => o.events = num(&v)?,
                "--batch-size" => o.batch_size = num(&v)? as usize,
                "--event-size" => o.event_size = num(&v)? as usize,
                "--position" => o.position = v,
                "--worker-threads" => o.worker_threads = Some(num(&v)? as usize),
                "--stall-timeout-ms" => o.stall_timeout = Duration::from_millis(num(&v)?),
                other => return Err(format!("unknown worker option {other}")),
            }
        }
        Ok(o)
    }

    /// The connection string of `hub` on this emulator, for our client.
    pub fn connection_string(&self, hub: &str) -> String {
        format!(
            "Endpoint=sb://{};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath={hub}",
            self.endpoint
        )
    }

    /// The body of event `i`: `i` in its first eight bytes, then filler.
    pub fn body(&self, i: u64) -> Vec<u8> {
        let mut b = vec![b'x'; self.event_size];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b
    }
}

/// The index [`WorkerOptions::body`] put in a body.
pub fn index_of(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?))
}

/// What a worker measured, printed as one `RESULT key=value ...` line.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub values: Vec<(String, f64)>,
}

impl Report {
    pub fn set(&mut self, key: &str, v: f64) {
        self.values.push((key.into(), v));
    }
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
    fn line(&self) -> String {
        let mut s = String::from("RESULT");
        for (k, v) in &self.values {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }
    fn parse(line: &str) -> Option<Report> {
        let rest = line.strip_prefix("RESULT")?;
        let mut r = Report::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            r.set(k, v.parse().ok()?);
        }
        Some(r)
    }
}

/// Percentile `p` (0 to 100) of sorted `v`, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// This process's resident memory (`VmRSS`), in bytes.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `workload` of one client in this process (the `worker` subcommand)
/// and prints its report.
pub fn worker(o: WorkerOptions) -> Result<(), BoxError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = o.worker_threads {
        builder.worker_threads(n);
    }
    let rt = builder.enable_all().build()?;
    let report = rt.block_on(async {
        match o.client.as_str() {
            "ours" => crate::ours::run(&o).await,
            "ms" => crate::ms::run(&o).await,
            other => Err(format!("unknown client {other}").into()),
        }
    })?;
    println!("{}", report.line());
    std::io::stdout().flush()?;
    // The SDK's background tasks are not waited for.
    rt.shutdown_background();
    Ok(())
}

/// A finished child: its report and what the kernel counted for it.
struct ChildRun {
    report: Report,
    cpu: Duration,
    max_rss: u64,
}

/// Runs a worker child and reaps it with `wait4` for its resource usage.
fn run_child(o: &WorkerOptions, timeout: Duration, cpu: Option<usize>) -> Result<ChildRun, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .args(o.args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    pin_to(&mut cmd, cpu);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start a worker: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let stdout = child.stdout.take().expect("piped stdout");
    // A watchdog kills a child that runs past its time.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            // SAFETY: `pid` is our own child, not yet reaped (the reaping
            // wait4 below signals this thread only after it returns).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        } else {
            false
        }
    });
    let mut report = None;
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        match Report::parse(&line) {
            Some(r) => report = Some(r),
            None => lines.push(line),
        }
    }
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child; `status` and `usage` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let _ = done_tx.send(());
    let killed = watchdog.join().unwrap_or(false);
    // The child is reaped; `Child` must not wait for it again.
    std::mem::forget(child);
    if r != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    if killed {
        return Err(format!(
            "{} {} did not finish within {timeout:?}",
            o.client, o.workload
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "{} {} failed (status {status}): {}",
            o.client,
            o.workload,
            lines.join(" / ")
        ));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(ChildRun {
        report: report.ok_or(format!("{} {} printed no RESULT", o.client, o.workload))?,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss: usage.ru_maxrss as u64 * 1024,
    })
}

/// The emulator's Config.json for the benchmark's two hubs.
fn write_config(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("bench-config.json");
    let json = format!(
        r#"{{"UserConfig":{{"NamespaceConfig":[{{"Type":"EventHub","Name":"emulatorNs1","Entities":[
            {{"Name":"{HUB}","PartitionCount":{HUB_PARTITIONS},"ConsumerGroups":[]}},
            {{"Name":"{WIDE_HUB}","PartitionCount":{WIDE_PARTITIONS},"ConsumerGroups":[]}}]}}]}}}}"#
    );
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// One client's figures over the runs of a workload.
#[derive(Default)]
struct Figures {
    runs: Vec<ChildRun>,
}

fn spread(v: &mut [f64]) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    match v {
        [] => "-".into(),
        [x] => format!("{x:.2}"),
        _ => format!("{:.2} [{:.2}-{:.2}]", v[v.len() / 2], v[0], v[v.len() - 1]),
    }
}

pub fn bench(o: BenchOptions) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("eh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = write_config(&dir)?;
    let delay = o.outcome_delay_ms.to_string();
    let emulator_args = [
        "--config",
        config.to_str().unwrap_or_default(),
        "--http-listen",
        "off",
        "--ms-sdk-outcome-delay",
        &delay,
    ];
    println!(
        "bench: {} x {} bytes per send run (batches of {}), {} per receive run, {} single events, runs {}, the emulator holding Microsoft's SDK's outcomes {} ms, {}",
        o.events, o.event_size, o.batch_size, o.receive_events, o.single_events, o.runs, o.outcome_delay_ms,
        match o.cpus {
            (Some(e), Some(c)) => format!("the emulator on CPU {e}, each client on CPU {c}"),
            _ => "processes on any CPU".to_string(),
        }
    );
    let mut failures = 0;
    for workload in &o.workloads {
        // One emulator per workload, so no workload pays for another's
        // events; both clients share it.
        let emulator_path = o.emulator.to_str().ok_or("emulator path is not UTF-8")?;
        let (_emulator, endpoint) = start_emulator_with(
            emulator_path,
            o.emulator_log.as_deref(),
            &emulator_args,
            o.cpus.0,
        )?;
        let worker = |client: &str, workload: &str, events: u64| WorkerOptions {
            client: client.into(),
            workload: workload.into(),
            endpoint: endpoint.clone(),
            events,
            batch_size: o.batch_size,
            event_size: o.event_size,
            position: "earliest".into(),
            worker_threads: o.worker_threads,
            stall_timeout: o.stall_timeout,
        };
        let events = match workload.as_str() {
            "send" | "send-rr" => o.events,
            "single" => o.single_events,
            "receive" => o.receive_events,
            _ => o.memory_events,
        };
        let timeout = Duration::from_secs(120 + events / 1000);
        // Seeding, untimed, by our client.
        match workload.as_str() {
            "receive" => run_child(&worker("ours", "seed-receive", events), timeout, o.cpus.1)
                .map_err(|e| format!("seeding: {e}"))
                .map(drop)?,
            "memory" => run_child(&worker("ours", "seed-wide", events), timeout, o.cpus.1)
                .map_err(|e| format!("seeding: {e}"))
                .map(drop)?,
            _ => {}
        }
        let positions: &[&str] = if workload == "memory" {
            &["earliest", "latest"]
        } else {
            &["earliest"]
        };
        for position in positions {
            let mut figures: Vec<(String, Figures)> = o
                .clients
                .iter()
                .map(|c| (c.clone(), Figures::default()))
                .collect();
            for run in 0..o.runs {
                let n = figures.len();
                for k in 0..n {
                    // Alternate which client goes first.
                    let idx = if run % 2 == 0 { k } else { n - 1 - k };
                    let client = figures[idx].0.clone();
                    let mut w = worker(&client, workload, events);
                    w.position = position.to_string();
                    match run_child(&w, timeout, o.cpus.1) {
                        Ok(r) => {
                            print_run(workload, position, &client, run, events, &r);
                            figures[idx].1.runs.push(r);
                        }
                        Err(e) => {
                            failures += 1;
                            println!("{workload} {client} run {}: FAILED: {e}", run + 1);
                        }
                    }
                }
            }
            print_summary(workload, position, events, &figures);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failures > 0 {
        return Err(format!("{failures} worker runs failed"));
    }
    Ok(())
}

fn print_run(workload: &str, position: &str, client: &str, run: usize, events: u64, r: &ChildRun) {
    let rep = &r.report;
    let mut line = format!(
        "  {workload:8} {client:4} run {}: cpu {:.3} s = {:.2} us/event, {:.0} events/s, max rss {:.1} MiB",
        run + 1,
        r.cpu.as_secs_f64(),
        r.cpu.as_secs_f64() * 1e6 / events as f64,
        rep.get("events_per_s").unwrap_or(f64::NAN),
        r.max_rss as f64 / 1048576.0
    );
    if let Some(stalls) = rep.get("stalls").filter(|_| workload != "single") {
        line += &format!(", stalls {stalls}");
    }
    if workload == "single" {
        line += &format!(
            ", round trip p50 {:.0} us p99 {:.0} us, send-to-receive p50 {:.0} us p99 {:.0} us, stalls {}",
            rep.get("rtt_p50_us").unwrap_or(f64::NAN),
            rep.get("rtt_p99_us").unwrap_or(f64::NAN),
            rep.get("e2e_p50_us").unwrap_or(f64::NAN),
            rep.get("e2e_p99_us").unwrap_or(f64::NAN),
            rep.get("stalls").unwrap_or(f64::NAN),
        );
    }
    if workload == "memory" {
        line += &format!(
            ", {position}: rss before links {:.1} MiB, with {} links {:.1} MiB: {:.1} KiB per link",
            rep.get("rss_before").unwrap_or(f64::NAN) / 1048576.0,
            WIDE_PARTITIONS,
            rep.get("rss_links").unwrap_or(f64::NAN) / 1048576.0,
            rep.get("per_link").unwrap_or(f64::NAN) / 1024.0,
        );
    }
    println!("{line}");
}

fn print_summary(workload: &str, position: &str, events: u64, figures: &[(String, Figures)]) {
    let per_event = |f: &Figures| -> Vec<f64> {
        f.runs
            .iter()
            .map(|r| r.cpu.as_secs_f64() * 1e6 / events as f64)
            .collect()
    };
    let key = |f: &Figures, k: &str| -> Vec<f64> {
        f.runs.iter().filter_map(|r| r.report.get(k)).collect()
    };
    let label = if workload == "memory" {
        format!("{workload} ({position})")
    } else {
        workload.to_string()
    };
    println!("{label}: median [min-max] over runs");
    for (client, f) in figures {
        let mut line = format!(
            "  {client:4}: cpu {} us/event, {} events/s",
            spread(&mut per_event(f)),
            spread(&mut key(f, "events_per_s"))
        );
        for (k, name) in [
            ("rtt_p50_us", "round trip p50 us"),
            ("rtt_p99_us", "p99 us"),
            ("e2e_p50_us", "send-to-receive p50 us"),
            ("e2e_p99_us", "p99 us"),
            ("stalls", "stalls"),
        ] {
            let mut v = key(f, k);
            if !v.is_empty() {
                line += &format!(", {name} {}", spread(&mut v));
            }
        }
        let mut per_link = key(f, "per_link");
        if !per_link.is_empty() {
            per_link.iter_mut().for_each(|v| *v /= 1024.0);
            line += &format!(", {} KiB per link", spread(&mut per_link));
        }
        println!("{line}");
    }
    // Ratios per run pair: Microsoft's CPU per event over ours.
    if let (Some((_, ours)), Some((_, ms))) = (
        figures.iter().find(|(c, _)| c == "ours"),
        figures.iter().find(|(c, _)| c == "ms"),
    ) {
        let mut ratios: Vec<f64> = ours
            .runs
            .iter()
            .zip(&ms.runs)
            .map(|(a, b)| b.cpu.as_secs_f64() / a.cpu.as_secs_f64())
            .collect();
        if !ratios.is_empty() && workload != "memory" {
            println!(
                "  CPU per event, Microsoft's over ours: {}x (run by run)",
                spread(&mut ratios)
            );
        }
    }
}

/// How long a worker gives any one operation before calling it a stall.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Seconds since `start`, at least a microsecond.
pub fn secs_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64().max(1e-6)
}
