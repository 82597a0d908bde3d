//! Receives events from one partition or all of them and prints each one's
//! partition, sequence number, offset and body; with `--count-only` it
//! prints none and reports the count and events/s at the end.
//!
//! ```text
//! cargo run -p eventhubs-tokio --example receive -- --partition 0 --start seq:100 --count 10
//! cargo run --release -p eventhubs-tokio --example receive -- --partition 0 --count 100000 --count-only
//! ```
//!
//! Uses `EVENTHUB_CONNECTION_STRING` (with `EntityPath`) when set;
//! otherwise starts an embedded emulator and sends it a few events first.

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use eventhubs_tokio::{EventPosition, HubOptions, ReceiveOptions, Timestamp};
use futures_util::StreamExt;

/// Receives events from an event hub and prints them.
#[derive(Debug, Parser)]
#[command(
    name = "receive",
    after_help = "The hub is EVENTHUB_CONNECTION_STRING's (with EntityPath); when that is not\n\
                  set, an embedded emulator is started, its hub eh1 is used, and a few sample\n\
                  events are sent once the receivers are open."
)]
struct Options {
    /// The partition to read (default: every partition)
    #[arg(long, value_name = "ID", value_parser = common::non_empty)]
    partition: Option<String>,
    /// Where to start: earliest (the first event retained), latest (only
    /// events sent from now on), offset:X (after the event at offset X),
    /// seq:N (from sequence number N, inclusive), time:UNIX_MS (events
    /// enqueued after this instant)
    #[arg(long, value_name = "POSITION", default_value = "earliest", value_parser = parse_start)]
    start: EventPosition,
    /// Stop after N events (default: until Ctrl-C)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after SECS seconds without an event; 0 never (default: 2 on the
    /// embedded emulator, else never)
    #[arg(long, value_name = "SECS")]
    idle: Option<u64>,
    /// The consumer group
    #[arg(long, value_name = "G", default_value = "$Default")]
    consumer_group: String,
    /// Receive with owner level (epoch) N
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_epoch)]
    epoch: Option<i64>,
    /// No progress line on stderr
    #[arg(long, short)]
    quiet: bool,
    /// Print no event: only count them, and report events/s (timed from
    /// the first event) at the end
    #[arg(long)]
    count_only: bool,
}

/// Characters of a body shown per event.
const BODY_CHARS: usize = 60;
/// Sample events sent to the embedded emulator.
const SAMPLES: usize = 6;
/// Idle time after which a receive from the embedded emulator stops.
const EMBEDDED_IDLE: Duration = Duration::from_secs(2);

fn parse_start(v: &str) -> Result<EventPosition, String> {
    let number = |n: &str, what: &str| {
        n.parse::<i64>()
            .map_err(|_| format!("{n:?} is not a {what}"))
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
            Timestamp::from_millis(number(ms, "number of milliseconds")?),
            false,
        )),
        _ => Err("expected earliest, latest, offset:X, seq:N or time:UNIX_MS".into()),
    }
}

fn parse_epoch(v: &str) -> Result<i64, String> {
    match v.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        Ok(_) => Err("must not be negative".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
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

    let mut receive = ReceiveOptions::new()
        .with_start_position(options.start.clone())
        .with_consumer_group(options.consumer_group.clone());
    if let Some(epoch) = options.epoch {
        receive = receive.with_owner_level(epoch);
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
        receive.consumer_group()
    );
    if target.is_embedded() && samples_after {
        common::send_samples(hub, SAMPLES).await?;
    }

    let idle = match options.idle.map(Duration::from_secs) {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if target.is_embedded() => Some(EMBEDDED_IDLE),
        None => None,
    };
    let mut events = futures_util::stream::select_all(streams);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut received = 0u64;
    let mut first_at: Option<Instant> = None;
    let mut body_bytes = 0u64;
    let mut progress = common::Progress::new("received", options.quiet);
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
        progress.add(1);
        if options.count_only {
            if first_at.is_some() {
                body_bytes += event.body().len() as u64;
            } else {
                first_at = Some(Instant::now());
            }
            continue;
        }
        println!(
            "partition {} sequence {} offset {} enqueued {} body: {}",
            event.partition_id(),
            event.sequence_number(),
            event.offset(),
            common::format_time(event.enqueued_time()),
            common::preview(event.body(), BODY_CHARS)
        );
    };
    progress.finish();
    let why = match stop {
        Stop::Count => "count reached".to_owned(),
        Stop::Idle(d) => format!("no event for {} s", d.as_secs_f64()),
        Stop::Interrupted => "interrupted".to_owned(),
        Stop::Ended => "the receivers closed".to_owned(),
    };
    println!("received {received} events ({why})");
    if let (true, Some(at)) = (options.count_only, first_at) {
        // The clock starts at the first event: link set-up is not counted,
        // nor (after --idle) the wait that ended the receive.
        let took = at.elapsed().as_secs_f64();
        let took = match stop {
            Stop::Idle(d) => (took - d.as_secs_f64()).max(f64::MIN_POSITIVE),
            _ => took,
        };
        println!(
            "{} events after the first in {took:.3} s: {:.0} events/s, {:.2} MiB/s of body",
            received - 1,
            (received - 1) as f64 / took,
            body_bytes as f64 / took / (1024.0 * 1024.0)
        );
    }
    Ok(())
}
