//! Serves the broker model over plain TCP (as Microsoft's emulator does) on
//! tokio: one task per connection moves bytes, one task fires the broker's
//! timers at the instants it names; the model sits behind a mutex and every
//! change wakes the connections so they flush what it queued for them. The TLS and WebSocket listeners
//! ([`crate::listeners`]) hand their streams to the same broker.
//!
//! With a data directory, the events appended by an input are written and
//! synced ([`crate::store`]) before the lock is released, so no disposition
//! acknowledging them can be transmitted before they are durable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventhubs_proto::codec::performatives::AmqpError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tracing::{error, info, warn};

use crate::broker::{Broker, ConnId, LinkSelector, Now};
use crate::config::{EmulatorConfig, DEFAULT_KEY, DEFAULT_KEY_NAME};
use crate::listeners::{ListenerAddrs, Listeners};
use crate::store::{Store, StoreError};

/// The current time as the broker wants it.
pub fn now() -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Now {
        instant: Instant::now(),
        unix_ms,
    }
}

pub(crate) struct Shared {
    pub(crate) broker: Mutex<Broker>,
    /// The data directory, when events are persisted.
    pub(crate) store: Option<Mutex<Store>>,
    wakers: Mutex<HashMap<ConnId, Arc<Notify>>>,
    timer: Notify,
}

impl Shared {
    /// The broker for `config`, with the events of its data directory
    /// restored. A data directory that cannot be read is an error of kind
    /// `InvalidData` (or the I/O error's own kind) saying which file and why.
    fn new(mut config: EmulatorConfig) -> std::io::Result<Shared> {
        // Entra ID keys: files read, JWKS URLs fetched, before any client.
        if let Some(entra) = config.entra_id.as_mut() {
            entra
                .load_keys()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        }
        let at = now();
        let data_dir = config.data_dir.clone();
        let mut broker = Broker::new(config, at);
        let store = match data_dir {
            None => None,
            Some(dir) => {
                // Hubs created at run time come back first, then their events.
                let (store, events) =
                    Store::open_for(&dir, &mut broker, at.unix_ms).map_err(|e| {
                        let kind = match &e {
                            StoreError::Io { source, .. } => source.kind(),
                            _ => std::io::ErrorKind::InvalidData,
                        };
                        std::io::Error::new(kind, e)
                    })?;
                let found = events.len();
                let kept = broker.restore(at, events).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", dir.display()),
                    )
                })?;
                info!(dir = %dir.display(), events = kept, expired = found - kept, "data dir: events restored");
                broker.record_appends(true);
                Some(Mutex::new(store))
            }
        };
        Ok(Shared {
            broker: Mutex::new(broker),
            store,
            wakers: Mutex::new(HashMap::new()),
            timer: Notify::new(),
        })
    }

    pub(crate) fn wake_all(&self) {
        for n in self.wakers.lock().expect("wakers").values() {
            n.notify_one();
        }
        self.timer.notify_one();
    }

    /// Bytes from connection `id`; what they appended is durable before the
    /// broker lock is released.
    fn input(&self, id: ConnId, data: &[u8]) {
        let mut b = self.broker.lock().expect("broker");
        b.handle_input(id, now(), data);
        let Some(store) = &self.store else {
            return;
        };
        let appended = b.take_appended();
        if appended.is_empty() {
            return;
        }
        if let Err(e) = store
            .lock()
            .expect("store")
            .append(&appended, now().unix_ms)
        {
            // Nothing it sent may be acknowledged: drop it before any
            // disposition goes out.
            error!(conn = id.0, error = %e, "data dir: cannot persist events; dropping the connection");
            b.disconnect(id);
        }
    }
}

/// A change injected into a running server by [`Emulator`].
type Command = Box<dyn FnOnce(&mut Broker, Now) + Send>;

/// Serves `config` on `listener` until the task is dropped. With a data
/// directory (`config.data_dir`), its events are restored first; one that
/// cannot be read is an error.
pub async fn serve(listener: TcpListener, config: EmulatorConfig) -> std::io::Result<()> {
    Server::new(config)?.serve(listener).await
}

/// Serves `config` on `listener` (plain AMQP) and on the TLS and WebSocket
/// `listeners`, one broker for all, until the task is dropped.
pub async fn serve_with(
    listener: TcpListener,
    config: EmulatorConfig,
    listeners: Listeners,
) -> std::io::Result<()> {
    run(listener, Arc::new(Shared::new(config)?), None, listeners).await
}

