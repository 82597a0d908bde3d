//! Checkpoint persistence: the Go library's `persist` package.
//!
//! A [`Checkpoint`] records how far a consumer got in one partition (the
//! offset, sequence number and enqueued time of the last event it
//! processed), keyed by namespace, hub, consumer group and partition. A
//! [`CheckpointPersister`] stores them; a receiver resumes after the stored
//! one ([`Checkpoint::resume_position`]).
//!
//! - [`MemoryPersister`]: a map in memory (the Go `Hub` default).
//! - [`FilePersister`]: one small JSON file per partition in a directory,
//!   replaced atomically; a file that cannot be read or parsed is an error
//!   naming it, never a silent restart from the beginning of the stream.
//!   Its file I/O runs through [`Runtime::spawn_blocking`], never on the
//!   executor.
//! - [`StorePersister`]: checkpoints in a [`CheckpointStore`] such as
//!   [`BlobCheckpointStore`](crate::BlobCheckpointStore) (Azure Blob
//!   Storage, in the layout every Event Hubs SDK shares: the Go library's
//!   `CheckpointPersister` over Blob Storage).
//!
//! The trait is async and dyn-compatible: its methods return boxed
//! futures, so a hub holds any persister as `Arc<dyn CheckpointPersister>`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventhubs_proto::checkpoint::PartitionCheckpoint;
use eventhubs_proto::eventhubs::EventPosition;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint_store::{CheckpointStore, StoreError};
use crate::runtime::{blocking, Runtime};

/// What a [`CheckpointPersister`] method returns.
pub type PersistFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PersistError>> + Send + 'a>>;

/// The offset before the first event of a partition (Go `StartOfStream`).
pub const START_OF_STREAM: &str = "-1";

/// The offset after the last event of a partition (Go `EndOfStream`).
pub const END_OF_STREAM: &str = "@latest";

/// How far a consumer got in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `x-opt-offset` of the last event processed (a string: opaque on
    /// geo-replicated hubs), or [`START_OF_STREAM`] / [`END_OF_STREAM`].
    pub offset: String,
    /// `x-opt-sequence-number` of that event; -1 for the sentinels.
    pub sequence_number: i64,
    /// `x-opt-enqueued-time` of that event, milliseconds since the Unix
    /// epoch, as the service stamps it.
    pub enqueued_time_unix_ms: Option<i64>,
}

impl Checkpoint {
    /// A checkpoint at the event with this offset, sequence number and
    /// enqueued time.
    pub fn new(
        offset: impl Into<String>,
        sequence_number: i64,
        enqueued_time_unix_ms: Option<i64>,
    ) -> Self {
        Checkpoint {
            offset: offset.into(),
            sequence_number,
            enqueued_time_unix_ms,
        }
    }

    /// Before the first event (Go `NewCheckpointFromStartOfStream`).
    pub fn start_of_stream() -> Self {
        Checkpoint::new(START_OF_STREAM, -1, None)
    }

    /// After the last event (Go `NewCheckpointFromEndOfStream`).
    pub fn end_of_stream() -> Self {
        Checkpoint::new(END_OF_STREAM, -1, None)
    }

    /// Whether this is [`Checkpoint::start_of_stream`]'s offset.
    pub fn is_start_of_stream(&self) -> bool {
        self.offset == START_OF_STREAM
    }

