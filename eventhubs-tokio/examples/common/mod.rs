//! Shared by the `send`, `receive` and `info` examples: `--flag value`
//! argument parsing on std only, the hub from `EVENTHUB_CONNECTION_STRING`
//! or an embedded emulator, sample events, and output formatting.

// Each example uses only part of this module.
#![allow(dead_code)]

use std::fmt;
use std::process::ExitCode;
use std::str::FromStr;

use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::codec::Timestamp;
use eventhubs_tokio::{Event, Hub, HubOptions};

/// A command line that cannot be used, or a request for help.
#[derive(Debug, PartialEq, Eq)]
pub enum ArgError {
    /// `--help` or `-h`.
    Help,
    /// An option this example does not know.
    Unknown(String),
    /// An argument that is not an option.
    Positional(String),
    /// An option given without its value.
    MissingValue(&'static str),
    /// An option given twice.
    Repeated(&'static str),
    /// A value that does not parse or is out of range.
    Invalid {
        /// The option.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two options that cannot be used together.
    Conflict(&'static str, &'static str),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Help => write!(f, "help requested"),
            ArgError::Unknown(a) => write!(f, "unknown option {a}"),
            ArgError::Positional(a) => {
                write!(f, "unexpected argument {a:?}: options are --name value")
            }
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::Repeated(flag) => write!(f, "{flag} is given more than once"),
            ArgError::Invalid {
                flag,
                value,
                reason,
            } => write!(f, "{flag} {value:?}: {reason}"),
            ArgError::Conflict(a, b) => write!(f, "{a} and {b} cannot be used together"),
        }
    }
}

impl std::error::Error for ArgError {}

/// The options given, each with its value, in order.
#[derive(Debug, Default)]
pub struct Args {
    values: Vec<(&'static str, String)>,
}

impl Args {
    /// Parses `args` (without the program name) against the options in
    /// `flags`, each of which takes a value (`--flag value` or
    /// `--flag=value`).
    pub fn parse(
        flags: &[&'static str],
        args: impl IntoIterator<Item = String>,
    ) -> Result<Args, ArgError> {
        let mut out = Args::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ArgError::Help);
            }
            if !arg.starts_with('-') || arg == "-" {
                return Err(ArgError::Positional(arg));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            let Some(&flag) = flags.iter().find(|f| **f == name) else {
                return Err(ArgError::Unknown(name));
            };
            let value = match inline {
                Some(v) => v,
                None => match args.next() {
                    // A value may not look like an option: `--count --batch-size 5`
                    // is a missing value, not a count of "--batch-size".
                    Some(v) if !(v.starts_with("--") && v.len() > 2) => v,
                    _ => return Err(ArgError::MissingValue(flag)),
                },
            };
            if out.get(flag).is_some() {
                return Err(ArgError::Repeated(flag));
            }
            out.values.push((flag, value));
        }
        Ok(out)
    }

    /// The value of `flag`, if given.
    pub fn get(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `flag` parsed as a `T`, if given.
    pub fn parse_value<T>(&self, flag: &'static str) -> Result<Option<T>, ArgError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(flag)
            .map(|v| {
                v.parse::<T>().map_err(|e| ArgError::Invalid {
                    flag,
                    value: v.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// The value of `flag` as a whole number of at least `min`, if given.
    pub fn number(&self, flag: &'static str, min: u64) -> Result<Option<u64>, ArgError> {
        let Some(v) = self.get(flag) else {
            return Ok(None);
        };
        let n: u64 = v.parse().map_err(|_| ArgError::Invalid {
            flag,
            value: v.to_owned(),
            reason: "not a whole number".into(),
        })?;
        if n < min {
            return Err(ArgError::Invalid {
                flag,
                value: v.to_owned(),
                reason: format!("must be at least {min}"),
            });
        }
        Ok(Some(n))
    }
}

/// Parses the process's arguments. On `--help`, prints `usage` and gives
/// the exit code 0; on a bad command line, prints what is wrong and gives
/// exit code 2.
pub fn parse_args(usage: &str, flags: &[&'static str]) -> Result<Args, ExitCode> {
    check_args(usage, Args::parse(flags, std::env::args().skip(1)))
}

/// Reports an argument error as [`parse_args`] does.
pub fn check_args<T>(usage: &str, r: Result<T, ArgError>) -> Result<T, ExitCode> {
    match r {
        Ok(t) => Ok(t),
        Err(ArgError::Help) => {
            print!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let program = std::env::args()
                .next()
                .and_then(|p| {
                    std::path::Path::new(&p)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            eprintln!("{program}: error: {e}\nRun with --help for the options.");
            Err(ExitCode::from(2))
        }
    }
}

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
        hub.send(Event::new(format!("sample event {i}"))).await?;
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
    eventhubs_proto::management::time::format_rfc3339(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, ArgError> {
        Args::parse(
            &["--count", "--partition"],
            args.iter().map(|s| s.to_string()),
        )
    }

    #[test]
    fn arguments() {
        let a = parse(&["--count", "5", "--partition=1"]).unwrap();
        assert_eq!(a.number("--count", 1).unwrap(), Some(5));
        assert_eq!(a.get("--partition"), Some("1"));
        assert_eq!(
            parse(&["--bogus"]).unwrap_err(),
            ArgError::Unknown("--bogus".into())
        );
        assert_eq!(
            parse(&["--count"]).unwrap_err(),
            ArgError::MissingValue("--count")
        );
        assert_eq!(
            parse(&["--count", "--partition", "1"]).unwrap_err(),
            ArgError::MissingValue("--count")
        );
        assert_eq!(
            parse(&["--count", "1", "--count", "2"]).unwrap_err(),
            ArgError::Repeated("--count")
        );
        assert_eq!(parse(&["-h"]).unwrap_err(), ArgError::Help);
        let a = parse(&["--count", "0"]).unwrap();
        assert!(a.number("--count", 1).is_err());
    }

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
