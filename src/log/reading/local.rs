//! A destination's reading of the local log: from its persisted cursor, with a hold on
//! the log's segments it still needs.
//!
//! Invariants: the cursor (the first event not settled) only moves past an event once it
//! is settled as done; the log keeps every segment at or after it. Events are handed out
//! in order, and while some wait for a retry no newer ones are read, so a failing
//! destination holds only its own place (and memory for one read).
//!
//! Files, under the log directory: `delivery/<destination id>.cursor`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backlog::Backlog;
use super::cursor::{self, CursorError};
use super::{Handed, Reading, Settle};
use crate::catalog;
use crate::log::{Log, ReadError, Reader};
use crate::telemetry;

/// How often the cursor is saved while events flow.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How often a destination whose cursor cannot be read tries it again.
const CURSOR_RETRY: Duration = Duration::from_secs(10);
/// Records read at once, at most: a destination holds what it read at no cost to the
/// others, and reads past what it can send at once so a sparse one moves quickly.
const READ_MOST: usize = 1000;
/// Events given back due within this of each other come back together.
const SAME_MOMENT: Duration = Duration::from_millis(5);
/// How long an unreadable log waits before it is read again.
const READ_RETRY: Duration = Duration::from_secs(5);

/// Cursor directory inside the log directory.
pub fn cursor_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("delivery")
}

/// One destination's reading of the local log.
pub struct Local {
    id: String,
    log: Log,
    /// `None` only while a read runs on a blocking thread.
    reader: Option<Reader>,
    appended: tokio::sync::watch::Receiver<u64>,
    cursor_dir: PathBuf,
    /// Positions handed out, in order, and whether each is settled as done; settled
    /// ones leave from the front.
    out: VecDeque<(u64, bool)>,
    /// Events given back, and when they are due again.
    again: Vec<(Instant, Vec<Handed<()>>)>,
    /// Past the last record read.
    read_upto: u64,
    /// The cursor last saved, and when.
    saved: (u64, std::time::Instant),
    backlog: Arc<Backlog>,
}

