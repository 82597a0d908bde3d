//! Deterministic simulations of a fleet of event processors: processor
//! cores (eventhubs-proto's `processor::Processor`), each on its own
//! client core, the broker model as the hub and the core's `MemoryStore`
//! as the checkpoint store, all under one virtual clock. Processors are
//! started, stopped gracefully and killed without releasing; store
//! requests are slowed (past the processor's store time-out) and failed.
//!
//! Checked on every seed:
//! - after the last membership change, within the bound stated by
//!   [`bound`], every partition is processed by exactly one live
//!   processor, which the store names as its owner, and it stays so;
//! - from then on the owners hold their fair share (no owner more than
//!   one partition above another) and nothing moves (no ping-pong);
//! - no event is lost: every event whose send was acknowledged is
//!   processed at least once;
//! - every processing session of a partition starts right after its
//!   checkpoint (or at the start) and runs without gap or repeat, so
//!   events are processed again only by a new session after an ownership
//!   change, and only past the checkpoint it started from; a session
//!   that resumes after a receiver error repeats nothing;
//! - a graceful stop's partitions are processed by others within one
//!   cycle of its relinquishing them (two when claims raced or a store
//!   request failed meanwhile; the worst is reported).
//!
//! `SIM_SEED=n` reruns one seed, `SIM_SEEDS=n` changes the count;
//! `SIM_VERBOSE=1` prints the timeline of each seed.

mod model_world;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use eventhubs_emulator::config::HubConfig;
use eventhubs_emulator::EmulatorConfig;
use eventhubs_proto::checkpoint::MemoryStore;
use eventhubs_proto::client::{
    Client, ClientEvent, EventData, OpId, ReceiverId, ReceiverOptions, SendTarget,
};
use eventhubs_proto::codec::Value;
use eventhubs_proto::eventhubs::{EventPosition, SplitMix64};
use eventhubs_proto::processor::{
    max_cycle_delay, Action, BatchId, BatchOutcome, CheckpointPolicy, CloseReason,
    LoadBalancingStrategy, Processor, ProcessorConfig, ProcessorEvent, ProcessorStats,
    ReceiverFailure, ReceiverKey, StopOptions, StoreFailure, StoreOpId, StoreReply,
};
use eventhubs_testkit::sim::{self, Network};
use model_world::{world, World};

const NS: &str = "localhost";
const HUB: &str = "eh1";
const CG: &str = "$Default";
const HOUR: Duration = Duration::from_secs(3600);
const SAMPLE: Duration = Duration::from_secs(1);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---------------------------------------------------------------------
// The store, with latency and faults

/// How the store misbehaves in a seed.
#[derive(Clone, Copy, Debug)]
struct StoreFaults {
    /// Chance (%) that a request in a fault window fails.
    fail_pct: u64,
    /// Chance (%) that a request in a fault window takes 11 to 20 s
    /// (past the processors' 10 s store time-out).
    slow_pct: u64,
}

struct StoreRequest {
    at: Instant,
    proc: usize,
    op: StoreOpId,
    action: Action,
}

struct Store {
    store: MemoryStore,
    requests: Vec<StoreRequest>,
    replies: Vec<(Instant, usize, StoreOpId, StoreReply)>,
    faults: StoreFaults,
    /// Fault windows (start, end).
    windows: Vec<(Duration, Duration)>,
    /// Checkpoint writes executed: (time, partition, sequence number).
    writes: Vec<(Duration, String, i64)>,
    failures: u64,
    slow: u64,
}

impl Store {
    fn in_window(&self, t: Duration) -> bool {
        self.windows.iter().any(|(a, b)| t >= *a && t < *b)
    }

    fn latency(&mut self, rng: &mut SplitMix64, t: Duration) -> Duration {
        if self.in_window(t) && rng.below(100) < self.faults.slow_pct {
            self.slow += 1;
            Duration::from_millis(11_000 + rng.below(9_000))
        } else {
            Duration::from_millis(2 + rng.below(40))
        }
    }

    /// Runs due requests against the store and returns due replies.
    fn run(
        &mut self,
        now: Instant,
        elapsed: Duration,
        unix_ms: i64,
        rng: &mut SplitMix64,
    ) -> Vec<(usize, StoreOpId, StoreReply)> {
        let mut i = 0;
        while i < self.requests.len() {
            if self.requests[i].at > now {
                i += 1;
                continue;
            }
            let r = self.requests.swap_remove(i);
            let fail = self.in_window(elapsed) && rng.below(100) < self.faults.fail_pct;
            if fail {
                self.failures += 1;
            }
            let failure = || StoreFailure::new("503 ServerBusy (simulated)");
            let reply = match &r.action {
                Action::ListOwnership { .. } => StoreReply::OwnershipListed(if fail {
                    Err(failure())
                } else {
                    Ok(self.store.list_ownership(NS, HUB, CG))
                }),
                Action::ClaimOwnership { claims, .. } => StoreReply::OwnershipClaimed(if fail {
                    Err(failure())
                } else {
                    Ok(self.store.claim_ownership(unix_ms, claims))
                }),
                Action::ListCheckpoints { .. } => StoreReply::CheckpointsListed(if fail {
                    Err(failure())
                } else {
                    Ok(self.store.list_checkpoints(NS, HUB, CG))
                }),
                Action::UpdateCheckpoint { checkpoint, .. } => {
                    StoreReply::CheckpointUpdated(if fail {
                        Err(failure())
                    } else {
                        self.store.update_checkpoint(checkpoint).expect("complete");
                        self.writes.push((
                            elapsed,
                            checkpoint.partition_id.clone(),
                            checkpoint.sequence_number.expect("written"),
                        ));
                        Ok(())
                    })
                }
                other => unreachable!("not a store request: {other:?}"),
            };
            let back = self.latency(rng, elapsed);
            self.replies.push((now + back, r.proc, r.op, reply));
        }
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.replies.len() {
            if self.replies[i].0 <= now {
                let (_, p, op, reply) = self.replies.remove(i);
                due.push((p, op, reply));
            } else {
                i += 1;
            }
        }
        due
    }

