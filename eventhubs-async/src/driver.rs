//! The task that pumps the sans-IO [`Client`]: commands from handles in,
//! transports opened and closed as the client says, bytes between the
//! socket and the client, tokens fetched when asked for, one timer at the
//! client's deadline, and the client's events out to the futures and
//! streams waiting on them. It decides nothing the client could.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_channel::{mpsc, oneshot};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tracing::{debug, info, warn};

use eventhubs_proto::client::{
    Cancelled, Client, ClientError, ClientEvent, ConnectFailure, ConnectFailureKind, EventBatch,
    EventData, HubRuntimeInformation, Now, OpId, PartitionPublishingState,
    PartitionRuntimeInformation, ReceivedEvent, ReceiverId, ReceiverOptions, SendTarget,
    TransportId,
};
use eventhubs_proto::eventhubs::sas::{Token, TokenError};

use crate::credentials::TokenProvider;
use crate::error::{Cause, Error};
use crate::runtime::{BoxFuture, ResolveError, Runtime};
use crate::transport::{establish, BoxedStream, Endpoint, TransportError, TransportOptions};

/// What a receiver's stream gets.
pub(crate) enum ReceiverMsg {
    Opened,
    /// The events of one pass of the driver, in order: one message (and
    /// one wake of the stream's task) per pass, not per event.
    Events(Vec<ReceivedEvent>),
    Closed(Option<Error>),
}

/// How many events a receiver's stream has taken since the driver last
/// looked; the stream tells the driver when it goes from none to some.
pub(crate) type Consumed = Arc<AtomicU32>;

/// Names a request of a handle, so that a handle dropped before its answer
/// can cancel it ([`Command::Cancel`]).
pub(crate) type Ticket = u64;

/// A one-shot answer to a handle.
pub(crate) type Answer<T> = oneshot::Sender<Result<T, Error>>;

/// A request from a handle to the driver.
pub(crate) enum Command {
    Send {
        ticket: Ticket,
        events: Vec<EventData>,
        target: SendTarget,
        deadline: Instant,
        reply: Answer<()>,
    },
    /// A send routed on the client to `partition` (keys kept).
    SendRouted {
        ticket: Ticket,
        events: Vec<EventData>,
        partition: String,
        deadline: Instant,
        reply: Answer<()>,
    },
    /// The idempotent publishing state of every partition.
    PublishingStates {
        reply: oneshot::Sender<BTreeMap<String, PartitionPublishingState>>,
    },
    SendBatch {
        ticket: Ticket,
        batch: Box<EventBatch>,
        target: SendTarget,
        deadline: Instant,
        reply: Answer<()>,
    },
    OpenSender {
        ticket: Ticket,
        target: SendTarget,
        deadline: Instant,
        reply: Answer<u64>,
    },
    HubInfo {
        ticket: Ticket,
        deadline: Instant,
        reply: Answer<HubRuntimeInformation>,
    },
    PartitionInfo {
        ticket: Ticket,
        partition: String,
        deadline: Instant,
        reply: Answer<PartitionRuntimeInformation>,
    },
    OpenReceiver {
        ticket: Ticket,
        options: ReceiverOptions,
        events: mpsc::UnboundedSender<ReceiverMsg>,
        consumed: Consumed,
    },
    /// The receiver's stream took events (counted in its [`Consumed`]).
    Consumed { ticket: Ticket },
    /// Closes a receiver; `detached` hears when its link is gone.
    CloseReceiver {
        ticket: Ticket,
        detached: Option<oneshot::Sender<()>>,
    },
    /// The handle no longer waits for the answer to `ticket`.
    Cancel { ticket: Ticket },
    Close {
        deadline: Instant,
        reply: oneshot::Sender<()>,
    },
}

enum Reply {
    Send(Answer<()>),
    Sender(Answer<u64>),
    Hub(Answer<HubRuntimeInformation>),
    Partition(Answer<PartitionRuntimeInformation>),
}

impl Reply {
    fn fail(self, e: Error) {
        match self {
            Reply::Send(r) => drop(r.send(Err(e))),
            Reply::Sender(r) => drop(r.send(Err(e))),
            Reply::Hub(r) => drop(r.send(Err(e))),
            Reply::Partition(r) => drop(r.send(Err(e))),
        }
    }
}

