//! Failures of store requests, errors, and the graceful stop: drain,
//! checkpoint, relinquish.

use super::*;

impl Processor {
    pub(super) fn fail_op(&mut self, now: Now, op: StoreOpId, kind: OpKind, failure: StoreFailure) {
        match kind {
            OpKind::ListOwnership => self.on_listed(now, op, Err(failure)),
            OpKind::Claim => self.on_claimed(now, op, Err(failure)),
            OpKind::ListCheckpoints => self.on_checkpoints(now, op, Err(failure)),
            OpKind::Checkpoint { partition } => {
                self.on_checkpoint_written(now, op, &partition, Err(failure))
            }
            OpKind::Relinquish => self.on_relinquished(Err(failure)),
        }
    }

    pub(super) fn error(&mut self, kind: ErrorKind, partition_id: Option<String>, message: String) {
        debug!(?kind, partition = ?partition_id, %message, "processor error");
        self.events.push_back(ProcessorEvent::Error(ProcessorError {
            kind,
            partition_id,
            message,
        }));
    }

    /// Moves the stop on as far as it can go now: draining, then final
    /// checkpoints, then relinquishing.
    pub(super) fn advance_stop(&mut self, now: Now) {
        loop {
            let Phase::Stopping(s) = &self.phase else {
                return;
            };
            let (step, options, drain_deadline) = (s.step, s.options, s.drain_deadline);
            let done = match step {
                StopStep::Draining => self.drain(now, options, drain_deadline),
                StopStep::Checkpointing => self.relinquish(now),
                StopStep::Relinquishing => false,
            };
            if !done {
                return;
            }
        }
    }

    /// Sessions close once their batch in hand is done (or the drain
    /// time-out passes); a round of claims in flight is awaited; then the
    /// final checkpoints go out. True when the step is done.
    fn drain(&mut self, now: Now, options: StopOptions, drain_deadline: Instant) -> bool {
        let draining: Vec<String> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.session.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        if !draining.is_empty() {
            if now.instant < drain_deadline {
                return false;
            }
            for pid in draining {
                self.error(
                    ErrorKind::DrainTimeout,
                    Some(pid.clone()),
                    format!(
                        "a batch was still being processed {:?} after the stop began",
                        options.drain_timeout
                    ),
                );
                let p = self.partitions.get_mut(&pid).expect("listed");
                if let Some((b, _)) = p.session.as_mut().and_then(|s| s.in_hand.take()) {
                    self.batches.remove(&b);
                }
                self.try_finish_session(&pid);
            }
        }
        if matches!(self.cycle, Cycle::Claiming { .. }) {
            return false;
        }
        let checkpoint = options.checkpoint
            || matches!(self.config.checkpoint_policy, CheckpointPolicy::Interval(_));
        if checkpoint {
            let due: Vec<(String, Mark)> = self
                .partitions
                .iter()
                .filter(|(_, p)| p.owned.is_some())
                .filter_map(|(id, p)| {
                    let m = p.last_processed.clone()?;
                    (p.last_checkpointed < Some(m.sequence_number)).then(|| (id.clone(), m))
                })
                .collect();
            for (pid, mark) in due {
                self.enqueue_checkpoint(now, &pid, mark, None);
            }
        }
        self.set_stop_step(StopStep::Checkpointing);
        true
    }

    /// Once the final checkpoints are written, claims every owned
    /// partition with an empty owner id. True when the step is done.
    fn relinquish(&mut self, now: Now) -> bool {
        let writing = self
            .partitions
            .values()
            .any(|p| p.checkpoint.writing.is_some() || p.checkpoint.queued.is_some());
        if writing {
            return false;
        }
        let claims: Vec<PartitionOwnership> = self
            .partitions
            .values()
            .filter_map(|p| p.owned.as_ref())
            .map(|o| o.ownership.relinquished())
            .collect();
        self.set_stop_step(StopStep::Relinquishing);
        if claims.is_empty() {
            self.finish_stop();
            return false;
        }
        info!(owner = %self.config.owner_id, partitions = claims.len(), "relinquishing ownership");
        self.stats.claim_rounds += 1;
        self.stats.claims += claims.len() as u64;
        let op = self.store_op(now, OpKind::Relinquish);
        self.actions
            .push_back(Action::ClaimOwnership { op, claims });
        false
    }

    pub(super) fn set_stop_step(&mut self, step: StopStep) {
        if let Phase::Stopping(s) = &mut self.phase {
            s.step = step;
        }
    }

    pub(super) fn on_relinquished(
        &mut self,
        result: Result<Vec<PartitionOwnership>, StoreFailure>,
    ) {
        if let Err(f) = result {
            self.stats.store_failures += 1;
            self.error(
                ErrorKind::ClaimOwnership,
                None,
                format!(
                    "relinquishing failed ({f}); the partitions move when the ownership expires"
                ),
            );
        }
        self.finish_stop();
    }

    pub(super) fn finish_stop(&mut self) {
        for p in self.partitions.values_mut() {
            p.owned = None;
        }
        self.partitions.retain(|_, p| !p.is_idle());
        self.ops.clear();
        self.cycle = Cycle::Idle;
        self.next_cycle = None;
        self.phase = Phase::Stopped;
        info!(owner = %self.config.owner_id, "processor stopped");
        self.events.push_back(ProcessorEvent::Stopped);
    }
}
