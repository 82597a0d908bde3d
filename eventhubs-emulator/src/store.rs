//! Optional persistence (`--data-dir`): every partition is a directory of
//! append-only segment files, read back at start.
//!
//! ```text
//! DIR/<hub>/<partition>/<first sequence number, 20 digits>.log
//! segment := "EHEMLOG1" record*
//! record  := length u32 LE | crc32 u32 LE | body
//! body    := sequence number i64 LE | offset u64 LE | enqueued ms i64 LE | encoded message
//! ```
//!
//! `length` is the body's size in its low 31 bits; its top bit is set on
//! every record of one append but the last, so the records written
//! together (a batch's events among them) come back together or not at
//! all. Files written before that bit existed read the same.
//!
//! The hub directory is the hub's name in lower case with every byte other
//! than `a-z`, `0-9`, `-` and `_` written `%xx`. A segment is closed once it
//! holds 64 MiB and a new one begins; closed segments whose newest event is
//! past retention are deleted (the newest segment is always kept, so the
//! numbering survives even when every event has expired).
//!
//! The server appends what [`Broker::take_appended`](crate::Broker::take_appended)
//! hands out, then `sync_data`s, before it sends the dispositions that
//! acknowledge those events. Reading back, a torn last record (a crash in
//! the middle of a write) is dropped with a warning and cut off the file,
//! with the records written together with it;
//! anything else that does not check out is a [`StoreError`].
//!
//! Idempotent producers' groups, owner levels and sequence numbers
//! ([`crate::idempotent`]) live in `DIR/producers.state`, rewritten whole
//! (a new file, synced, renamed over the old one) after the events of the
//! same input, whenever the table changed:
//!
//! ```text
//! EHEMPRD1
//! next-producer-group-id <n>
//! head <hub> <partition> <next event sequence number>
//! producer <hub> <partition> <group id> <owner level> <last sequence number>
//! ```
//!
//! Names are written with every byte other than `A-Z`, `a-z`, `0-9`, `-`,
//! `_` and `.` as `%xx`. At start the events appended after a `head` (a
//! crash between the segments and this file) bring the table up to date.
//!
//! One emulator at a time uses a directory: it holds an exclusive lock on
//! `DIR/emulator.lock` (which names its pid) while the store is open, and
//! a second one is refused with [`StoreError::Locked`]. The lock is the
//! operating system's, so it goes with the process, however it ends.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::{info, warn};

use crate::broker::{Appended, ConsumerGroupState, HubState};
use crate::config::EmulatorConfig;
use crate::idempotent::{ProducerRecord, ProducerState};

