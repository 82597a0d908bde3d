//! Publishing throughput of the buffered producer beside plain batched
//! sends, in the same run, over loopback TCP against an in-process
//! emulator whose hub has 32 partitions.
//!
//! Events are 1 KiB with partition keys (`device-0` .. `device-255`), so
//! they spread over the 32 partitions. Per iteration, 3,200 events:
//!
//! - `plain_send_batch_by_key`: `Hub::send_batch` of 100 events at a time
//!   (32 calls one after the other), the service routing each key (the
//!   client groups a call's events by key into transfers).
//! - `buffered_enqueue_flush`: `BufferedProducer::enqueue` of each event,
//!   then `flush`: keys hashed on the client, batches per partition, 32
//!   partitions in flight at once.
//! - `buffered_idempotent_enqueue_flush`: the same on a hub with
//!   idempotent publishing (one batch in flight per partition, numbered).
//!
//! After criterion's report a summary prints every workload's events/s
//! (all timed iterations together) and the ratio to plain sends.
//!
//! ```text
//! cargo bench -p eventhubs-tokio --bench buffered -- --warm-up-time 1 --measurement-time 5
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use eventhubs_emulator::config::HubConfig;
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_tokio::{BufferedProducer, BufferedProducerOptions, EventData, Hub, HubOptions};

const EVENT_SIZE: usize = 1024;
const PARTITIONS: u32 = 32;
const KEYS: usize = 256;
const CALL: usize = 100;
const EVENTS_PER_ITER: usize = 3200;

static PLAIN: Mutex<(u64, Duration)> = Mutex::new((0, Duration::ZERO));
static BUFFERED: Mutex<(u64, Duration)> = Mutex::new((0, Duration::ZERO));
static IDEMPOTENT: Mutex<(u64, Duration)> = Mutex::new((0, Duration::ZERO));

fn record(total: &Mutex<(u64, Duration)>, events: u64, took: Duration) {
    let mut t = total.lock().unwrap();
    t.0 += events;
    t.1 += took;
}

fn events() -> Vec<EventData> {
    let body = bytes::Bytes::from(vec![b'x'; EVENT_SIZE]);
    (0..EVENTS_PER_ITER)
        .map(|i| EventData::new(body.clone()).with_partition_key(format!("device-{}", i % KEYS)))
        .collect()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = EmulatorConfig {
        hubs: vec![HubConfig {
            name: "eh1".into(),
            partition_count: PARTITIONS,
            consumer_groups: vec!["$Default".into()],
        }],
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(config).expect("emulator");
    let cs = emulator.connection_string("eh1");
    let (hub, idem_hub) = {
        let _guard = rt.enter();
        (
            Hub::from_connection_string(&cs, HubOptions::new()).expect("hub"),
            Hub::from_connection_string(&cs, HubOptions::new().with_idempotent_publishing())
                .expect("hub"),
        )
    };
    let all = events();
    let options = || {
        BufferedProducerOptions::new()
            .with_max_wait(Duration::from_millis(20))
            .with_max_buffered_events_per_partition(1500)
    };
    let (producer, idem_producer): (BufferedProducer, BufferedProducer) = rt.block_on(async {
        (
            hub.buffered_producer(options()).await.expect("producer"),
            idem_hub
                .buffered_producer(options())
                .await
                .expect("idempotent producer"),
        )
    });
    let plain = |events: &[EventData]| {
        let hub = &hub;
        let calls: Vec<Vec<EventData>> = events.chunks(CALL).map(<[_]>::to_vec).collect();
        async move {
            for call in calls {
                hub.send_batch(call).await.expect("send_batch");
            }
        }
    };
    let buffered = |p: &BufferedProducer, events: &[EventData]| {
        let (p, events) = (p.clone(), events.to_vec());
        async move {
            for e in events {
                p.enqueue(e).await.expect("enqueue");
            }
            p.flush().await.expect("flush");
        }
    };
    // Connections and links up before anything is timed.
    rt.block_on(async {
        plain(&all).await;
        buffered(&producer, &all).await;
        buffered(&idem_producer, &all).await;
    });

    let mut group = criterion.benchmark_group("buffered_producer");
    group
        .throughput(Throughput::ElementsAndBytes {
            elements: EVENTS_PER_ITER as u64,
            bytes: (EVENTS_PER_ITER * EVENT_SIZE) as u64,
        })
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10);
    group.bench_function("plain_send_batch_by_key", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    plain(&all).await;
                }
                let took = start.elapsed();
                record(&PLAIN, iters * EVENTS_PER_ITER as u64, took);
                took
            })
        })
    });
    group.bench_function("buffered_enqueue_flush", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    buffered(&producer, &all).await;
                }
                let took = start.elapsed();
                record(&BUFFERED, iters * EVENTS_PER_ITER as u64, took);
                took
            })
        })
    });
    group.bench_function("buffered_idempotent_enqueue_flush", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    buffered(&idem_producer, &all).await;
                }
                let took = start.elapsed();
                record(&IDEMPOTENT, iters * EVENTS_PER_ITER as u64, took);
                took
            })
        })
    });
    group.finish();
    criterion.final_summary();

    rt.block_on(async {
        producer.close().await.expect("close");
        idem_producer.close().await.expect("close");
        hub.close().await.expect("close");
        idem_hub.close().await.expect("close");
    });
    let rate = |t: &Mutex<(u64, Duration)>| {
        let (events, took) = *t.lock().unwrap();
        (events > 0 && !took.is_zero()).then(|| events as f64 / took.as_secs_f64())
    };
    println!();
    println!(
        "summary: {EVENT_SIZE}-byte events with {KEYS} keys over {PARTITIONS} partitions, loopback, \
         {EVENTS_PER_ITER} events per iteration"
    );
    let base = rate(&PLAIN);
    for (name, r) in [
        ("plain send_batch (100 per call)", base),
        ("buffered producer", rate(&BUFFERED)),
        ("buffered producer, idempotent", rate(&IDEMPOTENT)),
    ] {
        match (r, base) {
            (Some(r), Some(b)) => println!("  {name:<32} {r:>9.0} events/s   {:.2}x plain", r / b),
            (Some(r), None) => println!("  {name:<32} {r:>9.0} events/s"),
            _ => println!("  {name:<32} not run"),
        }
    }
}
