//! The durable event log: append with group commit, segments, recovery, retention.
//!
//! # On-disk format
//! A directory of segment files (see [`segment`] for the record layout, length +
//! CRC32C per record). Records are numbered by a global offset; a segment is named
//! after the offset of its first record. Only the newest segment is written to; a
//! segment is closed (and, with `fsync` durability, synced) when it passes
//! `segment_bytes`.
//!
//! # Durability
//! One writer task owns the files. [`Log::append`] queues a request and waits for
//! its acknowledgement, which is sent only after the request's records are
//! written (`os`) or written and `fdatasync`ed (`fsync`). Requests that arrive while
//! the writer is busy are written together and share one sync: group commit.
//!
//! # Crash recovery
//! On [`Log::open`] the newest segment is read from the start; the first partial or
//! checksum-failing record and everything after it (a torn tail: a write cut short by
//! a crash) is truncated away and counted in `sluice_log_torn_tail_*`. Such records
//! were never acknowledged, since acknowledgement follows the write. Older segments
//! were complete when closed and are checked by readers record by record; a segment
//! shorter than its header (a roll cut short by a full disk) holds no record and is
//! removed.
//!
//! # Failures while running
//! See the writer module: after a failed write, sync or roll the log refuses appends
//! ([`AppendError::Io`], 503) until it has repaired itself from disk; offsets are never
//! handed out twice, so the offsets of records that were refused may be missing (a
//! gap readers step over). Readers stop at the **durable watermark**
//! ([`Log::next_offset`]): they never see a record that is not yet acknowledged.
//!
//! # Bounds and retention
//! The log never grows past `max_bytes`: an append that would cross it fails with
//! [`AppendError::Full`] (the gateway answers 503 + `Retry-After`). Closed segments
//! older than `retention_hours` are deleted (checked at every roll and once a second),
//! and, while the log is above [`HIGH_WATER`] of `max_bytes`, closed segments are
//! deleted oldest first whatever their age, so ingestion resumes by itself as soon as
//! readers let go. A segment a reader's hold ([`Log::hold`]) still needs is never
//! deleted; holds passed to [`Log::open_with`] are in place before retention first
//! runs.

pub mod jetstream;
mod reader;
pub mod reading;
pub mod segment;
mod writer;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config;
use crate::disk::Faults;
use crate::telemetry;

pub use reader::{ReadError, Reader, Stats, stats};

/// Seconds a client is asked to wait when the log is full or failing.
pub const RETRY_AFTER_SECS: u64 = 30;
/// Fraction of `max_bytes` above which `/ready` reports not ready.
pub const HIGH_WATER: f64 = 0.9;

/// Why an append was not acknowledged. None of its records count as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The log is at its byte bound.
    #[error("event log is full")]
    Full,
    /// Writing or syncing failed.
    #[error("event log write failed")]
    Io,
    /// The log is shut down.
    #[error("event log is closed")]
    Closed,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// I/O on the directory or a segment.
    #[error("event log at {path}: {source}")]
    Io {
        /// What was being opened.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A segment is unusable.
    #[error(transparent)]
    Segment(#[from] segment::SegmentError),
}

/// State shared by the handle and the writer thread.
#[derive(Debug)]
struct Shared {
    total_bytes: AtomicU64,
    segments: AtomicU64,
    /// The durable watermark.
    next_offset: AtomicU64,
    healthy: AtomicBool,
    max_bytes: u64,
    holds: Mutex<HashMap<String, u64>>,
    /// The next offset, published after every commit, for tailing readers.
    appended: tokio::sync::watch::Sender<u64>,
    /// Commits made (each one write, one sync and one publish for a group of appends).
    commits: AtomicU64,
}

impl Shared {
    /// Lowest offset some reader still needs, if any reader holds one.
    fn lowest_hold(&self) -> Option<u64> {
        self.holds
            .lock()
            .map(|h| h.values().copied().min())
            .unwrap_or(Some(0))
    }
}

/// Records framed for the log, built by the request that appends them: each record's
/// header and payload are written straight into one buffer, so an append costs no
/// allocation per record and the writer copies one slice per request.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    count: u64,
    /// `(index of the record, source id, de-duplication id)` for backends that route
    /// and de-duplicate per message ([`EventLog::wants_ids`]); empty otherwise.
    ids: Vec<(u64, String, String)>,
}

