//! Errors of the HTTP/1.1 exchange, by fault: [`HttpError`] for bytes a
//! peer sent that break RFC 9112 or our limits, [`RequestError`] for a
//! request the caller built that cannot be sent.

/// The peer's bytes are not an acceptable HTTP/1.1 message (RFC 9112), or
/// exceed a configured [`Limits`](super::Limits) value. The connection
/// they arrived on MUST NOT be reused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The start line or a header field does not parse.
    #[error("malformed HTTP head: {reason}")]
    MalformedHead {
        /// What is wrong.
        reason: String,
    },
    /// The head is not complete within the size limit.
    #[error("HTTP head longer than the limit of {limit} bytes")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The head (or the trailer section) has more fields than allowed.
    #[error("more than {limit} HTTP header fields")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// `Content-Length` is not one non-negative decimal number (RFC 9110
    /// 8.6), or its copies disagree.
    #[error("invalid Content-Length {value:?}")]
    InvalidContentLength {
        /// The value (or values, comma-joined) received.
        value: String,
    },
    /// A transfer coding other than `chunked` was applied, which this
    /// implementation does not decode.
    #[error("unsupported Transfer-Encoding {value:?}: only chunked is supported")]
    UnsupportedTransferEncoding {
        /// The value received.
        value: String,
    },
    /// The body is longer than allowed.
    #[error("HTTP body longer than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The chunked framing (RFC 9112 7.1) is broken.
    #[error("malformed chunked body: {reason}")]
    MalformedChunk {
        /// What is wrong.
        reason: &'static str,
    },
    /// The connection ended before the message did.
    #[error("connection closed {during}")]
    UnexpectedEof {
        /// Where in the message: `before the response`, `in the head`,
        /// `in the body`.
        during: &'static str,
    },
    /// A `101 Switching Protocols` came back, though no upgrade was asked
    /// for.
    #[error("unexpected 101 Switching Protocols: no upgrade was requested")]
    UnexpectedUpgrade,
    /// Too many `1xx` interim responses before the final one.
    #[error("more than {limit} interim (1xx) responses")]
    TooManyInterimResponses {
        /// The limit.
        limit: usize,
    },
}

impl HttpError {
    /// True when the peer closed the connection before sending a single
    /// byte of the response: the case where a request on a reused
    /// keep-alive connection may be retried on a fresh one.
    pub fn is_closed_before_response(&self) -> bool {
        matches!(
            self,
            HttpError::UnexpectedEof {
                during: "before the response"
            }
        )
    }
}

/// The caller's request cannot be written as HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The URI has neither an authority nor is there a `Host` header.
    #[error("the request names no host: give an absolute URI or a Host header")]
    MissingHost,
    /// Only HTTP/1.1 requests are written.
    #[error("unsupported HTTP version {version:?}: only HTTP/1.1 is written")]
    UnsupportedVersion {
        /// The version asked for.
        version: String,
    },
    /// `Content-Length` disagrees with the body, or `Transfer-Encoding`
    /// was set (bodies are sent with a length).
    #[error("invalid body framing: {reason}")]
    InvalidFraming {
        /// What is wrong.
        reason: String,
    },
}
