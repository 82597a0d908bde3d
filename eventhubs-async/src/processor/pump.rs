//! The task that runs a processor core: it performs what the core asks
//! (store requests, receivers through the [`Hub`], handler calls) and
//! feeds back the answers, events and time. It decides nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_channel::{mpsc, oneshot};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tracing::debug;

use eventhubs_proto::client::{Now, ReceivedEvent};
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_proto::processor::{
    Action, BatchId, BatchOutcome, CheckpointRequestId, CloseReason, OpenReceiver, PartitionBatch,
    Processor as Core, ProcessorError, ProcessorEvent, ProcessorStats, ReceiverFailure,
    ReceiverKey, StopOptions, StoreFailure, StoreOpId, StoreReply,
};

use super::handler::{Handler, HandlerId, PartitionContext};
use crate::checkpoint_store::{CheckpointStore, StoreError};
use crate::error::Error;
use crate::hub::Hub;
use crate::options::ReceiveOptions;
use crate::runtime::{BoxFuture, Runtime};
use crate::stream::EventStream;

/// What handles and workers tell the pump.
pub(crate) enum Command {
    Stop(StopOptions),
    Checkpoint {
        partition_id: String,
        offset: String,
        sequence_number: i64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    BatchDone {
        batch: BatchId,
        outcome: BatchOutcome,
    },
}

/// What the handles can read while the processor runs.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) partition_ids: Vec<String>,
    pub(crate) processing: Vec<String>,
    pub(crate) owned: Vec<String>,
    pub(crate) stats: ProcessorStats,
    pub(crate) stopped: bool,
}

