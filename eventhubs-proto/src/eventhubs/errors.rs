//! What to do about an Event Hubs error: AMQP conditions (OASIS AMQP 1.0
//! 2.8.15-2.8.18) and the service's `com.microsoft:*` conditions.
//!
//! The SDKs disagree on several conditions. This module follows **one**
//! policy, Go's `azeventhubs/v2` (`internal/errors.go`), because it is the
//! only one that says not just *whether* to retry but *what to rebuild*:
//!
//! | Condition | [`RecoveryKind`] |
//! |---|---|
//! | `com.microsoft:server-busy`, `com.microsoft:timeout`, `com.microsoft:operation-cancelled` | [`Retry`](RecoveryKind::Retry) |
//! | `amqp:link:detach-forced`, `amqp:link:transfer-limit-exceeded` | [`RecoverLink`](RecoveryKind::RecoverLink) |
//! | `amqp:connection:forced`, `amqp:internal-error` | [`RecoverConnection`](RecoveryKind::RecoverConnection) |
//! | `amqp:link:stolen`, `amqp:resource-limit-exceeded`, `amqp:link:message-size-exceeded`, `amqp:unauthorized-access`, `amqp:not-found`, `amqp:not-allowed`, `com.microsoft:entity-disabled`, `com.microsoft:argument-out-of-range`, `com.microsoft:georeplication:invalid-offset`, `com.microsoft:session-cannot-be-locked`, `com.microsoft:message-lock-lost` | [`Fatal`](RecoveryKind::Fatal) |
//! | anything else | [`RecoverConnection`](RecoveryKind::RecoverConnection) (retried) |
//!
//! Go never sees the idempotent-producer conditions (it has no idempotent
//! producer); they are classified by analogy and marked as such:
//! `com.microsoft:producer-epoch-stolen` is the producer's `amqp:link:stolen`
//! (.NET `ProducerDisconnected`) and `com.microsoft:out-of-order-sequence`
//! means the client's sequence state is wrong (.NET `InvalidClientState`);
//! both are [`Fatal`](RecoveryKind::Fatal). Everything else Go does not list
//! (`com.microsoft:argument-error`, `com.microsoft:auth-failed`,
//! `amqp:illegal-state`, …) stays "unknown", exactly as in Go.
//!
//! Where the error arrived matters for unknown conditions: on a link
//! detach Go rebuilds the link (its "quick recovery" of detach errors), on
//! a connection or session close the connection. Network errors and EOF
//! are connection recovery; the caller classifies those itself.

use crate::codec::performatives::AmqpError;
use crate::codec::Symbol;

