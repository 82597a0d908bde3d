//! [`Hub::receive`](crate::Hub::receive)'s task: a handler per event, in
//! order, with checkpoints written on the chosen cadence by a task of
//! their own (the handler goes on while one is written), and at every
//! stop; and the [`ListenerHandle`] that controls it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_channel::oneshot;
use futures_util::future::{FutureExt, Shared};
use futures_util::stream::StreamExt;
use tracing::{debug, warn};

use eventhubs_proto::client::ReceivedEvent;

use crate::error::{BoxError, Error};
use crate::options::CheckpointCadence;
use crate::persist::Checkpoint;
use crate::runtime::{BoxFuture, Runtime};
use crate::stream::{checkpoint_of, CheckpointTarget, EventStream};

/// Which checkpoint is handled, written, being written, and when the
/// next is due.
struct Cadence {
    cadence: CheckpointCadence,
    /// The last handled event's checkpoint.
    handled: Option<Checkpoint>,
    /// Its sequence number once written (or being written).
    written: Option<i64>,
    /// Events handled since the last write started.
    since: u32,
    /// The interval passed with something unwritten.
    due: bool,
}

impl Cadence {
    fn new(cadence: CheckpointCadence) -> Self {
        Cadence {
            cadence,
            handled: None,
            written: None,
            since: 0,
            due: false,
        }
    }

    fn handled(&mut self, checkpoint: Checkpoint) {
        self.handled = Some(checkpoint);
        self.since = self.since.saturating_add(1);
        if self.cadence.events().is_some_and(|n| self.since >= n) {
            self.due = true;
        }
    }

    /// True when something handled is not written.
    fn unwritten(&self) -> bool {
        self.handled
            .as_ref()
            .is_some_and(|c| self.written != Some(c.sequence_number))
    }

    /// The checkpoint to write now, if one is due.
    fn take_due(&mut self) -> Option<Checkpoint> {
        if !self.due || !self.unwritten() {
            return None;
        }
        self.due = false;
        self.since = 0;
        let c = self.handled.clone()?;
        self.written = Some(c.sequence_number);
        Some(c)
    }

    /// The checkpoint to write at the stop, if the last handled one is
    /// not written yet.
    fn take_final(&mut self) -> Option<Checkpoint> {
        self.due = true;
        self.take_due()
    }
}

/// Events handled in a row before the listener lets other tasks run.
const YIELD_EVERY: u32 = 32;

/// Returns `Pending` once, waking itself: other tasks run meanwhile.
async fn yield_now() {
    let mut yielded = false;
    futures_util::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// What woke the listener. Lives on the stack for one step; boxing the
/// event would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Step {
    Stop,
    Event(Option<Result<ReceivedEvent, Error>>),
    Wrote(Result<(), Error>),
    Tick,
}

