//! When to ask a token endpoint again, as pure decisions.
//!
//! Managed identity (the union of what MSAL, azure-identity and adal
//! retry): statuses 404, 408, 410, 429 and 500–599; at most 5 attempts,
//! waiting 2, 4, 8 and 16 s (a larger `Retry-After` wins, up to 60 s); a
//! 410 (IMDS being upgraded) is retried until at least 70 s have passed.
//! An attempt that got no answer is not retried: the first one probes
//! whether an endpoint is there at all, with a short time-out
//! ([`MANAGED_IDENTITY_PROBE_TIMEOUT`]), and a chain moves on.
//!
//! Entra ID: 429, 500, 502, 503 and 504, and attempts without an answer;
//! at most 3 attempts, waiting 1 and 2 s (or `Retry-After`, up to 60 s).
//! Other errors (a wrong secret, an unknown client) are final.

use std::time::Duration;

/// How long the first managed identity request waits for an answer before
/// the credential counts as unavailable (azidentity: 1 s).
pub const MANAGED_IDENTITY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long any later token request waits for its answer.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait between attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How long a 410 from IMDS is retried at least.
pub const IMDS_GONE_RETRY_WINDOW: Duration = Duration::from_secs(70);

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// An HTTP answer with this status (and `Retry-After`, if sent).
    Status {
        /// The status.
        status: u16,
        /// The `Retry-After` header, in seconds.
        retry_after: Option<Duration>,
    },
    /// No answer: the connection failed or timed out.
    NoResponse,
}

/// Which endpoint's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryRules {
    /// IMDS and App Service.
    ManagedIdentity,
    /// The Entra ID token endpoint.
    EntraId,
}

impl RetryRules {
    /// The wait before attempt `attempts + 1`, after `attempts` attempts
    /// (the last one ending as `outcome`) over `elapsed`; `None` to stop.
    pub fn next_delay(
        self,
        attempts: u32,
        outcome: AttemptOutcome,
        elapsed: Duration,
    ) -> Option<Duration> {
        let retry_after = match outcome {
            AttemptOutcome::Status { retry_after, .. } => retry_after,
            AttemptOutcome::NoResponse => None,
        };
        let with_retry_after = |base: Duration| {
            base.max(retry_after.unwrap_or_default())
                .min(MAX_RETRY_DELAY)
        };
        match self {
            RetryRules::ManagedIdentity => {
                let AttemptOutcome::Status { status, .. } = outcome else {
                    return None;
                };
                if !matches!(status, 404 | 408 | 410 | 429 | 500..=599) {
                    return None;
                }
                let base = Duration::from_secs(1u64 << attempts.clamp(1, 6)).min(MAX_RETRY_DELAY);
                if status == 410 && elapsed < IMDS_GONE_RETRY_WINDOW {
                    return Some(with_retry_after(base));
                }
                (attempts < 5).then(|| with_retry_after(base))
            }
            RetryRules::EntraId => {
                let retryable = match outcome {
                    AttemptOutcome::NoResponse => true,
                    AttemptOutcome::Status { status, .. } => {
                        matches!(status, 429 | 500 | 502 | 503 | 504)
                    }
                };
                let base = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(5));
                (retryable && attempts < 3).then(|| with_retry_after(base))
            }
        }
    }
}

/// Reads a `Retry-After` header given in seconds (the HTTP-date form is
/// ignored: token endpoints send seconds).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> AttemptOutcome {
        AttemptOutcome::Status {
            status: s,
            retry_after: None,
        }
    }

    #[test]
    fn managed_identity_waits_2_4_8_16_then_stops() {
        let r = RetryRules::ManagedIdentity;
        let delays: Vec<_> = (1..=5)
            .map(|a| r.next_delay(a, status(503), Duration::ZERO))
            .collect();
        assert_eq!(
            delays,
            [2, 4, 8, 16]
                .map(|s| Some(Duration::from_secs(s)))
                .into_iter()
                .chain([None])
                .collect::<Vec<_>>()
        );
        for s in [404, 408, 410, 429, 500, 511, 599] {
            assert!(r.next_delay(1, status(s), Duration::ZERO).is_some(), "{s}");
        }
        for s in [400, 401, 403, 405] {
            assert_eq!(r.next_delay(1, status(s), Duration::ZERO), None, "{s}");
        }
        assert_eq!(
            r.next_delay(1, AttemptOutcome::NoResponse, Duration::ZERO),
            None
        );
    }

    #[test]
    fn imds_gone_is_retried_for_70_seconds() {
        let r = RetryRules::ManagedIdentity;
        assert!(r
            .next_delay(7, status(410), Duration::from_secs(69))
            .is_some());
        assert_eq!(r.next_delay(7, status(410), Duration::from_secs(70)), None);
        assert_eq!(
            r.next_delay(9, status(410), Duration::from_secs(10)),
            Some(Duration::from_secs(60)),
            "capped"
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_minute() {
        let r = RetryRules::ManagedIdentity;
        let ra = |s| AttemptOutcome::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            r.next_delay(1, ra(10), Duration::ZERO),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            r.next_delay(1, ra(1), Duration::ZERO),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            r.next_delay(1, ra(999), Duration::ZERO),
            Some(MAX_RETRY_DELAY)
        );
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn entra_id_retries_transient_failures_twice() {
        let r = RetryRules::EntraId;
        assert_eq!(
            r.next_delay(1, status(503), Duration::ZERO),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            r.next_delay(2, AttemptOutcome::NoResponse, Duration::ZERO),
            Some(Duration::from_secs(2))
        );
        assert_eq!(r.next_delay(3, status(503), Duration::ZERO), None);
        for s in [400, 401, 403, 404] {
            assert_eq!(r.next_delay(1, status(s), Duration::ZERO), None, "{s}");
        }
    }
}