const MAGIC: &[u8; 8] = b"EHEMLOG1";
/// The idempotent-producer table's file, and its first line.
const PRODUCERS_FILE: &str = "producers.state";
const PRODUCERS_MAGIC: &str = "EHEMPRD1";
/// Record header: length and checksum.
const RECORD_HEADER: usize = 8;
/// Body fields before the encoded message.
const BODY_FIELDS: usize = 24;
/// A segment is closed once it reaches this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// In a record's length field: more records of the same append follow.
const CONTINUES: u32 = 1 << 31;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory could not be read, written or synced.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A segment does not start with the emulator's magic bytes.
    #[error("{}: not an emulator segment (the file does not start with \"EHEMLOG1\")", path.display())]
    NotASegment {
        /// The file.
        path: PathBuf,
    },
    /// A record that is not the torn end of the newest segment is damaged,
    /// or records do not follow each other.
    #[error("{}: corrupt at byte {at}: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad record starts.
        at: u64,
        /// What is wrong.
        why: String,
    },
    /// An earlier write failed; nothing more is written until restart.
    #[error("the data directory failed earlier and takes no more writes: {0}")]
    Failed(String),
    /// Events of a hub or partition this store was not opened for.
    #[error("no partition '{partition}' of hub '{hub}' in the data directory")]
    UnknownPartition {
        /// The hub.
        hub: String,
        /// The partition.
        partition: String,
    },
    /// Another emulator holds the directory's lock.
    #[error("{} is in use by another emulator{}: two emulators cannot share a data directory", dir.display(), pid.map_or_else(String::new, |p| format!(" (pid {p})")))]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The holder's process id, as its lock file names it.
        pid: Option<u32>,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// CRC-32 (IEEE 802.3, the one of zlib and Ethernet).
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// The directory name of a hub.
fn hub_dir_name(hub: &str) -> String {
    let mut out = String::with_capacity(hub.len());
    for b in hub.to_ascii_lowercase().bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn segment_name(first_sequence_number: i64) -> String {
    format!("{first_sequence_number:020}.log")
}

/// Appends one record for `a` to `buf`; `continues` when more records of
/// the same append follow it.
fn encode_record(buf: &mut Vec<u8>, a: &Appended, continues: bool) {
    let len = (BODY_FIELDS + a.encoded.len()) as u32;
    let field = if continues { len | CONTINUES } else { len };
    let start = buf.len();
    buf.extend_from_slice(&field.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&a.sequence_number.to_le_bytes());
    buf.extend_from_slice(&a.offset.to_le_bytes());
    buf.extend_from_slice(&a.enqueued_ms.to_le_bytes());
    buf.extend_from_slice(&a.encoded);
    let crc = crc32(&buf[start + RECORD_HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Makes a new directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Enqueued time of its newest event (`i64::MIN` when empty).
    newest_ms: i64,
}

#[derive(Debug)]
struct PartitionLog {
    hub: String,
    partition: String,
    dir: PathBuf,
    /// Oldest first; the last one is the segment being appended to.
    segments: Vec<Segment>,
    /// The newest segment, open for appending, and its size.
    active: Option<(File, u64)>,
    /// A segment is closed once it reaches this size.
    segment_bytes: u64,
}

/// The persisted partitions of one data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    retention_ms: i64,
    /// Hubs whose retention is not the emulator's, by lower-case name.
    hub_retention_ms: BTreeMap<String, i64>,
    logs: BTreeMap<(String, String), PartitionLog>,
    failed: Option<String>,
    /// Held while the store is open: no other emulator uses the directory.
    _lock: DirLock,
}

/// One hub's partitions as [`Store::open_hubs`] opens them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubLayout {
    /// The hub's name.
    pub name: String,
    /// Its partitions, `0` to `partition_count - 1`.
    pub partition_count: u32,
    /// How long its events are kept, in ms.
    pub retention_ms: i64,
}

/// What reading one segment found.
struct SegmentRead {
    events: Vec<Appended>,
    /// Where the valid records end (a torn tail starts here).
    valid_len: u64,
    /// Why the end is torn, when it is.
    torn: Option<&'static str>,
}

/// Reads the records of one segment, checking them and their order
/// against `next` (sequence number and offset due, once known).
fn read_segment(
    path: &Path,
    hub: &str,
    partition: &str,
    next: &mut Option<(i64, u64)>,
) -> Result<SegmentRead, StoreError> {
    let mut data = Vec::new();
    // Whole at once: a segment is closed at SEGMENT_BYTES.
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_error(path))?;
    if data.len() < MAGIC.len() && MAGIC.starts_with(&data) {
        return Ok(SegmentRead {
            events: Vec::new(),
            valid_len: 0,
            torn: Some("the segment header is cut short"),
        });
    }
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return Err(StoreError::NotASegment {
            path: path.to_path_buf(),
        });
    }
    let corrupt = |at: usize, why: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        at: at as u64,
        why,
    };
    let data = Bytes::from(data);
    let mut events = Vec::new();
    let mut at = MAGIC.len();
    // Where the append being read began: its byte, its first event, and
    // the numbering due there. A torn end takes the whole append with it.
    let mut append_start = (at, 0, *next);
    let mut continues = false;
    let torn = loop {
        let rest = &data[at..];
        if rest.is_empty() {
            break continues
                .then_some("the last append is cut short (its last records are missing)");
        }
        // A crash can leave a record cut short, or (on some file systems)
        // a tail of zeros; either can only be the end of the file.
        let zeros = rest.iter().all(|&b| b == 0);
        if rest.len() < RECORD_HEADER {
            break Some("a record header is cut short");
        }
        let length_field = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        let len = (length_field & !CONTINUES) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len < BODY_FIELDS {
            if zeros {
                break Some("the file ends in zeros");
            }
            return Err(corrupt(at, format!("record length {len} is too small")));
        }
        if len > rest.len() - RECORD_HEADER {
            break Some("the last record is cut short");
        }
        let body = &rest[RECORD_HEADER..RECORD_HEADER + len];
        if crc32(body) != crc {
            if RECORD_HEADER + len == rest.len() || zeros {
                break Some("the last record fails its checksum");
            }
            return Err(corrupt(at, "the record fails its checksum".into()));
        }
        let field = |i: usize| <[u8; 8]>::try_from(&body[i * 8..i * 8 + 8]).expect("8 bytes");
        let sequence_number = i64::from_le_bytes(field(0));
        let offset = u64::from_le_bytes(field(1));
        let enqueued_ms = i64::from_le_bytes(field(2));
        let encoded_len = len - BODY_FIELDS;
        match *next {
            Some((seq, off)) if sequence_number != seq || offset != off => {
                return Err(corrupt(
                    at,
                    format!("event {sequence_number} at offset {offset} does not follow: event {seq} at offset {off} was due"),
                ));
            }
            _ if sequence_number < 0 => {
                return Err(corrupt(
                    at,
                    format!("negative sequence number {sequence_number}"),
                ));
            }
            _ => {}
        }
        *next = Some((sequence_number + 1, offset + encoded_len as u64));
        let start = at + RECORD_HEADER + BODY_FIELDS;
        events.push(Appended {
            hub: hub.to_string(),
            partition: partition.to_string(),
            sequence_number,
            offset,
            enqueued_ms,
            encoded: data.slice(start..start + encoded_len),
        });
        at += RECORD_HEADER + len;
        continues = length_field & CONTINUES != 0;
        if !continues {
            append_start = (at, events.len(), *next);
        }
    };
    let valid_len = if torn.is_some() {
        let (start, count, due) = append_start;
        events.truncate(count);
        *next = due;
        start
    } else {
        at
    };
    Ok(SegmentRead {
        events,
        valid_len: valid_len as u64,
        torn,
    })
}