impl Local {
    /// Opens `id`'s reading at its saved cursor, placing its hold; a new destination
    /// starts at `new_from` (the log's end when its supervisor last read a catalog
    /// without it). A cursor that cannot be read pauses the destination, said every
    /// `CURSOR_RETRY`, with the whole log held, until an operator repairs or removes the
    /// file. `None`: stopped meanwhile, or the log cannot be read (said).
    pub async fn open(
        log: &Log,
        id: &str,
        new_from: u64,
        backlog: Arc<Backlog>,
        stop: &CancellationToken,
    ) -> Option<Self> {
        let start = loop {
            match start_cursor_from(log, id, new_from) {
                Ok(start) => break start,
                Err(error) => {
                    tracing::error!(destination = %id, %error, "delivery paused: fix or remove the cursor file (removing it starts from the log's end); the log keeps everything meanwhile");
                    if super::stopped_while(stop, CURSOR_RETRY).await {
                        return None;
                    }
                }
            }
        };
        tracing::info!(destination = %id, cursor = start, "delivery started");
        let reader = match Reader::open(log.dir(), start) {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(destination = %id, %error, "cannot read the event log; delivery stopped");
                return None;
            }
        };
        if let Some(oldest) = reader.oldest().filter(|&oldest| oldest > start) {
            tracing::error!(destination = %id, cursor = start, oldest, lost = oldest - start, "events this destination had not read were deleted by retention; delivering from the oldest kept event");
            telemetry::DELIVERY_GAP.with([id]).increment(oldest - start);
        }
        backlog.settled(start);
        Some(Self {
            id: id.to_owned(),
            appended: log.subscribe(),
            cursor_dir: cursor_dir(log.dir()),
            log: log.clone(),
            reader: Some(reader),
            out: VecDeque::new(),
            again: Vec::new(),
            read_upto: start,
            saved: (start, std::time::Instant::now()),
            backlog,
        })
    }

    /// The first event not settled as done.
    fn cursor(&self) -> u64 {
        self.out
            .front()
            .map_or(self.read_upto, |&(position, _)| position)
    }

    /// The events given back that are due first, once they are (attempts counted);
    /// `None` if stopped meanwhile.
    async fn due_again(&mut self, stop: &CancellationToken) -> Option<Vec<Handed<()>>> {
        let due = self.again.iter().map(|(at, _)| *at).min()?;
        tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            () = tokio::time::sleep_until(due) => {}
        }
        // Events given back for the same moment come back together, in order, though
        // each was given back a little after the other.
        let now = Instant::now().max(due + SAME_MOMENT);
        let mut handed = Vec::new();
        self.again.retain_mut(|(at, events)| {
            let waits = *at > now;
            if !waits {
                handed.append(events);
            }
            waits
        });
        for h in &mut handed {
            h.attempts = h.attempts.saturating_add(1);
        }
        handed.sort_by_key(|h| h.position);
        Some(handed)
    }

    /// Reads up to `most` new records (blocking file I/O off the runtime's threads).
    async fn read(&mut self, most: usize) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        let Some(mut reader) = self.reader.take() else {
            return Ok(Vec::new());
        };
        reader.set_limit(self.log.next_offset());
        match tokio::task::spawn_blocking(move || read_chunk(reader, most)).await {
            Ok((reader, read)) => {
                self.reader = Some(reader);
                read
            }
            // The reader is lost with the panicked read: reported as unreadable (the
            // worker's reading ends and its supervisor starts it again).
            Err(error) => {
                tracing::error!(destination = %self.id, %error, "reading the event log failed");
                Ok(Vec::new())
            }
        }
    }

    fn save_if_due(&mut self, idle: bool) {
        let cursor = self.cursor();
        if cursor != self.saved.0 && (idle || self.saved.1.elapsed() >= SAVE_EVERY) {
            save_cursor(&self.cursor_dir, &self.id, cursor);
            self.saved = (cursor, std::time::Instant::now());
        }
    }

    /// A destination left the catalog: its backlog is released (retention may delete
    /// it), its cursor deleted, so adding it again later starts with new events. Said
    /// loudly: the undelivered events will not be delivered.
    pub fn forget(log: &Log, id: &str) {
        let dir = cursor_dir(log.dir());
        let cursor = cursor::load(&dir, id).ok().flatten();
        let undelivered = cursor.map(|c| log.next_offset().saturating_sub(c));
        log.release(id);
        match std::fs::remove_file(cursor::path(&dir, id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(destination = id, %error, "cannot delete the cursor of a removed destination")
            }
        }
        telemetry::DELIVERY_DESTINATIONS_REMOVED
            .with([id])
            .increment(1);
        tracing::warn!(destination = id, undelivered = ?undelivered, "destination removed from the catalog: its undelivered events will not be delivered; adding it again starts with new events (its dead letters are kept)");
    }
}

impl Reading for Local {
    type Ticket = ();

    async fn next(&mut self, most: usize, stop: &CancellationToken) -> Vec<Handed<()>> {
        loop {
            if stop.is_cancelled() {
                return Vec::new();
            }
            if !self.again.is_empty() {
                return self.due_again(stop).await.unwrap_or_default();
            }
            if self.reader.is_none() {
                return Vec::new();
            }
            let records = match self.read(most).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(destination = %self.id, %error, "event log unreadable; delivery paused");
                    if super::stopped_while(stop, READ_RETRY).await {
                        return Vec::new();
                    }
                    continue;
                }
            };
            let Some(&(last, _)) = records.last() else {
                if self.out.is_empty() {
                    self.backlog.settled(self.cursor());
                }
                self.save_if_due(true);
                tokio::select! {
                    () = stop.cancelled() => return Vec::new(),
                    _ = self.appended.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            self.read_upto = last + 1;
            self.out
                .extend(records.iter().map(|(offset, _)| (*offset, false)));
            self.backlog.advance(self.cursor());
            return records
                .into_iter()
                .map(|(position, payload)| Handed {
                    position,
                    payload: Bytes::from(payload),
                    attempts: 1,
                    ticket: (),
                })
                .collect();
        }
    }

