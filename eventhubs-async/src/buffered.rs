//! [`BufferedProducer`]: fire-and-forget publishing. [`enqueue`] returns
//! once the event is buffered; a task of the producer's own routes events
//! to partitions on the client, batches them per partition and sends each
//! batch when it is full, when its oldest event has waited the maximum
//! wait, or on [`flush`] and [`close`], then reports every batch to the
//! success or failure callback. The Python and .NET SDKs'
//! `EventHubBufferedProducerClient`, on one [`Hub`]'s connection.
//!
//! The decisions (routing by partition id, by partition key with the
//! service's hashing, or round-robin; bounded buffers; when a batch goes;
//! how many are in flight) are the core's
//! [`eventhubs_proto::client::buffered`]; this module runs them: a mutex
//! around the core's state, a task that sends the batches it hands out
//! with the hub, one sleep at its next deadline, and wakers for callers
//! waiting for room, a flush or the close.
//!
//! [`enqueue`]: BufferedProducer::enqueue
//! [`flush`]: BufferedProducer::flush
//! [`close`]: BufferedProducer::close

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tracing::{debug, warn};

use eventhubs_proto::client::buffered::{
    BatchId, BufferedEvent, BufferedOptions, BufferedProducer as Core, EnqueueError, Route,
};
use eventhubs_proto::client::EventData;

use crate::error::Error;
use crate::hub::Hub;
use crate::runtime::{BoxFuture, Runtime};

/// What [`BufferedProducer::enqueue`] does when the partition's buffer is
/// full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenFull {
    /// Waits until a batch of the partition has gone and there is room
    /// (back-pressure; the default, as in the .NET and Python SDKs).
    #[default]
    Wait,
    /// Refuses the event at once with [`Error::BufferFull`].
    Fail,
}

/// A batch every event of which the service accepted, as the success
/// callback gets it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SentBatch {
    /// The partition it was published to.
    pub partition_id: String,
    /// Its events, in the order they were enqueued.
    pub events: Vec<EventData>,
}

/// A batch that failed after the hub's retries, as the failure callback
/// gets it: its events are not known to be published (with idempotent
/// publishing, enqueueing them again publishes each once at most).
#[derive(Debug)]
#[non_exhaustive]
pub struct FailedBatch {
    /// The partition it was sent to.
    pub partition_id: String,
    /// Its events, in the order they were enqueued.
    pub events: Vec<EventData>,
    /// Why it failed.
    pub error: Error,
}

type OnSent = Arc<dyn Fn(SentBatch) + Send + Sync>;
type OnFailed = Arc<dyn Fn(FailedBatch) + Send + Sync>;

/// Options of a [`BufferedProducer`]; the defaults are those of the .NET
/// buffered producer.
///
/// ```
/// use std::time::Duration;
/// use eventhubs_async::{BufferedProducerOptions, WhenFull};
///
/// let options = BufferedProducerOptions::new()
///     .with_max_wait(Duration::from_millis(250))
///     .with_max_buffered_events_per_partition(10_000)
///     .with_when_full(WhenFull::Fail)
///     .with_on_success(|batch| println!("{} events to {}", batch.events.len(), batch.partition_id))
///     .with_on_failure(|batch| eprintln!("{} events lost: {}", batch.events.len(), batch.error));
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct BufferedProducerOptions {
    core: BufferedOptions,
    when_full: WhenFull,
    send_timeout: Option<Duration>,
    on_sent: Option<OnSent>,
    on_failed: Option<OnFailed>,
}

impl Default for BufferedProducerOptions {
    fn default() -> Self {
        BufferedProducerOptions {
            core: BufferedOptions::default(),
            when_full: WhenFull::Wait,
            send_timeout: None,
            on_sent: None,
            on_failed: None,
        }
    }
}

impl std::fmt::Debug for BufferedProducerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedProducerOptions")
            .field("core", &self.core)
            .field("when_full", &self.when_full)
            .field("send_timeout", &self.send_timeout)
            .field("on_success", &self.on_sent.is_some())
            .field("on_failure", &self.on_failed.is_some())
            .finish()
    }
}