impl PartitionLog {
    /// Reads every segment of the partition; cuts a torn end off the newest.
    fn open(dir: PathBuf, hub: &str, partition: &str) -> Result<(Self, Vec<Appended>), StoreError> {
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut names: Vec<(i64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".log").map(str::parse::<i64>) {
                Some(Ok(first)) if first >= 0 => names.push((first, path)),
                _ => {
                    warn!(path = %path.display(), "data dir: ignoring a file that is not a segment")
                }
            }
        }
        names.sort();
        let mut next = None;
        let mut events = Vec::new();
        let mut segments = Vec::new();
        let count = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let r = read_segment(&path, hub, partition, &mut next)?;
            if let Some(e) = r.events.first() {
                if e.sequence_number != first {
                    return Err(StoreError::Corrupt {
                        path,
                        at: MAGIC.len() as u64,
                        why: format!(
                            "the segment is named for event {first} but starts with event {}",
                            e.sequence_number
                        ),
                    });
                }
            }
            if let Some(why) = r.torn {
                if i + 1 != count {
                    return Err(StoreError::Corrupt {
                        path,
                        at: r.valid_len,
                        why: format!("{why}, in a segment that is not the newest"),
                    });
                }
                warn!(path = %path.display(), at = r.valid_len, why, "data dir: dropping the torn end of the newest segment (an interrupted write)");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_error(&path))?;
                if r.valid_len < MAGIC.len() as u64 {
                    // Not even the header made it: write it again.
                    f.set_len(0).map_err(io_error(&path))?;
                    (&f).write_all(MAGIC).map_err(io_error(&path))?;
                } else {
                    f.set_len(r.valid_len).map_err(io_error(&path))?;
                }
                f.sync_all().map_err(io_error(&path))?;
            }
            segments.push(Segment {
                path,
                newest_ms: r.events.last().map_or(i64::MIN, |e| e.enqueued_ms),
            });
            events.extend(r.events);
        }
        Ok((
            PartitionLog {
                hub: hub.to_string(),
                partition: partition.to_string(),
                dir,
                segments,
                active: None,
                segment_bytes: SEGMENT_BYTES,
            },
            events,
        ))
    }

    /// The newest segment, open for appending; a new one when there is none
    /// or it is full.
    fn active(&mut self, first_sequence_number: i64) -> Result<&mut (File, u64), StoreError> {
        let limit = self.segment_bytes;
        let full = self.active.as_ref().is_some_and(|(_, len)| *len >= limit);
        if full {
            self.active = None;
        }
        if self.active.is_none() {
            let reuse = match self.segments.last() {
                Some(s) if !full => {
                    let len = fs::metadata(&s.path).map_err(io_error(&s.path))?.len();
                    (len < limit).then(|| (s.path.clone(), len))
                }
                _ => None,
            };
            let (file, len) = match reuse {
                Some((path, len)) => {
                    let f = OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .map_err(io_error(&path))?;
                    (f, len)
                }
                None => {
                    let path = self.dir.join(segment_name(first_sequence_number));
                    let mut f = OpenOptions::new()
                        .create_new(true)
                        .append(true)
                        .open(&path)
                        .map_err(io_error(&path))?;
                    f.write_all(MAGIC).map_err(io_error(&path))?;
                    f.sync_data().map_err(io_error(&path))?;
                    sync_dir(&self.dir)?;
                    self.segments.push(Segment {
                        path,
                        newest_ms: i64::MIN,
                    });
                    (f, MAGIC.len() as u64)
                }
            };
            self.active = Some((file, len));
        }
        Ok(self.active.as_mut().expect("just set"))
    }

    /// Writes `events` (all of this partition, in order) and syncs them.
    fn append(&mut self, events: &[&Appended], buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        buf.clear();
        for (i, a) in events.iter().enumerate() {
            encode_record(buf, a, i + 1 < events.len());
        }
        self.active(first.sequence_number)?;
        let (Some((file, len)), Some(segment)) = (self.active.as_mut(), self.segments.last_mut())
        else {
            return Err(StoreError::Failed(
                "no segment is open for appending".into(),
            ));
        };
        if let Err(source) = file.write_all(buf).and_then(|()| file.sync_data()) {
            // Cut a partial write off, so the file ends on a whole record.
            let _ = file.set_len(*len);
            let _ = file.sync_data();
            let path = segment.path.clone();
            self.active = None;
            return Err(StoreError::Io { path, source });
        }
        *len += buf.len() as u64;
        segment.newest_ms = last.enqueued_ms;
        Ok(())
    }

    /// Deletes closed segments whose newest event is older than `oldest_ms`.
    /// The newest segment holding an event is always kept: it carries the
    /// numbering.
    fn expire(&mut self, oldest_ms: i64) -> Vec<PathBuf> {
        let mut gone = Vec::new();
        let keep_from = self
            .segments
            .iter()
            .rposition(|s| s.newest_ms != i64::MIN)
            .unwrap_or(0);
        let mut deletable = keep_from;
        while deletable > 0 && self.segments[0].newest_ms < oldest_ms {
            deletable -= 1;
            let s = self.segments.remove(0);
            match fs::remove_file(&s.path) {
                Ok(()) => gone.push(s.path),
                Err(e) => {
                    warn!(path = %s.path.display(), error = %e, "data dir: cannot delete an expired segment");
                    self.segments.insert(0, s);
                    break;
                }
            }
        }
        gone
    }
}

