//! Engine errors, split by whose fault they are.

use crate::codec::performatives::AmqpError;
use crate::codec::sasl::SaslCode;
use crate::codec::DecodeError;

/// Why a connection failed or ended.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// Bytes from the peer did not decode. The engine has queued a close
    /// with `amqp:decode-error` when the AMQP layer was reached.
    #[error("peer sent bytes that do not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The peer broke the protocol; the engine has queued a close carrying
    /// this condition.
    #[error("peer violated the protocol: {}", describe(.0))]
    Protocol(AmqpError),
    /// The peer closed the connection, with its error if it gave one.
    #[error("peer closed the connection{}", .0.as_ref().map(|e| format!(": {}", describe(e))).unwrap_or_default())]
    RemoteClosed(Option<AmqpError>),
    /// The peer's protocol header named a protocol or version we do not
    /// speak.
    #[error("peer asked for protocol header {0:02x?}")]
    UnsupportedProtocol([u8; 8]),
    /// SASL authentication failed.
    #[error("SASL authentication failed with code {0:?}")]
    SaslFailed(SaslCode),
    /// The peer offered none of the SASL mechanisms we can use.
    #[error("no acceptable SASL mechanism among {0:?}")]
    NoSaslMechanism(Vec<String>),
    /// The peer said nothing for longer than our idle time-out.
    #[error("peer idle for longer than the idle time-out")]
    IdleTimeout,
}

/// A command the caller gave that the engine's state does not allow: the
/// caller's fault, never the peer's, so nothing is sent and the connection
/// goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// `open` was called twice.
    #[error("open() called twice")]
    AlreadyOpen,
    /// `close` was called twice.
    #[error("close() called twice")]
    AlreadyClosed,
    /// The connection is closed, failed, or not yet opened by us.
    #[error("the connection is not open for sending")]
    NotOpen,
    /// Every channel the peer's channel-max allows is in use.
    #[error("all channels are in use")]
    NoFreeChannel,
    /// No session on that channel.
    #[error("no such session")]
    UnknownSession,
    /// The session has ended (on our side).
    #[error("the session has ended")]
    SessionEnded,
    /// Every handle the session's handle-max allows is in use.
    #[error("no free link handle")]
    NoFreeHandle,
    /// No such link, or it has been detached by us already.
    #[error("no such attached link")]
    UnknownLink,
    /// The command is for receiving links and this one sends.
    #[error("the link is a sender")]
    NotAReceiver,
    /// The delivery has gone out whole (too late to abort), or is unknown.
    #[error("delivery already sent in full, or unknown")]
    DeliveryNotPending,
}

/// Why a message could not be queued on a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No such link.
    #[error("no such link")]
    UnknownLink,
    /// The link receives; it cannot send.
    #[error("the link is a receiver")]
    NotASender,
    /// The link is not attached at both ends, or is detached.
    #[error("the link is not attached")]
    NotAttached,
    /// The receiver has granted no credit.
    #[error("no link credit")]
    NoCredit,
    /// The message is larger than the peer's max-message-size.
    #[error("message of {size} bytes exceeds the peer's max-message-size of {max}")]
    MessageTooLarge {
        /// The encoded message size.
        size: u64,
        /// The peer's limit.
        max: u64,
    },
}

fn describe(e: &AmqpError) -> String {
    match &e.description {
        Some(d) => format!("{} ({d})", e.condition),
        None => e.condition.to_string(),
    }
}

/// AMQP error conditions (2.8.15, 2.8.16) the engine raises.
pub mod condition {
    #![allow(missing_docs)]
    use crate::codec::Symbol;
    pub const INTERNAL_ERROR: Symbol = Symbol::from_static("amqp:internal-error");
    pub const NOT_FOUND: Symbol = Symbol::from_static("amqp:not-found");
    pub const UNAUTHORIZED_ACCESS: Symbol = Symbol::from_static("amqp:unauthorized-access");
    pub const DECODE_ERROR: Symbol = Symbol::from_static("amqp:decode-error");
    pub const RESOURCE_LIMIT_EXCEEDED: Symbol = Symbol::from_static("amqp:resource-limit-exceeded");
    pub const NOT_ALLOWED: Symbol = Symbol::from_static("amqp:not-allowed");
    pub const INVALID_FIELD: Symbol = Symbol::from_static("amqp:invalid-field");
    pub const NOT_IMPLEMENTED: Symbol = Symbol::from_static("amqp:not-implemented");
    pub const ILLEGAL_STATE: Symbol = Symbol::from_static("amqp:illegal-state");
    pub const FRAME_SIZE_TOO_SMALL: Symbol = Symbol::from_static("amqp:frame-size-too-small");
    pub const CONNECTION_FORCED: Symbol = Symbol::from_static("amqp:connection:forced");
    pub const FRAMING_ERROR: Symbol = Symbol::from_static("amqp:connection:framing-error");
    pub const WINDOW_VIOLATION: Symbol = Symbol::from_static("amqp:session:window-violation");
    pub const ERRANT_LINK: Symbol = Symbol::from_static("amqp:session:errant-link");
    pub const HANDLE_IN_USE: Symbol = Symbol::from_static("amqp:session:handle-in-use");
    pub const UNATTACHED_HANDLE: Symbol = Symbol::from_static("amqp:session:unattached-handle");
    pub const DETACH_FORCED: Symbol = Symbol::from_static("amqp:link:detach-forced");
    pub const TRANSFER_LIMIT_EXCEEDED: Symbol =
        Symbol::from_static("amqp:link:transfer-limit-exceeded");
    pub const MESSAGE_SIZE_EXCEEDED: Symbol =
        Symbol::from_static("amqp:link:message-size-exceeded");
    pub const LINK_STOLEN: Symbol = Symbol::from_static("amqp:link:stolen");
}
