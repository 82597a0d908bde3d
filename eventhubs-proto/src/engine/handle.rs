//! Borrowed handles on a [`Connection`]'s sessions and links: the commands
//! of 2.5 (sessions) and 2.6 (links), given on a short-lived
//! [`SessionMut`] or [`LinkMut`] instead of by id on the connection.
//!
//! ```
//! # use eventhubs_proto::engine::{Connection, ConnectionConfig, LinkConfig, SessionConfig, Side};
//! # let mut conn = Connection::new(ConnectionConfig::new(Side::Client, "c"), std::time::Instant::now());
//! conn.open()?;
//! let channel = conn.begin_session(SessionConfig::default())?;
//! let link = conn.session(channel).attach(LinkConfig::default())?;
//! assert_eq!(conn.link(link).credit(), 0, "no credit before the peer's flow");
//! conn.link(link).close(None)?;
//! # Ok::<(), eventhubs_proto::engine::UsageError>(())
//! ```

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use bytes::Bytes;

use super::connection::Connection;
use super::endpoint::EndpointState;
use super::error::{SendError, UsageError};
use super::session::{LinkConfig, LinkId};
use crate::codec::messaging::{Accepted, DeliveryState};
use crate::codec::performatives::{AmqpError, Role};

/// Whether a delivery is settled when it is sent, or a disposition
/// settles the deliveries it names (2.6.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Settled: no outcome will follow (pre-settled, "at most once").
    Settled,
    /// Unsettled: the peer answers with an outcome.
    Unsettled,
}

impl Settlement {
    fn is_settled(self) -> bool {
        self == Settlement::Settled
    }
}

/// A session of a [`Connection`], borrowed to give it commands
/// ([`Connection::session`]).
pub struct SessionMut<'a> {
    pub(super) conn: &'a mut Connection,
    pub(super) channel: u16,
}

impl SessionMut<'_> {
    /// Its local channel.
    pub fn channel(&self) -> u16 {
        self.channel
    }

    /// Its state, while the engine knows the session.
    pub fn state(&self) -> Option<EndpointState> {
        self.conn
            .sessions
            .get(self.channel as usize)
            .and_then(Option::as_ref)
            .map(|s| s.state)
    }

    /// Attaches a link (2.6.3) as configured; returns its id.
    pub fn attach(&mut self, config: LinkConfig) -> Result<LinkId, UsageError> {
        self.conn.check_open()?;
        let form = self.conn.form();
        let channel = self.channel;
        let s = self.conn.session_mut(channel)?;
        if s.state.local == super::endpoint::Half::Closed {
            return Err(UsageError::SessionEnded);
        }
        let mut out = VecDeque::new();
        let handle = s
            .attach(config, form, &mut out)
            .ok_or(UsageError::NoFreeHandle)?;
        self.conn.queue(out);
        Ok(LinkId { channel, handle })
    }

    /// Ends the session (2.5.4), with an error if there is one.
    pub fn end(self, error: Option<AmqpError>) -> Result<(), UsageError> {
        self.conn.check_open()?;
        let s = self.conn.session_mut(self.channel)?;
        if s.state.local == super::endpoint::Half::Closed {
            return Err(UsageError::SessionEnded);
        }
        let f = s.end_frame(error);
        let done = s.is_done();
        self.conn.queue([f]);
        if done {
            self.conn.free_session(self.channel);
        }
        Ok(())
    }

    /// Sends a disposition (2.7.6) for the deliveries `ids` of this
    /// session, in our `role` (as receiver: about deliveries we received).
    pub fn disposition(
        &mut self,
        role: Role,
        ids: RangeInclusive<u32>,
        settlement: Settlement,
        state: Option<DeliveryState>,
    ) -> Result<(), UsageError> {
        self.conn.check_open()?;
        let s = self.conn.session_mut(self.channel)?;
        let mut out = VecDeque::new();
        s.disposition(
            role,
            *ids.start(),
            *ids.end(),
            settlement.is_settled(),
            state,
            &mut out,
        );
        self.conn.queue(out);
        Ok(())
    }
}

/// A link of a [`Connection`], borrowed to give it commands
/// ([`Connection::link`]).
pub struct LinkMut<'a> {
    pub(super) conn: &'a mut Connection,
    pub(super) id: LinkId,
}

