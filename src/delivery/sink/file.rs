//! `file`: append each event as one NDJSON line to a local file, rotated by size.
//!
//! A file destination writes only inside `delivery.file_dir`, to the bare file name its
//! settings give ([`crate::catalog::file_name_problem`] says which names are refused):
//! never an absolute path, never `..`, never through a symbolic link (`O_NOFOLLOW`), so
//! whoever may create a destination cannot reach Sluice's own files.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Blame, Outgoing, SendError, Sending, Sink};
use crate::catalog::{FileDoc, file_name_problem};

/// Appends events to a file.
pub struct FileSink {
    settings: FileDoc,
    /// `file_dir` joined with the settings' file name.
    path: PathBuf,
    file: Mutex<Option<(File, u64)>>,
}

impl FileSink {
    /// A sink for these settings writing inside `dir` (the file is opened on first use);
    /// refused when the settings' path is not a bare file name.
    pub fn new(settings: &FileDoc, dir: &Path) -> Result<Self, SendError> {
        if let Some(problem) = file_name_problem(&settings.path) {
            return Err(SendError::Permanent {
                blame: Blame::Settings,
                reason: "settings",
                detail: problem.to_owned(),
            });
        }
        Ok(Self {
            settings: settings.clone(),
            path: dir.join(&settings.path),
            file: Mutex::new(None),
        })
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
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)?;
            if !file.metadata()?.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
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
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let keep = self.settings.keep.max(1);
        let _ = std::fs::remove_file(numbered(keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))
    }
}

impl Sink for FileSink {
    fn send<'a>(&'a self, batch: &'a [Outgoing]) -> Sending<'a> {
        Box::pin(async move {
            // Page-cache appends are short, like the event log's own writes.
            self.append(batch).map_err(|_| SendError::Retryable {
                blame: Blame::Sluice,
                reason: "io",
                retry_after: None,
            })
        })
    }

    fn batch_size(&self) -> usize {
        500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Outgoing {
        Outgoing {
            offset: 0,
            source_id: "web".into(),
            event: serde_json::value::RawValue::from_string("{\"event\":\"E\"}".into())
                .expect("json"),
            received_at: None,
        }
    }

    fn settings(path: &str) -> FileDoc {
        FileDoc {
            path: path.into(),
            rotate_bytes: 1 << 20,
            keep: 2,
        }
    }

    #[test]
    fn writes_only_a_bare_name_inside_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["../x", "/etc/passwd", "sub/x", ".x", ""] {
            assert!(
                FileSink::new(&settings(bad), dir.path()).is_err(),
                "{bad:?} accepted"
            );
        }
        let sink = FileSink::new(&settings("events.ndjson"), dir.path()).expect("sink");
        sink.append(&[event()]).expect("append");
        let written = std::fs::read_to_string(dir.path().join("events.ndjson")).expect("read");
        assert_eq!(written, "{\"event\":\"E\"}\n");
    }

    #[test]
    fn never_follows_a_symbolic_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let precious = dir.path().join("secret.key");
        std::fs::write(&precious, "key").expect("write");
        let files = dir.path().join("exports");
        std::fs::create_dir(&files).expect("mkdir");
        std::os::unix::fs::symlink(&precious, files.join("events.ndjson")).expect("link");
        let sink = FileSink::new(&settings("events.ndjson"), &files).expect("sink");
        assert!(sink.append(&[event()]).is_err(), "wrote through a link");
        assert_eq!(std::fs::read_to_string(&precious).expect("read"), "key");
    }
}