    fn next_time(&self) -> Option<Instant> {
        self.requests
            .iter()
            .map(|r| r.at)
            .chain(self.replies.iter().map(|r| r.0))
            .min()
    }

    fn owner_of(&self, partition: &str) -> Option<(String, i64)> {
        self.store
            .list_ownership(NS, HUB, CG)
            .into_iter()
            .find(|o| o.partition_id == partition)
            .map(|o| (o.owner_id, o.last_modified_unix_ms.unwrap_or(0)))
    }
}

// ---------------------------------------------------------------------
// Processors and the application on them

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Running,
    Stopping,
    Stopped,
    Killed,
}

struct Proc {
    name: String,
    core: Processor,
    peer: usize,
    life: Life,
    info_op: Option<OpId>,
    receivers: BTreeMap<ReceiverKey, ReceiverId>,
    keys: BTreeMap<ReceiverId, ReceiverKey>,
    /// Events the core is not ready for yet (credit not returned).
    held: BTreeMap<ReceiverKey, VecDeque<eventhubs_proto::client::ReceivedEvent>>,
    /// Batches being processed.
    working: Vec<Work>,
    /// The session of each partition being processed (index into
    /// `Run::sessions`).
    session: BTreeMap<String, usize>,
    batches_done: u64,
    stopped_at: Option<Duration>,
}

/// A batch the application is processing, done at `done_at`; under
/// manual checkpointing, with the checkpoint it asks for once done.
struct Work {
    done_at: Instant,
    batch: BatchId,
    checkpoint: Option<(String, String, i64)>,
}

#[derive(Debug)]
struct Session {
    proc: usize,
    partition: String,
    start: EventPosition,
    init: Duration,
    close: Option<(Duration, CloseReason)>,
    /// Sequence numbers processed, in order.
    seqs: Vec<i64>,
    /// First and last time it handed over a batch.
    first_batch: Option<Duration>,
    last_batch: Option<Duration>,
    /// True when the start position came from resuming after an error
    /// (sequence number, same processor).
    resumed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Join,
    Stop,
    Kill,
}

/// What a seed measured.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// (change, seconds to every partition processed by one live owner,
    /// seconds to the fair share as well).
    settles: Vec<(Change, f64, f64)>,
    /// Seconds from a graceful stop's relinquish to its last partition
    /// processed elsewhere, and that in cycles.
    handovers: Vec<(f64, f64)>,
    /// Events processed more than once.
    duplicates: u64,
    events: u64,
    /// Longest overlap of two owners' sessions on one partition (s).
    max_overlap: f64,
    /// Per processor while stable: partitions owned, ownership requests
    /// per cycle, checkpoint writes per cycle.
    requests_per_cycle: Vec<(f64, f64, f64)>,
    store_failures: u64,
    store_slow: u64,
    /// Seconds from the last membership change to settled, and the bound.
    last_settle: (f64, f64),
    /// Connections cut by the network.
    cuts: u64,
}

struct Setup {
    partitions: u32,
    strategy: LoadBalancingStrategy,
    policy: CheckpointPolicy,
    initial: usize,
    changes: Vec<(Duration, Change)>,
    faults: StoreFaults,
    windows: Vec<(Duration, Duration)>,
    net: Network,
}

fn setup(seed: u64) -> Setup {
    let mut r = SplitMix64::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xc0ffee);
    let partitions = 4 + r.below(9) as u32;
    let strategy = if seed.is_multiple_of(2) {
        LoadBalancingStrategy::Balanced
    } else {
        LoadBalancingStrategy::Greedy
    };
    let policy = match r.below(3) {
        0 => CheckpointPolicy::AfterBatch,
        1 => CheckpointPolicy::Interval(Duration::from_secs(7)),
        _ => CheckpointPolicy::Manual,
    };
    let initial = 1 + r.below(3) as usize;
    let mut kinds = vec![Change::Join, Change::Stop, Change::Kill];
    for i in (1..kinds.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        kinds.swap(i, j);
    }
    let changes = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| (Duration::from_secs(200 * (i as u64 + 1)), k))
        .collect();
    let faulty = seed % 3 == 2;
    let faults = StoreFaults {
        fail_pct: if faulty { 15 } else { 0 },
        slow_pct: if faulty { 10 } else { 0 },
    };
    // Store trouble in the first half of each gap between changes, never
    // in the final stable window.
    let windows = if faulty {
        vec![
            (Duration::from_secs(60), Duration::from_secs(120)),
            (Duration::from_secs(250), Duration::from_secs(330)),
            (Duration::from_secs(450), Duration::from_secs(520)),
        ]
    } else {
        Vec::new()
    };
    let mut net = Network::calm();
    net.latency = Duration::from_millis(1 + r.below(20));
    net.max_chunk = 512 + r.below(64 * 1024) as usize;
    // Every fifth seed cuts connections now and then (about once a minute
    // per client): the client cores recover their receivers, which the
    // processors never notice.
    if seed % 5 == 4 {
        net.drop_ppm = 2_000;
    }
    Setup {
        partitions,
        strategy,
        policy,
        initial,
        changes,
        faults,
        windows,
        net,
    }
}

