//! Event processor scenarios over real sockets, written once, generic over
//! the runtime: processors on the embedded emulator with the in-memory
//! store and with the blob store on Azurite, and (tokio) interop with the
//! official Python processor. Each adapter's `tests/processor.rs`
//! includes this file and instantiates the scenarios with
//! [`processor_tests!`].
//!
//! The storage scenarios' Azurite helper (`tests/storage/mod.rs`) is
//! included beside it; without Azurite or the Python packages a test
//! prints SKIPPED, and fails under `EVENTHUBS_INTEROP=require`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventhubs_async::checkpoint_store::{
    BlobCheckpointStore, CheckpointStore, MemoryCheckpointStore,
};
use eventhubs_async::processor::{
    CloseReason, HandlerFuture, HandlerResult, PartitionContext, ProcessorError, StopOptions,
};
use eventhubs_async::{
    EventData, EventPosition, Handler, Hub, HubOptions, Processor, ProcessorOptions, ReceivedEvent,
    Runtime, Value,
};
use eventhubs_emulator::config::HubConfig;
use eventhubs_emulator::{Emulator, EmulatorConfig};

use crate::storage::Azurite;

/// Runs `f`, failing if it takes longer than `secs`.
pub async fn within<R: Runtime, T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    let sleep = R::default().sleep(Duration::from_secs(secs));
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => t,
        futures_util::future::Either::Right(_) => panic!("{what}: no result within {secs} s"),
    }
}

async fn sleep<R: Runtime>(d: Duration) {
    R::default().sleep(d).await
}

/// Waits until `check` holds, polling every 100 ms, at most `secs`.
async fn until<R: Runtime>(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    within::<R, _>(secs, what, async {
        while !check() {
            sleep::<R>(Duration::from_millis(100)).await;
        }
    })
    .await
}

pub const HUB8: &str = "eh8";

/// An emulator with hub `eh8` of 8 partitions beside the default `eh1`.
pub fn emulator() -> Emulator {
    let mut config = EmulatorConfig::default();
    config.hubs.push(HubConfig {
        name: HUB8.into(),
        partition_count: 8,
        consumer_groups: vec!["$Default".into()],
    });
    Emulator::start(config).expect("emulator")
}

/// What the handlers saw, shared by every processor of a test.
#[derive(Default)]
pub struct Seen {
    /// (owner, partition, sequence number, id).
    pub events: Vec<(String, String, i64, i64)>,
    /// (owner, partition, "init"/"closed: reason").
    pub news: Vec<(String, String, String)>,
    pub errors: Vec<String>,
}

/// A handler recording into a shared [`Seen`].
pub struct Recorder(pub Arc<Mutex<Seen>>);

impl Handler for Recorder {
    fn on_events<'a>(
        &'a self,
        context: &'a PartitionContext,
        events: &'a [ReceivedEvent],
    ) -> HandlerFuture<'a, HandlerResult> {
        let mut s = self.0.lock().unwrap();
        for e in events {
            let id = e.get("id").and_then(Value::as_i64).unwrap_or(-1);
            s.events.push((
                context.owner_id().to_owned(),
                context.partition_id().to_owned(),
                e.sequence_number(),
                id,
            ));
        }
        Box::pin(async { Ok(()) })
    }

    fn on_partition_initialized<'a>(
        &'a self,
        context: &'a PartitionContext,
        position: &'a EventPosition,
    ) -> HandlerFuture<'a, ()> {
        self.0.lock().unwrap().news.push((
            context.owner_id().to_owned(),
            context.partition_id().to_owned(),
            format!("init {position}"),
        ));
        Box::pin(async {})
    }

    fn on_partition_closed<'a>(
        &'a self,
        context: &'a PartitionContext,
        reason: &'a CloseReason,
    ) -> HandlerFuture<'a, ()> {
        self.0.lock().unwrap().news.push((
            context.owner_id().to_owned(),
            context.partition_id().to_owned(),
            format!("closed: {reason}"),
        ));
        Box::pin(async {})
    }

    fn on_error<'a>(&'a self, error: &'a ProcessorError) -> HandlerFuture<'a, ()> {
        self.0.lock().unwrap().errors.push(error.to_string());
        Box::pin(async {})
    }
}

