//! [`Hub`]: the client of one event hub, in the shape of the Go library's
//! `Hub`: send (to the hub, a partition or by key, all on one
//! connection), batches, receive with a handler or as a `Stream`, runtime
//! information, close. Generic over the [`Runtime`]; the adapters fix it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::{mpsc, oneshot};
use tracing::{info_span, Instrument};

use std::collections::BTreeMap;

use eventhubs_proto::client::{
    Client, ClientOptions, Credential, EventData, HubRuntimeInformation, PartitionPublishingState,
    PartitionRuntimeInformation, ReceivedEvent, ReceiverOptions, SendTarget,
};
use eventhubs_proto::eventhubs::connection_string::ConnectionString;

use crate::batch::EventDataBatch;
use crate::credentials::{HubEnvironment, SasTokenProvider, TokenProvider};
use crate::driver::{Answer, Command, Consumed, Driver, Ticket};
use crate::error::{BoxError, Error};
use crate::listener::{self, ListenerHandle};
use crate::options::{BatchOptions, HubOptions, ReceiveOptions, SendOptions};
use crate::runtime::Runtime;
use crate::stream::{CheckpointTarget, EventStream, Sleeper};
use crate::transport::TransportKind;

struct Inner<R: Runtime> {
    rt: R,
    host: String,
    name: String,
    /// Where sends go by default: the hub, or the partitioned sender's
    /// partition.
    target: SendTarget,
    commands: mpsc::UnboundedSender<Command>,
    options: HubOptions,
    tickets: AtomicU64,
}

/// A client of one event hub (Go `eventhub.Hub`): one AMQP connection,
/// opened when first needed, carrying every send (whatever its partition
/// or key), receiver and information request, with retries and recovery.
///
/// Cheap to clone (clones share the connection), `Send` and `Sync`. The
/// connection closes when [`Hub::close`] is called, or when the last clone
/// is dropped (sends in progress get a grace period of 30 s).
///
/// Every async method documents what dropping its future does.
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

/// Sends [`Command::Cancel`] for its ticket when dropped before
/// [`disarm`](Self::disarm): a future given up cancels its request.
struct CancelOnDrop<'a> {
    ticket: Ticket,
    commands: &'a mpsc::UnboundedSender<Command>,
    armed: bool,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.unbounded_send(Command::Cancel {
                ticket: self.ticket,
            });
        }
    }
}

