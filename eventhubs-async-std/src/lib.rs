//! Azure Event Hubs client for [async-std](https://docs.rs/async-std),
//! also usable under [smol](https://docs.rs/smol): the same API as
//! `eventhubs-tokio`, from the same shared code in `eventhubs-async`.
//! This crate only says how to connect TCP, sleep and spawn.
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
}

/// A client of one event hub on async-std.
pub type Hub = eventhubs_async::Hub<AsyncStdRuntime>;

/// An event processor on async-std (see [`eventhubs_async::processor`]).
pub type Processor = eventhubs_async::Processor<AsyncStdRuntime>;
/// The blob checkpoint store on async-std.
pub type BlobCheckpointStore = eventhubs_async::BlobCheckpointStore<AsyncStdRuntime>;
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
