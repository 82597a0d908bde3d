//! An event processor: shares a hub's partitions with every other
//! processor of the consumer group on the same checkpoint store (this
//! example run several times, or the Python, Go, .NET or JavaScript
//! processors), processes the events of the partitions it owns, and
//! checkpoints after each batch.
//!
//! ```text
//! cargo run -p eventhubs-tokio --example processor -- \
//!     --storage "$STORAGE_CONNECTION_STRING" --container checkpoints \
//!     --events-out events.jsonl --idle 30
//! ```
//!
//! Uses `EVENTHUB_CONNECTION_STRING` (with `EntityPath`) when set;
//! otherwise starts an embedded emulator and sends it a few events.

mod common;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ArgError, Args};
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::client::ReceivedEvent;
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_tokio::processor::{
    CloseReason, HandlerFuture, HandlerResult, LoadBalancingStrategy, PartitionContext,
    ProcessorError, StopOptions,
};
use eventhubs_tokio::{
    BlobCheckpointStore, CheckpointStore, Handler, Hub, HubOptions, MemoryCheckpointStore,
    Processor, ProcessorOptions, TokioRuntime,
};

const USAGE: &str = "\
Processes a hub's events together with every other processor of the
consumer group: the partitions are shared through the checkpoint store,
ownership moves when processors come and go, and each partition resumes
after its last checkpoint.

Usage: processor [OPTIONS]

Options:
  --storage CONNECTION_STRING  Blob Storage account for ownership and
                               checkpoints (with --container; default: in
                               memory, this process only)
  --container NAME             the container (created if missing)
  --consumer-group G           the consumer group (default $Default)
  --strategy S                 balanced (one new partition per cycle, the
                               default) or greedy (the fair share at once)
  --owner-id ID                this processor's id (default: a random UUID)
  --update-interval SECS       time between load-balancing cycles (10)
  --ownership-expiry SECS      an ownership not renewed this long may be
                               claimed by others (60; at least 3 intervals)
  --count N                    stop after processing N events
  --idle SECS                  stop after SECS without an event (default: 3
                               on the embedded emulator, else never)
  --events-out FILE            write one JSON line per processed event:
                               partition_id, sequence_number, offset,
                               owner_id
  -h, --help                   this help

A stop (--count, --idle or Ctrl-C) is graceful: batches in progress finish,
every partition is checkpointed and its ownership relinquished, so other
processors take it over in their next cycle.

The hub is EVENTHUB_CONNECTION_STRING's (with EntityPath); when that is not
set, an embedded emulator is started and a few sample events are sent.
";

const FLAGS: &[&str] = &[
    "--storage",
    "--container",
    "--consumer-group",
    "--strategy",
    "--owner-id",
    "--update-interval",
    "--ownership-expiry",
    "--count",
    "--idle",
    "--events-out",
];

/// Sample events sent to the embedded emulator.
const SAMPLES: usize = 10;
/// Idle time after which a processor on the embedded emulator stops.
const EMBEDDED_IDLE: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Options {
    storage: Option<(String, String)>,
    consumer_group: Option<String>,
    strategy: LoadBalancingStrategy,
    owner_id: Option<String>,
    update_interval: Option<Duration>,
    ownership_expiry: Option<Duration>,
    count: Option<u64>,
    idle: Option<Duration>,
    events_out: Option<String>,
}

fn seconds(a: &Args, flag: &'static str) -> Result<Option<Duration>, ArgError> {
    let Some(v) = a.get(flag) else {
        return Ok(None);
    };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(ArgError::Invalid {
            flag,
            value: v.to_owned(),
            reason: "expected a positive number of seconds".into(),
        }),
    }
}

