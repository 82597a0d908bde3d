//! Errors reported to the user of the client core.

use crate::codec::performatives::AmqpError;
use crate::codec::Symbol;
use crate::eventhubs::errors::{
    classify_condition, classify_status_code, condition_for_status_code,
};
use crate::eventhubs::sas::TokenError;
use crate::eventhubs::RecoveryKind;

use super::batch::BatchError;
use super::rpc::ResponseError;

/// Why an operation or a receiver failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service refused with an AMQP error (a rejected send, a detached
    /// link, a closed connection).
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
    /// The operation did not finish by its deadline.
    #[error("operation timed out before its deadline")]
    Timeout,
    /// The connection could not be made or was lost, and retries are used
    /// up.
    #[error("connection failed: {0}")]
    Connection(String),
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

impl ClientError {
    /// The AMQP condition, when the error carries one.
    pub fn condition(&self) -> Option<&Symbol> {
        match self {
            ClientError::Service(e) => Some(&e.condition),
            ClientError::Status { condition, .. } => condition.as_ref(),
            _ => None,
        }
    }

    /// What the error means for retrying (PROTOCOL.md 6.1).
    pub fn recovery(&self) -> RecoveryKind {
        match self {
            ClientError::Service(e) => classify_condition(&e.condition),
            ClientError::Status { code, .. } => classify_status_code(*code),
            ClientError::Connection(_) => RecoveryKind::RecoverConnection,
            ClientError::Timeout => RecoveryKind::Retry,
            _ => RecoveryKind::Fatal,
        }
    }

    /// True when a receiver lost its partition to a higher owner level
    /// (`amqp:link:stolen`).
    pub fn is_ownership_lost(&self) -> bool {
        self.condition()
            .is_some_and(crate::eventhubs::errors::is_ownership_lost)
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
