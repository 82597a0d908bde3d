//! Runs the examples as a user would (`cargo run --example NAME -- ...`),
//! without `EVENTHUB_CONNECTION_STRING`, so each starts its embedded
//! emulator, and checks what they print and how they exit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What an example printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_success(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
    }

    /// Lines of stdout starting with `prefix`.
    fn lines(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
}

/// Builds (if needed) and runs example `name` with `args`; kills it after
/// `limit`.
fn run_example(name: &str, args: &[&str], limit: Duration) -> Run {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["run", "-q", "-p", "eventhubs-tokio", "--example", name]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.arg("--")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("EVENTHUB_CONNECTION_STRING")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Cargo sets these for the test binary; build scripts (ring's) watch
    // some of them, so passing them on would rebuild half the tree.
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
    let mut child = cmd.spawn().expect("cargo runs");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    // Building the example is part of the first run.
    let deadline = Instant::now() + limit + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} {args:?} still running after its time limit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("reader").expect("stdout is UTF-8"),
        stderr: err.join().expect("reader").expect("stderr is UTF-8"),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

/// The number after `word` in `line`.
fn field(line: &str, word: &str) -> i64 {
    let mut it = line.split_whitespace();
    it.by_ref().find(|w| *w == word);
    it.next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
}

#[test]
fn quickstart_round_trips_an_event_on_the_embedded_emulator() {
    let r = run_example("quickstart", &[], LIMIT);
    r.assert_success();
    assert!(
        r.stdout.contains("started an embedded emulator"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("hub eh1 has partitions [\"0\", \"1\"]"),
        "{}",
        r.stdout
    );
    let sent = r.lines("sent: ");
    let received = r.lines("received: ");
    assert_eq!(sent.len(), 1, "{}", r.stdout);
    assert_eq!(received.len(), 1, "{}", r.stdout);
    let text = sent[0].trim_start_matches("sent: ");
    assert!(
        received[0].starts_with(&format!("received: {text} (partition ")),
        "{}",
        r.stdout
    );
}

#[test]
fn send_batches_to_a_partition_and_reports_the_rate() {
    let r = run_example(
        "send",
        &[
            "--partition",
            "1",
            "--count",
            "250",
            "--batch-size",
            "100",
            "--event-size",
            "512",
        ],
        LIMIT,
    );
    r.assert_success();
    assert!(
        r.stderr.contains("EVENTHUB_CONNECTION_STRING is not set"),
        "{}",
        r.stderr
    );
    let summary = r.lines("sent ");
    assert_eq!(summary.len(), 1, "{}", r.stdout);
    assert!(
        summary[0].starts_with(
            "sent 250 events (128000 body bytes) to partition 1, in batches of up to 100, in "
        ),
        "{}",
        summary[0]
    );
    let rate: f64 = summary[0]
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("events/s");
    assert!(rate > 0.0, "{}", summary[0]);
    assert!(r.stdout.contains("partition 0: empty"), "{}", r.stdout);
    assert!(
        r.stdout.contains("partition 1: sequence numbers 0 to 249"),
        "{}",
        r.stdout
    );
}

#[test]
fn send_by_partition_key_keeps_events_together() {
    let r = run_example(
        "send",
        &["--partition-key", "device-7", "--count", "12"],
        LIMIT,
    );
    r.assert_success();
    assert!(
        r.stdout.contains("sent 12 events (")
            && r.stdout
                .contains("with partition key \"device-7\", one by one"),
        "{}",
        r.stdout
    );
    // All twelve land in one partition, the other stays empty.
    let parts = r.lines("partition ");
    assert_eq!(parts.len(), 2, "{}", r.stdout);
    assert_eq!(
        parts.iter().filter(|l| l.ends_with(": empty")).count(),
        1,
        "{}",
        r.stdout
    );
    assert_eq!(
        parts
            .iter()
            .filter(|l| l.ends_with("sequence numbers 0 to 11"))
            .count(),
        1,
        "{}",
        r.stdout
    );
}

#[test]
fn receive_prints_the_sample_events_of_every_partition() {
    let r = run_example("receive", &[], LIMIT);
    r.assert_success();
    let events = r.lines("partition ");
    assert_eq!(events.len(), 6, "{}", r.stdout);
    let mut bodies: Vec<&str> = events
        .iter()
        .map(|l| l.split("body: ").nth(1).expect("body"))
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        (0..6)
            .map(|i| format!("sample event {i}"))
            .collect::<Vec<_>>()
    );
    for p in ["0", "1"] {
        let seqs: Vec<i64> = events
            .iter()
            .filter(|l| l.starts_with(&format!("partition {p} ")))
            .map(|l| field(l, "sequence"))
            .collect();
        assert_eq!(seqs, vec![0, 1, 2], "partition {p}: {}", r.stdout);
    }
    assert!(
        r.stdout.contains("received 6 events (no event for 2 s)"),
        "{}",
        r.stdout
    );
}

#[test]
fn receive_from_a_sequence_number_stops_after_count() {
    let r = run_example(
        "receive",
        &[
            "--partition",
            "1",
            "--start",
            "seq:1",
            "--count",
            "2",
            "--consumer-group",
            "cg1",
            "--epoch",
            "5",
        ],
        LIMIT,
    );
    r.assert_success();
    assert!(r.stderr.contains("consumer group cg1"), "{}", r.stderr);
    let events = r.lines("partition ");
    assert_eq!(events.len(), 2, "{}", r.stdout);
    assert_eq!(field(events[0], "sequence"), 1);
    assert_eq!(field(events[1], "sequence"), 2);
    assert!(events.iter().all(|l| l.starts_with("partition 1 ")));
    assert!(
        r.stdout.contains("received 2 events (count reached)"),
        "{}",
        r.stdout
    );
}

#[test]
fn receive_from_latest_sees_only_later_events() {
    let r = run_example("receive", &["--start", "latest", "--idle", "1"], LIMIT);
    r.assert_success();
    // The samples are sent after the receivers open, so all six arrive.
    assert_eq!(r.lines("partition ").len(), 6, "{}", r.stdout);
    assert!(r.stdout.contains("(no event for 1 s)"), "{}", r.stdout);
}

#[test]
fn info_prints_the_hub_and_every_partition() {
    let r = run_example("info", &[], LIMIT);
    r.assert_success();
    assert!(r.stdout.starts_with("hub eh1\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("partitions              2 (0, 1)"),
        "{}",
        r.stdout
    );
    // Five samples, round-robin: sequence numbers 0..=2 and 0..=1.
    let lasts: Vec<i64> = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("last sequence number"))
        .map(|l| field(l, "number"))
        .collect();
    assert_eq!(lasts.len(), 2, "{}", r.stdout);
    assert_eq!(lasts.iter().map(|n| n + 1).sum::<i64>(), 5, "{}", r.stdout);
    assert_eq!(r.lines("partition ").len(), 2, "{}", r.stdout);
    assert!(
        !r.stdout.contains("SAS_KEY_VALUE") && !r.stderr.contains("SAS_KEY_VALUE"),
        "the key is never printed"
    );
}

#[test]
fn help_describes_the_options() {
    for (name, option) in [
        ("send", "--batch-size"),
        ("receive", "--start"),
        ("info", "--help"),
        ("send", "--quiet"),
        ("receive", "--quiet"),
    ] {
        let r = run_example(name, &["--help"], LIMIT);
        r.assert_success();
        assert!(r.stdout.contains("Usage: "), "{name}: {}", r.stdout);
        assert!(
            r.stdout.contains("EVENTHUB_CONNECTION_STRING"),
            "{name}: {}",
            r.stdout
        );
        assert!(r.stdout.contains(option), "{name}: {}", r.stdout);
    }
}

#[test]
fn bad_arguments_exit_non_zero_saying_what_is_wrong() {
    // clap's messages.
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "send",
            &["--count", "abc"],
            "invalid value 'abc' for '--count <N>': invalid digit found in string",
        ),
        (
            "send",
            &["--batch-size", "0"],
            "invalid value '0' for '--batch-size <N>': 0 is not in 1..",
        ),
        (
            "send",
            &["--partition", "0", "--partition-key", "k"],
            "the argument '--partition <ID>' cannot be used with '--partition-key <KEY>'",
        ),
        (
            "send",
            &["--count"],
            "a value is required for '--count <N>' but none was supplied",
        ),
        ("send", &["--colour", "red"], "unexpected argument '--colour' found"),
        (
            "send",
            &["--partition", ""],
            "invalid value '' for '--partition <ID>': must not be empty",
        ),
        (
            "receive",
            &["--start", "yesterday"],
            "invalid value 'yesterday' for '--start <POSITION>': expected earliest, latest, offset:X, seq:N or time:UNIX_MS",
        ),
        (
            "receive",
            &["--start", "seq:x"],
            "invalid value 'seq:x' for '--start <POSITION>': \"x\" is not a sequence number",
        ),
        (
            "receive",
            &["--epoch", "-1"],
            "invalid value '-1' for '--epoch <N>': must not be negative",
        ),
        ("info", &["extra"], "unexpected argument 'extra' found"),
    ];
    for (name, args, message) in cases {
        let r = run_example(name, args, LIMIT);
        assert_eq!(r.code, Some(2), "{name} {args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(message),
            "{name} {args:?}: expected {message:?} in:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains("--help"), "{}", r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
}

#[test]
fn a_missing_partition_fails_at_run_time_with_the_partitions_listed() {
    for name in ["send", "receive"] {
        let r = run_example(name, &["--partition", "9"], LIMIT);
        assert_eq!(r.code, Some(1), "{name}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("the hub has no partition \"9\"; its partitions are 0, 1"),
            "{name}: {}",
            r.stderr
        );
    }
}

