//! The load balancer over many processors and an ideal store, under a
//! virtual clock: every processor lists at the start of a cycle and then
//! claims with the versions it listed (first writer wins, as ETags make
//! it), in a random order, so that claims race as they do in a fleet.
//!
//! Checked over many seeds, for both strategies, after joins, graceful
//! leaves (ownership relinquished) and crashes (ownership left to expire):
//! every partition ends up owned by exactly one live processor, no owner
//! holds more than one partition above another, and nothing moves any
//! more while membership is stable (no ping-pong).

use std::collections::BTreeMap;
use std::time::Duration;

use eventhubs_proto::eventhubs::SplitMix64;
use eventhubs_proto::processor::{
    owned_by, plan, LoadBalancingConfig, LoadBalancingStrategy, OwnershipView,
};

#[derive(Clone, Debug)]
struct Record {
    owner: String,
    last_modified: i64,
    version: u64,
}

struct Fleet {
    partitions: Vec<String>,
    store: BTreeMap<String, Record>,
    live: Vec<String>,
    config: LoadBalancingConfig,
    now: i64,
    rng: SplitMix64,
    next_version: u64,
    /// Ownership changes between two different live owners.
    moves: usize,
}

impl Fleet {
    fn new(partitions: usize, strategy: LoadBalancingStrategy, seed: u64) -> Self {
        Fleet {
            partitions: (0..partitions).map(|i| i.to_string()).collect(),
            store: BTreeMap::new(),
            live: Vec::new(),
            config: LoadBalancingConfig::default().with_strategy(strategy),
            now: 1_700_000_000_000,
            rng: SplitMix64::new(seed),
            next_version: 1,
            moves: 0,
        }
    }

    fn interval_ms(&self) -> i64 {
        self.config.update_interval.as_millis() as i64
    }

