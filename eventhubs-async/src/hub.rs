//! The public API, in the shape of the Go library's `Hub`: send, batched
//! send, receive with a handler or as a `Stream`, runtime information,
//! close. Generic over the [`Runtime`]; the adapters fix it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_channel::{mpsc, oneshot};
use futures_util::stream::{Stream, StreamExt};
use tracing::{debug, info_span, Instrument};

use eventhubs_proto::client::{
    Client, ClientOptions, Credential, EventData, HubRuntimeInformation,
    PartitionRuntimeInformation, ReceivedEvent, ReceiverId, ReceiverOptions, SendTarget,
};
use eventhubs_proto::codec::messaging::MessageId;
use eventhubs_proto::codec::Timestamp;
use eventhubs_proto::eventhubs::connection_string::{ConnectionString, Environment};
use eventhubs_proto::eventhubs::{EventPosition, RetryPolicy};

use crate::credentials::{HubEnvironment, SasTokenProvider, TokenProvider};
use crate::driver::{Command, Consumed, Driver, ReceiverMsg};
use crate::error::Error;
use crate::persist::{Checkpoint, CheckpointPersister, MemoryPersister};
use crate::runtime::Runtime;
use crate::transport::{TransportKind, TransportOptions};

/// Options of a [`Hub`] (the Go library's `HubOption`s).
#[derive(Clone)]
pub struct HubOptions {
    /// How to reach the service (TLS by default; plain TCP for the
    /// emulator; WebSocket; a custom endpoint; extra trusted roots).
    pub transport: TransportOptions,
    /// Send every event to this partition (`HubWithPartitionedSender`).
    pub partitioned_sender: Option<String>,
    /// Where receivers keep their position (`HubWithOffsetPersistence`);
    /// in memory by default.
    pub offset_persister: Arc<dyn CheckpointPersister>,
    /// Sent to the service in the connection's properties
    /// (`HubWithUserAgent`).
    pub user_agent: Option<String>,
    /// The Azure cloud, for namespaces given by short name
    /// (`HubWithEnvironment`).
    pub environment: Environment,
    /// Retries of operations, links and connections.
    pub retry: RetryPolicy,
    /// Time allowed to set up the transport (TCP, TLS, WebSocket), and
    /// then for the AMQP open.
    pub connect_timeout: Duration,
    /// Deadline of a send or information request, retries included.
    pub operation_timeout: Duration,
    /// Seed of retry jitter; by default drawn from the clock.
    pub seed: Option<u64>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            transport: TransportOptions::default(),
            partitioned_sender: None,
            offset_persister: Arc::new(MemoryPersister::new()),
            user_agent: None,
            environment: Environment::default(),
            retry: RetryPolicy::default(),
            connect_timeout: ClientOptions::DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: Duration::from_secs(60),
            seed: None,
        }
    }
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("transport", &self.transport)
            .field("partitioned_sender", &self.partitioned_sender)
            .field("user_agent", &self.user_agent)
            .field("environment", &self.environment)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

impl HubOptions {
    /// Uses WebSocket (over TLS) instead of AMQP over TCP
    /// (`HubWithWebSocketConnection`).
    pub fn with_websocket(mut self) -> Self {
        self.transport = self.transport.with_kind(TransportKind::WebSocket);
        self
    }
}

/// Options of one send.
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// Sets the event's message id (`SendWithMessageID`).
    pub message_id: Option<String>,
    /// Overrides [`HubOptions::operation_timeout`].
    pub timeout: Option<Duration>,
}

/// Options of a receiver (the Go library's `ReceiveOption`s).
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    /// Consumer group (`ReceiveWithConsumerGroup`); `$Default` by default.
    pub consumer_group: String,
    /// Where to start. `None` resumes after the persisted checkpoint, or,
    /// when there is none, starts at the client core's default
    /// ([`ReceiverOptions::DEFAULT_POSITION`]: the earliest event, as
    /// azure-event-hubs-go does).
    pub position: Option<EventPosition>,
    /// Owner level (`ReceiveWithEpoch`).
    pub epoch: Option<i64>,
    /// Events the service may send ahead (`ReceiveWithPrefetchCount`);
    /// 300 by default, at least 1.
    pub prefetch: u32,
    /// Identifier shown to the service (`ReceiveWithReceiverIdentifier`).
    pub identifier: Option<String>,
    /// Carry last-enqueued figures on every event.
    pub track_last_enqueued: bool,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            consumer_group: ReceiverOptions::DEFAULT_CONSUMER_GROUP.into(),
            position: None,
            epoch: None,
            prefetch: ReceiverOptions::DEFAULT_PREFETCH,
            identifier: None,
            track_last_enqueued: false,
        }
    }
}

