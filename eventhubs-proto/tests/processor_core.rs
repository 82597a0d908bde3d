//! The processor core (`eventhubs_proto::processor::Processor`) driven by hand: a [`MemoryStore`] answers
//! its store requests at once (or not, or with a failure), receivers are
//! fed events by the test, and time moves only when the test says.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eventhubs_proto::checkpoint::{MemoryStore, PartitionCheckpoint, PartitionOwnership};
use eventhubs_proto::client::{EventData, Now, ReceivedEvent};
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_proto::processor::*;

const NS: &str = "localhost:5672";
const HUB: &str = "eh1";
const CG: &str = "$Default";
const T0: i64 = 1_800_000_000_000;

fn event(partition: &str, seq: i64) -> ReceivedEvent {
    ReceivedEvent::new(
        partition,
        seq,
        (seq * 100).to_string(),
        EventData::default(),
    )
}

/// How the harness answers store requests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// From the store, at once.
    Store,
    /// With a failure.
    Fail,
    /// Not at all (the request hangs).
    Hang,
}

struct Harness {
    p: Processor,
    store: MemoryStore,
    start: Instant,
    elapsed: Duration,
    answer: Answer,
    /// Receivers open: key -> (partition, position).
    open: BTreeMap<ReceiverKey, (String, EventPosition)>,
    closed: Vec<ReceiverKey>,
    events: Vec<ProcessorEvent>,
    hung: Vec<(StoreOpId, Action)>,
}

impl Harness {
    fn new(owner: &str, partitions: usize, f: impl FnOnce(&mut ProcessorConfig)) -> Self {
        Self::with_store(owner, partitions, MemoryStore::new(), f)
    }

    fn with_store(
        owner: &str,
        partitions: usize,
        store: MemoryStore,
        f: impl FnOnce(&mut ProcessorConfig),
    ) -> Self {
        let mut config = ProcessorConfig::new(NS, HUB, owner);
        config.seed = 7;
        f(&mut config);
        let mut h = Harness {
            p: Processor::new(config).expect("valid"),
            store,
            start: Instant::now(),
            elapsed: Duration::ZERO,
            answer: Answer::Store,
            open: BTreeMap::new(),
            closed: Vec::new(),
            events: Vec::new(),
            hung: Vec::new(),
        };
        let now = h.now();
        h.p.start(now);
        assert_eq!(h.p.poll_action(), Some(Action::GetPartitionIds));
        let ids = (0..partitions).map(|i| i.to_string()).collect();
        h.p.handle_partition_ids(now, Ok(ids));
        h.pump();
        h
    }

    fn now(&self) -> Now {
        Now {
            instant: self.start + self.elapsed,
            unix_ms: T0 + self.elapsed.as_millis() as i64,
        }
    }

    /// Answers what the processor asked, until it asks nothing more.
    fn pump(&mut self) {
        while let Some(a) = self.p.poll_action() {
            let now = self.now();
            let reply = match &a {
                Action::OpenReceiver(o) => {
                    self.open
                        .insert(o.receiver, (o.partition_id.clone(), o.position.clone()));
                    self.p.handle_receiver_opened(now, o.receiver);
                    continue;
                }
                Action::CloseReceiver { receiver } => {
                    self.open.remove(receiver);
                    self.closed.push(*receiver);
                    continue;
                }
                Action::GetPartitionIds => continue,
                _ if self.answer == Answer::Hang => {
                    let op = match &a {
                        Action::ListOwnership { op }
                        | Action::ClaimOwnership { op, .. }
                        | Action::ListCheckpoints { op }
                        | Action::UpdateCheckpoint { op, .. } => *op,
                        _ => unreachable!(),
                    };
                    self.hung.push((op, a));
                    continue;
                }
                Action::ListOwnership { op } => (
                    *op,
                    StoreReply::OwnershipListed(self.result(|s| s.list_ownership(NS, HUB, CG))),
                ),
                Action::ClaimOwnership { op, claims } => {
                    let ms = now.unix_ms;
                    (
                        *op,
                        StoreReply::OwnershipClaimed(
                            self.result(|s| s.claim_ownership(ms, claims)),
                        ),
                    )
                }
                Action::ListCheckpoints { op } => (
                    *op,
                    StoreReply::CheckpointsListed(self.result(|s| s.list_checkpoints(NS, HUB, CG))),
                ),
                Action::UpdateCheckpoint { op, checkpoint } => (
                    *op,
                    StoreReply::CheckpointUpdated(self.result(|s| {
                        s.update_checkpoint(checkpoint).expect("complete");
                    })),
                ),
                other => panic!("unexpected {other:?}"),
            };
            self.p.handle_store_reply(now, reply.0, reply.1);
        }
        while let Some(e) = self.p.poll_event() {
            self.events.push(e);
        }
    }