    fn read_size(&self, sendable: usize) -> usize {
        sendable.max(READ_MOST)
    }

    async fn settle(&mut self, handed: Vec<Handed<()>>, how: Settle) {
        if handed.is_empty() {
            return;
        }
        match how {
            Settle::Retry(delay) => self.again.push((Instant::now() + delay, handed)),
            Settle::Done => {
                for h in &handed {
                    if let Ok(i) = self.out.binary_search_by_key(&h.position, |&(p, _)| p) {
                        self.out[i].1 = true;
                    }
                }
                while self.out.front().is_some_and(|&(_, done)| done) {
                    self.out.pop_front();
                }
                let cursor = self.cursor();
                if self.out.is_empty() {
                    self.backlog.settled(cursor);
                } else {
                    self.backlog.advance(cursor);
                }
                self.log.hold(&self.id, cursor);
                self.save_if_due(false);
            }
        }
    }

    fn backlog_bytes(&self, position: u64) -> Option<u64> {
        Some(self.log.backlog_bytes(position))
    }

    fn waiting_since(&self, at: Option<DateTime<Utc>>) {
        self.backlog.waiting(self.cursor(), at);
    }

    async fn close(mut self) {
        self.save_if_due(true);
        tracing::info!(destination = %self.id, cursor = self.cursor(), "delivery stopped");
    }
}

type Read = Result<Vec<(u64, Vec<u8>)>, ReadError>;

fn read_chunk(mut reader: Reader, most: usize) -> (Reader, Read) {
    let mut out = Vec::new();
    while out.len() < most.max(1) {
        match reader.next() {
            Some(Ok(record)) => out.push(record),
            // What was read before the error is handed out; the next read meets it
            // again (the reader does not move past a record it could not read).
            Some(Err(_)) if !out.is_empty() => break,
            Some(Err(e)) => return (reader, Err(e)),
            None => break,
        }
    }
    (reader, Ok(out))
}

/// The holds to place on the log before it opens (and so before retention first
/// runs): every destination of the catalog at its saved cursor, or, when its cursor
/// cannot be read, at the very start (nothing of its backlog may go). A destination
/// with no saved cursor is new and holds nothing yet.
pub fn saved_holds(log_dir: &Path, snapshot: &catalog::Snapshot) -> Vec<(String, u64)> {
    let dir = cursor_dir(log_dir);
    snapshot
        .destinations()
        .iter()
        .filter_map(|d| match cursor::load(&dir, &d.id) {
            Ok(Some(offset)) => Some((d.id.clone(), offset)),
            Ok(None) => None,
            Err(_) => Some((d.id.clone(), 0)),
        })
        .collect()
}

/// The cursor of a destination, with its hold placed on the log: the saved one
/// (clamped, with an ERROR, when it is beyond the log's end), or for a new
/// destination the log's current end, saved at once.
///
/// A cursor file that cannot be read is an error: the destination then holds the
/// whole log (nothing of its backlog is deleted) and does not deliver until an
/// operator repairs or removes the file.
pub fn start_cursor(log: &Log, id: &str) -> Result<u64, CursorError> {
    start_cursor_from(log, id, log.next_offset())
}

/// As [`start_cursor`], but a new destination starts at `new_from` (at most the log's
/// end): the log's end when the supervisor last read a catalog without it, so no event
/// accepted once it appeared slips past it.
pub fn start_cursor_from(log: &Log, id: &str, new_from: u64) -> Result<u64, CursorError> {
    let dir = cursor_dir(log.dir());
    let end = log.next_offset();
    let offset = match cursor::load(&dir, id) {
        Ok(Some(offset)) if offset > end => {
            tracing::error!(
                destination = id,
                cursor = offset,
                log_end = end,
                "delivery cursor is beyond the end of the event log (the log lost its tail); delivering from the end"
            );
            cursor_error(id, "ahead");
            save_cursor(&dir, id, end);
            end
        }
        Ok(Some(offset)) => offset,
        Ok(None) => {
            let start = new_from.min(end);
            save_cursor(&dir, id, start);
            start
        }
        Err(error) => {
            log.hold(id, 0);
            cursor_error(
                id,
                match error {
                    CursorError::Unreadable { .. } => "unreadable",
                    CursorError::Corrupt { .. } => "corrupt",
                },
            );
            return Err(error);
        }
    };
    log.hold(id, offset);
    Ok(offset)
}