/// The bound within which every partition is processed by exactly one
/// live processor after the last membership change, and owners hold
/// their fair share: the ownership expiry (a crashed processor's
/// partitions become claimable), then one claim per cycle until the
/// largest share is reached (a balanced joiner steals one per cycle;
/// survivors take one expired partition per cycle), plus two cycles for
/// lost claim races and the cycle in progress. A cycle is the longest
/// jittered interval (1.2 × 10 s) plus store round trips.
fn bound(partitions: u32, live: usize, config: &ProcessorConfig) -> Duration {
    let cycle = max_cycle_delay(&config.load_balancing) + Duration::from_millis(200);
    let share = (partitions as usize).div_ceil(live.max(1)) as u32;
    config.load_balancing.ownership_expiry + cycle * (share + 2)
}

struct Run {
    seed: u64,
    verbose: bool,
    w: World,
    store: Store,
    procs: Vec<Proc>,
    sessions: Vec<Session>,
    rng: SplitMix64,
    setup: Setup,
    config: ProcessorConfig,
    sender: usize,
    send_op: Option<(OpId, Vec<i64>)>,
    next_send: Duration,
    next_id: i64,
    sending: bool,
    acked: BTreeSet<i64>,
    /// (partition, seq) -> event id.
    ids: BTreeMap<(String, i64), i64>,
    processed: BTreeMap<i64, u64>,
    /// (partition, offset) -> sequence number, of every event processed.
    offsets: BTreeMap<(String, String), i64>,
    figures: Figures,
}

impl Run {
    fn new(seed: u64) -> Run {
        let s = setup(seed);
        let emulator = EmulatorConfig {
            hubs: vec![HubConfig {
                name: HUB.into(),
                partition_count: s.partitions,
                consumer_groups: vec![CG.into()],
            }],
            ..EmulatorConfig::default()
        };
        let mut w = world(seed, emulator, s.net);
        let sender = w.add_client(sim::options(seed, HOUR));
        let mut config = ProcessorConfig::new(NS, HUB, "template");
        config.load_balancing = config.load_balancing.clone().with_strategy(s.strategy);
        config.checkpoint_policy = s.policy;
        config.max_batch_size = 16;
        config.max_wait = Duration::from_millis(200);
        config.prefetch = 50;
        let store = Store {
            store: MemoryStore::new(),
            requests: Vec::new(),
            replies: Vec::new(),
            faults: s.faults,
            windows: s.windows.clone(),
            writes: Vec::new(),
            failures: 0,
            slow: 0,
        };
        Run {
            seed,
            verbose: std::env::var("SIM_VERBOSE").is_ok(),
            w,
            store,
            procs: Vec::new(),
            sessions: Vec::new(),
            rng: SplitMix64::new(seed ^ 0xfeed),
            setup: s,
            config,
            sender,
            send_op: None,
            next_send: Duration::from_secs(1),
            next_id: 0,
            sending: true,
            acked: BTreeSet::new(),
            ids: BTreeMap::new(),
            processed: BTreeMap::new(),
            offsets: BTreeMap::new(),
            figures: Figures::default(),
        }
    }

    fn log(&self, what: impl std::fmt::Display) {
        if self.verbose {
            println!("[{:8.3}] {what}", secs(self.w.elapsed));
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|i| self.procs[*i].life == Life::Running)
            .collect()
    }

    fn start_processor(&mut self) {
        let i = self.procs.len();
        let name = format!("proc-{i}");
        let mut config = self.config.clone();
        config.owner_id = name.clone();
        config.seed = self.seed.wrapping_mul(31).wrapping_add(i as u64);
        let peer = self
            .w
            .add_client(sim::options(self.seed * 100 + i as u64 + 1, HOUR));
        let mut core = Processor::new(config).expect("valid config");
        let now = self.w.now();
        core.start(now);
        self.procs.push(Proc {
            name: name.clone(),
            core,
            peer,
            life: Life::Running,
            info_op: None,
            receivers: BTreeMap::new(),
            keys: BTreeMap::new(),
            held: BTreeMap::new(),
            working: Vec::new(),
            session: BTreeMap::new(),
            batches_done: 0,
            stopped_at: None,
        });
        self.log(format!("{name} starts"));
    }

    /// Applies `change`; returns the change made (a stop or kill of the
    /// last live processor becomes a join).
    fn apply(&mut self, change: Change) -> Change {
        let live = self.live();
        match change {
            Change::Join => self.start_processor(),
            Change::Stop if live.len() > 1 => {
                let i = live[self.rng.below(live.len() as u64) as usize];
                let now = self.w.now();
                let checkpoint = self.rng.below(2) == 0;
                self.procs[i].core.stop(
                    now,
                    StopOptions {
                        checkpoint,
                        ..StopOptions::default()
                    },
                );
                self.procs[i].life = Life::Stopping;
                self.log(format!(
                    "{} stops (checkpoint: {checkpoint})",
                    self.procs[i].name
                ));
            }
            Change::Kill if live.len() > 1 => {
                let i = live[self.rng.below(live.len() as u64) as usize];
                let peer = self.procs[i].peer;
                self.w.cut(peer);
                // A fresh client that is never asked anything: the killed
                // one's connection is gone and nothing more is sent.
                self.w.peers[peer].client =
                    Client::new(sim::options(0, HOUR).options).expect("valid options");
                self.w.peers[peer].events.clear();
                let p = &mut self.procs[i];
                p.life = Life::Killed;
                let now = self.w.elapsed;
                for s in p.session.values() {
                    self.sessions[*s].close = Some((now, CloseReason::Shutdown));
                }
                p.session.clear();
                self.log(format!("{} killed", self.procs[i].name));
            }
            // Keep someone alive: a stop or kill of the last one joins.
            _ => {
                self.start_processor();
                return Change::Join;
            }
        }
        change
    }

