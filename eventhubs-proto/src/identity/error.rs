//! Why a token could not be had, by whose fault.

use super::certificate::CertificateError;

/// Which endpoint answered (or failed to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenEndpoint {
    /// The Microsoft Entra ID token endpoint (`…/oauth2/v2.0/token`).
    EntraId,
    /// The VM instance metadata service (IMDS).
    Imds,
    /// The App Service / Functions identity endpoint.
    AppService,
}

impl TokenEndpoint {
    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            TokenEndpoint::EntraId => "Microsoft Entra ID",
            TokenEndpoint::Imds => "the managed identity endpoint (IMDS)",
            TokenEndpoint::AppService => "the App Service managed identity endpoint",
        }
    }
}

/// A token request failed. No variant ever holds a secret, an assertion or
/// a token: descriptions come from the endpoint (which never echoes them)
/// and are scrubbed of the caller's secret anyway ([`CredentialError::scrub`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The endpoint answered with an error: Entra ID's `error`,
    /// `error_description` (which starts with the `AADSTS` code) and
    /// `error_codes`, or a managed identity endpoint's message.
    #[error("{} refused the token request (HTTP {status}{}){}", .endpoint.name(), .error.as_ref().map(|e| format!(", {e}")).unwrap_or_default(), .description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// Who answered.
        endpoint: TokenEndpoint,
        /// The HTTP status.
        status: u16,
        /// The OAuth 2.0 `error` code (`invalid_client`, …).
        error: Option<String>,
        /// `error_description` or `message`.
        description: Option<String>,
        /// Entra ID's `error_codes` (the numbers of the `AADSTS` codes).
        error_codes: Vec<u64>,
    },
    /// This credential cannot work here (its endpoint is absent, no
    /// identity is assigned, a variable is missing); a chain tries the next.
    #[error("{credential} is unavailable: {reason}")]
    Unavailable {
        /// Which credential.
        credential: &'static str,
        /// Why.
        reason: String,
    },
    /// A success status whose body is not a token.
    #[error("{} sent an unusable token response (HTTP {status}): {reason}", .endpoint.name())]
    InvalidResponse {
        /// Who answered.
        endpoint: TokenEndpoint,
        /// The HTTP status.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer: the connection failed or timed out.
    #[error("cannot reach {}: {reason}", .endpoint.name())]
    Transport {
        /// Who was asked.
        endpoint: TokenEndpoint,
        /// Why (refused connection, unknown host, TLS failure, time-out).
        reason: String,
    },
    /// The certificate cannot be used.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// A local file (certificate, federated token) cannot be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The configuration is unusable (a malformed tenant, an authority
    /// that is not https).
    #[error("invalid credential configuration: {0}")]
    Config(String),
    /// Every credential of a chain failed; each reason in order.
    #[error("no credential in the chain produced a token: {}", .0.join("; "))]
    Chain(Vec<String>),
}

impl CredentialError {
    /// True when a chain should try its next credential.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CredentialError::Unavailable { .. })
    }

    /// The same error with every occurrence of `secret` (when it is at
    /// least 4 characters) replaced, in case an endpoint echoed it.
    #[must_use]
    pub fn scrub(self, secret: &str) -> Self {
        if secret.len() < 4 {
            return self;
        }
        let clean = |s: String| s.replace(secret, "<redacted>");
        match self {
            CredentialError::Refused {
                endpoint,
                status,
                error,
                description,
                error_codes,
            } => CredentialError::Refused {
                endpoint,
                status,
                error: error.map(clean),
                description: description.map(clean),
                error_codes,
            },
            CredentialError::Unavailable { credential, reason } => CredentialError::Unavailable {
                credential,
                reason: clean(reason),
            },
            CredentialError::InvalidResponse {
                endpoint,
                status,
                reason,
            } => CredentialError::InvalidResponse {
                endpoint,
                status,
                reason: clean(reason),
            },
            CredentialError::Transport { endpoint, reason } => CredentialError::Transport {
                endpoint,
                reason: clean(reason),
            },
            CredentialError::Chain(v) => CredentialError::Chain(v.into_iter().map(clean).collect()),
            other => other,
        }
    }
}
