//! The request/response nodes `$cbs` and `$management`: their link pairs,
//! requests correlated by message id, responses handed to the part that
//! asked, and requests given up when no answer comes in time.

use bytes::Bytes;
use tracing::{debug, warn};

use super::client::{engine_command, Client};
use super::connection::{Owner, RpcPair};
use super::error::ClientError;
use super::links::LinkSlot;
use super::options::{Now, OpId};
use super::rpc::{correlation_id, response_status, RpcStatus};
use super::timers::Timer;
use crate::codec::message::Message;
use crate::codec::messaging::{Source, Target};
use crate::codec::performatives::Role;
use crate::codec::{Decode, Encode, Symbol};
use crate::engine::{LinkConfig, LinkId, Settlement};

/// Credit kept on the `$cbs` and `$management` reply links.
pub(super) const REPLY_CREDIT: u32 = 100;

/// Desired capability of current SDKs on every attach.
pub(super) const GEOREPLICATION: &str = "com.microsoft:georeplication";

/// A request/response node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Cbs,
    Management,
}

impl Node {
    fn address(self) -> &'static str {
        match self {
            Node::Cbs => "$cbs",
            Node::Management => "$management",
        }
    }
}

/// What a request in flight was for.
#[derive(Debug)]
pub(super) enum Request {
    /// A put-token of this generation of the audience's token.
    PutToken { audience: String, generation: u64 },
    /// A management read for this operation.
    Management(OpId),
}

impl Client {
    /// The message id of request `n`.
    fn message_id(&self, n: u64) -> String {
        format!("{:016x}-{n}", self.id_prefix)
    }

    /// Request `n` from a correlation id of ours.
    fn request_number(&self, correlation: &str) -> Option<u64> {
        let prefix = format!("{:016x}-", self.id_prefix);
        correlation.strip_prefix(&prefix)?.parse().ok()
    }

    pub(super) fn link_name(&mut self, kind: &str) -> String {
        let n = self.next_id();
        format!(
            "{}-{kind}-{:08x}-{n}",
            self.container_id, self.id_prefix as u32
        )
    }

    /// The request link of `node` when both its links are attached;
    /// attaches them first if the connection has none.
    pub(super) fn rpc_ready(&mut self, node: Node) -> Option<LinkId> {
        let has = self.phase.open_conn().map(|c| match node {
            Node::Cbs => c.cbs.is_some(),
            Node::Management => c.mgmt.is_some(),
        })?;
        if !has {
            self.attach_rpc_pair(node);
        }
        let c = self.phase.open_conn()?;
        let pair = match node {
            Node::Cbs => c.cbs.as_ref(),
            Node::Management => c.mgmt.as_ref(),
        }?;
        let tx = pair.ready()?;
        (c.engine.credit(tx) > 0).then_some(tx)
    }

    fn attach_rpc_pair(&mut self, node: Node) {
        let address = node.address();
        let tx_name = self.link_name(&format!("{address}-tx"));
        let rx_name = self.link_name(&format!("{address}-rx"));
        let n = self.next_id();
        let reply_to = format!(
            "{}-reply-{:08x}-{n}",
            address.trim_start_matches('$'),
            self.id_prefix as u32,
        );
        let Some(c) = self.phase.open_conn() else {
            return;
        };
        let desired = match node {
            Node::Management => vec![Symbol::from_static(GEOREPLICATION)],
            Node::Cbs => Vec::new(),
        };
        let tx = c.engine.session(c.session).attach(LinkConfig {
            name: tx_name,
            role: Role::Sender,
            source: Some(Source::with_address(reply_to.clone())),
            target: Some(Target::with_address(address)),
            desired_capabilities: desired.clone(),
            ..LinkConfig::default()
        });
        let rx = c.engine.session(c.session).attach(LinkConfig {
            name: rx_name,
            role: Role::Receiver,
            source: Some(Source::with_address(address)),
            target: Some(Target::with_address(reply_to.clone())),
            desired_capabilities: desired,
            ..LinkConfig::default()
        });
        let (Ok(tx), Ok(rx)) = (tx, rx) else {
            warn!(node = address, "the engine refused the request links");
            return;
        };
        let (tx_owner, rx_owner) = match node {
            Node::Cbs => (Owner::CbsRequests, Owner::CbsReplies),
            Node::Management => (Owner::ManagementRequests, Owner::ManagementReplies),
        };
        c.owners.insert(tx, tx_owner);
        c.owners.insert(rx, rx_owner);
        let pair = RpcPair {
            requests: LinkSlot::Attaching(tx),
            replies: LinkSlot::Attaching(rx),
            reply_to,
        };
        match node {
            Node::Cbs => c.cbs = Some(pair),
            Node::Management => c.mgmt = Some(pair),
        }
    }

