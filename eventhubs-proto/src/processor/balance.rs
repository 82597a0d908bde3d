//! The processor's load balancer: from the partitions of a hub and the
//! ownership records of a consumer group, which partitions this processor
//! should renew and which it should claim in this cycle.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::eventhubs::SplitMix64;

/// How a processor takes partitions from the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadBalancingStrategy {
    /// At most one new partition per cycle: ownership moves slowly and
    /// evenly (the default, as in azure-event-hubs-go).
    #[default]
    Balanced,
    /// Up to the fair share in one cycle: a processor starting alone owns
    /// every partition after its first cycle.
    Greedy,
}

impl fmt::Display for LoadBalancingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadBalancingStrategy::Balanced => "balanced",
            LoadBalancingStrategy::Greedy => "greedy",
        })
    }
}

impl std::str::FromStr for LoadBalancingStrategy {
    type Err = LoadBalancingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "balanced" => Ok(LoadBalancingStrategy::Balanced),
            "greedy" => Ok(LoadBalancingStrategy::Greedy),
            _ => Err(LoadBalancingError::UnknownStrategy(s.to_owned())),
        }
    }
}

/// A load-balancing setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadBalancingError {
    /// The update interval is zero.
    #[error("the load-balancing update interval must be greater than zero")]
    ZeroInterval,
    /// Ownerships would expire before their owner has renewed them a few
    /// times, so a slow cycle would hand partitions to others.
    #[error(
        "the ownership expiry ({expiry:?}) must be at least {factor} times the update interval \
         ({interval:?}), or slow cycles make ownership flap between processors"
    )]
    ExpiryTooShort {
        /// The expiry asked for.
        expiry: Duration,
        /// The update interval asked for.
        interval: Duration,
        /// The smallest allowed ratio.
        factor: u32,
    },
    /// Not `balanced` or `greedy`.
    #[error("unknown load-balancing strategy {0:?}: expected \"balanced\" or \"greedy\"")]
    UnknownStrategy(String),
}

/// How often a processor balances and how long an ownership lasts without
/// renewal.
///
/// The defaults (10 s, 60 s, balanced) are azure-event-hubs-go's. They
/// interoperate with the Python processor's defaults (30 s with up to 20 %
/// jitter, 180 s, greedy) and .NET's (30 s, 120 s): every one of them
/// renews well within the others' expiry. A fleet should agree on the
/// expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadBalancingConfig {
    /// Balanced or greedy.
    pub strategy: LoadBalancingStrategy,
    /// Time between two cycles (list, claim, renew).
    pub update_interval: Duration,
    /// An ownership not renewed for this long may be claimed by others.
    pub ownership_expiry: Duration,
}

impl Default for LoadBalancingConfig {
    fn default() -> Self {
        LoadBalancingConfig {
            strategy: LoadBalancingStrategy::Balanced,
            update_interval: Duration::from_secs(10),
            ownership_expiry: Duration::from_secs(60),
        }
    }
}

impl LoadBalancingConfig {
    /// The smallest ratio of expiry to update interval accepted.
    pub const MIN_EXPIRY_FACTOR: u32 = 3;

    /// The defaults: balanced, every 10 s, ownerships expiring after 60 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `strategy`.
    pub fn with_strategy(mut self, strategy: LoadBalancingStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// With a cycle every `interval`.
    pub fn with_update_interval(mut self, interval: Duration) -> Self {
        self.update_interval = interval;
        self
    }

    /// With ownerships expiring `expiry` after their last renewal.
    pub fn with_ownership_expiry(mut self, expiry: Duration) -> Self {
        self.ownership_expiry = expiry;
        self
    }

    /// Refuses settings under which ownership cannot be stable: a zero
    /// interval, or an expiry shorter than
    /// [`MIN_EXPIRY_FACTOR`](Self::MIN_EXPIRY_FACTOR) intervals (.NET warns
    /// below 2 and recommends 3; Go and Python use 6).
    pub fn validate(&self) -> Result<(), LoadBalancingError> {
        if self.update_interval.is_zero() {
            return Err(LoadBalancingError::ZeroInterval);
        }
        if self.ownership_expiry < self.update_interval * Self::MIN_EXPIRY_FACTOR {
            return Err(LoadBalancingError::ExpiryTooShort {
                expiry: self.ownership_expiry,
                interval: self.update_interval,
                factor: Self::MIN_EXPIRY_FACTOR,
            });
        }
        Ok(())
    }
}

/// One ownership record as listed from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnershipView<'a> {
    /// The partition.
    pub partition_id: &'a str,
    /// Its owner; empty when relinquished.
    pub owner_id: &'a str,
    /// When it was last claimed or renewed, by the store's clock (ms since
    /// the Unix epoch).
    pub last_modified_unix_ms: i64,
}

