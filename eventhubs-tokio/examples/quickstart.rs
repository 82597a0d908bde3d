//! The quick start (the Go library's hello world): send an event, then
//! receive from every partition until it comes back.
//!
//! Uses `EVENTHUB_CONNECTION_STRING` (with `EntityPath`) when set;
//! otherwise starts an embedded emulator, so that
//! `cargo run -p eventhubs-tokio --example quickstart` works on a fresh
//! machine.

use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_tokio::{EventData, EventPosition, Hub, HubOptions, ReceiveOptions};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let (_emulator, connection_string) = match std::env::var("EVENTHUB_CONNECTION_STRING") {
        Ok(cs) => (None, cs),
        Err(_) => {
            let emulator = Emulator::start(EmulatorConfig::default())?;
            println!(
                "EVENTHUB_CONNECTION_STRING is not set: started an embedded emulator on {}",
                emulator.addr()
            );
            let cs = emulator.connection_string("eh1");
            (Some(emulator), cs)
        }
    };
    let hub = Hub::from_connection_string(&connection_string, HubOptions::default())?;
    let info = hub.runtime_information().await?;
    println!("hub {} has partitions {:?}", info.path, info.partition_ids);

    // Listen on every partition from its current end.
    let mut streams = Vec::new();
    for id in &info.partition_ids {
        let p = hub.partition_information(id).await?;
        let options = ReceiveOptions::new().with_start_position(EventPosition::sequence_number(
            p.last_sequence_number,
            false,
        ));
        streams.push(hub.receiver(id, options).await?);
    }

    let text = format!("hello, world! ({})", std::process::id());
    hub.send(EventData::new(text.clone()).with_property("example", "quickstart"))
        .await?;
    println!("sent: {text}");

    let mut all = futures_util::stream::select_all(streams);
    let received = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = all.next().await {
            let event = event?;
            if event.body() == text.as_bytes() {
                return Ok::<_, eventhubs_tokio::Error>(event);
            }
        }
        Err(eventhubs_tokio::Error::Closed)
    })
    .await??;
    println!(
        "received: {} (partition {}, sequence number {}, offset {})",
        String::from_utf8_lossy(received.body()),
        received.partition_id(),
        received.sequence_number(),
        received.offset()
    );
    drop(all);
    hub.close().await?;
    Ok(())
}
