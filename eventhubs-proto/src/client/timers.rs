//! Every timer of the client in one keyed table, as quinn-proto keeps its
//! connection timers: each is set or stopped by its key,
//! [`Client::poll_timeout`](super::Client::poll_timeout) is the table's
//! first entry, and a timer that fires is removed before it is acted on,
//! so nothing is "already due" and waiting on something else.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::options::{OpId, ReceiverId, SendTarget};

/// A timer, named by what it is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The transport being opened must be up by then.
    Connect,
    /// The back-off before the next connection attempt ends.
    Backoff,
    /// The service's AMQP open must have arrived by then.
    Open,
    /// The caller's close deadline.
    Close,
    /// The AMQP engine's next heartbeat or idle check.
    Engine,
    /// A send's or request's deadline.
    OpDeadline(OpId),
    /// A refused management request may be sent again.
    OpRetry(OpId),
    /// A `$cbs` or `$management` request without an answer is given up.
    Request(u64),
    /// A detached sender may attach again.
    SenderLink(SendTarget),
    /// A sender's refused transfers may be sent again.
    SenderTransfer(SendTarget),
    /// A detached receiver may attach again.
    ReceiverLink(ReceiverId),
    /// An audience's token is due for refreshing.
    TokenRefresh(String),
    /// A token that could not be had may be asked for again.
    TokenRetry(String),
}

/// Instants by timer, and timers by instant.
#[derive(Debug, Default)]
pub(super) struct TimerTable {
    at: BTreeMap<Timer, Instant>,
    order: BTreeSet<(Instant, Timer)>,
}

impl TimerTable {
    /// Sets `timer` to fire at `at`, replacing any earlier setting.
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(old) = self.at.insert(timer.clone(), at) {
            self.order.remove(&(old, timer.clone()));
        }
        self.order.insert((at, timer));
    }

    /// Sets `timer` to `at`, or stops it for `None`.
    pub(super) fn set_or_stop(&mut self, timer: Timer, at: Option<Instant>) {
        match at {
            Some(at) => self.set(timer, at),
            None => self.stop(&timer),
        }
    }

    /// Stops `timer`.
    pub(super) fn stop(&mut self, timer: &Timer) {
        if let Some(old) = self.at.remove(timer) {
            self.order.remove(&(old, timer.clone()));
        }
    }

    /// Stops every timer `f` picks.
    pub(super) fn stop_all(&mut self, f: impl Fn(&Timer) -> bool) {
        let picked: Vec<Timer> = self.at.keys().filter(|t| f(t)).cloned().collect();
        for t in picked {
            self.stop(&t);
        }
    }

    /// When `timer` fires, if it is set.
    pub(super) fn get(&self, timer: &Timer) -> Option<Instant> {
        self.at.get(timer).copied()
    }

    /// The first instant of the table.
    pub(super) fn first(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns a timer due at `now`, earliest first.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (at, _) = self.order.first()?;
        if *at > now {
            return None;
        }
        let (_, timer) = self.order.pop_first()?;
        self.at.remove(&timer);
        Some(timer)
    }

    /// How many timers are set.
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
#[path = "../../tests/unit/timers.rs"]
mod tests;