impl ReceiveOptions {
    /// Only events enqueued from now on (`ReceiveWithLatestOffset`).
    pub fn latest(mut self) -> Self {
        self.position = Some(EventPosition::Latest);
        self
    }
    /// After `offset` (`ReceiveWithStartingOffset`).
    pub fn starting_offset(mut self, offset: impl Into<String>) -> Self {
        self.position = Some(EventPosition::offset(offset, false));
        self
    }
    /// From `sequence_number`, inclusive or not.
    pub fn sequence_number(mut self, sequence_number: i64, inclusive: bool) -> Self {
        self.position = Some(EventPosition::sequence_number(sequence_number, inclusive));
        self
    }
    /// From events enqueued after `unix_ms` (`ReceiveFromTimestamp`).
    pub fn from_timestamp(mut self, unix_ms: i64) -> Self {
        self.position = Some(EventPosition::enqueued_time(Timestamp(unix_ms), false));
        self
    }
    /// With consumer group `group`.
    pub fn consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = group.into();
        self
    }
    /// With owner level `epoch`.
    pub fn epoch(mut self, epoch: i64) -> Self {
        self.epoch = Some(epoch);
        self
    }
    /// With `prefetch` credits.
    pub fn prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = prefetch;
        self
    }
    /// With receiver identifier `id`.
    pub fn identifier(mut self, id: impl Into<String>) -> Self {
        self.identifier = Some(id.into());
        self
    }
    /// With last-enqueued tracking.
    pub fn track_last_enqueued(mut self) -> Self {
        self.track_last_enqueued = true;
        self
    }
}

/// The checkpoint of a received event: where to resume after it.
pub fn checkpoint_of(event: &ReceivedEvent) -> Checkpoint {
    Checkpoint::new(
        event.system.offset.clone(),
        event.system.sequence_number,
        Some(event.system.enqueued_time.millis()),
    )
}

/// `event.checkpoint()`, as the Go library's `Event.GetCheckpoint`.
pub trait EventCheckpoint {
    /// Where to resume after this event.
    fn checkpoint(&self) -> Checkpoint;
}

impl EventCheckpoint for ReceivedEvent {
    fn checkpoint(&self) -> Checkpoint {
        checkpoint_of(self)
    }
}

struct Inner<R: Runtime> {
    rt: R,
    host: String,
    name: String,
    /// Where sends go: the hub, or the partitioned sender's partition.
    target: SendTarget,
    commands: mpsc::UnboundedSender<Command>,
    options: HubOptions,
}

/// A client of one event hub (Go `eventhub.Hub`). Cheap to clone; the
/// connection closes when [`Hub::close`] is called or the last clone is
/// dropped.
pub struct Hub<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for Hub<R> {
    fn clone(&self) -> Self {
        Hub {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for Hub<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("host", &self.inner.host)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

fn seed_from_clock() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64).rotate_left(32)
}

impl<R: Runtime> Hub<R> {
    /// A hub `name` in `namespace` (a short name, completed with the
    /// environment's suffix, or a host name), authorised by `provider`
    /// (Go `NewHub`). Must be called within the runtime.
    pub fn new(
        namespace: &str,
        name: &str,
        provider: impl TokenProvider + 'static,
        options: HubOptions,
    ) -> Result<Self, Error> {
        if name.is_empty() {
            return Err(Error::InvalidOption("the event hub name is empty".into()));
        }
        let host = if namespace.contains('.') || namespace == "localhost" {
            namespace.to_owned()
        } else {
            options.environment.namespace_fqdn(namespace)?
        };
        Self::start(host, name.to_owned(), Arc::new(provider), options)
    }

    /// A hub from a connection string with an `EntityPath` (Go
    /// `NewHubFromConnectionString`). A `UseDevelopmentEmulator=true`
    /// string selects plain TCP on the endpoint's port.
    pub fn from_connection_string(
        connection_string: &str,
        mut options: HubOptions,
    ) -> Result<Self, Error> {
        let cs = ConnectionString::parse(connection_string)?;
        let name = cs.entity_path.clone().ok_or_else(|| {
            Error::InvalidOption(
                "the connection string has no EntityPath naming the event hub".into(),
            )
        })?;
        let provider = SasTokenProvider::from_credentials(cs.require_credentials()?)?;
        if !cs.use_tls() {
            options.transport = options
                .transport
                .with_kind(TransportKind::Plain)
                .with_port(cs.amqp_port());
        }
        Self::start(
            cs.fully_qualified_namespace.clone(),
            name,
            Arc::new(provider),
            options,
        )
    }