impl Batch {
    /// An empty batch with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            count: 0,
            ids: Vec::new(),
        }
    }

    /// Names the last record added: its source and its de-duplication id (the source's
    /// messageId). Only backends that publish per message need it.
    pub fn tag(&mut self, source: &str, id: String) {
        if let Some(last) = self.count.checked_sub(1) {
            self.ids.push((last, source.to_owned(), id));
        }
    }

    /// Takes the batch apart: its bytes, and each record's payload range in them with
    /// its tag (source id, de-duplication id) if it has one.
    pub fn into_records(self) -> (Vec<u8>, Vec<Record>) {
        let mut out = Vec::with_capacity(usize::try_from(self.count).unwrap_or(0));
        let mut tags = self.ids.into_iter().peekable();
        let mut at = 0usize;
        let mut index = 0u64;
        while let Some(header) = self.bytes.get(at..at + segment::RECORD_HEADER as usize) {
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let start = at + segment::RECORD_HEADER as usize;
            let tag = tags
                .next_if(|(i, _, _)| *i == index)
                .map(|(_, source, id)| (source, id));
            out.push((start..start + len, tag));
            at = start + len;
            index += 1;
        }
        (self.bytes, out)
    }

    /// A batch of the given payloads.
    pub fn of<I, P>(payloads: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let mut batch = Self::default();
        for p in payloads {
            let _ = batch.record(|buf| {
                buf.extend_from_slice(p.as_ref());
                Ok::<(), ()>(())
            });
        }
        batch
    }

    /// Adds one record whose payload `write` appends to the buffer it is given. If
    /// `write` fails, nothing of the record stays in the batch.
    pub fn record<T, E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<T, E>,
    ) -> Result<T, E> {
        let start = self.bytes.len();
        self.bytes
            .extend_from_slice(&[0; segment::RECORD_HEADER as usize]);
        match write(&mut self.bytes) {
            Ok(value) => {
                segment::seal(&mut self.bytes[start..]);
                self.count += 1;
                Ok(value)
            }
            Err(error) => {
                self.bytes.truncate(start);
                Err(error)
            }
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes in the batch, headers included.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }
}

/// A record's payload range in its batch's bytes, and its tag (source id,
/// de-duplication id) if it has one.
pub type Record = (std::ops::Range<usize>, Option<(String, String)>);

enum Command {
    Append {
        batch: Batch,
        reply: oneshot::Sender<Result<Range<u64>, AppendError>>,
    },
    Close,
}

/// Handle to the log; cheap to clone. Dropping every handle does not close it:
/// call [`Log::close`] so the writer syncs and stops.
#[derive(Clone)]
pub struct Log {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    dir: PathBuf,
    writer: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    append_duration: metrics::Histogram,
}

/// What [`Log::open_with`] starts with besides the configuration.
#[derive(Debug, Default)]
pub struct Opening {
    /// Readers' holds to place before retention first runs (every saved delivery
    /// cursor), as `(reader, offset)`.
    pub holds: Vec<(String, u64)>,
    /// Fault injection for tests; the default injects nothing.
    pub faults: Faults,
}

impl Log {
    /// Opens the log with no holds (see [`Log::open_with`]).
    pub fn open(config: &config::Log) -> Result<Self, OpenError> {
        Self::open_with(config, Opening::default())
    }