/// A server ready to serve: its broker built and, with a data directory,
/// its events restored.
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Builds the broker for `config` and restores its data directory, if
    /// any; one that cannot be read is an error saying which file and why.
    pub fn new(config: EmulatorConfig) -> std::io::Result<Server> {
        Ok(Server {
            shared: Arc::new(Shared::new(config)?),
        })
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        run(listener, self.shared, None, Listeners::default()).await
    }

    /// Serves on `listener` and the TLS and WebSocket `listeners` until the
    /// task is dropped.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        listeners: Listeners,
    ) -> std::io::Result<()> {
        run(listener, self.shared, None, listeners).await
    }
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut commands: Option<mpsc::UnboundedReceiver<Command>>,
    listeners: Listeners,
) -> std::io::Result<()> {
    tokio::spawn(timers(shared.clone()));
    listeners.spawn(&shared)?;
    loop {
        let command = async {
            match commands.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            Some(command) = command => {
                command(&mut shared.broker.lock().expect("broker"), now());
                shared.wake_all();
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(serve_stream(shared.clone(), socket, peer, "amqp"));
    }
}

/// Serves one client on `stream` (TCP, or TLS or WebSocket over it) until
/// it disconnects.
pub(crate) async fn serve_stream<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    transport: &'static str,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let id = shared.broker.lock().expect("broker").connect(now());
    let waker = Arc::new(Notify::new());
    shared
        .wakers
        .lock()
        .expect("wakers")
        .insert(id, waker.clone());
    info!(conn = id.0, %peer, transport, "client connected");
    connection(shared, id, stream, waker).await;
}

/// Fires the broker's timers at the instant it names: its poll_timeout
/// covers every timer it has, so there is no periodic tick. Any change to
/// the broker notifies this task, which then looks again.
async fn timers(shared: Arc<Shared>) {
    loop {
        let next = shared.broker.lock().expect("broker").poll_timeout();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.timer.notified() => continue,
                }
            }
            None => {
                shared.timer.notified().await;
                continue;
            }
        }
        shared.broker.lock().expect("broker").handle_timeout(now());
        for n in shared.wakers.lock().expect("wakers").values() {
            n.notify_one();
        }
    }
}

async fn connection<S>(shared: Arc<Shared>, id: ConnId, socket: S, waker: Arc<Notify>)
where
    S: AsyncRead + AsyncWrite,
{
    let (mut rd, mut wr) = tokio::io::split(socket);
    let mut inbuf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let reason = loop {
        // Flush whatever the broker queued for this connection.
        out.clear();
        let closed = {
            let mut b = shared.broker.lock().expect("broker");
            let _ = b.poll_transmit(id, now(), &mut out);
            b.is_closed(id).then(|| {
                if b.connections().contains(&id) {
                    "AMQP close completed"
                } else {
                    "dropped by the broker"
                }
            })
        };
        // TLS and WebSocket streams buffer: flush, as TCP needs not.
        if !out.is_empty() {
            if let Err(e) = wr.write_all(&out).await {
                break socket_error("write", &e);
            }
            if let Err(e) = wr.flush().await {
                break socket_error("flush", &e);
            }
        }
        if let Some(reason) = closed {
            break reason.to_string();
        }
        tokio::select! {
            r = rd.read(&mut inbuf) => match r {
                Ok(0) => break "the client closed the socket".to_string(),
                Err(e) => break socket_error("read", &e),
                Ok(n) => {
                    shared.input(id, &inbuf[..n]);
                    shared.wake_all();
                }
            },
            _ = waker.notified() => {}
        }
    };
    let _ = wr.shutdown().await;
    shared.broker.lock().expect("broker").disconnect(id);
    shared.wakers.lock().expect("wakers").remove(&id);
    shared.wake_all();
    info!(conn = id.0, %reason, "connection closed");
}

/// Why a socket ended, for the log.
fn socket_error(op: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof => {
            format!("the client closed the socket ({op}: {e})")
        }
        _ => format!("{op} failed: {e}"),
    }
}

