//! What the application gives a processor: handlers called with batches
//! and partition news, and the partition context they checkpoint with.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use futures_channel::{mpsc, oneshot};

use eventhubs_proto::client::ReceivedEvent;
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_proto::processor::{CloseReason, ProcessorError};

use super::pump::Command;
use crate::error::Error;

/// What a handler returns for a batch: `Err` marks the batch as failed
/// (reported as an error, and not checkpointed by the processor).
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A boxed future a handler returns.
pub type HandlerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Names a registered handler (the Go host's `HandlerID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub u64);

impl fmt::Display for HandlerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler-{}", self.0)
    }
}

/// What the processor calls (the Go host's `eventhub.Handler`, per
/// batch instead of per event, and with the partition news the Go host
/// kept to itself).
///
/// The processor calls the handlers of one partition one batch at a time,
/// in order, and the partitions concurrently: a handler is shared by
/// every partition (hence `&self`; keep state behind a lock or in
/// atomics). Every registered handler gets every batch; the batch counts
/// as processed when all of them return, and fails when one fails.
pub trait Handler: Send + Sync + 'static {
    /// Processes a batch of events of `context`'s partition, in
    /// sequence-number order.
    fn on_events<'a>(
        &'a self,
        context: &'a PartitionContext,
        events: &'a [ReceivedEvent],
    ) -> HandlerFuture<'a, HandlerResult>;

    /// The processor now owns the partition and starts receiving it at
    /// `position`.
    fn on_partition_initialized<'a>(
        &'a self,
        context: &'a PartitionContext,
        position: &'a EventPosition,
    ) -> HandlerFuture<'a, ()> {
        let _ = (context, position);
        Box::pin(async {})
    }

    /// Processing of the partition stopped: ownership lost, shutdown, or a
    /// receiver error (then it starts again in the next cycle).
    fn on_partition_closed<'a>(
        &'a self,
        context: &'a PartitionContext,
        reason: &'a CloseReason,
    ) -> HandlerFuture<'a, ()> {
        let _ = (context, reason);
        Box::pin(async {})
    }

    /// Something failed (a store request, a receiver, a batch); the
    /// processor goes on.
    fn on_error<'a>(&'a self, error: &'a ProcessorError) -> HandlerFuture<'a, ()> {
        let _ = error;
        Box::pin(async {})
    }
}

/// A shared handler (e.g. one the application also reads from).
impl<H: Handler> Handler for std::sync::Arc<H> {
    fn on_events<'a>(
        &'a self,
        context: &'a PartitionContext,
        events: &'a [ReceivedEvent],
    ) -> HandlerFuture<'a, HandlerResult> {
        (**self).on_events(context, events)
    }

    fn on_partition_initialized<'a>(
        &'a self,
        context: &'a PartitionContext,
        position: &'a EventPosition,
    ) -> HandlerFuture<'a, ()> {
        (**self).on_partition_initialized(context, position)
    }

    fn on_partition_closed<'a>(
        &'a self,
        context: &'a PartitionContext,
        reason: &'a CloseReason,
    ) -> HandlerFuture<'a, ()> {
        (**self).on_partition_closed(context, reason)
    }

    fn on_error<'a>(&'a self, error: &'a ProcessorError) -> HandlerFuture<'a, ()> {
        (**self).on_error(error)
    }
}

/// A [`Handler`] from a closure over each batch: see [`handler_fn`].
pub struct FnHandler<F>(F);

/// A handler from `f(context, events)`, which returns a future of
/// `Result<(), E>` (the Go host's `func(ctx, *Event) error`, per batch).
pub fn handler_fn<F, Fut, E>(f: F) -> FnHandler<F>
where
    F: Fn(PartitionContext, Vec<ReceivedEvent>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    FnHandler(f)
}

impl<F, Fut, E> Handler for FnHandler<F>
where
    F: Fn(PartitionContext, Vec<ReceivedEvent>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn on_events<'a>(
        &'a self,
        context: &'a PartitionContext,
        events: &'a [ReceivedEvent],
    ) -> HandlerFuture<'a, HandlerResult> {
        let fut = (self.0)(context.clone(), events.to_vec());
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// The partition a batch comes from, and how to checkpoint it.
#[derive(Clone)]
pub struct PartitionContext {
    pub(super) partition_id: String,
    pub(super) fully_qualified_namespace: String,
    pub(super) event_hub: String,
    pub(super) consumer_group: String,
    pub(super) owner_id: String,
    pub(super) commands: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for PartitionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionContext")
            .field("partition_id", &self.partition_id)
            .field("consumer_group", &self.consumer_group)
            .field("owner_id", &self.owner_id)
            .finish_non_exhaustive()
    }
}

impl PartitionContext {
    /// The partition.
    pub fn partition_id(&self) -> &str {
        &self.partition_id
    }

    /// The namespace as the checkpoint store names it.
    pub fn fully_qualified_namespace(&self) -> &str {
        &self.fully_qualified_namespace
    }

    /// The event hub.
    pub fn event_hub(&self) -> &str {
        &self.event_hub
    }

    /// The consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.consumer_group
    }

    /// The processor's owner id.
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    /// Writes a checkpoint after `event` (processed): a new owner of the
    /// partition starts after it. Completes once the store has it. Fails
    /// when the partition is no longer this processor's (its new owner's
    /// checkpoint is not overwritten), or when the store fails.
    ///
    /// Cancellation: the write is asked of the processor at once; dropping
    /// the future gives up the answer, not the write.
    pub async fn update_checkpoint(&self, event: &ReceivedEvent) -> Result<(), Error> {
        self.update_checkpoint_at(event.offset().to_owned(), event.sequence_number())
            .await
    }

    /// Writes a checkpoint after the event at `offset` and
    /// `sequence_number`.
    ///
    /// Cancellation: as [`update_checkpoint`](Self::update_checkpoint).
    pub async fn update_checkpoint_at(
        &self,
        offset: impl Into<String>,
        sequence_number: i64,
    ) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .unbounded_send(Command::Checkpoint {
                partition_id: self.partition_id.clone(),
                offset: offset.into(),
                sequence_number,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}