impl BufferedProducerOptions {
    /// The defaults: 1,500 events buffered per partition, enqueue waits
    /// when full, batches wait at most 1 s for more events, one batch in
    /// flight per partition, no overall limit, the hub's operation timeout
    /// per batch, failures logged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events one partition may hold (not counting those in flight)
    /// before [`BufferedProducer::enqueue`] waits or refuses.
    #[must_use]
    pub fn with_max_buffered_events_per_partition(mut self, n: usize) -> Self {
        self.core.max_buffered_events_per_partition = n;
        self
    }

    /// What enqueue does when the partition's buffer is full.
    #[must_use]
    pub fn with_when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// How long a partly filled batch waits for more events before it
    /// goes.
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.core.max_wait = max_wait;
        self
    }

    /// Batches of one partition in flight at once. More than one may
    /// reorder a partition's events when a batch is retried, and is
    /// refused with idempotent publishing, which numbers one batch at a
    /// time.
    #[must_use]
    pub fn with_max_concurrent_sends_per_partition(mut self, n: usize) -> Self {
        self.core.max_concurrent_sends_per_partition = n;
        self
    }

    /// Batches in flight at once over every partition.
    #[must_use]
    pub fn with_max_concurrent_sends(mut self, n: usize) -> Self {
        self.core.max_concurrent_sends = Some(n);
        self
    }

    /// The largest batch in bytes, below the link's max-message-size
    /// (which is the limit by default).
    #[must_use]
    pub fn with_max_batch_bytes(mut self, n: usize) -> Self {
        self.core.max_batch_bytes = n;
        self
    }

    /// The deadline of one batch's send, retries included, instead of the
    /// hub's operation timeout.
    #[must_use]
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// Called with every batch the service accepted, from the producer's
    /// task: it should return quickly (hand the batch to a channel for
    /// slow work), as the next batches wait for it.
    #[must_use]
    pub fn with_on_success(mut self, f: impl Fn(SentBatch) + Send + Sync + 'static) -> Self {
        self.on_sent = Some(Arc::new(f));
        self
    }

    /// Called with every batch that failed after the hub's retries, with
    /// its events and why, from the producer's task (return quickly).
    /// Without it, failures are logged (`tracing`, at warn) and their
    /// events dropped.
    #[must_use]
    pub fn with_on_failure(mut self, f: impl Fn(FailedBatch) + Send + Sync + 'static) -> Self {
        self.on_failed = Some(Arc::new(f));
        self
    }
}

/// Where one event goes, for [`BufferedProducer::enqueue_with`]: a
/// partition id, a partition key, or (by default) the event's own key, or
/// round-robin when it has none.
///
/// ```
/// use eventhubs_async::EnqueueOptions;
///
/// let to_partition = EnqueueOptions::new().with_partition_id("3");
/// let by_key = EnqueueOptions::new().with_partition_key("device-7");
/// # let _ = (to_partition, by_key);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    partition_id: Option<String>,
    partition_key: Option<String>,
}

impl EnqueueOptions {
    /// The event's own key, or round-robin.
    pub fn new() -> Self {
        Self::default()
    }

    /// To partition `id` (one of the hub's).
    #[must_use]
    pub fn with_partition_id(mut self, id: impl Into<String>) -> Self {
        self.partition_id = Some(id.into());
        self
    }

    /// With partition key `key`: to the partition the service would hash
    /// the key to, the key kept on the event.
    #[must_use]
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }
}

struct State {
    core: Core<Error>,
    /// The task, to wake when there is something for it.
    task: Option<Waker>,
    /// Callers waiting for room, a flush or the close.
    waiters: Vec<Waker>,
    /// The task has ended: everything was sent, or it was dropped.
    finished: bool,
    /// Outcomes taken from the core and not yet given to a callback: a
    /// flush waits for them too.
    reporting: usize,
}

struct Shared {
    state: Mutex<State>,
    when_full: WhenFull,
    partitions: Vec<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A callback that panicked poisons nothing of ours: the state is
        // changed only by this module's code, which does not panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn wake_task(&mut self) {
        if let Some(w) = self.task.take() {
            w.wake();
        }
    }

    fn wake_waiters(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }
}

/// Closes the producer when the last handle is dropped: what is buffered
/// is still sent, in the background.
struct LastHandle(Arc<Shared>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.core.close();
        st.wake_task();
    }
}

