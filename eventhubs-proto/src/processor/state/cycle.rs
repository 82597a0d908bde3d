//! The load-balancing cycle: list ownership, plan, claim, read
//! checkpoints for partitions won, open their receivers.

use super::*;

impl Processor {
    pub(super) fn next(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(super) fn store_op(&mut self, now: Now, kind: OpKind) -> StoreOpId {
        let op = StoreOpId(self.next());
        self.ops.insert(
            op,
            PendingOp {
                kind,
                deadline: now.instant + self.config.store_timeout(),
            },
        );
        op
    }

    pub(super) fn ownership_record(&self, partition_id: &str) -> PartitionOwnership {
        PartitionOwnership::new(
            self.config.fully_qualified_namespace.clone(),
            self.config.event_hub.clone(),
            self.config.consumer_group.clone(),
            partition_id,
            self.config.owner_id.clone(),
        )
    }

    pub(super) fn start_cycle(&mut self, now: Now) {
        self.stats.cycles += 1;
        self.stats.list_ownership += 1;
        self.cycle_started = Some(now.instant);
        self.next_cycle = None;
        let op = self.store_op(now, OpKind::ListOwnership);
        self.cycle = Cycle::Listing { op, listed_at: now };
        self.actions.push_back(Action::ListOwnership { op });
    }

    pub(super) fn finish_cycle(&mut self, now: Now) {
        self.cycle = Cycle::Idle;
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let delay = cycle_delay(&self.config.load_balancing, &mut self.rng);
        let from = self.cycle_started.unwrap_or(now.instant);
        self.next_cycle = Some((from + delay).max(now.instant));
    }

    pub(super) fn on_listed(
        &mut self,
        now: Now,
        op: StoreOpId,
        result: Result<Vec<PartitionOwnership>, StoreFailure>,
    ) {
        let listed_at = match &self.cycle {
            Cycle::Listing { op: o, listed_at } if *o == op => *listed_at,
            _ => return,
        };
        if !matches!(self.phase, Phase::Running) {
            self.cycle = Cycle::Idle;
            return;
        }
        let records = match result {
            Ok(r) => r,
            Err(f) => {
                self.stats.store_failures += 1;
                self.error(ErrorKind::ListOwnership, None, f.message);
                self.finish_cycle(now);
                return;
            }
        };
        // The records are at least as old as the request: judging expiry
        // by the time it was sent never takes a slow listing's renewed
        // records for expired ones.
        let views = records.iter().map(|r| OwnershipView {
            partition_id: &r.partition_id,
            owner_id: &r.owner_id,
            last_modified_unix_ms: r.last_modified_unix_ms.unwrap_or(i64::MIN + 1),
        });
        let plan = balance::plan(
            &self.partition_ids,
            views,
            &self.config.owner_id,
            listed_at.unix_ms,
            &self.config.load_balancing,
            &mut self.rng,
        );
        self.fair_share = Some((plan.owners, plan.fair_share));
        let listed = |p: &str| records.iter().find(|r| r.partition_id == p);
        let mut claims = Vec::new();
        let mut claimed = BTreeSet::new();
        for p in &plan.renew {
            let record = listed(p).map_or_else(
                || self.ownership_record(p),
                |r| r.claimed_by(self.config.owner_id.clone()),
            );
            claims.push(record);
            claimed.insert(p.clone());
        }
        for c in &plan.claim {
            let record = listed(&c.partition_id).map_or_else(
                || self.ownership_record(&c.partition_id),
                |r| r.claimed_by(self.config.owner_id.clone()),
            );
            debug!(partition = %c.partition_id, owner = %self.config.owner_id, stolen_from = ?c.stolen_from, "claiming");
            claims.push(record);
            claimed.insert(c.partition_id.clone());
        }
        if claims.is_empty() {
            self.apply_claims(now, Some(Vec::new()), &claimed, now.instant);
            self.after_claims(now);
            return;
        }
        self.stats.claim_rounds += 1;
        self.stats.claims += claims.len() as u64;
        let op = self.store_op(now, OpKind::Claim);
        self.cycle = Cycle::Claiming {
            op,
            sent_at: now.instant,
            claimed,
        };
        self.actions
            .push_back(Action::ClaimOwnership { op, claims });
    }

    pub(super) fn on_claimed(
        &mut self,
        now: Now,
        op: StoreOpId,
        result: Result<Vec<PartitionOwnership>, StoreFailure>,
    ) {
        let (sent_at, claimed) = match std::mem::replace(&mut self.cycle, Cycle::Idle) {
            Cycle::Claiming {
                op: o,
                sent_at,
                claimed,
            } if o == op => (sent_at, claimed),
            other => {
                self.cycle = other;
                return;
            }
        };
        match result {
            Ok(won) => self.apply_claims(now, Some(won), &claimed, sent_at),
            Err(f) => {
                self.stats.store_failures += 1;
                self.error(ErrorKind::ClaimOwnership, None, f.message);
                self.apply_claims(now, None, &claimed, sent_at);
            }
        }
        self.after_claims(now);
    }

    /// Takes in a round of claims: `won` (`None` when the round failed,
    /// so nothing is known and our ownerships stand until they expire).
    pub(super) fn apply_claims(
        &mut self,
        now: Now,
        won: Option<Vec<PartitionOwnership>>,
        claimed: &BTreeSet<String>,
        sent_at: Instant,
    ) {
        let Some(won) = won else {
            return;
        };
        let expiry = self.config.load_balancing.ownership_expiry;
        let mut won_ids = BTreeSet::new();
        for w in won {
            if !claimed.contains(&w.partition_id) || w.owner_id != self.config.owner_id {
                continue;
            }
            won_ids.insert(w.partition_id.clone());
            let p = self.partitions.entry(w.partition_id.clone()).or_default();
            if p.owned.is_none() {
                info!(partition = %w.partition_id, owner = %self.config.owner_id, "partition claimed");
                p.checkpoint_base = Some(now.instant);
            }
            p.owned = Some(Owned {
                ownership: w,
                expires_at: sent_at + expiry,
            });
        }
        let lost: Vec<String> = self
            .partitions
            .iter()
            .filter(|(id, p)| p.owned.is_some() && !won_ids.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for p in lost {
            info!(partition = %p, owner = %self.config.owner_id, "partition owned by another processor now");
            self.lose(now, &p, CloseReason::OwnershipLost);
        }
    }

    /// After a round of claims: open receivers for owned partitions that
    /// have none, reading checkpoints first when needed.
    pub(super) fn after_claims(&mut self, now: Now) {
        if !matches!(self.phase, Phase::Running) {
            self.cycle = Cycle::Idle;
            return;
        }
        let mut need_checkpoint = false;
        let ids: Vec<String> = self.partitions.keys().cloned().collect();
        for pid in ids {
            let p = &self.partitions[&pid];
            if p.owned.is_none() || p.session.is_some() {
                continue;
            }
            if let Some(after) = p.resume_after.clone() {
                let position = EventPosition::SequenceNumber {
                    sequence_number: after.sequence_number,
                    inclusive: false,
                };
                self.open_session(now, &pid, position);
            } else {
                need_checkpoint = true;
            }
        }
        if need_checkpoint {
            self.stats.list_checkpoints += 1;
            let op = self.store_op(now, OpKind::ListCheckpoints);
            self.cycle = Cycle::ReadingCheckpoints { op };
            self.actions.push_back(Action::ListCheckpoints { op });
        } else {
            self.finish_cycle(now);
        }
    }

    pub(super) fn on_checkpoints(
        &mut self,
        now: Now,
        op: StoreOpId,
        result: Result<Vec<PartitionCheckpoint>, StoreFailure>,
    ) {
        if !matches!(&self.cycle, Cycle::ReadingCheckpoints { op: o } if *o == op) {
            return;
        }
        match result {
            Err(f) => {
                // Without the checkpoint a start could skip or repeat
                // events: the partitions stay owned and start next cycle.
                self.stats.store_failures += 1;
                self.error(ErrorKind::ListCheckpoints, None, f.message);
            }
            Ok(list) if matches!(self.phase, Phase::Running) => {
                let ids: Vec<String> = self.partitions.keys().cloned().collect();
                for pid in ids {
                    let p = &self.partitions[&pid];
                    if p.owned.is_none() || p.session.is_some() {
                        continue;
                    }
                    let position = list
                        .iter()
                        .find(|c| c.partition_id.eq_ignore_ascii_case(&pid))
                        .and_then(PartitionCheckpoint::resume_position)
                        .unwrap_or_else(|| self.config.start_positions.for_partition(&pid).clone());
                    self.open_session(now, &pid, position);
                }
            }
            Ok(_) => {}
        }
        self.finish_cycle(now);
    }
}
