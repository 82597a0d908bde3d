//! The event processor: a fleet of processes sharing a consumer group
//! through a [`CheckpointStore`], each owning some partitions, handing
//! them over when processes come and go, and resuming each partition
//! after its last checkpoint. It interoperates with the processors of the
//! official SDKs (Python's `EventHubConsumerClient` with a blob
//! checkpoint store, Go's `Processor`, .NET's `EventProcessorClient`,
//! Java's and JavaScript's) on the same container.
//!
//! Every decision (when to balance, what to claim, where a partition
//! starts, when a batch is due, when ownership is lost, how a stop
//! hands over) is made by the sans-IO core,
//! [`eventhubs_proto::processor::Processor`]; this module runs it on a
//! runtime: store requests on the [`CheckpointStore`], receivers on the
//! [`Hub`], batches on the registered [`Handler`]s.
//!
//! # The Go library's Event Processor Host, item by item
//!
//! | azure-event-hubs-go (`eph`, `storage`) | here |
//! |---|---|
//! | `eph.New(ctx, namespace, hub, tokenProvider, leaser, checkpointer, opts...)` | [`Processor::new`]`(hub, store, options)`: the [`Hub`] carries namespace, hub and token provider; the [`CheckpointStore`] is both leaser and checkpointer |
//! | `eph.NewFromConnectionString(ctx, connStr, leaser, checkpointer, opts...)` | [`Processor::from_connection_string`] |
//! | `storage.NewStorageLeaserCheckpointer(credential, account, container, env)` | [`BlobCheckpointStore::new`](crate::BlobCheckpointStore::new) / [`from_connection_string`](crate::BlobCheckpointStore::from_connection_string) (cross-SDK blob layout instead of Go's leases; [`MemoryCheckpointStore`](crate::MemoryCheckpointStore) replaces the in-memory leaser of Go's tests) |
//! | `WithConsumerGroup(cg)` | [`ProcessorOptions::with_consumer_group`] |
//! | `WithEnvironment(env)`, `WithWebSocketConnection()` | [`ProcessorOptions::hub`] ([`HubOptions::with_environment`], [`HubOptions::with_websocket`]) |
//! | `WithNoBanner()` | nothing to turn off: no banner is printed |
//! | host name (a new UUID) | [`ProcessorOptions::with_owner_id`] (a random UUID by default) |
//! | `DefaultLeaseRenewalInterval` (10 s), `DefaultLeaseDuration` (60 s) | [`LoadBalancingConfig`] `update_interval` (10 s), `ownership_expiry` (60 s), and the strategy |
//! | `RegisterHandler(ctx, handler) (HandlerID, error)` | [`Processor::register_handler`] → [`HandlerId`]; a [`Handler`] gets batches (and partition news), [`handler_fn`] wraps a closure |
//! | `UnregisterHandler(ctx, id)` (the last one closes the host) | [`Processor::unregister_handler`] (the same) |
//! | `RegisteredHandlerIDs()` | [`Processor::registered_handler_ids`] |
//! | `Start(ctx)` (blocks until SIGINT, then closes) | [`Processor::run`] (until closed) and [`Processor::run_until`]`(signal)` (then closes) |
//! | `StartNonBlocking(ctx)` | [`Processor::start`] |
//! | `GetName()` | [`Processor::owner_id`] |
//! | `GetPartitionIDs()` | [`Processor::partition_ids`] |
//! | `PartitionIDsBeingProcessed()` | [`Processor::partitions_being_processed`] |
//! | `Close(ctx)` (close receivers, release leases, close stores and hub) | [`Processor::close`] (drain, checkpoint if asked, relinquish ownership; closes the hub it made) and [`Processor::stop`] with [`StopOptions`] |
//! | handler success → checkpoint of the event | [`CheckpointPolicy::AfterBatch`] (the default), or `Interval`, or `Manual` with [`PartitionContext::update_checkpoint`] |
//! | `Leaser`, `Checkpointer`, `StoreProvisioner`, `LeaseMarker`, `persist.Checkpoint` | [`CheckpointStore`], [`PartitionOwnership`](crate::PartitionOwnership), [`PartitionCheckpoint`](crate::PartitionCheckpoint); the container is created beforehand, as for every SDK |
//!
//! The Go host's rising epochs and blob leases are replaced by the layout
//! all current SDKs share (owner level 0, ETag claims), which is what
//! lets this processor and theirs split one consumer group.

