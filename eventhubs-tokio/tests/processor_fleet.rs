//! Processors as separate processes over real sockets: the `processor`
//! example, several times, on the emulator binary (a hub of 8 partitions)
//! and one Azurite container; and the official Python processor
//! (`azure-eventhub` with `azure-eventhub-checkpointstoreblob`) beside ours
//! in the same consumer group.
//!
//! Without Azurite or the Python packages a test prints SKIPPED, and fails
//! under `EVENTHUBS_INTEROP=require`.

#[path = "../../tests/storage/mod.rs"]
#[allow(unused_macros)]
mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventhubs_tokio::checkpoint_store::CheckpointStore;
use eventhubs_tokio::{BlobCheckpointStore, EventData, Hub, HubOptions, TokioRuntime, Value};
use storage::Azurite;

const HUB: &str = "eh8";
const PARTITIONS: usize = 8;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn required() -> bool {
    std::env::var("EVENTHUBS_INTEROP").as_deref() == Ok("require")
}

fn missing(why: &str) {
    assert!(!required(), "EVENTHUBS_INTEROP=require but {why}");
    println!("SKIPPED: {why}");
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "eventhubs-{name}-{}-{:x}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (name.len() as u128) << 40
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the emulator binary and the processor example (as `cargo run`
/// would); returns their paths.
fn build() -> (PathBuf, PathBuf) {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-q",
        "-p",
        "eventhubs-emulator",
        "--bin",
        "eventhubs-emulator",
        "-p",
        "eventhubs-tokio",
        "--example",
        "processor",
    ]);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        cmd.arg("--release");
        "release"
    };
    cmd.current_dir(workspace());
    // Cargo sets these for the test binary; build scripts watch some, so
    // passing them on would rebuild half the tree.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().expect("cargo build runs");
    assert!(
        status.success(),
        "building the emulator and the example failed"
    );
    // This test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test path");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == profile))
        .expect("the profile directory")
        .to_path_buf();
    (
        target.join("eventhubs-emulator"),
        target.join("examples").join("processor"),
    )
}

/// The emulator binary on a free port with hub `eh8` of 8 partitions;
/// killed on drop.
struct EmulatorBin {
    child: Child,
    port: u16,
}