/// A receiver's stream, as the driver knows it.
struct ReceiverEntry {
    ticket: Ticket,
    events: mpsc::UnboundedSender<ReceiverMsg>,
    consumed: Consumed,
    /// Events of this pass not yet sent to the stream.
    pending: Vec<ReceivedEvent>,
}

impl ReceiverEntry {
    /// Sends the events of this pass; false when the stream is gone.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let mut events = std::mem::take(&mut self.pending);
        // A stream may hold up to its prefetch unread: the room the vector
        // grew into goes back (an allocator shrinks a block in place).
        events.shrink_to_fit();
        self.events
            .unbounded_send(ReceiverMsg::Events(events))
            .is_ok()
    }
}

/// Typed transport causes kept, so many.
const CAUSES_KEPT: usize = 16;

/// The wall clock and the monotonic clock, read together.
pub(crate) fn now() -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Now {
        instant: Instant::now(),
        unix_ms,
    }
}

type Connecting = BoxFuture<Result<BoxedStream, (ConnectFailure, Cause)>>;

/// Connects TCP with the runtime, then sets up TLS/WebSocket. The client
/// bounds it with its connect timer.
fn connect<R: Runtime>(rt: &R, host: String, transport: Arc<TransportOptions>) -> Connecting {
    let rt = rt.clone();
    Box::pin(async move {
        let dest = transport.destination(&host);
        debug!(host = %host, destination = %dest, kind = ?transport.kind(), "connecting");
        let tcp = rt
            .connect_tcp(dest.host.clone(), dest.port)
            .await
            .map_err(|e| (tcp_failure(&dest, &e), Arc::new(e) as Cause))?;
        establish(tcp, &host, &transport)
            .await
            .map_err(|e| (transport_failure(&e), Arc::new(e) as Cause))
    })
}

/// A TCP connect error as the client's typed failure.
fn tcp_failure(dest: &Endpoint, e: &io::Error) -> ConnectFailure {
    use io::ErrorKind::*;
    if let Some(r) = ResolveError::find(e) {
        return ConnectFailure::new(ConnectFailureKind::Dns, r.to_string());
    }
    let (kind, what) = match e.kind() {
        ConnectionRefused => (ConnectFailureKind::Refused, "refused"),
        ConnectionReset | ConnectionAborted => (ConnectFailureKind::Reset, "reset"),
        TimedOut => (ConnectFailureKind::TimedOut, "timed out"),
        _ => (ConnectFailureKind::Io, "failed"),
    };
    ConnectFailure::new(kind, format!("TCP connect to {dest} {what}: {e}"))
}

/// A transport set-up error as the client's typed failure.
fn transport_failure(e: &TransportError) -> ConnectFailure {
    use ConnectFailureKind as K;
    let kind = match e {
        TransportError::InvalidHost { .. } => K::InvalidHost,
        TransportError::InvalidTrustedCertificate { .. } | TransportError::TlsConfig { .. } => {
            K::TlsConfig
        }
        TransportError::CertificateRejected { .. } => K::CertificateRejected,
        TransportError::TlsHandshake { source, .. } => match source.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => K::Reset,
            _ => K::Io,
        },
        TransportError::WebSocketRefused { .. } => K::WebSocketRefused,
        TransportError::SubprotocolNotSelected { .. } => K::SubprotocolRefused,
        _ => K::Io,
    };
    ConnectFailure::new(kind, e.to_string())
}

/// A transport let go: its last bytes are written until `deadline`.
struct Retiring {
    stream: BoxedStream,
    bytes: Vec<u8>,
    written: usize,
    deadline: Instant,
}

impl Retiring {
    /// Writes and closes; true while there is more to do.
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        while self.written < self.bytes.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.bytes[self.written..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.written += n,
                Poll::Pending => return true,
                _ => return false,
            }
        }
        !matches!(Pin::new(&mut self.stream).poll_close(cx), Poll::Ready(_))
    }
}

