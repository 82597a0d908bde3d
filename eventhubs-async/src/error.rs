//! [`Error`]: the one error type of the client, by whose fault.
//!
//! Every variant's message says what failed in full (the cause's text is
//! part of it, so `{}` alone tells the story), and [`source`] returns the
//! cause as a typed value for programs that look into it:
//!
//! | variant | whose fault | `source()` |
//! | --- | --- | --- |
//! | [`Error::Service`] | the service said so | the [`Condition`] it gave |
//! | [`Error::Protocol`] | the service broke the AMQP protocol | the [`Condition`] the client closed with |
//! | [`Error::Transport`] | the network or TLS | the I/O, TLS or WebSocket error |
//! | [`Error::Timeout`] | the client: a deadline | the last failure on the way |
//! | [`Error::Closed`] | the client: the hub is closed | — |
//! | [`Error::InvalidInput`] | the caller | the parser's error, when there is one |
//! | [`Error::Handler`] | the caller's event handler | the handler's own error |
//! | [`Error::Credential`] | credentials or tokens | the credential's error |
//! | [`Error::Checkpoint`] | checkpoint storage | the [`PersistError`] |
//! | [`Error::Runtime`] | no runtime to run on | the runtime's error |
//!
//! [`source`]: std::error::Error::source

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use eventhubs_proto::client::{ClientError, ConnectFailureKind};
use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::eventhubs::connection_string::{ConnectionStringError, EnvironmentError};
use eventhubs_proto::eventhubs::errors::classify_condition;
use eventhubs_proto::eventhubs::sas::TokenError;
use eventhubs_proto::eventhubs::RecoveryKind;

use crate::credentials::{CredentialsError, EnvError};
use crate::persist::PersistError;
use crate::transport::TransportError;