impl Store {
    /// Opens (creating it if needed) the data directory `dir` for the hubs
    /// and partitions of `config`, and reads back every event it holds, in
    /// order per partition. Closed segments past retention at `now_ms` are
    /// deleted first. Files of hubs or partitions that are no longer
    /// configured are left alone, with a warning.
    pub fn open(
        dir: &Path,
        config: &EmulatorConfig,
        now_ms: i64,
    ) -> Result<(Store, Vec<Appended>), StoreError> {
        let hubs: Vec<HubLayout> = config
            .hubs
            .iter()
            .map(|h| HubLayout {
                name: h.name.clone(),
                partition_count: h.partition_count,
                retention_ms: config.retention_ms,
            })
            .collect();
        Self::open_hubs(dir, &hubs, config.retention_ms, now_ms)
    }

    /// As [`open`](Self::open), for the hubs `hubs` (configured and created
    /// at run time), each with its retention; `retention_ms` is the
    /// emulator's, for hubs added later without one.
    pub fn open_hubs(
        dir: &Path,
        hubs: &[HubLayout],
        retention_ms: i64,
        now_ms: i64,
    ) -> Result<(Store, Vec<Appended>), StoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock = DirLock::acquire(dir)?;
        Self::open_locked(dir, lock, hubs, retention_ms, now_ms)
    }

    /// As [`open_hubs`](Self::open_hubs), with the directory's lock held.
    fn open_locked(
        dir: &Path,
        lock: DirLock,
        hubs: &[HubLayout],
        retention_ms: i64,
        now_ms: i64,
    ) -> Result<(Store, Vec<Appended>), StoreError> {
        let mut logs = BTreeMap::new();
        let mut events = Vec::new();
        let mut known = vec![
            dir.join(ENTITIES_FILE),
            dir.join(ENTITIES_TEMP),
            dir.join(PRODUCERS_FILE),
            dir.join(format!("{PRODUCERS_FILE}.new")),
            dir.join(LOCK_FILE),
        ];
        let mut hub_retention_ms = BTreeMap::new();
        for hub in hubs {
            let oldest_ms = now_ms.saturating_sub(hub.retention_ms);
            if hub.retention_ms != retention_ms {
                hub_retention_ms.insert(hub.name.to_ascii_lowercase(), hub.retention_ms);
            }
            let hub_dir = dir.join(hub_dir_name(&hub.name));
            known.push(hub_dir.clone());
            for p in 0..hub.partition_count {
                let partition = p.to_string();
                let (mut log, mut read) =
                    PartitionLog::open(hub_dir.join(&partition), &hub.name, &partition)?;
                let gone = log.expire(oldest_ms);
                if !gone.is_empty() {
                    // Their events were read first only to check the order.
                    let first = log
                        .segments
                        .first()
                        .and_then(|s| s.path.file_stem())
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0);
                    read.retain(|e| e.sequence_number >= first);
                    info!(hub = %hub.name, partition = %partition, segments = gone.len(), "data dir: deleted segments past retention");
                }
                events.extend(read);
                logs.insert((hub.name.to_ascii_lowercase(), partition), log);
            }
            if let Ok(entries) = fs::read_dir(&hub_dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name
                        .parse::<u32>()
                        .map_or(true, |p| p >= hub.partition_count)
                    {
                        warn!(path = %e.path().display(), "data dir: not a configured partition; left alone");
                    }
                }
            }
        }
        for e in fs::read_dir(dir).map_err(io_error(dir))?.flatten() {
            if !known.contains(&e.path()) {
                warn!(path = %e.path().display(), "data dir: not a configured hub; left alone");
            }
        }
        Ok((
            Store {
                dir: dir.to_path_buf(),
                retention_ms,
                hub_retention_ms,
                logs,
                failed: None,
                _lock: lock,
            },
            events,
        ))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `events` to their partitions' files and syncs them; returns
    /// once they are durable. After a failed write the store takes no more
    /// writes (every later call fails), so the files never have a gap.
    pub fn append(&mut self, events: &[Appended], now_ms: i64) -> Result<(), StoreError> {
        if let Some(why) = &self.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        let mut by_partition: BTreeMap<(String, String), Vec<&Appended>> = BTreeMap::new();
        for a in events {
            by_partition
                .entry((a.hub.to_ascii_lowercase(), a.partition.clone()))
                .or_default()
                .push(a);
        }
        let mut buf = Vec::new();
        for (key, list) in by_partition {
            let retention_ms = self
                .hub_retention_ms
                .get(&key.0)
                .copied()
                .unwrap_or(self.retention_ms);
            let oldest_ms = now_ms.saturating_sub(retention_ms);
            let Some(log) = self.logs.get_mut(&key) else {
                return Err(StoreError::UnknownPartition {
                    hub: key.0,
                    partition: key.1,
                });
            };
            if let Err(e) = log.append(&list, &mut buf) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
            for path in log.expire(oldest_ms) {
                info!(hub = %log.hub, partition = %log.partition, path = %path.display(), "data dir: deleted a segment past retention");
            }
        }
        Ok(())
    }
}

