//! Storage account connection strings, as the portal and `az storage
//! account show-connection-string` print them ("Configure Azure Storage
//! connection strings").

use std::fmt;

use super::error::StorageError;
use super::request::BlobEndpoint;
use super::shared_key::{InvalidAccountKey, SasToken, SharedKeyCredential};

/// The account of the local storage emulator (Azurite).
pub const DEVELOPMENT_ACCOUNT: &str = "devstoreaccount1";

/// The well-known key of [`DEVELOPMENT_ACCOUNT`] (published with the
/// emulator; not a secret).
pub const DEVELOPMENT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Where the emulator's Blob service listens by default.
pub const DEVELOPMENT_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// Why a storage connection string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageConnectionStringError {
    /// Nothing but whitespace and separators.
    #[error("the storage connection string is empty")]
    Empty,
    /// A `;`-separated part has no `=`.
    #[error("storage connection string part {index} is not Key=Value")]
    MalformedPart {
        /// Its position, from 0. (The text is not shown: it may be a key.)
        index: usize,
    },
    /// A key appears twice.
    #[error("{key} appears twice in the storage connection string")]
    Duplicate {
        /// The key.
        key: String,
    },
    /// Neither `BlobEndpoint` nor `AccountName` says where the Blob
    /// service is.
    #[error("the storage connection string has neither BlobEndpoint nor AccountName")]
    MissingEndpoint,
    /// `AccountKey` without `AccountName`.
    #[error("AccountKey needs AccountName in the storage connection string")]
    MissingAccountName,
    /// `AccountKey` is not Base64.
    #[error("AccountKey is not valid Base64")]
    InvalidAccountKey,
    /// Both `AccountKey` and `SharedAccessSignature`.
    #[error(
        "the storage connection string has both AccountKey and SharedAccessSignature; give one"
    )]
    ConflictingCredentials,
    /// `DefaultEndpointsProtocol` is neither `http` nor `https`.
    #[error("DefaultEndpointsProtocol must be http or https, not {value:?}")]
    InvalidProtocol {
        /// The value given.
        value: String,
    },
    /// `UseDevelopmentStorage` is not `true`, or comes with settings that
    /// contradict it.
    #[error("UseDevelopmentStorage: {reason}")]
    InvalidDevelopmentStorage {
        /// What is wrong.
        reason: String,
    },
    /// `BlobEndpoint` or `SharedAccessSignature` is unusable.
    #[error(transparent)]
    Invalid(#[from] StorageError),
}

impl From<InvalidAccountKey> for StorageConnectionStringError {
    fn from(_: InvalidAccountKey) -> Self {
        StorageConnectionStringError::InvalidAccountKey
    }
}

/// The credential a connection string carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageCredentials {
    /// `AccountName` + `AccountKey`: Shared Key.
    SharedKey(SharedKeyCredential),
    /// `SharedAccessSignature`.
    Sas(SasToken),
    /// Neither (the caller brings a bearer token, or the container is
    /// public).
    None,
}

/// A parsed storage connection string. `Debug` hides the key and the
/// SAS signature.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageConnectionString {
    /// Where the Blob service is.
    pub blob_endpoint: BlobEndpoint,
    /// `AccountName`, if given.
    pub account_name: Option<String>,
    /// The credential.
    pub credentials: StorageCredentials,
}