fn fast(owner: &str) -> ProcessorOptions {
    ProcessorOptions::default()
        .with_owner_id(owner)
        .with_update_interval(Duration::from_millis(500))
        .with_ownership_expiry(Duration::from_secs(3))
        .with_batches(20, Duration::from_millis(50))
}

/// Sends events `ids` round-robin over the partitions.
async fn send<R: Runtime>(hub: &Hub<R>, ids: std::ops::Range<i64>) {
    let events: Vec<EventData> = ids
        .map(|i| EventData::new(format!("event {i}")).with_property("id", Value::Long(i)))
        .collect();
    for chunk in events.chunks(1) {
        hub.send(chunk[0].clone()).await.expect("send");
    }
}

fn ids_seen(seen: &Arc<Mutex<Seen>>) -> BTreeSet<i64> {
    seen.lock().unwrap().events.iter().map(|e| e.3).collect()
}

fn owned_counts<R: Runtime>(ps: &[&Processor<R>]) -> Vec<usize> {
    ps.iter()
        .map(|p| p.partitions_being_processed().len())
        .collect()
}

/// Two processors share a hub of 8 partitions through `store`: the first
/// takes all, the second its half, a graceful stop hands everything back
/// within a cycle or two, and every event is processed.
async fn share_a_hub<R: Runtime>(store: Arc<dyn CheckpointStore>, e: &Emulator) {
    let cs = e.connection_string(HUB8);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sender = Hub::<R>::from_connection_string(&cs, HubOptions::default()).expect("hub");
    send(&sender, 0..40).await;

    let a = Processor::<R>::from_connection_string(&cs, store.clone(), fast("proc-a")).expect("a");
    a.register_handler(Recorder(seen.clone()));
    a.start().expect("start a");
    until::<R>(30, "a owns all 8", || {
        a.partitions_being_processed().len() == 8
    })
    .await;
    until::<R>(30, "the first 40 events", || ids_seen(&seen).len() == 40).await;

    let b = Processor::<R>::from_connection_string(&cs, store.clone(), fast("proc-b")).expect("b");
    b.register_handler(Recorder(seen.clone()));
    b.start().expect("start b");
    until::<R>(60, "a and b at 4 each", || {
        owned_counts(&[&a, &b]) == [4, 4]
    })
    .await;
    send(&sender, 40..80).await;
    until::<R>(30, "80 events", || ids_seen(&seen).len() == 80).await;
    // Nothing moves while membership is stable.
    let before = seen.lock().unwrap().news.len();
    sleep::<R>(Duration::from_secs(3)).await;
    assert_eq!(owned_counts(&[&a, &b]), [4, 4]);
    assert_eq!(seen.lock().unwrap().news.len(), before, "ownership moved");

    // a stops gracefully: b takes its partitions within a couple of cycles.
    let stopped = std::time::Instant::now();
    within::<R, _>(
        30,
        "a stops",
        a.stop(StopOptions {
            checkpoint: true,
            ..StopOptions::default()
        }),
    )
    .await
    .expect("stop");
    until::<R>(10, "b owns all 8", || {
        b.partitions_being_processed().len() == 8
    })
    .await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(5),
        "handover took {handover:?}"
    );
    send(&sender, 80..120).await;
    until::<R>(30, "120 events", || ids_seen(&seen).len() == 120).await;
    {
        let s = seen.lock().unwrap();
        // Who processed what: every event by a, by b, or (after the
        // handover) both; a's events only on partitions it owned.
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let a_closed: Vec<_> = s
            .news
            .iter()
            .filter(|n| n.0 == "proc-a" && n.2.starts_with("closed"))
            .collect();
        assert!(!a_closed.is_empty());
        // b's sessions started after a checkpoint (not the start) for the
        // partitions a had processed.
        let b_inits: Vec<_> = s
            .news
            .iter()
            .filter(|n| n.0 == "proc-b" && n.2.starts_with("init"))
            .collect();
        assert!(
            b_inits.iter().any(|n| n.2.contains("x-opt-offset >")),
            "{b_inits:?}"
        );
    }
    // Checkpoints: every partition at its last event.
    b.close().await.expect("close b");
    let ns = eventhubs_async::checkpoint_store::namespace_of_endpoint(&format!(
        "sb://127.0.0.1:{}",
        e.addr().port()
    ));
    let cps = store
        .list_checkpoints(&ns, HUB8, "$Default")
        .await
        .expect("checkpoints");
    assert_eq!(cps.len(), 8, "{cps:?}");
    let last: BTreeMap<String, i64> = {
        let s = seen.lock().unwrap();
        let mut m = BTreeMap::new();
        for (_, p, seq, _) in &s.events {
            let v = m.entry(p.clone()).or_insert(*seq);
            *v = (*v).max(*seq);
        }
        m
    };
    for c in &cps {
        assert_eq!(
            c.sequence_number,
            last.get(&c.partition_id).copied(),
            "{c:?}"
        );
    }
    // Both relinquished.
    let owners = store
        .list_ownership(&ns, HUB8, "$Default")
        .await
        .expect("owners");
    assert_eq!(owners.len(), 8);
    assert!(owners.iter().all(|o| o.owner_id.is_empty()), "{owners:?}");
    sender.close().await.expect("close");
}

