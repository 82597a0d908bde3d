//! The benchmark's workloads on this project's client (`eventhubs-tokio`),
//! written as a user of its public API would.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_tokio::{EventData, EventPosition, Hub, HubOptions, ReceiveOptions, SendOptions};
use futures::StreamExt;

use crate::bench::{
    index_of, percentile_us, resident_bytes, secs_since, Report, WorkerOptions, HUB, OP_TIMEOUT,
    PREFETCH, RECEIVE_PARTITION, SEND_PARTITION, SINGLE_PARTITION, WIDE_HUB, WIDE_PARTITIONS,
};
use crate::BoxError;

fn hub(o: &WorkerOptions, hub: &str) -> Result<Hub, BoxError> {
    Ok(Hub::from_connection_string(
        &o.connection_string(hub),
        HubOptions::new(),
    )?)
}

/// Routing to `partition`, or round-robin by the service.
fn routing(partition: Option<&str>) -> SendOptions {
    match partition {
        Some(p) => SendOptions::new().with_partition_id(p),
        None => SendOptions::new(),
    }
}

pub async fn run(o: &WorkerOptions) -> Result<Report, BoxError> {
    match o.workload.as_str() {
        "send" => send(o, HUB, Some(SEND_PARTITION), o.events).await,
        "send-rr" => send(o, HUB, None, o.events).await,
        "seed-receive" => send(o, HUB, Some(RECEIVE_PARTITION), o.events).await,
        "seed-wide" => {
            for p in 0..WIDE_PARTITIONS {
                send(o, WIDE_HUB, Some(&p.to_string()), o.events).await?;
            }
            Ok(Report::default())
        }
        "receive" => receive(o).await,
        "single" => single(o).await,
        "memory" => memory(o).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// `events` in batches of `batch_size`, one batch after the other.
async fn send(
    o: &WorkerOptions,
    hub_name: &str,
    partition: Option<&str>,
    events: u64,
) -> Result<Report, BoxError> {
    let hub = hub(o, hub_name)?;
    let routing = routing(partition);
    let body = Bytes::from(o.body(0));
    let start = Instant::now();
    let mut sent = 0;
    while sent < events {
        let n = (o.batch_size as u64).min(events - sent);
        let batch: Vec<EventData> = (0..n).map(|_| EventData::new(body.clone())).collect();
        hub.send_batch_with(batch, routing.clone()).await?;
        sent += n;
    }
    let secs = secs_since(start);
    hub.close().await?;
    let mut r = Report::default();
    r.set("events_per_s", events as f64 / secs);
    Ok(r)
}

/// `events` from the receive partition, from the earliest, prefetch 300.
async fn receive(o: &WorkerOptions) -> Result<Report, BoxError> {
    let hub = hub(o, HUB)?;
    let start = Instant::now();
    let mut stream = hub
        .receiver(
            RECEIVE_PARTITION,
            ReceiveOptions::new()
                .with_start_position(EventPosition::Earliest)
                .with_prefetch(PREFETCH),
        )
        .await?;
    let mut received = 0u64;
    while received < o.events {
        match stream.next().await {
            Some(event) => {
                if event?.body().len() != o.event_size {
                    return Err(format!("event {received} has an unexpected body").into());
                }
                received += 1;
            }
            None => return Err(format!("stream ended after {received} events").into()),
        }
    }
    let secs = secs_since(start);
    drop(stream);
    hub.close().await?;
    let mut r = Report::default();
    r.set("events_per_s", o.events as f64 / secs);
    Ok(r)
}

/// One event at a time, each awaited, with a receiver in this process.
async fn single(o: &WorkerOptions) -> Result<Report, BoxError> {
    let hub = hub(o, HUB)?;
    let routing = routing(Some(SINGLE_PARTITION));
    let mut stream = hub
        .receiver(
            SINGLE_PARTITION,
            ReceiveOptions::new()
                .with_start_position(EventPosition::Latest)
                .with_prefetch(PREFETCH),
        )
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            if let Some(i) = index_of(event.body()) {
                if tx.send((i, Instant::now())).is_err() {
                    break;
                }
            }
        }
    });
    let mut rtt = Vec::new();
    let mut e2e = Vec::new();
    let mut stalls = 0u64;
    let start = Instant::now();
    for i in 0..o.events {
        let sent_at = Instant::now();
        match tokio::time::timeout(
            o.stall_timeout,
            hub.send_with(EventData::new(o.body(i)), routing.clone()),
        )
        .await
        {
            Ok(r) => {
                r?;
                rtt.push(sent_at.elapsed());
            }
            Err(_) => stalls += 1,
        }
        if let Some(at) = wait_for(&mut rx, i).await {
            e2e.push(at - sent_at);
        }
    }
    let secs = secs_since(start);
    reader.abort();
    hub.close().await?;
    Ok(single_report(o.events, secs, rtt, e2e, stalls))
}

/// Waits for event `i` on `rx` (up to [`OP_TIMEOUT`]), skipping others.
pub async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>,
    i: u64,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((j, at))) if j == i => return Some(at),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

pub fn single_report(
    events: u64,
    secs: f64,
    mut rtt: Vec<Duration>,
    mut e2e: Vec<Duration>,
    stalls: u64,
) -> Report {
    rtt.sort();
    e2e.sort();
    let mut r = Report::default();
    r.set("events_per_s", events as f64 / secs);
    r.set("rtt_p50_us", percentile_us(&rtt, 50.0));
    r.set("rtt_p99_us", percentile_us(&rtt, 99.0));
    r.set("e2e_p50_us", percentile_us(&e2e, 50.0));
    r.set("e2e_p99_us", percentile_us(&e2e, 99.0));
    r.set("stalls", stalls as f64);
    r.set("received", e2e.len() as f64);
    r
}

/// 32 receivers with prefetch 300, left unread; resident memory before
/// and after them.
async fn memory(o: &WorkerOptions) -> Result<Report, BoxError> {
    let hub = hub(o, WIDE_HUB)?;
    hub.runtime_information().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = resident_bytes();
    let mut streams = Vec::new();
    for p in 0..WIDE_PARTITIONS {
        let position = if o.position == "latest" {
            EventPosition::Latest
        } else {
            EventPosition::Earliest
        };
        let options = ReceiveOptions::new()
            .with_start_position(position)
            .with_prefetch(PREFETCH);
        let mut s = hub.receiver(&p.to_string(), options).await?;
        if o.position != "latest" {
            // Take one, so that the link is known to flow.
            s.next().await.ok_or("stream ended")??;
        }
        streams.push(s);
    }
    // Let the links fill their credit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let with_links = resident_bytes();
    let mut r = Report::default();
    r.set("events_per_s", f64::NAN);
    r.set("rss_before", before as f64);
    r.set("rss_links", with_links as f64);
    r.set(
        "per_link",
        (with_links as f64 - before as f64) / f64::from(WIDE_PARTITIONS),
    );
    drop(streams);
    hub.close().await?;
    Ok(r)
}
