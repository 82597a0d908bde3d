//! Retry delays as pure decisions, and a seeded jitter source
//! .
//!
//! [`RetryPolicy`] follows .NET's `BasicRetryPolicy` and its defaults
//! (3 retries, 0.8 s, at most 60 s, exponential), which Java shares:
//!
//! * exponential: `2^attempt × delay + j × (delay × 0.08)`;
//! * fixed: `delay + j × (delay × 0.08)`;
//! * `com.microsoft:server-busy` adds `4 s + j' × 4 s`;
//! * the sum is capped at `max_delay`;
//!
//! where `j` and `j'` are fractions in `[0, 1)` taken from caller-supplied
//! random bits; the core draws no randomness. Whether a condition is
//! retried at all comes from [`classify_condition`] (Go's policy): fatal
//! conditions are not retried. All arithmetic is integer nanoseconds, so a
//! seed gives the same delays on every platform.

use std::time::Duration;

use super::errors::{classify_condition, RecoveryKind};
use crate::codec::Symbol;

/// Fraction of `delay` that jitter may add (.NET `JitterFactor`, 0.08),
/// as a ratio of integers.
const JITTER_NUM: u128 = 8;
const JITTER_DEN: u128 = 100;

/// Least extra delay after `com.microsoft:server-busy` (.NET adds 4–8 s).
pub const SERVER_BUSY_BASE_DELAY: Duration = Duration::from_secs(4);

/// Spread of the extra server-busy delay above its base.
pub const SERVER_BUSY_JITTER: Duration = Duration::from_secs(4);

/// How the delay grows between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetryMode {
    /// `2^attempt × delay`, plus jitter.
    #[default]
    Exponential,
    /// `delay` every time, plus jitter.
    Fixed,
}

/// When and how long to wait before retrying. Pure: the caller supplies
/// the attempt count, the error condition and random bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts in
    /// all). 0 disables retrying.
    pub max_retries: u32,
    /// Base delay. Zero disables retrying.
    pub delay: Duration,
    /// Upper bound of any delay. Zero disables retrying.
    pub max_delay: Duration,
    /// Exponential or fixed.
    pub mode: RetryMode,
}

impl Default for RetryPolicy {
    /// 3 retries, 0.8 s, at most 60 s, exponential (.NET and Java).
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(60),
            mode: RetryMode::Exponential,
        }
    }
}

/// `bits` as a fraction in `[0, 1)` of `span` nanoseconds.
fn fraction_of(span: u128, bits: u32) -> u128 {
    span.saturating_mul(u128::from(bits)) >> 32
}

impl RetryPolicy {
    /// The delay before the next attempt, or `None` to give up.
    ///
    /// * `attempt`: failed attempts so far, 1 after the first failure. A
    ///   value above `max_retries` gives up. (0 is accepted and yields the
    ///   `2^0 × delay` step.)
    /// * `condition`: the AMQP error condition, if the failure carried one
    ///   (`None` for transport errors, which are retried). Conditions that
    ///   [`classify_condition`] calls [`RecoveryKind::Fatal`] give up at once;
    ///   `com.microsoft:server-busy` adds 4–8 s.
    /// * `jitter`: 64 random bits from the caller's seeded source (e.g.
    ///   [`SplitMix64::next_u64`]). The high 32 bits scale the regular
    ///   jitter, the low 32 bits the server-busy extra.
    ///
    /// Retrying is off altogether when `max_retries`, `delay` or
    /// `max_delay` is zero.
    pub fn next_delay(
        &self,
        attempt: u32,
        condition: Option<&Symbol>,
        jitter: u64,
    ) -> Option<Duration> {
        if self.max_retries == 0
            || self.delay.is_zero()
            || self.max_delay.is_zero()
            || attempt > self.max_retries
        {
            return None;
        }
        if condition.is_some_and(|c| classify_condition(c) == RecoveryKind::Fatal) {
            return None;
        }
        let (hi, lo) = ((jitter >> 32) as u32, jitter as u32);
        let base = self.delay.as_nanos();
        let mut total = match self.mode {
            RetryMode::Fixed => base,
            RetryMode::Exponential if attempt >= 64 => u128::MAX,
            RetryMode::Exponential => base.saturating_mul(1u128 << attempt),
        };
        total = total.saturating_add(fraction_of(
            base.saturating_mul(JITTER_NUM) / JITTER_DEN,
            hi,
        ));
        if condition.is_some_and(|c| c.as_str() == "com.microsoft:server-busy") {
            total = total
                .saturating_add(SERVER_BUSY_BASE_DELAY.as_nanos())
                .saturating_add(fraction_of(SERVER_BUSY_JITTER.as_nanos(), lo));
        }
        Some(from_nanos(total.min(self.max_delay.as_nanos())))
    }
}