    /// The enqueued time as a [`SystemTime`].
    pub fn enqueued_time(&self) -> Option<SystemTime> {
        let ms = self.enqueued_time_unix_ms?;
        let magnitude = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// Where a receiver resumes: after this event (offset, exclusive), or
    /// from the start or the end for the sentinels.
    pub fn resume_position(&self) -> EventPosition {
        match self.offset.as_str() {
            START_OF_STREAM => EventPosition::Earliest,
            END_OF_STREAM => EventPosition::Latest,
            offset => EventPosition::offset(offset, false),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.offset.is_empty() {
            return Err("the offset is empty".into());
        }
        Ok(())
    }
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint::start_of_stream()
    }
}

/// Why a checkpoint could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The checkpoint directory could not be created or opened.
    #[error("cannot create checkpoint directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint file exists but could not be read.
    #[error("cannot read checkpoint file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint file was read but does not hold a valid checkpoint for
    /// the partition asked for. Resuming from the start would re-deliver
    /// the whole partition, so this is reported instead; remove the file to
    /// start over deliberately.
    #[error(
        "checkpoint file {path} is corrupt ({reason}); remove it to start this partition over"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint file could not be written.
    #[error("cannot write checkpoint file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The checkpoint given to `write` is not valid.
    #[error("invalid checkpoint: {reason}")]
    InvalidCheckpoint {
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint store ([`StorePersister`]) failed.
    #[error("checkpoint store failed: {0}")]
    Store(#[source] StoreError),
    /// The runtime could not run the blocking file I/O.
    #[error("cannot run checkpoint file I/O: {0}")]
    Runtime(#[source] io::Error),
    /// A failure of a caller-defined store.
    #[error("checkpoint store failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Stores checkpoints by namespace, hub, consumer group and partition
/// (Go `persist.CheckpointPersister`, whose `Write` and `Read` it keeps).
///
/// The methods return boxed futures, so the trait is dyn-compatible and a
/// hub holds any persister as `Arc<dyn CheckpointPersister>`. An
/// implementation MUST NOT block in its futures: blocking work (files, a
/// synchronous database client) goes through
/// [`Runtime::spawn_blocking`], as [`FilePersister`] does.
///
/// ```
/// use eventhubs_async::{Checkpoint, CheckpointPersister, MemoryPersister};
///
/// # futures_util::FutureExt::now_or_never(async {
/// let p = MemoryPersister::new();
/// p.write("ns", "hub", "$Default", "0", &Checkpoint::new("4096", 12, None)).await?;
/// let cp = p.read("ns", "hub", "$Default", "0").await?.expect("written");
/// assert_eq!(cp.sequence_number, 12);
/// # Ok::<(), eventhubs_async::PersistError>(())
/// # }).unwrap().unwrap();
/// ```
pub trait CheckpointPersister: Send + Sync {
    /// Records `checkpoint` for the partition, replacing any earlier one.
    fn write<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> PersistFuture<'a, ()>;

    /// The last checkpoint written for the partition, `None` when there is
    /// none.
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
    ) -> PersistFuture<'a, Option<Checkpoint>>;
}

/// Persisters behind a smart pointer are persisters.
macro_rules! forward_persister {
    ($($ptr:ident),*) => {$(
        impl<P: CheckpointPersister + ?Sized> CheckpointPersister for $ptr<P> {
            fn write<'a>(
                &'a self,
                namespace: &'a str,
                hub: &'a str,
                consumer_group: &'a str,
                partition_id: &'a str,
                checkpoint: &'a Checkpoint,
            ) -> PersistFuture<'a, ()> {
                (**self).write(namespace, hub, consumer_group, partition_id, checkpoint)
            }

            fn read<'a>(
                &'a self,
                namespace: &'a str,
                hub: &'a str,
                consumer_group: &'a str,
                partition_id: &'a str,
            ) -> PersistFuture<'a, Option<Checkpoint>> {
                (**self).read(namespace, hub, consumer_group, partition_id)
            }
        }
    )*};
}

forward_persister!(Arc, Box);

type Key = (String, String, String, String);

fn key(namespace: &str, hub: &str, consumer_group: &str, partition_id: &str) -> Key {
    (
        namespace.to_owned(),
        hub.to_owned(),
        consumer_group.to_owned(),
        partition_id.to_owned(),
    )
}

/// Checkpoints in memory, lost with the process (Go `NewMemoryPersister`).
#[derive(Debug, Default)]
pub struct MemoryPersister {
    values: Mutex<HashMap<Key, Checkpoint>>,
}