impl Options {
    fn from_args(a: &Args) -> Result<Options, ArgError> {
        let storage = match (a.get("--storage"), a.get("--container")) {
            (Some(s), Some(c)) if !c.is_empty() => Some((s.to_owned(), c.to_owned())),
            (Some(_), Some(c)) => {
                return Err(ArgError::Invalid {
                    flag: "--container",
                    value: c.to_owned(),
                    reason: "the container name is empty".into(),
                })
            }
            (Some(_), None) => return Err(ArgError::MissingValue("--container")),
            (None, Some(_)) => return Err(ArgError::MissingValue("--storage")),
            (None, None) => None,
        };
        let owner_id = a.get("--owner-id").map(str::to_owned);
        if owner_id.as_deref() == Some("") {
            return Err(ArgError::Invalid {
                flag: "--owner-id",
                value: String::new(),
                reason: "the owner id is empty".into(),
            });
        }
        Ok(Options {
            storage,
            consumer_group: a.get("--consumer-group").map(str::to_owned),
            strategy: a
                .parse_value::<LoadBalancingStrategy>("--strategy")?
                .unwrap_or_default(),
            owner_id,
            update_interval: seconds(a, "--update-interval")?,
            ownership_expiry: seconds(a, "--ownership-expiry")?,
            count: a.number("--count", 1)?,
            idle: a.parse_value::<f64>("--idle")?.map(|s| {
                if s > 0.0 && s.is_finite() {
                    Duration::from_secs_f64(s)
                } else {
                    Duration::ZERO
                }
            }),
            events_out: a.get("--events-out").map(str::to_owned),
        })
    }

