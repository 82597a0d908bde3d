//! Serves the broker model over plain TCP (as Microsoft's emulator does) on
//! tokio: one task per connection moves bytes, one task fires timers; the
//! model sits behind a mutex and every change wakes the connections so they
//! flush what it queued for them. The TLS and WebSocket listeners
//! ([`crate::listeners`]) hand their streams to the same broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::broker::{Broker, ConnId, Now};
use crate::config::{EmulatorConfig, DEFAULT_KEY, DEFAULT_KEY_NAME};
use crate::listeners::{ListenerAddrs, Listeners};

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
    broker: Mutex<Broker>,
    wakers: Mutex<HashMap<ConnId, Arc<Notify>>>,
    timer: Notify,
}

impl Shared {
    fn wake_all(&self) {
        for n in self.wakers.lock().expect("wakers").values() {
            n.notify_one();
        }
        self.timer.notify_one();
    }
}

/// Serves `config` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: EmulatorConfig) -> std::io::Result<()> {
    serve_with(listener, config, Listeners::default()).await
}

/// Serves `config` on `listener` (plain AMQP) and on the TLS and WebSocket
/// `listeners`, one broker for all, until the task is dropped.
pub async fn serve_with(
    listener: TcpListener,
    config: EmulatorConfig,
    listeners: Listeners,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        broker: Mutex::new(Broker::new(config, now())),
        wakers: Mutex::new(HashMap::new()),
        timer: Notify::new(),
    });
    tokio::spawn(timers(shared.clone()));
    listeners.spawn(&shared)?;
    loop {
        let (socket, peer) = listener.accept().await?;
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

async fn timers(shared: Arc<Shared>) {
    loop {
        let next = shared.broker.lock().expect("broker").poll_timeout();
        let wait = next
            .map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.timer.notified() => continue,
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
    loop {
        // Flush whatever the broker queued for this connection.
        out.clear();
        let closed = {
            let mut b = shared.broker.lock().expect("broker");
            let _ = b.poll_transmit(id, now(), &mut out);
            b.is_closed(id)
        };
        // TLS and WebSocket streams buffer: flush, as TCP needs not.
        if !out.is_empty() && (wr.write_all(&out).await.is_err() || wr.flush().await.is_err()) {
            break;
        }
        if closed {
            break;
        }
        tokio::select! {
            r = rd.read(&mut inbuf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    shared.broker.lock().expect("broker").handle_input(id, now(), &inbuf[..n]);
                    shared.wake_all();
                }
            },
            _ = waker.notified() => {}
        }
    }
    let _ = wr.shutdown().await;
    shared.broker.lock().expect("broker").disconnect(id);
    shared.wakers.lock().expect("wakers").remove(&id);
    shared.wake_all();
    info!(conn = id.0, "client disconnected");
}

/// An emulator running in-process on its own thread and runtime, for tests
/// and examples. Dropping it stops it.
pub struct Emulator {
    addr: SocketAddr,
    pub(crate) extra: ListenerAddrs,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Starts an emulator with `config` on 127.0.0.1 and an ephemeral port.
    pub fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        Self::start_on("127.0.0.1:0".parse().expect("address"), config)
    }

    /// Starts an emulator with `config` listening on `addr`.
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
                    r = serve_with(listener, config, listeners) => if let Err(e) = r { warn!(error = %e, "emulator stopped") },
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Emulator {
            addr,
            extra,
            stop: Some(stop),
            thread: Some(thread),
        })
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
