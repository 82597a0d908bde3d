//! Event Hubs building blocks above AMQP: connection strings, SAS tokens,
//! partition-key hashing, start-position filters, error classification and
//! retry policy.
//!
//! Everything here is pure: no I/O, no clock (callers pass `now`), no
//! randomness (callers pass bits from a seeded [`retry::SplitMix64`] or
//! their own source).

pub mod connection_string;
pub mod errors;
pub mod filter;
pub mod partition_key;
pub mod retry;
pub mod sas;

pub use connection_string::{
    ConnectionString, ConnectionStringError, Credentials, Environment, EnvironmentError,
};
pub use errors::{classify_condition, classify_error, ErrorSource, RecoveryKind};
pub use filter::{EventPosition, FilterError};
pub use partition_key::{partition_index, partition_key_hash, resolve_partition, RoundRobin};
pub use retry::{RetryMode, RetryPolicy, SplitMix64};
pub use sas::{
    FixedSasProvider, ResourceEncoding, SasKeyProvider, SasParseError, SharedAccessSignature,
    SyncTokenProvider, Token, TokenError, TokenRequest, TokenType,
};
