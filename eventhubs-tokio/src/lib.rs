//! Azure Event Hubs client for [tokio](https://tokio.rs).
//!
//! This crate only says how to connect TCP, sleep and spawn on tokio; the
//! client itself (the Hub API, its driver, TLS and WebSocket transports,
//! checkpoint persistence, token providers) is shared with the async-std
//! adapter in `eventhubs-async`, on top of the sans-IO core in
//! `eventhubs-proto`.
//!
//! ```no_run
//! use eventhubs_tokio::{Event, Hub, HubOptions, ReceiveOptions};
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), eventhubs_tokio::Error> {
//! let hub = Hub::from_connection_string(
//!     "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1",
//!     HubOptions::default(),
//! )?;
//! hub.send(Event::new("hello world")).await?;
//! let mut events = hub.receiver("0", ReceiveOptions::default()).await?;
//! while let Some(event) = events.next().await {
//!     println!("{:?}", event?.data.body);
//! }
//! hub.close().await
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::time::Duration;

use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

pub use eventhubs_async::*;

/// The tokio runtime, as the client needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    type Tcp = Compat<tokio::net::TcpStream>;

    fn connect_tcp(&self, host: String, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| ResolveError::new(&host, e).into_io())?
                .collect();
            let s = tokio::net::TcpStream::connect(&addrs[..]).await?;
            s.set_nodelay(true)?;
            Ok(s.compat())
        })
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn(&self, future: BoxFuture<()>) -> io::Result<()> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("not inside a tokio runtime: {e}")))?;
        handle.spawn(future);
        Ok(())
    }
}

/// A client of one event hub on tokio.
pub type Hub = eventhubs_async::Hub<TokioRuntime>;

/// An event processor on tokio (see [`eventhubs_async::processor`]).
pub type Processor = eventhubs_async::Processor<TokioRuntime>;
/// The blob checkpoint store on tokio.
pub type BlobCheckpointStore = eventhubs_async::BlobCheckpointStore<TokioRuntime>;
/// The hub manager (create, update, get, list and delete event hubs) on
/// tokio; see [`eventhubs_async::management`].
pub type HubManager = eventhubs_async::HubManager<TokioRuntime>;

/// Entra ID credentials on tokio (see [`eventhubs_async::identity`]).
pub type ClientSecretCredential = eventhubs_async::identity::ClientSecretCredential<TokioRuntime>;
/// A certificate credential on tokio.
pub type ClientCertificateCredential =
    eventhubs_async::identity::ClientCertificateCredential<TokioRuntime>;
/// A managed identity credential on tokio.
pub type ManagedIdentityCredential =
    eventhubs_async::identity::ManagedIdentityCredential<TokioRuntime>;
/// A workload identity credential on tokio.
pub type WorkloadIdentityCredential =
    eventhubs_async::identity::WorkloadIdentityCredential<TokioRuntime>;
/// The `AZURE_*` credential chain on tokio.
pub type DefaultAzureCredential = eventhubs_async::identity::DefaultAzureCredential<TokioRuntime>;
/// The environment's service principal on tokio.
pub type EnvironmentCredential = eventhubs_async::identity::EnvironmentCredential<TokioRuntime>;