impl fmt::Debug for StorageConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConnectionString")
            .field("blob_endpoint", &self.blob_endpoint)
            .field("account_name", &self.account_name)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl std::str::FromStr for StorageConnectionString {
    type Err = StorageConnectionStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl StorageConnectionString {
    /// Parses `Key=Value;…`. Keys are matched case-insensitively, values
    /// split at the first `=` (keys and SAS values contain `=`), empty
    /// parts ignored, and settings for other services (`QueueEndpoint`,
    /// `TableEndpoint`, …) ignored.
    ///
    /// - `UseDevelopmentStorage=true`: the emulator account
    ///   (`devstoreaccount1` and its published key) at
    ///   `http://127.0.0.1:10000/devstoreaccount1`;
    /// - `BlobEndpoint`: the Blob service URL as written (path-style when
    ///   it has a path, as for Azurite); otherwise
    ///   `<DefaultEndpointsProtocol>://<AccountName>.blob.<EndpointSuffix>`
    ///   (`https`, `core.windows.net` by default);
    /// - `AccountName` + `AccountKey` (Shared Key) or
    ///   `SharedAccessSignature`, not both.
    pub fn parse(s: &str) -> Result<Self, StorageConnectionStringError> {
        use StorageConnectionStringError as E;
        let mut settings: Vec<(String, String)> = Vec::new();
        for (index, part) in s.split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').ok_or(E::MalformedPart { index })?;
            let key = k.trim().to_ascii_lowercase();
            if settings.iter().any(|(seen, _)| *seen == key) {
                return Err(E::Duplicate {
                    key: k.trim().to_owned(),
                });
            }
            settings.push((key, v.trim().to_owned()));
        }
        if settings.is_empty() {
            return Err(E::Empty);
        }
        let get = |key: &str| {
            settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        if let Some(dev) = get("usedevelopmentstorage") {
            if !dev.eq_ignore_ascii_case("true") {
                return Err(E::InvalidDevelopmentStorage {
                    reason: format!("the only accepted value is true, not {dev:?}"),
                });
            }
            if let Some((k, _)) = settings.iter().find(|(k, _)| k != "usedevelopmentstorage") {
                return Err(E::InvalidDevelopmentStorage {
                    reason: format!("it cannot be combined with {k}"),
                });
            }
            return Ok(StorageConnectionString::development());
        }
        let account = get("accountname").map(str::to_owned);
        let protocol = get("defaultendpointsprotocol").unwrap_or("https");
        if !protocol.eq_ignore_ascii_case("http") && !protocol.eq_ignore_ascii_case("https") {
            return Err(E::InvalidProtocol {
                value: protocol.to_owned(),
            });
        }
        let blob_endpoint = match (get("blobendpoint"), &account) {
            (Some(url), _) => BlobEndpoint::parse(url)?,
            (None, Some(account)) => BlobEndpoint::for_service(
                &protocol.to_ascii_lowercase(),
                account,
                get("endpointsuffix").unwrap_or("core.windows.net"),
            )?,
            (None, None) => return Err(E::MissingEndpoint),
        };
        let credentials = match (get("accountkey"), get("sharedaccesssignature")) {
            (Some(_), Some(_)) => return Err(E::ConflictingCredentials),
            (Some(key), None) => {
                let account = account.clone().ok_or(E::MissingAccountName)?;
                StorageCredentials::SharedKey(SharedKeyCredential::new(account, key)?)
            }
            (None, Some(sas)) => StorageCredentials::Sas(SasToken::parse(sas)?),
            (None, None) => StorageCredentials::None,
        };
        Ok(StorageConnectionString {
            blob_endpoint,
            account_name: account,
            credentials,
        })
    }

    /// The emulator's account at its default address
    /// (`UseDevelopmentStorage=true`).
    pub fn development() -> Self {
        Self::development_at(DEVELOPMENT_BLOB_ENDPOINT)
            .unwrap_or_else(|_| unreachable!("the default endpoint parses"))
    }

    /// The emulator's account at another Blob endpoint (e.g. Azurite on
    /// another port: `http://127.0.0.1:PORT/devstoreaccount1`).
    pub fn development_at(blob_endpoint: &str) -> Result<Self, StorageError> {
        let key = SharedKeyCredential::new(DEVELOPMENT_ACCOUNT, DEVELOPMENT_KEY)
            .unwrap_or_else(|_| unreachable!("the published key is Base64"));
        Ok(StorageConnectionString {
            blob_endpoint: BlobEndpoint::parse(blob_endpoint)?,
            account_name: Some(DEVELOPMENT_ACCOUNT.to_owned()),
            credentials: StorageCredentials::SharedKey(key),
        })
    }
}