    /// Drains each processor's actions and events into the world, the
    /// store and the application.
    fn drive(&mut self) {
        let now = self.w.now();
        for i in 0..self.procs.len() {
            if matches!(self.procs[i].life, Life::Killed | Life::Stopped) {
                continue;
            }
            while let Some(a) = self.procs[i].core.poll_action() {
                self.action(i, a);
            }
            while let Some(e) = self.procs[i].core.poll_event() {
                self.event(i, e);
            }
            let _ = now;
        }
    }

    fn action(&mut self, i: usize, a: Action) {
        let now = self.w.now();
        let peer = self.procs[i].peer;
        match a {
            Action::GetPartitionIds => {
                let op = self.w.peers[peer]
                    .client
                    .get_hub_information(now, now.instant + Duration::from_secs(30))
                    .expect("request");
                self.procs[i].info_op = Some(op);
            }
            Action::OpenReceiver(o) => {
                let mut options = ReceiverOptions::new(o.partition_id.clone())
                    .consumer_group(o.consumer_group)
                    .position(o.position)
                    .identifier(o.identifier)
                    .prefetch(o.prefetch);
                options.owner_level = o.owner_level;
                let rid = self.w.peers[peer]
                    .client
                    .open_receiver(now, options)
                    .expect("receiver");
                self.procs[i].receivers.insert(o.receiver, rid);
                self.procs[i].keys.insert(rid, o.receiver);
            }
            Action::CloseReceiver { receiver } => {
                if let Some(rid) = self.procs[i].receivers.remove(&receiver) {
                    self.w.peers[peer].client.close_receiver(now, rid);
                }
                self.procs[i].held.remove(&receiver);
            }
            store @ (Action::ListOwnership { .. }
            | Action::ClaimOwnership { .. }
            | Action::ListCheckpoints { .. }
            | Action::UpdateCheckpoint { .. }) => {
                let op = match &store {
                    Action::ListOwnership { op }
                    | Action::ClaimOwnership { op, .. }
                    | Action::ListCheckpoints { op }
                    | Action::UpdateCheckpoint { op, .. } => *op,
                    _ => unreachable!(),
                };
                let elapsed = self.w.elapsed;
                let lat = self.store.latency(&mut self.rng, elapsed);
                self.store.requests.push(StoreRequest {
                    at: now.instant + lat,
                    proc: i,
                    op,
                    action: store,
                });
            }
            other => panic!("unknown action {other:?}"),
        }
    }

    fn event(&mut self, i: usize, e: ProcessorEvent) {
        let t = self.w.elapsed;
        let now = self.w.now();
        match e {
            ProcessorEvent::PartitionInitialized {
                partition_id,
                position,
            } => {
                let resumed = matches!(position, EventPosition::SequenceNumber { .. })
                    && self
                        .sessions
                        .iter()
                        .rev()
                        .find(|s| s.partition == partition_id)
                        .is_some_and(|s| {
                            s.proc == i && matches!(s.close, Some((_, CloseReason::Error(_))))
                        });
                self.log(format!(
                    "{} initializes {partition_id} at {position}",
                    self.procs[i].name
                ));
                self.sessions.push(Session {
                    proc: i,
                    partition: partition_id.clone(),
                    start: position,
                    init: t,
                    close: None,
                    seqs: Vec::new(),
                    first_batch: None,
                    last_batch: None,
                    resumed,
                });
                let prev = self.procs[i]
                    .session
                    .insert(partition_id, self.sessions.len() - 1);
                assert!(prev.is_none(), "seed {}: two sessions at once", self.seed);
            }
            ProcessorEvent::PartitionClosed {
                partition_id,
                reason,
            } => {
                self.log(format!(
                    "{} closes {partition_id}: {reason}",
                    self.procs[i].name
                ));
                let s = self.procs[i]
                    .session
                    .remove(&partition_id)
                    .unwrap_or_else(|| panic!("seed {}: close without a session", self.seed));
                self.sessions[s].close = Some((t, reason));
            }
            ProcessorEvent::Events(b) => {
                let s = *self.procs[i]
                    .session
                    .get(&b.partition_id)
                    .unwrap_or_else(|| panic!("seed {}: batch outside a session", self.seed));
                let session = &mut self.sessions[s];
                session.first_batch.get_or_insert(t);
                session.last_batch = Some(t);
                for e in &b.events {
                    session.seqs.push(e.sequence_number());
                    let id = e.get("id").and_then(Value::as_i64).expect("id");
                    self.ids
                        .insert((b.partition_id.clone(), e.sequence_number()), id);
                    *self.processed.entry(id).or_default() += 1;
                    self.offsets.insert(
                        (b.partition_id.clone(), e.offset().to_owned()),
                        e.sequence_number(),
                    );
                }
                let work = Duration::from_millis(self.rng.below(400));
                // Manual checkpoints: every other batch, at its last event,
                // once processed.
                let checkpoint = (self.setup.policy == CheckpointPolicy::Manual
                    && self.rng.below(2) == 0)
                    .then(|| {
                        let last = b.events.last().expect("non-empty");
                        (
                            b.partition_id.clone(),
                            last.offset().to_owned(),
                            last.sequence_number(),
                        )
                    });
                self.procs[i].working.push(Work {
                    done_at: now.instant + work,
                    batch: b.batch,
                    checkpoint,
                });
            }
            ProcessorEvent::Error(e) => self.log(format!("{}: {e}", self.procs[i].name)),
            ProcessorEvent::CheckpointUpdated { .. } => {}
            ProcessorEvent::Stopped => {
                self.log(format!("{} stopped", self.procs[i].name));
                self.procs[i].life = Life::Stopped;
                self.procs[i].stopped_at = Some(t);
                assert!(
                    self.procs[i].session.is_empty(),
                    "seed {}: stopped with sessions open",
                    self.seed
                );
            }
            other => panic!("unknown event {other:?}"),
        }
    }
}