/// Event Hubs and AMQP error conditions the client classifies.
pub mod condition {
    #![allow(missing_docs)]
    use crate::codec::Symbol;
    pub const SERVER_BUSY: Symbol = Symbol::from_static("com.microsoft:server-busy");
    pub const TIMEOUT: Symbol = Symbol::from_static("com.microsoft:timeout");
    pub const OPERATION_CANCELLED: Symbol =
        Symbol::from_static("com.microsoft:operation-cancelled");
    pub const ARGUMENT_OUT_OF_RANGE: Symbol =
        Symbol::from_static("com.microsoft:argument-out-of-range");
    pub const ARGUMENT_ERROR: Symbol = Symbol::from_static("com.microsoft:argument-error");
    pub const ENTITY_DISABLED: Symbol = Symbol::from_static("com.microsoft:entity-disabled");
    pub const AUTH_FAILED: Symbol = Symbol::from_static("com.microsoft:auth-failed");
    pub const PRECONDITION_FAILED: Symbol =
        Symbol::from_static("com.microsoft:precondition-failed");
    pub const NO_MATCHING_SUBSCRIPTION: Symbol =
        Symbol::from_static("com.microsoft:no-matching-subscription");
    pub const GEOREPLICATION_INVALID_OFFSET: Symbol =
        Symbol::from_static("com.microsoft:georeplication:invalid-offset");
    pub const OUT_OF_ORDER_SEQUENCE: Symbol =
        Symbol::from_static("com.microsoft:out-of-order-sequence");
    pub const PRODUCER_EPOCH_STOLEN: Symbol =
        Symbol::from_static("com.microsoft:producer-epoch-stolen");
    pub const PARTITION_NOT_OWNED: Symbol =
        Symbol::from_static("com.microsoft:partition-not-owned");
    pub const PUBLISHER_REVOKED: Symbol = Symbol::from_static("com.microsoft:publisher-revoked");
    pub const STORE_LOCK_LOST: Symbol = Symbol::from_static("com.microsoft:store-lock-lost");
    pub const CONTAINER_CLOSE: Symbol = Symbol::from_static("com.microsoft:container-close");
    pub const SESSION_CANNOT_BE_LOCKED: Symbol =
        Symbol::from_static("com.microsoft:session-cannot-be-locked");
    pub const MESSAGE_LOCK_LOST: Symbol = Symbol::from_static("com.microsoft:message-lock-lost");
    pub const RESOURCE_LIMIT_EXCEEDED: Symbol = Symbol::from_static("amqp:resource-limit-exceeded");
    pub const LINK_STOLEN: Symbol = Symbol::from_static("amqp:link:stolen");
    pub const NOT_FOUND: Symbol = Symbol::from_static("amqp:not-found");
    pub const UNAUTHORIZED_ACCESS: Symbol = Symbol::from_static("amqp:unauthorized-access");
    pub const MESSAGE_SIZE_EXCEEDED: Symbol =
        Symbol::from_static("amqp:link:message-size-exceeded");
    pub const NOT_ALLOWED: Symbol = Symbol::from_static("amqp:not-allowed");
    pub const NOT_IMPLEMENTED: Symbol = Symbol::from_static("amqp:not-implemented");
    pub const INTERNAL_ERROR: Symbol = Symbol::from_static("amqp:internal-error");
    pub const DETACH_FORCED: Symbol = Symbol::from_static("amqp:link:detach-forced");
    pub const CONNECTION_FORCED: Symbol = Symbol::from_static("amqp:connection:forced");
    pub const TRANSFER_LIMIT_EXCEEDED: Symbol =
        Symbol::from_static("amqp:link:transfer-limit-exceeded");
    pub const ILLEGAL_STATE: Symbol = Symbol::from_static("amqp:illegal-state");
}

/// What a client does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryKind {
    /// Transient: retry the operation on the same link (after the retry
    /// policy's delay). Go's `RecoveryKindNone`.
    Retry,
    /// Close this link and attach a new one (with a fresh CBS put-token),
    /// then retry.
    RecoverLink,
    /// Tear the connection down, reconnect, re-create links, then retry.
    RecoverConnection,
    /// Give up and report to the application.
    Fatal,
}

impl RecoveryKind {
    /// True for everything but [`RecoveryKind::Fatal`].
    pub fn is_retryable(self) -> bool {
        self != RecoveryKind::Fatal
    }
}

/// Where an error arrived, which decides the fate of unknown conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorSource {
    /// A `detach` from the peer (link-level error).
    Link,
    /// An `end` or `close` from the peer, or a rejected disposition/RPC
    /// carrying a condition.
    Connection,
}

/// The policy table for conditions Go (or this module, by analogy) lists;
/// `None` for the rest.
fn known_condition(condition: &str) -> Option<RecoveryKind> {
    use RecoveryKind::*;
    Some(match condition {
        "com.microsoft:server-busy" | "com.microsoft:timeout" | "com.microsoft:operation-cancelled" => {
            Retry
        }
        "amqp:link:detach-forced" | "amqp:link:transfer-limit-exceeded" => RecoverLink,
        "amqp:connection:forced" | "amqp:internal-error" => RecoverConnection,
        "amqp:link:stolen"
        | "amqp:resource-limit-exceeded"
        | "amqp:link:message-size-exceeded"
        | "amqp:unauthorized-access"
        | "amqp:not-found"
        | "amqp:not-allowed"
        | "com.microsoft:entity-disabled"
        | "com.microsoft:argument-out-of-range"
        | "com.microsoft:georeplication:invalid-offset"
        | "com.microsoft:session-cannot-be-locked"
        | "com.microsoft:message-lock-lost"
        // By analogy (see the module docs).
        | "com.microsoft:producer-epoch-stolen"
        | "com.microsoft:out-of-order-sequence" => Fatal,
        _ => return None,
    })
}

