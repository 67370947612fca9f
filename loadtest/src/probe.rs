//! The disk's own fsync latency, for the compare table: append a small record and
//! `fdatasync`, many times, in the directory the log would use.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;

/// p50 and p99 of `count` write+fdatasync rounds, in milliseconds.
pub fn fsync_latency(dir: &Path, count: u32) -> std::io::Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe.tmp");
    let mut file = std::fs::File::create(&path)?;
    let mut h =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
    let record = [7u8; 512];
    for _ in 0..count {
        let started = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        let _ = h.record((started.elapsed().as_micros() as u64).max(1));
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok((
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
    ))
}
