//! Checkpoint writes: serialised per partition, coalesced, retried
//! after a back-off when the processor's own write fails.

use super::*;

impl Processor {
    pub(super) fn enqueue_checkpoint(
        &mut self,
        now: Now,
        pid: &str,
        mark: Mark,
        waiter: Option<CheckpointRequestId>,
    ) {
        let p = self.partitions.entry(pid.to_owned()).or_default();
        if waiter.is_none() && p.last_checkpointed >= Some(mark.sequence_number) {
            return;
        }
        if p.checkpoint.writing.is_some() {
            let q = p
                .checkpoint
                .queued
                .get_or_insert_with(|| (mark.clone(), Vec::new()));
            if q.0.sequence_number < mark.sequence_number || waiter.is_some() {
                q.0 = mark;
            }
            q.1.extend(waiter);
            return;
        }
        self.write_checkpoint(now, pid, mark, waiter.into_iter().collect());
    }

    pub(super) fn write_checkpoint(
        &mut self,
        now: Now,
        pid: &str,
        mark: Mark,
        waiters: Vec<CheckpointRequestId>,
    ) {
        self.stats.checkpoint_writes += 1;
        let op = self.store_op(
            now,
            OpKind::Checkpoint {
                partition: pid.to_owned(),
            },
        );
        let checkpoint = PartitionCheckpoint::new(
            self.config.fully_qualified_namespace.clone(),
            self.config.event_hub.clone(),
            self.config.consumer_group.clone(),
            pid,
            mark.offset.clone(),
            mark.sequence_number,
        );
        let p = self.partitions.entry(pid.to_owned()).or_default();
        p.checkpoint_due = None;
        p.checkpoint_base = Some(now.instant);
        p.checkpoint.writing = Some((op, mark, waiters));
        self.actions
            .push_back(Action::UpdateCheckpoint { op, checkpoint });
    }

    pub(super) fn on_checkpoint_written(
        &mut self,
        now: Now,
        op: StoreOpId,
        pid: &str,
        result: Result<(), StoreFailure>,
    ) {
        let Some(p) = self.partitions.get_mut(pid) else {
            return;
        };
        let Some((o, mark, waiters)) = p.checkpoint.writing.take() else {
            return;
        };
        if o != op {
            p.checkpoint.writing = Some((o, mark, waiters));
            return;
        }
        let result = match result {
            Ok(()) => {
                p.checkpoint_failures = 0;
                if p.owned.is_some() {
                    p.last_checkpointed = p.last_checkpointed.max(Some(mark.sequence_number));
                }
                Ok(())
            }
            Err(f) => {
                self.stats.store_failures += 1;
                // A checkpoint of the processor's own is written again
                // (the latest processed event) after a back-off: 1 s,
                // doubling, at most the update interval.
                if waiters.is_empty() && p.owned.is_some() && p.checkpoint.queued.is_none() {
                    let backoff = Duration::from_secs(1)
                        .saturating_mul(1 << p.checkpoint_failures.min(16))
                        .min(self.config.load_balancing.update_interval);
                    p.checkpoint_failures += 1;
                    p.checkpoint_due = Some(now.instant + backoff);
                }
                Err(ProcessorError {
                    kind: ErrorKind::UpdateCheckpoint,
                    partition_id: Some(pid.to_owned()),
                    message: f.message,
                })
            }
        };
        if let (Err(e), true) = (&result, waiters.is_empty()) {
            self.events.push_back(ProcessorEvent::Error(e.clone()));
        }
        for request in waiters {
            self.events.push_back(ProcessorEvent::CheckpointUpdated {
                request,
                result: result.clone(),
            });
        }
        let p = self.partitions.get_mut(pid).expect("present");
        if let Some((mark, waiters)) = p.checkpoint.queued.take() {
            self.write_checkpoint(now, pid, mark, waiters);
        } else if p.is_idle() {
            self.partitions.remove(pid);
        }
    }
}