/// Classifies an error condition with no context: unknown conditions are
/// [`RecoveryKind::RecoverConnection`], as in Go.
pub fn classify_condition(condition: &Symbol) -> RecoveryKind {
    known_condition(condition.as_str()).unwrap_or(RecoveryKind::RecoverConnection)
}

/// Classifies an AMQP error by where it arrived. Unknown conditions, and a
/// link detach without any error, mean [`RecoveryKind::RecoverLink`] on a
/// link and [`RecoveryKind::RecoverConnection`] elsewhere.
pub fn classify_error(error: Option<&AmqpError>, source: ErrorSource) -> RecoveryKind {
    let unknown = match source {
        ErrorSource::Link => RecoveryKind::RecoverLink,
        ErrorSource::Connection => RecoveryKind::RecoverConnection,
    };
    error
        .and_then(|e| known_condition(e.condition.as_str()))
        .unwrap_or(unknown)
}

/// True when a receiver lost ownership of its partition to a higher (or
/// equal) epoch (`amqp:link:stolen`): fatal to that receiver, reported to
/// processors as "ownership lost".
pub fn is_ownership_lost(condition: &Symbol) -> bool {
    condition.as_str() == "amqp:link:stolen"
}

/// Classifies a failed `$management`/`$cbs` response by `status-code`, as
/// Go2: 401 and 404 fatal; 408, 500 and 503 retried as is; anything else
/// (including a stray 2xx) recovers the connection.
pub fn classify_status_code(status_code: i32) -> RecoveryKind {
    match status_code {
        401 | 404 => RecoveryKind::Fatal,
        408 | 500 | 503 => RecoveryKind::Retry,
        _ => RecoveryKind::RecoverConnection,
    }
}