impl<R: Runtime> Hub<R> {
    /// A hub `name` in `namespace` (a short name, completed with the
    /// environment's suffix, or a host name), authorised by `provider`
    /// (Go `NewHub`): a [`SasTokenProvider`] or an Entra ID credential
    /// ([`identity`](crate::identity)).
    ///
    /// It must be called within the runtime, unless the options give one
    /// ([`HubOptions::with_runtime`]); outside, it fails with
    /// [`Error::Runtime`] saying so.
    pub fn new(
        namespace: &str,
        name: &str,
        provider: impl TokenProvider + 'static,
        options: HubOptions,
    ) -> Result<Self, Error> {
        if name.is_empty() {
            return Err(Error::invalid_input("the event hub name is empty"));
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
            Error::invalid_input("the connection string has no EntityPath naming the event hub")
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
        let options = options.with_environment(env.environment());
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
        let rt: R = options.runtime()?;
        let target = SendTarget::from_partition(options.partitioned_sender.clone())
            .map_err(|e| Error::invalid_input(format!("the partitioned sender: {e}")))?;
        let mut co = ClientOptions::new(host.clone(), name.clone(), Credential::External);
        co.retry = options.retry;
        co.seed = options.seed.unwrap_or_else(seed_from_clock);
        co.user_agent = options.user_agent.clone();
        co.connect_timeout = options.connect_timeout;
        co.idempotent_publishing = options.idempotent_publishing;
        co.partition_publishing = options.partition_publishing.clone();
        let client = Client::new(co)?;
        let (tx, rx) = mpsc::unbounded();
        let driver = Driver::new(rt.clone(), client, options.transport.clone(), provider, rx);
        let span = info_span!("eventhub", host = %host, hub = %name);
        rt.spawn(Box::pin(driver.instrument(span)))
            .map_err(Error::Runtime)?;
        Ok(Hub {
            inner: Arc::new(Inner {
                rt,
                host,
                name,
                target,
                commands: tx,
                options,
                tickets: AtomicU64::new(1),
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

    /// The runtime the hub's task runs on.
    pub(crate) fn runtime(&self) -> &R {
        &self.inner.rt
    }

    /// The options the hub was made with.
    pub fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    fn deadline(&self, timeout: Option<Duration>) -> Instant {
        Instant::now() + timeout.unwrap_or(self.inner.options.operation_timeout)
    }

    fn ticket(&self) -> Ticket {
        self.inner.tickets.fetch_add(1, Ordering::Relaxed)
    }

    fn command(&self, c: Command) -> Result<(), Error> {
        self.inner
            .commands
            .unbounded_send(c)
            .map_err(|_| Error::Closed)
    }

    /// Sends the command `make` builds and waits for its answer; dropping
    /// the future cancels the request ([`Command::Cancel`]).
    async fn request<T>(
        &self,
        make: impl FnOnce(Ticket, Answer<T>) -> Command,
    ) -> Result<T, Error> {
        let ticket = self.ticket();
        let (tx, rx) = oneshot::channel();
        self.command(make(ticket, tx))?;
        let guard = CancelOnDrop {
            ticket,
            commands: &self.inner.commands,
            armed: true,
        };
        let answer = rx.await;
        guard.disarm();
        answer.map_err(|_| Error::Closed)?
    }

    /// Where a send with `options` goes, and its events with the options'
    /// partition key.
    fn route(&self, events: &mut [EventData], options: &SendOptions) -> Result<SendTarget, Error> {
        if options.partition_id.is_some() && options.partition_key.is_some() {
            return Err(Error::invalid_input(
                "a send cannot name both a partition id and a partition key",
            ));
        }
        if let Some(key) = &options.partition_key {
            for e in events.iter_mut() {
                match &e.partition_key {
                    None => e.partition_key = Some(key.clone()),
                    Some(k) if k == key => {}
                    Some(k) => {
                        return Err(Error::invalid_input(format!(
                            "an event has partition key {k:?}, the send options {key:?}"
                        )))
                    }
                }
            }
            return Ok(SendTarget::Hub);
        }
        match &options.partition_id {
            Some(p) => Ok(SendTarget::partition(p.clone())?),
            None => Ok(self.inner.target.clone()),
        }
    }

    /// Sends one event (Go `Hub.Send`) where the hub sends: to the
    /// partitioned sender's partition if set, else routed by the event's
    /// partition key or round-robin. Retries until the operation timeout.
    ///
    /// Cancellation: if the future is dropped before the event was handed
    /// to the connection, the send is cancelled and the event is not
    /// published. Once it has been handed over, it is delivered in the
    /// background (or fails by its deadline), and the outcome is dropped.
    pub async fn send(&self, event: EventData) -> Result<(), Error> {
        self.send_with(event, SendOptions::default()).await
    }

    /// Sends one event with `options`: to a partition or by partition key
    /// (on the hub's one connection), and with its own timeout.
    ///
    /// Cancellation: as [`send`](Self::send).
    pub async fn send_with(&self, event: EventData, options: SendOptions) -> Result<(), Error> {
        self.send_batch_with([event], options).await
    }

    /// Sends many events in as few transfers as the link allows, grouped
    /// by partition key (Go `Hub.SendBatch` with its `BatchIterator`).
    /// Completes once all are accepted.
    ///
    /// Cancellation: if the future is dropped before any of its transfers
    /// was handed to the connection, none of the events is published. Once
    /// one has been handed over, every transfer is delivered in the
    /// background (or fails by the deadline), so that a batch is not cut
    /// short by a dropped future; the outcome is dropped.
    pub async fn send_batch(
        &self,
        events: impl IntoIterator<Item = EventData>,
    ) -> Result<(), Error> {
        self.send_batch_with(events, SendOptions::default()).await
    }

    /// Sends many events with `options` (partition id, partition key,
    /// timeout).
    ///
    /// Cancellation: as [`send_batch`](Self::send_batch).
    pub async fn send_batch_with(
        &self,
        events: impl IntoIterator<Item = EventData>,
        options: SendOptions,
    ) -> Result<(), Error> {
        let mut events: Vec<EventData> = events.into_iter().collect();
        if events.is_empty() {
            return Ok(());
        }
        let target = self.route(&mut events, &options)?;
        let deadline = self.deadline(options.timeout);
        self.request(|ticket, reply| Command::Send {
            ticket,
            events,
            target,
            deadline,
            reply,
        })
        .await
    }

    /// An empty [`EventDataBatch`] for the destination `options` name (the
    /// hub's default one otherwise), bounded by the sender link's
    /// max-message-size: the link is attached first (on the hub's
    /// connection) to learn it.
    ///
    /// Cancellation: dropping the future gives up the wait; the link, once
    /// attached, stays for later sends.
    pub async fn create_batch(&self, options: BatchOptions) -> Result<EventDataBatch, Error> {
        if options.partition_id.is_some() && options.partition_key.is_some() {
            return Err(Error::invalid_input(
                "a batch cannot be for both a partition id and a partition key",
            ));
        }
        let target = match (&options.partition_id, &options.partition_key) {
            (Some(p), _) => SendTarget::partition(p.clone())?,
            (None, Some(_)) => SendTarget::Hub,
            (None, None) => self.inner.target.clone(),
        };
        let deadline = self.deadline(None);
        let link_max = self
            .request(|ticket, reply| Command::OpenSender {
                ticket,
                target: target.clone(),
                deadline,
                reply,
            })
            .await?;
        let link_max = usize::try_from(link_max).unwrap_or(usize::MAX);
        let max = options.max_size.map_or(link_max, |m| m.min(link_max));
        Ok(EventDataBatch::new(target, options.partition_key, max))
    }

    /// Sends `batch` as one transfer to the destination it was made for.
    ///
    /// Cancellation: if the future is dropped before the transfer was
    /// handed to the connection, nothing is published; after, the batch is
    /// delivered in the background and the outcome dropped.
    pub async fn send_event_batch(&self, batch: EventDataBatch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let (batch, target) = batch.into_parts();
        let deadline = self.deadline(None);
        let batch = Box::new(batch);
        self.request(|ticket, reply| Command::SendBatch {
            ticket,
            batch,
            target,
            deadline,
            reply,
        })
        .await
    }

    /// Sends `events`, routed on the client to `partition_id` (their keys
    /// kept, events of different keys sharing transfers): the buffered
    /// producer's sends.
    pub(crate) async fn send_routed(
        &self,
        events: Vec<EventData>,
        partition_id: String,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let deadline = self.deadline(timeout);
        self.request(|ticket, reply| Command::SendRouted {
            ticket,
            events,
            partition: partition_id,
            deadline,
            reply,
        })
        .await
    }

    /// The max-message-size of the sender link of partition
    /// `partition_id`, attached first if it is not.
    pub(crate) async fn partition_link_limit(&self, partition_id: &str) -> Result<u64, Error> {
        let target = SendTarget::partition(partition_id.to_owned())?;
        let deadline = self.deadline(None);
        self.request(|ticket, reply| Command::OpenSender {
            ticket,
            target,
            deadline,
            reply,
        })
        .await
    }

    /// The idempotent publishing state of partition `partition_id`
    /// ([`HubOptions::with_idempotent_publishing`]): the producer group id,
    /// owner level and the last sequence number the service accepted (or
    /// reported when the partition's link attached). `None` before the
    /// partition's sender has attached, or with idempotent publishing off.
    ///
    /// Save it when the process stops and give it back with
    /// [`HubOptions::with_partition_publishing`] and
    /// [`PartitionPublishingOptions::from_state`](crate::PartitionPublishingOptions::from_state)
    /// to continue the numbering. It is read between sends: a send in
    /// flight may move it on.
    ///
    /// Cancellation: nothing to cancel; dropping the future gives up the
    /// wait for the answer.
    pub async fn partition_publishing_state(
        &self,
        partition_id: &str,
    ) -> Result<Option<PartitionPublishingState>, Error> {
        Ok(self
            .partition_publishing_states()
            .await?
            .remove(partition_id))
    }

    /// The idempotent publishing state of every partition published to,
    /// by partition id ([`partition_publishing_state`](Self::partition_publishing_state)).
    ///
    /// Cancellation: as [`partition_publishing_state`](Self::partition_publishing_state).
    pub async fn partition_publishing_states(
        &self,
    ) -> Result<BTreeMap<String, PartitionPublishingState>, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::PublishingStates { reply })?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Hub runtime information: partition ids, creation time (Go
    /// `GetRuntimeInformation`).
    ///
    /// Cancellation: dropping the future cancels the request; a response
    /// that arrives later is ignored.
    pub async fn runtime_information(&self) -> Result<HubRuntimeInformation, Error> {
        let deadline = self.deadline(None);
        self.request(|ticket, reply| Command::HubInfo {
            ticket,
            deadline,
            reply,
        })
        .await
    }

    /// One partition's runtime information: its sequence numbers, last
    /// offset and time (Go `GetPartitionInformation`).
    ///
    /// Cancellation: as [`runtime_information`](Self::runtime_information).
    pub async fn partition_information(
        &self,
        partition_id: &str,
    ) -> Result<PartitionRuntimeInformation, Error> {
        let deadline = self.deadline(None);
        let partition = partition_id.to_owned();
        self.request(|ticket, reply| Command::PartitionInfo {
            ticket,
            partition,
            deadline,
            reply,
        })
        .await
    }

    fn checkpoint_target(&self, consumer_group: &str, partition_id: &str) -> CheckpointTarget {
        CheckpointTarget {
            persister: self.inner.options.persister.clone(),
            namespace: self.inner.host.clone(),
            hub: self.inner.name.clone(),
            consumer_group: consumer_group.to_owned(),
            partition_id: partition_id.to_owned(),
        }
    }

    /// Opens a receiver on `partition_id` as a [`Stream`](futures_util::Stream)
    /// of events. Returns once the service has accepted it (its partition,
    /// consumer group and owner level). Without a start position it
    /// resumes after the checkpoint persisted for its consumer group and
    /// partition, or starts at the earliest event.
    ///
    /// Cancellation: dropping the future before it returns closes the
    /// receiver: its link, if attached, is detached.
    pub async fn receiver(
        &self,
        partition_id: &str,
        options: ReceiveOptions,
    ) -> Result<EventStream, Error> {
        let checkpoints = self.checkpoint_target(&options.consumer_group, partition_id);
        let position = match options.position.clone() {
            Some(p) => Some(p),
            None => checkpoints
                .persister
                .read(
                    &checkpoints.namespace,
                    &checkpoints.hub,
                    &checkpoints.consumer_group,
                    &checkpoints.partition_id,
                )
                .await?
                .map(|c| c.resume_position()),
        };
        let mut ro = ReceiverOptions::new(partition_id)
            .consumer_group(options.consumer_group.clone())
            .prefetch(options.prefetch)
            .track_last_enqueued(options.track_last_enqueued);
        if let Some(position) = position {
            ro = ro.position(position);
        }
        if let Some(level) = options.owner_level {
            ro = ro.owner_level(level);
        }
        if let Some(id) = &options.identifier {
            ro = ro.identifier(id.clone());
        }
        let (events, events_rx) = mpsc::unbounded();
        let consumed: Consumed = Arc::new(AtomicU32::new(0));
        let ticket = self.ticket();
        self.command(Command::OpenReceiver {
            ticket,
            options: ro,
            events,
            consumed: consumed.clone(),
        })?;
        let rt = self.inner.rt.clone();
        let sleep: Sleeper = Arc::new(move |d| rt.sleep(d));
        // From here on, dropping the stream (or this future) closes the
        // receiver.
        let mut stream = EventStream {
            ticket,
            commands: self.inner.commands.clone(),
            events: events_rx,
            consumed,
            finished: false,
            buffered: VecDeque::new(),
            checkpoints,
            sleep,
            close_timeout: self.inner.options.operation_timeout,
        };
        stream.opened().await?;
        Ok(stream)
    }

    /// Receives from `partition_id`, calling `handler` for each event in
    /// order (Go `Hub.Receive`). Returns once the receiver is open.
    ///
    /// Checkpoints of handled events go to the hub's persister at the
    /// options' [`CheckpointCadence`](crate::CheckpointCadence) (by
    /// default every 1,000 events or 5 s), written by a task of their own
    /// while the handler goes on, and always when the listener stops, so a
    /// later receive without a start position resumes after the last event
    /// handled.
    ///
    /// The listener stops when the handler fails (its error is kept,
    /// downcastable, as [`Error::Handler`]), when the receiver fails, when
    /// a checkpoint cannot be written, when the handle is closed or when
    /// the hub closes.
    ///
    /// Cancellation: dropping the future before it returns closes the
    /// receiver (its link is detached); no listener is started.
    pub async fn receive<H, F, E>(
        &self,
        partition_id: &str,
        handler: H,
        options: ReceiveOptions,
    ) -> Result<ListenerHandle, Error>
    where
        H: FnMut(ReceivedEvent) -> F + Send + 'static,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let cadence = options.cadence;
        let stream = self.receiver(partition_id, options).await?;
        listener::spawn(&self.inner.rt, stream, handler, cadence)
    }

    /// Closes the hub (Go `Hub.Close`): receivers stop, sends in progress
    /// finish (until the operation timeout), then the connection closes.
    /// Every clone of the hub is closed.
    ///
    /// Cancellation: dropping the future before it completes still closes
    /// the hub; only the wait is given up.
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

/// Compile-time checks: the handles and the futures of their methods can
/// move between threads, and the shared handles can be shared.
#[allow(dead_code, clippy::extra_unused_type_parameters)]
fn send_and_sync<R: Runtime>(hub: &Hub<R>, stream: &EventStream, handle: &ListenerHandle) {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Sync>(_: &T) {}
    fn both<T: Send + Sync>(_: &T) {}
    both(hub);
    both(handle);
    send(stream);
    both(&HubOptions::new());
    both(&ReceiveOptions::new());
    both(&SendOptions::new());
    send(&hub.send(EventData::new("")));
    send(&hub.send_with(EventData::new(""), SendOptions::new()));
    send(&hub.send_batch(Vec::new()));
    send(&hub.send_batch_with(Vec::new(), SendOptions::new()));
    send(&hub.create_batch(BatchOptions::new()));
    send(&hub.runtime_information());
    send(&hub.partition_publishing_state("0"));
    send(&hub.partition_publishing_states());
    send(&hub.partition_information("0"));
    send(&hub.receiver("0", ReceiveOptions::new()));
    send(&hub.receive(
        "0",
        |_| async { Ok::<(), std::io::Error>(()) },
        ReceiveOptions::new(),
    ));
    send(&hub.close());
    send(&handle.close());
    send(&handle.done());
    sync(&handle.done());
    send(&stream.checkpoint(&ReceivedEvent::default()));
    fn batch(b: &EventDataBatch) {
        both(b);
    }
    let _ = batch;
    fn stream_close(s: EventStream) {
        send(&s.close());
    }
    let _ = stream_close;
    let _ = Error::Closed;
    send(&Error::Closed);
    sync(&Error::Closed);
}