/// A buffered producer (the .NET and Python SDKs'
/// `EventHubBufferedProducerClient`): [`enqueue`](Self::enqueue) returns
/// once the event is buffered, and the producer batches events per
/// partition and sends them in the background on the [`Hub`]'s connection.
/// Made by [`Hub::buffered_producer`].
///
/// - Routing: an event goes to the partition named at enqueue, else to
///   the partition its partition key hashes to, with the hash the service
///   applies to keys sent to the hub (Jenkins lookup3 over the hub's
///   partition ids in the service's order), else round-robin. A keyed
///   event keeps its key.
/// - Batches: per partition, sent when full (the link's
///   max-message-size), when the oldest event has waited
///   [`with_max_wait`](BufferedProducerOptions::with_max_wait), when the
///   partition's buffer is full, or on [`flush`](Self::flush) and
///   [`close`](Self::close); at most
///   [`with_max_concurrent_sends_per_partition`](BufferedProducerOptions::with_max_concurrent_sends_per_partition)
///   in flight per partition.
/// - Outcomes: every batch goes to the success or the failure callback
///   once it is done, with its events.
/// - With idempotent publishing on the hub
///   ([`HubOptions::with_idempotent_publishing`](crate::HubOptions::with_idempotent_publishing)),
///   every batch is published once, however often it is sent again.
///
/// Cheap to clone; clones share the buffers. When the last clone is
/// dropped without [`close`](Self::close), what is buffered is still sent
/// in the background while the hub is open.
#[derive(Clone)]
pub struct BufferedProducer {
    shared: Arc<Shared>,
    _last: Arc<LastHandle>,
}

impl std::fmt::Debug for BufferedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("BufferedProducer")
            .field("partitions", &self.shared.partitions)
            .field("buffered", &st.core.buffered())
            .field("in_flight", &st.core.in_flight())
            .field("closing", &st.core.is_closing())
            .finish()
    }
}

impl<R: Runtime> Hub<R> {
    /// A [`BufferedProducer`] publishing through this hub: reads the hub's
    /// partition ids (to route keys as the service does) and the link's
    /// max-message-size (the batch limit), then starts the producer's
    /// task. The hub's connection stays open while the producer has work,
    /// even if every [`Hub`] handle is dropped.
    ///
    /// Cancellation: dropping the future before it returns starts no
    /// producer; a sender link it attached stays for later sends.
    pub async fn buffered_producer(
        &self,
        options: BufferedProducerOptions,
    ) -> Result<BufferedProducer, Error> {
        let mut core_options = options.core.clone();
        core_options.idempotent = self.options().idempotent_publishing;
        let mut core = Core::<Error>::new(core_options)?;
        let partitions = self.runtime_information().await?.partition_ids;
        let Some(first) = partitions.first() else {
            return Err(Error::invalid_input(
                "the event hub lists no partitions to publish to",
            ));
        };
        let link_max = self.partition_link_limit(first).await?;
        let link_max = usize::try_from(link_max).unwrap_or(usize::MAX);
        core.set_max_batch_bytes(link_max.min(options.core.max_batch_bytes));
        core.set_partitions(partitions.clone());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core,
                task: None,
                waiters: Vec::new(),
                finished: false,
                reporting: 0,
            }),
            when_full: options.when_full,
            partitions,
        });
        let task = Task {
            hub: self.clone(),
            shared: shared.clone(),
            send_timeout: options.send_timeout,
            on_sent: options.on_sent,
            on_failed: options.on_failed,
        };
        let rt = self.runtime().clone();
        rt.spawn(Box::pin(task.run())).map_err(Error::Runtime)?;
        Ok(BufferedProducer {
            _last: Arc::new(LastHandle(shared.clone())),
            shared,
        })
    }
}

fn enqueue_error(e: EnqueueError) -> Error {
    match e {
        EnqueueError::Full { partition, limit } => Error::BufferFull {
            partition_id: partition,
            limit,
        },
        EnqueueError::Closed => Error::Closed,
        other => Error::invalid_input_from(other.to_string(), other),
    }
}

impl BufferedProducer {
    /// The hub's partition ids, in the order the service lists them (the
    /// order keys are hashed over).
    pub fn partition_ids(&self) -> &[String] {
        &self.shared.partitions
    }

    /// Events buffered now, over every partition (not counting those in
    /// flight).
    pub fn buffered(&self) -> usize {
        self.shared.lock().core.buffered()
    }

    /// Events buffered now for `partition_id`.
    pub fn buffered_for(&self, partition_id: &str) -> usize {
        self.shared.lock().core.buffered_for(partition_id)
    }

