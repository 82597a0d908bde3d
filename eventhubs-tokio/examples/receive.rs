//! Receives events from one partition or all of them and prints each one's
//! partition, sequence number, offset and body.
//!
//! ```text
//! cargo run -p eventhubs-tokio --example receive -- --partition 0 --start seq:100 --count 10
//! ```
//!
//! Uses `EVENTHUB_CONNECTION_STRING` (with `EntityPath`) when set;
//! otherwise starts an embedded emulator and sends it a few events first.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::{ArgError, Args};
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_tokio::{HubOptions, ReceiveOptions};
use futures_util::StreamExt;

const USAGE: &str = "\
Receives events from an event hub and prints them.

Usage: receive [OPTIONS]

Options:
  --partition ID        the partition to read (default: every partition)
  --start POSITION      where to start (default earliest):
                          earliest        the first event retained
                          latest          only events sent from now on
                          offset:X        after the event at offset X
                          seq:N           from sequence number N, inclusive
                          time:UNIX_MS    events enqueued after this instant
  --count N             stop after N events (default: until Ctrl-C)
  --idle SECS           stop after SECS seconds without an event; 0 never
                        (default: 2 on the embedded emulator, else never)
  --consumer-group G    the consumer group (default $Default)
  --epoch N             receive with owner level N
  -h, --help            this help

The hub is EVENTHUB_CONNECTION_STRING's (with EntityPath); when that is not
set, an embedded emulator is started, its hub eh1 is used, and a few sample
events are sent once the receivers are open.
";

const FLAGS: &[&str] = &[
    "--partition",
    "--start",
    "--count",
    "--idle",
    "--consumer-group",
    "--epoch",
];

/// Characters of a body shown per event.
const BODY_CHARS: usize = 60;
/// Sample events sent to the embedded emulator.
const SAMPLES: usize = 6;
/// Idle time after which a receive from the embedded emulator stops.
const EMBEDDED_IDLE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Options {
    partition: Option<String>,
    start: EventPosition,
    count: Option<u64>,
    idle: Option<Duration>,
    consumer_group: Option<String>,
    epoch: Option<i64>,
}

fn parse_start(v: &str) -> Result<EventPosition, ArgError> {
    let invalid = |reason: String| ArgError::Invalid {
        flag: "--start",
        value: v.to_owned(),
        reason,
    };
    let number = |n: &str, what: &str| {
        n.parse::<i64>()
            .map_err(|_| invalid(format!("{n:?} is not a {what}")))
    };
    match v.split_once(':') {
        None if v == "earliest" => Ok(EventPosition::Earliest),
        None if v == "latest" => Ok(EventPosition::Latest),
        Some(("offset", x)) if !x.is_empty() => Ok(EventPosition::offset(x, false)),
        Some(("seq", n)) => Ok(EventPosition::sequence_number(
            number(n, "sequence number")?,
            true,
        )),
        Some(("time", ms)) => Ok(EventPosition::enqueued_time(
            eventhubs_proto::codec::Timestamp(number(ms, "number of milliseconds")?),
            false,
        )),
        _ => Err(invalid(
            "expected earliest, latest, offset:X, seq:N or time:UNIX_MS".into(),
        )),
    }
}