/// The condition .NET assumes for a response `status-code` when the
/// response carries no `error-condition`: 404 not-found,
/// 501 not-implemented, 401 unauthorized-access, 403
/// resource-limit-exceeded, 410 link:stolen, 500 internal-error, 400
/// argument-error, 408 timeout, 503 server-busy; `None` for other codes.
pub fn condition_for_status_code(status_code: i32) -> Option<Symbol> {
    Some(match status_code {
        400 => condition::ARGUMENT_ERROR,
        401 => condition::UNAUTHORIZED_ACCESS,
        403 => condition::RESOURCE_LIMIT_EXCEEDED,
        404 => condition::NOT_FOUND,
        408 => condition::TIMEOUT,
        410 => condition::LINK_STOLEN,
        500 => condition::INTERNAL_ERROR,
        501 => condition::NOT_IMPLEMENTED,
        503 => condition::SERVER_BUSY,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use RecoveryKind::*;

    #[test]
    fn go2_table() {
        let table = [
            (condition::SERVER_BUSY, Retry),
            (condition::TIMEOUT, Retry),
            (condition::OPERATION_CANCELLED, Retry),
            (condition::DETACH_FORCED, RecoverLink),
            (condition::TRANSFER_LIMIT_EXCEEDED, RecoverLink),
            (condition::CONNECTION_FORCED, RecoverConnection),
            (condition::INTERNAL_ERROR, RecoverConnection),
            (condition::RESOURCE_LIMIT_EXCEEDED, Fatal),
            (condition::LINK_STOLEN, Fatal),
            (condition::ARGUMENT_OUT_OF_RANGE, Fatal),
            (condition::ENTITY_DISABLED, Fatal),
            (condition::NOT_FOUND, Fatal),
            (condition::UNAUTHORIZED_ACCESS, Fatal),
            (condition::MESSAGE_SIZE_EXCEEDED, Fatal),
            (condition::NOT_ALLOWED, Fatal),
            (condition::GEOREPLICATION_INVALID_OFFSET, Fatal),
            (condition::SESSION_CANNOT_BE_LOCKED, Fatal),
            (condition::MESSAGE_LOCK_LOST, Fatal),
            (condition::PRODUCER_EPOCH_STOLEN, Fatal),
            (condition::OUT_OF_ORDER_SEQUENCE, Fatal),
            // Not in Go's map: unknown.
            (condition::ARGUMENT_ERROR, RecoverConnection),
            (condition::AUTH_FAILED, RecoverConnection),
            (condition::NO_MATCHING_SUBSCRIPTION, RecoverConnection),
            (condition::ILLEGAL_STATE, RecoverConnection),
            (condition::CONTAINER_CLOSE, RecoverConnection),
            (
                Symbol::from_static("x:never-heard-of-it"),
                RecoverConnection,
            ),
        ];
        for (c, kind) in table {
            assert_eq!(classify_condition(&c), kind, "{c}");
        }
    }

    #[test]
    fn source_decides_unknown() {
        let unknown = AmqpError::new("com.microsoft:argument-error", "bad filter");
        assert_eq!(
            classify_error(Some(&unknown), ErrorSource::Link),
            RecoverLink
        );
        assert_eq!(
            classify_error(Some(&unknown), ErrorSource::Connection),
            RecoverConnection
        );
        assert_eq!(classify_error(None, ErrorSource::Link), RecoverLink);
        assert_eq!(
            classify_error(None, ErrorSource::Connection),
            RecoverConnection
        );
        let stolen = AmqpError::new(condition::LINK_STOLEN, "New receiver 'b' with higher epoch");
        assert_eq!(classify_error(Some(&stolen), ErrorSource::Link), Fatal);
        let busy = AmqpError::new(condition::SERVER_BUSY, "throttled");
        assert_eq!(classify_error(Some(&busy), ErrorSource::Link), Retry);
        let forced = AmqpError::new(condition::CONNECTION_FORCED, "bye");
        assert_eq!(
            classify_error(Some(&forced), ErrorSource::Link),
            RecoverConnection
        );
    }

    #[test]
    fn ownership_and_retryable() {
        assert!(is_ownership_lost(&condition::LINK_STOLEN));
        assert!(!is_ownership_lost(&condition::DETACH_FORCED));
        assert!(Retry.is_retryable());
        assert!(RecoverLink.is_retryable());
        assert!(RecoverConnection.is_retryable());
        assert!(!Fatal.is_retryable());
    }

    #[test]
    fn status_codes() {
        assert_eq!(classify_status_code(401), Fatal);
        assert_eq!(classify_status_code(404), Fatal);
        assert_eq!(classify_status_code(408), Retry);
        assert_eq!(classify_status_code(500), Retry);
        assert_eq!(classify_status_code(503), Retry);
        assert_eq!(classify_status_code(400), RecoverConnection);
        assert_eq!(classify_status_code(-1), RecoverConnection);

        let expect = [
            (400, "com.microsoft:argument-error"),
            (401, "amqp:unauthorized-access"),
            (403, "amqp:resource-limit-exceeded"),
            (404, "amqp:not-found"),
            (408, "com.microsoft:timeout"),
            (410, "amqp:link:stolen"),
            (500, "amqp:internal-error"),
            (501, "amqp:not-implemented"),
            (503, "com.microsoft:server-busy"),
        ];
        for (code, c) in expect {
            assert_eq!(
                condition_for_status_code(code).as_ref().map(Symbol::as_str),
                Some(c)
            );
        }
        assert_eq!(condition_for_status_code(200), None);
        assert_eq!(condition_for_status_code(418), None);
    }
}