impl MemoryPersister {
    /// An empty store.
    pub fn new() -> Self {
        MemoryPersister::default()
    }
}

impl MemoryPersister {
    fn write_now(&self, key: Key, checkpoint: &Checkpoint) -> Result<(), PersistError> {
        checkpoint
            .validate()
            .map_err(|reason| PersistError::InvalidCheckpoint { reason })?;
        // A panic elsewhere cannot leave a half-written map entry behind.
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, checkpoint.clone());
        Ok(())
    }
}

impl CheckpointPersister for MemoryPersister {
    fn write<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> PersistFuture<'a, ()> {
        let r = self.write_now(
            key(namespace, hub, consumer_group, partition_id),
            checkpoint,
        );
        Box::pin(std::future::ready(r))
    }

    fn read<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
    ) -> PersistFuture<'a, Option<Checkpoint>> {
        let found = self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key(namespace, hub, consumer_group, partition_id))
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }
}

/// The version of the file layout [`FilePersister`] writes.
const FILE_FORMAT: u32 = 1;

/// Longest readable prefix of a checkpoint file name, in bytes.
const READABLE_PREFIX_MAX: usize = 80;

/// What one checkpoint file holds: the key it belongs to, so a file is
/// never taken for another partition's, and the checkpoint.
#[derive(Serialize, Deserialize)]
struct FileRecord {
    format: u32,
    namespace: String,
    hub: String,
    consumer_group: String,
    partition_id: String,
    checkpoint: Checkpoint,
}

/// Numbers temporary files, with the process id, so concurrent writers
/// never share one.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Checkpoints as files in a directory (Go `persist.NewFilePersister`).
///
/// Reads and writes run through the runtime's
/// [`spawn_blocking`](Runtime::spawn_blocking): the `fsync`s never hold up
/// the executor. The adapters name it for their runtime
/// (`eventhubs_tokio::FilePersister`).
///
/// Each partition's checkpoint is one JSON file, named by a readable
/// prefix (the key with unsafe characters replaced) and a SHA-256 hash of
/// the exact key, so any consumer group name is safe, even on
/// case-insensitive file systems. A write goes to a temporary file that is
/// flushed to disk, renamed over the old file and followed by a flush of
/// the directory: a crash leaves the old checkpoint or the new one, never
/// a torn file. Several writers (threads or processes) may share the
/// directory; the last rename wins.
pub struct FilePersister<R: Runtime> {
    files: Arc<Files>,
    rt: R,
}

impl<R: Runtime> Clone for FilePersister<R> {
    fn clone(&self) -> Self {
        FilePersister {
            files: self.files.clone(),
            rt: self.rt.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for FilePersister<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePersister")
            .field("dir", &self.files.dir)
            .finish_non_exhaustive()
    }
}

/// The directory and the blocking file operations.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
}

impl<R: Runtime> FilePersister<R> {
    /// A persister writing into `dir`, created if missing (at once, on
    /// this thread: call it while setting up), on the ambient runtime.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, PersistError> {
        Self::with_runtime(dir, R::default())
    }

    /// A persister writing into `dir` whose file I/O runs on `rt`.
    pub fn with_runtime(dir: impl Into<PathBuf>, rt: R) -> Result<Self, PersistError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| PersistError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(FilePersister {
            files: Arc::new(Files { dir }),
            rt,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// The file holding this partition's checkpoint.
    pub fn path_for(
        &self,
        namespace: &str,
        hub: &str,
        consumer_group: &str,
        partition_id: &str,
    ) -> PathBuf {
        self.files
            .dir
            .join(file_name(namespace, hub, consumer_group, partition_id))
    }
}

impl Files {
    fn path_for(
        &self,
        namespace: &str,
        hub: &str,
        consumer_group: &str,
        partition_id: &str,
    ) -> PathBuf {
        self.dir
            .join(file_name(namespace, hub, consumer_group, partition_id))
    }
}

/// `<readable>-<hash>.checkpoint.json`; the hash (128 bits of SHA-256 over
/// the length-prefixed parts) makes names unique, the prefix readable.
fn file_name(namespace: &str, hub: &str, consumer_group: &str, partition_id: &str) -> String {
    let mut hasher = Sha256::new();
    let mut readable = String::new();
    for part in [namespace, hub, consumer_group, partition_id] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
        if !readable.is_empty() {
            readable.push('.');
        }
        readable.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        }));
    }
    readable.truncate(READABLE_PREFIX_MAX);
    let digest = hasher.finalize();
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{hash}.checkpoint.json")
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directories cannot be opened as files here; the rename is durable
    // once the file system flushes its metadata.
    Ok(())
}