/// The driver future. Spawned once per hub.
pub(crate) struct Driver<R: Runtime> {
    rt: R,
    client: Client,
    host: String,
    transport: Arc<TransportOptions>,
    tokens: Arc<dyn TokenProvider>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_done: bool,
    connecting: Option<(TransportId, Connecting)>,
    stream: Option<(TransportId, BoxedStream)>,
    retiring: Vec<Retiring>,
    out: Vec<u8>,
    out_pos: usize,
    read_buf: Vec<u8>,
    timer: Option<(Instant, BoxFuture<()>)>,
    token_fetches: FuturesUnordered<BoxFuture<(String, Result<Token, TokenError>)>>,
    replies: HashMap<OpId, (Ticket, Reply)>,
    /// Operations and receivers by the ticket of the handle that asked.
    ops_by_ticket: HashMap<Ticket, OpId>,
    receivers_by_ticket: HashMap<Ticket, ReceiverId>,
    receivers: HashMap<ReceiverId, ReceiverEntry>,
    /// Receivers with events pending in this pass.
    pending_receivers: Vec<ReceiverId>,
    /// Handles waiting for a closed receiver's link to be gone.
    detach_waiters: HashMap<ReceiverId, Vec<oneshot::Sender<()>>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    /// The typed causes of the last transport failures, for the errors
    /// that name them.
    causes: VecDeque<(TransportId, Cause)>,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(
        rt: R,
        client: Client,
        transport: TransportOptions,
        tokens: Arc<dyn TokenProvider>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let host = client.options().host.clone();
        Driver {
            rt,
            client,
            host,
            transport: Arc::new(transport),
            tokens,
            commands,
            commands_done: false,
            connecting: None,
            stream: None,
            retiring: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            read_buf: vec![0; 256 * 1024],
            timer: None,
            token_fetches: FuturesUnordered::new(),
            replies: HashMap::new(),
            ops_by_ticket: HashMap::new(),
            receivers_by_ticket: HashMap::new(),
            receivers: HashMap::new(),
            pending_receivers: Vec::new(),
            detach_waiters: HashMap::new(),
            close_waiters: Vec::new(),
            causes: VecDeque::new(),
        }
    }

    /// The core's error as the user's, with the typed transport causes
    /// kept for it.
    fn error(&self, e: ClientError) -> Error {
        let causes = |t: u64| {
            self.causes
                .iter()
                .rev()
                .find(|(id, _)| id.0 == t)
                .map(|(_, c)| c.clone())
        };
        Error::from_client(e, &causes)
    }

    fn keep_cause(&mut self, id: TransportId, cause: Cause) {
        if self.causes.len() == CAUSES_KEPT {
            self.causes.pop_front();
        }
        self.causes.push_back((id, cause));
    }

    /// Remembers the answer to `ticket` for operation `op`, or answers
    /// with the error now.
    fn pending(&mut self, ticket: Ticket, op: Result<OpId, ClientError>, reply: Reply) {
        match op {
            Ok(op) => {
                self.ops_by_ticket.insert(ticket, op);
                self.replies.insert(op, (ticket, reply));
            }
            Err(e) => reply.fail(self.error(e)),
        }
    }

    /// The answer to operation `op`, if a handle still waits for it.
    fn answer(&mut self, op: OpId) -> Option<Reply> {
        let (ticket, reply) = self.replies.remove(&op)?;
        self.ops_by_ticket.remove(&ticket);
        Some(reply)
    }

    fn close_receiver(&mut self, now: Now, ticket: Ticket, detached: Option<oneshot::Sender<()>>) {
        let Some(id) = self.receivers_by_ticket.remove(&ticket) else {
            // Never opened, or gone already: nothing is attached.
            if let Some(d) = detached {
                let _ = d.send(());
            }
            return;
        };
        self.receivers.remove(&id);
        if let Some(d) = detached {
            self.detach_waiters.entry(id).or_default().push(d);
        }
        self.client.close_receiver(now, id);
    }