/// `name` with every byte but `A-Za-z0-9-_.` as `%xx`.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The producer table as the file's text.
fn encode_producers(state: &ProducerState) -> String {
    let mut out = format!(
        "{PRODUCERS_MAGIC}\nnext-producer-group-id {}\n",
        state.next_producer_group_id
    );
    for (hub, partition, head) in &state.heads {
        out.push_str(&format!(
            "head {} {} {head}\n",
            escape(hub),
            escape(partition)
        ));
    }
    for r in &state.producers {
        out.push_str(&format!(
            "producer {} {} {} {} {}\n",
            escape(&r.hub),
            escape(&r.partition),
            r.producer_group_id,
            r.owner_level,
            r.last_sequence_number
        ));
    }
    out
}

/// The producer table from the file's text.
fn decode_producers(path: &Path, text: &str) -> Result<ProducerState, StoreError> {
    let corrupt = |line: usize, why: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        at: line as u64,
        why: format!("line {line}: {why}"),
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, PRODUCERS_MAGIC)) => {}
        _ => {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                at: 0,
                why: format!("the file does not start with \"{PRODUCERS_MAGIC}\""),
            })
        }
    }
    let mut state = ProducerState::default();
    for (n, line) in lines {
        let f: Vec<&str> = line.split(' ').collect();
        let name = |i: usize| {
            f.get(i)
                .and_then(|s| unescape(s))
                .ok_or_else(|| corrupt(n, format!("field {i} is not an escaped name")))
        };
        fn num<T: std::str::FromStr>(f: &[&str], i: usize) -> Option<T> {
            f.get(i)?.parse().ok()
        }
        let bad = || corrupt(n, format!("cannot read {line:?}"));
        match f.first().copied() {
            Some("next-producer-group-id") if f.len() == 2 => {
                state.next_producer_group_id = num(&f, 1).ok_or_else(bad)?;
            }
            Some("head") if f.len() == 4 => {
                state
                    .heads
                    .push((name(1)?, name(2)?, num(&f, 3).ok_or_else(bad)?));
            }
            Some("producer") if f.len() == 6 => state.producers.push(ProducerRecord {
                hub: name(1)?,
                partition: name(2)?,
                producer_group_id: num(&f, 3).ok_or_else(bad)?,
                owner_level: num(&f, 4).ok_or_else(bad)?,
                last_sequence_number: num(&f, 5).ok_or_else(bad)?,
            }),
            _ => return Err(bad()),
        }
    }
    Ok(state)
}

impl Store {
    /// The idempotent-producer table saved in the directory, if there is
    /// one.
    pub fn read_producers(&self) -> Result<Option<ProducerState>, StoreError> {
        let path = self.dir.join(PRODUCERS_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => decode_producers(&path, &text).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Saves the idempotent-producer table: a new file, synced, renamed
    /// over the old one; returns once that is durable. After a failure the
    /// store takes no more writes, as after a failed append.
    pub fn write_producers(&mut self, state: &ProducerState) -> Result<(), StoreError> {
        if let Some(why) = &self.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        let path = self.dir.join(PRODUCERS_FILE);
        let tmp = self.dir.join(format!("{PRODUCERS_FILE}.new"));
        let written = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(encode_producers(state).as_bytes())?;
                f.sync_data()
            })
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io_error(&path))
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = &written {
            self.failed = Some(e.to_string());
        }
        written
    }
}

/// The file recording the hubs' management state (see
/// [`Store::save_entities`]). Its `.` keeps it apart from hub directories,
/// whose names never hold one.
const ENTITIES_FILE: &str = "entities.json";
const ENTITIES_TEMP: &str = "entities.json.tmp";

