//! Prints the hub's runtime information and every partition's.
//!
//! ```text
//! cargo run -p eventhubs-tokio --example info
//! ```
//!
//! Uses `EVENTHUB_CONNECTION_STRING` (with `EntityPath`) when set;
//! otherwise starts an embedded emulator and sends it a few events first.

mod common;

use std::process::ExitCode;

use clap::Parser;
use eventhubs_tokio::HubOptions;

/// Prints an event hub's runtime information and every partition's.
#[derive(Debug, Parser)]
#[command(
    name = "info",
    after_help = "The hub is EVENTHUB_CONNECTION_STRING's (with EntityPath); when that is not\n\
                  set, an embedded emulator is started, its hub eh1 is used, and a few sample\n\
                  events are sent to it first."
)]
struct Options {}

/// Sample events sent to the embedded emulator.
const SAMPLES: usize = 5;

#[tokio::main]
async fn main() -> ExitCode {
    let Options {} = Options::parse();
    common::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("info: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let target = common::connect(HubOptions::default())?;
    let result = print_info(&target).await;
    // Closed on errors too, before the embedded emulator stops.
    target.hub.close().await?;
    result
}

async fn print_info(target: &common::Target) -> Result<(), Box<dyn std::error::Error>> {
    let hub = &target.hub;
    if target.is_embedded() {
        common::send_samples(hub, SAMPLES).await?;
    }
    let info = hub.runtime_information().await?;
    println!("hub {}", info.path);
    println!(
        "  created at              {}",
        common::format_time(info.created_at)
    );
    println!(
        "  partitions              {} ({})",
        info.partition_count,
        info.partition_ids.join(", ")
    );
    println!("  geo-replication factor  {}", info.georeplication_factor);
    for id in &info.partition_ids {
        let p = hub.partition_information(id).await?;
        println!("partition {}", p.partition_id);
        println!("  empty                   {}", p.is_empty);
        println!("  begin sequence number   {}", p.begin_sequence_number);
        println!("  last sequence number    {}", p.last_sequence_number);
        println!("  last enqueued offset    {}", p.last_enqueued_offset);
        println!(
            "  last enqueued at        {}",
            common::format_time(p.last_enqueued_time_utc)
        );
    }
    Ok(())
}