impl<R: Runtime> CheckpointPersister for FilePersister<R> {
    fn write<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> PersistFuture<'a, ()> {
        let files = self.files.clone();
        let key = key(namespace, hub, consumer_group, partition_id);
        let checkpoint = checkpoint.clone();
        Box::pin(async move {
            blocking(&self.rt, move || {
                let (ns, hub, cg, p) = &key;
                files.write(ns, hub, cg, p, &checkpoint)
            })
            .await
            .map_err(PersistError::Runtime)?
        })
    }

    fn read<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
    ) -> PersistFuture<'a, Option<Checkpoint>> {
        let files = self.files.clone();
        let key = key(namespace, hub, consumer_group, partition_id);
        Box::pin(async move {
            blocking(&self.rt, move || {
                let (ns, hub, cg, p) = &key;
                files.read(ns, hub, cg, p)
            })
            .await
            .map_err(PersistError::Runtime)?
        })
    }
}

impl Files {
    /// Writes the file: a temporary file, flushed, renamed over the old
    /// one, then the directory flushed. Blocks.
    fn write(
        &self,
        namespace: &str,
        hub: &str,
        consumer_group: &str,
        partition_id: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), PersistError> {
        checkpoint
            .validate()
            .map_err(|reason| PersistError::InvalidCheckpoint { reason })?;
        let name = file_name(namespace, hub, consumer_group, partition_id);
        let path = self.dir.join(&name);
        let record = FileRecord {
            format: FILE_FORMAT,
            namespace: namespace.to_owned(),
            hub: hub.to_owned(),
            consumer_group: consumer_group.to_owned(),
            partition_id: partition_id.to_owned(),
            checkpoint: checkpoint.clone(),
        };
        let write_error = |source| PersistError::Write {
            path: path.clone(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| write_error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        bytes.push(b'\n');
        let temp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, &path)?;
            sync_dir(&self.dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map_err(write_error)?;
        tracing::trace!(path = %path.display(), offset = %checkpoint.offset, "checkpoint written");
        Ok(())
    }

    /// Reads and checks the file. Blocks.
    fn read(
        &self,
        namespace: &str,
        hub: &str,
        consumer_group: &str,
        partition_id: &str,
    ) -> Result<Option<Checkpoint>, PersistError> {
        let path = self.path_for(namespace, hub, consumer_group, partition_id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PersistError::Read { path, source }),
        };
        let corrupt = |reason: String| PersistError::Corrupt {
            path: path.clone(),
            reason,
        };
        let record: FileRecord = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a checkpoint record: {e}")))?;
        if record.format != FILE_FORMAT {
            return Err(corrupt(format!(
                "file format {} is not the supported {FILE_FORMAT}",
                record.format
            )));
        }
        let expected = (namespace, hub, consumer_group, partition_id);
        let found = (
            record.namespace.as_str(),
            record.hub.as_str(),
            record.consumer_group.as_str(),
            record.partition_id.as_str(),
        );
        if found != expected {
            return Err(corrupt(format!(
                "it holds the checkpoint of {} rather than {}",
                KeyDisplay(found),
                KeyDisplay(expected)
            )));
        }
        record
            .checkpoint
            .validate()
            .map_err(|reason| corrupt(format!("invalid checkpoint: {reason}")))?;
        Ok(Some(record.checkpoint))
    }
}

struct KeyDisplay<'a>((&'a str, &'a str, &'a str, &'a str));

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ns, hub, cg, p) = self.0;
        write!(
            f,
            "namespace {ns:?} hub {hub:?} consumer group {cg:?} partition {p:?}"
        )
    }
}

