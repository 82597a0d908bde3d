//! What senders and receivers share: the state of their link across
//! detaches and reconnects, and the retry decisions.

use std::time::{Duration, Instant};

use crate::codec::Symbol;
use crate::engine::LinkId;
use crate::eventhubs::{RetryPolicy, SplitMix64};

/// A link or connection that stayed up this long starts its failure count
/// afresh.
pub(super) const HEALTHY_SPAN: Duration = Duration::from_secs(60);

/// Where a sender's or receiver's link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LinkSlot {
    /// No link. With `retry_at`, a new one waits for that instant (the
    /// matching timer); without, one is attached as soon as the
    /// connection and the token allow.
    Detached { retry_at: Option<Instant> },
    /// Our attach is out; the service's has not come back.
    Attaching(LinkId),
    /// Attached at both ends since `since`.
    Attached { link: LinkId, since: Instant },
}

impl LinkSlot {
    /// Ready to attach now.
    pub(super) const READY: LinkSlot = LinkSlot::Detached { retry_at: None };

    /// The engine's link, attaching or attached.
    pub(super) fn link(self) -> Option<LinkId> {
        match self {
            LinkSlot::Detached { .. } => None,
            LinkSlot::Attaching(link) | LinkSlot::Attached { link, .. } => Some(link),
        }
    }

    /// The engine's link once attached at both ends.
    pub(super) fn attached(self) -> Option<LinkId> {
        match self {
            LinkSlot::Attached { link, .. } => Some(link),
            _ => None,
        }
    }

    /// True when a link may be attached now.
    pub(super) fn may_attach(self) -> bool {
        self == Self::READY
    }
}

/// A link slot with its run of failures.
#[derive(Clone, Copy, Debug)]
pub(super) struct LinkState {
    pub(super) slot: LinkSlot,
    /// Failures in a row, for the retry policy.
    pub(super) failures: u32,
}

impl LinkState {
    pub(super) fn new() -> Self {
        LinkState {
            slot: LinkSlot::READY,
            failures: 0,
        }
    }

    /// The link went away at `now`: counts a failure, starting afresh when
    /// it had stayed attached for [`HEALTHY_SPAN`]; returns the count. The
    /// slot is left detached and ready.
    pub(super) fn lost(&mut self, now: Instant) -> u32 {
        if let LinkSlot::Attached { since, .. } = self.slot {
            if now.saturating_duration_since(since) >= HEALTHY_SPAN {
                self.failures = 0;
            }
        }
        self.slot = LinkSlot::READY;
        self.failures += 1;
        self.failures
    }

    /// The connection went away: the slot is detached, keeping a retry
    /// delay in progress.
    pub(super) fn reset(&mut self) {
        if !matches!(self.slot, LinkSlot::Detached { .. }) {
            self.slot = LinkSlot::READY;
        }
    }
}

/// The policy's delay before retry `attempt`; once its retries are used
/// up and `until_deadline`, its largest step again (the caller's deadline
/// ends the retrying). `None` to give up: fatal conditions, retrying
/// disabled, or retries used up otherwise.
pub(super) fn retry_delay(
    policy: &RetryPolicy,
    rng: &mut SplitMix64,
    attempt: u32,
    condition: Option<&Symbol>,
    until_deadline: bool,
) -> Option<Duration> {
    let bits = rng.next_u64();
    if let Some(d) = policy.next_delay(attempt, condition, bits) {
        return Some(d);
    }
    if !until_deadline || attempt <= policy.max_retries {
        // Disabled, or refused for its condition.
        return None;
    }
    policy.next_delay(policy.max_retries, condition, bits)
}

impl super::client::Client {
    /// How long to wait before attaching again a link detached with
    /// `error` after `failures` failures in a row; `None` to give up.
    /// Senders (`until_deadline`) may keep trying past the policy's
    /// retries while their sends' deadlines allow.
    pub(super) fn link_retry_delay(
        &mut self,
        failures: u32,
        error: Option<&crate::codec::performatives::AmqpError>,
        until_deadline: bool,
    ) -> Option<Duration> {
        use crate::eventhubs::errors::{classify_error, ErrorSource};
        if classify_error(error, ErrorSource::Link) == crate::eventhubs::RecoveryKind::Fatal {
            return None;
        }
        let until_deadline = until_deadline && self.options.retry_until_deadline;
        retry_delay(
            &self.options.retry,
            &mut self.rng,
            failures,
            error.map(|e| &e.condition),
            until_deadline,
        )
    }
}