    /// Sends a request built by `build(message_id, reply_to)` on `node`'s
    /// request link `tx`, remembered as `what` until its answer or its
    /// time-out; returns its number, or `None` when it could not be sent.
    pub(super) fn send_request(
        &mut self,
        now: Now,
        node: Node,
        tx: LinkId,
        what: Request,
        build: impl FnOnce(&str, &str) -> Message,
    ) -> Option<u64> {
        let n = self.next_id();
        let message_id = self.message_id(n);
        let timeout = now.instant + self.options.request_timeout;
        let c = self.phase.open_conn()?;
        let pair = match node {
            Node::Cbs => c.cbs.as_ref(),
            Node::Management => c.mgmt.as_ref(),
        };
        let reply_to = pair?.reply_to.clone();
        let request = build(&message_id, &reply_to);
        let tag = Bytes::from(message_id.into_bytes());
        match c
            .engine
            .link(tx)
            .send(tag, 0, Settlement::Settled, request.to_bytes())
        {
            Ok(_) => {
                c.requests.insert(n, what);
                self.timers.set(Timer::Request(n), timeout);
                Some(n)
            }
            Err(e) => {
                debug!(error = %e, node = node.address(), "request not sent");
                None
            }
        }
    }

    /// A message on a reply link: matched with its request by correlation
    /// id, and handed to the part that asked.
    pub(super) fn on_response(&mut self, now: Now, link: LinkId, payload: &Bytes) {
        if let Some(c) = self.phase.conn_mut() {
            engine_command(c.engine.link(link).flow(REPLY_CREDIT), "flow");
        }
        let m = match Message::decode_all(payload) {
            Ok(m) => m,
            Err(e) => return warn!(error = %e, "undecodable response dropped"),
        };
        let Some(n) = correlation_id(&m).and_then(|cid| self.request_number(&cid)) else {
            return warn!("response without a correlation id of ours dropped");
        };
        let Some(request) = self.phase.conn_mut().and_then(|c| c.requests.remove(&n)) else {
            return;
        };
        self.timers.stop(&Timer::Request(n));
        let status = response_status(&m).unwrap_or(RpcStatus {
            code: 500,
            description: Some("no status".into()),
            condition: None,
        });
        match request {
            Request::PutToken {
                audience,
                generation,
            } => self.put_token_answered(now, &audience, generation, status),
            Request::Management(op) => self.management_answered(now, op, &m, status),
        }
    }

    /// Request `n` had no answer in time: given up, and retried as its
    /// part decides.
    pub(super) fn request_timed_out(&mut self, now: Now, n: u64) {
        let Some(request) = self.phase.conn_mut().and_then(|c| c.requests.remove(&n)) else {
            return;
        };
        let error = ClientError::Connection(format!(
            "no answer to a request within {:?}",
            self.options.request_timeout
        ));
        warn!(%error, "request given up");
        let status = RpcStatus {
            code: 408,
            description: Some(error.to_string()),
            condition: None,
        };
        match request {
            Request::PutToken {
                audience,
                generation,
            } => self.put_token_answered(now, &audience, generation, status),
            Request::Management(op) => self.management_failed(now, op, status.into_error()),
        }
    }
}
