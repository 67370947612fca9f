//! The writer task: the only code that writes segment files.
//!
//! It runs on the async runtime rather than on a thread of its own: appends reach it
//! without a thread wake-up, and while it is busy (writing, or waiting for an
//! `fdatasync` on the blocking pool) new appends queue up and are committed together
//! next time: group commit. Writes go to the page cache and are short; syncs, which
//! wait for the disk, never block a runtime thread.
//!
//! # Failure (PostgreSQL's lesson: never trust the page cache after a failed sync)
//! When a write, sync or roll fails, every append of the group is answered
//! [`AppendError::Io`] and the writer is *failed*: it refuses appends until a repair
//! succeeds (tried before the next group and once a second). The repair reopens the
//! active segment from disk, cuts it back to the last acknowledged length (nothing past
//! it was acknowledged, and readers never see past the durable watermark), syncs it,
//! removes segment files a failed roll left behind, and continues in a **new** segment
//! numbered after every offset ever handed out: offsets are never reused, and a file
//! that failed a sync is never written again. No roll ever truncates a file
//! (`create_new`), so acknowledged records are never destroyed. (Offsets live only in
//! memory past the durable end: if the process dies between a failure and its repair,
//! the next start may hand out again offsets that no reader could ever have seen.)

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek as _, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::segment::{self, MAGIC};
use super::{AppendError, Batch, Command, HIGH_WATER, OpenError, Shared};
use crate::config::{self, Durability};
use crate::disk::{self, Faults, Op};
use crate::telemetry;

/// Most appends written by one write + sync.
const MAX_GROUP: usize = 4096;
/// How often a failed writer retries its repair, and retention runs without traffic.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The writer's metric handles, built once.
struct Meters {
    group_size: metrics::Histogram,
    full: metrics::Counter,
    appended_bytes: metrics::Counter,
    appended_records: metrics::Counter,
    write_errors: metrics::Counter,
    fsync: metrics::Histogram,
    segments_deleted: metrics::Counter,
    segments: metrics::Gauge,
    bytes: metrics::Gauge,
}

impl Meters {
    fn new() -> Self {
        Self {
            group_size: telemetry::LOG_GROUP_SIZE.with([]),
            full: telemetry::LOG_FULL.with([]),
            appended_bytes: telemetry::LOG_APPENDED_BYTES.with([]),
            appended_records: telemetry::LOG_APPENDED_RECORDS.with([]),
            write_errors: telemetry::LOG_WRITE_ERRORS.with([]),
            fsync: telemetry::LOG_FSYNC_DURATION.with([]),
            segments_deleted: telemetry::LOG_SEGMENTS_DELETED.with([]),
            segments: telemetry::LOG_SEGMENTS.with([]),
            bytes: telemetry::LOG_BYTES.with([]),
        }
    }
}

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
    faults: Faults,
    meters: Meters,
    closed: VecDeque<Closed>,
    active: Arc<File>,
    active_base: u64,
    /// Bytes written to the active segment (acknowledged or not).
    active_len: u64,
    /// Bytes of the active segment that were acknowledged.
    durable_len: u64,
    /// The next offset to hand out; never goes back.
    next_offset: u64,
    /// A write, sync or roll failed and no repair has succeeded since.
    failed: bool,
    /// The last failure was a full disk: segments no reader needs go first, whatever
    /// their age (they were delivered; ingestion matters more than keeping them).
    disk_full: bool,
}

type Reply = oneshot::Sender<Result<Range<u64>, AppendError>>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError {
    let path = path.to_owned();
    move |source| OpenError::Io { path, source }
}

