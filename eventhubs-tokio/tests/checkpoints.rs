//! Checkpoint writes never block the executor: on a current-thread tokio
//! runtime (one thread for every task), a persister whose writes block
//! for 300 ms each, as file I/O does, leaves the receive loop and other
//! tasks running, because its blocking work goes through
//! `Runtime::spawn_blocking` and the listener does not wait for a write
//! before handling the next event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_tokio::runtime::blocking;
use eventhubs_tokio::{
    Checkpoint, CheckpointCadence, CheckpointPersister, EventData, EventPosition, FilePersister,
    Hub, HubOptions, PersistError, PersistFuture, ReceiveOptions, TokioRuntime,
};

/// Each write blocks its thread for 300 ms (through spawn_blocking, as
/// `FilePersister` does its file I/O).
#[derive(Default)]
struct Sleepy {
    writes: Mutex<Vec<(i64, Instant, Instant)>>,
}

const WRITE_TIME: Duration = Duration::from_millis(300);

impl CheckpointPersister for Sleepy {
    fn write<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> PersistFuture<'a, ()> {
        Box::pin(async move {
            let started = Instant::now();
            blocking(&TokioRuntime::default(), || std::thread::sleep(WRITE_TIME))
                .await
                .map_err(PersistError::Runtime)?;
            self.writes
                .lock()
                .unwrap()
                .push((checkpoint.sequence_number, started, Instant::now()));
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> PersistFuture<'a, Option<Checkpoint>> {
        Box::pin(async { Ok(None) })
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Counts ticks every 5 ms until told to stop: progress of other tasks.
fn ticker() -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    (ticks, task)
}

#[test]
fn a_blocking_persister_does_not_stall_the_receive_loop() {
    let emulator = Emulator::start(EmulatorConfig::default()).unwrap();
    current_thread().block_on(async {
        let sleepy = Arc::new(Sleepy::default());
        let hub = Hub::from_connection_string(
            &emulator.connection_string("eh1"),
            HubOptions::new()
                .with_partitioned_sender("0")
                .with_checkpoint_persister(sleepy.clone()),
        )
        .unwrap();
        hub.send_batch((0..50).map(|i| EventData::new(format!("event {i}"))))
            .await
            .unwrap();
        let (ticks, ticking) = ticker();
        let handled = Arc::new(Mutex::new(Vec::new()));
        let h = handled.clone();
        let started = Instant::now();
        // A checkpoint after every event: fifty blocking writes of 300 ms
        // would take 15 s if the loop waited for each.
        let handle = hub
            .receive(
                "0",
                move |e| {
                    h.lock()
                        .unwrap()
                        .push((e.sequence_number(), Instant::now()));
                    async { Ok::<(), std::io::Error>(()) }
                },
                ReceiveOptions::new()
                    .with_start_position(EventPosition::Earliest)
                    .with_checkpoint_cadence(CheckpointCadence::every_event()),
            )
            .await
            .unwrap();
        while handled.lock().unwrap().len() < 50 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the loop stalled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        handle.close().await.unwrap();
        ticking.abort();
        let writes = sleepy.writes.lock().unwrap().clone();
        let handled = handled.lock().unwrap().clone();
        assert!(
            took < WRITE_TIME * 3,
            "fifty events handled in {took:?}, not held up by 300 ms writes"
        );
        // Events were handled while the first write was in progress.
        let (_, first_start, first_end) = writes[0];
        let during = handled
            .iter()
            .filter(|(_, at)| *at > first_start && *at < first_end)
            .count();
        assert!(during > 0, "no event handled during a write: {writes:?}");
        // Other tasks ran meanwhile: the 5 ms ticker kept ticking.
        let ticked = ticks.load(Ordering::Relaxed);
        assert!(
            ticked as u128 >= took.as_millis() / 5 / 3,
            "{ticked} ticks in {took:?}"
        );
        // Writes coalesce: fewer than one per event, the last one the last
        // event, written at the stop at the latest.
        assert!(writes.len() < 50, "{}", writes.len());
        assert_eq!(writes.last().map(|w| w.0), Some(49));
        hub.close().await.unwrap();
    });
}

#[test]
fn file_checkpoints_on_a_current_thread_runtime() {
    let emulator = Emulator::start(EmulatorConfig::default()).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "eventhubs-tokio-checkpoints-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    current_thread().block_on(async {
        let files = Arc::new(FilePersister::new(&dir).unwrap());
        let hub = Hub::from_connection_string(
            &emulator.connection_string("eh1"),
            HubOptions::new()
                .with_partitioned_sender("1")
                .with_checkpoint_persister(files.clone()),
        )
        .unwrap();
        hub.send_batch((0..200).map(|i| EventData::new(format!("event {i}"))))
            .await
            .unwrap();
        let (ticks, ticking) = ticker();
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let started = Instant::now();
        let handle = hub
            .receive(
                "1",
                move |_| {
                    c.fetch_add(1, Ordering::Relaxed);
                    async { Ok::<(), std::io::Error>(()) }
                },
                ReceiveOptions::new()
                    .with_start_position(EventPosition::Earliest)
                    .with_checkpoint_cadence(CheckpointCadence::every_event()),
            )
            .await
            .unwrap();
        while count.load(Ordering::Relaxed) < 200 {
            assert!(started.elapsed() < Duration::from_secs(20), "stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handle.close().await.unwrap();
        ticking.abort();
        assert!(ticks.load(Ordering::Relaxed) > 0);
        let saved = files
            .read(hub.host(), "eh1", "$Default", "1")
            .await
            .unwrap()
            .expect("a checkpoint file");
        assert_eq!(
            saved.sequence_number, 199,
            "the last event, written at the stop"
        );
        hub.close().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}