#[test]
fn manage_creates_lists_updates_and_deletes_hubs_on_the_embedded_emulator() {
    let r = run_example(
        "manage",
        &[
            "create",
            "telemetry",
            "--partitions",
            "5",
            "--retention-days",
            "3",
        ],
        LIMIT,
    );
    r.assert_success();
    assert!(
        r.stderr.contains("management API on http://127.0.0.1:"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.starts_with("created\nhub telemetry\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("partitions              5 (0, 1, 2, 3, 4)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("retention               3 day(s)"),
        "{}",
        r.stdout
    );

    let r = run_example("manage", &["list"], LIMIT);
    r.assert_success();
    assert_eq!(r.lines("1 event hub").len(), 1, "{}", r.stdout);
    assert_eq!(r.lines("eh1 ").len(), 1, "{}", r.stdout);

    let r = run_example("manage", &["update", "eh1", "--retention-days", "2"], LIMIT);
    r.assert_success();
    assert!(
        r.stdout.contains("retention               2 day(s)"),
        "{}",
        r.stdout
    );

    let r = run_example("manage", &["get", "eh1"], LIMIT);
    r.assert_success();
    assert!(
        r.stdout.contains("partitions              2 (0, 1)"),
        "{}",
        r.stdout
    );
    let r = run_example("manage", &["get", "nothere"], LIMIT);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("no event hub \"nothere\""),
        "{}",
        r.stderr
    );

    let r = run_example("manage", &["delete", "eh1"], LIMIT);
    r.assert_success();
    assert!(r.stdout.contains("deleted eh1"), "{}", r.stdout);

    // The service's refusals reach the user with their code and detail.
    let r = run_example("manage", &["create", "big", "--partitions", "40"], LIMIT);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("answered 400") && r.stderr.contains("PartitionCount"),
        "{}",
        r.stderr
    );
    let r = run_example("manage", &["frob"], LIMIT);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

#[test]
fn processor_claims_processes_and_releases_on_the_embedded_emulator() {
    let out = std::env::temp_dir().join(format!(
        "eventhubs-processor-example-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&out);
    let r = run_example(
        "processor",
        &[
            "--update-interval",
            "1",
            "--ownership-expiry",
            "3",
            "--strategy",
            "greedy",
            "--owner-id",
            "example-owner",
            "--idle",
            "2",
            "--events-out",
            out.to_str().expect("path"),
        ],
        LIMIT,
    );
    r.assert_success();
    assert_eq!(
        r.lines("example-owner: claimed partition").len(),
        2,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.lines("example-owner: released partition").len(),
        2,
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("example-owner: processed 10 events (idle)"),
        "{}",
        r.stdout
    );
    let text = std::fs::read_to_string(&out).expect("events file");
    let _ = std::fs::remove_file(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "{text}");
    for l in lines {
        for key in [
            "\"partition_id\":",
            "\"sequence_number\":",
            "\"offset\":",
            "\"owner_id\":\"example-owner\"",
        ] {
            assert!(l.contains(key), "{key} missing in {l}");
        }
    }
    let help = run_example("processor", &["--help"], LIMIT);
    help.assert_success();
    for option in [
        "--storage",
        "--container",
        "--strategy",
        "--events-out",
        "--idle",
    ] {
        assert!(help.stdout.contains(option), "{}", help.stdout);
    }
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--strategy", "fair"],
            2,
            "unknown load-balancing strategy \"fair\"",
        ),
        (
            &["--storage", "x"],
            2,
            "the following required arguments were not provided",
        ),
        (
            &["--update-interval", "1", "--ownership-expiry", "2"],
            1,
            "must be at least 3 times the update interval",
        ),
        (
            &["--update-interval", "-1"],
            2,
            "expected a positive number of seconds",
        ),
    ];
    for (args, code, message) in cases {
        let r = run_example("processor", args, LIMIT);
        assert_eq!(r.code, Some(*code), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{args:?}: {}", r.stderr);
    }
}
