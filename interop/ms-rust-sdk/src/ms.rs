//! The benchmark's workloads on Microsoft's Rust SDK
//! (`azure_messaging_eventhubs` 0.16), written as a user of that SDK would.

use std::time::{Duration, Instant};

use azure_messaging_eventhubs::{
    ConsumerClient, EventDataBatchOptions, OpenReceiverOptions, ProducerClient, SendEventOptions,
    StartLocation, StartPosition,
};
use futures::StreamExt;

use crate::bench::{
    index_of, resident_bytes, secs_since, Report, WorkerOptions, HUB, OP_TIMEOUT, PREFETCH,
    RECEIVE_PARTITION, SEND_PARTITION, SINGLE_PARTITION, WIDE_HUB, WIDE_PARTITIONS,
};
use crate::ours::{single_report, wait_for};
use crate::{BoxError, CONNECTION_STRING};

async fn producer(o: &WorkerOptions, hub: &str) -> Result<ProducerClient, BoxError> {
    Ok(ProducerClient::builder()
        .with_custom_endpoint(format!("amqp://{}", o.endpoint))
        .open_with_connection_string(CONNECTION_STRING, Some(hub))
        .await?)
}

async fn consumer(o: &WorkerOptions, hub: &str) -> Result<ConsumerClient, BoxError> {
    Ok(ConsumerClient::builder()
        .with_custom_endpoint(format!("amqp://{}", o.endpoint))
        .open_with_connection_string(CONNECTION_STRING, Some(hub))
        .await?)
}

fn receiver_options(location: StartLocation) -> OpenReceiverOptions {
    OpenReceiverOptions {
        prefetch: Some(PREFETCH),
        start_position: Some(StartPosition {
            location,
            inclusive: true,
        }),
        ..Default::default()
    }
}

pub async fn run(o: &WorkerOptions) -> Result<Report, BoxError> {
    match o.workload.as_str() {
        "send" => send(o, Some(SEND_PARTITION)).await,
        "send-rr" => send(o, None).await,
        "receive" => receive(o).await,
        "single" => single(o).await,
        "memory" => memory(o).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// `--events` in batches of `batch_size` (`create_batch`, `try_add_event_data`,
/// `send_batch`), one batch after the other. A batch not acknowledged
/// within the stall timeout is a stall (the SDK lost its outcome; its
/// events were appended): it is counted and the producer replaced.
async fn send(o: &WorkerOptions, partition: Option<&str>) -> Result<Report, BoxError> {
    let mut producer = producer(o, HUB)
        .await
        .map_err(|e| format!("open producer: {e}"))?;
    let body = o.body(0);
    let start = Instant::now();
    let mut sent = 0;
    let mut stalls = 0u64;
    while sent < o.events {
        let n = (o.batch_size as u64).min(o.events - sent);
        let batch = producer
            .create_batch(Some(EventDataBatchOptions {
                partition_id: partition.map(str::to_owned),
                ..Default::default()
            }))
            .await
            .map_err(|e| format!("create_batch at event {sent}: {e}"))?;
        for _ in 0..n {
            if !batch.try_add_event_data(body.clone(), None)? {
                return Err(format!("batch full after {} events", batch.len()).into());
            }
        }
        match tokio::time::timeout(o.stall_timeout, producer.send_batch(batch, None)).await {
            Ok(r) => r.map_err(|e| format!("send_batch at event {sent}: {e}"))?,
            Err(_) => {
                stalls += 1;
                producer = self::producer(o, HUB).await?;
            }
        }
        sent += n;
    }
    let secs = secs_since(start);
    close(producer.close(), "close producer").await?;
    let mut r = Report::default();
    r.set("events_per_s", o.events as f64 / secs);
    r.set("stalls", stalls as f64);
    Ok(r)
}

/// Awaits a close, which a stall may keep from finishing.
async fn close<E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<(), E>>,
    what: &str,
) -> Result<(), BoxError> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}").into()),
        Err(_) => Err(format!("{what}: not done within {OP_TIMEOUT:?}").into()),
    }
}

/// `--events` from the receive partition, from the earliest, prefetch 300.
async fn receive(o: &WorkerOptions) -> Result<Report, BoxError> {
    let consumer = consumer(o, HUB)
        .await
        .map_err(|e| format!("open consumer: {e}"))?;
    let start = Instant::now();
    let receiver = consumer
        .open_receiver_on_partition(
            RECEIVE_PARTITION.into(),
            Some(receiver_options(StartLocation::Earliest)),
        )
        .await?;
    let mut received = 0u64;
    {
        let mut stream = receiver.stream_events();
        while received < o.events {
            match stream.next().await {
                Some(event) => {
                    let event = event?;
                    if event.event_data().body().map(<[u8]>::len) != Some(o.event_size) {
                        return Err(format!("event {received} has an unexpected body").into());
                    }
                    received += 1;
                }
                None => return Err(format!("stream ended after {received} events").into()),
            }
        }
    }
    let secs = secs_since(start);
    close(receiver.close(), "close receiver").await?;
    close(consumer.close(), "close consumer").await?;
    let mut r = Report::default();
    r.set("events_per_s", o.events as f64 / secs);
    Ok(r)
}

