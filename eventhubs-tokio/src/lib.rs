//! Azure Event Hubs client for [tokio](https://tokio.rs).
//!
//! The one crate to depend on: everything a program names (events,
//! positions, values, errors, options, persisters, credentials, checkpoint
//! stores) is re-exported here from `eventhubs-async`, which holds the
//! client shared with the async-std adapter, on top of the sans-IO core in
//! `eventhubs-proto`. This crate only says how to connect TCP, sleep,
//! spawn and run blocking work on tokio, and names the generic types for
//! it ([`Hub`], [`FilePersister`], the Entra ID credentials).
//!
//! ```no_run
//! use eventhubs_tokio::{EventData, EventPosition, Hub, HubOptions, ReceiveOptions, SendOptions};
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), eventhubs_tokio::Error> {
//! let hub = Hub::from_connection_string(
//!     "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1",
//!     HubOptions::default(),
//! )?;
//! hub.send(EventData::new("hello world").with_property("kind", "greeting")).await?;
//! hub.send_with(EventData::new("to partition 1"), SendOptions::new().with_partition_id("1")).await?;
//! let options = ReceiveOptions::new().with_start_position(EventPosition::Earliest);
//! let mut events = hub.receiver("0", options).await?;
//! while let Some(event) = events.next().await {
//!     println!("{:?}", event?.body());
//! }
//! hub.close().await
//! # }
//! ```
//!
//! A hub is built inside a tokio runtime, or given one with
//! [`HubOptions::with_runtime`] and [`TokioRuntime::from_handle`];
//! built anywhere else it fails with [`Error::Runtime`], saying so.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

pub use eventhubs_async::*;

/// The README's Rust snippets, compiled as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The tokio runtime, as the client needs it: the ambient runtime
/// (`TokioRuntime::default()`, the one the calling task runs on), or the
/// one a [`Handle`] names ([`TokioRuntime::from_handle`]).
#[derive(Clone, Debug, Default)]
pub struct TokioRuntime {
    handle: Option<Handle>,
}

/// What [`TokioRuntime`] says when there is no runtime to use.
const NO_RUNTIME: &str = "there is no tokio runtime here: build the hub inside one \
    (#[tokio::main], Runtime::block_on or Runtime::enter), or give it one with \
    HubOptions::with_runtime(TokioRuntime::from_handle(handle))";

impl TokioRuntime {
    /// The runtime `handle` names, whichever thread the client is used
    /// from.
    pub fn from_handle(handle: Handle) -> Self {
        TokioRuntime {
            handle: Some(handle),
        }
    }

    /// The ambient runtime's handle, taken now; an error saying so when
    /// there is none.
    pub fn current() -> io::Result<Self> {
        Handle::try_current()
            .map(Self::from_handle)
            .map_err(|_| io::Error::other(NO_RUNTIME))
    }

    fn handle(&self) -> io::Result<Handle> {
        match &self.handle {
            Some(h) => Ok(h.clone()),
            None => Handle::try_current().map_err(|_| io::Error::other(NO_RUNTIME)),
        }
    }
}

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
        // The timer registers with the runtime it is made in.
        let _guard = self.handle.as_ref().map(Handle::enter);
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn(&self, future: BoxFuture<()>) -> io::Result<()> {
        self.handle()?.spawn(future);
        Ok(())
    }

    fn spawn_blocking(&self, job: BlockingJob) -> BoxFuture<io::Result<()>> {
        match self.handle() {
            Ok(h) => {
                let task = h.spawn_blocking(job);
                Box::pin(async move { task.await.map_err(io::Error::other) })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// A client of one event hub on tokio.
pub type Hub = eventhubs_async::Hub<TokioRuntime>;

/// Checkpoints as files, their I/O on tokio's blocking pool.
pub type FilePersister = eventhubs_async::FilePersister<TokioRuntime>;

/// A checkpoint store on Azure Blob Storage, on tokio.
pub type BlobCheckpointStore = eventhubs_async::BlobCheckpointStore<TokioRuntime>;

/// A Blob Storage client on tokio.
pub type BlobClient = eventhubs_async::BlobClient<TokioRuntime>;

/// An HTTP client on tokio.
pub type HttpClient = eventhubs_async::HttpClient<TokioRuntime>;

/// Checkpoints in Azure Blob Storage, in the layout every Event Hubs SDK
/// shares, for [`HubOptions::with_checkpoint_persister`].
pub type BlobPersister = eventhubs_async::StorePersister<BlobCheckpointStore>;

/// An event processor on tokio (see [`eventhubs_async::processor`]).
pub type Processor = eventhubs_async::Processor<TokioRuntime>;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_outside_a_runtime_says_so() {
        let err = Hub::from_connection_string(
            "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;EntityPath=eh1",
            HubOptions::new(),
        )
        .expect_err("no runtime");
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert!(
            err.to_string().contains("there is no tokio runtime here"),
            "{err}"
        );
    }

    #[test]
    fn a_handle_lets_a_hub_be_built_and_used_outside_its_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let emulator = eventhubs_emulator::Emulator::start(Default::default()).unwrap();
        let hub = Hub::from_connection_string(
            &emulator.connection_string("eh1"),
            HubOptions::new().with_runtime(TokioRuntime::from_handle(rt.handle().clone())),
        )
        .expect("built with a handle, outside the runtime");
        // Driven from a thread that is not the runtime's.
        let info = block_on(hub.runtime_information()).unwrap();
        assert_eq!(info.partition_ids, vec!["0", "1"]);
        block_on(hub.close()).unwrap();
    }

    /// Polls `f` on this thread, which runs no runtime.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
