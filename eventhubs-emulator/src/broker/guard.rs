//! The broker's side of [`crate::limits`]: admitting connections, the
//! handshake deadline, dropping a connection that does not answer our
//! close, and the per-connection and per-link bounds. Kept apart from the
//! broker's protocol logic, which calls in here at a few points.

use std::time::Instant;

use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::engine::{ConnectionConfig, LinkId};
use tracing::{info, warn};

use super::{err, Broker, Conn, ConnId, Now};
use crate::limits::CLOSE_GRACE;

const RESOURCE_LIMIT: &str = "amqp:resource-limit-exceeded";

/// What the broker tracks of one connection for its bounds.
#[derive(Debug)]
pub(super) struct ConnGuard {
    /// The client must have sent its `open` by then.
    handshake_deadline: Instant,
    /// A put-token was accepted (SASL PLAIN is in `Conn::plain`).
    pub(super) token_accepted: bool,
    /// Admitted beyond `max_connections`: its `open` is answered with a
    /// `close`.
    over_quota: bool,
    /// When the socket is dropped if the client has not answered our
    /// `close` by then.
    drop_at: Option<Instant>,
    /// [`Limits::max_pending_deliveries`](crate::limits::Limits::max_pending_deliveries).
    pub(super) max_pending: usize,
    /// A receiver had events and credit but its bound was reached: the
    /// next `poll_transmit` sends it more.
    pub(super) blocked: bool,
}

impl ConnGuard {
    /// The next instant this guard acts at, if any.
    pub(super) fn poll_timeout(&self, opened: bool) -> Option<Instant> {
        let handshake = (!opened).then_some(self.handshake_deadline);
        [handshake, self.drop_at].into_iter().flatten().min()
    }

    /// After the broker has queued a `close`: the client has
    /// [`CLOSE_GRACE`] to answer it.
    pub(super) fn closing(&mut self, now: Now) {
        self.drop_at.get_or_insert(now.instant + CLOSE_GRACE);
    }
}

impl Conn {
    /// Authenticated with a policy (SASL PLAIN) or a token.
    fn authenticated(&self) -> bool {
        self.plain.is_some() || self.guard.token_accepted
    }
}

impl Broker {
    /// The engine settings a new connection takes from the limits: the
    /// channel-max of our open and the handle-max of our begins.
    pub(super) fn limit_engine(&self, c: &mut ConnectionConfig) {
        let limits = &self.config.limits;
        c.channel_max = limits.max_sessions.saturating_sub(1);
        c.session_defaults.handle_max =
            u32::try_from(limits.max_links.saturating_sub(1)).unwrap_or(u32::MAX);
    }

    /// The guard of a connection accepted at `now`.
    pub(super) fn new_guard(&self, now: Now) -> ConnGuard {
        ConnGuard {
            handshake_deadline: now.instant + self.config.limits.handshake_timeout,
            token_accepted: false,
            over_quota: false,
            drop_at: None,
            max_pending: self.config.limits.max_pending_deliveries,
            blocked: false,
        }
    }

    /// Connections not authenticated yet (in SASL, or anonymous without a
    /// token accepted).
    pub fn unauthenticated_connections(&self) -> usize {
        self.conns.values().filter(|c| !c.authenticated()).count()
    }

    /// Decides what becomes of connection `id`, just accepted: dropped at
    /// once when too many connections are still unauthenticated; admitted
    /// to be refused after its `open` when the connection quota is used
    /// up; else served.
    pub(super) fn admit(&mut self, id: ConnId) {
        let limits = &self.config.limits;
        let others = self.conns.len().saturating_sub(1);
        let unauthenticated = self.unauthenticated_connections().saturating_sub(1);
        if unauthenticated >= limits.max_unauthenticated {
            info!(
                conn = id.0,
                unauthenticated,
                limit = limits.max_unauthenticated,
                "limit: too many connections not authenticated yet: dropped at once"
            );
            self.stats.connections_refused += 1;
            self.conns.remove(&id);
        } else if others >= limits.max_connections {
            info!(
                conn = id.0,
                limit = limits.max_connections,
                "limit: connection quota used up: refused after its open"
            );
            if let Some(c) = self.conns.get_mut(&id) {
                c.guard.over_quota = true;
            }
        }
    }

    /// The client's `open` arrived on `id` (ours is queued): a connection
    /// over the quota is closed with `amqp:resource-limit-exceeded`.
    pub(super) fn check_open(&mut self, id: ConnId, now: Now) {
        let max = self.config.limits.max_connections;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.guard.over_quota {
            return;
        }
        let error = err(
            RESOURCE_LIMIT,
            format!("The namespace allows {max} connections at once, and that many are open. Close some, then try again."),
        );
        if conn.engine.close(Some(error)).is_ok() {
            self.stats.connections_refused += 1;
            conn.guard.closing(now);
        }
    }

    /// Drops connections whose handshake took too long, and those that did
    /// not answer our `close` in time.
    pub(super) fn enforce_deadlines(&mut self, now: Now) {
        let due: Vec<(ConnId, &'static str)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| {
                if c.guard.drop_at.is_some_and(|t| t <= now.instant) {
                    Some((*id, "the client did not answer our close in time"))
                } else if c.engine.remote_open().is_none()
                    && c.guard.handshake_deadline <= now.instant
                {
                    Some((*id, "the client did not finish SASL and open in time"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in due {
            warn!(conn = id.0, reason = why, "limit: connection dropped");
            self.stats.connections_dropped += 1;
            self.disconnect(id);
        }
    }

    /// The refusal of an attach on `id` beyond the connection's link
    /// quota, if it is beyond.
    pub(super) fn link_quota(&mut self, id: ConnId) -> Option<AmqpError> {
        let max = self.config.limits.max_links;
        let conn = self.conns.get(&id)?;
        if conn.links.len() < max {
            return None;
        }
        self.stats.links_refused += 1;
        Some(err(
            RESOURCE_LIMIT,
            format!("A connection may attach {max} links at once, and this one has. Detach some, or open another connection."),
        ))
    }

    /// Whether link `link` of `conn` may take one more delivery now: fewer
    /// than the bound wait for the client to read.
    pub(super) fn room(conn: &Conn, link: LinkId) -> bool {
        (conn.engine.queued(link) as usize) < conn.guard.max_pending
    }

    /// Replies that pile up on reply link `link` (the client grants it no
    /// credit while it keeps sending requests) past the bound: the link is
    /// detached with `amqp:resource-limit-exceeded` and its queue dropped.
    pub(super) fn bound_replies(conn: &mut Conn, link: LinkId) -> bool {
        let waiting = conn.pending.get(&link).map_or(0, |q| q.len());
        if waiting <= conn.guard.max_pending {
            return false;
        }
        conn.pending.remove(&link);
        conn.links.remove(&link);
        let error = err(
            RESOURCE_LIMIT,
            format!(
                "{waiting} replies wait for credit on this link; grant credit to receive replies."
            ),
        );
        let _ = conn.engine.link(link).close(Some(error));
        warn!(
            waiting,
            "limit: replies piled up without credit: reply link detached"
        );
        true
    }
}