    /// Buffers `event` for the partition its partition key hashes to, or
    /// the next partition round-robin when it has none; returns that
    /// partition id. When the partition's buffer is full it waits for room
    /// ([`WhenFull::Wait`]) or fails with [`Error::BufferFull`]
    /// ([`WhenFull::Fail`]). After [`close`](Self::close), [`Error::Closed`].
    ///
    /// Cancellation: if the future is dropped while it waits for room, the
    /// event is not buffered. Once it has returned, the event is the
    /// producer's: it is sent, and reported to a callback.
    pub async fn enqueue(&self, event: EventData) -> Result<String, Error> {
        self.enqueue_with(event, EnqueueOptions::new()).await
    }

    /// Buffers `event` for the partition `options` name, or by the key
    /// they give (kept on the event); otherwise as
    /// [`enqueue`](Self::enqueue). A partition id and a partition key
    /// together, an event of another key, an unknown partition or an event
    /// larger than a batch may be are refused with
    /// [`Error::InvalidInput`].
    ///
    /// Cancellation: as [`enqueue`](Self::enqueue).
    pub async fn enqueue_with(
        &self,
        mut event: EventData,
        options: EnqueueOptions,
    ) -> Result<String, Error> {
        if let Some(key) = options.partition_key {
            if options.partition_id.is_some() {
                return Err(Error::invalid_input(
                    "an event cannot be enqueued with both a partition id and a partition key",
                ));
            }
            match &event.partition_key {
                None => event.partition_key = Some(key),
                Some(k) if *k == key => {}
                Some(k) => {
                    return Err(Error::invalid_input(format!(
                        "the event has partition key {k:?}, the enqueue options {key:?}"
                    )))
                }
            }
        }
        let route = match options.partition_id {
            Some(p) => Route::Partition(p),
            None => Route::Auto,
        };
        let partition = {
            let mut st = self.shared.lock();
            if st.core.is_closing() {
                return Err(Error::Closed);
            }
            let partition = st.core.route(&event, &route).map_err(enqueue_error)?;
            match st.core.can_take(&event, &partition) {
                Ok(()) => {
                    st.core
                        .enqueue_to(Instant::now(), event, &partition)
                        .map_err(enqueue_error)?;
                    st.wake_task();
                    return Ok(partition);
                }
                Err(EnqueueError::Full { .. }) if self.shared.when_full == WhenFull::Wait => {}
                Err(e) => return Err(enqueue_error(e)),
            }
            partition
        };
        debug!(partition = %partition, "buffer full: waiting for room");
        let mut event = Some(event);
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            let Some(ev) = event.as_ref() else {
                return Poll::Ready(Err(Error::Closed));
            };
            match st.core.can_take(ev, &partition) {
                Ok(()) => {
                    let ev = event.take().unwrap_or_default();
                    let r = st.core.enqueue_to(Instant::now(), ev, &partition);
                    st.wake_task();
                    Poll::Ready(r.map(|()| partition.clone()).map_err(enqueue_error))
                }
                Err(EnqueueError::Full { .. }) if !st.finished => {
                    st.waiters.push(cx.waker().clone());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(enqueue_error(e))),
            }
        })
        .await
    }

    /// Sends every event buffered now without waiting for full batches or
    /// the maximum wait, and returns once each of their batches has been
    /// reported to a callback (sent or failed). Events enqueued meanwhile
    /// are not waited for.
    ///
    /// Cancellation: dropping the future gives up the wait; the events
    /// still go out.
    pub async fn flush(&self) -> Result<(), Error> {
        let mark = {
            let mut st = self.shared.lock();
            let mark = st.core.flush();
            st.wake_task();
            mark
        };
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if (st.core.is_flushed(mark) && st.reporting == 0) || st.finished {
                Poll::Ready(())
            } else {
                st.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        Ok(())
    }

    /// Takes no more events (enqueue fails with [`Error::Closed`], on
    /// every clone), sends everything buffered, and returns once every
    /// batch has been reported to a callback and the producer's task has
    /// ended. The hub stays open.
    ///
    /// Cancellation: dropping the future still closes the producer; what
    /// is buffered is sent in the background.
    pub async fn close(&self) -> Result<(), Error> {
        {
            let mut st = self.shared.lock();
            st.core.close();
            st.wake_task();
        }
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if st.finished {
                Poll::Ready(())
            } else {
                st.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        Ok(())
    }
}

/// The producer's task: sends the batches the core hands out, reports
/// their outcomes, sleeps until the next partly filled batch is due, and
/// ends once the producer is closed and idle.
struct Task<R: Runtime> {
    hub: Hub<R>,
    shared: Arc<Shared>,
    send_timeout: Option<Duration>,
    on_sent: Option<OnSent>,
    on_failed: Option<OnFailed>,
}

/// Marks the producer finished when the task ends or is dropped (its
/// runtime shut down), so that no caller waits for it for ever.
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.finished = true;
        st.core.close();
        st.wake_waiters();
    }
}

