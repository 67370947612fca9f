//! The dead-letter store: one NDJSON file per destination, `<dir>/<destination>.ndjson`.
//! Each line: `{"failedAt","error","reason","attempts","offset","sourceId","event"}`.
//! Replay sends the stored events again through the destination and keeps only those
//! that fail again.
//!
//! Invariants: an append writes its entries whole or not at all (a write cut short by
//! a full disk is cut off again; if even that fails, the next append starts on a new
//! line so the fragment stays a line of its own). A line that cannot be read is never
//! dropped: it is counted, reported, and kept verbatim by replay for an operator.

use std::io::{BufRead as _, Read as _, Seek as _, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::sink::{Blame, Outgoing, Sink};
use crate::disk::{self, Access, Faults};

mod store;
pub use store::{ReplayError, Store};

/// One dead-lettered event.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    /// When it was given up on (RFC 3339).
    #[serde(rename = "failedAt")]
    pub failed_at: String,
    /// The last error, for people.
    pub error: String,
    /// The last error's reason label.
    pub reason: String,
    /// Who the failure was down to (absent in entries older than the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blame: Option<Blame>,
    /// Attempts made.
    pub attempts: u32,
    /// Offset in the event log.
    pub offset: u64,
    /// Source id.
    #[serde(rename = "sourceId")]
    pub source_id: String,
    /// The event as stored.
    pub event: Box<RawValue>,
}

/// Why a batch is given up on: a reason label, who is to blame, and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveUp {
    /// Stable reason label.
    pub reason: &'static str,
    /// Who the failure is down to.
    pub blame: Blame,
    /// For people.
    pub detail: String,
}

/// The entries of `batch`, given up on now after `attempts` (both delivery engines
/// write them alike: the time as the event log writes times).
pub fn entries(batch: &[Outgoing], why: &GiveUp, attempts: u32) -> Vec<Entry> {
    let failed_at = crate::event::format_time(chrono::Utc::now());
    batch
        .iter()
        .map(|o| Entry {
            failed_at: failed_at.clone(),
            error: why.detail.clone(),
            reason: why.reason.to_owned(),
            blame: Some(why.blame),
            attempts,
            offset: o.offset,
            source_id: o.source_id.clone(),
            event: o.event.clone(),
        })
        .collect()
}

/// The file of a destination's dead letters.
pub fn path(dir: &Path, destination: &str) -> PathBuf {
    dir.join(format!("{destination}.ndjson"))
}

/// Appends entries (and syncs: a dead letter is the only copy once the cursor moves
/// on). On failure nothing of these entries stays in the file.
pub fn append(
    dir: &Path,
    destination: &str,
    entries: &[Entry],
    max_bytes: u64,
    faults: &Faults,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut text = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut text, e)?;
        text.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path(dir, destination))?;
    let start = file.metadata()?.len();
    if start + text.len() as u64 > max_bytes {
        return Err(std::io::Error::other(format!(
            "the dead-letter store of {destination} is at its bound ({max_bytes} bytes)"
        )));
    }
    let mut last = [0u8; 1];
    if start > 0 && file.read_at(&mut last, start - 1)? == 1 && last[0] != b'\n' {
        // A fragment an earlier failure could not cut off: keep it on a line of its own.
        text.insert(0, b'\n');
    }
    let written = faults
        .write_all(&mut file, &text)
        .and_then(|()| file.flush())
        .and_then(|()| faults.check(disk::Op::Sync))
        .and_then(|()| file.sync_data());
    if let Err(error) = written {
        let _ = file.set_len(start).and_then(|()| file.sync_data());
        return Err(error);
    }
    Ok(())
}

/// What a destination's file holds.
#[derive(Debug, Default)]
pub struct Contents {
    /// The readable entries, in order.
    pub entries: Vec<Entry>,
    /// Lines that cannot be read, verbatim (kept for an operator, never replayed).
    pub unreadable: Vec<String>,
}

/// Every entry of a destination.
pub fn read(dir: &Path, destination: &str) -> std::io::Result<Contents> {
    Ok(read_whole(dir, destination)?.0)
}

/// Every entry of a destination, and how many bytes of the file that was (read as a
/// stream: the file may be large).
fn read_whole(dir: &Path, destination: &str) -> std::io::Result<(Contents, usize)> {
    let file = match std::fs::File::open(path(dir, destination)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut contents = Contents::default();
    let mut read = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        read += n;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(text) {
            Ok(e) => contents.entries.push(e),
            Err(_) => contents
                .unreadable
                .push(String::from_utf8_lossy(text).into_owned()),
        }
    }
    Ok((contents, read))
}