    fn result<T>(&mut self, f: impl FnOnce(&mut MemoryStore) -> T) -> Result<T, StoreFailure> {
        match self.answer {
            Answer::Store => Ok(f(&mut self.store)),
            Answer::Fail => Err(StoreFailure::new("503 ServerBusy")),
            Answer::Hang => unreachable!(),
        }
    }

    /// Moves time forward by `d`, firing timers on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.elapsed + d;
        loop {
            let next = self.p.poll_timeout().map(|t| t - self.start);
            match next {
                Some(t) if t <= end => {
                    self.elapsed = self.elapsed.max(t);
                    let now = self.now();
                    self.p.handle_timeout(now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.elapsed = end;
        let now = self.now();
        self.p.handle_timeout(now);
        self.pump();
    }

    fn receiver_of(&self, partition: &str) -> Option<ReceiverKey> {
        self.open
            .iter()
            .find(|(_, (p, _))| p == partition)
            .map(|(k, _)| *k)
    }

    fn feed(&mut self, partition: &str, seqs: std::ops::Range<i64>) {
        let key = self.receiver_of(partition).expect("receiver open");
        for s in seqs {
            let now = self.now();
            self.p.handle_received(now, key, event(partition, s));
        }
        self.pump();
    }

    fn take_events(&mut self) -> Vec<ProcessorEvent> {
        std::mem::take(&mut self.events)
    }

    fn batches(events: &[ProcessorEvent]) -> Vec<(String, Vec<i64>, BatchId)> {
        events
            .iter()
            .filter_map(|e| match e {
                ProcessorEvent::Events(b) => Some((
                    b.partition_id.clone(),
                    b.events.iter().map(|e| e.sequence_number()).collect(),
                    b.batch,
                )),
                _ => None,
            })
            .collect()
    }

    fn done(&mut self, batch: BatchId) {
        let now = self.now();
        self.p
            .handle_batch_done(now, batch, BatchOutcome::Processed);
        self.pump();
    }

    /// Processes every batch handed over, until none is left.
    fn finish_batches(&mut self) {
        loop {
            let b = Harness::batches(&self.take_events());
            if b.is_empty() {
                return;
            }
            for (_, _, id) in b {
                self.done(id);
            }
        }
    }

    fn owner_of(&self, partition: &str) -> Option<String> {
        self.store
            .list_ownership(NS, HUB, CG)
            .into_iter()
            .find(|o| o.partition_id == partition)
            .map(|o| o.owner_id)
    }
}

fn greedy(c: &mut ProcessorConfig) {
    c.load_balancing = c
        .load_balancing
        .clone()
        .with_strategy(LoadBalancingStrategy::Greedy);
}

#[test]
fn a_processor_alone_claims_reads_checkpoints_and_opens_receivers() {
    let mut store = MemoryStore::new();
    store
        .update_checkpoint(&PartitionCheckpoint::new(NS, HUB, CG, "1", "500", 5))
        .unwrap();
    let mut h = Harness::with_store("a", 2, store, greedy);
    assert_eq!(h.p.owned_partitions(), ["0", "1"]);
    assert_eq!(h.p.partitions_being_processed(), ["0", "1"]);
    let positions: BTreeMap<String, EventPosition> = h.open.values().cloned().collect();
    assert_eq!(positions["0"], EventPosition::Earliest);
    assert_eq!(positions["1"], EventPosition::offset("500", false));
    let inits: Vec<_> = h
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, ProcessorEvent::PartitionInitialized { .. }))
        .collect();
    assert_eq!(inits.len(), 2);
    assert_eq!(h.owner_of("0").as_deref(), Some("a"));
    // Stats: one listing, one round of two claims, one checkpoint listing.
    let s = h.p.stats();
    assert_eq!(
        (s.cycles, s.list_ownership, s.claims, s.list_checkpoints),
        (1, 1, 2, 1)
    );
    // The next cycle only renews: list + 2 claims.
    h.advance(Duration::from_secs(13));
    let s = h.p.stats();
    assert_eq!(
        (s.cycles, s.list_ownership, s.claims, s.list_checkpoints),
        (2, 2, 4, 1)
    );
}

#[test]
fn balanced_claims_one_partition_per_cycle() {
    let mut h = Harness::new("a", 4, |_| {});
    assert_eq!(h.p.owned_partitions().len(), 1);
    let mut cycles = 1;
    while h.p.owned_partitions().len() < 4 {
        h.advance(Duration::from_secs(12));
        cycles += 1;
        assert!(cycles <= 4);
    }
    assert_eq!(cycles, 4);
}

#[test]
fn per_partition_start_positions_apply_without_a_checkpoint() {
    let h = Harness::new("a", 2, |c| {
        greedy(c);
        c.start_positions = StartPositions::all(EventPosition::Latest)
            .with("1", EventPosition::sequence_number(42, true));
    });
    let positions: BTreeMap<String, EventPosition> = h.open.values().cloned().collect();
    assert_eq!(positions["0"], EventPosition::Latest);
    assert_eq!(positions["1"], EventPosition::sequence_number(42, true));
}

#[test]
fn batches_fill_to_the_maximum_or_leave_after_the_wait() {
    let mut h = Harness::new("a", 1, |c| {
        c.max_batch_size = 3;
        c.max_wait = Duration::from_millis(500);
    });
    h.take_events();
    h.feed("0", 0..7);
    let b = Harness::batches(&h.take_events());
    // One batch of 3 at once; the next waits for the first to be done.
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].1, [0, 1, 2]);
    let key = h.receiver_of("0").unwrap();
    assert!(!h.p.accepts_events(key), "4 pending > 3: back-pressure");
    h.done(b[0].2);
    let b = Harness::batches(&h.take_events());
    assert_eq!(b[0].1, [3, 4, 5]);
    h.done(b[0].2);
    // One left: it waits up to max_wait after it arrived.
    assert!(Harness::batches(&h.take_events()).is_empty());
    h.advance(Duration::from_millis(499));
    assert!(Harness::batches(&h.take_events()).is_empty());
    h.advance(Duration::from_millis(1));
    let b = Harness::batches(&h.take_events());
    assert_eq!(b[0].1, [6]);
    // AfterBatch: each processed batch is checkpointed at its last event.
    h.done(b[0].2);
    let cps = h.store.list_checkpoints(NS, HUB, CG);
    assert_eq!(cps[0].sequence_number, Some(6));
    assert_eq!(cps[0].offset.as_deref(), Some("600"));
    assert_eq!(h.p.stats().checkpoint_writes, 3);
}

