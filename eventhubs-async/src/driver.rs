//! The task that pumps the sans-IO [`Client`]: commands from handles in,
//! transports opened and closed as the client says, bytes between the
//! socket and the client, tokens fetched when asked for, one timer at the
//! client's deadline, and the client's events out to the futures and
//! streams waiting on them. It decides nothing the client could.

use std::collections::HashMap;
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
    Client, ClientError, ClientEvent, ConnectFailure, ConnectFailureKind, EventData,
    HubRuntimeInformation, Now, OpId, PartitionRuntimeInformation, ReceivedEvent, ReceiverId,
    ReceiverOptions, SendTarget, TransportId,
};
use eventhubs_proto::eventhubs::sas::{Token, TokenError};

use crate::credentials::TokenProvider;
use crate::runtime::{BoxFuture, ResolveError, Runtime};
use crate::transport::{establish, BoxedStream, Endpoint, TransportError, TransportOptions};

/// What a receiver's stream gets.
pub(crate) enum ReceiverMsg {
    Opened,
    Event(Box<ReceivedEvent>),
    Closed(Option<ClientError>),
}

/// How many events a receiver's stream has taken since the driver last
/// looked; the stream tells the driver when it goes from none to some.
pub(crate) type Consumed = Arc<AtomicU32>;

/// A request from a handle to the driver.
pub(crate) enum Command {
    Send {
        events: Vec<EventData>,
        target: SendTarget,
        deadline: Instant,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    HubInfo {
        deadline: Instant,
        reply: oneshot::Sender<Result<HubRuntimeInformation, ClientError>>,
    },
    PartitionInfo {
        partition: String,
        deadline: Instant,
        reply: oneshot::Sender<Result<PartitionRuntimeInformation, ClientError>>,
    },
    OpenReceiver {
        options: ReceiverOptions,
        events: mpsc::UnboundedSender<ReceiverMsg>,
        consumed: Consumed,
        reply: oneshot::Sender<Result<ReceiverId, ClientError>>,
    },
    /// The receiver's stream took events (counted in its [`Consumed`]).
    Consumed {
        receiver: ReceiverId,
    },
    CloseReceiver {
        receiver: ReceiverId,
    },
    Close {
        deadline: Instant,
        reply: oneshot::Sender<()>,
    },
}

enum Reply {
    Send(oneshot::Sender<Result<(), ClientError>>),
    Hub(oneshot::Sender<Result<HubRuntimeInformation, ClientError>>),
    Partition(oneshot::Sender<Result<PartitionRuntimeInformation, ClientError>>),
}

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

type Connecting = BoxFuture<Result<BoxedStream, ConnectFailure>>;

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
            .map_err(|e| tcp_failure(&dest, &e))?;
        establish(tcp, &host, &transport)
            .await
            .map_err(|e| transport_failure(&e))
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
    replies: HashMap<OpId, Reply>,
    receivers: HashMap<ReceiverId, (mpsc::UnboundedSender<ReceiverMsg>, Consumed)>,
    close_waiters: Vec<oneshot::Sender<()>>,
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
            read_buf: vec![0; 64 * 1024],
            timer: None,
            token_fetches: FuturesUnordered::new(),
            replies: HashMap::new(),
            receivers: HashMap::new(),
            close_waiters: Vec::new(),
        }
    }

    fn command(&mut self, now: Now, cmd: Command) {
        match cmd {
            Command::Send {
                events,
                target,
                deadline,
                reply,
            } => match self.client.send(now, events, target, deadline) {
                Ok(op) => drop(self.replies.insert(op, Reply::Send(reply))),
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::HubInfo { deadline, reply } => {
                match self.client.get_hub_information(now, deadline) {
                    Ok(op) => drop(self.replies.insert(op, Reply::Hub(reply))),
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
            Command::PartitionInfo {
                partition,
                deadline,
                reply,
            } => match self
                .client
                .get_partition_information(now, partition, deadline)
            {
                Ok(op) => drop(self.replies.insert(op, Reply::Partition(reply))),
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::OpenReceiver {
                options,
                events,
                consumed,
                reply,
            } => match self.client.open_receiver(now, options) {
                Ok(id) => {
                    self.receivers.insert(id, (events, consumed));
                    let _ = reply.send(Ok(id));
                }
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::Consumed { receiver } => {
                if let Some((_, consumed)) = self.receivers.get(&receiver) {
                    let n = consumed.swap(0, Ordering::AcqRel);
                    self.client.consumed(now, receiver, n);
                }
            }
            Command::CloseReceiver { receiver } => {
                self.receivers.remove(&receiver);
                self.client.close_receiver(now, receiver);
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
                if let Some(Reply::Send(r)) = self.replies.remove(&op) {
                    let _ = r.send(result);
                }
            }
            ClientEvent::HubInformation { op, result } => {
                if let Some(Reply::Hub(r)) = self.replies.remove(&op) {
                    let _ = r.send(result);
                }
            }
            ClientEvent::PartitionInformation { op, result } => {
                if let Some(Reply::Partition(r)) = self.replies.remove(&op) {
                    let _ = r.send(result);
                }
            }
            ClientEvent::ReceiverOpened { receiver } => {
                if let Some((tx, _)) = self.receivers.get(&receiver) {
                    let _ = tx.unbounded_send(ReceiverMsg::Opened);
                }
            }
            ClientEvent::Received { receiver, event } => {
                let gone = self
                    .receivers
                    .get(&receiver)
                    .is_some_and(|(tx, _)| tx.unbounded_send(ReceiverMsg::Event(event)).is_err());
                if gone {
                    self.receivers.remove(&receiver);
                    self.client.close_receiver(now, receiver);
                }
            }
            ClientEvent::ReceiverClosed { receiver, error } => {
                if let Some((tx, _)) = self.receivers.remove(&receiver) {
                    let _ = tx.unbounded_send(ReceiverMsg::Closed(error));
                }
            }
            ClientEvent::Closed => {
                info!(host = %self.host, "hub closed");
                for (_, r) in self.replies.drain() {
                    match r {
                        Reply::Send(r) => drop(r.send(Err(ClientError::Closed))),
                        Reply::Hub(r) => drop(r.send(Err(ClientError::Closed))),
                        Reply::Partition(r) => drop(r.send(Err(ClientError::Closed))),
                    }
                }
                for (_, (tx, _)) in self.receivers.drain() {
                    let _ = tx.unbounded_send(ReceiverMsg::Closed(None));
                }
            }
            _ => {}
        }
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
            Err(failure) => self.client.connect_failed(now, id, failure),
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
            Poll::Ready(Err(e)) => format!("reading from the transport failed: {e}"),
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
                Poll::Ready(Ok(0)) => failed = Some("the transport took no bytes".to_owned()),
                Poll::Ready(Ok(n)) => {
                    self.out_pos += n;
                    progress = true;
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    failed = Some(format!("writing to the transport failed: {e}"))
                }
                Poll::Pending => {}
            }
            break;
        }
        if failed.is_none() && self.out_pos == self.out.len() {
            if let Poll::Ready(Err(e)) = Pin::new(&mut *s).poll_flush(cx) {
                failed = Some(format!("flushing the transport failed: {e}"));
            }
        }
        if let Some(cause) = failed {
            self.stream = None;
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
        progress
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