type Sending = BoxFuture<(BatchId, Result<(), Error>)>;

impl<R: Runtime> Task<R> {
    async fn run(self) {
        let _finished = Finished(self.shared.clone());
        let mut sends: FuturesUnordered<Sending> = FuturesUnordered::new();
        let mut timer: Option<(Instant, BoxFuture<()>)> = None;
        let rt = self.hub.runtime().clone();
        poll_fn(|cx| loop {
            let now = Instant::now();
            let mut outcomes: Vec<BufferedEvent<Error>> = Vec::new();
            {
                let mut st = self.shared.lock();
                st.task = Some(cx.waker().clone());
                while let Some(batch) = st.core.poll_batch(now) {
                    let hub = self.hub.clone();
                    let timeout = self.send_timeout;
                    let id = batch.id;
                    sends.push(Box::pin(async move {
                        (
                            id,
                            hub.send_routed(batch.events, batch.partition, timeout)
                                .await,
                        )
                    }));
                }
            }
            let mut progress = false;
            while let Poll::Ready(Some((id, result))) = sends.poll_next_unpin(cx) {
                let mut st = self.shared.lock();
                st.core.batch_done(id, result);
                while let Some(ev) = st.core.poll_event() {
                    outcomes.push(ev);
                    st.reporting += 1;
                }
                progress = true;
            }
            if progress {
                let n = outcomes.len();
                for ev in outcomes {
                    self.report(ev);
                }
                // Waiters look once the outcomes are reported: a flush
                // returns after the callbacks of its batches.
                let mut st = self.shared.lock();
                st.reporting -= n;
                st.wake_waiters();
            }
            if progress {
                continue;
            }
            let (due, done) = {
                let st = self.shared.lock();
                (
                    st.core.poll_timeout(),
                    st.core.is_closing() && st.core.is_idle() && sends.is_empty(),
                )
            };
            if done {
                return Poll::Ready(());
            }
            match due {
                None => timer = None,
                Some(at) if at <= now => continue,
                Some(at) => {
                    if timer.as_ref().is_none_or(|(armed, _)| at < *armed) {
                        timer = Some((at, rt.sleep(at.saturating_duration_since(now))));
                    }
                    let fired = timer
                        .as_mut()
                        .is_some_and(|(_, sleep)| sleep.poll_unpin(cx).is_ready());
                    if fired {
                        timer = None;
                        continue;
                    }
                }
            }
            return Poll::Pending;
        })
        .await;
        debug!("buffered producer closed");
    }

    fn report(&self, ev: BufferedEvent<Error>) {
        match ev {
            BufferedEvent::Sent {
                partition, events, ..
            } => {
                if let Some(f) = &self.on_sent {
                    f(SentBatch {
                        partition_id: partition,
                        events,
                    });
                }
            }
            BufferedEvent::Failed {
                partition,
                events,
                error,
                ..
            } => match &self.on_failed {
                Some(f) => f(FailedBatch {
                    partition_id: partition,
                    events,
                    error,
                }),
                None => warn!(
                    partition = %partition,
                    events = events.len(),
                    error = %error,
                    "a buffered batch failed and no failure callback is set: its events are dropped"
                ),
            },
            _ => {}
        }
    }
}

/// Compile-time checks: the producer and its futures move between
/// threads.
#[allow(dead_code)]
fn send_and_sync(p: &BufferedProducer) {
    fn send<T: Send>(_: &T) {}
    fn both<T: Send + Sync>(_: &T) {}
    both(p);
    both(&BufferedProducerOptions::new());
    send(&p.enqueue(EventData::new("")));
    send(&p.flush());
    send(&p.close());
}