mod handler;
mod pump;

use std::sync::Arc;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::future::{FutureExt, Shared as SharedFuture};
use ring::rand::{SecureRandom, SystemRandom};

pub use eventhubs_proto::processor::{
    CheckpointPolicy, CloseReason, ErrorKind, LoadBalancingConfig, LoadBalancingStrategy,
    ProcessorError, ProcessorStats, StartPositions, StopOptions,
};
pub use handler::{
    handler_fn, FnHandler, Handler, HandlerFuture, HandlerId, HandlerResult, PartitionContext,
};

use eventhubs_proto::checkpoint::namespace_of_endpoint;
use eventhubs_proto::eventhubs::connection_string::ConnectionString;
use eventhubs_proto::processor::{Processor as Core, ProcessorConfig};

use crate::checkpoint_store::CheckpointStore;
use crate::error::Error;
use crate::hub::Hub;
use crate::options::HubOptions;
use crate::runtime::Runtime;
use pump::{Command, Pump, Shared, Status};

/// Settings of a [`Processor`]. The defaults interoperate with the
/// Python, Go, .NET and JavaScript processors: balanced, a cycle every
/// 10 s (jittered ×[0.8, 1.2)), ownership expiring after 60 s, owner
/// level 0, consumer group `$Default`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProcessorOptions {
    /// Consumer group (`$Default`).
    pub consumer_group: String,
    /// Owner id in ownership records; a random UUID when `None`.
    pub owner_id: Option<String>,
    /// Strategy, update interval, ownership expiry.
    pub load_balancing: LoadBalancingConfig,
    /// Owner level of the receivers (`Some(0)`).
    pub owner_level: Option<i64>,
    /// Credit per receiver (300).
    pub prefetch: u32,
    /// Where partitions without a checkpoint start (the earliest event).
    pub start_positions: StartPositions,
    /// Most events per batch (100).
    pub max_batch_size: usize,
    /// Longest wait for a batch to fill (1 s).
    pub max_wait: Duration,
    /// When the processor checkpoints by itself (after every batch).
    pub checkpoint_policy: CheckpointPolicy,
    /// Time allowed to each store request (the update interval).
    pub store_timeout: Option<Duration>,
    /// The namespace in blob names. By default the authority of the
    /// connection string's `Endpoint` as written, port included (what the
    /// Python and Go processors use), or the hub's host for
    /// [`Processor::new`].
    pub fully_qualified_namespace: Option<String>,
    /// How [`Processor::close`] stops.
    pub stop: StopOptions,
    /// Hub options for [`Processor::from_connection_string`].
    pub hub: HubOptions,
    /// Seed of the cycle jitter and the balancer's choices; random by
    /// default.
    pub seed: Option<u64>,
}

impl Default for ProcessorOptions {
    fn default() -> Self {
        ProcessorOptions {
            consumer_group: "$Default".into(),
            owner_id: None,
            load_balancing: LoadBalancingConfig::default(),
            owner_level: Some(0),
            prefetch: 300,
            start_positions: StartPositions::default(),
            max_batch_size: 100,
            max_wait: Duration::from_secs(1),
            checkpoint_policy: CheckpointPolicy::default(),
            store_timeout: None,
            fully_qualified_namespace: None,
            stop: StopOptions::default(),
            hub: HubOptions::default(),
            seed: None,
        }
    }
}

