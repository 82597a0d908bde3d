//! Accommodations for known client bugs that only a broker as quick to
//! answer as this one exposes.
//!
//! # Microsoft's Rust SDK loses outcomes that arrive too early
//!
//! `azure_messaging_eventhubs` (0.16, on fe2o3-amqp 0.16) sends a delivery
//! in two steps on the caller's task: it hands the transfer to its session
//! task, and only then records the delivery, with the channel its outcome
//! is reported on, in the link's unsettled map. The session task, which
//! may run on another thread of a multi-threaded tokio runtime, looks a
//! settled disposition up in that map; when it finds nothing there it
//! drops the disposition, having already forgotten the delivery id. So when
//! the sending thread is held up between the two steps (the scheduler
//! preempts it, typically as it wakes the session task) for longer than
//! the broker takes to answer, the outcome is lost: the entry recorded a
//! moment later is never completed and the send waits forever. This
//! emulator answers a batch of a hundred 1 KiB events in about 0.2 ms over
//! loopback; on a loaded two-core machine such preemptions last up to
//! several milliseconds, and a short run of ten sends stalled in up to a
//! third of the runs. The same race is behind every request on `$cbs` and
//! `$management`, which also wait for their disposition.
//!
//! No order of frames avoids it: nothing the client sends tells the broker
//! that the entry is recorded. So on a connection whose `open` says it is
//! that SDK, every outcome (disposition) the broker sends is held for
//! [`LATE_OUTCOME_DELAY`] after the transfer it settles arrived, longer
//! than such preemptions last and no longer than the service itself
//! commonly takes to acknowledge a send. Events are appended at once;
//! other clients are answered at once as before.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::performatives::Open;
use eventhubs_proto::codec::Symbol;
use eventhubs_proto::engine::{Connection, LinkId};

/// How long outcomes are held for a client that loses early ones.
pub const LATE_OUTCOME_DELAY: Duration = Duration::from_millis(20);

/// At most this many outcomes are held per connection; beyond it the
/// oldest goes out early, so a client cannot grow the queue without bound.
const MAX_LATE: usize = 1 << 14;

/// True when the peer that sent `open` is Microsoft's Rust SDK, which
/// names itself in the connection properties (`product`
/// `azure_messaging_eventhubs`, `user-agent` `azsdk-rust-...`).
pub fn loses_early_outcomes(open: &Open) -> bool {
    let Some(props) = &open.properties else {
        return false;
    };
    let text = |key: &'static str| {
        props
            .get(&Symbol::from_static(key))
            .and_then(|v| v.as_str())
    };
    text("product") == Some("azure_messaging_eventhubs")
        || text("user-agent").is_some_and(|ua| ua.starts_with("azsdk-rust-messaging_eventhubs/"))
}

#[derive(Debug)]
struct LateOutcome {
    due: Instant,
    link: LinkId,
    delivery_id: u32,
    state: DeliveryState,
}

/// One connection's outcomes held until they are due, in the order they
/// were decided (the delay is fixed, so due instants never decrease).
#[derive(Debug, Default)]
pub struct LateOutcomes {
    /// Zero when the client needs no delay.
    delay: Duration,
    queue: VecDeque<LateOutcome>,
}

impl LateOutcomes {
    /// Holds this connection's outcomes for `delay` from now on.
    pub fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    /// True when this connection's outcomes are held.
    pub fn is_on(&self) -> bool {
        !self.delay.is_zero()
    }

    /// Holds the settled outcome `state` of delivery `delivery_id` on
    /// `link`, decided at `now`, until it is due.
    pub fn hold(
        &mut self,
        now: Instant,
        link: LinkId,
        delivery_id: u32,
        state: DeliveryState,
        engine: &mut Connection,
    ) {
        if self.queue.len() >= MAX_LATE {
            if let Some(o) = self.queue.pop_front() {
                Self::send(o, engine);
            }
        }
        self.queue.push_back(LateOutcome {
            due: now + self.delay,
            link,
            delivery_id,
            state,
        });
    }

    /// When the next held outcome is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|o| o.due)
    }

    /// Sends every outcome due at `now`.
    pub fn release_due(&mut self, now: Instant, engine: &mut Connection) {
        while self.queue.front().is_some_and(|o| o.due <= now) {
            if let Some(o) = self.queue.pop_front() {
                Self::send(o, engine);
            }
        }
    }

    /// Forgets the outcomes of the session on `channel`, ended before they
    /// were due: its channel may name a new session at once. (Delivery ids
    /// belong to the session, so a detached link's outcomes still go out.)
    pub fn forget_session(&mut self, channel: u16) {
        self.queue.retain(|o| o.link.channel != channel);
    }

    fn send(o: LateOutcome, engine: &mut Connection) {
        if let Err(e) = engine.link(o.link).settle(o.delivery_id, o.state) {
            tracing::debug!(error = %e, "held outcome not sent: its link is gone");
        }
    }
}
