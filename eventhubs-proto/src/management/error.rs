//! What went wrong with a management request, by whose fault: the service
//! said no ([`ServiceError`], with its code and detail), its reply could
//! not be read, or the caller's input cannot be sent.

use std::fmt;

use bytes::Bytes;
use http::Response;

use super::xml::{parse_error, XmlError};
use crate::eventhubs::sas::TokenError;

/// An error reply of the management API: the HTTP status and the body's
/// `<Error><Code>…</Code><Detail>…</Detail></Error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The HTTP status.
    pub status: u16,
    /// `Code` as sent (the service sends the status again, e.g. `409`).
    pub code: Option<String>,
    /// `Detail`: the service's explanation, with its tracking id.
    pub detail: Option<String>,
}

impl ServiceError {
    /// The error a non-success response carries. A body that is not the
    /// service's error XML is kept, cut to 512 characters, as the detail.
    pub fn from_response(response: &Response<Bytes>) -> Self {
        let status = response.status().as_u16();
        let body = response.body();
        let (code, detail) = match parse_error(body) {
            Some(parsed) => parsed,
            None if body.is_empty() => (None, None),
            None => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.chars().take(512).collect();
                (None, Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
            }
        };
        ServiceError {
            status,
            code,
            detail,
        }
    }

    /// 409: the entity exists (a create without [`PutMode::Update`](super::PutMode)).
    pub fn is_conflict(&self) -> bool {
        self.status == 409
    }

    /// 404: no such entity.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    /// 401: the token was refused (wrong key, wrong audience, no Manage
    /// right, expired).
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn is_bad_request(&self) -> bool {
        self.status == 400
    }

    /// 403: a quota (hubs per namespace, consumer groups per hub) is
    /// exhausted.
    pub fn is_quota_exceeded(&self) -> bool {
        self.status == 403
    }

    /// True when sending the same request later may succeed: 408, 429,
    /// 500, 503.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 408 | 429 | 500 | 503)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the management API answered {}", self.status)?;
        if let Some(c) = &self.code {
            write!(f, " (code {c})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServiceError {}

/// A management operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagementError {
    /// The service answered with an error status.
    #[error(transparent)]
    Service(ServiceError),
    /// The service answered with success, but the body is not the XML it
    /// should be.
    #[error("the management API answered {status} with a body that cannot be read: {source}")]
    InvalidReply {
        /// The HTTP status.
        status: u16,
        /// What is wrong with the body.
        #[source]
        source: XmlError,
    },
    /// The endpoint URL cannot be used.
    #[error("invalid management endpoint {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An entity name cannot be put in a request path.
    #[error("invalid {entity} name {name:?}: {reason}")]
    InvalidName {
        /// `event hub` or `consumer group`.
        entity: &'static str,
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A request could not be built from the caller's input.
    #[error("invalid management request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// No token could be had for the request.
    #[error("no token for the management request: {0}")]
    Token(#[source] TokenError),
    /// The token has characters an HTTP header cannot carry.
    #[error("the token cannot be sent: it is not a visible-ASCII string")]
    InvalidToken,
}

impl ManagementError {
    /// The service's error, when it answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            ManagementError::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status the service answered with, for a service error.
    pub fn status(&self) -> Option<u16> {
        self.service().map(|e| e.status)
    }
}