impl Drop for EmulatorBin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EmulatorBin {
    fn start(bin: &Path, dir: &Path) -> EmulatorBin {
        let config = dir.join("Config.json");
        std::fs::write(
            &config,
            r#"{"UserConfig": {"NamespaceConfig": [{"Type": "EventHub", "Name": "emulatorNs1",
                "Entities": [{"Name": "eh8", "PartitionCount": "8",
                              "ConsumerGroups": [{"Name": "cg1"}]}]}]}}"#,
        )
        .expect("Config.json");
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("emulator.log")).expect("log"))
            .spawn()
            .expect("the emulator binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("LISTENING ") {
                    let _ = tx.send(p.trim().parse::<u16>().ok());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("the emulator prints LISTENING PORT");
        EmulatorBin { child, port }
    }

    fn connection_string(&self) -> String {
        format!(
            "Endpoint=sb://127.0.0.1:{};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath={HUB}",
            self.port
        )
    }

    fn namespace(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A process whose stdout goes to a file.
struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let stdout = dir.join(format!("{name}.out"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            stdout,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stdout.with_extension("err")).unwrap_or_default()
    }

    /// Waits for the process to exit by itself within `limit`; its code.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.name,
                    self.output(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example with `args`, on the emulator, with the shared container.
fn example(
    bin: &Path,
    emulator: &EmulatorBin,
    azurite: &Azurite,
    container: &str,
    owner: &str,
    events_out: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("EVENTHUB_CONNECTION_STRING", emulator.connection_string())
        .env("RUST_LOG", "warn")
        .args(["--storage", &azurite.connection_string()])
        .args(["--container", container, "--owner-id", owner])
        .arg("--events-out")
        .arg(events_out)
        .args(extra);
    cmd
}

/// (partition, sequence number, offset, owner) of every JSON line.
fn read_events(path: &Path) -> Vec<(String, i64, String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            (
                v["partition_id"].as_str().expect("partition_id").to_owned(),
                v["sequence_number"].as_i64().expect("sequence_number"),
                v["offset"].as_str().expect("offset").to_owned(),
                v["owner_id"].as_str().expect("owner_id").to_owned(),
            )
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sends `count` events round-robin over the partitions, `per_second`.
async fn send(cs: &str, count: usize, per_second: u64) {
    let hub = Hub::from_connection_string(cs, HubOptions::default()).expect("hub");
    let gap = Duration::from_millis(1000 / per_second.max(1));
    for i in 0..count {
        let e = EventData::new(format!("event {i}")).with_property("id", Value::Long(i as i64));
        hub.send(e).await.expect("send");
        tokio::time::sleep(gap).await;
    }
    hub.close().await.expect("close");
}

/// The last sequence number of every partition.
async fn last_sequence_numbers(cs: &str) -> BTreeMap<String, i64> {
    let hub = Hub::from_connection_string(cs, HubOptions::default()).expect("hub");
    let mut m = BTreeMap::new();
    for p in 0..PARTITIONS {
        let info = hub
            .partition_information(&p.to_string())
            .await
            .expect("partition information");
        m.insert(p.to_string(), info.last_sequence_number);
    }
    hub.close().await.expect("close");
    m
}

/// Every event up to each partition's last processed at least once;
/// returns (events, duplicates, partitions processed by more than one
/// owner).
fn check_all_processed(
    events: &[(String, i64, String, String)],
    last: &BTreeMap<String, i64>,
) -> (usize, usize, BTreeSet<String>) {
    let mut seen: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, s, _, o) in events {
        *seen.entry((p.clone(), *s)).or_default() += 1;
        owners.entry(p.clone()).or_default().insert(o.clone());
    }
    for (p, l) in last {
        for s in 0..=*l {
            assert!(
                seen.contains_key(&(p.clone(), s)),
                "event {s} of partition {p} was never processed"
            );
        }
    }
    let dups = seen.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    let moved = owners
        .into_iter()
        .filter(|(_, o)| o.len() > 1)
        .map(|(p, _)| p)
        .collect();
    (seen.len(), dups, moved)
}

/// What both tests set up: a scratch directory, the built binaries, the
/// emulator binary, a runtime and a container named `name`.
struct Fixture {
    dir: TempDir,
    example_bin: PathBuf,
    emulator: EmulatorBin,
    rt: tokio::runtime::Runtime,
    container: &'static str,
}

impl Fixture {
    fn new(azurite: &Azurite, name: &'static str) -> Fixture {
        let dir = TempDir::new(name);
        let (emulator_bin, example_bin) = build();
        let emulator = EmulatorBin::start(&emulator_bin, &dir.0);
        let rt = runtime();
        rt.block_on(async {
            azurite
                .client::<TokioRuntime>()
                .create_container(name)
                .await
                .expect("container")
        });
        Fixture {
            dir,
            example_bin,
            emulator,
            rt,
            container: name,
        }
    }
}

/// Partitions per owner in the store (relinquished ones left out).
fn owner_counts(
    rt: &tokio::runtime::Runtime,
    store: &BlobCheckpointStore,
    ns: &str,
) -> BTreeMap<String, usize> {
    let owners = rt
        .block_on(store.list_ownership(ns, HUB, "$Default"))
        .expect("ownership");
    let mut counts = BTreeMap::new();
    for o in owners.iter().filter(|o| !o.owner_id.is_empty()) {
        *counts.entry(o.owner_id.clone()).or_default() += 1;
    }
    counts
}

fn lines_with<'a>(text: &'a str, what: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(what)).collect()
}