#[test]
fn a_stolen_receiver_stops_its_partition_before_anything_more_is_delivered() {
    let mut h = Harness::new("a", 1, |c| c.max_wait = Duration::from_secs(5));
    h.take_events();
    h.feed("0", 0..3);
    let key = h.receiver_of("0").unwrap();
    let now = h.now();
    h.p.handle_receiver_closed(
        now,
        key,
        Some(ReceiverFailure::ownership_lost("amqp:link:stolen")),
    );
    h.pump();
    // The three buffered events are never handed over.
    h.advance(Duration::from_secs(6));
    let ev = h.take_events();
    assert!(Harness::batches(&ev).is_empty(), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(
        e,
        ProcessorEvent::PartitionClosed { partition_id, reason: CloseReason::OwnershipLost } if partition_id == "0"
    )));
    assert!(h.p.partitions_being_processed().is_empty());
    // Late events of that receiver are ignored.
    let now = h.now();
    h.p.handle_received(now, key, event("0", 3));
    h.pump();
    assert!(h.p.poll_event().is_none());
}

#[test]
fn a_partition_found_under_another_owner_is_closed_after_its_batch_in_hand() {
    let mut h = Harness::new("a", 1, |c| c.max_batch_size = 2);
    h.take_events();
    h.feed("0", 0..4);
    let b = Harness::batches(&h.take_events());
    assert_eq!(b.len(), 1);
    // b steals it in the store.
    let listed = h.store.list_ownership(NS, HUB, CG);
    let won = h.store.claim_ownership(T0, &[listed[0].claimed_by("b")]);
    assert_eq!(won.len(), 1);
    h.advance(Duration::from_secs(12));
    let ev = h.take_events();
    // Its receiver is closed at once; the batch in hand is finished first,
    // then the partition is closed; the pending two are dropped.
    assert_eq!(h.closed.len(), 1);
    assert!(!ev
        .iter()
        .any(|e| matches!(e, ProcessorEvent::PartitionClosed { .. })));
    assert!(h.p.owned_partitions().is_empty());
    // A checkpoint of a partition no longer ours is refused.
    let now = h.now();
    assert_eq!(
        h.p.request_checkpoint(now, "0", "100", 1),
        Err(CheckpointRefused::NotOwned("0".into()))
    );
    h.done(b[0].2);
    let ev = h.take_events();
    assert!(Harness::batches(&ev).is_empty());
    assert!(ev.iter().any(|e| matches!(
        e,
        ProcessorEvent::PartitionClosed {
            reason: CloseReason::OwnershipLost,
            ..
        }
    )));
    // And the processed batch is not checkpointed over the new owner.
    assert!(h.store.list_checkpoints(NS, HUB, CG).is_empty());
}