/// Two processors on the in-memory store.
pub async fn processors_share_a_hub_on_the_memory_store<R: Runtime>() {
    let e = emulator();
    share_a_hub::<R>(Arc::new(MemoryCheckpointStore::new()), &e).await;
}

/// Two processors on the blob store (Azurite).
pub async fn processors_share_a_hub_on_the_blob_store<R: Runtime>() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let blob = azurite.client::<R>();
    blob.create_container("processor").await.expect("container");
    let e = emulator();
    share_a_hub::<R>(Arc::new(BlobCheckpointStore::new(blob, "processor")), &e).await;
}

/// The Go host's handler items: start refuses without a handler;
/// handlers register and unregister; unregistering the last one closes
/// the processor; a failed batch is reported and not checkpointed.
pub async fn handlers_register_and_unregister<R: Runtime>() {
    let e = emulator();
    let cs = e.connection_string("eh1");
    let store = Arc::new(MemoryCheckpointStore::new());
    let p = Processor::<R>::from_connection_string(&cs, store.clone(), fast("solo")).expect("p");
    assert_eq!(p.owner_id(), "solo");
    let err = p.start().unwrap_err();
    assert!(err.to_string().contains("no handler"), "{err}");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let h1 = p.register_handler(Recorder(seen.clone()));
    let failures = Arc::new(Mutex::new(0));
    let f2 = failures.clone();
    let h2 = p.register_handler(eventhubs_async::handler_fn(
        move |_ctx: PartitionContext, events: Vec<ReceivedEvent>| {
            let f2 = f2.clone();
            async move {
                if events.iter().any(|e| e.get("id") == Some(&Value::Long(3))) {
                    *f2.lock().unwrap() += 1;
                    return Err("event 3 is poison");
                }
                Ok(())
            }
        },
    ));
    assert_eq!(p.registered_handler_ids(), [h1, h2]);
    assert_eq!(p.partition_ids().await.expect("ids"), ["0", "1"]);
    p.start().expect("start");
    assert!(p.start().is_err(), "started twice");
    let sender = Hub::<R>::from_connection_string(&cs, HubOptions::default()).expect("hub");
    send(&sender, 0..6).await;
    until::<R>(30, "6 events", || ids_seen(&seen).len() == 6).await;
    until::<R>(10, "the failure reported", || {
        seen.lock()
            .unwrap()
            .errors
            .iter()
            .any(|e| e.contains("poison"))
    })
    .await;
    assert_eq!(*failures.lock().unwrap(), 1);
    p.unregister_handler(h2).await.expect("unregister");
    assert_eq!(p.registered_handler_ids(), [h1]);
    assert_eq!(p.partitions_being_processed().len(), 2);
    // The last one: the processor closes (as the Go host does).
    within::<R, _>(30, "close by unregistering", p.unregister_handler(h1))
        .await
        .expect("unregister");
    assert!(p.partitions_being_processed().is_empty());
    // A context's checkpoint of a partition no longer owned is refused.
    sender.close().await.expect("close");
}

/// Instantiates every scenario as a `#[test]` for runtime `$rt`, run by
/// `$block_on`.
#[macro_export]
macro_rules! processor_tests {
    ($rt:ty, $block_on:expr) => {
        processor_tests!(@each $rt, $block_on;
            processors_share_a_hub_on_the_memory_store,
            processors_share_a_hub_on_the_blob_store,
            handlers_register_and_unregister);
    };
    (@each $rt:ty, $block_on:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let block_on = $block_on;
                block_on(processor::within::<$rt, _>(240, stringify!($name), processor::$name::<$rt>()));
            }
        )*
    };
}
