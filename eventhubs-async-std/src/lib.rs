//! Azure Event Hubs client for [async-std](https://docs.rs/async-std),
//! also usable under [smol](https://docs.rs/smol): the same API as
//! `eventhubs-tokio`, from the same shared code in `eventhubs-async`, all
//! of it re-exported here, so this is the one crate to depend on. This
//! crate only says how to connect TCP, sleep, spawn and run blocking work,
//! and names the generic types for async-std ([`Hub`], [`FilePersister`],
//! the Entra ID credentials).
//!
//! async-std starts its executor on first use, so a hub can be built from
//! any thread, inside a runtime or not (`smol::block_on` included).
//!
//! ```no_run
//! use eventhubs_async_std::{EventData, Hub, HubOptions};
//!
//! # fn main() -> Result<(), eventhubs_async_std::Error> {
//! let hub = Hub::from_connection_string(
//!     "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1",
//!     HubOptions::new(),
//! )?;
//! async_std::task::block_on(async {
//!     hub.send(EventData::new("hello from async-std")).await?;
//!     hub.close().await
//! })
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::time::Duration;

pub use eventhubs_async::*;

/// The async-std runtime, as the client needs it. Its executor starts on
/// first use, so it also serves programs driven by `smol::block_on`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdRuntime;

impl Runtime for AsyncStdRuntime {
    type Tcp = async_std::net::TcpStream;

    fn connect_tcp(&self, host: String, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        Box::pin(async move {
            use async_std::net::ToSocketAddrs;
            let addrs: Vec<std::net::SocketAddr> = (host.as_str(), port)
                .to_socket_addrs()
                .await
                .map_err(|e| ResolveError::new(&host, e).into_io())?
                .collect();
            let s = async_std::net::TcpStream::connect(&addrs[..]).await?;
            s.set_nodelay(true)?;
            Ok(s)
        })
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async_std::task::sleep(duration))
    }

    fn spawn(&self, future: BoxFuture<()>) -> io::Result<()> {
        async_std::task::spawn(future);
        Ok(())
    }

    fn spawn_blocking(&self, job: BlockingJob) -> BoxFuture<io::Result<()>> {
        let task = async_std::task::spawn_blocking(job);
        Box::pin(async move {
            task.await;
            Ok(())
        })
    }
}

/// A client of one event hub on async-std.
pub type Hub = eventhubs_async::Hub<AsyncStdRuntime>;

/// Checkpoints as files, their I/O on async-std's blocking threads.
pub type FilePersister = eventhubs_async::FilePersister<AsyncStdRuntime>;

/// A checkpoint store on Azure Blob Storage, on async-std.
pub type BlobCheckpointStore = eventhubs_async::BlobCheckpointStore<AsyncStdRuntime>;

/// A Blob Storage client on async-std.
pub type BlobClient = eventhubs_async::BlobClient<AsyncStdRuntime>;

/// An HTTP client on async-std.
pub type HttpClient = eventhubs_async::HttpClient<AsyncStdRuntime>;

/// Checkpoints in Azure Blob Storage, in the layout every Event Hubs SDK
/// shares, for [`HubOptions::with_checkpoint_persister`].
pub type BlobPersister = eventhubs_async::StorePersister<BlobCheckpointStore>;

/// An event processor on async-std (see [`eventhubs_async::processor`]).
pub type Processor = eventhubs_async::Processor<AsyncStdRuntime>;
/// The hub manager (create, update, get, list and delete event hubs) on
/// async-std; see [`eventhubs_async::management`].
pub type HubManager = eventhubs_async::HubManager<AsyncStdRuntime>;

/// Entra ID credentials on async-std (see [`eventhubs_async::identity`]).
pub type ClientSecretCredential =
    eventhubs_async::identity::ClientSecretCredential<AsyncStdRuntime>;
/// A certificate credential on async-std.
pub type ClientCertificateCredential =
    eventhubs_async::identity::ClientCertificateCredential<AsyncStdRuntime>;
/// A managed identity credential on async-std.
pub type ManagedIdentityCredential =
    eventhubs_async::identity::ManagedIdentityCredential<AsyncStdRuntime>;
/// A workload identity credential on async-std.
pub type WorkloadIdentityCredential =
    eventhubs_async::identity::WorkloadIdentityCredential<AsyncStdRuntime>;
/// The `AZURE_*` credential chain on async-std.
pub type DefaultAzureCredential =
    eventhubs_async::identity::DefaultAzureCredential<AsyncStdRuntime>;
/// The environment's service principal on async-std.
pub type EnvironmentCredential = eventhubs_async::identity::EnvironmentCredential<AsyncStdRuntime>;

#[cfg(test)]
mod tests {
    use super::*;

    /// async-std has no "outside": its executor starts on first use, so a
    /// hub built on a plain thread works.
    #[test]
    fn a_hub_built_outside_any_runtime_works() {
        let emulator = eventhubs_emulator::Emulator::start(Default::default()).unwrap();
        let hub =
            Hub::from_connection_string(&emulator.connection_string("eh1"), HubOptions::new())
                .expect("async-std needs no ambient runtime");
        let info = async_std::task::block_on(hub.runtime_information()).unwrap();
        assert_eq!(info.partition_ids, vec!["0", "1"]);
        async_std::task::block_on(hub.close()).unwrap();
    }
}