impl LinkMut<'_> {
    /// The link.
    pub fn id(&self) -> LinkId {
        self.id
    }

    /// Its state, while the engine knows the link.
    pub fn state(&self) -> Option<EndpointState> {
        self.conn.link_state(self.id)
    }

    /// Credit the peer has given this sending link (2.6.7); 0 for a
    /// receiving or unknown link.
    pub fn credit(&self) -> u32 {
        self.conn.credit(self.id)
    }

    /// Sends an encoded message (2.7.5): uses one credit and returns the
    /// delivery id. Frames are split to the peer's max-frame-size and go
    /// out as the session window allows. A link whose snd-settle-mode is
    /// `settled` or `unsettled` overrides `settlement`.
    pub fn send(
        &mut self,
        delivery_tag: Bytes,
        message_format: u32,
        settlement: Settlement,
        payload: Bytes,
    ) -> Result<u32, SendError> {
        self.conn.check_open().map_err(|_| SendError::NotAttached)?;
        let s = self
            .conn
            .session_mut(self.id.channel)
            .map_err(|_| SendError::UnknownLink)?;
        s.send(
            self.id.handle,
            delivery_tag,
            message_format,
            settlement.is_settled(),
            payload,
        )
    }

    /// Sets the credit of this receiving link (absolute, 2.6.7).
    pub fn flow(&mut self, credit: u32) -> Result<(), UsageError> {
        self.set_credit(credit, false)
    }

    /// Sets the credit of this receiving link and asks the sender to use
    /// it up or give it back (2.6.7 drain).
    pub fn drain(&mut self, credit: u32) -> Result<(), UsageError> {
        self.set_credit(credit, true)
    }

    fn set_credit(&mut self, credit: u32, drain: bool) -> Result<(), UsageError> {
        self.conn.check_open()?;
        let s = self.conn.session_mut(self.id.channel)?;
        let role = s.link(self.id.handle).map(|l| l.role());
        match role {
            None => return Err(UsageError::UnknownLink),
            Some(Role::Sender) => return Err(UsageError::NotAReceiver),
            Some(Role::Receiver) => {}
        }
        let mut out = VecDeque::new();
        if !s.flow(self.id.handle, credit, drain, &mut out) {
            return Err(UsageError::UnknownLink);
        }
        self.conn.queue(out);
        Ok(())
    }

    /// Accepts and settles delivery `delivery_id` received on this link
    /// (3.4.2): the usual answer of a receiver.
    pub fn accept(&mut self, delivery_id: u32) -> Result<(), UsageError> {
        self.settle(delivery_id, DeliveryState::Accepted(Accepted {}))
    }

    /// Settles delivery `delivery_id` received on this link with `outcome`.
    pub fn settle(&mut self, delivery_id: u32, outcome: DeliveryState) -> Result<(), UsageError> {
        self.conn.session(self.id.channel).disposition(
            Role::Receiver,
            delivery_id..=delivery_id,
            Settlement::Settled,
            Some(outcome),
        )
    }

    /// Aborts a delivery that has not been sent in full (2.6.14): the peer
    /// drops what it received of it.
    pub fn abort(&mut self, delivery_id: u32) -> Result<(), UsageError> {
        self.conn.check_open()?;
        let s = self.conn.session_mut(self.id.channel)?;
        if s.abort(self.id.handle, delivery_id) {
            Ok(())
        } else {
            Err(UsageError::DeliveryNotPending)
        }
    }

    /// Detaches the link without closing it (2.6.4, `closed` false).
    pub fn detach(self, error: Option<AmqpError>) -> Result<(), UsageError> {
        self.send_detach(false, error)
    }

    /// Closes the link (2.6.6, a detach with `closed` true).
    pub fn close(self, error: Option<AmqpError>) -> Result<(), UsageError> {
        self.send_detach(true, error)
    }

    fn send_detach(self, closed: bool, error: Option<AmqpError>) -> Result<(), UsageError> {
        self.conn.check_open()?;
        let s = self.conn.session_mut(self.id.channel)?;
        let mut out = VecDeque::new();
        if !s.detach(self.id.handle, closed, error, &mut out) {
            return Err(UsageError::UnknownLink);
        }
        self.conn.queue(out);
        Ok(())
    }

    /// Answers a peer-initiated attach with our own (our role is the
    /// opposite of the peer's; `config.role` and `config.name` are
    /// ignored).
    pub fn answer(self, mut config: LinkConfig) -> Result<(), UsageError> {
        self.conn.check_open()?;
        let form = self.conn.form();
        let s = self.conn.session_mut(self.id.channel)?;
        let l = s.link(self.id.handle).ok_or(UsageError::UnknownLink)?;
        config.role = l.role();
        config.name = l.name().to_string();
        let mut out = VecDeque::new();
        s.send_attach(self.id.handle, config, form, &mut out);
        self.conn.queue(out);
        Ok(())
    }

    /// Refuses a peer-initiated attach: an attach without terminus, then a
    /// closing detach carrying `error` (2.6.3).
    pub fn refuse(self, error: AmqpError) -> Result<(), UsageError> {
        let conn = self.conn;
        let id = self.id;
        conn.link(id).answer(LinkConfig::default())?;
        conn.link(id).close(Some(error))
    }
}
