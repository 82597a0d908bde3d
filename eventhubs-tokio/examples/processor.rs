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

use clap::Parser;
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_tokio::processor::{
    CloseReason, HandlerFuture, HandlerResult, LoadBalancingStrategy, PartitionContext,
    ProcessorError, StopOptions,
};
use eventhubs_tokio::{
    BlobCheckpointStore, CheckpointStore, EventPosition, Handler, Hub, HubOptions,
    MemoryCheckpointStore, Processor, ProcessorOptions, ReceivedEvent, TokioRuntime,
};

/// Processes a hub's events together with every other processor of the
/// consumer group: the partitions are shared through the checkpoint store,
/// ownership moves when processors come and go, and each partition resumes
/// after its last checkpoint.
#[derive(Debug, Parser)]
#[command(
    name = "processor",
    after_help = "A stop (--count, --idle or Ctrl-C) is graceful: batches in progress finish,\n\
                  every partition is checkpointed and its ownership relinquished, so other\n\
                  processors take it over in their next cycle.\n\n\
                  The hub is EVENTHUB_CONNECTION_STRING's (with EntityPath); when that is not\n\
                  set, an embedded emulator is started and a few sample events are sent."
)]
struct Options {
    /// Blob Storage account for ownership and checkpoints (with
    /// --container; default: in memory, this process only)
    #[arg(long, value_name = "CONNECTION_STRING", requires = "container")]
    storage: Option<String>,
    /// The container (created if missing)
    #[arg(long, value_name = "NAME", requires = "storage", value_parser = common::non_empty)]
    container: Option<String>,
    /// The consumer group (default $Default)
    #[arg(long, value_name = "G")]
    consumer_group: Option<String>,
    /// balanced (one new partition per cycle, the default) or greedy (the
    /// fair share at once)
    #[arg(long, value_name = "S", default_value = "balanced", value_parser = parse_strategy)]
    strategy: LoadBalancingStrategy,
    /// This processor's id (default: a random UUID)
    #[arg(long, value_name = "ID", value_parser = common::non_empty)]
    owner_id: Option<String>,
    /// Time between load-balancing cycles (10)
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = seconds)]
    update_interval: Option<Duration>,
    /// An ownership not renewed this long may be claimed by others (60; at
    /// least 3 intervals)
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = seconds)]
    ownership_expiry: Option<Duration>,
    /// Stop after processing N events
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after SECS without an event (default: 3 on the embedded
    /// emulator, else never; 0 never)
    #[arg(long, value_name = "SECS")]
    idle: Option<f64>,
    /// Write one JSON line per processed event: partition_id,
    /// sequence_number, offset, owner_id
    #[arg(long, value_name = "FILE")]
    events_out: Option<String>,
}

/// Sample events sent to the embedded emulator.
const SAMPLES: usize = 10;
/// Idle time after which a processor on the embedded emulator stops.
const EMBEDDED_IDLE: Duration = Duration::from_secs(3);

fn seconds(v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err("expected a positive number of seconds".into()),
    }
}

fn parse_strategy(v: &str) -> Result<LoadBalancingStrategy, String> {
    v.parse::<LoadBalancingStrategy>()
        .map_err(|e| e.to_string())
}

impl Options {
    fn storage(&self) -> Option<(&str, &str)> {
        self.storage.as_deref().zip(self.container.as_deref())
    }

    fn idle(&self) -> Option<Duration> {
        self.idle.map(|s| {
            if s > 0.0 && s.is_finite() {
                Duration::from_secs_f64(s)
            } else {
                Duration::ZERO
            }
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
    let options = Options::parse();
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
                        "sequence_number": e.sequence_number(),
                        "offset": e.offset(),
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
    let store: Arc<dyn CheckpointStore> = match options.storage() {
        Some((cs, container)) => {
            let store =
                BlobCheckpointStore::from_connection_string(TokioRuntime::default(), cs, container)
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
        match options.storage() {
            Some((_, c)) => format!("container {c}"),
            None => "in memory".into(),
        }
    );
    if emulator.is_some() {
        let hub = Hub::from_connection_string(&connection_string, HubOptions::default())?;
        common::send_samples(&hub, SAMPLES).await?;
        hub.close().await?;
    }
    let idle = match options.idle() {
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