/// A partition to claim in this cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The partition.
    pub partition_id: String,
    /// The active owner it is taken from, when it is stolen; `None` for a
    /// partition nobody holds.
    pub stolen_from: Option<String>,
}

/// What one cycle should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions this processor owns: claim them again to renew.
    pub renew: Vec<String>,
    /// Partitions to claim.
    pub claim: Vec<Claim>,
    /// Active owners, this processor included.
    pub owners: usize,
    /// The fair share: every owner should hold `fair_share` or
    /// `fair_share + 1` partitions (the latter only while
    /// `partitions % owners` owners do).
    pub fair_share: usize,
}

/// Plans one load-balancing cycle for processor `me`.
///
/// This is the algorithm every official Event Hubs processor runs over the
/// shared checkpoint store (Go, .NET, Java, JavaScript and Python differ
/// only in details noted below), so a fleet that mixes them settles on one
/// owner per partition:
///
/// 1. An ownership is *active* when its owner id is not empty (an empty
///    one was relinquished) and it was renewed less than the ownership
///    expiry ago, by the store's clock. Every other partition, and every
///    partition without a record, is *claimable*.
/// 2. The owners are the owners of active records, plus this processor
///    even when it owns nothing. With `P` partitions and `O` owners the
///    fair share is `min = P / O`, and `P % O` owners may hold `min + 1`.
/// 3. A processor below `min` claims: a claimable partition chosen at
///    random, else it steals one at random from the owner holding the most.
///    A processor at `min` while some owners may hold one more claims only
///    a claimable partition, or steals from an owner above `min + 1`.
///    Nobody steals from an owner at its fair share, so once every owner
///    holds `min` or `min + 1` nothing moves while membership is stable.
/// 4. [`LoadBalancingStrategy::Balanced`] makes at most one new claim per
///    cycle (azure-event-hubs-go and JavaScript's default);
///    [`LoadBalancingStrategy::Greedy`] claims up to its fair share at once
///    (the default of .NET, Java and Python).
/// 5. One exception to the one claim per cycle, so that a graceful stop
///    hands its partitions over within one cycle: partitions *recently
///    relinquished* (an empty owner id written less than the ownership
///    expiry ago, which only a stopping processor writes) are claimed up
///    to the fair share at once, before anything else, under either
///    strategy. Never-owned and expired partitions, and steals, still
///    go one per cycle under `Balanced`.
///
/// Every partition this processor owns is renewed in each cycle, which
/// refreshes its last-modified time in the store: that is the heartbeat
/// the others read. Its own records count as its own even when their
/// last-modified time is older than the expiry (a slow cycle); renewing
/// them is then a race it may lose.
///
/// The function is pure: the caller passes the time (the store's clock,
/// as milliseconds since the Unix epoch, compared with the records'
/// last-modified times) and the random source.
///
/// `partition_ids` are the hub's partitions; records for other ids are
/// ignored. `now_unix_ms` is compared with each record's last-modified
/// time; `rng` picks among equal choices.
pub fn plan<'a, P: AsRef<str>>(
    partition_ids: &[P],
    ownership: impl IntoIterator<Item = OwnershipView<'a>>,
    me: &str,
    now_unix_ms: i64,
    config: &LoadBalancingConfig,
    rng: &mut SplitMix64,
) -> Plan {
    let expiry_ms = i64::try_from(config.ownership_expiry.as_millis()).unwrap_or(i64::MAX);
    // The latest record per known partition.
    let mut records: BTreeMap<&str, OwnershipView<'a>> = partition_ids
        .iter()
        .map(|p| {
            (
                p.as_ref(),
                OwnershipView {
                    partition_id: "",
                    owner_id: "",
                    last_modified_unix_ms: i64::MIN,
                },
            )
        })
        .collect();
    for o in ownership {
        if let Some(slot) = records.get_mut(o.partition_id) {
            if o.last_modified_unix_ms >= slot.last_modified_unix_ms {
                *slot = o;
            }
        }
    }
    // Owners and their partitions; claimable partitions.
    let mut owned: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    owned.insert(me, Vec::new());
    let mut claimable: Vec<&str> = Vec::new();
    for (&partition, o) in &records {
        let active = !o.owner_id.is_empty()
            && (o.owner_id == me
                || now_unix_ms.saturating_sub(o.last_modified_unix_ms) < expiry_ms);
        if active {
            owned.entry(o.owner_id).or_default().push(partition);
        } else {
            claimable.push(partition);
        }
    }
    let total = records.len();
    let owners = owned.len();
    let min = total / owners;
    let extra = total % owners;
    let max = min + usize::from(extra > 0);

    let renew: Vec<String> = owned[me].iter().map(|p| (*p).to_owned()).collect();
    let mut mine = renew.len();
    // Recently relinquished partitions: handed over by a graceful stop.
    let (mut handed_over, rest): (Vec<&str>, Vec<&str>) = claimable.into_iter().partition(|p| {
        let o = &records[*p];
        o.owner_id.is_empty()
            && o.last_modified_unix_ms != i64::MIN
            && now_unix_ms.saturating_sub(o.last_modified_unix_ms) < expiry_ms
    });
    let mut claimable = rest;
    let mut claim = Vec::new();
    while mine < max && !handed_over.is_empty() {
        let p = handed_over.swap_remove(pick(rng, handed_over.len()));
        claim.push(Claim {
            partition_id: p.to_owned(),
            stolen_from: None,
        });
        mine += 1;
    }
    claimable.append(&mut handed_over);
    let budget = claim.len()
        + match config.strategy {
            LoadBalancingStrategy::Balanced => 1,
            LoadBalancingStrategy::Greedy => max.saturating_sub(mine),
        };
    while claim.len() < budget && mine < max {
        let below_min = mine < min;
        if !claimable.is_empty() {
            let i = pick(rng, claimable.len());
            let p = claimable.swap_remove(i);
            claim.push(Claim {
                partition_id: p.to_owned(),
                stolen_from: None,
            });
        } else {
            // Steal from the most loaded other owner (ties at random),
            // only when it holds more than its share.
            let most = owned
                .iter()
                .filter(|(o, _)| **o != me)
                .map(|(_, ps)| ps.len())
                .max()
                .unwrap_or(0);
            let allowed = if below_min { most > min } else { most > max };
            if !allowed {
                break;
            }
            let candidates: Vec<&str> = owned
                .iter()
                .filter(|(o, ps)| **o != me && ps.len() == most)
                .map(|(o, _)| *o)
                .collect();
            let victim = candidates[pick(rng, candidates.len())];
            let ps = owned.get_mut(victim).expect("a listed owner");
            let p = ps.swap_remove(pick(rng, ps.len()));
            claim.push(Claim {
                partition_id: p.to_owned(),
                stolen_from: Some(victim.to_owned()),
            });
        }
        mine += 1;
    }
    Plan {
        renew,
        claim,
        owners,
        fair_share: min,
    }
}

