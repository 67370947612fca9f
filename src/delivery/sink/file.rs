//! `file`: append each event as one NDJSON line to a local file, rotated by size.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{Outgoing, SendError, Sending, Sink};
use crate::catalog::FileDoc;

/// Appends events to a file.
pub struct FileSink {
    settings: FileDoc,
    file: Mutex<Option<(File, u64)>>,
}

impl FileSink {
    /// A sink for these settings (the file is opened on first use).
    pub fn new(settings: &FileDoc) -> Self {
        Self {
            settings: settings.clone(),
            file: Mutex::new(None),
        }
    }

    fn append(&self, batch: &[Outgoing]) -> std::io::Result<()> {
        let mut lines = Vec::with_capacity(batch.iter().map(|o| o.event.get().len() + 1).sum());
        for o in batch {
            lines.extend_from_slice(o.event.get().as_bytes());
            lines.push(b'\n');
        }
        let mut slot = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("file sink lock poisoned"))?;
        if slot
            .as_ref()
            .is_some_and(|(_, len)| *len >= self.settings.rotate_bytes)
        {
            *slot = None;
            self.rotate()?;
        }
        if slot.is_none() {
            if let Some(dir) = self
                .settings
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.settings.path)?;
            let len = file.metadata()?.len();
            *slot = Some((file, len));
        }
        if let Some((file, len)) = slot.as_mut() {
            if let Err(error) = file.write_all(&lines) {
                // The next attempt reopens the file.
                *slot = None;
                return Err(error);
            }
            *len += lines.len() as u64;
        }
        Ok(())
    }

    /// `path` → `path.1` → `path.2` …, keeping `keep` old files.
    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.settings.path.display()));
        let keep = self.settings.keep.max(1);
        let _ = std::fs::remove_file(numbered(keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.settings.path, numbered(1))
    }
}

impl Sink for FileSink {
    fn send<'a>(&'a self, batch: &'a [Outgoing]) -> Sending<'a> {
        Box::pin(async move {
            // Page-cache appends are short, like the event log's own writes.
            self.append(batch).map_err(|_| SendError::Retryable {
                reason: "io",
                retry_after: None,
            })
        })
    }

    fn batch_size(&self) -> usize {
        500
    }
}