fn cursor_error(id: &str, reason: &'static str) {
    telemetry::DELIVERY_CURSOR_ERRORS
        .with([id, reason])
        .increment(1);
}

fn save_cursor(dir: &Path, id: &str, offset: u64) {
    if let Err(error) = cursor::save(dir, id, offset) {
        tracing::warn!(destination = id, %error, "cannot save the delivery cursor");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::log::Batch;

    async fn log_of(dir: &Path, records: usize) -> Log {
        let cfg = config::Log {
            dir: dir.join("log"),
            ..config::Log::default()
        };
        let log = Log::open(&cfg).expect("open");
        let payloads = (0..records).map(|n| format!("{{\"n\":{n}}}"));
        log.append(Batch::of(payloads)).await.expect("append");
        log
    }

    fn positions(handed: &[Handed<()>]) -> Vec<(u64, u32)> {
        handed.iter().map(|h| (h.position, h.attempts)).collect()
    }

    fn saved(log: &Log) -> Option<u64> {
        cursor::load(&cursor_dir(log.dir()), "d").expect("readable")
    }

    #[tokio::test(start_paused = true)]
    async fn events_given_back_come_again_before_newer_ones_and_hold_the_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_of(dir.path(), 5).await;
        let stop = CancellationToken::new();
        let backlog = Arc::new(Backlog::default());
        let mut reading = Local::open(&log, "d", 0, Arc::clone(&backlog), &stop)
            .await
            .expect("opens");
        let mut first = reading.next(3, &stop).await;
        assert_eq!(positions(&first), [(0, 1), (1, 1), (2, 1)]);
        let given_back = first.split_off(1);
        reading.settle(first, Settle::Done).await;
        reading
            .settle(given_back, Settle::Retry(Duration::from_millis(20)))
            .await;
        assert_eq!(
            reading.cursor(),
            1,
            "the cursor waits for what was given back"
        );
        assert_eq!(backlog.lag(5, Utc::now()).0, 4);

        let mut again = reading.next(3, &stop).await;
        assert_eq!(
            positions(&again),
            [(1, 2), (2, 2)],
            "given back, handed out again before any newer event, attempts counted"
        );
        let second = again.split_off(1);
        reading.settle(second, Settle::Done).await;
        assert_eq!(
            reading.cursor(),
            1,
            "settled out of order: still waits for 1"
        );
        reading.settle(again, Settle::Done).await;
        assert_eq!(reading.cursor(), 3);

        let rest = reading.next(10, &stop).await;
        assert_eq!(positions(&rest), [(3, 1), (4, 1)]);
        reading.close().await;
        assert_eq!(
            saved(&log),
            Some(3),
            "closed with 3 and 4 unsettled: they come again"
        );
    }

    #[tokio::test]
    async fn a_new_destination_starts_where_it_is_told_and_an_old_one_at_its_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_of(dir.path(), 5).await;
        let stop = CancellationToken::new();
        let open = |new_from| Local::open(&log, "d", new_from, Arc::default(), &stop);
        let mut reading = open(2).await.expect("opens");
        assert_eq!(
            saved(&log),
            Some(2),
            "a new destination's cursor is saved at once"
        );
        let handed = reading.next(10, &stop).await;
        assert_eq!(positions(&handed), [(2, 1), (3, 1), (4, 1)]);
        reading.settle(handed, Settle::Done).await;
        reading.close().await;
        assert_eq!(saved(&log), Some(5));
        let mut reading = open(0).await.expect("opens again");
        stop.cancel();
        assert!(
            reading.next(10, &stop).await.is_empty(),
            "nothing new: it resumes at its cursor, and returns empty once stopped"
        );
    }
}
