//! Azure Blob Storage, as far as a checkpoint store needs it: requests as
//! data, Shared Key and SAS signing, connection strings, and the XML
//! replies. No I/O: the requests go out through any HTTP client (the
//! [`crate::http`] exchange in this project), and the caller supplies the
//! wall clock for `x-ms-date`.
//!
//! - [`StorageConnectionString`] reads `DefaultEndpointsProtocol`,
//!   `AccountName`, `AccountKey`, `BlobEndpoint`, `EndpointSuffix`,
//!   `SharedAccessSignature`, `UseDevelopmentStorage=true`.
//! - [`BlobService`] builds Create Container, List Blobs, Put Blob (empty block
//!   blob with metadata), Set Blob Metadata, Get Blob Properties, with
//!   [`Condition`]s; path-style URLs for emulators and IP hosts,
//!   virtual-host URLs for the service ([`BlobEndpoint`]).
//! - [`authorize`] sets `x-ms-date`, then Shared Key ([`SharedKeyCredential`],
//!   [`string_to_sign`]), a SAS ([`SasToken`]; account and container SAS
//!   can also be made with a key) or a bearer token.
//! - [`parse_list_blobs`] and [`ServiceError`] read the List Blobs page and
//!   the error reply with its [`StorageErrorCode`].

mod connection_string;
mod error;
mod request;
mod shared_key;
mod xml;

pub use connection_string::{
    StorageConnectionString, StorageConnectionStringError, StorageCredentials, DEVELOPMENT_ACCOUNT,
    DEVELOPMENT_BLOB_ENDPOINT, DEVELOPMENT_KEY,
};
pub use error::{ServiceError, StorageError, StorageErrorCode, XmlError};
pub use request::{
    authorize, check_blob_name, check_container_name, percent_decode, percent_encode_path,
    percent_encode_query, Authorization, BlobEndpoint, BlobProperties, BlobService, BlobVersion,
    Condition, ListBlobs, DEFAULT_VERSION,
};
pub use shared_key::{
    string_to_sign, AccountSas, ContainerSas, InvalidAccountKey, SasToken, SharedKeyCredential,
};
pub use xml::{parse_error_body, parse_list_blobs, unquote_etag, BlobItem, ListBlobsPage};

#[cfg(test)]
mod tests;