    /// One cycle of every live processor, in a random order, all having
    /// listed the store at its start.
    fn cycle(&mut self) {
        let listed: BTreeMap<String, Record> = self.store.clone();
        let mut order = self.live.clone();
        for i in (1..order.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for me in order {
            let views: Vec<OwnershipView<'_>> = listed
                .iter()
                .map(|(p, r)| OwnershipView {
                    partition_id: p,
                    owner_id: &r.owner,
                    last_modified_unix_ms: r.last_modified,
                })
                .collect();
            let p = plan(
                &self.partitions,
                views,
                &me,
                self.now,
                &self.config,
                &mut self.rng,
            );
            let wanted = p
                .renew
                .iter()
                .cloned()
                .chain(p.claim.iter().map(|c| c.partition_id.clone()));
            for partition in wanted.collect::<Vec<_>>() {
                let seen = listed.get(&partition).map(|r| r.version);
                let current = self.store.get(&partition).map(|r| r.version);
                if seen != current {
                    continue; // lost the race: ConditionNotMet
                }
                if let Some(old) = self.store.get(&partition) {
                    if !old.owner.is_empty() && old.owner != me && self.live.contains(&old.owner) {
                        self.moves += 1;
                    }
                }
                let version = self.next_version;
                self.next_version += 1;
                self.store.insert(
                    partition,
                    Record {
                        owner: me.clone(),
                        last_modified: self.now,
                        version,
                    },
                );
            }
        }
        self.now += self.interval_ms();
    }

    fn counts(&self) -> BTreeMap<String, usize> {
        let expiry = self.config.ownership_expiry.as_millis() as i64;
        let mut c: BTreeMap<String, usize> = self.live.iter().map(|l| (l.clone(), 0)).collect();
        for p in &self.partitions {
            if let Some(r) = self.store.get(p) {
                if self.now - r.last_modified < expiry + self.interval_ms() {
                    if let Some(n) = c.get_mut(&r.owner) {
                        *n += 1;
                    }
                }
            }
        }
        c
    }

    /// Every partition held by a live owner, and the counts within one.
    fn settled(&self) -> bool {
        let c = self.counts();
        let total: usize = c.values().sum();
        let (lo, hi) = (c.values().min(), c.values().max());
        total == self.partitions.len() && matches!((lo, hi), (Some(l), Some(h)) if h - l <= 1)
    }

    /// Cycles until settled; panics past `bound`. Then checks stability.
    fn settle(&mut self, bound: usize, what: &str) -> usize {
        let mut n = 0;
        while !self.settled() {
            assert!(
                n < bound,
                "{what}: not settled after {n} cycles: {:?}",
                self.counts()
            );
            self.cycle();
            n += 1;
        }
        let moves = self.moves;
        for _ in 0..20 {
            self.cycle();
            assert!(
                self.settled(),
                "{what}: unsettled again: {:?}",
                self.counts()
            );
        }
        assert_eq!(self.moves, moves, "{what}: ownership moved while stable");
        n
    }

    fn leave(&mut self, who: &str) {
        let views: Vec<OwnershipView<'_>> = self
            .store
            .iter()
            .map(|(p, r)| OwnershipView {
                partition_id: p,
                owner_id: &r.owner,
                last_modified_unix_ms: r.last_modified,
            })
            .collect();
        for p in owned_by(views, who) {
            let v = self.next_version;
            self.next_version += 1;
            self.store.insert(
                p,
                Record {
                    owner: String::new(),
                    last_modified: self.now,
                    version: v,
                },
            );
        }
        self.live.retain(|l| l != who);
    }
}

#[test]
fn fleets_settle_to_the_fair_share_and_stay_there() {
    let seeds: u64 = std::env::var("BALANCER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut worst: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 0..seeds {
        let mut r = SplitMix64::new(seed ^ 0x5eed);
        let partitions = 1 + (r.next_u64() % 32) as usize;
        let processors = 1 + (r.next_u64() % 6) as usize;
        for strategy in [
            LoadBalancingStrategy::Balanced,
            LoadBalancingStrategy::Greedy,
        ] {
            let mut f = Fleet::new(partitions, strategy, seed);
            let expiry_cycles =
                (f.config.ownership_expiry.as_millis() as i64 / f.interval_ms()) as usize;
            // Everyone starts.
            f.live = (0..processors).map(|i| format!("p{i}")).collect();
            let n = f.settle(2 * partitions + 4, &format!("seed {seed} start"));
            let key = if strategy == LoadBalancingStrategy::Balanced {
                "balanced start"
            } else {
                "greedy start"
            };
            worst
                .entry(key)
                .and_modify(|w| *w = (*w).max(n))
                .or_insert(n);
            // One joins.
            f.live.push("joiner".into());
            let n = f.settle(2 * partitions + 4, &format!("seed {seed} join"));
            let key = if strategy == LoadBalancingStrategy::Balanced {
                "balanced join"
            } else {
                "greedy join"
            };
            worst
                .entry(key)
                .and_modify(|w| *w = (*w).max(n))
                .or_insert(n);
            // One leaves gracefully.
            let gone = f.live[0].clone();
            f.leave(&gone);
            let n = f.settle(2 * partitions + 4, &format!("seed {seed} leave"));
            let key = if strategy == LoadBalancingStrategy::Balanced {
                "balanced leave"
            } else {
                "greedy leave"
            };
            worst
                .entry(key)
                .and_modify(|w| *w = (*w).max(n))
                .or_insert(n);
            // One crashes: its ownerships expire first.
            if f.live.len() > 1 {
                f.live.remove(0);
                let n = f.settle(
                    expiry_cycles + 2 * partitions + 4,
                    &format!("seed {seed} crash"),
                );
                let key = if strategy == LoadBalancingStrategy::Balanced {
                    "balanced crash"
                } else {
                    "greedy crash"
                };
                worst
                    .entry(key)
                    .and_modify(|w| *w = (*w).max(n))
                    .or_insert(n);
            }
        }
    }
    println!("worst cycles to settle over {seeds} seeds: {worst:?}");
}

#[test]
fn a_graceful_leave_is_taken_over_within_one_cycle_by_greedy_peers() {
    // Two processors on 8 partitions, 4 each; one leaves and relinquishes:
    // the greedy survivor takes all 8 in its next cycle.
    let mut f = Fleet::new(8, LoadBalancingStrategy::Greedy, 11);
    f.live = vec!["a".into(), "b".into()];
    f.settle(10, "start");
    f.leave("a");
    f.cycle();
    assert_eq!(f.counts()["b"], 8);
}

#[test]
fn the_expiry_bounds_a_crash_takeover() {
    let mut f = Fleet::new(4, LoadBalancingStrategy::Greedy, 5);
    f.live = vec!["a".into(), "b".into()];
    f.settle(10, "start");
    f.live.retain(|l| l != "a");
    let expiry = Duration::from_secs(60);
    let mut cycles = 0;
    while f.counts()["b"] < 4 {
        f.cycle();
        cycles += 1;
        assert!(cycles <= 8, "takeover took {cycles} cycles");
    }
    // Not before the expiry (6 intervals of 10 s).
    assert!(
        cycles as u64 * 10 >= expiry.as_secs(),
        "took over after {cycles} cycles"
    );
}