/// A destination's dead-letter counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The destination.
    pub destination: String,
    /// Readable entries.
    pub entries: usize,
    /// Unreadable lines (kept, reported).
    pub unreadable: usize,
}

/// Destinations that have a dead-letter file, with their counts.
pub fn list(dir: &Path) -> std::io::Result<Vec<Summary>> {
    let mut out = Vec::new();
    let files = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for file in files {
        let name = file?.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".ndjson")) {
            let contents = read(dir, id)?;
            out.push(Summary {
                destination: id.to_owned(),
                entries: contents.entries.len(),
                unreadable: contents.unreadable.len(),
            });
        }
    }
    out.sort_by(|a, b| a.destination.cmp(&b.destination));
    Ok(out)
}

/// Outcome of a replay.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Replayed {
    /// Events delivered and removed from the store.
    pub delivered: usize,
    /// Events that failed again and stay.
    pub failed: usize,
    /// Unreadable lines, kept as they were.
    pub unreadable: usize,
}

/// Sends every dead letter of `destination` through `sink` once; keeps the failures
/// and every unreadable line. Nothing may append meanwhile: [`Store::replay`] is the
/// form that lets workers append while the sends run.
pub async fn replay(dir: &Path, destination: &str, sink: &dyn Sink) -> std::io::Result<Replayed> {
    let (contents, read) = read_whole(dir, destination)?;
    let (mut result, kept) = resend(contents.entries, sink).await;
    result.unreadable = contents.unreadable.len();
    rewrite(dir, destination, (&kept, &contents.unreadable), read)?;
    Ok(result)
}

/// Sends each entry once: the outcome, and the entries that failed again (updated).
async fn resend(entries: Vec<Entry>, sink: &dyn Sink) -> (Replayed, Vec<Entry>) {
    let mut kept = Vec::new();
    let mut result = Replayed::default();
    for entry in entries {
        let outgoing = Outgoing {
            offset: entry.offset,
            source_id: entry.source_id.clone(),
            event: entry.event.clone(),
            received_at: None,
        };
        match sink.send(std::slice::from_ref(&outgoing)).await {
            Ok(()) => result.delivered += 1,
            Err(error) => {
                result.failed += 1;
                kept.push(Entry {
                    failed_at: crate::event::format_time(chrono::Utc::now()),
                    error: format!("{error:?}"),
                    reason: error.reason().to_owned(),
                    blame: Some(error.blame()),
                    attempts: entry.attempts + 1,
                    ..entry
                });
            }
        }
    }
    (result, kept)
}