impl ProcessorOptions {
    /// With consumer group `group` (Go `WithConsumerGroup`).
    pub fn with_consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = group.into();
        self
    }
    /// With owner id `id`.
    pub fn with_owner_id(mut self, id: impl Into<String>) -> Self {
        self.owner_id = Some(id.into());
        self
    }
    /// With load-balancing `strategy`.
    pub fn with_strategy(mut self, strategy: LoadBalancingStrategy) -> Self {
        self.load_balancing = self.load_balancing.with_strategy(strategy);
        self
    }
    /// With a cycle every `interval`.
    pub fn with_update_interval(mut self, interval: Duration) -> Self {
        self.load_balancing = self.load_balancing.with_update_interval(interval);
        self
    }
    /// With ownerships expiring `expiry` after their last renewal.
    pub fn with_ownership_expiry(mut self, expiry: Duration) -> Self {
        self.load_balancing = self.load_balancing.with_ownership_expiry(expiry);
        self
    }
    /// With partitions without a checkpoint starting at `positions`.
    pub fn with_start_positions(mut self, positions: StartPositions) -> Self {
        self.start_positions = positions;
        self
    }
    /// With batches of at most `max_size` events, waiting at most
    /// `max_wait` to fill.
    pub fn with_batches(mut self, max_size: usize, max_wait: Duration) -> Self {
        self.max_batch_size = max_size;
        self.max_wait = max_wait;
        self
    }
    /// With checkpoints written per `policy`.
    pub fn with_checkpoint_policy(mut self, policy: CheckpointPolicy) -> Self {
        self.checkpoint_policy = policy;
        self
    }
    /// With receivers at owner level `level` (`None`: non-exclusive).
    pub fn with_owner_level(mut self, level: Option<i64>) -> Self {
        self.owner_level = level;
        self
    }
    /// With `prefetch` credits per receiver.
    pub fn with_prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = prefetch;
        self
    }
    /// With `namespace` in blob names.
    pub fn with_fully_qualified_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.fully_qualified_namespace = Some(namespace.into());
        self
    }
    /// With [`Processor::close`] stopping per `stop`.
    pub fn with_stop(mut self, stop: StopOptions) -> Self {
        self.stop = stop;
        self
    }
    /// With hub options for [`Processor::from_connection_string`].
    pub fn with_hub_options(mut self, hub: HubOptions) -> Self {
        self.hub = hub;
        self
    }
    /// With a fixed seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// A random UUID v4, as the Go host names itself.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

/// Sends a stop when the last handle goes away.
struct StopOnDrop(mpsc::UnboundedSender<Command>, StopOptions);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.unbounded_send(Command::Stop(self.1));
    }
}

struct Inner<R: Runtime> {
    rt: R,
    hub: Hub<R>,
    store: Arc<dyn CheckpointStore>,
    config: ProcessorConfig,
    shared: Arc<Shared>,
    stop: StopOptions,
    close_hub: bool,
    pending: std::sync::Mutex<Option<(mpsc::UnboundedReceiver<Command>, oneshot::Sender<()>)>>,
    done: SharedFuture<oneshot::Receiver<()>>,
    next_handler: std::sync::atomic::AtomicU64,
    _guard: StopOnDrop,
}

