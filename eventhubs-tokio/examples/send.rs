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

use clap::Parser;
use eventhubs_tokio::{EventData, HubOptions, SendOptions};

/// Sends events to an event hub and reports events per second.
#[derive(Debug, Parser)]
#[command(
    name = "send",
    after_help = "The hub is EVENTHUB_CONNECTION_STRING's (with EntityPath); when that is not\n\
                  set, an embedded emulator is started and its hub eh1 is used."
)]
struct Options {
    /// Send every event to partition ID
    #[arg(long, value_name = "ID", value_parser = common::non_empty)]
    partition: Option<String>,
    /// Send every event with partition key KEY (default: neither; the
    /// service spreads them round-robin)
    #[arg(long, value_name = "KEY", conflicts_with = "partition")]
    partition_key: Option<String>,
    /// Number of events
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Events per send_batch call; 1 sends them one by one
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Body size of each event (default: a short text)
    #[arg(long, value_name = "BYTES")]
    event_size: Option<usize>,
    /// No progress line on stderr
    #[arg(long, short)]
    quiet: bool,
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
    let options = Options::parse();
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
    let target = common::connect(HubOptions::new())?;
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
    if let Some(p) = &options.partition {
        common::check_partition(p, &info.partition_ids)?;
    }
    // Routing is per send, on the hub's one connection.
    let mut routing = SendOptions::new();
    if let Some(p) = &options.partition {
        routing = routing.with_partition_id(p.clone());
    }
    if let Some(k) = &options.partition_key {
        routing = routing.with_partition_key(k.clone());
    }

    let mut progress = common::Progress::new("sent", options.quiet);
    let mut bytes = 0u64;
    let start = Instant::now();
    let mut next = 0u64;
    while next < options.count {
        let n = (options.count - next).min(options.batch_size);
        let events: Vec<EventData> = (next..next + n)
            .map(|i| EventData::new(body(i, options.event_size)))
            .collect();
        bytes += events.iter().map(|e| e.body.len() as u64).sum::<u64>();
        if options.batch_size == 1 {
            for e in events {
                hub.send_with(e, routing.clone()).await?;
            }
        } else {
            hub.send_batch_with(events, routing.clone()).await?;
        }
        next += n;
        progress.add(n);
    }
    let took = start.elapsed().as_secs_f64();
    progress.finish();

    let how = match (&options.partition, &options.partition_key) {
        (Some(p), _) => format!("to partition {p}"),
        (_, Some(k)) => format!("with partition key {k:?}"),
        _ => "round-robin".to_owned(),
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