/// Runs the listener of [`Hub::receive`](crate::Hub::receive) on `rt`.
pub(crate) fn spawn<R, H, F, E>(
    rt: &R,
    mut stream: EventStream,
    mut handler: H,
    cadence: CheckpointCadence,
) -> Result<ListenerHandle, Error>
where
    R: Runtime,
    H: FnMut(ReceivedEvent) -> F + Send + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let err: Arc<Mutex<Option<Arc<Error>>>> = Arc::new(Mutex::new(None));
    let err2 = err.clone();
    let target = stream.checkpoints.clone();
    let task_rt = rt.clone();
    let task = async move {
        let rt = task_rt;
        let mut state = Cadence::new(cadence);
        let mut writing: Option<oneshot::Receiver<Result<(), Error>>> = None;
        let mut timer: Option<BoxFuture<()>> = None;
        // Events handled since the task last let others run.
        let mut run = 0u32;
        let result: Result<(), Error> = loop {
            if writing.is_none() {
                if let Some(c) = state.take_due() {
                    match start_write(&rt, &target, c) {
                        Ok(w) => writing = Some(w),
                        Err(e) => break Err(e),
                    }
                }
            }
            if timer.is_none() && state.unwritten() {
                if let Some(d) = state.cadence.interval() {
                    timer = Some(rt.sleep(d));
                }
            }
            let step = futures_util::future::poll_fn(|cx| {
                if stop_rx.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Step::Stop);
                }
                if let Some(w) = writing.as_mut() {
                    if let Poll::Ready(r) = w.poll_unpin(cx) {
                        return Poll::Ready(Step::Wrote(r.unwrap_or(Err(Error::Closed))));
                    }
                }
                if let Some(t) = timer.as_mut() {
                    if t.poll_unpin(cx).is_ready() {
                        return Poll::Ready(Step::Tick);
                    }
                }
                stream.poll_next_unpin(cx).map(Step::Event)
            })
            .await;
            match step {
                Step::Stop | Step::Event(None) => break Ok(()),
                Step::Event(Some(Err(e))) => break Err(e),
                Step::Event(Some(Ok(event))) => {
                    let cp = checkpoint_of(&event);
                    if let Err(e) = handler(event).await {
                        break Err(Error::Handler(e.into()));
                    }
                    state.handled(cp);
                    // A long run of events already received never waits:
                    // let the executor run other tasks (a checkpoint
                    // write among them) now and then.
                    run += 1;
                    if run == YIELD_EVERY {
                        run = 0;
                        yield_now().await;
                    }
                }
                Step::Wrote(r) => {
                    writing = None;
                    if let Err(e) = r {
                        break Err(e);
                    }
                }
                Step::Tick => {
                    timer = None;
                    state.due = true;
                }
            }
        };
        // Every stop, whatever its cause, writes the last handled event's
        // checkpoint: the handler succeeded for it.
        if let Some(w) = writing.take() {
            if let Ok(Err(e)) = w.await {
                warn!(error = %e, "checkpoint write failed");
            }
        }
        let mut result = result;
        if let Some(c) = state.take_final() {
            if let Err(e) = target.write(&c).await {
                warn!(error = %e, "final checkpoint write failed");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        if let Err(e) = result {
            debug!(error = %e, "listener stopped");
            *err2.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(e));
        }
        if let Err(e) = stream.close().await {
            debug!(error = %e, "receiver did not detach in time");
        }
        let _ = done_tx.send(());
    };
    rt.spawn(Box::pin(task)).map_err(Error::Runtime)?;
    Ok(ListenerHandle {
        stop: Mutex::new(Some(stop_tx)),
        done: done_rx.shared(),
        err,
    })
}

/// Writes `c` in a task of its own, so that the handler goes on meanwhile.
fn start_write<R: Runtime>(
    rt: &R,
    target: &CheckpointTarget,
    c: Checkpoint,
) -> Result<oneshot::Receiver<Result<(), Error>>, Error> {
    let (tx, rx) = oneshot::channel();
    let target = target.clone();
    rt.spawn(Box::pin(async move {
        let _ = tx.send(target.write(&c).await);
    }))
    .map_err(Error::Runtime)?;
    Ok(rx)
}

/// Controls a listener started by [`Hub::receive`](crate::Hub::receive)
/// (Go `ListenerHandle`). Dropping it leaves the listener running until
/// the hub closes; [`close`](Self::close) stops it.
pub struct ListenerHandle {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    done: Shared<oneshot::Receiver<()>>,
    err: Arc<Mutex<Option<Arc<Error>>>>,
}

impl std::fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHandle").finish_non_exhaustive()
    }
}

impl ListenerHandle {
    /// Stops the listener and waits until it has stopped: the event being
    /// handled finishes, the last handled event's checkpoint is written,
    /// and the receiver's link is detached (Go `ListenerHandle.Close`).
    /// Returns the error that stopped it earlier, if one did.
    ///
    /// Cancellation: dropping the future before it completes still stops
    /// the listener; only the wait is given up.
    pub async fn close(&self) -> Result<(), Arc<Error>> {
        if let Some(s) = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = s.send(());
        }
        let _ = self.done.clone().await;
        match self.err() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Completes when the listener has stopped, for whatever reason (Go
    /// `ListenerHandle.Done`). Dropping it changes nothing.
    pub fn done(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let d = self.done.clone();
        async move {
            let _ = d.await;
        }
    }

    /// The error that stopped the listener, once it has stopped with one
    /// (Go `ListenerHandle.Err`): a handler's error as
    /// [`Error::Handler`], a receiver's failure, a checkpoint that could
    /// not be written.
    pub fn err(&self) -> Option<Arc<Error>> {
        self.err
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
