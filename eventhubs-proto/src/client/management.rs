//! `$management` reads: hub and partition runtime information, sent as
//! the management audience is authorised, correlated by message id,
//! retried after a refusal or a lost answer as the retry policy allows.

use tracing::debug;

use super::client::{Client, OpKind};
use super::error::ClientError;
use super::links::retry_delay;
use super::options::{ClientEvent, Now, OpId};
use super::requests::{Node, Request};
use super::rpc::{
    management_request, parse_hub_information, parse_partition_information, ManagementRequest,
    RpcStatus,
};
use super::timers::Timer;
use crate::codec::message::Message;

/// A management read in progress.
pub(super) struct ManagementOp {
    what: ManagementRequest,
    /// Failed attempts so far.
    attempt: u32,
    state: MgmtState,
}

/// Where a management read stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MgmtState {
    /// In the queue, to be sent.
    Queued,
    /// In the queue, waiting for its retry delay ([`Timer::OpRetry`]).
    Waiting,
    /// Sent as request `0`.
    InFlight(u64),
}

impl ManagementOp {
    pub(super) fn new(what: ManagementRequest) -> Self {
        ManagementOp {
            what,
            attempt: 0,
            state: MgmtState::Queued,
        }
    }

    /// The event reporting that `op` failed with `error`.
    pub(super) fn failed(&self, op: OpId, error: ClientError) -> ClientEvent {
        match self.what {
            ManagementRequest::Hub => ClientEvent::HubInformation {
                op,
                result: Err(error),
            },
            ManagementRequest::Partition(_) => ClientEvent::PartitionInformation {
                op,
                result: Err(error),
            },
        }
    }
}

impl Client {
    fn management_op(&mut self, op: OpId) -> Option<&mut ManagementOp> {
        match &mut self.ops.get_mut(&op)?.kind {
            OpKind::Management(m) => Some(m),
            OpKind::Send(_) | OpKind::OpenSender(_) => None,
        }
    }

    /// Sends the queued reads that may go, in order.
    pub(super) fn run_management(&mut self, now: Now) {
        if self.mgmt_queue.is_empty() {
            return;
        }
        let audience = self.management_audience();
        if !self.authorised(&audience) {
            return;
        }
        let token = self.token_text(&audience);
        let hub = self.options.hub.clone();
        let queue = std::mem::take(&mut self.mgmt_queue);
        for op in queue {
            let what = match self.management_op(op) {
                Some(m) if m.state == MgmtState::Queued => m.what.clone(),
                Some(_) => {
                    self.mgmt_queue.push_back(op);
                    continue;
                }
                None => continue,
            };
            let Some(tx) = self.rpc_ready(Node::Management) else {
                self.mgmt_queue.push_back(op);
                continue;
            };
            let sent = self.send_request(
                now,
                Node::Management,
                tx,
                Request::Management(op),
                |id, reply_to| management_request(id, reply_to, &hub, &what, token.as_deref()),
            );
            match (sent, self.management_op(op)) {
                (Some(n), Some(m)) => m.state = MgmtState::InFlight(n),
                _ => self.mgmt_queue.push_back(op),
            }
        }
    }

    /// The service answered read `op`.
    pub(super) fn management_answered(
        &mut self,
        now: Now,
        op: OpId,
        m: &Message,
        status: RpcStatus,
    ) {
        if !status.is_success() {
            return self.management_failed(now, op, status.into_error());
        }
        let Some(what) = self.management_op(op).map(|m| m.what.clone()) else {
            return;
        };
        self.events.push_back(match what {
            ManagementRequest::Hub => ClientEvent::HubInformation {
                op,
                result: parse_hub_information(m).map_err(ClientError::from),
            },
            ManagementRequest::Partition(_) => ClientEvent::PartitionInformation {
                op,
                result: parse_partition_information(m).map_err(ClientError::from),
            },
        });
        self.complete_op(op, Ok(()));
    }

    /// Read `op` was refused or its answer did not come: it waits for a
    /// retry, or fails.
    pub(super) fn management_failed(&mut self, now: Now, op: OpId, error: ClientError) {
        let until_deadline = self.options.retry_until_deadline;
        let Some(m) = self.management_op(op) else {
            return;
        };
        m.attempt += 1;
        let attempt = m.attempt;
        let delay = match error.recovery() {
            crate::eventhubs::RecoveryKind::Fatal => None,
            _ => retry_delay(
                &self.options.retry,
                &mut self.rng,
                attempt,
                error.condition(),
                until_deadline,
            ),
        };
        debug!(error = %error, attempt, "management request failed");
        match delay {
            Some(d) => {
                if let Some(m) = self.management_op(op) {
                    m.state = MgmtState::Waiting;
                }
                self.timers.set(Timer::OpRetry(op), now.instant + d);
                self.mgmt_queue.push_back(op);
                self.note_op_error(op, attempt, error);
            }
            None => self.fail_op(op, error),
        }
    }

    pub(super) fn management_retry_due(&mut self, op: OpId) {
        if let Some(m) = self.management_op(op) {
            if m.state == MgmtState::Waiting {
                m.state = MgmtState::Queued;
            }
        }
    }

    /// The connection is gone: reads in flight go back to the front of
    /// the queue, in order.
    pub(super) fn management_lost(&mut self) {
        let mut lost = Vec::new();
        for (id, o) in self.ops.iter_mut() {
            if let OpKind::Management(m) = &mut o.kind {
                if matches!(m.state, MgmtState::InFlight(_)) {
                    m.state = MgmtState::Queued;
                    lost.push(*id);
                }
            }
        }
        for op in lost.into_iter().rev() {
            self.mgmt_queue.push_front(op);
        }
    }
}