/// Shared by the handles, the pump and the partition workers.
pub(crate) struct Shared {
    pub(crate) handlers: Mutex<BTreeMap<HandlerId, Arc<dyn Handler>>>,
    pub(crate) status: Mutex<Status>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

impl Shared {
    pub(crate) fn handlers(&self) -> Vec<Arc<dyn Handler>> {
        self.handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Work for one partition's worker, in order.
enum Work {
    Initialized(EventPosition),
    Batch(PartitionBatch),
    Closed(CloseReason),
}

type Opening = BoxFuture<(ReceiverKey, Result<EventStream, Error>)>;

pub(crate) struct Pump<R: Runtime> {
    rt: R,
    core: Core,
    hub: Hub<R>,
    store: Arc<dyn CheckpointStore>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    partition_ids: Option<BoxFuture<Result<Vec<String>, String>>>,
    store_ops: FuturesUnordered<BoxFuture<(StoreOpId, StoreReply)>>,
    opens: FuturesUnordered<Opening>,
    wanted: BTreeSet<ReceiverKey>,
    streams: BTreeMap<ReceiverKey, EventStream>,
    workers: BTreeMap<String, mpsc::UnboundedSender<Work>>,
    errors: Option<mpsc::UnboundedSender<ProcessorError>>,
    checkpoints: BTreeMap<CheckpointRequestId, oneshot::Sender<Result<(), Error>>>,
    timer: Option<(Instant, BoxFuture<()>)>,
    done: Option<oneshot::Sender<()>>,
    close_hub: bool,
}

pub(crate) fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    }
}

fn failure(e: StoreError) -> StoreFailure {
    StoreFailure::new(e.to_string())
}

fn receiver_failure(e: &Error) -> ReceiverFailure {
    if e.is_ownership_lost() {
        ReceiverFailure::ownership_lost(e.to_string())
    } else {
        ReceiverFailure::other(e.to_string())
    }
}

impl<R: Runtime> Pump<R> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        rt: R,
        core: Core,
        hub: Hub<R>,
        store: Arc<dyn CheckpointStore>,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        done: oneshot::Sender<()>,
        close_hub: bool,
    ) -> Self {
        Pump {
            rt,
            core,
            hub,
            store,
            shared,
            commands,
            partition_ids: None,
            store_ops: FuturesUnordered::new(),
            opens: FuturesUnordered::new(),
            wanted: BTreeSet::new(),
            streams: BTreeMap::new(),
            workers: BTreeMap::new(),
            errors: None,
            checkpoints: BTreeMap::new(),
            timer: None,
            done: Some(done),
            close_hub,
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Stop(options) => self.core.stop(now(), options),
            Command::Checkpoint {
                partition_id,
                offset,
                sequence_number,
                reply,
            } => match self
                .core
                .request_checkpoint(now(), &partition_id, offset, sequence_number)
            {
                Ok(id) => {
                    self.checkpoints.insert(id, reply);
                }
                Err(refused) => {
                    let _ = reply.send(Err(refused.into()));
                }
            },
            Command::BatchDone { batch, outcome } => {
                self.core.handle_batch_done(now(), batch, outcome)
            }
        }
    }

    fn action(&mut self, a: Action) {
        let cfg = self.core.config();
        let (ns, hub_name, group) = (
            cfg.fully_qualified_namespace.clone(),
            cfg.event_hub.clone(),
            cfg.consumer_group.clone(),
        );
        let store = self.store.clone();
        match a {
            Action::GetPartitionIds => {
                let hub = self.hub.clone();
                self.partition_ids = Some(Box::pin(async move {
                    hub.runtime_information()
                        .await
                        .map(|h| h.partition_ids)
                        .map_err(|e| e.to_string())
                }));
            }
            Action::ListOwnership { op } => self.store_ops.push(Box::pin(async move {
                let r = store.list_ownership(&ns, &hub_name, &group).await;
                (op, StoreReply::OwnershipListed(r.map_err(failure)))
            })),
            Action::ClaimOwnership { op, claims } => self.store_ops.push(Box::pin(async move {
                let r = store.claim_ownership(&claims).await;
                (op, StoreReply::OwnershipClaimed(r.map_err(failure)))
            })),
            Action::ListCheckpoints { op } => self.store_ops.push(Box::pin(async move {
                let r = store.list_checkpoints(&ns, &hub_name, &group).await;
                (op, StoreReply::CheckpointsListed(r.map_err(failure)))
            })),
            Action::UpdateCheckpoint { op, checkpoint } => {
                self.store_ops.push(Box::pin(async move {
                    let r = store.update_checkpoint(&checkpoint).await;
                    (op, StoreReply::CheckpointUpdated(r.map_err(failure)))
                }))
            }
            Action::OpenReceiver(OpenReceiver {
                receiver,
                partition_id,
                consumer_group,
                position,
                owner_level,
                prefetch,
                identifier,
            }) => {
                self.wanted.insert(receiver);
                let hub = self.hub.clone();
                let mut options = ReceiveOptions::new()
                    .with_consumer_group(consumer_group)
                    .with_prefetch(prefetch)
                    .with_identifier(identifier)
                    .with_start_position(position);
                if let Some(level) = owner_level {
                    options = options.with_owner_level(level);
                }
                self.opens.push(Box::pin(async move {
                    (receiver, hub.receiver(&partition_id, options).await)
                }));
            }
            Action::CloseReceiver { receiver } => {
                self.wanted.remove(&receiver);
                // Dropping the stream closes the receiver.
                self.streams.remove(&receiver);
            }
            other => debug!(?other, "processor action not understood"),
        }
    }

    fn context(&self, partition_id: &str) -> PartitionContext {
        let cfg = self.core.config();
        PartitionContext {
            partition_id: partition_id.to_owned(),
            fully_qualified_namespace: cfg.fully_qualified_namespace.clone(),
            event_hub: cfg.event_hub.clone(),
            consumer_group: cfg.consumer_group.clone(),
            owner_id: cfg.owner_id.clone(),
            commands: self.shared.commands.clone(),
        }
    }

    fn worker(&mut self, partition_id: &str) -> &mpsc::UnboundedSender<Work> {
        if !self.workers.contains_key(partition_id) {
            let (tx, rx) = mpsc::unbounded();
            let task = partition_worker(self.context(partition_id), self.shared.clone(), rx);
            if let Err(e) = self.rt.spawn(Box::pin(task)) {
                debug!(error = %e, "cannot spawn a partition worker");
            }
            self.workers.insert(partition_id.to_owned(), tx);
        }
        &self.workers[partition_id]
    }

    fn event(&mut self, e: ProcessorEvent) {
        match e {
            ProcessorEvent::PartitionInitialized {
                partition_id,
                position,
            } => {
                let _ = self
                    .worker(&partition_id)
                    .unbounded_send(Work::Initialized(position));
            }
            ProcessorEvent::Events(batch) => {
                let partition = batch.partition_id.clone();
                let _ = self.worker(&partition).unbounded_send(Work::Batch(batch));
            }
            ProcessorEvent::PartitionClosed {
                partition_id,
                reason,
            } => {
                if let Some(w) = self.workers.remove(&partition_id) {
                    let _ = w.unbounded_send(Work::Closed(reason));
                }
            }
            ProcessorEvent::Error(error) => {
                tracing::warn!(%error, "processor error");
                if self.errors.is_none() {
                    let (tx, rx) = mpsc::unbounded();
                    let _ = self
                        .rt
                        .spawn(Box::pin(error_worker(self.shared.clone(), rx)));
                    self.errors = Some(tx);
                }
                if let Some(tx) = &self.errors {
                    let _ = tx.unbounded_send(error);
                }
            }
            ProcessorEvent::CheckpointUpdated { request, result } => {
                if let Some(reply) = self.checkpoints.remove(&request) {
                    let _ = reply.send(result.map_err(Error::from));
                }
            }
            ProcessorEvent::Stopped => {
                self.streams.clear();
                self.workers.clear();
                self.errors = None;
                if self.close_hub {
                    let hub = self.hub.clone();
                    let _ = self.rt.spawn(Box::pin(async move {
                        let _ = hub.close().await;
                    }));
                }
                if let Some(done) = self.done.take() {
                    let _ = done.send(());
                }
            }
            other => debug!(?other, "processor event not understood"),
        }
    }

    fn publish(&self) {
        let mut s = self.shared.status();
        s.partition_ids = self.core.partition_ids().to_vec();
        s.processing = self.core.partitions_being_processed();
        s.owned = self.core.owned_partitions();
        s.stats = self.core.stats();
        s.stopped = self.core.is_stopped();
    }

    fn poll_inputs(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some(c)) = self.commands.poll_next_unpin(cx) {
            self.command(c);
            progress = true;
        }
        if let Some(f) = self.partition_ids.as_mut() {
            if let Poll::Ready(r) = f.as_mut().poll(cx) {
                self.partition_ids = None;
                self.core.handle_partition_ids(now(), r);
                progress = true;
            }
        }
        while let Poll::Ready(Some((op, reply))) = self.store_ops.poll_next_unpin(cx) {
            self.core.handle_store_reply(now(), op, reply);
            progress = true;
        }
        while let Poll::Ready(Some((key, result))) = self.opens.poll_next_unpin(cx) {
            progress = true;
            let wanted = self.wanted.contains(&key);
            match result {
                Ok(stream) if wanted => {
                    self.streams.insert(key, stream);
                    self.core.handle_receiver_opened(now(), key);
                }
                Ok(_closed_on_drop) => {}
                Err(e) if wanted => {
                    self.wanted.remove(&key);
                    self.core
                        .handle_receiver_closed(now(), key, Some(receiver_failure(&e)));
                }
                Err(_) => {}
            }
        }
        let keys: Vec<ReceiverKey> = self.streams.keys().copied().collect();
        for key in keys {
            while self.core.accepts_events(key) {
                let Some(stream) = self.streams.get_mut(&key) else {
                    break;
                };
                match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(event))) => {
                        progress = true;
                        self.core.handle_received(now(), key, event);
                    }
                    Poll::Ready(end) => {
                        progress = true;
                        self.streams.remove(&key);
                        self.wanted.remove(&key);
                        let failure = match end {
                            Some(Err(e)) => receiver_failure(&e),
                            _ => ReceiverFailure::other("the receiver ended"),
                        };
                        self.core.handle_receiver_closed(now(), key, Some(failure));
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        progress
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.core.poll_timeout() else {
            self.timer = None;
            return false;
        };
        let current = Instant::now();
        if at <= current {
            self.timer = None;
            self.core.handle_timeout(now());
            return true;
        }
        if self.timer.as_ref().is_none_or(|(t, _)| *t != at) {
            self.timer = Some((at, self.rt.sleep(at - current)));
        }
        let (_, sleep) = self.timer.as_mut().expect("set");
        if sleep.as_mut().poll(cx).is_ready() {
            self.timer = None;
            self.core.handle_timeout(now());
            return true;
        }
        false
    }
}