/// One sample of the fleet.
struct Sample {
    /// Every partition processed by exactly one live processor, named in
    /// the store as its owner.
    covered: bool,
    /// And no live processor holds more than one above another.
    balanced: bool,
}

impl Run {
    /// Client news for each processor, and held events fed as the cores
    /// accept them.
    fn client_events(&mut self) {
        let now = self.w.now();
        for i in 0..self.procs.len() {
            let peer = self.procs[i].peer;
            let events = self.w.take_events(peer);
            if matches!(self.procs[i].life, Life::Killed | Life::Stopped) {
                continue;
            }
            for (_, ev) in events {
                let p = &mut self.procs[i];
                match ev {
                    ClientEvent::HubInformation { op, result } if Some(op) == p.info_op => {
                        p.info_op = None;
                        p.core.handle_partition_ids(
                            now,
                            result.map(|h| h.partition_ids).map_err(|e| e.to_string()),
                        );
                    }
                    ClientEvent::ReceiverOpened { receiver } => {
                        if let Some(key) = p.keys.get(&receiver) {
                            p.core.handle_receiver_opened(now, *key);
                        }
                    }
                    ClientEvent::Received { receiver, event } => {
                        if let Some(key) = p.keys.get(&receiver) {
                            p.held.entry(*key).or_default().push_back(event);
                        }
                    }
                    ClientEvent::ReceiverClosed { receiver, error } => {
                        if let Some(key) = p.keys.remove(&receiver) {
                            p.receivers.remove(&key);
                            p.held.remove(&key);
                            let failure = error.map(|e| {
                                if e.is_ownership_lost() {
                                    ReceiverFailure::ownership_lost(e.to_string())
                                } else {
                                    ReceiverFailure::other(e.to_string())
                                }
                            });
                            p.core.handle_receiver_closed(now, key, failure);
                        }
                    }
                    _ => {}
                }
            }
            let p = &mut self.procs[i];
            let keys: Vec<ReceiverKey> = p.held.keys().copied().collect();
            for key in keys {
                while p.core.accepts_events(key) {
                    let Some(e) = p.held.get_mut(&key).and_then(VecDeque::pop_front) else {
                        break;
                    };
                    p.core.handle_received(now, key, e);
                    if let Some(rid) = p.receivers.get(&key) {
                        self.w.peers[peer].client.consumed(now, *rid, 1);
                    }
                }
            }
        }
    }

    /// Batches whose processing time is up are reported done.
    fn application(&mut self) {
        let now = self.w.now();
        for i in 0..self.procs.len() {
            if !matches!(self.procs[i].life, Life::Running | Life::Stopping) {
                continue;
            }
            let p = &mut self.procs[i];
            let (done, rest): (Vec<Work>, Vec<Work>) = std::mem::take(&mut p.working)
                .into_iter()
                .partition(|w| w.done_at <= now.instant);
            p.working = rest;
            for w in done {
                p.batches_done += 1;
                p.core
                    .handle_batch_done(now, w.batch, BatchOutcome::Processed);
                if let Some((partition, offset, seq)) = w.checkpoint {
                    // Refused when the partition is no longer ours: fine.
                    let _ = p.core.request_checkpoint(now, &partition, offset, seq);
                }
            }
        }
    }

    fn sender(&mut self) {
        let now = self.w.now();
        for (_, ev) in self.w.take_events(self.sender) {
            if let ClientEvent::SendComplete { op, result } = ev {
                let Some((o, ids)) = self.send_op.take() else {
                    continue;
                };
                assert_eq!(o, op);
                match result {
                    Ok(()) => self.acked.extend(ids),
                    Err(e) => self.log(format!("send failed: {e}")),
                }
                self.next_send = self.w.elapsed + Duration::from_millis(300 + self.rng.below(1000));
            }
        }
        if self.sending && self.send_op.is_none() && self.w.elapsed >= self.next_send {
            let n = 1 + self.rng.below(4);
            let partition = self.rng.below(u64::from(self.setup.partitions)).to_string();
            let mut ids = Vec::new();
            let events = (0..n)
                .map(|_| {
                    let id = self.next_id;
                    self.next_id += 1;
                    ids.push(id);
                    let mut e = EventData::new(format!("event-{id}").into_bytes());
                    e.set("id", Value::Long(id));
                    e
                })
                .collect();
            let op = self.w.peers[self.sender]
                .client
                .send(
                    now,
                    events,
                    SendTarget::partition(partition).expect("a partition id"),
                    now.instant + Duration::from_secs(60),
                )
                .expect("send");
            self.send_op = Some((op, ids));
        }
    }

