//! The task that drives the sans-IO [`Client`]: it owns the transport,
//! the timer and the token fetches, and turns the core's events into
//! completed futures and receiver streams.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::{mpsc, oneshot};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tracing::{debug, info, warn};

use eventhubs_proto::client::{
    Client, ClientError, ClientEvent, EventData, HubRuntimeInformation, Now, OpId,
    PartitionRuntimeInformation, ReceivedEvent, ReceiverId, ReceiverOptions, TransportId,
};
use eventhubs_proto::eventhubs::sas::{Token, TokenError};

use crate::credentials::TokenProvider;
use crate::runtime::{BoxFuture, Runtime};
use crate::transport::{establish, BoxedStream, TransportOptions};

/// What a receiver's stream gets.
pub(crate) enum ReceiverMsg {
    Opened,
    Event(Box<ReceivedEvent>),
    Closed(Option<ClientError>),
}

/// A request from a handle to the driver.
pub(crate) enum Command {
    Send {
        events: Vec<EventData>,
        partition: Option<String>,
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
        reply: oneshot::Sender<Result<ReceiverId, ClientError>>,
    },
    AddCredit {
        receiver: ReceiverId,
        credit: u32,
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

type Connecting = BoxFuture<Result<BoxedStream, String>>;

/// Connects TCP with the runtime, then sets up TLS/WebSocket, bounded by
/// `timeout`.
fn connect<R: Runtime>(
    rt: &R,
    host: String,
    transport: Arc<TransportOptions>,
    timeout: Duration,
) -> Connecting {
    let rt2 = rt.clone();
    let rt3 = rt.clone();
    let work = async move {
        let dest = transport.destination(&host);
        debug!(host = %host, destination = %dest, kind = ?transport.kind(), "connecting");
        let tcp = rt2
            .connect_tcp(dest.host.clone(), dest.port)
            .await
            .map_err(|e| format!("TCP connect to {dest} failed: {e}"))?;
        establish(tcp, &host, &transport)
            .await
            .map_err(|e| format!("transport to {dest} failed: {e}"))
    };
    Box::pin(async move {
        let sleep = rt3.sleep(timeout);
        match futures_util::future::select(Box::pin(work), sleep).await {
            futures_util::future::Either::Left((r, _)) => r,
            futures_util::future::Either::Right(_) => {
                Err(format!("connect timed out after {timeout:?}"))
            }
        }
    })
}

/// The driver future. Spawned once per hub.
pub(crate) struct Driver<R: Runtime> {
    rt: R,
    client: Client,
    host: String,
    transport: Arc<TransportOptions>,
    connect_timeout: Duration,
    tokens: Arc<dyn TokenProvider>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_done: bool,
    connecting: Option<(TransportId, Connecting)>,
    stream: Option<(TransportId, BoxedStream)>,
    /// Old transports finishing their last bytes.
    retiring: Vec<(BoxedStream, Vec<u8>, usize)>,
    out: Vec<u8>,
    out_pos: usize,
    read_buf: Vec<u8>,
    in_buf: Vec<u8>,
    timer: Option<(Instant, BoxFuture<()>)>,
    token_fetches: FuturesUnordered<BoxFuture<(String, Result<Token, TokenError>)>>,
    replies: HashMap<OpId, Reply>,
    receivers: HashMap<ReceiverId, mpsc::UnboundedSender<ReceiverMsg>>,
    close_waiters: Vec<oneshot::Sender<()>>,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(
        rt: R,
        client: Client,
        transport: TransportOptions,
        connect_timeout: Duration,
        tokens: Arc<dyn TokenProvider>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let host = client.options().host.clone();
        Driver {
            rt,
            client,
            host,
            transport: Arc::new(transport),
            connect_timeout,
            tokens,
            commands,
            commands_done: false,
            connecting: None,
            stream: None,
            retiring: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            read_buf: vec![0; 64 * 1024],
            in_buf: Vec::new(),
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
                partition,
                deadline,
                reply,
            } => match self.client.send(now, events, partition, deadline) {
                Ok(op) => {
                    self.replies.insert(op, Reply::Send(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::HubInfo { deadline, reply } => {
                match self.client.get_hub_information(now, deadline) {
                    Ok(op) => {
                        self.replies.insert(op, Reply::Hub(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::PartitionInfo {
                partition,
                deadline,
                reply,
            } => {
                match self
                    .client
                    .get_partition_information(now, partition, deadline)
                {
                    Ok(op) => {
                        self.replies.insert(op, Reply::Partition(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::OpenReceiver {
                options,
                events,
                reply,
            } => match self.client.open_receiver(now, options) {
                Ok(id) => {
                    self.receivers.insert(id, events);
                    let _ = reply.send(Ok(id));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::AddCredit { receiver, credit } => {
                self.client.add_credit(now, receiver, credit)
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
                self.connecting = Some((
                    id,
                    connect(
                        &self.rt,
                        self.host.clone(),
                        self.transport.clone(),
                        self.connect_timeout,
                    ),
                ));
            }
            ClientEvent::Disconnect {
                transport,
                final_bytes,
            } => {
                if self.connecting.as_ref().is_some_and(|c| c.0 == transport) {
                    self.connecting = None;
                }
                if self.stream.as_ref().is_some_and(|s| s.0 == transport) {
                    if let Some((_, s)) = self.stream.take() {
                        debug!(transport = transport.0, "closing transport");
                        self.retiring.push((s, final_bytes, 0));
                    }
                    self.out.clear();
                    self.out_pos = 0;
                    self.in_buf.clear();
                }
            }
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
                if let Some(tx) = self.receivers.get(&receiver) {
                    let _ = tx.unbounded_send(ReceiverMsg::Opened);
                }
            }
            ClientEvent::Received { receiver, event } => {
                let gone = match self.receivers.get(&receiver) {
                    Some(tx) => tx.unbounded_send(ReceiverMsg::Event(event)).is_err(),
                    None => false,
                };
                if gone {
                    self.receivers.remove(&receiver);
                    self.client.close_receiver(now, receiver);
                }
            }
            ClientEvent::ReceiverClosed { receiver, error } => {
                if let Some(tx) = self.receivers.remove(&receiver) {
                    let _ = tx.unbounded_send(ReceiverMsg::Closed(error));
                }
            }
            ClientEvent::Closed => {
                info!(host = %self.host, "hub closed");
                for r in self.replies.drain() {
                    match r.1 {
                        Reply::Send(r) => drop(r.send(Err(ClientError::Closed))),
                        Reply::Hub(r) => drop(r.send(Err(ClientError::Closed))),
                        Reply::Partition(r) => drop(r.send(Err(ClientError::Closed))),
                    }
                }
                for (_, tx) in self.receivers.drain() {
                    let _ = tx.unbounded_send(ReceiverMsg::Closed(None));
                }
            }
            _ => {}
        }
    }

    /// One pass over every source; true when anything happened.
    fn pass(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let now = now();
        // Commands from handles.
        while !self.commands_done {
            match self.commands.poll_next_unpin(cx) {
                Poll::Ready(Some(cmd)) => {
                    self.command(now, cmd);
                    progress = true;
                }
                Poll::Ready(None) => {
                    // Every handle is gone: close.
                    self.commands_done = true;
                    self.client
                        .close(now, now.instant + Duration::from_secs(30));
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        // Transport set-up.
        if let Some((id, fut)) = self.connecting.as_mut() {
            if let Poll::Ready(r) = fut.poll_unpin(cx) {
                let id = *id;
                self.connecting = None;
                progress = true;
                match r {
                    Ok(stream) => {
                        self.stream = Some((id, stream));
                        self.out.clear();
                        self.out_pos = 0;
                        self.in_buf.clear();
                        self.client.connected(now, id);
                    }
                    Err(e) => {
                        warn!(error = %e, "connect failed");
                        self.client.connect_failed(now, id, &e);
                    }
                }
            }
        }
        // Tokens.
        while let Poll::Ready(Some((audience, token))) = self.token_fetches.poll_next_unpin(cx) {
            if let Err(e) = &token {
                warn!(audience = %audience, error = %e, "token provider failed");
            }
            self.client.supply_token(now, &audience, token);
            progress = true;
        }
        // Read.
        if let Some((id, s)) = self.stream.as_mut() {
            match Pin::new(s).poll_read(cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    let id = *id;
                    self.stream = None;
                    self.client.disconnected(now, id, "the transport closed");
                    progress = true;
                }
                Poll::Ready(Ok(n)) => {
                    self.in_buf.extend_from_slice(&self.read_buf[..n]);
                    let used = self.client.handle_input(now, &self.in_buf);
                    self.in_buf.drain(..used.min(self.in_buf.len()));
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        // Events.
        while let Some(ev) = self.client.poll_event() {
            self.event(now, ev);
            progress = true;
        }
        // Write.
        if self.stream.is_some() {
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
                self.client.poll_transmit(now, &mut self.out);
            }
            let mut failed = None;
            if let Some((id, s)) = self.stream.as_mut() {
                while self.out_pos < self.out.len() {
                    match Pin::new(&mut *s).poll_write(cx, &self.out[self.out_pos..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            failed = Some(*id);
                            break;
                        }
                        Poll::Ready(Ok(n)) => {
                            self.out_pos += n;
                            progress = true;
                        }
                        Poll::Pending => break,
                    }
                }
                if failed.is_none() && self.out_pos == self.out.len() {
                    if let Poll::Ready(Err(_)) = Pin::new(&mut *s).poll_flush(cx) {
                        failed = Some(*id);
                    }
                }
            }
            if let Some(id) = failed {
                self.stream = None;
                self.client
                    .disconnected(now, id, "writing to the transport failed");
                progress = true;
            }
        }
        // Retiring transports: write their last bytes, then close them.
        self.retiring.retain_mut(|(s, bytes, pos)| {
            while *pos < bytes.len() {
                match Pin::new(&mut *s).poll_write(cx, &bytes[*pos..]) {
                    Poll::Ready(Ok(n)) if n > 0 => *pos += n,
                    Poll::Pending => return true,
                    _ => return false,
                }
            }
            !matches!(Pin::new(&mut *s).poll_close(cx), Poll::Ready(_))
        });
        // Timer.
        match self.client.poll_timeout() {
            Some(t) if t <= now.instant => {
                self.client.handle_timeout(now);
                self.timer = None;
                progress = true;
            }
            Some(t) => {
                if self.timer.as_ref().is_none_or(|(at, _)| *at != t) {
                    let d = t.saturating_duration_since(now.instant);
                    self.timer = Some((t, self.rt.sleep(d)));
                }
                if let Some((_, sleep)) = self.timer.as_mut() {
                    if sleep.poll_unpin(cx).is_ready() {
                        self.timer = None;
                        progress = true;
                    }
                }
            }
            None => self.timer = None,
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
                while let Some(ev) = this.client.poll_event() {
                    this.event(now(), ev);
                }
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