    /// A hub `name` in `namespace` with credentials from the environment:
    /// `EVENTHUB_KEY_NAME` and `EVENTHUB_KEY_VALUE`, or the key in
    /// `EVENTHUB_CONNECTION_STRING` (Go
    /// `NewHubWithNamespaceNameAndEnvironment`).
    pub fn with_environment_credentials(
        namespace: &str,
        name: &str,
        options: HubOptions,
    ) -> Result<Self, Error> {
        let provider = SasTokenProvider::from_process_env()?;
        Self::new(namespace, name, provider, options)
    }

    /// A hub from `EVENTHUB_CONNECTION_STRING`, or `EVENTHUB_NAMESPACE`,
    /// `EVENTHUB_NAME` with `EVENTHUB_KEY_NAME` and `EVENTHUB_KEY_VALUE`
    /// (Go `NewHubFromEnvironment`). With neither a key nor a connection
    /// string's credentials, Entra ID credentials from the `AZURE_*`
    /// variables ([`DefaultAzureCredential`](crate::identity::DefaultAzureCredential)).
    pub fn from_environment(options: HubOptions) -> Result<Self, Error> {
        let env = HubEnvironment::from_process_env()?;
        if env.credentials().is_some() {
            return Self::from_hub_environment(env, options);
        }
        let credential = crate::identity::DefaultAzureCredential::<R>::from_process_env(
            crate::identity::CredentialOptions::default(),
        )?;
        let options = HubOptions {
            environment: env.environment(),
            ..options
        };
        Self::start(
            env.fully_qualified_namespace().to_owned(),
            env.hub_name().to_owned(),
            Arc::new(credential),
            options,
        )
    }

    /// A hub from an already read [`HubEnvironment`].
    pub fn from_hub_environment(
        env: HubEnvironment,
        mut options: HubOptions,
    ) -> Result<Self, Error> {
        let provider = env.token_provider()?;
        if env.connection_string().is_some_and(|cs| !cs.use_tls()) {
            options.transport = env.transport_options();
        }
        options.environment = env.environment();
        Self::start(
            env.fully_qualified_namespace().to_owned(),
            env.hub_name().to_owned(),
            Arc::new(provider),
            options,
        )
    }

    fn start(
        host: String,
        name: String,
        provider: Arc<dyn TokenProvider>,
        options: HubOptions,
    ) -> Result<Self, Error> {
        let rt = R::default();
        let target = SendTarget::from_partition(options.partitioned_sender.clone())
            .map_err(|e| Error::InvalidOption(format!("the partitioned sender: {e}")))?;
        let mut co = ClientOptions::new(host.clone(), name.clone(), Credential::External);
        co.retry = options.retry;
        co.seed = options.seed.unwrap_or_else(seed_from_clock);
        co.user_agent = options.user_agent.clone();
        co.connect_timeout = options.connect_timeout;
        let client = Client::new(co)?;
        let (tx, rx) = mpsc::unbounded();
        let driver = Driver::new(rt.clone(), client, options.transport.clone(), provider, rx);
        let span = info_span!("eventhub", host = %host, hub = %name);
        rt.spawn(Box::pin(driver.instrument(span)))
            .map_err(Error::Spawn)?;
        Ok(Hub {
            inner: Arc::new(Inner {
                rt,
                host,
                name,
                target,
                commands: tx,
                options,
            }),
        })
    }

    /// The namespace host name.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The event hub name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn deadline(&self, timeout: Option<Duration>) -> Instant {
        Instant::now() + timeout.unwrap_or(self.inner.options.operation_timeout)
    }

    fn command(&self, c: Command) -> Result<(), Error> {
        self.inner
            .commands
            .unbounded_send(c)
            .map_err(|_| Error::Closed)
    }

    /// Sends one event (Go `Hub.Send`): to the partitioned sender's
    /// partition if set, else routed by its partition key or round-robin.
    /// Retries until the operation timeout.
    pub async fn send(&self, event: EventData) -> Result<(), Error> {
        self.send_with(event, SendOptions::default()).await
    }