    fn sample(&self) -> Sample {
        let live = self.live();
        let mut covered = true;
        let mut counts: BTreeMap<usize, usize> = live.iter().map(|i| (*i, 0)).collect();
        for p in 0..self.setup.partitions {
            let pid = p.to_string();
            // Holders as the application sees them: from the partition's
            // initialization to its close (a session losing its partition
            // still holds it while its last batch is being processed). A
            // stopping processor still holds what it has not closed.
            let holders: Vec<usize> = (0..self.procs.len())
                .filter(|i| {
                    matches!(self.procs[*i].life, Life::Running | Life::Stopping)
                        && self.procs[*i].session.contains_key(&pid)
                })
                .collect();
            if holders.iter().any(|i| {
                self.procs[*i].life != Life::Running
                    || !self.procs[*i].core.owned_partitions().contains(&pid)
            }) {
                covered = false;
                continue;
            }
            let store_owner = self.store.owner_of(&pid).map(|o| o.0);
            if holders.len() != 1 || store_owner.as_deref() != Some(&self.procs[holders[0]].name) {
                covered = false;
            } else {
                *counts.get_mut(&holders[0]).expect("live") += 1;
            }
        }
        let (lo, hi) = (
            counts.values().min().copied().unwrap_or(0),
            counts.values().max().copied().unwrap_or(0),
        );
        Sample {
            covered,
            balanced: covered && hi - lo <= 1,
        }
    }

    fn step(&mut self) {
        let now = self.w.now();
        let elapsed = self.w.elapsed;
        let replies = self
            .store
            .run(now.instant, elapsed, now.unix_ms, &mut self.rng);
        for (p, op, reply) in replies {
            if matches!(self.procs[p].life, Life::Running | Life::Stopping) {
                self.procs[p].core.handle_store_reply(now, op, reply);
            }
        }
        self.client_events();
        self.application();
        self.sender();
        for p in &mut self.procs {
            if matches!(p.life, Life::Running | Life::Stopping)
                && p.core.poll_timeout().is_some_and(|t| t <= now.instant)
            {
                p.core.handle_timeout(now);
            }
        }
        self.drive();
        for i in 0..self.procs.len() {
            if self.procs[i].life == Life::Stopped
                && !self.w.peers[self.procs[i].peer].client.is_closed()
            {
                let peer = self.procs[i].peer;
                self.w.peers[peer]
                    .client
                    .close(now, now.instant + Duration::from_secs(5));
            }
        }
        let mut next = now.instant + Duration::from_millis(100);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        consider(self.store.next_time());
        for p in &self.procs {
            if matches!(p.life, Life::Running | Life::Stopping) {
                consider(p.core.poll_timeout());
                consider(p.working.iter().map(|w| w.done_at).min());
            }
        }
        let step = next
            .saturating_duration_since(now.instant)
            .max(Duration::from_micros(1));
        self.w.step(step);
    }

    /// Runs the seed; returns what it measured. Panics on a violation.
    fn run(mut self) -> Figures {
        for _ in 0..self.setup.initial {
            self.start_processor();
            self.w.run_until(Duration::from_millis(700), |_| false);
        }
        let changes = self.setup.changes.clone();
        let last_change = changes.last().map(|c| c.0).unwrap_or_default();
        let mut pending: VecDeque<(Duration, Change)> = changes.into();
        // Per change: when it happened, what, and when covered/balanced.
        let mut measures: Vec<(Duration, Change, Option<Duration>, Option<Duration>)> = Vec::new();
        let mut next_sample = self.w.elapsed;
        let mut settled_since: Option<Duration> = None;
        let mut stable_end: Option<Duration> = None;
        let mut stats_at_settle: Option<Vec<ProcessorStats>> = None;
        let hard_end = last_change + Duration::from_secs(900);
        let mut last_live = self.setup.initial;
        loop {
            if let Some((t, c)) = pending.front().copied() {
                if self.w.elapsed >= t {
                    pending.pop_front();
                    let c = self.apply(c);
                    measures.push((self.w.elapsed, c, None, None));
                    settled_since = None;
                    stats_at_settle = None;
                    last_live = self.live().len();
                }
            }
            self.step();
            if self.w.elapsed >= next_sample {
                next_sample += SAMPLE;
                let s = self.sample();
                let t = self.w.elapsed;
                if let Some(m) = measures.last_mut() {
                    if s.covered && m.2.is_none() {
                        m.2 = Some(t - m.0);
                    }
                    if s.balanced && m.3.is_none() {
                        m.3 = Some(t - m.0);
                    }
                }
                if s.balanced {
                    if settled_since.is_none() {
                        settled_since = Some(t);
                        stats_at_settle = Some(self.procs.iter().map(|p| p.core.stats()).collect());
                    }
                } else if pending.is_empty() && settled_since.is_some() {
                    panic!(
                        "seed {}: unsettled again at {:.1} s after settling at {:.1} s",
                        self.seed,
                        secs(t),
                        secs(settled_since.unwrap())
                    );
                } else {
                    settled_since = None;
                }
            }
            if pending.is_empty() {
                let b = bound(self.setup.partitions, last_live, &self.config);
                let t = self.w.elapsed;
                if settled_since.is_none() && t > last_change + b {
                    panic!(
                        "seed {}: not settled {:.0} s after the last membership change (bound {:.0} s; {} live, {} partitions, {:?})",
                        self.seed,
                        secs(t - last_change),
                        secs(b),
                        last_live,
                        self.setup.partitions,
                        self.setup.strategy
                    );
                }
                if let Some(since) = settled_since {
                    if self.sending && t >= since + Duration::from_secs(60) {
                        self.sending = false;
                        stable_end = Some(t);
                    }
                }
                if !self.sending && self.send_op.is_none() {
                    let all = self.acked.iter().all(|id| self.processed.contains_key(id));
                    let idle = self.procs.iter().all(|p| {
                        p.working.is_empty() || matches!(p.life, Life::Killed | Life::Stopped)
                    });
                    if all && idle {
                        break;
                    }
                }
                assert!(
                    self.w.elapsed < hard_end,
                    "seed {}: not every event processed by {:.0} s ({} of {} acknowledged)",
                    self.seed,
                    secs(self.w.elapsed),
                    self.acked
                        .iter()
                        .filter(|id| self.processed.contains_key(*id))
                        .count(),
                    self.acked.len()
                );
            }
        }
        let settled = settled_since.expect("settled");
        let b = bound(self.setup.partitions, last_live, &self.config);
        self.figures.last_settle = (secs(settled.saturating_sub(last_change)), secs(b));
        self.check(settled, stable_end, stats_at_settle, measures)
    }

