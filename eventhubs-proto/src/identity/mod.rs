//! Microsoft Entra ID (Azure AD) tokens for Event Hubs, as data and
//! decisions: what to send to which endpoint, how to read the answer, when
//! to ask again. A runtime adapter does the HTTP, reads the clock, draws
//! the random bits and signs with its RSA implementation.
//!
//! - [`request`]: token requests for the client credentials grant with a
//!   secret or a JWT assertion (RFC 6749 4.4, RFC 7523) on the v2.0
//!   endpoint, and for managed identity (IMDS, App Service).
//! - [`response`]: token responses of every endpoint (`expires_in` and
//!   `expires_on` in each form they come in) and their error bodies, as an
//!   [`AccessToken`] or a [`CredentialError`].
//! - [`jwt`]: the certificate flow's client assertion (`x5t`, `x5t#S256`,
//!   `x5c`; claims `aud`, `iss`, `sub`, `jti`, `nbf`, `iat`, `exp`), and
//!   reading JWTs and JSON Web Key Sets.
//! - [`certificate`]: certificates and RSA keys from PEM, encrypted PKCS#8
//!   and PKCS#12 / PFX.
//! - [`retry`]: the endpoints' retry rules.
//! - [`cloud`] and [`env`](mod@env): Azure clouds, and the credential chain the
//!   `AZURE_*` variables describe.
//!
//! Tokens go to CBS as type `jwt`
//! ([`TokenType::Jwt`](crate::eventhubs::TokenType::Jwt)), the raw token as
//! the body, without `Bearer `. Secrets ([`Secret`]), tokens, assertions
//! and request bodies never show in `Debug`.

use std::fmt;

pub mod certificate;
pub mod cloud;
mod der;
pub mod env;
pub mod error;
pub mod jwt;
mod pkcs12;
pub mod request;
pub mod response;
pub mod retry;

pub use certificate::{CertificateError, ClientCertificate};
pub use cloud::{Cloud, EVENTHUBS_RESOURCE, EVENTHUBS_SCOPE};
pub use env::{chain_from_env, ChainConfig, CredentialConfig, EnvVarError};
pub use error::{CredentialError, TokenEndpoint};
pub use jwt::{AssertionOptions, DecodedJwt, ThumbprintHeader, UnsignedJwt};
pub use request::{ConfidentialClient, ManagedIdentityId, ManagedIdentitySource, TokenHttpRequest};
pub use response::{parse_token_response, AccessToken};
pub use retry::{AttemptOutcome, RetryRules};

/// A secret string: a client secret, an assertion, a certificate password,
/// an identity header. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}