#[test]
fn failing_renewals_keep_ownership_until_it_expires_then_stop() {
    let mut h = Harness::new("a", 1, |_| {});
    assert_eq!(h.p.partitions_being_processed(), ["0"]);
    h.answer = Answer::Fail;
    h.take_events();
    // 50 s of failing cycles: still ours (expiry 60 s after the last win).
    h.advance(Duration::from_secs(50));
    assert_eq!(h.p.partitions_being_processed(), ["0"]);
    let errors = h
        .take_events()
        .iter()
        .filter(|e| matches!(e, ProcessorEvent::Error(_)))
        .count();
    assert!(errors >= 4, "{errors}");
    h.advance(Duration::from_secs(10));
    assert!(h.p.partitions_being_processed().is_empty());
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ProcessorEvent::PartitionClosed {
            reason: CloseReason::OwnershipLost,
            ..
        }
    )));
    // The store recovers: the next cycle claims it back (our own record)
    // and starts again.
    h.answer = Answer::Store;
    h.advance(Duration::from_secs(13));
    assert_eq!(h.p.partitions_being_processed(), ["0"]);
}

#[test]
fn a_store_request_without_an_answer_times_out_and_its_late_answer_is_ignored() {
    let mut h = Harness::new("a", 2, |c| c.store_timeout = Some(Duration::from_secs(5)));
    h.answer = Answer::Hang;
    h.advance(Duration::from_secs(12));
    assert_eq!(h.hung.len(), 1, "the listing hangs: {:?}", h.hung);
    h.advance(Duration::from_secs(5));
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ProcessorEvent::Error(ProcessorError {
            kind: ErrorKind::ListOwnership,
            ..
        })
    )));
    assert_eq!(h.p.stats().store_failures, 1);
    // The late answer changes nothing.
    let (op, _) = h.hung.remove(0);
    let now = h.now();
    h.p.handle_store_reply(now, op, StoreReply::OwnershipListed(Ok(Vec::new())));
    assert!(h.p.poll_action().is_none());
    // The next cycle goes on.
    h.answer = Answer::Store;
    h.advance(Duration::from_secs(13));
    assert_eq!(h.p.owned_partitions().len(), 2);
}

#[test]
fn checkpoint_writes_are_serialised_and_coalesced() {
    let mut h = Harness::new("a", 1, |c| c.checkpoint_policy = CheckpointPolicy::Manual);
    h.take_events();
    h.answer = Answer::Hang;
    let now = h.now();
    let r1 = h.p.request_checkpoint(now, "0", "100", 1).unwrap();
    let r2 = h.p.request_checkpoint(now, "0", "200", 2).unwrap();
    let r3 = h.p.request_checkpoint(now, "0", "300", 3).unwrap();
    h.pump();
    // One write in flight; the later two wait as one.
    assert_eq!(h.hung.len(), 1);
    h.answer = Answer::Store;
    let (op, action) = h.hung.remove(0);
    let Action::UpdateCheckpoint { checkpoint, .. } = action else {
        panic!()
    };
    assert_eq!(checkpoint.sequence_number, Some(1));
    h.store.update_checkpoint(&checkpoint).unwrap();
    let now = h.now();
    h.p.handle_store_reply(now, op, StoreReply::CheckpointUpdated(Ok(())));
    h.pump();
    let done: Vec<CheckpointRequestId> = h
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            ProcessorEvent::CheckpointUpdated { request, result } => {
                assert!(result.is_ok());
                Some(request)
            }
            _ => None,
        })
        .collect();
    assert_eq!(done, [r1, r2, r3]);
    assert_eq!(
        h.store.list_checkpoints(NS, HUB, CG)[0].sequence_number,
        Some(3)
    );
    assert_eq!(h.p.stats().checkpoint_writes, 2);
}

