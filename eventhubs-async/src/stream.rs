//! [`EventStream`]: one partition receiver as a [`Stream`] of events,
//! with a helper to checkpoint them and an async `close`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::stream::{Stream, StreamExt};

use eventhubs_proto::client::ReceivedEvent;

use crate::driver::{Command, Consumed, ReceiverMsg, Ticket};
use crate::error::Error;
use crate::persist::{Checkpoint, CheckpointPersister};
use crate::runtime::BoxFuture;

/// The checkpoint of a received event: where to resume after it (Go
/// `Event.GetCheckpoint`).
pub fn checkpoint_of(event: &ReceivedEvent) -> Checkpoint {
    Checkpoint::new(
        event.offset().to_owned(),
        event.sequence_number(),
        Some(event.enqueued_time().millis()),
    )
}

/// `event.checkpoint()`, as the Go library's `Event.GetCheckpoint`.
pub trait EventCheckpoint {
    /// Where to resume after this event.
    fn checkpoint(&self) -> Checkpoint;
}

impl EventCheckpoint for ReceivedEvent {
    fn checkpoint(&self) -> Checkpoint {
        checkpoint_of(self)
    }
}

/// Where a receiver's checkpoints go: the hub's persister, under the
/// receiver's namespace, hub, consumer group and partition.
#[derive(Clone)]
pub(crate) struct CheckpointTarget {
    pub(crate) persister: Arc<dyn CheckpointPersister>,
    pub(crate) namespace: String,
    pub(crate) hub: String,
    pub(crate) consumer_group: String,
    pub(crate) partition_id: String,
}

impl CheckpointTarget {
    pub(crate) async fn write(&self, checkpoint: &Checkpoint) -> Result<(), Error> {
        self.persister
            .write(
                &self.namespace,
                &self.hub,
                &self.consumer_group,
                &self.partition_id,
                checkpoint,
            )
            .await
            .map_err(Error::from)
    }
}

/// A sleep of the hub's runtime.
pub(crate) type Sleeper = Arc<dyn Fn(Duration) -> BoxFuture<()> + Send + Sync>;

/// The events of one partition receiver, as a [`Stream`], made by
/// [`Hub::receiver`](crate::Hub::receiver).
///
/// Each event taken is reported to the client core, which decides when to
/// give the service credit for more (a quarter of the prefetch at a
/// time). The stream ends with an error when the receiver fails (after
/// the retry policy), with `None` when the hub closes.
///
/// Dropping it closes the receiver: its link is detached in the
/// background. [`close`](Self::close) does the same and waits until the
/// link is gone.
pub struct EventStream {
    pub(crate) ticket: Ticket,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) events: mpsc::UnboundedReceiver<ReceiverMsg>,
    /// Events taken that the driver has not collected yet.
    pub(crate) consumed: Consumed,
    pub(crate) finished: bool,
    /// Events the driver handed over and the user has not taken yet (the
    /// driver sends them a pass at a time).
    pub(crate) buffered: VecDeque<ReceivedEvent>,
    pub(crate) checkpoints: CheckpointTarget,
    pub(crate) sleep: Sleeper,
    pub(crate) close_timeout: Duration,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("partition_id", &self.checkpoints.partition_id)
            .field("consumer_group", &self.checkpoints.consumer_group)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// The partition.
    pub fn partition_id(&self) -> &str {
        &self.checkpoints.partition_id
    }

    /// The consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.checkpoints.consumer_group
    }

    /// Writes `event`'s checkpoint ([`checkpoint_of`]) to the hub's
    /// persister ([`HubOptions::with_checkpoint_persister`](crate::HubOptions::with_checkpoint_persister)),
    /// under this receiver's consumer group and partition: a later
    /// receiver with no start position resumes after it.
    ///
    /// Cancellation: dropping the future before it completes may leave the
    /// checkpoint written or not (a file write already handed to the
    /// blocking pool finishes there).
    pub async fn checkpoint(&self, event: &ReceivedEvent) -> Result<(), Error> {
        self.checkpoints.write(&checkpoint_of(event)).await
    }

    /// Closes the receiver and waits until its link is detached (the
    /// service answered the detach, or the connection is gone), at most
    /// the hub's operation timeout.
    ///
    /// Cancellation: dropping the future before it completes still closes
    /// the receiver; only the wait is given up.
    pub async fn close(mut self) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .unbounded_send(Command::CloseReceiver {
                ticket: self.ticket,
                detached: Some(tx),
            })
            .is_err()
        {
            return Ok(()); // the hub is gone, and its connection with it
        }
        let timeout = (self.sleep)(self.close_timeout);
        match futures_util::future::select(rx, timeout).await {
            futures_util::future::Either::Left(_) => Ok(()),
            futures_util::future::Either::Right(_) => Err(Error::Timeout {
                attempts: 0,
                last: None,
            }),
        }
    }

    /// Counts one event taken; the driver hears of it when the count
    /// leaves zero, and collects the count when it runs.
    fn took_one(&self) {
        if self.consumed.fetch_add(1, Ordering::AcqRel) == 0 {
            let _ = self.commands.unbounded_send(Command::Consumed {
                ticket: self.ticket,
            });
        }
    }

    /// Waits for the service to accept the receiver.
    pub(crate) async fn opened(&mut self) -> Result<(), Error> {
        match self.events.next().await {
            Some(ReceiverMsg::Opened) => Ok(()),
            Some(ReceiverMsg::Closed(e)) => {
                self.finished = true;
                Err(e.unwrap_or(Error::Closed))
            }
            None => {
                self.finished = true;
                Err(Error::Closed)
            }
            // The core announces a receiver before its first event; should
            // an event come first all the same, it is kept, not lost.
            Some(ReceiverMsg::Events(events)) => {
                self.buffered.extend(events);
                Ok(())
            }
        }
    }
}

impl Stream for EventStream {
    type Item = Result<ReceivedEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.buffered.pop_front() {
                self.took_one();
                return Poll::Ready(Some(Ok(e)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            match self.events.poll_next_unpin(cx) {
                Poll::Ready(Some(ReceiverMsg::Events(events))) => {
                    if self.buffered.is_empty() {
                        self.buffered = events.into();
                    } else {
                        self.buffered.extend(events);
                    }
                }
                Poll::Ready(Some(ReceiverMsg::Opened)) => continue,
                Poll::Ready(Some(ReceiverMsg::Closed(e))) => {
                    self.finished = true;
                    return Poll::Ready(e.map(Err));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.commands.unbounded_send(Command::CloseReceiver {
                ticket: self.ticket,
                detached: None,
            });
        }
    }
}