/// Two processes of the example share the hub, a third joins, one is
/// killed mid-stream (no relinquish: its partitions move after the
/// expiry); every event is processed and every partition's checkpoint is
/// at its last event when the survivors stop.
#[test]
fn example_processes_share_a_hub_and_survive_a_kill() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let Fixture {
        dir,
        example_bin,
        emulator,
        rt,
        container,
    } = Fixture::new(&azurite, "fleet");
    let cs = emulator.connection_string();
    let timing = [
        "--update-interval",
        "1",
        "--ownership-expiry",
        "5",
        "--idle",
        "12",
    ];
    let out = |n: &str| dir.0.join(format!("{n}.jsonl"));
    let sender = {
        let cs = cs.clone();
        std::thread::spawn(move || runtime().block_on(send(&cs, 600, 30)))
    };
    let mut a = Proc::spawn(
        "a",
        example(
            &example_bin,
            &emulator,
            &azurite,
            container,
            "proc-a",
            &out("a"),
            &timing,
        ),
        &dir.0,
    );
    let mut b = Proc::spawn(
        "b",
        example(
            &example_bin,
            &emulator,
            &azurite,
            container,
            "proc-b",
            &out("b"),
            &timing,
        ),
        &dir.0,
    );
    std::thread::sleep(Duration::from_secs(7));
    let mut c = Proc::spawn(
        "c",
        example(
            &example_bin,
            &emulator,
            &azurite,
            container,
            "proc-c",
            &out("c"),
            &timing,
        ),
        &dir.0,
    );
    std::thread::sleep(Duration::from_secs(7));
    let b_claimed = lines_with(&b.output(), "claimed partition").len();
    b.kill();
    let killed = Instant::now();
    sender.join().expect("sender");
    assert_eq!(
        a.wait(Duration::from_secs(120)),
        Some(0),
        "a: {}",
        a.stderr()
    );
    assert_eq!(
        c.wait(Duration::from_secs(120)),
        Some(0),
        "c: {}",
        c.stderr()
    );
    let last = rt.block_on(last_sequence_numbers(&cs));
    let mut events = Vec::new();
    for n in ["a", "b", "c"] {
        events.extend(read_events(&out(n)));
    }
    let (distinct, dups, moved) = check_all_processed(&events, &last);
    let (ao, co) = (a.output(), c.output());
    println!("a:\n{ao}\nb:\n{}\nc:\n{co}", b.output());
    assert!(b_claimed > 0, "b claimed nothing before it was killed");
    assert!(
        !lines_with(&co, "claimed partition").is_empty(),
        "c claimed nothing"
    );
    // a had every partition before b and c joined, so it lost some.
    assert!(
        !lines_with(&ao, "lost partition").is_empty(),
        "a lost nothing"
    );
    // Checkpoints: every partition at its last event.
    let store = BlobCheckpointStore::new(azurite.client::<TokioRuntime>(), container);
    let ns = emulator.namespace();
    let cps = rt
        .block_on(store.list_checkpoints(&ns, HUB, "$Default"))
        .expect("checkpoints");
    let at: BTreeMap<String, Option<i64>> = cps
        .iter()
        .map(|c| (c.partition_id.clone(), c.sequence_number))
        .collect();
    for (p, l) in &last {
        assert_eq!(
            at.get(p).copied().flatten(),
            Some(*l),
            "checkpoint of partition {p}"
        );
    }
    let owners = rt
        .block_on(store.list_ownership(&ns, HUB, "$Default"))
        .expect("ownership");
    assert!(
        owners
            .iter()
            .all(|o| o.owner_id.is_empty() || o.owner_id == "proc-b"),
        "the survivors relinquished everything: {owners:?}"
    );
    println!(
        "{} events in {PARTITIONS} partitions, {distinct} processed ({dups} again after ownership moved, on partitions {moved:?}); kill to exit {:.1} s",
        last.values().map(|l| l + 1).sum::<i64>(),
        killed.elapsed().as_secs_f64()
    );
}

fn have_python_processor() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import azure.eventhub, azure.eventhub.extensions.checkpointstoreblob",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing("python3 cannot import azure.eventhub and azure.eventhub.extensions.checkpointstoreblob (pip install azure-eventhub azure-eventhub-checkpointstoreblob)");
    }
    ok
}

