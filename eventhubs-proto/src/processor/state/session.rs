//! Sessions: one receiver run per owned partition, from initialized to
//! closed, and the batches handed to the application.

use super::*;

impl Processor {
    pub(super) fn open_session(&mut self, now: Now, pid: &str, position: EventPosition) {
        let _ = now;
        let key = ReceiverKey(self.next());
        self.receivers.insert(key, pid.to_owned());
        let p = self.partitions.entry(pid.to_owned()).or_default();
        p.resume_after = None;
        p.session = Some(Session {
            receiver: key,
            state: SessionState::Open,
            pending: VecDeque::new(),
            in_hand: None,
            last_delivered: None,
            last_received: None,
        });
        info!(partition = %pid, owner = %self.config.owner_id, %position, "partition initialized");
        self.actions.push_back(Action::OpenReceiver(OpenReceiver {
            receiver: key,
            partition_id: pid.to_owned(),
            consumer_group: self.config.consumer_group.clone(),
            position: position.clone(),
            owner_level: self.config.owner_level,
            prefetch: self.config.prefetch,
            identifier: self.config.owner_id.clone(),
        }));
        self.events.push_back(ProcessorEvent::PartitionInitialized {
            partition_id: pid.to_owned(),
            position,
        });
    }

    /// Ownership of `pid` is gone: stop processing it and forget what was
    /// ours about it.
    pub(super) fn lose(&mut self, now: Now, pid: &str, reason: CloseReason) {
        let _ = now;
        let Some(p) = self.partitions.get_mut(pid) else {
            return;
        };
        p.owned = None;
        p.resume_after = None;
        p.last_processed = None;
        p.last_checkpointed = None;
        p.checkpoint_due = None;
        p.checkpoint_base = None;
        let queued = p.checkpoint.queued.take();
        if let Some((_, waiters)) = queued {
            for request in waiters {
                self.events.push_back(ProcessorEvent::CheckpointUpdated {
                    request,
                    result: Err(ProcessorError {
                        kind: ErrorKind::UpdateCheckpoint,
                        partition_id: Some(pid.to_owned()),
                        message: CheckpointRefused::NotOwned(pid.to_owned()).to_string(),
                    }),
                });
            }
        }
        self.close_session(pid, reason);
    }

    pub(super) fn close_session(&mut self, pid: &str, reason: CloseReason) {
        let Some(p) = self.partitions.get_mut(pid) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        if matches!(s.state, SessionState::Open) {
            debug!(partition = %pid, %reason, "closing the partition's receiver");
            s.state = SessionState::Closing(reason.clone());
            s.pending.clear();
            let key = s.receiver;
            if self.receivers.remove(&key).is_some() {
                self.actions
                    .push_back(Action::CloseReceiver { receiver: key });
            }
            if matches!(reason, CloseReason::Error(_)) && p.owned.is_some() {
                p.resume_after = s.last_delivered.clone();
            }
        } else if reason == CloseReason::OwnershipLost {
            s.state = SessionState::Closing(reason);
        }
        self.try_finish_session(pid);
    }

    pub(super) fn try_finish_session(&mut self, pid: &str) {
        let Some(p) = self.partitions.get_mut(pid) else {
            return;
        };
        let done = p
            .session
            .as_ref()
            .is_some_and(|s| matches!(s.state, SessionState::Closing(_)) && s.in_hand.is_none());
        if !done {
            return;
        }
        let s = p.session.take().expect("checked");
        if let SessionState::Closing(reason) = s.state {
            info!(partition = %pid, owner = %self.config.owner_id, %reason, "partition closed");
            self.events.push_back(ProcessorEvent::PartitionClosed {
                partition_id: pid.to_owned(),
                reason,
            });
        }
        if p.is_idle() {
            self.partitions.remove(pid);
        }
    }

    pub(super) fn try_deliver(&mut self, now: Now, pid: &str) {
        let max = self.config.max_batch_size;
        let wait = self.config.max_wait;
        let Some(p) = self.partitions.get_mut(pid) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        if !matches!(s.state, SessionState::Open) || s.in_hand.is_some() {
            return;
        }
        let Some((first, _)) = s.pending.front() else {
            return;
        };
        if s.pending.len() < max && *first + wait > now.instant {
            return;
        }
        let n = s.pending.len().min(max);
        let events: Vec<ReceivedEvent> = s.pending.drain(..n).map(|(_, e)| e).collect();
        let mark = Mark::of(events.last().expect("at least one"));
        let batch = BatchId(self.next_id);
        self.next_id += 1;
        s.in_hand = Some((batch, mark.clone()));
        s.last_delivered = Some(mark);
        self.batches.insert(batch, pid.to_owned());
        self.events
            .push_back(ProcessorEvent::Events(PartitionBatch {
                batch,
                partition_id: pid.to_owned(),
                events,
            }));
    }
}