/// Checkpoints in a [`CheckpointStore`]: on Azure Blob Storage with
/// [`BlobCheckpointStore`](crate::BlobCheckpointStore), in the layout every
/// Event Hubs SDK shares (`<namespace>/<hub>/<group>/checkpoint/<partition>`
/// blobs with `offset` and `sequencenumber` metadata), so a processor of
/// any SDK resumes where [`Hub::receive`](crate::Hub::receive) stopped, and
/// the other way round. This is the Go library's `CheckpointPersister`
/// over Blob Storage.
///
/// The namespace is the hub's host name (`ns.servicebus.windows.net`).
/// The blob layout has no enqueued time: a checkpoint read back has none.
///
/// ```
/// use std::sync::Arc;
/// use eventhubs_async::{BlobCheckpointStore, HubOptions, Runtime, StorePersister};
///
/// fn options<R: Runtime>(store: BlobCheckpointStore<R>) -> HubOptions {
///     HubOptions::new().with_checkpoint_persister(Arc::new(StorePersister::new(store)))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct StorePersister<S> {
    store: S,
}

impl<S: CheckpointStore> StorePersister<S> {
    /// A persister writing into `store`.
    pub fn new(store: S) -> Self {
        StorePersister { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: CheckpointStore> CheckpointPersister for StorePersister<S> {
    fn write<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> PersistFuture<'a, ()> {
        Box::pin(async move {
            checkpoint
                .validate()
                .map_err(|reason| PersistError::InvalidCheckpoint { reason })?;
            let record = PartitionCheckpoint::new(
                namespace,
                hub,
                consumer_group,
                partition_id,
                checkpoint.offset.clone(),
                checkpoint.sequence_number,
            );
            self.store
                .update_checkpoint(&record)
                .await
                .map_err(PersistError::Store)
        })
    }

    fn read<'a>(
        &'a self,
        namespace: &'a str,
        hub: &'a str,
        consumer_group: &'a str,
        partition_id: &'a str,
    ) -> PersistFuture<'a, Option<Checkpoint>> {
        Box::pin(async move {
            let all = self
                .store
                .list_checkpoints(namespace, hub, consumer_group)
                .await
                .map_err(PersistError::Store)?;
            Ok(all
                .into_iter()
                .find(|c| c.partition_id == partition_id)
                .and_then(|c| Some(Checkpoint::new(c.offset?, c.sequence_number?, None))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// tokio's blocking pool, for the tests.
    #[derive(Clone, Copy, Debug, Default)]
    struct TestRt;

    impl Runtime for TestRt {
        type Tcp = futures_util::io::Cursor<Vec<u8>>;
        fn connect_tcp(&self, _: String, _: u16) -> crate::BoxFuture<io::Result<Self::Tcp>> {
            Box::pin(async { Err(io::Error::other("no network in these tests")) })
        }
        fn sleep(&self, _: Duration) -> crate::BoxFuture<()> {
            Box::pin(std::future::pending())
        }
        fn spawn(&self, _: crate::BoxFuture<()>) -> io::Result<()> {
            Err(io::Error::other("no spawning in these tests"))
        }
        fn spawn_blocking(
            &self,
            job: crate::runtime::BlockingJob,
        ) -> crate::BoxFuture<io::Result<()>> {
            let task = tokio::task::spawn_blocking(job);
            Box::pin(async move { task.await.map_err(io::Error::other) })
        }
    }

    type FilePersister = super::FilePersister<TestRt>;

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// The async calls, run to completion, for the tests.
    trait Blocking {
        fn write_blocking(
            &self,
            n: &str,
            h: &str,
            g: &str,
            p: &str,
            c: &Checkpoint,
        ) -> Result<(), PersistError>;
        fn read_blocking(
            &self,
            n: &str,
            h: &str,
            g: &str,
            p: &str,
        ) -> Result<Option<Checkpoint>, PersistError>;
    }

    impl<P: CheckpointPersister + ?Sized> Blocking for P {
        fn write_blocking(
            &self,
            n: &str,
            h: &str,
            g: &str,
            p: &str,
            c: &Checkpoint,
        ) -> Result<(), PersistError> {
            run(self.write(n, h, g, p, c))
        }
        fn read_blocking(
            &self,
            n: &str,
            h: &str,
            g: &str,
            p: &str,
        ) -> Result<Option<Checkpoint>, PersistError> {
            run(self.read(n, h, g, p))
        }
    }

    /// A fresh directory under the target's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "eventhubs-async-persist-{name}-{}-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn cp(offset: &str, seq: i64) -> Checkpoint {
        Checkpoint::new(offset, seq, Some(1_700_000_000_000 + seq))
    }

    fn round_trip(p: &dyn CheckpointPersister) {
        assert_eq!(
            p.read_blocking("ns", "hub", "$Default", "0").expect("read"),
            None
        );
        p.write_blocking("ns", "hub", "$Default", "0", &cp("100", 1))
            .expect("write");
        p.write_blocking("ns", "hub", "$Default", "1", &cp("200", 2))
            .expect("write");
        p.write_blocking("ns", "hub", "$default", "0", &cp("300", 3))
            .expect("write");
        p.write_blocking("ns", "hub", "$Default", "0", &cp("150", 4))
            .expect("overwrite");
        assert_eq!(
            p.read_blocking("ns", "hub", "$Default", "0").expect("read"),
            Some(cp("150", 4))
        );
        assert_eq!(
            p.read_blocking("ns", "hub", "$Default", "1").expect("read"),
            Some(cp("200", 2))
        );
        assert_eq!(
            p.read_blocking("ns", "hub", "$default", "0").expect("read"),
            Some(cp("300", 3)),
            "consumer groups differing only in case are kept apart"
        );
        assert_eq!(
            p.read_blocking("ns", "other", "$Default", "0")
                .expect("read"),
            None
        );
        assert!(matches!(
            p.write_blocking("ns", "hub", "cg", "0", &Checkpoint::new("", 1, None)),
            Err(PersistError::InvalidCheckpoint { .. })
        ));
    }

    #[test]
    fn memory_round_trip() {
        round_trip(&MemoryPersister::new());
    }

    #[test]
    fn file_round_trip_and_reopen() {
        let dir = TempDir::new("round-trip");
        let p = FilePersister::new(dir.0.join("nested/dir")).expect("creates the directory");
        round_trip(&p);
        let reopened = FilePersister::new(p.dir()).expect("opens");
        assert_eq!(
            reopened
                .read_blocking("ns", "hub", "$Default", "1")
                .expect("read"),
            Some(cp("200", 2))
        );
        // Only the three checkpoint files, no temporary files left behind.
        let names: Vec<String> = fs::read_dir(p.dir())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| n.ends_with(".checkpoint.json")));
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let hostile = [
            "$Default",
            "$default",
            "../../etc/passwd",
            "a/b\\c:d*e?f\"g<h>i|j",
            "",
            ".",
            "..",
            "CON",
            "ünïcödé consumer group",
            &"x".repeat(1000),
            "a.b",
            "a_b",
        ];
        let mut seen = HashSet::new();
        for cg in hostile {
            let name = file_name("ns", "hub", cg, "0");
            assert!(name.len() <= 160, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{name}"
            );
            assert!(!name.starts_with('.'), "{name}");
            // Distinct even when compared case-insensitively.
            assert!(seen.insert(name.to_ascii_lowercase()), "{cg:?} collides");
        }
        // Parts cannot run into each other.
        assert_ne!(
            file_name("a", "b.c", "d", "0"),
            file_name("a.b", "c", "d", "0")
        );

        let dir = TempDir::new("hostile");
        let p = FilePersister::new(&dir.0).expect("dir");
        for (i, cg) in hostile.iter().enumerate() {
            p.write_blocking("ns", "hub", cg, "0", &cp(&i.to_string(), i as i64))
                .expect("write");
        }
        for (i, cg) in hostile.iter().enumerate() {
            assert_eq!(
                p.read_blocking("ns", "hub", cg, "0").expect("read"),
                Some(cp(&i.to_string(), i as i64)),
                "{cg:?}"
            );
        }
        assert_eq!(fs::read_dir(&dir.0).expect("list").count(), hostile.len());
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let dir = TempDir::new("corrupt");
        let p = FilePersister::new(&dir.0).expect("dir");
        p.write_blocking("ns", "hub", "cg", "0", &cp("42", 7))
            .expect("write");
        let path = p.path_for("ns", "hub", "cg", "0");
        let good = fs::read(&path).expect("file");

        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("garbage", b"\x00\x01\x02 not json".to_vec()),
            ("not utf-8", vec![0xff, 0xfe, 0xfd]),
            (
                "wrong format",
                String::from_utf8(good.clone())
                    .expect("utf-8")
                    .replace("\"format\": 1", "\"format\": 99")
                    .into_bytes(),
            ),
            (
                "empty offset",
                String::from_utf8(good.clone())
                    .expect("utf-8")
                    .replace("\"offset\": \"42\"", "\"offset\": \"\"")
                    .into_bytes(),
            ),
            (
                "missing field",
                String::from_utf8(good.clone())
                    .expect("utf-8")
                    .replace("\"sequence_number\": 7,", "")
                    .into_bytes(),
            ),
            (
                "another partition's",
                String::from_utf8(good.clone())
                    .expect("utf-8")
                    .replace("\"partition_id\": \"0\"", "\"partition_id\": \"1\"")
                    .into_bytes(),
            ),
        ];
        for (what, bytes) in cases {
            assert_ne!(bytes, good, "{what}: the case must change the file");
            fs::write(&path, &bytes).expect("corrupt it");
            match p.read_blocking("ns", "hub", "cg", "0") {
                Err(e @ PersistError::Corrupt { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
                }
                other => panic!("{what}: expected Corrupt, got {other:?}"),
            }
        }
        // A later write repairs it.
        p.write_blocking("ns", "hub", "cg", "0", &cp("43", 8))
            .expect("write");
        assert_eq!(
            p.read_blocking("ns", "hub", "cg", "0").expect("read"),
            Some(cp("43", 8))
        );
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let dir = TempDir::new("unreadable");
        let p = FilePersister::new(&dir.0).expect("dir");
        let path = p.path_for("ns", "hub", "cg", "0");
        // A directory where the file should be: reading fails even as root.
        fs::create_dir(&path).expect("mkdir");
        match p.read_blocking("ns", "hub", "cg", "0") {
            Err(e @ PersistError::Read { .. }) => {
                assert!(e.to_string().contains(&path.display().to_string()), "{e}")
            }
            other => panic!("expected Read, got {other:?}"),
        }
        match p.write_blocking("ns", "hub", "cg", "0", &cp("1", 1)) {
            Err(e @ PersistError::Write { .. }) => {
                assert!(e.to_string().contains(&path.display().to_string()), "{e}")
            }
            other => panic!("expected Write, got {other:?}"),
        }
        // The failed write left no temporary file behind.
        assert_eq!(fs::read_dir(&dir.0).expect("list").count(), 1);
    }

    #[test]
    fn directory_that_cannot_be_created() {
        let dir = TempDir::new("not-a-dir");
        fs::create_dir_all(&dir.0).expect("mkdir");
        let file = dir.0.join("file");
        fs::write(&file, b"x").expect("file");
        match FilePersister::new(file.join("sub")) {
            Err(e @ PersistError::CreateDir { .. }) => {
                assert!(e.to_string().contains("sub"), "{e}")
            }
            other => panic!("expected CreateDir, got {other:?}"),
        }
    }

    #[test]
    fn concurrent_writers_never_expose_a_torn_file() {
        let dir = TempDir::new("concurrent");
        let shared = Arc::new(FilePersister::new(&dir.0).expect("dir"));
        const WRITERS: i64 = 6;
        const WRITES: i64 = 40;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let p = FilePersister::new(&dir.0).expect("second instance");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    match p.read_blocking("ns", "hub", "cg", "0") {
                        Ok(None) => {}
                        Ok(Some(c)) => {
                            assert_eq!(c, cp(&c.sequence_number.to_string(), c.sequence_number));
                            reads += 1;
                        }
                        Err(e) => panic!("a reader saw {e}"),
                    }
                }
                reads
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                // Half share one instance, half have their own.
                let p: Arc<dyn CheckpointPersister> = if w % 2 == 0 {
                    shared.clone()
                } else {
                    Arc::new(FilePersister::new(&dir.0).expect("instance"))
                };
                std::thread::spawn(move || {
                    for i in 0..WRITES {
                        let seq = w * 1000 + i;
                        p.write_blocking("ns", "hub", "cg", "0", &cp(&seq.to_string(), seq))
                            .expect("write");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        stop.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("reader never saw a bad file");
        let last = shared
            .read_blocking("ns", "hub", "cg", "0")
            .expect("read")
            .expect("some");
        // The last rename is some writer's last write.
        let finals: Vec<i64> = (0..WRITERS).map(|w| w * 1000 + WRITES - 1).collect();
        assert!(finals.contains(&last.sequence_number), "{last:?}");
        assert!(
            reads > 0,
            "the reader saw checkpoints while they were replaced"
        );
        assert_eq!(
            fs::read_dir(&dir.0).expect("list").count(),
            1,
            "one file, no temporary files left"
        );
    }

    #[test]
    fn checkpoint_helpers() {
        let start = Checkpoint::start_of_stream();
        assert!(start.is_start_of_stream());
        assert_eq!(start.offset, "-1");
        assert_eq!(start, Checkpoint::default());
        assert_eq!(start.resume_position(), EventPosition::Earliest);
        assert_eq!(
            Checkpoint::end_of_stream().resume_position(),
            EventPosition::Latest
        );
        let c = cp("4096", 12);
        assert!(!c.is_start_of_stream());
        assert_eq!(c.resume_position(), EventPosition::offset("4096", false));
        assert_eq!(
            c.enqueued_time(),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_012))
        );
        assert_eq!(
            Checkpoint::new("1", 1, Some(-1_000)).enqueued_time(),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        assert_eq!(Checkpoint::new("1", 1, None).enqueued_time(), None);
    }

    #[test]
    fn persisters_behind_pointers() {
        let boxed: Box<dyn CheckpointPersister> = Box::new(MemoryPersister::new());
        boxed
            .write_blocking("n", "h", "c", "0", &cp("5", 5))
            .expect("write");
        assert_eq!(
            boxed.read_blocking("n", "h", "c", "0").expect("read"),
            Some(cp("5", 5))
        );
        let arc: Arc<MemoryPersister> = Arc::new(MemoryPersister::new());
        arc.write_blocking("n", "h", "c", "0", &cp("6", 6))
            .expect("write");
        assert_eq!(
            arc.read_blocking("n", "h", "c", "0").expect("read"),
            Some(cp("6", 6))
        );
    }
}
