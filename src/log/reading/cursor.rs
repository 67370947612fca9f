//! A destination's persisted read position: the offset of the first event it has not
//! finished with. Written with [`disk::replace`] (temp file, fsync, rename, directory
//! fsync); on restart delivery resumes there, so an event may be sent twice after a
//! crash, never skipped.
//!
//! A missing file means a new destination. A file that cannot be read or parsed is an
//! error ([`CursorError`]): the destination must not guess its place, because guessing
//! "new" would skip its whole backlog.

use std::path::{Path, PathBuf};

use crate::disk::{self, Access, Faults};

/// Why a saved cursor cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// The file exists but cannot be read.
    #[error("cannot read the delivery cursor {path}: {source}")]
    Unreadable {
        /// The cursor file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not hold an offset.
    #[error("the delivery cursor {path} is corrupt (expected one offset, found {found:?})")]
    Corrupt {
        /// The cursor file.
        path: PathBuf,
        /// The start of what it holds.
        found: String,
    },
}

/// Where a destination's cursor lives.
pub fn path(dir: &Path, destination: &str) -> PathBuf {
    dir.join(format!("{destination}.cursor"))
}

/// The saved offset; `None` for a destination that never saved one.
pub fn load(dir: &Path, destination: &str) -> Result<Option<u64>, CursorError> {
    let path = path(dir, destination);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CursorError::Unreadable { path, source }),
    };
    match text.trim().parse() {
        Ok(offset) => Ok(Some(offset)),
        Err(_) => Err(CursorError::Corrupt {
            path,
            found: text.chars().take(32).collect(),
        }),
    }
}

/// Saves `offset`.
pub fn save(dir: &Path, destination: &str, offset: u64) -> std::io::Result<()> {
    disk::replace(
        &path(dir, destination),
        format!("{offset}\n").as_bytes(),
        Access::Shared,
        &Faults::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_new_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load(dir.path(), "d"), Ok(None)));
        save(dir.path(), "d", 42).expect("save");
        assert!(matches!(load(dir.path(), "d"), Ok(Some(42))));
        std::fs::write(path(dir.path(), "d"), b"\0\0garbage").expect("write");
        assert!(matches!(
            load(dir.path(), "d"),
            Err(CursorError::Corrupt { .. })
        ));
        std::fs::write(path(dir.path(), "d"), b"").expect("write");
        assert!(matches!(
            load(dir.path(), "d"),
            Err(CursorError::Corrupt { .. })
        ));
    }
}