#[derive(serde::Serialize, serde::Deserialize)]
struct EntitiesFile {
    version: u32,
    hubs: Vec<HubRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HubRecord {
    name: String,
    partition_count: u32,
    #[serde(default)]
    message_retention_in_days: Option<u32>,
    status: String,
    #[serde(default)]
    user_metadata: Option<String>,
    created_ms: i64,
    updated_ms: i64,
    from_config: bool,
    consumer_groups: Vec<GroupRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct GroupRecord {
    name: String,
    created_ms: i64,
    updated_ms: i64,
    #[serde(default)]
    user_metadata: Option<String>,
}

/// Run-time entities: hubs created and deleted through the management
/// API, and the file that brings them back after a restart.
impl Store {
    /// Opens the data directory `dir` for `broker`: the hubs recorded in
    /// `entities.json` are put back into the broker first
    /// ([`Broker::restore_hub`](crate::Broker::restore_hub)), then every
    /// hub's partitions are opened as [`open_hubs`](Self::open_hubs) does,
    /// each with its retention.
    pub fn open_for(
        dir: &Path,
        broker: &mut crate::Broker,
        now_ms: i64,
    ) -> Result<(Store, Vec<Appended>), StoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock = DirLock::acquire(dir)?;
        for state in Self::load_entities(dir)? {
            let name = state.name.clone();
            broker.restore_hub(state).map_err(|e| StoreError::Corrupt {
                path: dir.join(ENTITIES_FILE),
                at: 0,
                why: format!("hub '{name}': {e}"),
            })?;
        }
        let emulator_ms = broker.config().retention_ms;
        let layouts: Vec<HubLayout> = broker
            .hubs()
            .iter()
            .map(|h| HubLayout {
                name: h.name.clone(),
                partition_count: h.partition_count,
                retention_ms: h
                    .message_retention_in_days
                    .map_or(emulator_ms, |d| i64::from(d) * 86_400_000),
            })
            .collect();
        Self::open_locked(dir, lock, &layouts, emulator_ms, now_ms)
    }

    /// Opens the partitions of a hub created at run time, starting empty:
    /// files a deleted hub of the same name may have left are removed
    /// first.
    pub fn add_hub(
        &mut self,
        name: &str,
        partition_count: u32,
        retention_ms: i64,
    ) -> Result<(), StoreError> {
        let hub_dir = self.dir.join(hub_dir_name(name));
        match fs::remove_dir_all(&hub_dir) {
            Ok(()) => {
                warn!(path = %hub_dir.display(), "data dir: removed the files of an earlier hub of this name")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: hub_dir,
                    source,
                })
            }
        }
        let key = name.to_ascii_lowercase();
        for p in 0..partition_count {
            let partition = p.to_string();
            let (log, _) = PartitionLog::open(hub_dir.join(&partition), name, &partition)?;
            self.logs.insert((key.clone(), partition), log);
        }
        sync_dir(&self.dir)?;
        self.set_retention(name, retention_ms);
        Ok(())
    }

    /// How long `name`'s events are kept from now on.
    pub fn set_retention(&mut self, name: &str, retention_ms: i64) {
        let key = name.to_ascii_lowercase();
        if retention_ms == self.retention_ms {
            self.hub_retention_ms.remove(&key);
        } else {
            self.hub_retention_ms.insert(key, retention_ms);
        }
    }

    /// Closes a deleted hub's partitions and removes its files.
    pub fn remove_hub(&mut self, name: &str) -> Result<(), StoreError> {
        let key = name.to_ascii_lowercase();
        self.logs.retain(|(hub, _), _| *hub != key);
        self.hub_retention_ms.remove(&key);
        let hub_dir = self.dir.join(hub_dir_name(name));
        match fs::remove_dir_all(&hub_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: hub_dir,
                    source,
                })
            }
        }
        sync_dir(&self.dir)
    }

    /// Records every hub's management state in `DIR/entities.json`
    /// (written to a temporary file, synced, then renamed over the old
    /// one), so that hubs created at run time, and changes to configured
    /// ones, survive a restart.
    pub fn save_entities(&self, hubs: &[HubState]) -> Result<(), StoreError> {
        let file = EntitiesFile {
            version: 1,
            hubs: hubs
                .iter()
                .map(|h| HubRecord {
                    name: h.name.clone(),
                    partition_count: h.partition_count,
                    message_retention_in_days: h.message_retention_in_days,
                    status: h.status.as_str().to_owned(),
                    user_metadata: h.user_metadata.clone(),
                    created_ms: h.created_ms,
                    updated_ms: h.updated_ms,
                    from_config: h.from_config,
                    consumer_groups: h
                        .consumer_groups
                        .iter()
                        .map(|g| GroupRecord {
                            name: g.name.clone(),
                            created_ms: g.created_ms,
                            updated_ms: g.updated_ms,
                            user_metadata: g.user_metadata.clone(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let text =
            serde_json::to_vec_pretty(&file).map_err(|e| StoreError::Failed(e.to_string()))?;
        let temp = self.dir.join(ENTITIES_TEMP);
        let path = self.dir.join(ENTITIES_FILE);
        let mut f = File::create(&temp).map_err(io_error(&temp))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(io_error(&temp))?;
        fs::rename(&temp, &path).map_err(io_error(&path))?;
        sync_dir(&self.dir)
    }

    /// Reads `DIR/entities.json`; no file is no record.
    pub fn load_entities(dir: &Path) -> Result<Vec<HubState>, StoreError> {
        let path = dir.join(ENTITIES_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let corrupt = |why: String| StoreError::Corrupt {
            path: path.clone(),
            at: 0,
            why,
        };
        let file: EntitiesFile =
            serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if file.version != 1 {
            return Err(corrupt(format!("unknown version {}", file.version)));
        }
        file.hubs
            .into_iter()
            .map(|h| {
                Ok(HubState {
                    status: h.status.parse().map_err(
                        |e: eventhubs_proto::management::UnknownStatus| corrupt(e.to_string()),
                    )?,
                    name: h.name,
                    partition_count: h.partition_count,
                    message_retention_in_days: h.message_retention_in_days,
                    user_metadata: h.user_metadata,
                    created_ms: h.created_ms,
                    updated_ms: h.updated_ms,
                    from_config: h.from_config,
                    consumer_groups: h
                        .consumer_groups
                        .into_iter()
                        .map(|g| ConsumerGroupState {
                            name: g.name,
                            created_ms: g.created_ms,
                            updated_ms: g.updated_ms,
                            user_metadata: g.user_metadata,
                        })
                        .collect(),
                })
            })
            .collect()
    }
}

// ------------------------------------------------------------------------
// The data directory's lock: one emulator at a time.

/// The lock file, in the data directory. It holds the pid of the emulator
/// that holds its lock.
const LOCK_FILE: &str = "emulator.lock";

/// An exclusive lock on `DIR/emulator.lock` (an advisory lock of the
/// operating system, `flock` on Unix), held while the store is open and
/// released when it is dropped or the process ends, however it ends: a
/// killed emulator leaves no stale lock behind, only the file.
#[derive(Debug)]
struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` and writes our pid into the lock file; when
    /// another process holds it, [`StoreError::Locked`] with the pid that
    /// process wrote. A file system without locks gives a warning, not an
    /// error.
    fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        // Not truncated before the lock is ours: it names the holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
                warn!(path = %path.display(), "data dir: the file system has no locks; nothing keeps a second emulator out of this directory");
            }
            Err(fs::TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(io_error(&path))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhubs_proto::codec::message::Message;
    use eventhubs_proto::codec::Encode;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "eventhubs-store-{name}-{}-{nanos}",
                std::process::id()
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn events(partition: &str, from: i64, count: i64, offset: u64, ms: i64) -> Vec<Appended> {
        let mut offset = offset;
        (from..from + count)
            .map(|seq| {
                let encoded = Message::with_data(vec![seq as u8; 60]).to_bytes();
                let a = Appended {
                    hub: "eh1".into(),
                    partition: partition.into(),
                    sequence_number: seq,
                    offset,
                    enqueued_ms: ms,
                    encoded,
                };
                offset += a.encoded.len() as u64;
                a
            })
            .collect()
    }

    fn segments(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn segments_roll_expire_past_retention_and_reopen_with_the_numbering() {
        let tmp = TempDir::new("roll");
        let config = EmulatorConfig::default();
        let t0 = 1_800_000_000_000;
        let (mut store, read) = Store::open(&tmp.0, &config, t0).unwrap();
        assert!(read.is_empty());
        for log in store.logs.values_mut() {
            log.segment_bytes = 300;
        }
        let old = events("0", 0, 10, 0, t0);
        for e in &old {
            store.append(std::slice::from_ref(e), t0).unwrap();
        }
        let p0 = tmp.0.join("eh1").join("0");
        let before = segments(&p0);
        assert!(before.len() >= 3, "{before:?}");
        assert_eq!(before[0], "00000000000000000000.log");

        // An hour and more later, a new event: the old closed segments go;
        // the one written last is the newest and stays until it is closed.
        let later = t0 + config.retention_ms + 1;
        let next_offset = old[9].offset + old[9].encoded.len() as u64;
        let new = events("0", 10, 1, next_offset, later);
        store.append(&new, later).unwrap();
        let after = segments(&p0);
        assert!(after.len() < before.len(), "{before:?} -> {after:?}");
        drop(store);

        let (_, read) = Store::open(&tmp.0, &config, later).unwrap();
        let first: i64 = after[0].trim_end_matches(".log").parse().unwrap();
        let seqs: Vec<i64> = read.iter().map(|a| a.sequence_number).collect();
        assert_eq!(seqs, (first..=10).collect::<Vec<_>>());
        assert_eq!(read.last().unwrap(), &new[0]);
        assert_eq!(read[0], old[first as usize]);
    }

    #[test]
    fn a_gap_between_segments_is_corruption() {
        let tmp = TempDir::new("gap");
        let config = EmulatorConfig::default();
        let (mut store, _) = Store::open(&tmp.0, &config, 0).unwrap();
        for log in store.logs.values_mut() {
            log.segment_bytes = 100;
        }
        for e in &events("1", 0, 4, 0, 0) {
            store.append(std::slice::from_ref(e), 0).unwrap();
        }
        drop(store);
        let p1 = tmp.0.join("eh1").join("1");
        let names = segments(&p1);
        assert_eq!(names.len(), 4);
        fs::remove_file(p1.join(&names[1])).unwrap();
        let e = Store::open(&tmp.0, &config, 0).unwrap_err().to_string();
        assert!(e.contains("does not follow"), "{e}");
        assert!(e.contains(&names[2]), "{e}");
    }

    /// One append is one unit: a crash that cuts its write anywhere (a
    /// batch's events among its records) drops every record of it, and
    /// keeps every earlier append.
    #[test]
    fn a_torn_append_is_dropped_whole_wherever_it_is_cut() {
        let tmp = TempDir::new("torn-append");
        let config = EmulatorConfig::default();
        let first = events("0", 0, 2, 0, 0);
        let next_offset = first[1].offset + first[1].encoded.len() as u64;
        let batch = events("0", 2, 3, next_offset, 0);
        {
            let (mut store, _) = Store::open(&tmp.0, &config, 0).unwrap();
            store.append(&first, 0).unwrap();
            store.append(&batch, 0).unwrap();
        }
        let segment = tmp.0.join("eh1/0/00000000000000000000.log");
        let whole = fs::read(&segment).unwrap();
        let record = |a: &Appended| RECORD_HEADER + BODY_FIELDS + a.encoded.len();
        let batch_start = MAGIC.len() + first.iter().map(record).sum::<usize>();
        assert_eq!(
            whole.len(),
            batch_start + batch.iter().map(record).sum::<usize>()
        );
        for cut in batch_start..whole.len() {
            fs::write(&segment, &whole[..cut]).unwrap();
            let (_, read) = Store::open(&tmp.0, &config, 0).unwrap();
            assert_eq!(read, first, "cut at byte {cut}");
            assert_eq!(
                fs::read(&segment).unwrap(),
                whole[..batch_start],
                "cut at byte {cut}: the torn append is cut off the file"
            );
        }
        fs::write(&segment, &whole).unwrap();
        let (_, read) = Store::open(&tmp.0, &config, 0).unwrap();
        assert_eq!(read.len(), 5);
        assert_eq!(read[2..], batch[..]);
    }

    #[test]
    fn a_second_store_on_the_directory_is_refused_with_the_holders_pid() {
        let tmp = TempDir::new("lock");
        let config = EmulatorConfig::default();
        let (store, _) = Store::open(&tmp.0, &config, 0).unwrap();
        let e = Store::open(&tmp.0, &config, 0).unwrap_err();
        match &e {
            StoreError::Locked { dir, pid } => {
                assert_eq!(dir, &tmp.0);
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains(&tmp.0.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(store);
        // Released with the store; the file stays, naming the last holder.
        let (_store, _) = Store::open(&tmp.0, &config, 0).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.0.join(LOCK_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn the_producer_table_is_written_whole_and_read_back() {
        let tmp = TempDir::new("producers");
        let config = EmulatorConfig::default();
        let (mut store, _) = Store::open(&tmp.0, &config, 0).unwrap();
        assert_eq!(store.read_producers().unwrap(), None);
        let state = ProducerState {
            next_producer_group_id: 42,
            producers: vec![ProducerRecord {
                hub: "my hub/%".into(),
                partition: "0".into(),
                producer_group_id: -7,
                owner_level: i16::MIN,
                last_sequence_number: i32::MAX,
            }],
            heads: vec![("my hub/%".into(), "0".into(), 12)],
        };
        store.write_producers(&state).unwrap();
        store.write_producers(&state).unwrap();
        drop(store);
        let (store, _) = Store::open(&tmp.0, &config, 0).unwrap();
        assert_eq!(store.read_producers().unwrap(), Some(state));
        fs::write(tmp.0.join(PRODUCERS_FILE), "EHEMPRD1\nproducer x\n").unwrap();
        let e = store.read_producers().unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn hub_names_become_safe_directory_names() {
        assert_eq!(hub_dir_name("Eh1"), "eh1");
        assert_eq!(hub_dir_name("my.hub_2-x"), "my%2ehub_2-x");
        assert_eq!(hub_dir_name(".."), "%2e%2e");
        assert_eq!(hub_dir_name("a/b"), "a%2fb");
    }
}
