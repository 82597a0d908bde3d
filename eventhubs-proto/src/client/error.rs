//! Errors reported to the user of the client core, by whose word they are:
//! what the service said ([`ClientError::Service`], [`ClientError::Status`],
//! [`ClientError::Authentication`]), what the client found wrong with the
//! service or the network ([`ClientError::Protocol`], [`ClientError::Connect`],
//! [`ClientError::Connection`], [`ClientError::Timeout`]), and what the
//! caller got wrong ([`ClientError::InvalidArgument`], [`ClientError::Closed`]).

use crate::codec::performatives::AmqpError;
use crate::codec::sasl::SaslCode;
use crate::codec::Symbol;
use crate::eventhubs::errors::{
    classify_condition, classify_status_code, condition_for_status_code,
};
use crate::eventhubs::sas::TokenError;
use crate::eventhubs::RecoveryKind;

use super::batch::BatchError;
use super::options::{ConnectFailure, TransportId};
use super::rpc::ResponseError;

/// Why an operation or a receiver failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service refused with an AMQP error of its own (a rejected
    /// send, a detached link, a closed connection).
    #[error("service error {}{}", .0.condition.as_str(), .0.description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Service(AmqpError),
    /// A `$cbs` or `$management` request failed with this status.
    #[error("request failed with status {code}{}", .description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// HTTP-like status code.
        code: i32,
        /// The service's description.
        description: Option<String>,
        /// The service's `error-condition`, or the one the code implies.
        condition: Option<Symbol>,
    },
    /// The service refused the SASL exchange (a wrong key with PLAIN).
    #[error("SASL authentication failed with code {0:?}")]
    Authentication(SaslCode),
    /// The service broke the AMQP protocol (or sent what does not decode);
    /// the client closed or detached with this condition.
    #[error("the service broke the protocol: {}{}", .0.condition.as_str(), .0.description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Protocol(AmqpError),
    /// The transport could not be set up and trying again cannot help (a
    /// rejected certificate, a refused WebSocket upgrade), or a transient
    /// failure once retries are used up.
    #[error(transparent)]
    Connect(ConnectFailure),
    /// The connection was lost or could not be used, and retries are used
    /// up.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The transport of an open connection failed or closed (a read or
    /// write error, the service closing the socket), and retries are used
    /// up.
    #[error("connection lost: {cause}")]
    Disconnected {
        /// The transport that failed, for a driver that kept its typed
        /// cause.
        transport: TransportId,
        /// What happened, for people.
        cause: String,
    },
    /// The service refused the CBS token for `audience` (a `$cbs`
    /// put-token answered with a failure status).
    #[error("the service refused the token for {audience}: {refusal}")]
    TokenRefused {
        /// The audience the token was for.
        audience: String,
        /// The refusal: a [`ClientError::Status`].
        refusal: Box<ClientError>,
    },
    /// The service detached a link without an error, and retries are used
    /// up.
    #[error("the service detached the {0} link without an error")]
    Detached(&'static str),
    /// The service settled a transfer without accepting it and without an
    /// error of its own (`released`, `modified`, or `rejected` with no
    /// error), and retries are used up.
    #[error("the service {0} the transfer without an error")]
    Refused(&'static str),
    /// The operation did not finish by its deadline; `last` is the last
    /// failure on the way, if there was one.
    #[error("{}", timeout_text(*.attempts, .last.as_deref()))]
    Timeout {
        /// Attempts made (connections tried, or the request sent), when
        /// the last failure is known.
        attempts: u32,
        /// The last failure before the deadline.
        last: Option<Box<ClientError>>,
    },
    /// The token provider failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Events could not be batched.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A `$management` response could not be read.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The arguments are invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

fn timeout_text(attempts: u32, last: Option<&ClientError>) -> String {
    match last {
        None => "operation timed out before its deadline".into(),
        Some(e) => {
            let s = if attempts == 1 { "" } else { "s" };
            format!("timed out after {attempts} attempt{s}: {e}")
        }
    }
}

impl ClientError {
    /// A time-out with no failure known.
    pub fn timeout() -> Self {
        ClientError::Timeout {
            attempts: 0,
            last: None,
        }
    }

    /// True for [`ClientError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }

    /// The AMQP condition, when the error carries one.
    pub fn condition(&self) -> Option<&Symbol> {
        match self {
            ClientError::Service(e) | ClientError::Protocol(e) => Some(&e.condition),
            ClientError::Status { condition, .. } => condition.as_ref(),
            ClientError::TokenRefused { refusal, .. } => refusal.condition(),
            _ => None,
        }
    }

    /// What the error means for retrying (the policy of
    /// `eventhubs::errors`).
    pub fn recovery(&self) -> RecoveryKind {
        match self {
            ClientError::Service(e) => classify_condition(&e.condition),
            ClientError::Status { code, .. } => classify_status_code(*code),
            ClientError::Protocol(_)
            | ClientError::Connection(_)
            | ClientError::Disconnected { .. } => RecoveryKind::RecoverConnection,
            ClientError::TokenRefused { refusal, .. } => refusal.recovery(),
            ClientError::Detached(_) => RecoveryKind::RecoverLink,
            ClientError::Refused(_) => RecoveryKind::Retry,
            ClientError::Connect(f) if !f.kind.is_permanent() => RecoveryKind::RecoverConnection,
            ClientError::Timeout { .. } => RecoveryKind::Retry,
            _ => RecoveryKind::Fatal,
        }
    }

    /// True when a receiver lost its partition to a higher owner level
    /// (`amqp:link:stolen`).
    pub fn is_ownership_lost(&self) -> bool {
        matches!(self, ClientError::Service(e) if crate::eventhubs::errors::is_ownership_lost(&e.condition))
    }

    /// The AMQP error behind this one, if it has one.
    pub(crate) fn amqp_error(&self) -> Option<&AmqpError> {
        match self {
            ClientError::Service(e) | ClientError::Protocol(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn status(
        code: i32,
        description: Option<String>,
        condition: Option<Symbol>,
    ) -> Self {
        ClientError::Status {
            code,
            description,
            condition: condition.or_else(|| condition_for_status_code(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ConnectFailureKind;

    #[test]
    fn a_timeout_names_its_last_cause() {
        let refused = ClientError::Connect(ConnectFailure::new(
            ConnectFailureKind::Refused,
            "TCP connect to host:5671 refused",
        ));
        let e = ClientError::Timeout {
            attempts: 3,
            last: Some(Box::new(refused)),
        };
        assert_eq!(
            e.to_string(),
            "timed out after 3 attempts: TCP connect to host:5671 refused"
        );
        assert_eq!(
            ClientError::timeout().to_string(),
            "operation timed out before its deadline"
        );
        assert!(e.is_timeout());
    }

    #[test]
    fn permanent_connect_failures_are_fatal() {
        let cert = ClientError::Connect(ConnectFailure::new(
            ConnectFailureKind::CertificateRejected,
            "TLS: the certificate presented for h was rejected: invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(cert.recovery(), RecoveryKind::Fatal);
        let dns =
            ClientError::Connect(ConnectFailure::new(ConnectFailureKind::Dns, "no such host"));
        assert_eq!(dns.recovery(), RecoveryKind::RecoverConnection);
    }
}
