//! The emulator's HTTP listener (`--http-listen`, by default
//! 127.0.0.1:5300, where Microsoft's emulator answers its health check):
//! HTTP/1.1 with keep-alive, requests parsed by the core's sans-IO
//! [`RequestParser`] within [`limits`], answered by [`crate::management`].
//!
//! A change is made under the broker's lock and, with a data directory,
//! written there (the hub's partition files, `entities.json`) before the
//! reply goes out; if that fails the change is undone where it can be and
//! the reply is a 500.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_proto::http::{write_response, HttpError, Limits, RequestParser};
use http::header::{HeaderValue, CONNECTION, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error, info, warn};

use crate::broker::{Broker, Now};
use crate::management::{self, error_response, Change, Decision, Refusal};
use crate::server::{now, Shared};
use crate::store::Store;

/// What a request may send: a 16 KiB head of at most 64 fields, a 1 MiB
/// body (descriptions are a few hundred bytes).
pub fn limits() -> Limits {
    Limits::default()
        .with_max_head_bytes(16 * 1024)
        .with_max_headers(64)
        .with_max_body_bytes(1024 * 1024)
}

/// How long a connection may wait for its next byte before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts connections on `listener` until the task is dropped. Beyond
/// [`Limits::max_http_connections`](crate::limits::Limits::max_http_connections)
/// at once, a connection is answered `503 Service Unavailable` and closed.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                let max = shared
                    .broker
                    .lock()
                    .expect("broker")
                    .config()
                    .limits
                    .max_http_connections;
                let slot = Slot::take(&open);
                if slot.count > max {
                    tokio::spawn(refuse_busy(shared.clone(), socket, peer, max, slot));
                    continue;
                }
                tokio::spawn(serve_connection(shared.clone(), socket, peer, slot));
            }
            Err(e) => {
                warn!(error = %e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One HTTP connection, counted while it lives.
struct Slot {
    open: Arc<AtomicUsize>,
    /// Connections open with this one.
    count: usize,
}

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        let count = open.fetch_add(1, Ordering::AcqRel) + 1;
        Slot {
            open: open.clone(),
            count,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a refused connection's 503 may take to write.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers a connection beyond the bound: `503 Service Unavailable`,
/// `Retry-After: 1`, closed.
async fn refuse_busy(
    shared: Arc<Shared>,
    mut socket: TcpStream,
    peer: SocketAddr,
    max: usize,
    slot: Slot,
) {
    info!(%peer, open = slot.count - 1, limit = max, "http: too many connections: 503");
    let mut response = {
        let b = shared.broker.lock().expect("broker");
        error_response(
            &b,
            now(),
            &Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                detail: format!(
                    "The emulator serves {max} HTTP connections at once; try again shortly."
                ),
            },
        )
    };
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    let mut out = Vec::new();
    write_response(&response, false, &mut out);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        let _ = socket.write_all(&out).await;
        let _ = socket.shutdown().await;
    })
    .await;
    drop(slot);
}

/// A 400 for bytes that are not an acceptable HTTP request.
fn bad_request(broker: &Broker, now: Now, e: &HttpError) -> Response<Bytes> {
    let status = match e {
        HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        }
        HttpError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(
        broker,
        now,
        &Refusal {
            status,
            detail: format!("The request is not valid HTTP/1.1: {e}."),
        },
    )
}