/// One event at a time (`send_event`), each awaited, with a receiver in
/// this process. A send not done within the stall timeout is a stall: the
/// SDK never completes it, so the producer is replaced.
async fn single(o: &WorkerOptions) -> Result<Report, BoxError> {
    let consumer = consumer(o, HUB).await?;
    let receiver = consumer
        .open_receiver_on_partition(
            SINGLE_PARTITION.into(),
            Some(receiver_options(StartLocation::Latest)),
        )
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The reader's end, when it ends before the run does, is the reason
    // the run failed: it is reported rather than lost.
    let reader = tokio::spawn(async move {
        let mut stream = receiver.stream_events();
        loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    if let Some(i) = event.event_data().body().and_then(index_of) {
                        if tx.send((i, Instant::now())).is_err() {
                            return Ok(());
                        }
                    }
                }
                Some(Err(e)) => return Err(format!("the receiver failed: {e}")),
                None => return Err("the receiver's stream ended".to_string()),
            }
        }
    });
    let mut producer = producer(o, HUB).await?;
    let options = || {
        Some(SendEventOptions {
            partition_id: Some(SINGLE_PARTITION.into()),
        })
    };
    // The receiver attaches when first polled: send until it sees one.
    let warm = u64::MAX;
    let mut attached = false;
    for _ in 0..20 {
        let send = producer.send_event(o.body(warm), options());
        if tokio::time::timeout(o.stall_timeout, send).await.is_err() {
            producer = self::producer(o, HUB).await?;
        }
        if wait_for(&mut rx, warm).await.is_some() {
            attached = true;
            break;
        }
    }
    if !attached {
        if reader.is_finished() {
            if let Ok(Err(e)) = reader.await {
                return Err(format!("the receiver never received: {e}").into());
            }
        }
        return Err("the receiver never received".into());
    }
    let mut rtt = Vec::new();
    let mut e2e = Vec::new();
    let mut stalls = 0u64;
    let start = Instant::now();
    for i in 0..o.events {
        let sent_at = Instant::now();
        match tokio::time::timeout(o.stall_timeout, producer.send_event(o.body(i), options())).await
        {
            Ok(r) => {
                r?;
                rtt.push(sent_at.elapsed());
            }
            Err(_) => {
                stalls += 1;
                producer = self::producer(o, HUB).await?;
            }
        }
        if let Some(at) = wait_for(&mut rx, i).await {
            e2e.push(at - sent_at);
        }
    }
    let secs = secs_since(start);
    reader.abort();
    // A producer left by a stall is not closed: its close may wait too.
    let _ = tokio::time::timeout(OP_TIMEOUT, producer.close()).await;
    let _ = tokio::time::timeout(OP_TIMEOUT, consumer.close()).await;
    Ok(single_report(o.events, secs, rtt, e2e, stalls))
}

/// 32 receivers with prefetch 300, left unread; resident memory before
/// and after them.
async fn memory(o: &WorkerOptions) -> Result<Report, BoxError> {
    let consumer = consumer(o, WIDE_HUB).await?;
    consumer.get_eventhub_properties().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = resident_bytes();
    let location = || {
        if o.position == "latest" {
            StartLocation::Latest
        } else {
            StartLocation::Earliest
        }
    };
    let mut receivers = Vec::new();
    for p in 0..WIDE_PARTITIONS {
        receivers.push(
            consumer
                .open_receiver_on_partition(p.to_string(), Some(receiver_options(location())))
                .await?,
        );
    }
    let mut streams: Vec<_> = receivers
        .iter()
        .map(|r| Box::pin(r.stream_events()))
        .collect();
    for s in &mut streams {
        if o.position == "latest" {
            // Polled once, so that it attaches; nothing arrives.
            let _ = tokio::time::timeout(Duration::from_millis(200), s.next()).await;
        } else {
            s.next().await.ok_or("stream ended")??;
        }
    }
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
    for r in receivers {
        let _ = tokio::time::timeout(OP_TIMEOUT, r.close()).await;
    }
    let _ = tokio::time::timeout(OP_TIMEOUT, consumer.close()).await;
    Ok(r)
}
