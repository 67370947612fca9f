//! The catalog file source: a TOML file, watched for changes.
//!
//! Change notifications (inotify and friends, via `notify`) wake the reloader at once;
//! a poll every `poll_interval` is the safety net for file systems that send none.
//! Editors that write a new file and rename it over the old one are handled by watching
//! the parent directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{CatalogSource, Document, LoadError};

/// A catalog read from a TOML file.
pub struct FileSource {
    path: PathBuf,
    poll: Duration,
    wake: mpsc::Receiver<()>,
    // Kept alive for its notifications; `None` when watching is not possible here.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl FileSource {
    /// Watches `path`, polling every `poll` as well.
    pub fn new(path: impl Into<PathBuf>, poll: Duration) -> Self {
        let path = path.into();
        let (tx, wake) = mpsc::channel(1);
        let watcher = watch(&path, tx)
            .inspect_err(|error| {
                tracing::warn!(path = %path.display(), %error, "cannot watch catalog file; polling only");
            })
            .ok();
        Self {
            path,
            poll,
            wake,
            _watcher: watcher,
        }
    }
}

fn watch(path: &Path, tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let name = path.file_name().map(|n| n.to_owned());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let concerns_file = match &event {
            // Opening and reading the file (our own reload does) changes nothing: waking
            // on those made each reload schedule the next, dozens of times a second.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => false,
            Ok(e) => e.paths.iter().any(|p| p.file_name() == name.as_deref()),
            Err(_) => true,
        };
        if concerns_file {
            // Full means a wake-up is already pending: nothing is lost.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

impl CatalogSource for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn load(&mut self) -> Result<Document, LoadError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| LoadError::Io {
                what: self.describe(),
                source,
            })?;
        let doc = Document::parse(&text)?;
        // Usage is booked by the control plane: a file has nowhere to keep its count.
        if let Some(q) = doc.quotas.first() {
            return Err(super::Invalid::BadQuota(
                q.id.clone(),
                "quotas are set in the control plane (catalog.source = \"control\"), which books the usage they count".to_owned(),
            )
            .into());
        }
        Ok(doc)
    }

    async fn changed(&mut self) {
        let _ = tokio::time::timeout(self.poll, self.wake.recv()).await;
        // Let a burst of writes (truncate, write, close) settle before reading.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while self.wake.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reading_the_file_does_not_wake_the_watcher_but_writing_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.toml");
        std::fs::write(&path, "[[sources]]\nid = \"a\"\n").expect("write");
        let mut source = FileSource::new(&path, Duration::from_secs(30));
        // Whatever the creation queued.
        let _ = tokio::time::timeout(Duration::from_millis(300), source.changed()).await;
        source.load().await.expect("loads");
        let woke = tokio::time::timeout(Duration::from_millis(700), source.changed()).await;
        assert!(woke.is_err(), "its own read woke the watcher");
        std::fs::write(&path, "[[sources]]\nid = \"b\"\n").expect("write");
        let woke = tokio::time::timeout(Duration::from_secs(5), source.changed()).await;
        assert!(woke.is_ok(), "a write wakes it");
    }
}
