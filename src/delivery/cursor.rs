//! A destination's persisted read position: the offset of the first event it has not
//! finished with. Written atomically (temp file, fsync, rename); on restart delivery
//! resumes there, so an event may be sent twice after a crash, never skipped.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where a destination's cursor lives.
pub fn path(dir: &Path, destination: &str) -> PathBuf {
    dir.join(format!("{destination}.cursor"))
}

/// The saved offset, or `None` for a new destination.
pub fn load(dir: &Path, destination: &str) -> Option<u64> {
    std::fs::read_to_string(path(dir, destination))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Saves `offset`.
pub fn save(dir: &Path, destination: &str, offset: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = path(dir, destination);
    let tmp = target.with_extension("cursor.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{offset}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, &target)
}
