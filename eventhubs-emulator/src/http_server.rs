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
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventhubs_proto::http::{write_response, HttpError, Limits, RequestParser};
use http::header::{HeaderValue, CONNECTION};
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

/// Accepts connections on `listener` until the task is dropped.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve_connection(shared.clone(), socket, peer));
            }
            Err(e) => {
                warn!(error = %e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
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

async fn serve_connection(shared: Arc<Shared>, mut socket: TcpStream, peer: SocketAddr) {
    debug!(%peer, "http: connection");
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
                        (handle(&shared, &request), keep)
                    }
                    None => {
                        let read = tokio::time::timeout(IDLE_TIMEOUT, socket.read(&mut chunk));
                        match read.await {
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