/// An event processor (the Go library's `EventProcessorHost`): balances
/// the partitions of one hub and consumer group with the other processors
/// on the same [`CheckpointStore`], receives the partitions it owns, and
/// hands their events in batches to the registered [`Handler`]s.
///
/// Cheap to clone; when the last clone is dropped a running processor
/// stops as [`close`](Self::close) would, without waiting.
pub struct Processor<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for Processor<R> {
    fn clone(&self) -> Self {
        Processor {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for Processor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("owner_id", &self.inner.config.owner_id)
            .field("event_hub", &self.inner.config.event_hub)
            .field("consumer_group", &self.inner.config.consumer_group)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Processor<R> {
    /// A processor of `hub` keeping ownership and checkpoints in `store`
    /// (Go `eph.New`; the hub carries namespace, name and credentials).
    /// The namespace in blob names is the hub's host unless
    /// [`ProcessorOptions::fully_qualified_namespace`] says otherwise
    /// (give the Endpoint's authority with its port to share a store with
    /// other SDKs' processors on an emulator).
    pub fn new(
        hub: Hub<R>,
        store: impl CheckpointStore + 'static,
        options: ProcessorOptions,
    ) -> Result<Self, Error> {
        let namespace = options
            .fully_qualified_namespace
            .clone()
            .unwrap_or_else(|| hub.host().to_owned());
        Self::build(hub, Arc::new(store), options, namespace, false)
    }

    /// A processor of the hub a connection string names (with
    /// `EntityPath`; Go `eph.NewFromConnectionString`), on
    /// [`ProcessorOptions::hub`]. Blob names use the `Endpoint`'s
    /// authority as written, port included, as the Python and Go
    /// processors do. [`close`](Self::close) closes the hub.
    pub fn from_connection_string(
        connection_string: &str,
        store: impl CheckpointStore + 'static,
        options: ProcessorOptions,
    ) -> Result<Self, Error> {
        let cs = ConnectionString::parse(connection_string)?;
        let namespace = options
            .fully_qualified_namespace
            .clone()
            .unwrap_or_else(|| namespace_of_endpoint(&cs.endpoint));
        let hub = Hub::from_connection_string(connection_string, options.hub.clone())?;
        Self::build(hub, Arc::new(store), options, namespace, true)
    }

    fn build(
        hub: Hub<R>,
        store: Arc<dyn CheckpointStore>,
        options: ProcessorOptions,
        namespace: String,
        close_hub: bool,
    ) -> Result<Self, Error> {
        let mut config = ProcessorConfig::new(
            namespace,
            hub.name(),
            options.owner_id.clone().unwrap_or_else(random_uuid),
        );
        config.consumer_group = options.consumer_group.clone();
        config.load_balancing = options.load_balancing.clone();
        config.owner_level = options.owner_level;
        config.prefetch = options.prefetch;
        config.start_positions = options.start_positions.clone();
        config.max_batch_size = options.max_batch_size;
        config.max_wait = options.max_wait;
        config.checkpoint_policy = options.checkpoint_policy;
        config.store_timeout = options.store_timeout;
        config.seed = options.seed.unwrap_or_else(random_seed);
        config.validate()?;
        let (tx, rx) = mpsc::unbounded();
        let (done_tx, done_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            handlers: std::sync::Mutex::new(Default::default()),
            status: std::sync::Mutex::new(Status::default()),
            commands: tx.clone(),
        });
        Ok(Processor {
            inner: Arc::new(Inner {
                rt: R::default(),
                hub,
                store,
                config,
                shared,
                stop: options.stop,
                close_hub,
                pending: std::sync::Mutex::new(Some((rx, done_tx))),
                done: done_rx.shared(),
                next_handler: std::sync::atomic::AtomicU64::new(1),
                _guard: StopOnDrop(tx, options.stop),
            }),
        })
    }

    /// This processor's owner id in ownership records (Go `GetName`).
    pub fn owner_id(&self) -> &str {
        &self.inner.config.owner_id
    }

    /// The consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.inner.config.consumer_group
    }

    /// The hub.
    pub fn hub(&self) -> &Hub<R> {
        &self.inner.hub
    }

    /// Registers a handler for every batch and partition event (Go
    /// `RegisterHandler`). Handlers may be registered before or while the
    /// processor runs; each batch goes to the handlers registered when it
    /// is handed over.
    pub fn register_handler(&self, handler: impl Handler) -> HandlerId {
        let id = HandlerId(
            self.inner
                .next_handler
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        self.inner
            .shared
            .handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(handler));
        id
    }

    /// Unregisters a handler (Go `UnregisterHandler`). As in the Go host,
    /// unregistering the last handler of a running processor closes it.
    ///
    /// Cancellation: the handler is unregistered at once; dropping the
    /// future gives up only the wait for the close.
    pub async fn unregister_handler(&self, id: HandlerId) -> Result<(), Error> {
        let empty = {
            let mut h = self
                .inner
                .shared
                .handlers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            h.remove(&id);
            h.is_empty()
        };
        if empty && self.is_started() {
            return self.close().await;
        }
        Ok(())
    }

    /// The registered handlers (Go `RegisteredHandlerIDs`).
    pub fn registered_handler_ids(&self) -> Vec<HandlerId> {
        self.inner
            .shared
            .handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn is_started(&self) -> bool {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Starts balancing and processing in the background and returns (Go
    /// `StartNonBlocking`). Fails without a registered handler, or when
    /// already started.
    pub fn start(&self) -> Result<(), Error> {
        if self.registered_handler_ids().is_empty() {
            return Err(Error::invalid_input(
                "no handler is registered: register one before starting the processor",
            ));
        }
        let Some((commands, done)) = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Err(Error::invalid_input("the processor was already started"));
        };
        let mut core = Core::new(self.inner.config.clone())?;
        core.start(pump::now());
        let pump = Pump::new(
            self.inner.rt.clone(),
            core,
            self.inner.hub.clone(),
            self.inner.store.clone(),
            self.inner.shared.clone(),
            commands,
            done,
            self.inner.close_hub,
        );
        let span = tracing::info_span!("processor", owner = %self.inner.config.owner_id, hub = %self.inner.config.event_hub);
        self.inner
            .rt
            .spawn(Box::pin(tracing::Instrument::instrument(pump, span)))
            .map_err(Error::Runtime)
    }

    /// Starts and processes until the processor is closed (by
    /// [`close`](Self::close) elsewhere, or by unregistering the last
    /// handler). The Go host's blocking `Start` waits for SIGINT; use
    /// [`run_until`](Self::run_until) with the runtime's signal future
    /// for that.
    ///
    /// Cancellation: dropping the future leaves the processor running in
    /// the background; [`close`](Self::close) stops it.
    pub async fn run(&self) -> Result<(), Error> {
        self.start()?;
        self.done().await;
        Ok(())
    }

    /// Starts, processes until `signal` completes (e.g. `ctrl_c()`), then
    /// closes.
    ///
    /// Cancellation: as [`run`](Self::run); a close already begun goes on.
    pub async fn run_until(
        &self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        self.start()?;
        let done = self.done();
        futures_util::pin_mut!(signal);
        futures_util::pin_mut!(done);
        match futures_util::future::select(signal, done).await {
            futures_util::future::Either::Left(_) => self.close().await,
            futures_util::future::Either::Right(_) => Ok(()),
        }
    }

    /// The hub's partition ids (Go `GetPartitionIDs`): as the running
    /// processor knows them, else asked of the hub.
    ///
    /// Cancellation: as [`Hub::runtime_information`].
    pub async fn partition_ids(&self) -> Result<Vec<String>, Error> {
        let known = self.inner.shared.status().partition_ids.clone();
        if !known.is_empty() {
            return Ok(known);
        }
        Ok(self.inner.hub.runtime_information().await?.partition_ids)
    }

    /// Partitions this processor is receiving now (Go
    /// `PartitionIDsBeingProcessed`).
    pub fn partitions_being_processed(&self) -> Vec<String> {
        self.inner.shared.status().processing.clone()
    }

    /// Partitions this processor holds in the store now.
    pub fn owned_partitions(&self) -> Vec<String> {
        self.inner.shared.status().owned.clone()
    }

    /// What the processor asked of its store so far.
    pub fn stats(&self) -> ProcessorStats {
        self.inner.shared.status().stats
    }

    /// Stops gracefully per [`ProcessorOptions::stop`] and waits until it
    /// has (Go `Close`): receivers close, batches handed out finish,
    /// final checkpoints are written if asked, ownership is relinquished
    /// so that others take the partitions in their next cycle, and the hub
    /// is closed when the processor made it.
    ///
    /// Cancellation: the stop is asked for at once and goes on; dropping
    /// the future gives up only the wait.
    pub async fn close(&self) -> Result<(), Error> {
        self.stop(self.inner.stop).await
    }

    /// Stops gracefully with `options` and waits until it has.
    ///
    /// Cancellation: as [`close`](Self::close).
    pub async fn stop(&self, options: StopOptions) -> Result<(), Error> {
        if !self.is_started() {
            if self.inner.close_hub {
                self.inner.hub.close().await?;
            }
            return Ok(());
        }
        let _ = self
            .inner
            .shared
            .commands
            .unbounded_send(Command::Stop(options));
        self.done().await;
        Ok(())
    }

    /// Completes when the processor has stopped.
    pub fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let d = self.inner.done.clone();
        async move {
            let _ = d.await;
        }
    }
}
