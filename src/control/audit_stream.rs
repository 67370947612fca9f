//! The audit trail outside the database: every event, once committed, appended to an
//! NDJSON file (`control.audit_stream`), one sealed event per line, fsynced per batch,
//! and/or POSTed as NDJSON batches to a webhook (`control.audit_webhook`) signed with
//! `X-Signature: sha256=<HMAC-SHA256(control.audit_webhook_secret, body)>`, at least once
//! (the last event a receiver acknowledged is kept in `log.dir/audit-webhook.cursor`).
//!
//! The file is the chain itself (each line carries its sequence number, previous hash and
//! keyed MAC), so it verifies on its own, and `sluice admin audit verify --stream FILE`
//! proves that the database still holds exactly the events that were streamed: an event
//! edited, deleted or a chain rewritten from the start in the database no longer matches
//! the copy that left it. Point it at storage the database's administrators cannot
//! rewrite (another disk, an append-only mount, a log shipper's spool).

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::audit::{self, Broken, ChainKey, Event};
use super::store::{Store, StoreError, audit_log};

/// Events read from the database per batch.
const BATCH: i64 = 500;

/// Where a stream goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Appended to this file.
    File(PathBuf),
    /// POSTed to this URL, signed with the secret; the acknowledged position is kept in
    /// the cursor file.
    Webhook {
        /// The receiver.
        url: String,
        /// The HMAC key.
        secret: Vec<u8>,
        /// Where the last acknowledged sequence number is kept.
        cursor: PathBuf,
    },
}