    /// Sends one event with options.
    pub async fn send_with(&self, mut event: EventData, options: SendOptions) -> Result<(), Error> {
        if let Some(id) = options.message_id {
            event.message_id = Some(MessageId::String(id.into()));
        }
        self.send_events(vec![event], options.timeout).await
    }

    /// Sends many events in as few transfers as the link allows, grouped
    /// by partition key (Go `Hub.SendBatch` with a `BatchIterator`).
    pub async fn send_batch(
        &self,
        events: impl IntoIterator<Item = EventData>,
    ) -> Result<(), Error> {
        let events: Vec<EventData> = events.into_iter().collect();
        if events.is_empty() {
            return Ok(());
        }
        self.send_events(events, None).await
    }

    async fn send_events(
        &self,
        events: Vec<EventData>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Send {
            events,
            target: self.inner.target.clone(),
            deadline: self.deadline(timeout),
            reply,
        })?;
        rx.await.map_err(|_| Error::Closed)?.map_err(Error::from)
    }

    /// Hub runtime information (Go `GetRuntimeInformation`).
    pub async fn runtime_information(&self) -> Result<HubRuntimeInformation, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::HubInfo {
            deadline: self.deadline(None),
            reply,
        })?;
        rx.await.map_err(|_| Error::Closed)?.map_err(Error::from)
    }

    /// One partition's runtime information (Go
    /// `GetPartitionInformation`).
    pub async fn partition_information(
        &self,
        partition_id: &str,
    ) -> Result<PartitionRuntimeInformation, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::PartitionInfo {
            partition: partition_id.to_owned(),
            deadline: self.deadline(None),
            reply,
        })?;
        rx.await.map_err(|_| Error::Closed)?.map_err(Error::from)
    }

    /// Opens a receiver on `partition_id` as a [`Stream`] of events. Returns
    /// once the service accepted the receiver.
    pub async fn receiver(
        &self,
        partition_id: &str,
        options: ReceiveOptions,
    ) -> Result<EventStream, Error> {
        let position = match options.position.clone() {
            Some(p) => Some(p),
            None => {
                let persisted = self.inner.options.offset_persister.read(
                    &self.inner.host,
                    &self.inner.name,
                    &options.consumer_group,
                    partition_id,
                )?;
                persisted.map(|c| c.resume_position())
            }
        };
        let mut ro = ReceiverOptions::new(partition_id)
            .consumer_group(options.consumer_group.clone())
            .prefetch(options.prefetch)
            .track_last_enqueued(options.track_last_enqueued);
        if let Some(position) = position {
            ro = ro.position(position);
        }
        if let Some(epoch) = options.epoch {
            ro = ro.owner_level(epoch);
        }
        if let Some(id) = &options.identifier {
            ro = ro.identifier(id.clone());
        }
        let (events, events_rx) = mpsc::unbounded();
        let consumed: Consumed = Arc::new(AtomicU32::new(0));
        let (reply, rx) = oneshot::channel();
        self.command(Command::OpenReceiver {
            options: ro,
            events,
            consumed: consumed.clone(),
            reply,
        })?;
        let id = rx.await.map_err(|_| Error::Closed)??;
        let mut stream = EventStream {
            id,
            commands: self.inner.commands.clone(),
            events: events_rx,
            consumed,
            finished: false,
            first: None,
        };
        // Wait for the attach (or its refusal).
        match stream.events.next().await {
            Some(ReceiverMsg::Opened) => Ok(stream),
            Some(ReceiverMsg::Closed(Some(e))) => Err(e.into()),
            Some(ReceiverMsg::Closed(None)) | None => Err(Error::Closed),
            // The core announces a receiver before its first event; should
            // an event come first all the same, it is kept, not lost.
            Some(ReceiverMsg::Event(e)) => {
                stream.first = Some(e);
                Ok(stream)
            }
        }
    }

    /// Receives from `partition_id`, calling `handler` for each event in
    /// order (Go `Hub.Receive`). After the handler succeeds, the event's
    /// checkpoint is written to the offset persister, so a later receive
    /// without a start position resumes after it. The listener stops when
    /// the handler fails, the receiver fails, or the handle is closed.
    pub async fn receive<H, F, E>(
        &self,
        partition_id: &str,
        mut handler: H,
        options: ReceiveOptions,
    ) -> Result<ListenerHandle, Error>
    where
        H: FnMut(ReceivedEvent) -> F + Send + 'static,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let group = options.consumer_group.clone();
        let mut stream = self.receiver(partition_id, options).await?;
        let persister = self.inner.options.offset_persister.clone();
        let (host, name, partition) = (
            self.inner.host.clone(),
            self.inner.name.clone(),
            partition_id.to_owned(),
        );
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let err = Arc::new(Mutex::new(None));
        let err2 = err.clone();
        let task = async move {
            let result: Result<(), Error> = loop {
                let next = futures_util::future::select(stream.next(), &mut stop_rx).await;
                let item = match next {
                    futures_util::future::Either::Left((item, _)) => item,
                    futures_util::future::Either::Right(_) => break Ok(()),
                };
                match item {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(e),
                    Some(Ok(event)) => {
                        let cp = checkpoint_of(&event);
                        if let Err(e) = handler(event).await {
                            break Err(Error::Handler(e.to_string()));
                        }
                        if let Err(e) = persister.write(&host, &name, &group, &partition, &cp) {
                            break Err(e.into());
                        }
                    }
                }
            };
            if let Err(e) = result {
                debug!(error = %e, "listener stopped");
                *err2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
            drop(stream);
            let _ = done_tx.send(());
        };
        self.inner.rt.spawn(Box::pin(task)).map_err(Error::Spawn)?;
        Ok(ListenerHandle {
            stop: Mutex::new(Some(stop_tx)),
            done: futures_util::future::FutureExt::shared(done_rx),
            err,
        })
    }

    /// Closes the hub (Go `Hub.Close`): receivers stop, sends in progress
    /// finish (until the operation timeout), then the connection closes.
    pub async fn close(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        if self
            .command(Command::Close {
                deadline: self.deadline(None),
                reply,
            })
            .is_err()
        {
            return Ok(());
        }
        let _ = rx.await;
        Ok(())
    }
}