    fn command(&mut self, now: Now, cmd: Command) {
        match cmd {
            Command::Send {
                ticket,
                events,
                target,
                deadline,
                reply,
            } => {
                let op = self.client.send(now, events, target, deadline);
                self.pending(ticket, op, Reply::Send(reply));
            }
            Command::SendRouted {
                ticket,
                events,
                partition,
                deadline,
                reply,
            } => {
                let op = self.client.send_routed(now, events, partition, deadline);
                self.pending(ticket, op, Reply::Send(reply));
            }
            Command::PublishingStates { reply } => {
                let _ = reply.send(self.client.partition_publishing_states());
            }
            Command::SendBatch {
                ticket,
                batch,
                target,
                deadline,
                reply,
            } => {
                let op = self.client.send_batch(now, &batch, target, deadline);
                self.pending(ticket, op, Reply::Send(reply));
            }
            Command::OpenSender {
                ticket,
                target,
                deadline,
                reply,
            } => {
                let op = self.client.open_sender(now, target, deadline);
                self.pending(ticket, op, Reply::Sender(reply));
            }
            Command::HubInfo {
                ticket,
                deadline,
                reply,
            } => {
                let op = self.client.get_hub_information(now, deadline);
                self.pending(ticket, op, Reply::Hub(reply));
            }
            Command::PartitionInfo {
                ticket,
                partition,
                deadline,
                reply,
            } => {
                let op = self
                    .client
                    .get_partition_information(now, partition, deadline);
                self.pending(ticket, op, Reply::Partition(reply));
            }
            Command::OpenReceiver {
                ticket,
                options,
                events,
                consumed,
            } => match self.client.open_receiver(now, options) {
                Ok(id) => {
                    self.receivers_by_ticket.insert(ticket, id);
                    self.receivers.insert(
                        id,
                        ReceiverEntry {
                            ticket,
                            events,
                            consumed,
                            pending: Vec::new(),
                        },
                    );
                }
                Err(e) => drop(events.unbounded_send(ReceiverMsg::Closed(Some(self.error(e))))),
            },
            Command::Consumed { ticket } => {
                let Some(id) = self.receivers_by_ticket.get(&ticket).copied() else {
                    return;
                };
                if let Some(r) = self.receivers.get(&id) {
                    let n = r.consumed.swap(0, Ordering::AcqRel);
                    self.client.consumed(now, id, n);
                }
            }
            Command::CloseReceiver { ticket, detached } => {
                self.close_receiver(now, ticket, detached)
            }
            Command::Cancel { ticket } => {
                if let Some(op) = self.ops_by_ticket.get(&ticket).copied() {
                    match self.client.cancel(now, op) {
                        Cancelled::Removed | Cancelled::Unknown => {
                            self.answer(op);
                        }
                        // It goes on; its answer reaches no one.
                        _ => {}
                    }
                } else {
                    self.close_receiver(now, ticket, None);
                }
            }
            Command::Close { deadline, reply } => {
                self.close_waiters.push(reply);
                self.client.close(now, deadline);
            }
        }
    }

    fn event(&mut self, now: Now, ev: ClientEvent) {
        match ev {
            ClientEvent::Connect(id) => {
                let fut = connect(&self.rt, self.host.clone(), self.transport.clone());
                self.connecting = Some((id, fut));
            }
            ClientEvent::Disconnect {
                transport,
                final_bytes,
                deadline,
            } => self.retire(transport, final_bytes, deadline),
            ClientEvent::TokenRequired { audience } => {
                let fut = self.tokens.token(&audience);
                self.token_fetches
                    .push(Box::pin(async move { (audience, fut.await) }));
            }
            ClientEvent::SendComplete { op, result } => {
                if let Some(Reply::Send(r)) = self.answer(op) {
                    let _ = r.send(result.map_err(|e| self.error(e)));
                }
            }
            ClientEvent::SenderOpened { op, result } => {
                if let Some(Reply::Sender(r)) = self.answer(op) {
                    let _ = r.send(result.map_err(|e| self.error(e)));
                }
            }
            ClientEvent::HubInformation { op, result } => {
                if let Some(Reply::Hub(r)) = self.answer(op) {
                    let _ = r.send(result.map_err(|e| self.error(e)));
                }
            }
            ClientEvent::PartitionInformation { op, result } => {
                if let Some(Reply::Partition(r)) = self.answer(op) {
                    let _ = r.send(result.map_err(|e| self.error(e)));
                }
            }
            ClientEvent::ReceiverOpened { receiver } => {
                let gone = self
                    .receivers
                    .get(&receiver)
                    .is_some_and(|r| r.events.unbounded_send(ReceiverMsg::Opened).is_err());
                if gone {
                    self.receiver_gone(now, receiver);
                }
            }
            ClientEvent::Received { receiver, event } => {
                // Kept for the end of the pass (`flush_received`).
                if let Some(r) = self.receivers.get_mut(&receiver) {
                    if r.pending.is_empty() {
                        self.pending_receivers.push(receiver);
                        // A read brings dozens: fewer moves while growing,
                        // and nothing held while idle.
                        r.pending.reserve(32);
                    }
                    r.pending.push(event);
                }
            }
            ClientEvent::ReceiverClosed { receiver, error } => {
                if let Some(mut r) = self.receivers.remove(&receiver) {
                    self.receivers_by_ticket.remove(&r.ticket);
                    let error = error.map(|e| self.error(e));
                    // Its last events go before the end.
                    if r.flush() {
                        let _ = r.events.unbounded_send(ReceiverMsg::Closed(error));
                    }
                }
            }
            ClientEvent::ReceiverDetached { receiver } => {
                for w in self.detach_waiters.remove(&receiver).unwrap_or_default() {
                    let _ = w.send(());
                }
            }
            ClientEvent::Closed => {
                info!(host = %self.host, "hub closed");
                for (_, (_, r)) in self.replies.drain() {
                    r.fail(Error::Closed);
                }
                self.ops_by_ticket.clear();
                self.receivers_by_ticket.clear();
                for (_, mut r) in self.receivers.drain() {
                    if r.flush() {
                        let _ = r.events.unbounded_send(ReceiverMsg::Closed(None));
                    }
                }
                for (_, ws) in self.detach_waiters.drain() {
                    for w in ws {
                        let _ = w.send(());
                    }
                }
            }
            _ => {}
        }
    }