// Every field is a handle, a box or a collection of boxes.
impl<R: Runtime> Unpin for Pump<R> {}

impl<R: Runtime> Future for Pump<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let mut progress = this.poll_inputs(cx);
            progress |= this.poll_timer(cx);
            while let Some(a) = this.core.poll_action() {
                this.action(a);
                progress = true;
            }
            while let Some(e) = this.core.poll_event() {
                this.event(e);
                progress = true;
            }
            if progress {
                this.publish();
            }
            if this.done.is_none() {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// Runs one partition's work in order: initialized, batches, closed.
async fn partition_worker(
    context: PartitionContext,
    shared: Arc<Shared>,
    mut work: mpsc::UnboundedReceiver<Work>,
) {
    while let Some(w) = work.next().await {
        let handlers = shared.handlers();
        match w {
            Work::Initialized(position) => {
                let calls = handlers
                    .iter()
                    .map(|h| h.on_partition_initialized(&context, &position));
                futures_util::future::join_all(calls).await;
            }
            Work::Batch(batch) => {
                let events: &[ReceivedEvent] = &batch.events;
                let calls = handlers.iter().map(|h| h.on_events(&context, events));
                let results = futures_util::future::join_all(calls).await;
                let outcome = match results.into_iter().find_map(Result::err) {
                    None => BatchOutcome::Processed,
                    Some(e) => BatchOutcome::Failed(e.to_string()),
                };
                let _ = shared.commands.unbounded_send(Command::BatchDone {
                    batch: batch.batch,
                    outcome,
                });
            }
            Work::Closed(reason) => {
                let calls = handlers
                    .iter()
                    .map(|h| h.on_partition_closed(&context, &reason));
                futures_util::future::join_all(calls).await;
                return;
            }
        }
    }
}

/// Hands errors to every handler's `on_error`, in order.
async fn error_worker(shared: Arc<Shared>, mut errors: mpsc::UnboundedReceiver<ProcessorError>) {
    while let Some(e) = errors.next().await {
        let handlers = shared.handlers();
        futures_util::future::join_all(handlers.iter().map(|h| h.on_error(&e))).await;
    }
}