    fn processor_options(&self) -> ProcessorOptions {
        let mut o = ProcessorOptions::default()
            .with_strategy(self.strategy)
            .with_stop(StopOptions {
                checkpoint: true,
                ..StopOptions::default()
            });
        if let Some(g) = &self.consumer_group {
            o = o.with_consumer_group(g.clone());
        }
        if let Some(id) = &self.owner_id {
            o = o.with_owner_id(id.clone());
        }
        if let Some(i) = self.update_interval {
            o = o.with_update_interval(i);
        }
        if let Some(e) = self.ownership_expiry {
            o = o.with_ownership_expiry(e);
        }
        o
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
            eprintln!("processor: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the events, prints partition news, counts, and says when to
/// stop.
struct Output {
    owner: String,
    file: Option<Mutex<BufWriter<File>>>,
    processed: AtomicU64,
    last_event: Mutex<Instant>,
    count: Option<u64>,
    stop: tokio::sync::Notify,
}

impl Handler for Output {
    fn on_events<'a>(
        &'a self,
        context: &'a PartitionContext,
        events: &'a [ReceivedEvent],
    ) -> HandlerFuture<'a, HandlerResult> {
        Box::pin(async move {
            if let Some(file) = &self.file {
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                for e in events {
                    let line = serde_json::json!({
                        "partition_id": context.partition_id(),
                        "sequence_number": e.system.sequence_number,
                        "offset": e.system.offset,
                        "owner_id": context.owner_id(),
                    });
                    writeln!(f, "{line}")?;
                }
                // On disk before the processor checkpoints the batch.
                f.flush()?;
            }
            *self.last_event.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            let n = self
                .processed
                .fetch_add(events.len() as u64, Ordering::SeqCst)
                + events.len() as u64;
            if self.count.is_some_and(|c| n >= c) {
                self.stop.notify_one();
            }
            Ok(())
        })
    }

    fn on_partition_initialized<'a>(
        &'a self,
        context: &'a PartitionContext,
        position: &'a EventPosition,
    ) -> HandlerFuture<'a, ()> {
        let from = match position {
            EventPosition::Offset { offset, .. } => format!("after offset {offset} (checkpoint)"),
            EventPosition::SequenceNumber {
                sequence_number, ..
            } => format!("after sequence number {sequence_number}"),
            EventPosition::Earliest => "from the earliest event (no checkpoint)".into(),
            EventPosition::Latest => "from the latest event (no checkpoint)".into(),
            other => format!("at {other}"),
        };
        println!(
            "{}: claimed partition {} (receiving {from})",
            self.owner,
            context.partition_id()
        );
        Box::pin(async {})
    }

    fn on_partition_closed<'a>(
        &'a self,
        context: &'a PartitionContext,
        reason: &'a CloseReason,
    ) -> HandlerFuture<'a, ()> {
        let what = match reason {
            CloseReason::OwnershipLost => "lost partition".to_owned(),
            CloseReason::Shutdown => "released partition".to_owned(),
            other => format!("closed partition ({other})"),
        };
        println!("{}: {what} {}", self.owner, context.partition_id());
        Box::pin(async {})
    }

    fn on_error<'a>(&'a self, error: &'a ProcessorError) -> HandlerFuture<'a, ()> {
        eprintln!("{}: {error}", self.owner);
        Box::pin(async {})
    }
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, emulator) = match std::env::var("EVENTHUB_CONNECTION_STRING") {
        Ok(cs) if !cs.trim().is_empty() => (cs, None),
        _ => {
            let e = Emulator::start(EmulatorConfig::default())
                .map_err(|e| format!("cannot start the embedded emulator: {e}"))?;
            eprintln!(
                "EVENTHUB_CONNECTION_STRING is not set: started an embedded emulator on {} (hub eh1)",
                e.addr()
            );
            (e.connection_string("eh1"), Some(e))
        }
    };
    let store: Arc<dyn CheckpointStore> = match &options.storage {
        Some((cs, container)) => {
            let store = BlobCheckpointStore::from_connection_string(TokioRuntime, cs, container)
                .map_err(|e| format!("--storage: {e}"))?;
            if store
                .blob_client()
                .create_container_if_missing(container)
                .await
                .map_err(|e| format!("container {container}: {e}"))?
            {
                eprintln!("created container {container}");
            }
            Arc::new(store)
        }
        None => Arc::new(MemoryCheckpointStore::new()),
    };
    let processor =
        Processor::from_connection_string(&connection_string, store, options.processor_options())?;
    let owner = processor.owner_id().to_owned();
    let file = match &options.events_out {
        Some(path) => Some(Mutex::new(BufWriter::new(
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--events-out {path}: {e}"))?,
        ))),
        None => None,
    };
    let output = Arc::new(Output {
        owner: owner.clone(),
        file,
        processed: AtomicU64::new(0),
        last_event: Mutex::new(Instant::now()),
        count: options.count,
        stop: tokio::sync::Notify::new(),
    });
    processor.register_handler(output.clone());
    println!(
        "{owner}: processing hub {} (consumer group {}, {}, store: {})",
        processor.hub().name(),
        processor.consumer_group(),
        options.strategy,
        match &options.storage {
            Some((_, c)) => format!("container {c}"),
            None => "in memory".into(),
        }
    );
    if emulator.is_some() {
        let hub = Hub::from_connection_string(&connection_string, HubOptions::default())?;
        common::send_samples(&hub, SAMPLES).await?;
        hub.close().await?;
    }
    let idle = match options.idle {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if emulator.is_some() => Some(EMBEDDED_IDLE),
        None => None,
    };
    let watch = output.clone();
    let why = Arc::new(Mutex::new("interrupted"));
    let why2 = why.clone();
    let stop = async move {
        let idle_check = async {
            let Some(idle) = idle else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let last = *watch.last_event.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= idle {
                    return;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = watch.stop.notified() => *why2.lock().unwrap() = "count reached",
            _ = idle_check => *why2.lock().unwrap() = "idle",
        }
    };
    processor.run_until(stop).await?;
    let why = *why.lock().unwrap_or_else(|p| p.into_inner());
    let stats = processor.stats();
    println!(
        "{owner}: processed {} events ({why}); {} cycles, {} storage requests",
        output.processed.load(Ordering::SeqCst),
        stats.cycles,
        stats.storage_requests()
    );
    drop(emulator);
    Ok(())
}