    /// The stream of `receiver` is gone: its link is detached.
    fn receiver_gone(&mut self, now: Now, receiver: ReceiverId) {
        if let Some(r) = self.receivers.remove(&receiver) {
            self.receivers_by_ticket.remove(&r.ticket);
        }
        self.client.close_receiver(now, receiver);
    }

    /// Lets transport `id` go: what was not written of its bytes, then its
    /// last bytes, until `deadline`.
    fn retire(&mut self, id: TransportId, final_bytes: Vec<u8>, deadline: Instant) {
        if self.connecting.as_ref().is_some_and(|c| c.0 == id) {
            self.connecting = None;
        }
        if self.stream.as_ref().is_none_or(|s| s.0 != id) {
            return;
        }
        let Some((_, stream)) = self.stream.take() else {
            return;
        };
        debug!(transport = id.0, "closing transport");
        let mut bytes = self.out.split_off(self.out_pos);
        bytes.extend_from_slice(&final_bytes);
        self.out.clear();
        self.out_pos = 0;
        self.retiring.push(Retiring {
            stream,
            bytes,
            written: 0,
            deadline,
        });
    }

    fn poll_commands(&mut self, cx: &mut Context<'_>, now: Now) -> bool {
        let mut progress = false;
        while !self.commands_done {
            match self.commands.poll_next_unpin(cx) {
                Poll::Ready(Some(cmd)) => self.command(now, cmd),
                Poll::Ready(None) => {
                    // Every handle is gone.
                    self.commands_done = true;
                    self.client.handles_dropped(now);
                }
                Poll::Pending => break,
            }
            progress = true;
        }
        progress
    }

    fn poll_connecting(&mut self, cx: &mut Context<'_>, now: Now) -> bool {
        let Some((id, fut)) = self.connecting.as_mut() else {
            return false;
        };
        let Poll::Ready(r) = fut.poll_unpin(cx) else {
            return false;
        };
        let id = *id;
        self.connecting = None;
        match r {
            Ok(stream) => {
                self.stream = Some((id, stream));
                self.out.clear();
                self.out_pos = 0;
                self.client.connected(now, id);
            }
            Err((failure, cause)) => {
                self.keep_cause(id, cause);
                self.client.connect_failed(now, id, failure);
            }
        }
        true
    }

