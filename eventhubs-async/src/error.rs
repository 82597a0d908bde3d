//! The error type of the async API.

use eventhubs_proto::client::ClientError;
use eventhubs_proto::eventhubs::connection_string::{ConnectionStringError, EnvironmentError};
use eventhubs_proto::eventhubs::sas::TokenError;

use crate::credentials::{CredentialsError, EnvError};
use crate::persist::PersistError;
use crate::transport::TransportError;

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service or the client core reported an error (with its AMQP
    /// condition when there is one).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The connection string is malformed.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// The Azure environment is unknown.
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    /// Environment variables are missing or malformed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// Credentials could not be built.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A token could not be made.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Entra ID credentials could not be built from the environment.
    #[error(transparent)]
    Identity(#[from] crate::identity::ChainError),
    /// An Entra ID credential could not be built or get a token.
    #[error(transparent)]
    Credential(#[from] eventhubs_proto::identity::CredentialError),
    /// Checkpoints could not be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The transport could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An option is invalid.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The runtime could not start the client's task.
    #[error("cannot start the client task: {0}")]
    Spawn(std::io::Error),
    /// The event handler returned an error.
    #[error("event handler failed: {0}")]
    Handler(String),
    /// The hub or receiver is closed.
    #[error("closed")]
    Closed,
    /// The event processor's settings cannot work.
    #[error(transparent)]
    ProcessorConfig(#[from] eventhubs_proto::processor::ConfigError),
    /// The event processor reported a failure (a store request, a
    /// receiver, a checkpoint write).
    #[error(transparent)]
    Processor(#[from] eventhubs_proto::processor::ProcessorError),
    /// A checkpoint was refused: the partition is not this processor's.
    #[error(transparent)]
    CheckpointRefused(#[from] eventhubs_proto::processor::CheckpointRefused),
}

impl Error {
    /// True when a receiver lost its partition to a higher owner level.
    pub fn is_ownership_lost(&self) -> bool {
        matches!(self, Error::Client(e) if e.is_ownership_lost())
    }
}