/// The partitions `me` owns in `ownership`: what a processor relinquishes
/// when it stops (claimed once more with an empty owner id, so others take
/// them at once instead of waiting for the expiry).
pub fn owned_by<'a>(
    ownership: impl IntoIterator<Item = OwnershipView<'a>>,
    me: &str,
) -> Vec<String> {
    let mut v: Vec<String> = ownership
        .into_iter()
        .filter(|o| !me.is_empty() && o.owner_id == me)
        .map(|o| o.partition_id.to_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The wait before the next cycle: the update interval scaled by a
/// factor drawn uniformly from [0.8, 1.2), so that processors started
/// together drift apart instead of listing and claiming in lockstep
/// (azure-event-hubs-go draws from [0.8, 1.3), Python adds up to 20 %).
/// The mean is the interval, so request rates and expiry margins are
/// those of the interval itself.
pub fn cycle_delay(config: &LoadBalancingConfig, rng: &mut SplitMix64) -> Duration {
    let factor = 0.8 + 0.4 * rng.next_f64();
    config.update_interval.mul_f64(factor)
}

/// The longest wait [`cycle_delay`] draws.
pub fn max_cycle_delay(config: &LoadBalancingConfig) -> Duration {
    config.update_interval.mul_f64(1.2)
}

/// A uniform index below `n` (`n > 0`).
fn pick(rng: &mut SplitMix64, n: usize) -> usize {
    debug_assert!(n > 0);
    // n is small; the modulo bias of 64 random bits is negligible.
    (rng.next_u64() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    fn view<'a>(p: &'a str, o: &'a str, t: i64) -> OwnershipView<'a> {
        OwnershipView {
            partition_id: p,
            owner_id: o,
            last_modified_unix_ms: t,
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn alone_balanced_claims_one_greedy_claims_all() {
        let mut rng = SplitMix64::new(1);
        let c = LoadBalancingConfig::default();
        let p = plan(&parts(8), [], "a", NOW, &c, &mut rng);
        assert_eq!(p.claim.len(), 1);
        assert_eq!(p.owners, 1);
        assert_eq!(p.fair_share, 8);
        let g = c.with_strategy(LoadBalancingStrategy::Greedy);
        let p = plan(&parts(8), [], "a", NOW, &g, &mut rng);
        let mut got: Vec<_> = p.claim.iter().map(|c| c.partition_id.clone()).collect();
        got.sort();
        let mut want = parts(8);
        want.sort();
        assert_eq!(got, want);
        assert!(p.claim.iter().all(|c| c.stolen_from.is_none()));
    }

    #[test]
    fn at_fair_share_nothing_moves() {
        let ps = parts(5);
        let records = [
            view("0", "a", NOW),
            view("1", "a", NOW),
            view("2", "a", NOW),
            view("3", "b", NOW),
            view("4", "b", NOW),
        ];
        for me in ["a", "b"] {
            for strategy in [
                LoadBalancingStrategy::Balanced,
                LoadBalancingStrategy::Greedy,
            ] {
                let c = LoadBalancingConfig::default().with_strategy(strategy);
                let p = plan(&ps, records, me, NOW, &c, &mut SplitMix64::new(7));
                assert!(p.claim.is_empty(), "{me} {strategy}: {p:?}");
                assert_eq!(p.fair_share, 2);
            }
        }
        let p = plan(
            &ps,
            records,
            "a",
            NOW,
            &LoadBalancingConfig::default(),
            &mut SplitMix64::new(7),
        );
        assert_eq!(p.renew, vec!["0", "1", "2"]);
    }

    #[test]
    fn a_newcomer_steals_from_the_most_loaded_owner() {
        let ps = parts(6);
        let records = [
            view("0", "a", NOW),
            view("1", "a", NOW),
            view("2", "a", NOW),
            view("3", "a", NOW),
            view("4", "b", NOW),
            view("5", "b", NOW),
        ];
        let c = LoadBalancingConfig::default();
        let p = plan(&ps, records, "c", NOW, &c, &mut SplitMix64::new(3));
        assert_eq!(p.owners, 3);
        assert_eq!(p.claim.len(), 1);
        assert_eq!(p.claim[0].stolen_from.as_deref(), Some("a"));
        assert!(["0", "1", "2", "3"].contains(&p.claim[0].partition_id.as_str()));
        // Greedy takes its whole share: two, from a then (both at 3 and 2)
        // from whoever holds the most.
        let g = c.with_strategy(LoadBalancingStrategy::Greedy);
        let p = plan(&ps, records, "c", NOW, &g, &mut SplitMix64::new(3));
        assert_eq!(p.claim.len(), 2);
        assert_eq!(p.claim[0].stolen_from.as_deref(), Some("a"));
    }

    #[test]
    fn no_steal_from_an_owner_at_its_share() {
        // 4 partitions, 3 owners: share 1, one owner may hold 2.
        let ps = parts(4);
        let records = [
            view("0", "a", NOW),
            view("1", "a", NOW),
            view("2", "b", NOW),
            view("3", "c", NOW),
        ];
        for me in ["b", "c"] {
            let c = LoadBalancingConfig::default().with_strategy(LoadBalancingStrategy::Greedy);
            let p = plan(&ps, records, me, NOW, &c, &mut SplitMix64::new(1));
            assert!(p.claim.is_empty(), "{me}: {p:?}");
        }
    }

    #[test]
    fn expired_and_relinquished_ownerships_are_claimable_active_ones_not() {
        let ps = parts(3);
        let expiry = 60_000;
        let records = [
            view("0", "b", NOW - expiry),     // expired
            view("1", "", NOW),               // relinquished
            view("2", "b", NOW - expiry + 1), // active
        ];
        let g = LoadBalancingConfig::default().with_strategy(LoadBalancingStrategy::Greedy);
        let p = plan(&ps, records, "a", NOW, &g, &mut SplitMix64::new(1));
        // Owners a and b; b holds one; a may take up to 2, from the
        // claimable 0 and 1, and steals nothing.
        let mut got: Vec<_> = p.claim.iter().map(|c| c.partition_id.as_str()).collect();
        got.sort();
        assert_eq!(got, ["0", "1"]);
        assert!(p.claim.iter().all(|c| c.stolen_from.is_none()));
    }

    #[test]
    fn own_stale_records_are_renewed_not_reclaimed() {
        let ps = parts(2);
        let records = [view("0", "a", NOW - 3_600_000), view("1", "b", NOW)];
        let p = plan(
            &ps,
            records,
            "a",
            NOW,
            &LoadBalancingConfig::default(),
            &mut SplitMix64::new(1),
        );
        assert_eq!(p.renew, vec!["0"]);
        assert!(p.claim.is_empty());
    }

    #[test]
    fn unknown_partitions_and_older_duplicates_are_ignored() {
        let ps = parts(2);
        let records = [
            view("7", "b", NOW),
            view("0", "b", NOW - 1_000_000),
            view("0", "", NOW - 10),
            view("1", "a", NOW),
        ];
        let g = LoadBalancingConfig::default().with_strategy(LoadBalancingStrategy::Greedy);
        let p = plan(&ps, records, "a", NOW, &g, &mut SplitMix64::new(1));
        assert_eq!(p.owners, 1);
        assert_eq!(p.renew, vec!["1"]);
        assert_eq!(p.claim.len(), 1);
        assert_eq!(p.claim[0].partition_id, "0");
    }

    #[test]
    fn validate_refuses_an_expiry_of_fewer_than_three_intervals() {
        let c = LoadBalancingConfig::default()
            .with_update_interval(Duration::from_secs(30))
            .with_ownership_expiry(Duration::from_secs(60));
        let e = c.validate().unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("60s") && text.contains("30s") && text.contains('3'),
            "{text}"
        );
        assert!(LoadBalancingConfig::default().validate().is_ok());
        assert_eq!(
            LoadBalancingConfig::default()
                .with_update_interval(Duration::ZERO)
                .validate(),
            Err(LoadBalancingError::ZeroInterval)
        );
        assert_eq!("Greedy".parse(), Ok(LoadBalancingStrategy::Greedy));
        assert!("fair".parse::<LoadBalancingStrategy>().is_err());
    }

    #[test]
    fn relinquished_partitions_are_taken_up_to_the_share_at_once() {
        // b stopped and relinquished 2 and 3 just now; a (balanced) takes
        // both in one cycle. A relinquish older than the expiry counts as
        // never owned: one per cycle.
        let ps = parts(4);
        let records = [
            view("0", "a", NOW),
            view("1", "a", NOW),
            view("2", "", NOW - 1_000),
            view("3", "", NOW - 1_000),
        ];
        let c = LoadBalancingConfig::default();
        let p = plan(&ps, records, "a", NOW, &c, &mut SplitMix64::new(9));
        let mut got: Vec<_> = p.claim.iter().map(|c| c.partition_id.as_str()).collect();
        got.sort();
        assert_eq!(got, ["2", "3"]);
        let old = [
            view("0", "a", NOW),
            view("1", "a", NOW),
            view("2", "", NOW - 3_600_000),
            view("3", "", NOW - 3_600_000),
        ];
        let p = plan(&ps, old, "a", NOW, &c, &mut SplitMix64::new(9));
        assert_eq!(p.claim.len(), 1);
        // Two survivors share them: each takes only up to its share.
        let three = [
            view("0", "a", NOW),
            view("1", "b", NOW),
            view("2", "", NOW - 1_000),
            view("3", "", NOW - 1_000),
        ];
        let p = plan(&ps, three, "a", NOW, &c, &mut SplitMix64::new(9));
        assert_eq!(p.claim.len(), 1);
    }

    #[test]
    fn cycle_delays_are_jittered_around_the_interval() {
        let c = LoadBalancingConfig::default();
        let mut rng = SplitMix64::new(4);
        let delays: Vec<Duration> = (0..1000).map(|_| cycle_delay(&c, &mut rng)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_secs(8) && *d < max_cycle_delay(&c)));
        let mean = delays.iter().sum::<Duration>() / 1000;
        assert!(
            mean > Duration::from_millis(9_700) && mean < Duration::from_millis(10_300),
            "{mean:?}"
        );
        assert!(delays.iter().any(|d| *d < Duration::from_millis(8_400)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(11_600)));
    }

    #[test]
    fn owned_by_lists_my_partitions_once() {
        let records = [
            view("1", "a", 0),
            view("0", "a", 0),
            view("2", "b", 0),
            view("0", "a", 5),
        ];
        assert_eq!(owned_by(records, "a"), vec!["0", "1"]);
        assert!(owned_by(records, "").is_empty());
    }
}