    fn poll_tokens(&mut self, cx: &mut Context<'_>, now: Now) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some((audience, token))) = self.token_fetches.poll_next_unpin(cx) {
            if let Err(e) = &token {
                warn!(audience = %audience, error = %e, "token provider failed");
            }
            self.client.supply_token(now, &audience, token);
            progress = true;
        }
        progress
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, now: Now) -> bool {
        let Some((id, s)) = self.stream.as_mut() else {
            return false;
        };
        let id = *id;
        let cause = match Pin::new(s).poll_read(cx, &mut self.read_buf) {
            Poll::Pending => return false,
            Poll::Ready(Ok(n)) if n > 0 => {
                self.client.handle_input(now, &self.read_buf[..n]);
                return true;
            }
            Poll::Ready(Ok(_)) => "the service closed the transport".to_owned(),
            Poll::Ready(Err(e)) => {
                let cause = format!("reading from the transport failed: {e}");
                self.keep_cause(id, Arc::new(e));
                cause
            }
        };
        self.stream = None;
        self.client.disconnected(now, id, &cause);
        true
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, now: Now) -> bool {
        let Some((id, s)) = self.stream.as_mut() else {
            return false;
        };
        let id = *id;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            let _ = self.client.poll_transmit(now, &mut self.out);
        }
        let mut progress = false;
        let mut failed = None;
        while self.out_pos < self.out.len() {
            match Pin::new(&mut *s).poll_write(cx, &self.out[self.out_pos..]) {
                Poll::Ready(Ok(0)) => {
                    failed = Some((
                        "the transport took no bytes".to_owned(),
                        io::Error::from(io::ErrorKind::WriteZero),
                    ))
                }
                Poll::Ready(Ok(n)) => {
                    self.out_pos += n;
                    progress = true;
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    failed = Some((format!("writing to the transport failed: {e}"), e))
                }
                Poll::Pending => {}
            }
            break;
        }
        if failed.is_none() && self.out_pos == self.out.len() {
            if let Poll::Ready(Err(e)) = Pin::new(&mut *s).poll_flush(cx) {
                failed = Some((format!("flushing the transport failed: {e}"), e));
            }
        }
        if let Some((cause, e)) = failed {
            self.stream = None;
            self.keep_cause(id, Arc::new(e));
            self.client.disconnected(now, id, &cause);
            progress = true;
        }
        progress
    }

    fn poll_retiring(&mut self, cx: &mut Context<'_>, now: Now) {
        self.retiring.retain_mut(|r| {
            if now.instant >= r.deadline {
                debug!(
                    unwritten = r.bytes.len() - r.written,
                    "transport let go at its deadline"
                );
                return false;
            }
            r.poll(cx)
        });
    }

    /// Sleeps until the client's next deadline (or a retiring transport's).
    /// The armed sleep is kept when the deadline moves later: waking early
    /// costs one pass, a new sleep costs a timer.
    fn poll_timer(&mut self, cx: &mut Context<'_>, now: Now) -> bool {
        let client = self.client.poll_timeout();
        let retiring = self.retiring.iter().map(|r| r.deadline).min();
        let next = match (client, retiring) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(at) = next else {
            return false;
        };
        if client.is_some_and(|t| t <= now.instant) {
            self.client.handle_timeout(now);
            return true;
        }
        if at <= now.instant {
            return true; // a retiring transport's deadline
        }
        if self.timer.as_ref().is_none_or(|(armed, _)| at < *armed) {
            let sleep = self.rt.sleep(at.saturating_duration_since(now.instant));
            self.timer = Some((at, sleep));
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|(_, sleep)| sleep.poll_unpin(cx).is_ready());
        if fired {
            self.timer = None;
        }
        fired
    }

    /// One pass over every source; true when anything happened.
    fn pass(&mut self, cx: &mut Context<'_>) -> bool {
        let now = now();
        let mut progress = self.poll_commands(cx, now);
        progress |= self.poll_connecting(cx, now);
        progress |= self.poll_tokens(cx, now);
        progress |= self.poll_read(cx, now);
        progress |= self.poll_events(now);
        progress |= self.poll_write(cx, now);
        progress |= self.poll_timer(cx, now);
        // What the timers did (a close, a transport let go) is acted on in
        // the same pass, before the retiring transports are written.
        progress |= self.poll_events(now);
        self.poll_retiring(cx, now);
        progress
    }

    fn poll_events(&mut self, now: Now) -> bool {
        let mut progress = false;
        while let Some(ev) = self.client.poll_event() {
            self.event(now, ev);
            progress = true;
        }
        self.flush_received(now);
        progress
    }

    /// Hands each receiver's stream the events of this pass at once.
    fn flush_received(&mut self, now: Now) {
        while let Some(id) = self.pending_receivers.pop() {
            let gone = self.receivers.get_mut(&id).is_some_and(|r| !r.flush());
            if gone {
                self.receiver_gone(now, id);
            }
        }
    }
}

impl<R: Runtime> Future for Driver<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let progress = this.pass(cx);
            if this.client.is_closed() && this.retiring.is_empty() {
                for w in this.close_waiters.drain(..) {
                    let _ = w.send(());
                }
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

impl<R: Runtime> Unpin for Driver<R> {}