    /// Opens (creating if needed) the log in `config.dir`, places `opening.holds`,
    /// recovers its tail, applies retention and starts the writer task. Must be called
    /// inside a Tokio runtime.
    pub fn open_with(config: &config::Log, opening: Opening) -> Result<Self, OpenError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| OpenError::Io {
            path: dir.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            total_bytes: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            next_offset: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            max_bytes: config.max_bytes,
            holds: Mutex::new(opening.holds.into_iter().collect()),
            appended: tokio::sync::watch::Sender::new(0),
            commits: AtomicU64::new(0),
        });
        let writer = writer::Writer::recover(config, Arc::clone(&shared), opening.faults)?;
        let (tx, rx) = mpsc::channel(config.queue_depth);
        let task = tokio::spawn(writer.run(rx));
        Ok(Self {
            tx,
            shared,
            dir,
            writer: Arc::new(Mutex::new(Some(task))),
            append_duration: telemetry::LOG_APPEND_DURATION.with([]),
        })
    }

    /// Appends the batch and waits until it is durable; returns its records' offsets.
    pub async fn append(&self, batch: Batch) -> Result<Range<u64>, AppendError> {
        let started = Instant::now();
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Command::Append { batch, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        let result = done.await.map_err(|_| AppendError::Closed)?;
        self.append_duration.record(started.elapsed().as_secs_f64());
        result
    }

    /// Registers (or moves) a reader's hold: segments at or after `offset` are kept.
    pub fn hold(&self, reader: &str, offset: u64) {
        if let Ok(mut holds) = self.shared.holds.lock() {
            holds.insert(reader.to_owned(), offset);
        }
    }

    /// Removes a reader's hold.
    pub fn release(&self, reader: &str) {
        if let Ok(mut holds) = self.shared.holds.lock() {
            holds.remove(reader);
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A receiver that changes whenever records are appended (its value is the next
    /// offset): tailing readers wait on it instead of polling.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.appended.subscribe()
    }

    /// Commits made since the log opened: each is one write (and with `fsync` one
    /// sync) and one publish, for every append that joined its group.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The durable watermark: every record below it is acknowledged (or was never
    /// stored), none at or above it is visible yet. Readers stop here.
    pub fn next_offset(&self) -> u64 {
        self.shared.next_offset.load(Ordering::Acquire)
    }

    /// Bytes of the log a reader at `from` still has ahead of it, counted by whole
    /// segments (the segment holding `from` counts in full): what a destination's
    /// backlog keeps on disk.
    pub fn backlog_bytes(&self, from: u64) -> u64 {
        let Ok(bases) = segment::list(&self.dir) else {
            return 0;
        };
        let ends = bases.iter().skip(1).map(|&b| Some(b)).chain([None]);
        bases
            .iter()
            .zip(ends)
            .filter(|(_, end)| end.is_none_or(|end| end > from))
            .filter_map(|(&base, _)| std::fs::metadata(segment::path(&self.dir, base)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Bytes on disk.
    pub fn total_bytes(&self) -> u64 {
        self.shared.total_bytes.load(Ordering::Relaxed)
    }

    /// Whether the last write succeeded and the writer runs.
    pub fn is_writable(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed) && !self.tx.is_closed()
    }

    /// Whether the log is above [`HIGH_WATER`] of its byte bound.
    pub fn is_over_high_water(&self) -> bool {
        self.total_bytes() as f64 >= self.shared.max_bytes as f64 * HIGH_WATER
    }

    /// Flushes, syncs and stops the writer; later appends fail with `Closed`.
    /// Waits at most `timeout` for queued appends to be written.
    pub async fn close(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.tx.send(Command::Close)).await;
        let task = self.writer.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Where the gateway makes accepted events durable (`log.backend`).
#[derive(Clone)]
pub enum EventLog {
    /// The segment files of this machine.
    Local(Log),
    /// A JetStream stream.
    JetStream(Box<jetstream::Publisher>),
}

impl EventLog {
    /// Makes the batch durable; `Ok` only when every record of it is (on disk, or
    /// acknowledged by JetStream).
    pub async fn append(&self, batch: Batch) -> Result<(), AppendError> {
        match self {
            Self::Local(log) => log.append(batch).await.map(|_| ()),
            Self::JetStream(publisher) => publisher.append(batch).await,
        }
    }

    /// Whether records must be tagged with their source and messageId ([`Batch::tag`]).
    pub fn wants_ids(&self) -> bool {
        matches!(self, Self::JetStream(_))
    }

    /// Whether appends can currently succeed.
    pub fn is_writable(&self) -> bool {
        match self {
            Self::Local(log) => log.is_writable(),
            Self::JetStream(publisher) => publisher.is_connected(),
        }
    }

    /// Whether the log is nearly full (readiness reports not ready).
    pub fn is_over_high_water(&self) -> bool {
        match self {
            Self::Local(log) => log.is_over_high_water(),
            Self::JetStream(publisher) => publisher.is_over_high_water(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_comes_apart_into_its_payloads_with_their_tags() {
        let mut batch = Batch::default();
        for (payload, tag) in [("one", Some("a")), ("two", None), ("three", Some("c"))] {
            let _ = batch.record(|buf| {
                buf.extend_from_slice(payload.as_bytes());
                Ok::<(), ()>(())
            });
            if let Some(id) = tag {
                batch.tag("web", id.to_owned());
            }
        }
        let (bytes, records) = batch.into_records();
        let seen: Vec<(&str, Option<&str>)> = records
            .iter()
            .map(|(range, tag)| {
                (
                    std::str::from_utf8(&bytes[range.clone()]).unwrap_or_default(),
                    tag.as_ref().map(|(_, id)| id.as_str()),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [("one", Some("a")), ("two", None), ("three", Some("c"))]
        );
    }
}