/// A boxed error that can cross threads.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why an operation of the client failed, by whose fault.
///
/// Replaces the `error` values of azure-event-hubs-go, which carry their
/// cause only as text. Match on the variant for the fault, or use the
/// helpers: [`condition`](Error::condition), [`status`](Error::status),
/// [`is_transient`](Error::is_transient),
/// [`is_ownership_lost`](Error::is_ownership_lost),
/// [`is_timeout`](Error::is_timeout), [`is_closed`](Error::is_closed).
///
/// ```
/// use eventhubs_async::Error;
///
/// fn report(e: &Error) {
///     match e {
///         Error::Service(s) => eprintln!("the service said: {:?} {:?}", s.condition(), s.status()),
///         Error::Handler(h) => eprintln!("our handler failed: {h}"),
///         e if e.is_transient() => eprintln!("try again later: {e}"),
///         e => eprintln!("{e}"),
///     }
///     // The chain of causes, outermost first.
///     let mut cause = std::error::Error::source(e);
///     while let Some(c) = cause {
///         eprintln!("  caused by: {c}");
///         cause = c.source();
///     }
/// }
/// # report(&Error::Closed);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service refused or ended something, in its own words: a
    /// rejected send, a detached link (`amqp:link:stolen` when a higher
    /// owner level took the partition), a closed connection, a refused
    /// token, a `$management` status, a refused SASL exchange.
    #[error(transparent)]
    Service(ServiceError),
    /// The service broke the AMQP protocol or sent what does not decode;
    /// the client closed or detached with this condition.
    #[error("the service broke the protocol: {0}")]
    Protocol(#[source] Condition),
    /// The transport could not be set up or was lost: DNS, TCP, TLS (a
    /// rejected certificate), WebSocket, a read or write that failed.
    #[error(transparent)]
    Transport(TransportFailure),
    /// The operation did not finish by its deadline. `last` is the last
    /// failure on the way ("timed out after 3 attempts: TCP connect to
    /// host:5671 refused"); it is also the [`source`](StdError::source).
    #[error("{}", timeout_text(*.attempts, .last.as_deref()))]
    Timeout {
        /// Attempts made, when the last failure is known.
        attempts: u32,
        /// The last failure before the deadline.
        #[source]
        last: Option<Box<Error>>,
    },
    /// The hub was closed (by [`Hub::close`](crate::Hub::close), or when
    /// its connection gave up), so this operation, receiver or listener
    /// cannot go on.
    #[error("the hub is closed")]
    Closed,
    /// What the caller gave cannot be used: an option, an argument, an
    /// event too large for the link, a malformed connection string,
    /// missing or malformed environment variables.
    #[error("{message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
        /// The parser's or checker's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The event handler of [`Hub::receive`](crate::Hub::receive) failed
    /// with this error, kept as it was returned: downcast it to get it
    /// back.
    #[error("the event handler failed: {0}")]
    Handler(#[source] BoxError),
    /// Credentials could not be built, or a token could not be had. The
    /// source is the credential's error: a [`TokenError`], an Entra ID
    /// [`CredentialError`](crate::identity::CredentialError) or
    /// [`ChainError`](crate::identity::ChainError), or a
    /// [`CredentialsError`].
    #[error("credentials: {0}")]
    Credential(#[source] BoxError),
    /// Checkpoints could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] PersistError),
    /// There is no runtime to run the client's task on (a hub built
    /// outside a tokio runtime without a handle), or it refused the task.
    #[error("cannot start the client's task: {0}")]
    Runtime(#[source] std::io::Error),
    /// The event processor reported a failure (a store request, a
    /// receiver, a checkpoint write).
    #[error(transparent)]
    Processor(#[from] eventhubs_proto::processor::ProcessorError),
    /// A checkpoint was refused: the partition is not this processor's.
    #[error(transparent)]
    CheckpointRefused(#[from] eventhubs_proto::processor::CheckpointRefused),
}

fn timeout_text(attempts: u32, last: Option<&Error>) -> String {
    match last {
        None => "operation timed out before its deadline".into(),
        Some(e) => {
            let s = if attempts == 1 { "" } else { "s" };
            format!("timed out after {attempts} attempt{s}: {e}")
        }
    }
}

impl Error {
    /// Bad input described by `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
            source: None,
        }
    }

    /// Bad input described by `message`, found by `source`.
    pub fn invalid_input_from(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Error::InvalidInput {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The AMQP error condition the service (or the client, for a protocol
    /// violation) gave, such as `amqp:unauthorized-access` or
    /// `com.microsoft:server-busy`; for a time-out, that of its last
    /// failure.
    pub fn condition(&self) -> Option<&str> {
        match self {
            Error::Service(s) => s.condition(),
            Error::Protocol(c) => c.symbol(),
            Error::Timeout { last: Some(e), .. } => e.condition(),
            _ => None,
        }
    }

    /// The status code of a failed `$cbs` or `$management` request (401,
    /// 404, ...); for a time-out, that of its last failure.
    pub fn status(&self) -> Option<i32> {
        match self {
            Error::Service(s) => s.status(),
            Error::Timeout { last: Some(e), .. } => e.status(),
            _ => None,
        }
    }

    /// True when the same call may succeed later: a deadline reached, a
    /// transient network failure, or a condition the service uses for
    /// passing trouble (`com.microsoft:server-busy`,
    /// `com.microsoft:timeout`, `amqp:internal-error`, 5xx statuses, ...).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Transport(t) => t.is_transient(),
            Error::Service(s) => s.is_transient(),
            Error::Protocol(_) => true,
            _ => false,
        }
    }

    /// True when a receiver lost its partition to one with a higher owner
    /// level (`amqp:link:stolen`).
    pub fn is_ownership_lost(&self) -> bool {
        matches!(self, Error::Service(s) if s.condition() == Some(LINK_STOLEN))
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True for [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// The handler's error of an [`Error::Handler`], as the type it was
    /// returned as.
    pub fn handler_error<E: StdError + 'static>(&self) -> Option<&E> {
        match self {
            Error::Handler(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// From the client core's error, without typed transport causes.
    pub(crate) fn from_client(e: ClientError, causes: &dyn Fn(u64) -> Option<Cause>) -> Self {
        let status_condition =
            |code, condition: Option<eventhubs_proto::codec::Symbol>, d| Condition {
                symbol: condition.map(|c| c.as_str().to_owned()),
                status: Some(code),
                description: d,
            };
        match e {
            ClientError::Service(a) => Error::Service(ServiceError::new(
                "the service reported an error",
                Some(Condition::from_amqp(&a)),
            )),
            ClientError::Status {
                code,
                description,
                condition,
            } => Error::Service(ServiceError::new(
                "the service refused the request",
                Some(status_condition(code, condition, description)),
            )),
            ClientError::TokenRefused { audience, refusal } => {
                let condition = match *refusal {
                    ClientError::Status {
                        code,
                        description,
                        condition,
                    } => status_condition(code, condition, description),
                    other => Condition {
                        symbol: other.condition().map(|c| c.as_str().to_owned()),
                        status: None,
                        description: Some(other.to_string()),
                    },
                };
                Error::Service(ServiceError::new(
                    format!("the service refused the token for {audience}"),
                    Some(condition),
                ))
            }
            ClientError::Authentication(code) => Error::Service(ServiceError::new(
                format!("the service refused the SASL authentication (outcome {code:?})"),
                None,
            )),
            ClientError::Detached(what) => Error::Service(ServiceError::new(
                format!("the service detached the {what} link without an error"),
                None,
            )),
            ClientError::Refused(how) => Error::Service(ServiceError::new(
                format!("the service {how} the transfer without an error"),
                None,
            )),
            ClientError::Protocol(a) => Error::Protocol(Condition::from_amqp(&a)),
            ClientError::Response(r) => Error::Protocol(Condition {
                symbol: None,
                status: None,
                description: Some(format!("unreadable $management response: {r}")),
            }),
            ClientError::Connect(f) => Error::Transport(TransportFailure {
                kind: f.kind.into(),
                message: f.cause,
                source: f.transport.and_then(|t| causes(t.0)),
            }),
            ClientError::Disconnected { transport, cause } => Error::Transport(TransportFailure {
                kind: TransportFailureKind::Lost,
                message: format!("connection lost: {cause}"),
                source: causes(transport.0),
            }),
            ClientError::Connection(m) => Error::Transport(TransportFailure {
                kind: TransportFailureKind::Connection,
                message: format!("connection failed: {m}"),
                source: None,
            }),
            ClientError::Timeout { attempts, last } => Error::Timeout {
                attempts,
                last: last.map(|l| Box::new(Error::from_client(*l, causes))),
            },
            ClientError::Token(t) => Error::Credential(Box::new(t)),
            ClientError::Batch(b) => Error::invalid_input_from(b.to_string(), b),
            ClientError::InvalidArgument(m) => Error::invalid_input(m),
            ClientError::Closed => Error::Closed,
            other => Error::Protocol(Condition {
                symbol: other.condition().map(|c| c.as_str().to_owned()),
                status: None,
                description: Some(other.to_string()),
            }),
        }
    }
}

const LINK_STOLEN: &str = "amqp:link:stolen";

/// A typed cause kept by the driver for a transport attempt.
pub(crate) type Cause = Arc<dyn StdError + Send + Sync + 'static>;

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        Error::from_client(e, &|_| None)
    }
}

impl From<ConnectionStringError> for Error {
    fn from(e: ConnectionStringError) -> Self {
        Error::invalid_input_from(format!("the connection string is malformed: {e}"), e)
    }
}

impl From<EnvironmentError> for Error {
    fn from(e: EnvironmentError) -> Self {
        Error::invalid_input_from(e.to_string(), e)
    }
}

impl From<EnvError> for Error {
    fn from(e: EnvError) -> Self {
        Error::invalid_input_from(e.to_string(), e)
    }
}

impl From<eventhubs_proto::processor::ConfigError> for Error {
    fn from(e: eventhubs_proto::processor::ConfigError) -> Self {
        Error::invalid_input_from(format!("the processor's settings: {e}"), e)
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::invalid_input_from(e.to_string(), e)
    }
}

impl From<CredentialsError> for Error {
    fn from(e: CredentialsError) -> Self {
        Error::Credential(Box::new(e))
    }
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        Error::Credential(Box::new(e))
    }
}

impl From<crate::identity::ChainError> for Error {
    fn from(e: crate::identity::ChainError) -> Self {
        Error::Credential(Box::new(e))
    }
}

impl From<eventhubs_proto::identity::CredentialError> for Error {
    fn from(e: eventhubs_proto::identity::CredentialError) -> Self {
        Error::Credential(Box::new(e))
    }
}

/// An error condition: the AMQP condition symbol (AMQP 1.0 section 2.8.15
/// and the service's `com.microsoft:*` ones), the status of a `$cbs` or
/// `$management` response, and the description that came with them.
///
/// It is the [`source`](StdError::source) of an [`Error::Service`] and an
/// [`Error::Protocol`], so that a chain of errors ends at what the service
/// said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    symbol: Option<String>,
    status: Option<i32>,
    description: Option<String>,
}

impl Condition {
    fn from_amqp(a: &AmqpError) -> Self {
        Condition {
            symbol: Some(a.condition.as_str().to_owned()),
            status: None,
            description: a.description.as_ref().map(|d| d.to_string()),
        }
    }

    /// The AMQP condition symbol, such as `amqp:unauthorized-access`.
    pub fn symbol(&self) -> Option<&str> {
        self.symbol.as_deref()
    }

    /// The status code of a `$cbs` or `$management` response.
    pub fn status(&self) -> Option<i32> {
        self.status
    }

    /// The description the service gave.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(s) = self.status {
            write!(f, "status {s}")?;
            sep = " ";
        }
        if let Some(c) = &self.symbol {
            write!(f, "{sep}{c}")?;
            sep = ": ";
        } else if !sep.is_empty() {
            sep = ": ";
        }
        if let Some(d) = &self.description {
            write!(f, "{sep}{d}")?;
        }
        Ok(())
    }
}

impl StdError for Condition {}

/// What the service refused or ended, and the [`Condition`] it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    message: String,
    condition: Option<Condition>,
}

impl ServiceError {
    fn new(message: impl Into<String>, condition: Option<Condition>) -> Self {
        ServiceError {
            message: message.into(),
            condition,
        }
    }

    /// What the service refused, in words ("the service refused the token
    /// for amqps://ns.servicebus.windows.net/hub").
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The condition the service gave, when it gave one.
    pub fn details(&self) -> Option<&Condition> {
        self.condition.as_ref()
    }

    /// The AMQP condition symbol.
    pub fn condition(&self) -> Option<&str> {
        self.condition.as_ref().and_then(Condition::symbol)
    }

    /// The `$cbs` or `$management` status code.
    pub fn status(&self) -> Option<i32> {
        self.condition.as_ref().and_then(Condition::status)
    }

    /// True for conditions and statuses the service uses for passing
    /// trouble.
    pub fn is_transient(&self) -> bool {
        if let Some(code) = self.status() {
            return code >= 500 || code == 429 || code == 408;
        }
        match self.condition() {
            Some(c) => {
                let symbol = eventhubs_proto::codec::Symbol::new(c.to_owned());
                symbol.is_some_and(|s| classify_condition(&s) != RecoveryKind::Fatal)
            }
            None => true,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(c) = &self.condition {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl StdError for ServiceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.condition
            .as_ref()
            .map(|c| c as &(dyn StdError + 'static))
    }
}

/// Which way a transport failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportFailureKind {
    /// The host name did not resolve.
    Dns,
    /// Nothing accepted the TCP connection.
    Refused,
    /// The connection was reset or aborted while being set up.
    Reset,
    /// Setting up the transport took longer than allowed.
    TimedOut,
    /// Another I/O failure while setting up.
    Io,
    /// The server's TLS certificate was rejected.
    CertificateRejected,
    /// The host cannot name a TLS server or a WebSocket host.
    InvalidHost,
    /// The TLS configuration is unusable.
    TlsConfig,
    /// The server refused the WebSocket upgrade.
    WebSocketRefused,
    /// The server did not select the `AMQPWSB10` subprotocol.
    SubprotocolRefused,
    /// An open connection's transport failed or closed.
    Lost,
    /// The AMQP connection could not be opened or used (no answer to the
    /// open in time, the service ending the session without an error).
    Connection,
}

impl From<ConnectFailureKind> for TransportFailureKind {
    fn from(k: ConnectFailureKind) -> Self {
        use ConnectFailureKind as K;
        match k {
            K::Dns => Self::Dns,
            K::Refused => Self::Refused,
            K::Reset => Self::Reset,
            K::TimedOut => Self::TimedOut,
            K::CertificateRejected => Self::CertificateRejected,
            K::InvalidHost => Self::InvalidHost,
            K::TlsConfig => Self::TlsConfig,
            K::WebSocketRefused => Self::WebSocketRefused,
            K::SubprotocolRefused => Self::SubprotocolRefused,
            _ => Self::Io,
        }
    }
}

/// A transport that could not be set up or was lost: its kind, what
/// happened, and the typed cause (an [`std::io::Error`], a
/// [`TransportError`] with its TLS or WebSocket error) as its
/// [`source`](StdError::source).
#[derive(Debug, Clone)]
pub struct TransportFailure {
    kind: TransportFailureKind,
    message: String,
    source: Option<Cause>,
}

impl TransportFailure {
    /// Which way it failed.
    pub fn kind(&self) -> TransportFailureKind {
        self.kind
    }

    /// What failed, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when trying again may help: DNS, refused, reset, timed out,
    /// I/O, a lost connection; false for a rejected certificate, a bad TLS
    /// configuration or host, or a refused WebSocket upgrade.
    pub fn is_transient(&self) -> bool {
        use TransportFailureKind::*;
        !matches!(
            self.kind,
            CertificateRejected | InvalidHost | TlsConfig | WebSocketRefused | SubprotocolRefused
        )
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for TransportFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhubs_proto::client::ConnectFailure;

    #[test]
    fn a_refused_token_chains_down_to_its_status_and_condition() {
        let core = ClientError::TokenRefused {
            audience: "amqps://ns/hub".into(),
            refusal: Box::new(ClientError::Status {
                code: 401,
                description: Some("InvalidSignature".into()),
                condition: Some(eventhubs_proto::codec::Symbol::from_static(
                    "amqp:unauthorized-access",
                )),
            }),
        };
        let e = Error::from(core);
        assert_eq!(
            e.to_string(),
            "the service refused the token for amqps://ns/hub: status 401 amqp:unauthorized-access: InvalidSignature"
        );
        assert_eq!(e.condition(), Some("amqp:unauthorized-access"));
        assert_eq!(e.status(), Some(401));
        assert!(!e.is_transient());
        let c = StdError::source(&e)
            .and_then(|s| s.downcast_ref::<Condition>())
            .expect("the condition is the source");
        assert_eq!(c.symbol(), Some("amqp:unauthorized-access"));
        assert_eq!(c.description(), Some("InvalidSignature"));
    }

    #[test]
    fn a_timeout_keeps_its_last_cause_with_its_typed_source() {
        let io = Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let mut failure = ConnectFailure::new(
            ConnectFailureKind::Refused,
            "TCP connect to host:5671 refused",
        );
        failure.transport = Some(eventhubs_proto::client::TransportId(3));
        let core = ClientError::Timeout {
            attempts: 3,
            last: Some(Box::new(ClientError::Connect(failure))),
        };
        let e = Error::from_client(core, &|t| (t == 3).then(|| io.clone() as Cause));
        assert_eq!(
            e.to_string(),
            "timed out after 3 attempts: TCP connect to host:5671 refused"
        );
        assert!(e.is_timeout() && e.is_transient());
        let last = StdError::source(&e).expect("the last failure");
        let io = last
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn ownership_lost_and_handler_errors() {
        let stolen = Error::from(ClientError::Service(AmqpError::new(
            eventhubs_proto::codec::Symbol::from_static("amqp:link:stolen"),
            "epoch 2",
        )));
        assert!(stolen.is_ownership_lost());
        #[derive(Debug, thiserror::Error)]
        #[error("mine")]
        struct Mine(u8);
        let h = Error::Handler(Box::new(Mine(7)));
        assert_eq!(h.handler_error::<Mine>().map(|m| m.0), Some(7));
        assert_eq!(h.to_string(), "the event handler failed: mine");
    }
}
