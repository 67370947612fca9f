//! Durable-file primitives shared by the event log, delivery and the catalog.
//!
//! - [`replace`]: the one way Sluice replaces a small file (a cursor, a catalog copy, a
//!   rewritten dead-letter file): temp file, write, `fsync`, rename, `fsync` of the
//!   directory, so after a crash the file is either the old or the new version, and the
//!   rename itself survives a power cut. Files that hold secrets are created `0600`.
//! - [`Faults`]: the fault-injection seam. Production code passes the disarmed default
//!   (one `Option` check per operation); the model tests arm it to make the next write,
//!   sync, create, rename or remove fail with `EIO`/`ENOSPC`, or cut a write short.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// `EIO` on Linux: the device reported an error.
pub const EIO: i32 = 5;
/// `ENOSPC` on Linux: no space left on the device.
pub const ENOSPC: i32 = 28;

/// Who may read a file [`replace`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `0600`: the file holds secrets (destination credentials, key digests).
    Private,
    /// `0644`: nothing secret (cursors).
    Shared,
}

impl Access {
    fn mode(self) -> u32 {
        match self {
            Self::Private => 0o600,
            Self::Shared => 0o644,
        }
    }
}

/// Replaces `path` with `bytes` atomically and durably (see the module docs).
pub fn replace(path: &Path, bytes: &[u8], access: Access, faults: &Faults) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = dir.join(name);
    let written = (|| {
        faults.check(Op::Create)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(access.mode())
            .open(&tmp)?;
        // An existing temp file keeps its old mode; make sure secrets never widen.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(access.mode()))?;
        faults.write_all(&mut file, bytes)?;
        faults.check(Op::Sync)?;
        file.sync_all()?;
        faults.check(Op::Rename)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    sync_dir(dir, faults)
}

/// Syncs a directory, so entries created, renamed or removed in it survive a power cut.
pub fn sync_dir(dir: &Path, faults: &Faults) -> io::Result<()> {
    faults.check(Op::Sync)?;
    File::open(dir)?.sync_all()
}

/// A file-system operation a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Writing bytes to a file.
    Write,
    /// `fsync`/`fdatasync` of a file or directory.
    Sync,
    /// Creating a file.
    Create,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
}

/// What an armed fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with this `errno` and does nothing.
    Fail(i32),
    /// A write stores only its first `n` bytes, then fails with `ENOSPC`.
    Partial(usize),
}

/// The fault-injection seam (see the module docs). Cloning shares the armed faults.
#[derive(Debug, Clone, Default)]
pub struct Faults(Option<Arc<Mutex<Armed>>>);

/// Faults waiting for their operation, in the order they were armed.
type Armed = VecDeque<(Op, Fault)>;

impl Faults {
    /// A seam that can be armed (the default never injects anything).
    pub fn armed() -> Self {
        Self(Some(Arc::default()))
    }

    /// Makes the next `op` fail as `fault` says. No effect on a disarmed seam.
    pub fn inject(&self, op: Op, fault: Fault) {
        if let Some(queue) = &self.0
            && let Ok(mut queue) = queue.lock()
        {
            queue.push_back((op, fault));
        }
    }

    /// Removes every fault not yet triggered.
    pub fn clear(&self) {
        if let Some(queue) = &self.0
            && let Ok(mut queue) = queue.lock()
        {
            queue.clear();
        }
    }

    fn take(&self, op: Op) -> Option<Fault> {
        let queue = self.0.as_ref()?;
        let mut queue = queue.lock().ok()?;
        let at = queue.iter().position(|(o, _)| *o == op)?;
        queue.remove(at).map(|(_, f)| f)
    }

    /// Fails if a fault is armed for `op`.
    pub fn check(&self, op: Op) -> io::Result<()> {
        match self.take(op) {
            None => Ok(()),
            Some(Fault::Fail(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Some(Fault::Partial(_)) => Err(io::Error::from_raw_os_error(ENOSPC)),
        }
    }

    /// `write_all`, unless a write fault is armed.
    pub fn write_all(&self, mut w: impl Write, buf: &[u8]) -> io::Result<()> {
        match self.take(Op::Write) {
            None => w.write_all(buf),
            Some(Fault::Fail(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Some(Fault::Partial(n)) => {
                w.write_all(&buf[..n.min(buf.len())])?;
                Err(io::Error::from_raw_os_error(ENOSPC))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn replace_writes_whole_files_with_their_mode_and_leaves_no_temp_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("f.json");
        let faults = Faults::armed();
        replace(&path, b"one", Access::Private, &faults).expect("first");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for op in [Op::Create, Op::Write, Op::Sync, Op::Rename] {
            faults.inject(op, Fault::Fail(EIO));
            assert!(replace(&path, b"two", Access::Private, &faults).is_err());
            assert_eq!(std::fs::read(&path).expect("read"), b"one", "{op:?}");
        }
        faults.inject(Op::Write, Fault::Partial(1));
        assert!(replace(&path, b"two", Access::Private, &faults).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
        replace(&path, b"two", Access::Shared, &faults).expect("second");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
    }
}
