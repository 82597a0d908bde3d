//! Sends events and reports the rate: one by one or in batches, to a
//! partition, by partition key, or round-robin.
//!
//! ```text
//! cargo run -p eventhubs-tokio --example send -- --count 1000 --batch-size 100 --event-size 1024
//! ```
//!
//! Uses `EVENTHUB_CONNECTION_STRING` (with `EntityPath`) when set;
//! otherwise starts an embedded emulator.

mod common;

use std::process::ExitCode;
use std::time::Instant;

use common::{ArgError, Args};
use eventhubs_tokio::{Event, HubOptions};

const USAGE: &str = "\
Sends events to an event hub and reports events per second.

Usage: send [OPTIONS]

Options:
  --partition ID        send every event to partition ID
  --partition-key KEY   send every event with partition key KEY
                        (default: neither; the service spreads them round-robin)
  --count N             number of events (default 10)
  --batch-size N        events per send_batch call; 1 sends them one by one (default 1)
  --event-size BYTES    body size of each event (default: a short text)
  -h, --help            this help

The hub is EVENTHUB_CONNECTION_STRING's (with EntityPath); when that is not
set, an embedded emulator is started and its hub eh1 is used.
";

const FLAGS: &[&str] = &[
    "--partition",
    "--partition-key",
    "--count",
    "--batch-size",
    "--event-size",
];

/// Where events go.
#[derive(Debug)]
enum Routing {
    Partition(String),
    Key(String),
    RoundRobin,
}

#[derive(Debug)]
struct Options {
    routing: Routing,
    count: u64,
    batch_size: usize,
    event_size: Option<usize>,
}

impl Options {
    fn from_args(a: &Args) -> Result<Options, ArgError> {
        let routing = match (a.get("--partition"), a.get("--partition-key")) {
            (Some(_), Some(_)) => return Err(ArgError::Conflict("--partition", "--partition-key")),
            (Some(""), None) => {
                return Err(ArgError::Invalid {
                    flag: "--partition",
                    value: String::new(),
                    reason: "the partition id is empty".into(),
                })
            }
            (Some(p), None) => Routing::Partition(p.to_owned()),
            (None, Some(k)) => Routing::Key(k.to_owned()),
            (None, None) => Routing::RoundRobin,
        };
        Ok(Options {
            routing,
            count: a.number("--count", 1)?.unwrap_or(10),
            batch_size: a.number("--batch-size", 1)?.unwrap_or(1) as usize,
            event_size: a.number("--event-size", 0)?.map(|n| n as usize),
        })
    }
}

/// The body of event `i`: `event i` padded (or cut) to `size` bytes.
fn body(i: u64, size: Option<usize>) -> Vec<u8> {
    let mut b = format!("event {i}").into_bytes();
    if let Some(size) = size {
        let fill = b" abcdefghijklmnopqrstuvwxyz";
        let mut k = 0;
        while b.len() < size {
            b.push(fill[k % fill.len()]);
            k += 1;
        }
        b.truncate(size);
    }
    b
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
            eprintln!("send: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let hub_options = HubOptions {
        partitioned_sender: match &options.routing {
            Routing::Partition(p) => Some(p.clone()),
            _ => None,
        },
        ..HubOptions::default()
    };
    let target = common::connect(hub_options)?;
    let result = send(&target, &options).await;
    // Closed on errors too, before the embedded emulator stops.
    target.hub.close().await?;
    result
}

async fn send(
    target: &common::Target,
    options: &Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let hub = &target.hub;
    let info = hub.runtime_information().await?;
    if let Routing::Partition(p) = &options.routing {
        common::check_partition(p, &info.partition_ids)?;
    }
    let key = match &options.routing {
        Routing::Key(k) => Some(k.clone()),
        _ => None,
    };
    let event = |i: u64| {
        let mut e = Event::new(body(i, options.event_size));
        e.partition_key = key.clone();
        e
    };

    let mut bytes = 0u64;
    let start = Instant::now();
    let mut next = 0u64;
    while next < options.count {
        let n = (options.count - next).min(options.batch_size as u64);
        let events: Vec<Event> = (next..next + n).map(event).collect();
        bytes += events.iter().map(|e| e.body.len() as u64).sum::<u64>();
        if options.batch_size == 1 {
            for e in events {
                hub.send(e).await?;
            }
        } else {
            hub.send_batch(events).await?;
        }
        next += n;
    }
    let took = start.elapsed().as_secs_f64();

    let how = match &options.routing {
        Routing::Partition(p) => format!("to partition {p}"),
        Routing::Key(k) => format!("with partition key {k:?}"),
        Routing::RoundRobin => "round-robin".to_owned(),
    };
    let calls = if options.batch_size == 1 {
        "one by one".to_owned()
    } else {
        format!("in batches of up to {}", options.batch_size)
    };
    println!(
        "sent {} events ({bytes} body bytes) {how}, {calls}, in {took:.3} s: {:.0} events/s, {:.2} MiB/s",
        options.count,
        options.count as f64 / took,
        bytes as f64 / took / (1024.0 * 1024.0)
    );
    for id in &info.partition_ids {
        let p = hub.partition_information(id).await?;
        if p.is_empty {
            println!("partition {id}: empty");
        } else {
            println!(
                "partition {id}: sequence numbers {} to {}",
                p.begin_sequence_number, p.last_sequence_number
            );
        }
    }
    Ok(())
}