    fn check(
        mut self,
        settled: Duration,
        stable_end: Option<Duration>,
        stats_at_settle: Option<Vec<ProcessorStats>>,
        measures: Vec<(Duration, Change, Option<Duration>, Option<Duration>)>,
    ) -> Figures {
        let seed = self.seed;
        // No loss.
        let lost: Vec<i64> = self
            .acked
            .iter()
            .copied()
            .filter(|id| !self.processed.contains_key(id))
            .collect();
        assert!(lost.is_empty(), "seed {seed}: events lost: {lost:?}");
        // Nothing moves once settled.
        for s in &self.sessions {
            assert!(
                s.init < settled,
                "seed {seed}: {} initialized {} at {:.1} s, after settling at {:.1} s",
                self.procs[s.proc].name,
                s.partition,
                secs(s.init),
                secs(settled)
            );
            if let Some((t, reason)) = &s.close {
                assert!(
                    *t < settled,
                    "seed {seed}: {} closed {} at {:.1} s ({reason}) after settling at {:.1} s",
                    self.procs[s.proc].name,
                    s.partition,
                    secs(*t),
                    secs(settled)
                );
            }
        }
        // Each session starts right after its checkpoint and runs without
        // gap or repeat.
        let offsets = &self.offsets;
        for (k, s) in self.sessions.iter().enumerate() {
            let Some(first) = s.seqs.first() else {
                continue;
            };
            let expected = match &s.start {
                EventPosition::Earliest => 0,
                EventPosition::SequenceNumber {
                    sequence_number,
                    inclusive: false,
                } => sequence_number + 1,
                EventPosition::Offset {
                    offset,
                    inclusive: false,
                } => offsets[&(s.partition.clone(), offset.clone())] + 1,
                other => panic!("seed {seed}: unexpected start {other}"),
            };
            assert_eq!(
                *first, expected,
                "seed {seed}: session {k} of {} on {} started at {} but its first event is {first}",
                self.procs[s.proc].name, s.partition, s.start
            );
            for w in s.seqs.windows(2) {
                assert_eq!(
                    w[1],
                    w[0] + 1,
                    "seed {seed}: session {k} on {} jumps from {} to {}",
                    s.partition,
                    w[0],
                    w[1]
                );
            }
            if s.resumed {
                let prev = self.sessions[..k]
                    .iter()
                    .rev()
                    .find(|p| p.partition == s.partition)
                    .expect("a session to resume");
                if let Some(last) = prev.seqs.last() {
                    assert_eq!(
                        *first,
                        last + 1,
                        "seed {seed}: a resumed session repeats or skips"
                    );
                }
            }
        }
        // Duplicates only in a later session after an ownership change.
        let mut by_partition: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (k, s) in self.sessions.iter().enumerate() {
            by_partition.entry(&s.partition).or_default().push(k);
        }
        let mut duplicates = 0;
        let mut max_overlap = 0.0f64;
        for (partition, ks) in &by_partition {
            let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
            for (n, k) in ks.iter().enumerate() {
                let s = &self.sessions[*k];
                for seq in &s.seqs {
                    if let Some(earlier) = seen.insert(*seq, *k) {
                        duplicates += 1;
                        let e = &self.sessions[earlier];
                        let changed = e.proc != s.proc
                            || matches!(
                                e.close,
                                Some((_, CloseReason::OwnershipLost | CloseReason::Shutdown))
                            );
                        assert!(
                            changed && !s.resumed,
                            "seed {seed}: event {seq} of {partition} processed again without an ownership change"
                        );
                    }
                }
                for other in &ks[..n] {
                    let o = &self.sessions[*other];
                    if o.proc == s.proc {
                        continue;
                    }
                    if let (Some(a0), Some(a1), Some(b0), Some(b1)) =
                        (o.first_batch, o.last_batch, s.first_batch, s.last_batch)
                    {
                        let overlap = secs(a1.min(b1)) - secs(a0.max(b0));
                        max_overlap = max_overlap.max(overlap);
                    }
                }
            }
        }
        // Graceful stops: handed over within one cycle of relinquishing.
        let cycle = secs(max_cycle_delay(&self.config.load_balancing));
        let mut handovers = Vec::new();
        for (i, p) in self.procs.iter().enumerate() {
            let Some(stopped) = p.stopped_at else {
                continue;
            };
            let mine: BTreeSet<&str> = self
                .sessions
                .iter()
                .filter(|s| s.proc == i && matches!(s.close, Some((_, CloseReason::Shutdown))))
                .map(|s| s.partition.as_str())
                .collect();
            let mut worst: f64 = 0.0;
            for part in mine {
                let next = self
                    .sessions
                    .iter()
                    .filter(|s| s.partition == part && s.proc != i && s.init >= stopped)
                    .map(|s| s.init)
                    .min()
                    .unwrap_or_else(|| panic!("seed {seed}: {part} never taken over"));
                worst = worst.max(secs(next - stopped));
            }
            assert!(
                worst <= 2.0 * cycle + 1.0,
                "seed {seed}: a graceful stop took {worst:.1} s to hand over (cycle {cycle:.1} s)"
            );
            handovers.push((worst, worst / cycle));
        }
        // Storage requests per cycle while stable: ownership (listing and
        // renewals) and checkpoint writes.
        let mut rpc = Vec::new();
        if let (Some(before), Some(_)) = (stats_at_settle, stable_end) {
            for (i, p) in self.procs.iter().enumerate() {
                if p.life != Life::Running || i >= before.len() {
                    continue;
                }
                let (s, b) = (p.core.stats(), before[i]);
                let cycles = (s.cycles - b.cycles) as f64;
                if cycles > 0.0 {
                    let owned = p.core.owned_partitions().len() as f64;
                    let ownership = (s.list_ownership + s.claims + s.list_checkpoints
                        - b.list_ownership
                        - b.claims
                        - b.list_checkpoints) as f64;
                    let writes = (s.checkpoint_writes - b.checkpoint_writes) as f64;
                    rpc.push((owned, ownership / cycles, writes / cycles));
                }
            }
        }
        let events = self.processed.values().sum();
        self.figures.settles = measures
            .iter()
            .map(|(_, c, cov, bal)| (*c, cov.map_or(f64::NAN, secs), bal.map_or(f64::NAN, secs)))
            .collect();
        self.figures.handovers = handovers;
        self.figures.duplicates = duplicates;
        self.figures.events = events;
        self.figures.max_overlap = max_overlap;
        self.figures.requests_per_cycle = rpc;
        self.figures.store_failures = self.store.failures;
        self.figures.store_slow = self.store.slow;
        self.figures.cuts = self.w.peers.iter().map(|p| u64::from(p.drops)).sum();
        self.figures
    }
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    (0..n).collect()
}

