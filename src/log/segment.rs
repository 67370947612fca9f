//! On-disk format of one segment file, and its recovery.
//!
//! A segment is named after the offset of its first record, zero-padded to 20 digits
//! (`00000000000000000042.seg`), and holds an 8-byte magic header then records:
//!
//! ```text
//! [len: u32 LE][crc32c(payload): u32 LE][payload: len bytes]
//! ```
//!
//! Offsets are implicit: the n-th record of segment `base` has offset `base + n`.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"SLUICE1\n";
/// Bytes before each record's payload.
pub const RECORD_HEADER: u64 = 8;
pub use crate::record::MAX_RECORD;
const SUFFIX: &str = "seg";

/// Path of the segment starting at `base` in `dir`.
pub fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SUFFIX}"))
}

/// Bases of every segment in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".seg")
            && stem.len() == 20
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Appends one record (header and payload) to `buf`.
pub fn encode(buf: &mut Vec<u8>, payload: &[u8]) {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER as usize]);
    buf.extend_from_slice(payload);
    seal(&mut buf[start..]);
}

/// Fills in the header of `record` (header space followed by the payload).
pub fn seal(record: &mut [u8]) {
    let (header, payload) = record.split_at_mut(RECORD_HEADER as usize);
    // Payloads are bounded far below 4 GiB by the request limits.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
}

/// What reading the next record found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole, checksummed record.
    Record(Vec<u8>),
    /// Clean end of the file.
    End,
    /// A partial or corrupt record: the tail from here on is not to be served.
    Torn,
}

/// Reads the next record from `r`.
pub fn read_next(r: &mut impl Read) -> io::Result<Next> {
    let mut header = [0u8; RECORD_HEADER as usize];
    match read_full(r, &mut header)? {
        0 => return Ok(Next::End),
        n if n < header.len() => return Ok(Next::Torn),
        _ => {}
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return Ok(Next::Torn);
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(r, &mut payload)? < payload.len() || crc32c::crc32c(&payload) != crc {
        return Ok(Next::Torn);
    }
    Ok(Next::Record(payload))
}

/// Like `read_exact`, but reports how much was read instead of failing at EOF.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Result of checking a segment from start to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Whole records.
    pub records: u64,
    /// Byte position just after the last whole record.
    pub valid_len: u64,
    /// File length (larger than `valid_len` when the tail is torn).
    pub file_len: u64,
}

/// Why a segment cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The file does not start with the magic header.
    #[error("{0} is not a Sluice segment (bad header)")]
    BadHeader(PathBuf),
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Whether the segment is shorter than its header (being created, or left empty by a
/// roll that failed): it holds no record.
pub fn is_short(path: &Path) -> Result<bool, SegmentError> {
    let meta = std::fs::metadata(path).map_err(|source| SegmentError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(meta.len() < MAGIC.len() as u64)
}

/// Opens a segment for reading, positioned after the header.
pub fn open_read(path: &Path) -> Result<BufReader<File>, SegmentError> {
    let io_err = |source| SegmentError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 8];
    if read_full(&mut file, &mut magic).map_err(io_err)? != magic.len() || &magic != MAGIC {
        return Err(SegmentError::BadHeader(path.to_owned()));
    }
    file.seek(SeekFrom::Start(MAGIC.len() as u64))
        .map_err(io_err)?;
    Ok(BufReader::with_capacity(256 << 10, file))
}

/// Reads a whole segment and reports where its valid records end.
pub fn scan(path: &Path) -> Result<Scan, SegmentError> {
    let file_len = std::fs::metadata(path)
        .map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            source,
        })?
        .len();
    let mut reader = open_read(path)?;
    let mut records = 0;
    let mut valid_len = MAGIC.len() as u64;
    let io_err = |source| SegmentError::Io {
        path: path.to_owned(),
        source,
    };
    while let Next::Record(payload) = read_next(&mut reader).map_err(io_err)? {
        records += 1;
        valid_len += RECORD_HEADER + payload.len() as u64;
    }
    Ok(Scan {
        records,
        valid_len,
        file_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_read_round_trips_and_detects_damage() {
        let mut buf = Vec::new();
        encode(&mut buf, b"hello");
        encode(&mut buf, b"");
        let mut r = &buf[..];
        assert_eq!(
            read_next(&mut r).expect("io"),
            Next::Record(b"hello".to_vec())
        );
        assert_eq!(read_next(&mut r).expect("io"), Next::Record(Vec::new()));
        assert_eq!(read_next(&mut r).expect("io"), Next::End);

        let mut flipped = buf.clone();
        flipped[9] ^= 1;
        assert_eq!(read_next(&mut &flipped[..]).expect("io"), Next::Torn);
        assert_eq!(read_next(&mut &buf[..6]).expect("io"), Next::Torn);
        assert_eq!(read_next(&mut &buf[..11]).expect("io"), Next::Torn);
    }

    #[test]
    fn names_sort_by_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        for base in [10u64, 2, 100] {
            std::fs::write(path(dir.path(), base), MAGIC).expect("write");
        }
        std::fs::write(dir.path().join("catalog.lkg.json"), b"{}").expect("write");
        assert_eq!(list(dir.path()).expect("list"), vec![2, 10, 100]);
    }
}
