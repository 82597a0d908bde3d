//! Send and receive under smol: the async-std adapter only needs
//! futures-io, so `smol::block_on` drives it.
//!
//! Uses `EVENTHUB_CONNECTION_STRING` when set; otherwise starts an
//! embedded emulator.

use std::time::Duration;

use eventhubs_async_std::{EventData, EventPosition, Hub, HubOptions, ReceiveOptions, SendOptions};
use eventhubs_emulator::{Emulator, EmulatorConfig};
use futures_util::StreamExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_emulator, cs) = match std::env::var("EVENTHUB_CONNECTION_STRING") {
        Ok(cs) => (None, cs),
        Err(_) => {
            let e = Emulator::start(EmulatorConfig::default())?;
            let cs = e.connection_string("eh1");
            (Some(e), cs)
        }
    };
    smol::block_on(async {
        let hub = Hub::from_connection_string(&cs, HubOptions::default())?;
        let info = hub.runtime_information().await?;
        let p = hub.partition_information(&info.partition_ids[0]).await?;
        let mut events = hub
            .receiver(
                &info.partition_ids[0],
                ReceiveOptions::new().with_start_position(EventPosition::sequence_number(
                    p.last_sequence_number,
                    false,
                )),
            )
            .await?;
        let to_first = SendOptions::new().with_partition_id(info.partition_ids[0].clone());
        hub.send_with(EventData::new("hello from smol"), to_first)
            .await?;
        let timeout = async {
            smol::Timer::after(Duration::from_secs(30)).await;
            None
        };
        let next = async { Some(events.next().await) };
        match futures_util::future::select(Box::pin(next), Box::pin(timeout))
            .await
            .factor_first()
            .0
        {
            Some(Some(Ok(event))) => println!(
                "received under smol: {}",
                String::from_utf8_lossy(event.body())
            ),
            other => return Err(format!("no event: {other:?}").into()),
        }
        events.close().await?;
        hub.close().await?;
        Ok(())
    })
}