/// The official Python processor and ours in one consumer group on one
/// container: they split the partitions, every event is processed, and
/// when Python stops (relinquishing), ours takes its partitions over from
/// Python's checkpoints.
#[test]
fn python_processor_and_ours_split_a_consumer_group() {
    if !have_python_processor() {
        return;
    }
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let Fixture {
        dir,
        example_bin,
        emulator,
        rt,
        container,
    } = Fixture::new(&azurite, "pyfleet");
    let cs = emulator.connection_string();
    let out = |n: &str| dir.0.join(format!("{n}.jsonl"));
    let stop_file = dir.0.join("python.stop");
    let mut py_cmd = Command::new("python3");
    py_cmd
        .arg(workspace().join("tests/processor/python_processor.py"))
        .arg(&cs)
        .arg(azurite.connection_string())
        .arg(container)
        .arg(out("python"))
        .arg(&stop_file)
        .args(["2", "10", "300"]);
    let mut py = Proc::spawn("python", py_cmd, &dir.0);
    // Ours on the same intervals as Python's (2 s, 10 s), greedy as
    // Python's default.
    let mut ours = Proc::spawn(
        "ours",
        example(
            &example_bin,
            &emulator,
            &azurite,
            container,
            "rust-proc",
            &out("ours"),
            &[
                "--update-interval",
                "2",
                "--ownership-expiry",
                "10",
                "--strategy",
                "greedy",
                "--idle",
                "15",
            ],
        ),
        &dir.0,
    );
    let sender = {
        let cs = cs.clone();
        std::thread::spawn(move || runtime().block_on(send(&cs, 400, 20)))
    };
    // They settle on 4 partitions each, as the store shows.
    let store = BlobCheckpointStore::new(azurite.client::<TokioRuntime>(), container);
    let ns = emulator.namespace();
    let settle = Instant::now();
    let split = loop {
        let counts = owner_counts(&rt, &store, &ns);
        let ours_held = counts.get("rust-proc").copied().unwrap_or(0);
        if counts.len() == 2 && ours_held == 4 && counts.values().all(|n| *n == 4) {
            break counts;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(90),
            "no 4/4 split after 90 s: {counts:?}\npython:\n{}{}\nours:\n{}{}",
            py.output(),
            py.stderr(),
            ours.output(),
            ours.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let settled_after = settle.elapsed();
    // Held steady for three cycles: no ping-pong between the SDKs.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        owner_counts(&rt, &store, &ns),
        split,
        "ownership moved while both ran"
    );
    // Python stops: it relinquishes; ours takes its partitions over.
    std::fs::write(&stop_file, b"stop").expect("stop file");
    assert_eq!(
        py.wait(Duration::from_secs(60)),
        Some(0),
        "python: {}",
        py.stderr()
    );
    let py_stopped = Instant::now();
    sender.join().expect("sender");
    assert_eq!(
        ours.wait(Duration::from_secs(180)),
        Some(0),
        "ours: {}",
        ours.stderr()
    );
    let last = rt.block_on(last_sequence_numbers(&cs));
    let py_events = read_events(&out("python"));
    let our_events = read_events(&out("ours"));
    let mut all = py_events.clone();
    all.extend(our_events.iter().cloned());
    let (distinct, dups, moved) = check_all_processed(&all, &last);
    let (po, oo) = (py.output(), ours.output());
    println!("python:\n{po}\nours:\n{oo}");
    // Ours took over every partition Python held when it stopped, after
    // Python's last checkpoint there (its last processed offset: Python
    // checkpoints every event it writes, and finishes before closing).
    let held: BTreeSet<String> = po
        .lines()
        .filter(|l| l.contains("SHUTDOWN"))
        .filter_map(|l| l.strip_prefix("python: closed partition "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        !held.is_empty(),
        "python held nothing when it stopped:\n{po}"
    );
    let mut py_last: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for (p, s, o, _) in &py_events {
        let e = py_last.entry(p.clone()).or_insert((*s, o.clone()));
        if *s > e.0 {
            *e = (*s, o.clone());
        }
    }
    py_last.retain(|p, _| held.contains(p));
    let takeovers: Vec<&str> = oo
        .lines()
        .filter(|l| l.contains("claimed partition") && l.contains("after offset"))
        .collect();
    for (p, (_, offset)) in &py_last {
        let wanted =
            format!("claimed partition {p} (receiving after offset {offset} (checkpoint))");
        assert!(
            takeovers.iter().any(|l| l.contains(&wanted)),
            "ours did not take partition {p} over from Python's checkpoint {offset}:\n{oo}"
        );
    }
    // Processed once by one of them, apart from the handover window: an
    // event processed by both is on a partition that moved.
    let py_set: BTreeSet<(String, i64)> = py_events.iter().map(|e| (e.0.clone(), e.1)).collect();
    let both: Vec<&(String, i64, String, String)> = our_events
        .iter()
        .filter(|e| py_set.contains(&(e.0.clone(), e.1)))
        .collect();
    for e in &both {
        assert!(
            moved.contains(&e.0),
            "event {e:?} processed by both on a partition that never moved"
        );
    }
    // Checkpoints in storage: every partition at its last event.
    let cps = rt
        .block_on(store.list_checkpoints(&ns, HUB, "$Default"))
        .expect("checkpoints");
    for (p, l) in &last {
        let c = cps.iter().find(|c| &c.partition_id == p);
        assert_eq!(
            c.and_then(|c| c.sequence_number),
            Some(*l),
            "checkpoint of {p}"
        );
    }
    println!(
        "split {split:?} after {:.1} s; {} events, {distinct} processed, {dups} by both (handover), on {moved:?}; python stop to ours exiting {:.1} s",
        settled_after.as_secs_f64(),
        last.values().map(|l| l + 1).sum::<i64>(),
        py_stopped.elapsed().as_secs_f64()
    );
}
