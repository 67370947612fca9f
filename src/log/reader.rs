//! Reading records back, from any offset, while the writer may still be appending.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::segment::{self, Next, SegmentError};

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// I/O or a bad segment header.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A record in a closed segment fails its checksum.
    #[error("corrupt record at offset {offset} in {path}")]
    Corrupt {
        /// Offset of the bad record.
        offset: u64,
        /// Its segment.
        path: PathBuf,
    },
    /// Listing the directory failed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Iterates `(offset, payload)` from a starting offset to the current end.
///
/// A partial record at the end of the newest segment is the writer at work (or a
/// torn tail not yet recovered): iteration stops there without error.
pub struct Reader {
    dir: PathBuf,
    bases: Vec<u64>,
    index: usize,
    current: Option<BufReader<File>>,
    offset: u64,
    skip_to: u64,
}

impl Reader {
    /// A reader over `dir` that yields records with offset ≥ `from`.
    pub fn open(dir: &Path, from: u64) -> Result<Self, ReadError> {
        let bases = segment::list(dir).map_err(|source| ReadError::List {
            path: dir.to_owned(),
            source,
        })?;
        // Start in the last segment whose base is ≤ from (or the first one).
        let index = bases.iter().rposition(|&b| b <= from).unwrap_or(0);
        Ok(Self {
            dir: dir.to_owned(),
            offset: bases.get(index).copied().unwrap_or(0),
            bases,
            index,
            current: None,
            skip_to: from,
        })
    }

    fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>, ReadError> {
        loop {
            let Some(&base) = self.bases.get(self.index) else {
                return Ok(None);
            };
            let path = segment::path(&self.dir, base);
            let reader = match &mut self.current {
                Some(r) => r,
                None => {
                    self.offset = base;
                    self.current.insert(segment::open_read(&path)?)
                }
            };
            let is_last = self.index + 1 == self.bases.len();
            match segment::read_next(reader).map_err(|source| SegmentError::Io {
                path: path.clone(),
                source,
            })? {
                Next::Record(payload) => {
                    let offset = self.offset;
                    self.offset += 1;
                    if offset >= self.skip_to {
                        return Ok(Some((offset, payload)));
                    }
                }
                Next::End if is_last => return Ok(None),
                Next::Torn if is_last => return Ok(None),
                Next::End => {
                    self.index += 1;
                    self.current = None;
                }
                Next::Torn => {
                    return Err(ReadError::Corrupt {
                        offset: self.offset,
                        path,
                    });
                }
            }
        }
    }
}

impl Iterator for Reader {
    type Item = Result<(u64, Vec<u8>), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Summary of a log directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Segment files.
    pub segments: u64,
    /// Records stored.
    pub records: u64,
    /// Offset of the oldest stored record.
    pub first_offset: u64,
    /// Offset the next record will get.
    pub next_offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes past the last whole record of the newest segment (a torn tail, or a
    /// write in progress).
    pub torn_tail_bytes: u64,
}

/// Scans every segment of `dir`.
pub fn stats(dir: &Path) -> Result<Stats, ReadError> {
    let bases = segment::list(dir).map_err(|source| ReadError::List {
        path: dir.to_owned(),
        source,
    })?;
    let mut s = Stats {
        segments: bases.len() as u64,
        records: 0,
        first_offset: bases.first().copied().unwrap_or(0),
        next_offset: 0,
        bytes: 0,
        torn_tail_bytes: 0,
    };
    for &base in &bases {
        let scan = segment::scan(&segment::path(dir, base))?;
        s.records += scan.records;
        s.bytes += scan.file_len;
        s.next_offset = base + scan.records;
        s.torn_tail_bytes = scan.file_len - scan.valid_len;
    }
    Ok(s)
}