impl Writer {
    /// Opens the directory, truncates a torn tail, and positions at the end.
    pub(super) fn recover(
        config: &config::Log,
        shared: Arc<Shared>,
        faults: Faults,
    ) -> Result<Self, OpenError> {
        let dir = config.dir.clone();
        let mut bases = segment::list(&dir).map_err(io_err(&dir))?;
        let newest = bases.pop();
        let mut closed = VecDeque::new();
        let mut total = 0u64;
        for base in bases {
            let path = segment::path(&dir, base);
            let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
            if meta.len() < MAGIC.len() as u64 {
                // A roll that failed before its header was written: it holds no record.
                tracing::warn!(segment = %path.display(), bytes = meta.len(), "removing an empty segment left by a failed roll");
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            total += meta.len();
            closed.push_back(Closed {
                base,
                bytes: meta.len(),
                closed_at: meta.modified().unwrap_or_else(|_| SystemTime::now()),
            });
        }
        let (active, active_base, active_len, next_offset) = match newest {
            None => {
                let file =
                    create_segment(&dir, 0, config.durability, &faults).map_err(io_err(&dir))?;
                (file, 0, MAGIC.len() as u64, 0)
            }
            Some(base) => {
                let path = segment::path(&dir, base);
                let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
                if len < MAGIC.len() as u64 {
                    // Created but its header never made it to disk: it holds no record.
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                    let file = create_segment(&dir, base, config.durability, &faults)
                        .map_err(io_err(&dir))?;
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
                        telemetry::LOG_TORN_TAILS.with([]).increment(1);
                        telemetry::LOG_TORN_BYTES.with([]).increment(torn);
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
            faults,
            meters: Meters::new(),
            closed,
            active: Arc::new(active),
            active_base,
            active_len,
            durable_len: active_len,
            next_offset,
            failed: false,
            disk_full: false,
        };
        writer.shared.total_bytes.store(total, Ordering::Relaxed);
        // Readers' holds (every saved delivery cursor) are already in place.
        writer.apply_retention(0);
        writer.publish();
        tracing::info!(dir = %writer.dir.display(), next_offset, segments = writer.closed.len() + 1, bytes = writer.shared.total_bytes.load(Ordering::Relaxed), "event log opened");
        Ok(writer)
    }

    /// Serves commands until `Close` or every sender is gone, then syncs.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = false;
        while !closing {
            let first = tokio::select! {
                command = rx.recv() => command,
                _ = housekeeping.tick() => {
                    if self.failed {
                        self.repair().await;
                    }
                    self.apply_retention(0);
                    self.publish();
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut group = Vec::new();
            let mut next = Some(first);
            let mut lingered = false;
            loop {
                while let Some(command) = next.take() {
                    match command {
                        Command::Append { batch, reply } => group.push((batch, reply)),
                        Command::Close => closing = true,
                    }
                    if !closing && group.len() < MAX_GROUP {
                        next = rx.try_recv().ok();
                    }
                }
                // The queue is empty: once per group, let the requests the runtime
                // already has ready reach it (one scheduler turn, no timer) so appends
                // that arrive together share one write, one sync and one publish.
                if closing || lingered || group.len() >= MAX_GROUP {
                    break;
                }
                lingered = true;
                tokio::task::yield_now().await;
                next = rx.try_recv().ok();
                if next.is_none() {
                    break;
                }
            }
            if !group.is_empty() {
                self.commit(group).await;
            }
        }
        if !self.failed
            && let Err(error) = self.active.sync_all()
        {
            tracing::error!(%error, "final sync of the event log failed");
        }
        tracing::info!(next_offset = self.next_offset, "event log closed");
    }

    /// Writes a group of appends with one write and (for `fsync`) one sync, then replies.
    async fn commit(&mut self, group: Vec<(Batch, Reply)>) {
        self.meters.group_size.record(group.len() as f64);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        if self.failed && !self.repair().await {
            for (_, reply) in group {
                let _ = reply.send(Err(AppendError::Io));
            }
            return;
        }
        let mut buf = Vec::new();
        let mut done: Vec<(Reply, Range<u64>)> = Vec::with_capacity(group.len());
        let mut records_total = 0u64;
        let mut group = group.into_iter();
        let mut result = Ok(());
        for (batch, reply) in group.by_ref() {
            let bytes = batch.bytes.len() as u64;
            if !self.has_room(buf.len() as u64 + bytes) {
                self.meters.full.increment(1);
                let _ = reply.send(Err(AppendError::Full));
                continue;
            }
            if self.active_len + buf.len() as u64 + bytes > self.segment_bytes
                && self.active_len + (buf.len() as u64) > MAGIC.len() as u64
            {
                // This append would overflow the segment: finish the current one first.
                let rolled = match self.write_buf(&mut buf) {
                    Ok(()) => self.roll().await,
                    Err(error) => Err(error),
                };
                if let Err(error) = rolled {
                    let _ = reply.send(Err(AppendError::Io));
                    result = Err(error);
                    break;
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
        if result.is_ok() {
            result = match self.write_buf(&mut buf) {
                Ok(()) => self.sync().await,
                Err(e) => Err(e),
            };
        }
        match result {
            Ok(()) => {
                self.durable_len = self.active_len;
                self.shared.healthy.store(true, Ordering::Relaxed);
                self.meters.appended_bytes.increment(written);
                self.meters.appended_records.increment(records_total);
                self.publish();
                for (reply, range) in done {
                    let _ = reply.send(Ok(range));
                }
            }
            Err(error) => {
                self.fail(&error);
                let refused = done.into_iter().map(|(reply, _)| reply);
                for reply in refused.chain(group.map(|(_, reply)| reply)) {
                    let _ = reply.send(Err(AppendError::Io));
                }
            }
        }
    }

    /// Whether `bytes` more fit under `max_bytes`, after deleting segments no reader
    /// needs if that makes room.
    fn has_room(&mut self, bytes: u64) -> bool {
        let fits =
            |w: &Self| w.shared.total_bytes.load(Ordering::Relaxed) + bytes <= w.shared.max_bytes;
        if fits(self) {
            return true;
        }
        self.apply_retention(bytes);
        fits(self)
    }

    /// Marks the writer failed: appends are refused until [`Writer::repair`] succeeds.
    fn fail(&mut self, error: &io::Error) {
        tracing::error!(%error, segment_base = self.active_base, "event log write failed; appends get 503 until the log is repaired from disk");
        self.meters.write_errors.increment(1);
        self.shared.healthy.store(false, Ordering::Relaxed);
        self.failed = true;
        self.disk_full = error.raw_os_error() == Some(disk::ENOSPC);
    }

    /// Recovers from a failed write, sync or roll (see the module docs); true when the
    /// log accepts appends again.
    async fn repair(&mut self) -> bool {
        match self.try_repair().await {
            Ok(()) => {
                self.failed = false;
                self.disk_full = false;
                self.shared.healthy.store(true, Ordering::Relaxed);
                tracing::info!(
                    segment_base = self.active_base,
                    next_offset = self.next_offset,
                    "event log repaired; accepting appends again"
                );
                self.publish();
                true
            }
            Err(error) => {
                tracing::error!(%error, "event log repair failed; appends still get 503");
                false
            }
        }
    }

    async fn try_repair(&mut self) -> io::Result<()> {
        // 0. A full disk: make room with what every reader has finished with.
        if self.disk_full {
            self.apply_retention(0);
        }
        // 1. Segment files newer than the active one are leftovers of a failed roll.
        for base in segment::list(&self.dir)? {
            if base > self.active_base {
                self.faults.check(Op::Remove)?;
                std::fs::remove_file(segment::path(&self.dir, base))?;
            }
        }
        // 2. Back to what was acknowledged, read from disk, not from the page cache.
        let path = segment::path(&self.dir, self.active_base);
        let file = OpenOptions::new().write(true).open(&path)?;
        self.faults.check(Op::Write)?;
        file.set_len(self.durable_len)?;
        self.faults.check(Op::Sync)?;
        file.sync_all()?;
        let scan = segment::scan(&path).map_err(io::Error::other)?;
        if scan.valid_len != self.durable_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} valid bytes where {} were acknowledged",
                    path.display(),
                    scan.valid_len,
                    self.durable_len
                ),
            ));
        }
        self.active = Arc::new(file);
        self.active_len = self.durable_len;
        self.recount();
        if self.next_offset == self.active_base {
            // No offset was ever handed out here: the segment is just its header.
            (&*self.active).seek(SeekFrom::Start(self.durable_len))?;
            return Ok(());
        }
        // 3. Go on in a new segment after every offset handed out: none is reused, and
        //    the file whose write or sync failed is never written again.
        self.roll().await
    }

    fn recount(&self) {
        let closed: u64 = self.closed.iter().map(|c| c.bytes).sum();
        self.shared
            .total_bytes
            .store(closed + self.active_len, Ordering::Relaxed);
    }

    fn write_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match self.faults.write_all(&*self.active, buf) {
            Ok(()) => {
                let written = buf.len() as u64;
                self.active_len += written;
                self.shared
                    .total_bytes
                    .fetch_add(written, Ordering::Relaxed);
                buf.clear();
                Ok(())
            }
            Err(error) => {
                // Count what may have reached the file part-way; a repair cuts it off.
                if let Ok(meta) = self.active.metadata() {
                    self.active_len = meta.len();
                    self.recount();
                }
                Err(error)
            }
        }
    }

    /// With `fsync`, waits for `fdatasync` on the blocking pool.
    async fn sync(&mut self) -> io::Result<()> {
        if self.durability == Durability::Fsync {
            let started = Instant::now();
            let file = Arc::clone(&self.active);
            let faults = self.faults.clone();
            tokio::task::spawn_blocking(move || {
                faults.check(Op::Sync)?;
                file.sync_data()
            })
            .await
            .map_err(io::Error::other)??;
            self.meters.fsync.record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Closes the active segment and starts the next one at `next_offset`.
    /// With `fsync` the old segment is synced first: the records of the group being
    /// committed that went into it are acknowledged with the group. (`os` promises
    /// no sync; syncing a whole segment there stalled requests for milliseconds.)
    /// The syncs and the file creation run on the blocking pool: a roll never stalls a
    /// runtime thread (and with it every request that thread serves).
    async fn roll(&mut self) -> io::Result<()> {
        let old = Arc::clone(&self.active);
        let (dir, base, durability) = (self.dir.clone(), self.next_offset, self.durability);
        let faults = self.faults.clone();
        let file = tokio::task::spawn_blocking(move || {
            if durability == Durability::Fsync {
                faults.check(Op::Sync)?;
                old.sync_data()?;
            }
            create_segment(&dir, base, durability, &faults)
        })
        .await
        .map_err(io::Error::other)??;
        self.closed.push_back(Closed {
            base: self.active_base,
            bytes: self.active_len,
            closed_at: SystemTime::now(),
        });
        self.active = Arc::new(file);
        self.active_base = self.next_offset;
        self.active_len = MAGIC.len() as u64;
        self.durable_len = self.active_len;
        self.recount();
        self.apply_retention(0);
        self.publish();
        Ok(())
    }

    /// Deletes closed segments that no reader holds and that are past retention, or,
    /// while the log is above its high-water mark (counting `extra` bytes about to be
    /// written) or its disk is full, whatever their age, oldest first.
    fn apply_retention(&mut self, extra: u64) {
        let lowest_hold = self.shared.lowest_hold();
        let high_water = (self.shared.max_bytes as f64 * HIGH_WATER) as u64;
        let now = SystemTime::now();
        while let Some(oldest) = self.closed.front() {
            let next_base = self.closed.get(1).map_or(self.active_base, |c| c.base);
            let unheld = lowest_hold.is_none_or(|hold| hold >= next_base);
            let expired = now
                .duration_since(oldest.closed_at)
                .is_ok_and(|age| age >= self.retention);
            let pressed = self.disk_full
                || self.shared.total_bytes.load(Ordering::Relaxed) + extra > high_water;
            if !(unheld && (expired || pressed)) {
                break;
            }
            let path = segment::path(&self.dir, oldest.base);
            let removed = self
                .faults
                .check(Op::Remove)
                .and_then(|()| std::fs::remove_file(&path));
            if let Err(error) = removed {
                tracing::warn!(%error, segment = %path.display(), "cannot delete a segment past retention");
                break;
            }
            if !expired {
                tracing::info!(segment = %path.display(), disk_full = self.disk_full, "deleted a delivered segment early to make room");
            }
            self.shared
                .total_bytes
                .fetch_sub(oldest.bytes, Ordering::Relaxed);
            self.meters.segments_deleted.increment(1);
            self.closed.pop_front();
        }
    }

    /// Publishes the durable watermark (every offset below it is durable or was never
    /// stored) and the size gauges. Never called while failed writes are pending.
    fn publish(&self) {
        let segments = self.closed.len() as u64 + 1;
        self.shared.segments.store(segments, Ordering::Relaxed);
        if !self.failed {
            self.shared
                .next_offset
                .store(self.next_offset, Ordering::Release);
            self.shared.appended.send_if_modified(|current| {
                let changed = *current != self.next_offset;
                *current = self.next_offset;
                changed
            });
        }
        self.meters.segments.set(segments as f64);
        self.meters
            .bytes
            .set(self.shared.total_bytes.load(Ordering::Relaxed) as f64);
    }
}

/// Creates a new segment with its header; never opens an existing file (a roll must
/// not truncate anything). With `fsync`, the file and its directory entry are synced
/// so the segment survives a power cut. On failure the file is removed again if it
/// can be (a repair removes it otherwise).
fn create_segment(
    dir: &Path,
    base: u64,
    durability: Durability,
    faults: &Faults,
) -> io::Result<File> {
    let path = segment::path(dir, base);
    faults.check(Op::Create)?;
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)?;
    let finished = faults.write_all(&file, MAGIC).and_then(|()| {
        if durability == Durability::Fsync {
            faults.check(Op::Sync)?;
            file.sync_all()?;
            disk::sync_dir(dir, faults)?;
        }
        Ok(())
    });
    match finished {
        Ok(()) => Ok(file),
        Err(error) => {
            let _ = std::fs::remove_file(&path);
            Err(error)
        }
    }
}