/// An emulator running in-process on its own thread and runtime, for tests
/// and examples. Dropping it stops it.
///
/// Its fault methods are synchronous: each hands a change to the server
/// task and waits (briefly) for it to be made, so tests on any runtime, or
/// none, can call them.
pub struct Emulator {
    addr: SocketAddr,
    pub(crate) extra: ListenerAddrs,
    commands: mpsc::UnboundedSender<Command>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The emulator's server task is no longer running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the emulator has stopped")]
pub struct EmulatorStopped;

impl Emulator {
    /// Starts an emulator with `config` on 127.0.0.1 and an ephemeral port.
    pub fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        Self::start_on("127.0.0.1:0".parse().expect("address"), config)
    }

    /// Starts an emulator with `config` listening on `addr`. With a data
    /// directory, its events are restored before this returns; one that
    /// cannot be read is an error.
    pub fn start_on(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<Emulator> {
        Self::launch(addr, config, Listeners::default())
    }

    /// Starts an emulator on `addr` and the bound extra `listeners`.
    pub(crate) fn launch(
        addr: SocketAddr,
        config: EmulatorConfig,
        listeners: Listeners,
    ) -> std::io::Result<Emulator> {
        let extra = listeners.addrs();
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config)?);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("eventhubs-emulator".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return warn!(error = %e, "emulator runtime failed to start"),
            };
            rt.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return warn!(error = %e, "emulator listener failed"),
                };
                tokio::select! {
                    r = run(listener, shared, Some(command_rx), listeners) => if let Err(e) = r { warn!(error = %e, "emulator stopped") },
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Emulator {
            addr,
            extra,
            commands,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the broker inside the server task and returns its result.
    fn with_broker<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Broker, Now) -> T + Send + 'static,
    ) -> Result<T, EmulatorStopped> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.commands
            .send(Box::new(move |b: &mut Broker, now: Now| {
                let _ = tx.send(f(b, now));
            }))
            .map_err(|_| EmulatorStopped)?;
        rx.recv().map_err(|_| EmulatorStopped)
    }

    /// Fault: drops every client connection abruptly: its socket is closed
    /// without an AMQP close. Returns how many were dropped.
    pub fn drop_connections(&self) -> Result<usize, EmulatorStopped> {
        self.with_broker(|b, _| {
            let ids = b.connections();
            for id in &ids {
                warn!(conn = id.0, "fault: connection dropped");
                b.disconnect(*id);
            }
            ids.len()
        })
    }

    /// Fault: detaches the publishing and consuming links `which` selects
    /// with `error`; see [`Broker::detach_links`]. Returns how many.
    pub fn detach_links(
        &self,
        which: LinkSelector,
        error: AmqpError,
    ) -> Result<usize, EmulatorStopped> {
        self.with_broker(move |b, now| b.detach_links(now, which, error))
    }

    /// Fault: the next `count` sends are rejected with
    /// `com.microsoft:server-busy`; see [`Broker::throttle_sends`].
    pub fn throttle_sends(&self, count: u32) -> Result<(), EmulatorStopped> {
        self.with_broker(move |b, _| b.throttle_sends(count))
    }

    /// Fault: send outcomes and `$cbs`/`$management` responses `delay`
    /// late; see [`Broker::set_response_delay`].
    pub fn set_response_delay(&self, delay: Duration) -> Result<(), EmulatorStopped> {
        self.with_broker(move |b, _| b.set_response_delay(delay))
    }

    /// Fault: closes every client connection gracefully with `error` (for
    /// example `amqp:connection:forced`); see [`Broker::close_connection`].
    /// Returns how many.
    pub fn close_connections(&self, error: Option<AmqpError>) -> Result<usize, EmulatorStopped> {
        self.with_broker(move |b, now| {
            let ids = b.connections();
            for id in &ids {
                b.close_connection(*id, now, error.clone());
            }
            ids.len()
        })
    }

    /// The broker's counters: connections accepted, events in and out,
    /// refusals and faults.
    pub fn stats(&self) -> Result<crate::broker::Stats, EmulatorStopped> {
        self.with_broker(|b, _| b.stats())
    }

    /// The publishing and consuming links attached now.
    pub fn links(&self) -> Result<Vec<crate::broker::LinkInfo>, EmulatorStopped> {
        self.with_broker(|b, _| b.links())
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection string for hub `entity` with the default policy, in
    /// the form Microsoft's emulator documents.
    pub fn connection_string(&self, entity: &str) -> String {
        format!(
            "Endpoint=sb://127.0.0.1:{};SharedAccessKeyName={DEFAULT_KEY_NAME};SharedAccessKey={DEFAULT_KEY};UseDevelopmentEmulator=true;EntityPath={entity}",
            self.addr.port()
        )
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
