//! The state of an AMQP endpoint (a connection, session or link) as its
//! two halves: what we have said about it and what the peer has said, as
//! Proton keeps them (`PN_LOCAL_*`, `PN_REMOTE_*`). OASIS AMQP 1.0 2.4.6
//! (connection states), 2.5.5 (session states) and 2.6.3 (link
//! attachment) are all such pairs: `open`/`begin`/`attach` sent or
//! received, then `close`/`end`/`detach` sent or received.

/// One end's half of an endpoint's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Half {
    /// Nothing said yet: no `open`, `begin` or `attach`.
    #[default]
    Uninit,
    /// `open`, `begin` or `attach` said, and not yet undone.
    Active,
    /// `close`, `end` or `detach` said.
    Closed,
}

/// An endpoint's state: our half and the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointState {
    /// What we have sent.
    pub local: Half,
    /// What the peer has sent.
    pub remote: Half,
}

impl EndpointState {
    /// Both ends have opened and neither has closed.
    pub fn is_active(self) -> bool {
        self.local == Half::Active && self.remote == Half::Active
    }

    /// Both ends have closed.
    pub fn is_closed(self) -> bool {
        self.local == Half::Closed && self.remote == Half::Closed
    }

    /// We have sent our open (and perhaps our close since).
    pub(crate) fn local_opened(self) -> bool {
        self.local != Half::Uninit
    }

    /// The peer has sent its open (and perhaps its close since).
    pub(crate) fn remote_opened(self) -> bool {
        self.remote != Half::Uninit
    }
}