impl Sink {
    /// What `run` logs it as (a webhook's URL without its path or query).
    fn label(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Webhook { url, .. } => url.split('/').take(3).collect::<Vec<_>>().join("/"),
        }
    }

    /// The last event the sink holds.
    fn resume(&self) -> Result<u64, StreamError> {
        match self {
            Self::File(path) => resume(path),
            Self::Webhook { cursor, .. } => match std::fs::read_to_string(cursor) {
                Ok(text) => text.trim().parse().map_err(|_| StreamError::Corrupt {
                    path: cursor.clone(),
                    line: 1,
                    why: "not a sequence number".into(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(io(cursor)(e)),
            },
        }
    }
}

/// The sinks `config` names (`control.audit_stream`, `control.audit_webhook`).
pub fn sinks(config: &crate::config::Config) -> Vec<Sink> {
    let mut out = Vec::new();
    let c = &config.control;
    if !c.audit_stream.as_os_str().is_empty() {
        out.push(Sink::File(c.audit_stream.clone()));
    }
    if !c.audit_webhook.is_empty() {
        out.push(Sink::Webhook {
            url: c.audit_webhook.clone(),
            secret: c.audit_webhook_secret.expose().as_bytes().to_vec(),
            cursor: config.log.dir.join("audit-webhook.cursor"),
        });
    }
    out
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, as Sluice's webhook destinations sign.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `events` as one NDJSON body; on a 2xx answer, keeps the newest as the cursor.
async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &[u8],
    cursor: &Path,
    events: &[Event],
) -> Result<(), StreamError> {
    let mut body = String::new();
    for e in events {
        body.push_str(&serde_json::to_string(e).unwrap_or_default());
        body.push('\n');
    }
    let failed = |why: String| StreamError::Io {
        path: PathBuf::from(url.split('?').next().unwrap_or_default()),
        source: std::io::Error::other(why),
    };
    let answer = http
        .post(url)
        .header("content-type", "application/x-ndjson")
        .header("x-signature", signature(secret, body.as_bytes()))
        .body(body)
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    if !answer.status().is_success() {
        return Err(failed(format!("HTTP {}", answer.status())));
    }
    let newest = events.last().map_or(0, |e| e.seq);
    let tmp = cursor.with_extension("tmp");
    std::fs::write(&tmp, newest.to_string()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, cursor).map_err(io(cursor))
}

/// Why a stream could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The file could not be read or written.
    #[error("audit stream {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an audit event.
    #[error("audit stream {path} line {line}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its line number (from 1).
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the database and the stream part ways.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The stream's own chain is broken (the file was edited).
    #[error("the stream itself is broken: {0}")]
    Stream(Broken),
    /// An event the stream holds is not in the database any more.
    #[error("audit event {seq} was streamed but is missing from the database")]
    Missing {
        /// Its sequence number.
        seq: u64,
    },
    /// The database holds another event under a streamed sequence number.
    #[error("audit event {seq} in the database differs from the one streamed (rewritten)")]
    Rewritten {
        /// Its sequence number.
        seq: u64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StreamError + '_ {
    move |source| StreamError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Every event of a stream file, in order (an absent file is an empty stream).
pub fn read(path: &Path) -> Result<Vec<Event>, StreamError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|e| StreamError::Corrupt {
            path: path.to_owned(),
            line: i + 1,
            why: e.to_string(),
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Checks a stream against the database's chain: the stream verifies on its own, and
/// every streamed event is in the database unchanged. Events committed after the last one
/// streamed are not the stream's business. The number of events the stream vouches for.
pub fn compare(stream: &[Event], database: &[Event], key: &ChainKey) -> Result<u64, Mismatch> {
    audit::verify(stream, key).map_err(Mismatch::Stream)?;
    for streamed in stream {
        let at = usize::try_from(streamed.seq.saturating_sub(1)).unwrap_or(usize::MAX);
        match database.get(at) {
            None => return Err(Mismatch::Missing { seq: streamed.seq }),
            Some(stored) if stored != streamed => {
                return Err(Mismatch::Rewritten { seq: streamed.seq });
            }
            Some(_) => {}
        }
    }
    Ok(stream.last().map_or(0, |e| e.seq))
}

/// The sequence number of the file's last event, for the writer to resume after. A last
/// line cut short (a crash or a full disk mid-write) is cut off first, so one torn
/// write never stops the stream.
fn resume(path: &Path) -> Result<u64, StreamError> {
    match std::fs::read(path) {
        Ok(bytes) if !bytes.is_empty() && !bytes.ends_with(b"\n") => {
            let keep = bytes
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |at| at + 1);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io(path))?;
            file.set_len(u64::try_from(keep).unwrap_or(0))
                .map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
            tracing::warn!(path = %path.display(), "audit stream: cut off a partial last line");
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(path)(e)),
    }
    Ok(read(path)?.last().map_or(0, |e| e.seq))
}

/// Appends `events` to the file (made `0600`: it holds emails and addresses), one line
/// each, and syncs it.
fn append(path: &Path, events: &[Event]) -> Result<(), StreamError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    let mut text = String::new();
    for e in events {
        let line = serde_json::to_string(e).map_err(|e| StreamError::Corrupt {
            path: path.to_owned(),
            line: 0,
            why: e.to_string(),
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_data().map_err(io(path))
}

/// Streams every committed event to `sink` until `stop`: what it already holds is not
/// sent again; new events follow each commit (and at least every second). A sink that
/// fails is retried every second, from where it stands.
pub async fn run(store: Store, sink: Sink, stop: CancellationToken) {
    let mut revisions = store.watch_revision();
    crate::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut last = None;
    loop {
        if last.is_none() {
            let at = sink.clone();
            match tokio::task::spawn_blocking(move || at.resume()).await {
                Ok(Ok(seq)) => last = Some(seq),
                Ok(Err(e)) => tracing::error!(error = %e, "audit stream unreadable; retrying"),
                Err(e) => tracing::error!(error = %e, "audit stream reader failed"),
            }
        }
        if let Some(done) = last {
            match send(&store, &sink, &http, done).await {
                Ok(Some(sent)) => {
                    last = Some(sent);
                    // A backlog is sent in rounds; a stop is heard between them (the
                    // next start resumes where the sink's file says).
                    if stop.is_cancelled() {
                        return;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(sink = %sink.label(), error = %e, "audit stream not written; retrying");
                    last = None;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = revisions.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Sends the events after `done`; the newest sent, or `None` when there were none.
async fn send(
    store: &Store,
    sink: &Sink,
    http: &reqwest::Client,
    done: u64,
) -> Result<Option<u64>, StreamError> {
    let mut conn = store.read().await?;
    let events = audit_log::after(&mut conn, done, BATCH).await?;
    drop(conn);
    let Some(newest) = events.last().map(|e| e.seq) else {
        return Ok(None);
    };
    match sink {
        Sink::File(path) => {
            let file = path.clone();
            tokio::task::spawn_blocking(move || append(&file, &events))
                .await
                .map_err(|e| io(path)(std::io::Error::other(e.to_string())))??;
        }
        Sink::Webhook {
            url,
            secret,
            cursor,
        } => post(http, url, secret, cursor, &events).await?,
    }
    Ok(Some(newest))
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::control::audit::{Actor, Draft, GENESIS};

    fn chain(n: u64, key: &ChainKey) -> Vec<Event> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let draft = Draft {
                    time: DateTime::from_timestamp(1_800_000_000 + seq as i64, 0).expect("time"),
                    actor: Actor::System,
                    action: "source.update".into(),
                    resource_type: "source".into(),
                    resource_id: format!("s{seq}"),
                    before: None,
                    after: None,
                    ip: None,
                    user_agent: None,
                };
                let e = draft.seal(seq, prev, key);
                prev = e.hash;
                e
            })
            .collect()
    }

    #[test]
    fn the_file_round_trips_and_vouches_for_what_it_holds() {
        let key = ChainKey::derive(&[7; 32]);
        let events = chain(5, &key);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.ndjson");
        append(&path, &events[..3]).expect("append");
        append(&path, &events[3..]).expect("append");
        let streamed = read(&path).expect("read");
        assert_eq!(streamed, events);
        assert_eq!(compare(&streamed, &events, &key), Ok(5));
        // The database may be ahead of the stream.
        let more = chain(7, &key);
        assert_eq!(compare(&streamed, &more, &key), Ok(5));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_stream_goes_on() {
        let key = ChainKey::derive(&[7; 32]);
        let events = chain(3, &key);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.ndjson");
        append(&path, &events[..2]).expect("append");
        let mut torn = std::fs::read(&path).expect("read");
        torn.extend_from_slice(b"{\"seq\":3,\"ti");
        std::fs::write(&path, torn).expect("tear");
        assert!(read(&path).is_err());
        assert_eq!(resume(&path).expect("resume"), 2);
        append(&path, &events[2..]).expect("append");
        assert_eq!(read(&path).expect("read"), events);
        assert_eq!(resume(&dir.path().join("absent")).expect("absent"), 0);
    }

    #[test]
    fn a_database_rewritten_or_cut_no_longer_matches() {
        let key = ChainKey::derive(&[7; 32]);
        let events = chain(4, &key);
        // Rewritten from the start with the key: it verifies alone, but not against the
        // copy that left.
        let mut rewritten = chain(4, &key);
        let mut draft = rewritten[1].what.clone();
        draft.resource_id = "other".into();
        let mut prev = rewritten[0].hash;
        rewritten[1] = draft.seal(2, prev, &key);
        for i in 2..4 {
            prev = rewritten[i - 1].hash;
            let d = rewritten[i].what.clone();
            rewritten[i] = d.seal(i as u64 + 1, prev, &key);
        }
        assert!(audit::verify(&rewritten, &key).is_ok());
        assert_eq!(
            compare(&events, &rewritten, &key),
            Err(Mismatch::Rewritten { seq: 2 })
        );
        assert_eq!(
            compare(&events, &events[..2], &key),
            Err(Mismatch::Missing { seq: 3 })
        );
        // An edited stream is caught by its own chain.
        let mut edited = events.clone();
        edited[2].what.resource_id = "x".into();
        assert!(matches!(
            compare(&edited, &events, &key),
            Err(Mismatch::Stream(Broken::Altered { seq: 3 }))
        ));
    }
}