/// A `Duration` from nanoseconds not above some `Duration::as_nanos()`.
fn from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // Below 10^9, so it fits.
    let sub = (nanos % NANOS_PER_SEC) as u32;
    Duration::new(secs, sub)
}

/// SplitMix64 (Steele, Lea, Flood; Vigna's reference code): a tiny,
/// seedable, deterministic generator for jitter, ids and simulations.
/// Not cryptographic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`; the same seed gives the same stream.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits (the high half of [`Self::next_u64`]).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// The next 128 random bits (two draws, first one high), e.g. for
    /// [`Uuid::from_random_bits`](crate::codec::Uuid::from_random_bits).
    pub fn next_u128(&mut self) -> u128 {
        let hi = u128::from(self.next_u64());
        (hi << 64) | u128::from(self.next_u64())
    }

    /// A uniform float in `[0, 1)` from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, bound)` (Lemire's multiply-shift, tiny
    /// bias ignored); 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventhubs::errors::condition;

    const ZERO_JITTER: u64 = 0;
    const MAX_JITTER: u64 = u64::MAX;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_retries, 3);
        assert_eq!(p.delay, ms(800));
        assert_eq!(p.max_delay, Duration::from_secs(60));
        assert_eq!(p.mode, RetryMode::Exponential);
    }

    #[test]
    fn exponential_without_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_delay(1, None, ZERO_JITTER), Some(ms(1600)));
        assert_eq!(p.next_delay(2, None, ZERO_JITTER), Some(ms(3200)));
        assert_eq!(p.next_delay(3, None, ZERO_JITTER), Some(ms(6400)));
        assert_eq!(p.next_delay(4, None, ZERO_JITTER), None);
        assert_eq!(p.next_delay(0, None, ZERO_JITTER), Some(ms(800)));
    }

    #[test]
    fn jitter_adds_at_most_eight_percent_of_delay() {
        let p = RetryPolicy::default();
        // 0.08 × 0.8 s = 64 ms; all-ones bits give just under that.
        let d = p.next_delay(1, None, MAX_JITTER).expect("retry");
        assert!(d > ms(1600 + 63) && d < ms(1600 + 64), "{d:?}");
        // Half: high word 0x8000_0000 → 32 ms.
        assert_eq!(p.next_delay(1, None, 0x8000_0000_0000_0000), Some(ms(1632)));
        // The low word alone does not move a non-busy delay.
        assert_eq!(p.next_delay(1, None, 0xffff_ffff), Some(ms(1600)));
    }

    #[test]
    fn fixed_mode() {
        let p = RetryPolicy {
            mode: RetryMode::Fixed,
            ..RetryPolicy::default()
        };
        for attempt in 1..=3 {
            assert_eq!(p.next_delay(attempt, None, ZERO_JITTER), Some(ms(800)));
        }
        assert_eq!(p.next_delay(1, None, 0x8000_0000_0000_0000), Some(ms(832)));
        assert_eq!(p.next_delay(4, None, ZERO_JITTER), None);
    }

    #[test]
    fn server_busy_adds_four_to_eight_seconds() {
        let p = RetryPolicy::default();
        let busy = condition::SERVER_BUSY;
        assert_eq!(p.next_delay(1, Some(&busy), ZERO_JITTER), Some(ms(5600)));
        // Low word half → +2 s.
        assert_eq!(p.next_delay(1, Some(&busy), 0x8000_0000), Some(ms(7600)));
        let d = p.next_delay(1, Some(&busy), MAX_JITTER).expect("retry");
        assert!(
            d > ms(1600 + 64 + 7999) && d < ms(1600 + 64 + 8000),
            "{d:?}"
        );
        // Other retryable conditions get no extra.
        let timeout = condition::TIMEOUT;
        assert_eq!(p.next_delay(1, Some(&timeout), 0x8000_0000), Some(ms(1600)));
    }

    #[test]
    fn capped_at_max_delay() {
        let p = RetryPolicy {
            max_retries: 100,
            ..RetryPolicy::default()
        };
        assert_eq!(p.next_delay(6, None, ZERO_JITTER), Some(ms(51_200)));
        assert_eq!(
            p.next_delay(7, None, ZERO_JITTER),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.next_delay(100, None, MAX_JITTER),
            Some(Duration::from_secs(60))
        );
        let busy = condition::SERVER_BUSY;
        // 51.2 s + 64 ms + 8 s stays just under the cap; one step more hits it.
        let d = p.next_delay(6, Some(&busy), MAX_JITTER).expect("retry");
        assert!(d > ms(59_263) && d < ms(59_264), "{d:?}");
        assert_eq!(
            p.next_delay(7, Some(&busy), ZERO_JITTER),
            Some(Duration::from_secs(60))
        );
        let p = RetryPolicy {
            max_retries: u32::MAX,
            delay: Duration::MAX,
            max_delay: Duration::MAX,
            mode: RetryMode::Exponential,
        };
        assert_eq!(
            p.next_delay(u32::MAX, Some(&busy), MAX_JITTER),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn fatal_conditions_give_up() {
        let p = RetryPolicy::default();
        for c in [
            condition::LINK_STOLEN,
            condition::UNAUTHORIZED_ACCESS,
            condition::NOT_FOUND,
            condition::RESOURCE_LIMIT_EXCEEDED,
            condition::MESSAGE_SIZE_EXCEEDED,
        ] {
            assert_eq!(p.next_delay(1, Some(&c), ZERO_JITTER), None, "{c}");
        }
        for c in [
            condition::DETACH_FORCED,
            condition::CONNECTION_FORCED,
            condition::INTERNAL_ERROR,
            Symbol::from_static("x:unknown"),
        ] {
            assert_eq!(
                p.next_delay(1, Some(&c), ZERO_JITTER),
                Some(ms(1600)),
                "{c}"
            );
        }
    }

    #[test]
    fn disabled_policies() {
        let base = RetryPolicy::default();
        for p in [
            RetryPolicy {
                max_retries: 0,
                ..base
            },
            RetryPolicy {
                delay: Duration::ZERO,
                ..base
            },
            RetryPolicy {
                max_delay: Duration::ZERO,
                ..base
            },
        ] {
            assert_eq!(p.next_delay(1, None, ZERO_JITTER), None);
        }
    }

    #[test]
    fn splitmix64_reference_stream() {
        // Vigna's splitmix64.c, seed 1234567.
        let mut r = SplitMix64::new(1_234_567);
        let expected = [
            6_457_827_717_110_365_317u64,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for e in expected {
            assert_eq!(r.next_u64(), e);
        }
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn splitmix64_helpers_are_deterministic_and_in_range() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..1000 {
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert_eq!(f, b.next_f64());
            let n = a.below(7);
            assert!(n < 7);
            assert_eq!(n, b.below(7));
        }
        assert_eq!(a.below(0), 0);
        let mut c = SplitMix64::new(9);
        let mut d = SplitMix64::new(9);
        let hi = u128::from(d.next_u64());
        let lo = u128::from(d.next_u64());
        assert_eq!(c.next_u128(), (hi << 64) | lo);
        let mut e = SplitMix64::new(9);
        let mut g = SplitMix64::new(9);
        assert_eq!(e.next_u32(), (g.next_u64() >> 32) as u32);
    }

    #[test]
    fn seeded_jitter_drives_the_policy() {
        let p = RetryPolicy::default();
        let busy = condition::SERVER_BUSY;
        let run = |seed| {
            let mut rng = SplitMix64::new(seed);
            (1..=4)
                .map(|a| p.next_delay(a, Some(&busy), rng.next_u64()))
                .collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7));
        assert_eq!(first[3], None);
        for (i, d) in first.iter().take(3).enumerate() {
            let d = d.expect("retry");
            let step = ms(800 << (i + 1));
            assert!(d >= step + ms(4000) && d < step + ms(64 + 8000), "{d:?}");
        }
    }
}