async fn serve_connection(
    shared: Arc<Shared>,
    mut socket: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
) {
    debug!(%peer, "http: connection");
    let request_timeout = shared
        .broker
        .lock()
        .expect("broker")
        .config()
        .limits
        .http_request_timeout;
    // When the request being read began arriving.
    let mut started: Option<Instant> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut parser = RequestParser::new(limits());
    let mut out = Vec::with_capacity(4096);
    loop {
        // Take what the buffer holds; read more only when it is used up.
        let parsed = parser.handle_input(&buf);
        let (response, keep_alive) = match parsed {
            Err(e) => {
                info!(%peer, error = %e, "http: malformed request");
                let b = shared.broker.lock().expect("broker");
                (bad_request(&b, now(), &e), false)
            }
            Ok(n) => {
                buf.drain(..n);
                match parser.poll_request() {
                    Some(request) => {
                        let keep = parser.persistent();
                        parser = RequestParser::new(limits());
                        started = None;
                        (handle(&shared, &request), keep)
                    }
                    None => {
                        let wait = match started {
                            Some(t) => request_timeout.saturating_sub(t.elapsed()),
                            None => IDLE_TIMEOUT,
                        };
                        let read = tokio::time::timeout(wait, socket.read(&mut chunk));
                        match read.await {
                            Err(_) if started.is_some() => {
                                info!(%peer, "http: request not received in time: 408");
                                let b = shared.broker.lock().expect("broker");
                                let r = error_response(
                                    &b,
                                    now(),
                                    &Refusal {
                                        status: StatusCode::REQUEST_TIMEOUT,
                                        detail: format!(
                                            "The request did not arrive whole within {} s.",
                                            request_timeout.as_secs()
                                        ),
                                    },
                                );
                                (r, false)
                            }
                            Err(_) => {
                                debug!(%peer, "http: idle connection closed");
                                break;
                            }
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "http: read failed");
                                break;
                            }
                            Ok(Ok(0)) => {
                                if let Err(e) = parser.handle_eof() {
                                    debug!(%peer, error = %e, "http: connection closed mid-request");
                                }
                                break;
                            }
                            Ok(Ok(n)) => {
                                started.get_or_insert_with(Instant::now);
                                buf.extend_from_slice(&chunk[..n]);
                                continue;
                            }
                        }
                    }
                }
            }
        };
        let mut response = response;
        if !keep_alive {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        out.clear();
        write_response(&response, false, &mut out);
        if let Err(e) = socket.write_all(&out).await {
            debug!(%peer, error = %e, "http: write failed");
            break;
        }
        if !keep_alive {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

/// Answers one request: decides under the broker's lock, makes the change
/// durable, applies it, and wakes the AMQP connections (a deleted hub's
/// links have detaches to send).
fn handle(shared: &Shared, request: &Request<Bytes>) -> Response<Bytes> {
    let at = now();
    let response = {
        let mut broker = shared.broker.lock().expect("broker");
        match management::decide(&broker, at, request) {
            Decision::Respond(r) => r,
            Decision::Apply(plan) => {
                let response = management::apply(&mut broker, at, &plan);
                if response.status().is_success() {
                    if let Some(store) = &shared.store {
                        let mut store = store.lock().expect("store");
                        if let Err(e) = persist(&mut store, &mut broker, at, &plan.change) {
                            error!(error = %e, change = ?plan.change, "data dir: cannot record the change");
                            return error_response(
                                &broker,
                                at,
                                &Refusal {
                                    status: StatusCode::INTERNAL_SERVER_ERROR,
                                    detail: format!("The change could not be written to the data directory: {e}."),
                                },
                            );
                        }
                    }
                }
                response
            }
        }
    };
    if response.status().is_success() {
        info!(method = %request.method(), path = %request.uri().path(), status = response.status().as_u16(), "management request");
    }
    shared.wake_all();
    response
}

/// Writes an applied change to the data directory; a hub that cannot be
/// given its files is taken out again.
fn persist(
    store: &mut Store,
    broker: &mut Broker,
    at: Now,
    change: &Change,
) -> Result<(), crate::store::StoreError> {
    let day_ms = 86_400_000i64;
    match change {
        Change::CreateHub(state) => {
            let retention = state
                .message_retention_in_days
                .map_or(broker.config().retention_ms, |d| i64::from(d) * day_ms);
            if let Err(e) = store.add_hub(&state.name, state.partition_count, retention) {
                let _ = broker.remove_hub(at, &state.name);
                let _ = store.remove_hub(&state.name);
                return Err(e);
            }
        }
        Change::UpdateHub {
            name,
            message_retention_in_days,
            ..
        } => store.set_retention(name, i64::from(*message_retention_in_days) * day_ms),
        // The hub is gone whatever its files do: record that, and leave
        // the files to the next create of the name, which clears them.
        Change::DeleteHub(name) => {
            if let Err(e) = store.remove_hub(name) {
                warn!(hub = %name, error = %e, "data dir: cannot remove a deleted hub's files");
            }
        }
        _ => {}
    }
    store.save_entities(&broker.hubs())
}