#[test]
fn a_receiver_error_restarts_the_partition_next_cycle_after_the_last_event_handed_over() {
    let mut h = Harness::new("a", 1, |c| {
        c.checkpoint_policy = CheckpointPolicy::Manual;
        c.max_wait = Duration::ZERO;
    });
    h.take_events();
    h.feed("0", 0..5);
    h.finish_batches();
    let key = h.receiver_of("0").unwrap();
    let now = h.now();
    h.p.handle_receiver_closed(now, key, Some(ReceiverFailure::other("connection lost")));
    h.open.remove(&key);
    h.pump();
    let ev = h.take_events();
    assert!(ev.iter().any(|e| matches!(
        e,
        ProcessorEvent::PartitionClosed {
            reason: CloseReason::Error(_),
            ..
        }
    )));
    assert_eq!(h.p.owned_partitions(), ["0"]);
    h.advance(Duration::from_secs(12));
    let (_, pos) = h.open.values().next().expect("reopened");
    assert_eq!(*pos, EventPosition::sequence_number(4, false));
}

#[test]
fn a_graceful_stop_drains_checkpoints_and_relinquishes() {
    let mut h = Harness::new("a", 2, |c| {
        greedy(c);
        c.checkpoint_policy = CheckpointPolicy::Manual;
        c.max_wait = Duration::from_millis(10);
    });
    h.take_events();
    h.feed("0", 0..3);
    h.feed("1", 0..2);
    h.advance(Duration::from_millis(10));
    let b = Harness::batches(&h.take_events());
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(b[0].1, [0, 1, 2]);
    h.done(b[1].2);
    let now = h.now();
    h.p.stop(
        now,
        StopOptions {
            checkpoint: true,
            ..StopOptions::default()
        },
    );
    h.pump();
    // Receivers closed at once; partition 0's batch is still in hand.
    assert_eq!(h.closed.len(), 2);
    assert!(!h.p.is_stopped());
    assert_eq!(h.owner_of("0").as_deref(), Some("a"));
    h.done(b[0].2);
    assert!(h.p.is_stopped());
    let ev = h.take_events();
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(
                e,
                ProcessorEvent::PartitionClosed {
                    reason: CloseReason::Shutdown,
                    ..
                }
            ))
            .count(),
        2
    );
    assert_eq!(ev.last(), Some(&ProcessorEvent::Stopped));
    let mut cps: Vec<_> = h
        .store
        .list_checkpoints(NS, HUB, CG)
        .into_iter()
        .map(|c| (c.partition_id, c.sequence_number))
        .collect();
    cps.sort();
    assert_eq!(cps, [("0".into(), Some(2)), ("1".into(), Some(1))]);
    assert_eq!(h.owner_of("0").as_deref(), Some(""));
    assert_eq!(h.owner_of("1").as_deref(), Some(""));
    assert!(h.p.poll_timeout().is_none());
}

#[test]
fn a_stop_whose_batch_never_finishes_relinquishes_after_the_drain_time_out() {
    let mut h = Harness::new("a", 1, |c| c.max_wait = Duration::ZERO);
    h.take_events();
    h.feed("0", 0..1);
    let now = h.now();
    h.p.stop(
        now,
        StopOptions {
            checkpoint: false,
            drain_timeout: Duration::from_secs(3),
        },
    );
    h.pump();
    assert!(!h.p.is_stopped());
    h.advance(Duration::from_secs(3));
    assert!(h.p.is_stopped());
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ProcessorEvent::Error(ProcessorError {
            kind: ErrorKind::DrainTimeout,
            ..
        })
    )));
    assert_eq!(h.owner_of("0").as_deref(), Some(""));
}

#[test]
fn a_successor_takes_relinquished_partitions_in_its_next_cycle_from_the_checkpoints() {
    let mut a = Harness::new("a", 4, |c| {
        greedy(c);
        c.max_wait = Duration::ZERO;
    });
    a.take_events();
    for p in ["0", "1", "2", "3"] {
        a.feed(p, 0..10);
    }
    a.finish_batches();
    let now = a.now();
    a.p.stop(now, StopOptions::default());
    a.pump();
    assert!(a.p.is_stopped());
    // b (balanced) starts on the same store: all four in one cycle.
    let b = Harness::with_store("b", 4, a.store.clone(), |_| {});
    assert_eq!(b.p.owned_partitions().len(), 4);
    for (_, pos) in b.open.values() {
        assert_eq!(*pos, EventPosition::offset("900", false));
    }
}