impl Options {
    fn from_args(a: &Args) -> Result<Options, ArgError> {
        let partition = a.get("--partition").map(str::to_owned);
        if partition.as_deref() == Some("") {
            return Err(ArgError::Invalid {
                flag: "--partition",
                value: String::new(),
                reason: "the partition id is empty".into(),
            });
        }
        let epoch = a.parse_value::<i64>("--epoch")?;
        if let Some(e) = epoch.filter(|e| *e < 0) {
            return Err(ArgError::Invalid {
                flag: "--epoch",
                value: e.to_string(),
                reason: "must not be negative".into(),
            });
        }
        Ok(Options {
            partition,
            start: a
                .get("--start")
                .map_or(Ok(EventPosition::Earliest), parse_start)?,
            count: a.number("--count", 1)?,
            idle: a.number("--idle", 0)?.map(Duration::from_secs),
            consumer_group: a.get("--consumer-group").map(str::to_owned),
            epoch,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match common::parse_args(USAGE, FLAGS) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let options = match common::check_args(USAGE, Options::from_args(&args)) {
        Ok(o) => o,
        Err(code) => return code,
    };
    common::init_tracing();
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("receive: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why receiving stopped.
enum Stop {
    Count,
    Idle(Duration),
    Interrupted,
    Ended,
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let target = common::connect(HubOptions::default())?;
    let result = receive(&target, &options).await;
    // Closed on errors too, before the embedded emulator stops.
    target.hub.close().await?;
    result
}

async fn receive(
    target: &common::Target,
    options: &Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let hub = &target.hub;
    let info = hub.runtime_information().await?;
    let partitions = match &options.partition {
        Some(p) => {
            common::check_partition(p, &info.partition_ids)?;
            vec![p.clone()]
        }
        None => info.partition_ids.clone(),
    };

    let mut receive = ReceiveOptions {
        position: Some(options.start.clone()),
        epoch: options.epoch,
        ..ReceiveOptions::default()
    };
    if let Some(g) = &options.consumer_group {
        receive.consumer_group = g.clone();
    }
    // Samples for the embedded emulator go in first, so every start
    // position can find them; with `latest` they can only come after the
    // receivers are open.
    let samples_after = matches!(options.start, EventPosition::Latest);
    if target.is_embedded() && !samples_after {
        common::send_samples(hub, SAMPLES).await?;
    }
    let mut streams = Vec::new();
    for p in &partitions {
        let stream = hub
            .receiver(p, receive.clone())
            .await
            .map_err(|e| format!("cannot open a receiver on partition {p}: {e}"))?;
        let p = p.clone();
        streams.push(stream.map(move |r| (p.clone(), r)).boxed());
    }
    eprintln!(
        "receiving from partition{} {} of hub {} (consumer group {})",
        if partitions.len() == 1 { "" } else { "s" },
        partitions.join(", "),
        hub.name(),
        receive.consumer_group
    );
    if target.is_embedded() && samples_after {
        common::send_samples(hub, SAMPLES).await?;
    }

    let idle = match options.idle {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if target.is_embedded() => Some(EMBEDDED_IDLE),
        None => None,
    };
    let mut events = futures_util::stream::select_all(streams);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut received = 0u64;
    let stop = loop {
        if options.count.is_some_and(|n| received >= n) {
            break Stop::Count;
        }
        let next = async {
            match idle {
                Some(d) => tokio::time::timeout(d, events.next()).await.ok(),
                None => Some(events.next().await),
            }
        };
        let item = tokio::select! {
            item = next => item,
            _ = &mut ctrl_c => break Stop::Interrupted,
        };
        let Some(item) = item else {
            break Stop::Idle(idle.unwrap_or_default());
        };
        let Some((partition, result)) = item else {
            break Stop::Ended;
        };
        let event = match result {
            Ok(e) => e,
            Err(e) if e.is_ownership_lost() => {
                return Err(format!(
                    "partition {partition}: another receiver with a higher epoch took it over ({e})"
                )
                .into())
            }
            Err(e) => return Err(format!("partition {partition}: {e}").into()),
        };
        received += 1;
        println!(
            "partition {} sequence {} offset {} enqueued {} body: {}",
            event.partition_id,
            event.system.sequence_number,
            event.system.offset,
            common::format_time(event.system.enqueued_time),
            common::preview(&event.data.body, BODY_CHARS)
        );
    };
    let why = match stop {
        Stop::Count => "count reached".to_owned(),
        Stop::Idle(d) => format!("no event for {} s", d.as_secs_f64()),
        Stop::Interrupted => "interrupted".to_owned(),
        Stop::Ended => "the receivers closed".to_owned(),
    };
    println!("received {received} events ({why})");
    Ok(())
}