/// Replaces the file's first `read` bytes (what a replay read) with the entries that
/// failed again and the unreadable lines as they were, keeping whatever was appended
/// after them.
fn rewrite(
    dir: &Path,
    destination: &str,
    (kept, unreadable): (&[Entry], &[String]),
    read: usize,
) -> std::io::Result<()> {
    let file = path(dir, destination);
    // What was appended after the part the replay read (appends only ever add; a file
    // that shrank was changed by someone else: left as it is, so nothing is lost and
    // the next replay sends again what this one delivered).
    let mut appended = Vec::new();
    match std::fs::File::open(&file) {
        Ok(mut f) => {
            if (f.metadata()?.len() as usize) < read {
                return Err(std::io::Error::other(format!(
                    "{} shrank during the replay; left as it is",
                    file.display()
                )));
            }
            f.seek(std::io::SeekFrom::Start(read as u64))?;
            f.read_to_end(&mut appended)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && read == 0 => {}
        Err(e) => return Err(e),
    }
    let mut text = Vec::new();
    for e in kept {
        serde_json::to_writer(&mut text, e)?;
        text.push(b'\n');
    }
    for line in unreadable {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    text.extend_from_slice(&appended);
    if text.is_empty() && read == 0 {
        return Ok(());
    }
    disk::replace(&file, &text, Access::Private, &Faults::default())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn entries_carry_the_time_as_the_log_writes_times() {
        let batch = [Outgoing {
            offset: 7,
            source_id: "web".into(),
            event: serde_json::value::RawValue::from_string("{}".into()).expect("json"),
            received_at: None,
        }];
        let why = GiveUp {
            reason: "status_4xx",
            blame: Blame::Events,
            detail: "400 Bad Request".to_owned(),
        };
        let made = entries(&batch, &why, 3);
        assert_eq!(made.len(), 1);
        let at = &made[0].failed_at;
        // 2026-12-07T03:46:03.123Z: milliseconds, UTC as `Z`.
        assert_eq!(at.len(), 24, "{at}");
        assert!(
            at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{at}"
        );
        assert_eq!((made[0].offset, made[0].attempts), (7, 3));
        assert_eq!(made[0].reason, "status_4xx");
    }
    use crate::delivery::sink::{SendError, Sending};
    use crate::disk::{EIO, Fault, Op};

    struct Taker(Mutex<Vec<u64>>);

    impl Sink for Taker {
        fn send<'a>(&'a self, batch: &'a [Outgoing]) -> Sending<'a> {
            Box::pin(async move {
                let mut taken = self.0.lock().map_err(|_| SendError::Permanent {
                    blame: Blame::Sluice,
                    reason: "poisoned",
                    detail: String::new(),
                })?;
                taken.extend(batch.iter().map(|o| o.offset));
                Ok(())
            })
        }
    }

    #[test]
    fn entries_read_back_with_an_old_or_unknown_blame() {
        let old = r#"{"failedAt":"2026-01-01T00:00:00.000Z","error":"e","reason":"status_4xx","attempts":1,"offset":3,"sourceId":"web","event":{}}"#;
        let newer = old.replace(r#""attempts""#, r#""blame":"cosmic_rays","attempts""#);
        let read = |line: &str| serde_json::from_str::<Entry>(line).expect("readable");
        assert_eq!(read(old).blame, None);
        assert_eq!(read(&newer).blame, Some(Blame::Unknown));
    }

    fn entry(offset: u64) -> Entry {
        Entry {
            failed_at: "2026-01-01T00:00:00.000Z".into(),
            error: "status 400".into(),
            reason: "status_4xx".into(),
            blame: Some(Blame::Events),
            attempts: 1,
            offset,
            source_id: "web".into(),
            event: RawValue::from_string(format!("{{\"messageId\":\"m{offset}\"}}")).expect("json"),
        }
    }

    #[tokio::test]
    async fn failed_appends_leave_nothing_and_unreadable_lines_survive_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = Faults::armed();
        append(dir.path(), "d", &[entry(1), entry(2)], u64::MAX, &faults).expect("append");
        let before = std::fs::read(path(dir.path(), "d")).expect("read");

        // A full disk cuts the write short, or the sync fails: nothing of it stays.
        faults.inject(Op::Write, Fault::Partial(17));
        assert!(append(dir.path(), "d", &[entry(3)], u64::MAX, &faults).is_err());
        faults.inject(Op::Sync, Fault::Fail(EIO));
        assert!(append(dir.path(), "d", &[entry(3)], u64::MAX, &faults).is_err());
        assert_eq!(std::fs::read(path(dir.path(), "d")).expect("read"), before);
        // The store is bounded: past its bound the entries are refused (they stay in
        // the log), nothing is cut.
        let bound = before.len() as u64 + 10;
        assert!(append(dir.path(), "d", &[entry(3)], bound, &faults).is_err());
        assert_eq!(std::fs::read(path(dir.path(), "d")).expect("read"), before);

        // A fragment nobody could cut off (a crash mid-write) stays a line of its own.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path(dir.path(), "d"))
            .expect("open");
        file.write_all(b"{\"failedAt\":\"2026").expect("fragment");
        append(dir.path(), "d", &[entry(3)], u64::MAX, &faults).expect("append after fragment");
        let contents = read(dir.path(), "d").expect("read");
        assert_eq!(contents.entries.len(), 3);
        assert_eq!(contents.unreadable, ["{\"failedAt\":\"2026"]);
        let summary = list(dir.path()).expect("list");
        assert_eq!(summary[0].entries, 3);
        assert_eq!(summary[0].unreadable, 1);

        let sink = Taker(Mutex::new(Vec::new()));
        let replayed = replay(dir.path(), "d", &sink).await.expect("replay");
        assert_eq!((replayed.delivered, replayed.unreadable), (3, 1));
        assert_eq!(*sink.0.lock().expect("lock"), [1, 2, 3]);
        let left = read(dir.path(), "d").expect("read");
        assert!(left.entries.is_empty());
        assert_eq!(
            left.unreadable,
            ["{\"failedAt\":\"2026"],
            "kept, not deleted"
        );
    }
}