#[test]
fn processor_fleets_under_membership_changes_and_store_faults() {
    let mut all: Vec<(u64, Figures, LoadBalancingStrategy)> = Vec::new();
    for seed in seeds() {
        let started = std::time::Instant::now();
        let run = Run::new(seed);
        let strategy = run.setup.strategy;
        let f = run.run();
        if std::env::var("SIM_VERBOSE").is_ok() {
            println!("seed {seed}: {f:?} ({:?})", started.elapsed());
        }
        all.push((seed, f, strategy));
    }
    report(&all);
}

fn report(all: &[(u64, Figures, LoadBalancingStrategy)]) {
    for strategy in [
        LoadBalancingStrategy::Balanced,
        LoadBalancingStrategy::Greedy,
    ] {
        for change in [Change::Join, Change::Stop, Change::Kill] {
            let xs: Vec<(f64, f64)> = all
                .iter()
                .filter(|(_, _, s)| *s == strategy)
                .flat_map(|(_, f, _)| f.settles.iter())
                .filter(|(c, _, _)| *c == change)
                .map(|(_, a, b)| (*a, *b))
                .collect();
            if xs.is_empty() {
                continue;
            }
            let max = |v: Vec<f64>| v.into_iter().fold(0.0f64, f64::max);
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let cov: Vec<f64> = xs.iter().map(|x| x.0).collect();
            let bal: Vec<f64> = xs.iter().map(|x| x.1).collect();
            println!(
                "{strategy} {change:?}: every partition owned once after mean {:.1} s, max {:.1} s; fair share after mean {:.1} s, max {:.1} s ({} changes)",
                mean(&cov),
                max(cov.clone()),
                mean(&bal),
                max(bal.clone()),
                xs.len()
            );
        }
    }
    let hand: Vec<f64> = all
        .iter()
        .flat_map(|(_, f, _)| f.handovers.iter().map(|h| h.1))
        .collect();
    let within_one = hand.iter().filter(|c| **c <= 1.0).count();
    println!(
        "graceful stops: {} handed over, {within_one} within one cycle, worst {:.2} cycles",
        hand.len(),
        hand.iter().fold(0.0f64, |a, b| a.max(*b))
    );
    let rpc: Vec<(f64, f64, f64)> = all
        .iter()
        .flat_map(|(_, f, _)| f.requests_per_cycle.iter().copied())
        .collect();
    // Ownership requests per cycle minus partitions owned: the listing.
    let extra = rpc.iter().map(|r| r.1 - r.0).fold(0.0f64, f64::max);
    let writes = rpc.iter().map(|r| r.2).sum::<f64>() / rpc.len().max(1) as f64;
    println!(
        "storage requests per processor per cycle while stable: 1 listing + 1 renewal per owned partition (largest excess over the owned count: {extra:.2}); checkpoint writes per cycle: mean {writes:.2} ({} processors)",
        rpc.len()
    );
    let worst = all
        .iter()
        .map(|(_, f, _)| f.last_settle)
        .fold((0.0f64, 0.0f64), |a, b| {
            if b.0 / b.1 > a.0 / a.1.max(1e-9) {
                b
            } else {
                a
            }
        });
    println!(
        "after the last membership change: settled within the bound on every seed; closest {:.1} s of a {:.1} s bound",
        worst.0, worst.1
    );
    let events: u64 = all.iter().map(|(_, f, _)| f.events).sum();
    let dups: u64 = all.iter().map(|(_, f, _)| f.duplicates).sum();
    let overlap = all
        .iter()
        .map(|(_, f, _)| f.max_overlap)
        .fold(0.0f64, f64::max);
    let fails: u64 = all.iter().map(|(_, f, _)| f.store_failures).sum();
    let slow: u64 = all.iter().map(|(_, f, _)| f.store_slow).sum();
    let cuts: u64 = all.iter().map(|(_, f, _)| f.cuts).sum();
    println!(
        "{} seeds: {events} events processed, {dups} again after an ownership change; longest two-owner overlap {overlap:.2} s; {fails} store requests failed, {slow} slowed past the time-out; {cuts} connections cut",
        all.len()
    );
}
