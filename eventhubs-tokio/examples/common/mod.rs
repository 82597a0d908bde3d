//! Shared by the `send`, `receive` and `info` examples: the hub from
//! `EVENTHUB_CONNECTION_STRING` or an embedded emulator, sample events,
//! progress on a terminal, and output formatting. Command lines are
//! parsed by clap in each example.

// Each example uses only part of this module.
#![allow(dead_code)]

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_tokio::{EventData, Hub, HubOptions, Timestamp};

/// Logs as `RUST_LOG` says, warnings by default.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// A hub, and the embedded emulator it talks to when
/// `EVENTHUB_CONNECTION_STRING` is not set.
pub struct Target {
    /// The hub client.
    pub hub: Hub,
    /// The embedded emulator, kept running while this lives.
    pub emulator: Option<Emulator>,
}

impl Target {
    /// True when the hub is the embedded emulator.
    pub fn is_embedded(&self) -> bool {
        self.emulator.is_some()
    }
}

/// Why the hub could not be set up.
#[derive(Debug)]
pub enum ConnectError {
    /// The embedded emulator did not start.
    Emulator(std::io::Error),
    /// The connection string or options were refused.
    Hub(eventhubs_tokio::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Emulator(e) => write!(f, "cannot start the embedded emulator: {e}"),
            ConnectError::Hub(e) => write!(f, "EVENTHUB_CONNECTION_STRING: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The hub named by `EVENTHUB_CONNECTION_STRING` (with `EntityPath`), or
/// hub `eh1` of an embedded emulator started here when it is not set. Says
/// on stderr which one, without the key.
pub fn connect(options: HubOptions) -> Result<Target, ConnectError> {
    match std::env::var("EVENTHUB_CONNECTION_STRING") {
        Ok(cs) if !cs.trim().is_empty() => {
            let hub = Hub::from_connection_string(&cs, options).map_err(ConnectError::Hub)?;
            eprintln!(
                "using EVENTHUB_CONNECTION_STRING: hub {} on {}",
                hub.name(),
                hub.host()
            );
            Ok(Target {
                hub,
                emulator: None,
            })
        }
        _ => {
            let emulator =
                Emulator::start(EmulatorConfig::default()).map_err(ConnectError::Emulator)?;
            let hub = Hub::from_connection_string(&emulator.connection_string("eh1"), options)
                .map_err(ConnectError::Hub)?;
            eprintln!(
                "EVENTHUB_CONNECTION_STRING is not set: started an embedded emulator on {} (hub {})",
                emulator.addr(),
                hub.name()
            );
            Ok(Target {
                hub,
                emulator: Some(emulator),
            })
        }
    }
}

/// Sends `count` sample events one by one, spread over the partitions
/// round-robin, so the embedded emulator has something to show.
pub async fn send_samples(hub: &Hub, count: usize) -> Result<(), eventhubs_tokio::Error> {
    for i in 0..count {
        hub.send(EventData::new(format!("sample event {i}")))
            .await?;
    }
    eprintln!("sent {count} sample events to the embedded emulator");
    Ok(())
}

/// Checks that `partition` is one of the hub's partitions.
pub fn check_partition(partition: &str, ids: &[String]) -> Result<(), String> {
    if ids.iter().any(|p| p == partition) {
        Ok(())
    } else {
        Err(format!(
            "the hub has no partition {partition:?}; its partitions are {}",
            ids.join(", ")
        ))
    }
}

/// Events so far and their rate, on one line of stderr rewritten at most
/// four times a second: only when stderr is a terminal and not `--quiet`.
pub struct Progress {
    what: &'static str,
    shown: bool,
    on: bool,
    start: Instant,
    last: Instant,
    count: u64,
}

impl Progress {
    /// Progress of `what` ("sent", "received"), shown unless `quiet` or
    /// stderr is not a terminal.
    pub fn new(what: &'static str, quiet: bool) -> Self {
        let now = Instant::now();
        Progress {
            what,
            shown: false,
            on: !quiet && std::io::stderr().is_terminal(),
            start: now,
            last: now,
            count: 0,
        }
    }

    /// `n` more events.
    pub fn add(&mut self, n: u64) {
        self.count += n;
        if !self.on || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r{} {} events, {:.0} events/s   ",
            self.what,
            self.count,
            self.count as f64 / secs
        );
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    /// Clears the line before the summary.
    pub fn finish(&mut self) {
        if self.shown {
            eprint!("\r{:60}\r", "");
            let _ = std::io::stderr().flush();
            self.shown = false;
        }
    }
}

/// A body for display: lossy UTF-8, control characters escaped, cut to
/// `max` characters with the full size noted.
pub fn preview(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for (shown, c) in text.chars().enumerate() {
        if shown == max {
            out.push_str(&format!("... ({} bytes)", body.len()));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `t` as an RFC 3339 UTC instant with milliseconds.
pub fn format_time(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// A non-empty value (a partition id, a key).
pub fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_previews() {
        assert_eq!(format_time(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time(Timestamp(1_709_251_199_999)),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(preview(b"a\nb", 10), "a\\nb");
        assert_eq!(preview(b"abcdef", 3), "abc... (6 bytes)");
    }
}