/// The events of one partition receiver, as a [`Stream`]. Dropping it
/// closes the receiver. Each event taken is reported to the client core,
/// which decides when to give the service credit for more.
pub struct EventStream {
    id: ReceiverId,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<ReceiverMsg>,
    /// Events taken that the driver has not collected yet.
    consumed: Consumed,
    finished: bool,
    /// An event that arrived while waiting for the attach.
    first: Option<Box<ReceivedEvent>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("receiver", &self.id.0)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// Counts one event taken; the driver hears of it when the count
    /// leaves zero, and collects the count when it runs.
    fn took_one(&self) {
        if self.consumed.fetch_add(1, Ordering::AcqRel) == 0 {
            let _ = self
                .commands
                .unbounded_send(Command::Consumed { receiver: self.id });
        }
    }
}

impl Stream for EventStream {
    type Item = Result<ReceivedEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.first.take() {
            self.took_one();
            return Poll::Ready(Some(Ok(*e)));
        }
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match self.events.poll_next_unpin(cx) {
                Poll::Ready(Some(ReceiverMsg::Event(e))) => {
                    self.took_one();
                    return Poll::Ready(Some(Ok(*e)));
                }
                Poll::Ready(Some(ReceiverMsg::Opened)) => continue,
                Poll::Ready(Some(ReceiverMsg::Closed(e))) => {
                    self.finished = true;
                    return Poll::Ready(e.map(|e| Err(e.into())));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self
                .commands
                .unbounded_send(Command::CloseReceiver { receiver: self.id });
        }
    }
}

/// Controls a listener started by [`Hub::receive`] (Go `ListenerHandle`).
pub struct ListenerHandle {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    done: futures_util::future::Shared<oneshot::Receiver<()>>,
    err: Arc<Mutex<Option<Error>>>,
}

impl std::fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHandle").finish_non_exhaustive()
    }
}

impl ListenerHandle {
    /// Stops the listener and waits until it has stopped; returns the
    /// error that stopped it earlier, if any.
    pub async fn close(&self) -> Result<(), Error> {
        if let Some(s) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = s.send(());
        }
        let _ = self.done.clone().await;
        match self.err.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Completes when the listener has stopped, for whatever reason.
    pub fn done(&self) -> impl Future<Output = ()> + Send + 'static {
        let d = self.done.clone();
        async move {
            let _ = d.await;
        }
    }

    /// The error that stopped the listener, once it has stopped with one.
    pub fn err(&self) -> Option<String> {
        self.err
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(ToString::to_string)
    }
}
