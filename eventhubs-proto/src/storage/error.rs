//! What the storage service says went wrong, and what we could not do.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, Response};

use super::xml::parse_error_body;

/// A Blob service error code (the `x-ms-error-code` header, or `Code` in
/// the error body), as the Blob service error codes REST page names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorCode {
    /// 412: an `If-Match` or `If-None-Match` condition failed.
    ConditionNotMet,
    /// 409: Put Blob with `If-None-Match: *` on an existing blob.
    BlobAlreadyExists,
    /// 404: no such blob.
    BlobNotFound,
    /// 404: no such container.
    ContainerNotFound,
    /// 409: Create Container on an existing one.
    ContainerAlreadyExists,
    /// 403: the signature or key is wrong.
    AuthenticationFailed,
    /// 403: the request is not authorized (unsigned, wrong resource).
    AuthorizationFailure,
    /// 403: the credential lacks the permission (a SAS without `w`, RBAC).
    AuthorizationPermissionMismatch,
    /// 400: a header value is not accepted (e.g. an `x-ms-version` the
    /// server does not support).
    InvalidHeaderValue,
    /// 400: `If-Match` and `If-None-Match` in one request.
    MultipleConditionHeadersNotSupported,
    /// 412: the blob has an active lease and no lease id was given.
    LeaseIdMissing,
    /// 503: the server is busy; retry later.
    ServerBusy,
    /// 500: an internal error; retry later.
    InternalError,
    /// 500: the operation timed out on the server; retry later.
    OperationTimedOut,
    /// Any other code, as sent.
    Other(String),
}

impl StorageErrorCode {
    /// The code as the service spells it.
    pub fn as_str(&self) -> &str {
        use StorageErrorCode as C;
        match self {
            C::ConditionNotMet => "ConditionNotMet",
            C::BlobAlreadyExists => "BlobAlreadyExists",
            C::BlobNotFound => "BlobNotFound",
            C::ContainerNotFound => "ContainerNotFound",
            C::ContainerAlreadyExists => "ContainerAlreadyExists",
            C::AuthenticationFailed => "AuthenticationFailed",
            C::AuthorizationFailure => "AuthorizationFailure",
            C::AuthorizationPermissionMismatch => "AuthorizationPermissionMismatch",
            C::InvalidHeaderValue => "InvalidHeaderValue",
            C::MultipleConditionHeadersNotSupported => "MultipleConditionHeadersNotSupported",
            C::LeaseIdMissing => "LeaseIdMissing",
            C::ServerBusy => "ServerBusy",
            C::InternalError => "InternalError",
            C::OperationTimedOut => "OperationTimedOut",
            C::Other(s) => s,
        }
    }

    /// The code for its spelling.
    pub fn parse(s: &str) -> Self {
        use StorageErrorCode as C;
        match s {
            "ConditionNotMet" => C::ConditionNotMet,
            "BlobAlreadyExists" => C::BlobAlreadyExists,
            "BlobNotFound" => C::BlobNotFound,
            "ContainerNotFound" => C::ContainerNotFound,
            "ContainerAlreadyExists" => C::ContainerAlreadyExists,
            "AuthenticationFailed" => C::AuthenticationFailed,
            "AuthorizationFailure" => C::AuthorizationFailure,
            "AuthorizationPermissionMismatch" => C::AuthorizationPermissionMismatch,
            "InvalidHeaderValue" => C::InvalidHeaderValue,
            "MultipleConditionHeadersNotSupported" => C::MultipleConditionHeadersNotSupported,
            "LeaseIdMissing" => C::LeaseIdMissing,
            "ServerBusy" => C::ServerBusy,
            "InternalError" => C::InternalError,
            "OperationTimedOut" => C::OperationTimedOut,
            other => C::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for StorageErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply of the Blob service: status, error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage service answered {status}{}{}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
pub struct ServiceError {
    /// The HTTP status.
    pub status: u16,
    /// The error code, from `x-ms-error-code` or the body's `Code`.
    pub code: Option<StorageErrorCode>,
    /// The first line of the body's `Message` (the request id and time
    /// that follow it are in `request_id`).
    pub message: Option<String>,
    /// `x-ms-request-id`, for support requests.
    pub request_id: Option<String>,
}

impl ServiceError {
    /// The error a non-success response carries. `x-ms-error-code` is
    /// preferred (it is present even on bodiless HEAD replies); a body that
    /// is not the service's error XML is ignored.
    pub fn from_response(response: &Response<Bytes>) -> Self {
        Self::from_parts(
            response.status().as_u16(),
            response.headers(),
            response.body(),
        )
    }

    /// As [`from_response`](Self::from_response), from its parts.
    pub fn from_parts(status: u16, headers: &HeaderMap, body: &[u8]) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let (body_code, body_message) = parse_error_body(body).unwrap_or_default();
        let code = header("x-ms-error-code")
            .or(body_code)
            .map(|c| StorageErrorCode::parse(&c));
        let message = body_message
            .as_deref()
            .and_then(|m| m.lines().next())
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty());
        ServiceError {
            status,
            code,
            message,
            request_id: header("x-ms-request-id"),
        }
    }

    /// True for the code `code`.
    pub fn is(&self, code: &StorageErrorCode) -> bool {
        self.code.as_ref() == Some(code)
    }

    /// True when another writer won a conditional write: 412
    /// `ConditionNotMet` or 409 `BlobAlreadyExists`. For an ownership
    /// claim this is not a failure, only a lost race.
    pub fn is_condition_lost(&self) -> bool {
        self.status == 412 || (self.status == 409 && self.is(&StorageErrorCode::BlobAlreadyExists))
    }

    /// True for 404 (blob or container missing).
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    /// True when the credential was refused (403).
    pub fn is_authentication_failure(&self) -> bool {
        self.status == 403
    }

    /// True when the request may succeed if sent again later: 500, 503,
    /// and 408 (the server's request time-out).
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 408 | 500 | 503)
    }
}

/// A value given to the storage client is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The blob endpoint URL is not `http(s)://host[:port][/path]`.
    #[error("invalid blob endpoint {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A container name breaks the naming rules (3-63 characters of
    /// lowercase letters, digits and single hyphens, starting and ending
    /// with a letter or digit).
    #[error("invalid container name {name:?}: {reason}")]
    InvalidContainerName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A blob name is empty or longer than 1,024 characters.
    #[error("invalid blob name {name:?}: {reason}")]
    InvalidBlobName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A metadata name or value cannot be sent (names are C# identifiers;
    /// values are visible ASCII).
    #[error("invalid metadata {name:?}: {reason}")]
    InvalidMetadata {
        /// The metadata name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A SAS token given by the user does not look like one.
    #[error("invalid shared access signature: {reason}")]
    InvalidSas {
        /// What is wrong.
        reason: &'static str,
    },
    /// A bearer token has characters a header cannot carry.
    #[error("invalid bearer token: it is not a visible-ASCII string")]
    InvalidBearerToken,
    /// SharedKey signing needs an account name.
    #[error("SharedKey signing needs the storage account name")]
    MissingAccountName,
}

/// A response body that is not the XML the service sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed List Blobs XML: {reason}")]
pub struct XmlError {
    /// What is wrong.
    pub reason: String,
}
