//! The dead-letter store: one NDJSON file per destination, `<dir>/<destination>.ndjson`.
//! Each line: `{"failedAt","error","reason","attempts","offset","sourceId","event"}`.
//! Replay sends the stored events again through the destination and keeps only those
//! that fail again.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::sink::{Outgoing, Sink};

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

/// The file of a destination's dead letters.
pub fn path(dir: &Path, destination: &str) -> PathBuf {
    dir.join(format!("{destination}.ndjson"))
}

/// Appends entries (and syncs: a dead letter is the only copy once the cursor moves on).
pub fn append(dir: &Path, destination: &str, entries: &[Entry]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut text = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut text, e)?;
        text.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(dir, destination))?;
    file.write_all(&text)?;
    file.sync_data()
}

/// Every entry of a destination (unreadable lines are skipped and counted).
pub fn read(dir: &Path, destination: &str) -> std::io::Result<(Vec<Entry>, usize)> {
    let file = match std::fs::File::open(path(dir, destination)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    let mut bad = 0;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(e) => entries.push(e),
            Err(_) => bad += 1,
        }
    }
    Ok((entries, bad))
}

/// Destinations that have a dead-letter file, with their entry counts.
pub fn list(dir: &Path) -> std::io::Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".ndjson")) {
            let (entries, bad) = read(dir, id)?;
            out.push((id.to_owned(), entries.len() + bad));
        }
    }
    out.sort();
    Ok(out)
}

/// Outcome of a replay.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Replayed {
    /// Events delivered and removed from the store.
    pub delivered: usize,
    /// Events that failed again and stay.
    pub failed: usize,
}

/// Sends every dead letter of `destination` through `sink` once; keeps the failures.
pub async fn replay(dir: &Path, destination: &str, sink: &dyn Sink) -> std::io::Result<Replayed> {
    let (entries, _) = read(dir, destination)?;
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
                    attempts: entry.attempts + 1,
                    ..entry
                });
            }
        }
    }
    // Rewrite: the kept entries replace the file (temp + rename).
    let target = path(dir, destination);
    let tmp = target.with_extension("ndjson.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        for e in &kept {
            serde_json::to_writer(&mut file, e)?;
            file.write_all(b"\n")?;
        }
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &target)?;
    Ok(result)
}