#[test]
fn settings_that_cannot_work_are_refused_with_a_reason() {
    let mut c = ProcessorConfig::new(NS, HUB, "a");
    c.load_balancing = LoadBalancingConfig::default()
        .with_update_interval(Duration::from_secs(30))
        .with_ownership_expiry(Duration::from_secs(60));
    let e = Processor::new(c).unwrap_err();
    assert!(e.to_string().contains("at least 3 times"), "{e}");
    let mut c = ProcessorConfig::new(NS, HUB, "");
    c.seed = 1;
    assert_eq!(
        Processor::new(c).unwrap_err().to_string(),
        "the processor's owner id is empty"
    );
    let mut c = ProcessorConfig::new(NS, HUB, "a");
    c.max_batch_size = 0;
    assert!(Processor::new(c).is_err());
    let mut c = ProcessorConfig::new(NS, HUB, "a");
    c.store_timeout = Some(Duration::from_secs(60));
    assert!(Processor::new(c)
        .unwrap_err()
        .to_string()
        .contains("shorter than the ownership expiry"));
}

#[test]
fn the_same_seed_and_inputs_give_the_same_outputs() {
    let run = || {
        let mut h = Harness::new("a", 8, |_| {});
        let mut log = Vec::new();
        for _ in 0..10 {
            h.advance(Duration::from_secs(7));
            log.push((
                h.p.poll_timeout().map(|t| t - h.start),
                h.p.owned_partitions(),
            ));
        }
        log
    };
    assert_eq!(run(), run());
}

#[test]
fn a_claim_lost_to_a_racer_is_not_an_error() {
    // b listed the store before a claimed partition 0: b's claim (no ETag)
    // loses, as a 409 would in Blob Storage, and is no error.
    let mut a = Harness::new("a", 1, |_| {});
    assert_eq!(a.p.owned_partitions(), ["0"]);
    let mut config = ProcessorConfig::new(NS, HUB, "b");
    config.seed = 3;
    let mut b = Processor::new(config).unwrap();
    let now = a.now();
    b.start(now);
    let _ = b.poll_action();
    b.handle_partition_ids(now, Ok(vec!["0".into()]));
    let Some(Action::ListOwnership { op }) = b.poll_action() else {
        panic!()
    };
    b.handle_store_reply(now, op, StoreReply::OwnershipListed(Ok(Vec::new())));
    let Some(Action::ClaimOwnership { op, claims }) = b.poll_action() else {
        panic!()
    };
    assert_eq!(claims[0].etag, None);
    let won = a.store.claim_ownership(now.unix_ms, &claims);
    assert!(won.is_empty());
    b.handle_store_reply(now, op, StoreReply::OwnershipClaimed(Ok(won)));
    assert!(b.poll_action().is_none());
    assert!(b.owned_partitions().is_empty());
    assert!(std::iter::from_fn(|| b.poll_event()).all(|e| !matches!(e, ProcessorEvent::Error(_))));
    let _ = PartitionOwnership::new(NS, HUB, CG, "0", "x");
}

#[test]
fn a_failed_checkpoint_of_its_own_is_written_again_after_a_back_off() {
    let mut h = Harness::new("a", 1, |c| c.max_wait = Duration::ZERO);
    h.take_events();
    h.answer = Answer::Fail;
    h.feed("0", 0..1);
    let b = Harness::batches(&h.take_events());
    h.done(b[0].2);
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ProcessorEvent::Error(ProcessorError {
            kind: ErrorKind::UpdateCheckpoint,
            ..
        })
    )));
    assert!(h.store.list_checkpoints(NS, HUB, CG).is_empty());
    h.answer = Answer::Store;
    h.advance(Duration::from_millis(999));
    assert!(h.store.list_checkpoints(NS, HUB, CG).is_empty());
    h.advance(Duration::from_millis(1));
    let cps = h.store.list_checkpoints(NS, HUB, CG);
    assert_eq!(cps[0].sequence_number, Some(0));
}

#[test]
fn a_deleted_ownership_record_is_claimed_again_without_stopping_the_partition() {
    let mut h = Harness::new("a", 1, |_| {});
    let key = h.receiver_of("0").expect("open");
    // Someone deletes the blob: the next listing has no record.
    h.store = MemoryStore::new();
    h.take_events();
    h.advance(Duration::from_secs(12));
    assert_eq!(h.owner_of("0").as_deref(), Some("a"));
    assert_eq!(h.receiver_of("0"), Some(key), "the same receiver goes on");
    assert!(!h
        .take_events()
        .iter()
        .any(|e| matches!(e, ProcessorEvent::PartitionClosed { .. })));
}
