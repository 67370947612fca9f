//! The writer task: the only code that writes segment files.
//!
//! It runs on the async runtime rather than on a thread of its own: appends reach it
//! without a thread wake-up, and while it is busy (writing, or waiting for an
//! `fdatasync` on the blocking pool) new appends queue up and are committed together
//! next time: group commit. Writes go to the page cache and are short; syncs, which
//! wait for the disk, never block a runtime thread.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::segment::{self, MAGIC};
use super::{AppendError, Batch, Command, OpenError, Shared};
use crate::config::{self, Durability};
use crate::telemetry;

/// Most appends written by one write + sync.
const MAX_GROUP: usize = 4096;

struct Closed {
    base: u64,
    bytes: u64,
    closed_at: SystemTime,
}

pub(super) struct Writer {
    dir: PathBuf,
    durability: Durability,
    segment_bytes: u64,
    retention: Duration,
    shared: Arc<Shared>,
    closed: VecDeque<Closed>,
    active: Arc<File>,
    active_base: u64,
    active_len: u64,
    next_offset: u64,
}

type Reply = oneshot::Sender<Result<Range<u64>, AppendError>>;

impl Writer {
    /// Opens the directory, truncates a torn tail, and positions at the end.
    pub(super) fn recover(config: &config::Log, shared: Arc<Shared>) -> Result<Self, OpenError> {
        let dir = config.dir.clone();
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io { path, source }
        };
        let bases = segment::list(&dir).map_err(io_err(&dir))?;
        let mut closed = VecDeque::new();
        let mut total = 0u64;
        for &base in bases.iter().rev().skip(1).rev() {
            let path = segment::path(&dir, base);
            let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
            total += meta.len();
            closed.push_back(Closed {
                base,
                bytes: meta.len(),
                closed_at: meta.modified().unwrap_or_else(|_| SystemTime::now()),
            });
        }
        let (active, active_base, active_len, next_offset) = match bases.last() {
            None => {
                let file = create_segment(&dir, 0, config.durability).map_err(io_err(&dir))?;
                (file, 0, MAGIC.len() as u64, 0)
            }
            Some(&base) => {
                let path = segment::path(&dir, base);
                let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
                if len < MAGIC.len() as u64 {
                    // Created but its header never made it to disk: start it afresh.
                    let file =
                        create_segment(&dir, base, config.durability).map_err(io_err(&dir))?;
                    (file, base, MAGIC.len() as u64, base)
                } else {
                    let scan = segment::scan(&path)?;
                    let mut file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_err(&path))?;
                    if scan.valid_len < scan.file_len {
                        let torn = scan.file_len - scan.valid_len;
                        tracing::warn!(segment = %path.display(), torn_bytes = torn, "truncating torn tail of the event log");
                        file.set_len(scan.valid_len).map_err(io_err(&path))?;
                        file.sync_all().map_err(io_err(&path))?;
                        metrics::counter!(telemetry::LOG_TORN_TAILS).increment(1);
                        metrics::counter!(telemetry::LOG_TORN_BYTES).increment(torn);
                    }
                    file.seek(SeekFrom::Start(scan.valid_len))
                        .map_err(io_err(&path))?;
                    (file, base, scan.valid_len, base + scan.records)
                }
            }
        };
        total += active_len;
        let mut writer = Self {
            dir,
            durability: config.durability,
            segment_bytes: config.segment_bytes,
            retention: Duration::from_secs(config.retention_hours.saturating_mul(3600)),
            shared,
            closed,
            active: Arc::new(active),
            active_base,
            active_len,
            next_offset,
        };
        writer.shared.total_bytes.store(total, Ordering::Relaxed);
        writer.apply_retention();
        writer.publish();
        tracing::info!(dir = %writer.dir.display(), next_offset, segments = writer.closed.len() + 1, bytes = total, "event log opened");
        Ok(writer)
    }

    /// Serves commands until `Close` or every sender is gone, then syncs.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut closing = false;
        while !closing {
            let Some(first) = rx.recv().await else {
                break;
            };
            let mut group = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append { batch, reply } => group.push((batch, reply)),
                    Command::Close => closing = true,
                }
                if !closing && group.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit(group).await;
            }
        }
        if let Err(error) = self.active.sync_all() {
            tracing::error!(%error, "final sync of the event log failed");
        }
        tracing::info!(next_offset = self.next_offset, "event log closed");
    }

    /// Writes a group of appends with one write and (for `fsync`) one sync, then replies.
    async fn commit(&mut self, group: Vec<(Batch, Reply)>) {
        metrics::histogram!(telemetry::LOG_GROUP_SIZE).record(group.len() as f64);
        let mut buf = Vec::new();
        let mut done: Vec<(Reply, Range<u64>)> = Vec::with_capacity(group.len());
        let mut records_total = 0u64;
        for (batch, reply) in group {
            let bytes = batch.bytes.len() as u64;
            let on_disk = self.shared.total_bytes.load(Ordering::Relaxed) + buf.len() as u64;
            if on_disk + bytes > self.shared.max_bytes {
                metrics::counter!(telemetry::LOG_FULL).increment(1);
                let _ = reply.send(Err(AppendError::Full));
                continue;
            }
            if self.active_len + buf.len() as u64 + bytes > self.segment_bytes
                && self.active_len + (buf.len() as u64) > MAGIC.len() as u64
            {
                // This append would overflow the segment: finish the current one first.
                let result = self.write_buf(&mut buf).and_then(|()| self.roll());
                if let Err(error) = result {
                    self.fail(&error, &mut done);
                    let _ = reply.send(Err(AppendError::Io));
                    continue;
                }
            }
            let first = self.next_offset;
            if buf.is_empty() {
                buf = batch.bytes;
            } else {
                buf.extend_from_slice(&batch.bytes);
            }
            self.next_offset += batch.count;
            records_total += batch.count;
            done.push((reply, first..self.next_offset));
        }
        let written = buf.len() as u64;
        let result = match self.write_buf(&mut buf) {
            Ok(()) => self.sync().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.shared.healthy.store(true, Ordering::Relaxed);
                metrics::counter!(telemetry::LOG_APPENDED_BYTES).increment(written);
                metrics::counter!(telemetry::LOG_APPENDED_RECORDS).increment(records_total);
                self.publish();
                for (reply, range) in done {
                    let _ = reply.send(Ok(range));
                }
            }
            Err(error) => self.fail(&error, &mut done),
        }
    }

    /// Reports an I/O failure to every pending append and rewinds the active segment
    /// to its last good length so no partial record stays behind.
    fn fail(&mut self, error: &io::Error, done: &mut Vec<(Reply, Range<u64>)>) {
        tracing::error!(%error, segment_base = self.active_base, "event log write failed; requests get 503");
        metrics::counter!(telemetry::LOG_WRITE_ERRORS).increment(1);
        self.shared.healthy.store(false, Ordering::Relaxed);
        let rewound = self.active.set_len(self.active_len).is_ok()
            && (&*self.active)
                .seek(SeekFrom::Start(self.active_len))
                .is_ok();
        if let Some((_, first)) = done.first() {
            // Offsets are reused only when the file really went back.
            if rewound {
                self.next_offset = first.start.max(self.active_base);
            }
        }
        for (reply, _) in done.drain(..) {
            let _ = reply.send(Err(AppendError::Io));
        }
        self.publish();
    }

    fn write_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        (&*self.active).write_all(buf)?;
        self.active_len += buf.len() as u64;
        self.shared
            .total_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        buf.clear();
        Ok(())
    }

    /// With `fsync`, waits for `fdatasync` on the blocking pool.
    async fn sync(&mut self) -> io::Result<()> {
        if self.durability == Durability::Fsync {
            let started = Instant::now();
            let file = Arc::clone(&self.active);
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(io::Error::other)??;
            metrics::histogram!(telemetry::LOG_FSYNC_DURATION)
                .record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Closes the active segment and starts the next one.
    /// With `fsync` the old segment is synced first: the records of the group being
    /// committed that went into it are acknowledged with the group. (`os` promises
    /// no sync; syncing a whole segment there stalled requests for milliseconds.)
    fn roll(&mut self) -> io::Result<()> {
        if self.durability == Durability::Fsync {
            self.active.sync_data()?;
        }
        let file = create_segment(&self.dir, self.next_offset, self.durability)?;
        self.closed.push_back(Closed {
            base: self.active_base,
            bytes: self.active_len,
            closed_at: SystemTime::now(),
        });
        self.active = Arc::new(file);
        self.active_base = self.next_offset;
        self.active_len = MAGIC.len() as u64;
        self.shared
            .total_bytes
            .fetch_add(MAGIC.len() as u64, Ordering::Relaxed);
        self.apply_retention();
        self.publish();
        Ok(())
    }

    /// Deletes closed segments past retention that no reader holds.
    fn apply_retention(&mut self) {
        let lowest_hold = self.shared.lowest_hold();
        let now = SystemTime::now();
        while let Some(oldest) = self.closed.front() {
            let next_base = self.closed.get(1).map_or(self.active_base, |c| c.base);
            let expired = now
                .duration_since(oldest.closed_at)
                .is_ok_and(|age| age >= self.retention);
            let unheld = lowest_hold.is_none_or(|hold| hold >= next_base);
            if !(expired && unheld) {
                break;
            }
            let path = segment::path(&self.dir, oldest.base);
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, segment = %path.display(), "cannot delete expired segment");
                break;
            }
            self.shared
                .total_bytes
                .fetch_sub(oldest.bytes, Ordering::Relaxed);
            metrics::counter!(telemetry::LOG_SEGMENTS_DELETED).increment(1);
            self.closed.pop_front();
        }
    }

    fn publish(&self) {
        let segments = self.closed.len() as u64 + 1;
        self.shared.segments.store(segments, Ordering::Relaxed);
        self.shared
            .next_offset
            .store(self.next_offset, Ordering::Release);
        self.shared.appended.send_replace(self.next_offset);
        metrics::gauge!(telemetry::LOG_SEGMENTS).set(segments as f64);
        metrics::gauge!(telemetry::LOG_BYTES)
            .set(self.shared.total_bytes.load(Ordering::Relaxed) as f64);
    }
}

/// Creates a segment with its header; with `fsync`, the file and its directory entry
/// are synced so the segment survives a power cut.
fn create_segment(dir: &Path, base: u64, durability: Durability) -> io::Result<File> {
    let path = segment::path(dir, base);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    file.write_all(MAGIC)?;
    if durability == Durability::Fsync {
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}
