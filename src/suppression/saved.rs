//! The gateway's copy kept on disk (`suppressions.bin` in `log.dir`, `0600`), so that a
//! gateway restarted while its control plane is unreachable still drops suppressed users'
//! events, and a restarted one catches up from where it was instead of loading the whole
//! list again. It holds the digests and their key, never a user id.
//!
//! Layout (little-endian): the magic line, the key (8 bytes), the last change applied
//! (8), the epoch's length (4) and bytes, the number of digests (8) and the digests (16
//! each), then a CRC32C of everything before it (4).

use std::path::Path;

use super::{DigestSet, Suppressions, Table};

const MAGIC: &[u8] = b"SLUICE-SUPPRESSIONS-1\n";
/// The longest epoch read back (the control plane's are 32 hex digits).
const MAX_EPOCH: usize = 256;

/// Why a saved copy could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a whole copy written by this version (cut short, changed, another file).
    #[error("{path} is not a saved suppression list ({why})")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Writes `list` (following the list of `epoch`) to `path`, replacing it atomically.
pub fn save(list: &Suppressions, epoch: &str, path: &Path) -> std::io::Result<()> {
    let bytes = {
        let table = list.read();
        let mut out = Vec::with_capacity(MAGIC.len() + 32 + epoch.len() + table.digests.len() * 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&table.seed.to_le_bytes());
        out.extend_from_slice(&list.applied().to_le_bytes());
        out.extend_from_slice(&(epoch.len() as u32).to_le_bytes());
        out.extend_from_slice(epoch.as_bytes());
        out.extend_from_slice(&(table.digests.len() as u64).to_le_bytes());
        for digest in &table.digests {
            out.extend_from_slice(&digest.to_le_bytes());
        }
        out
    };
    let mut bytes = bytes;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    crate::disk::replace(
        path,
        &bytes,
        crate::disk::Access::Private,
        &crate::disk::Faults::default(),
    )
}

/// The copy saved at `path` and the epoch it followed; `None` when there is none.
pub fn load(path: &Path) -> Result<Option<(Suppressions, String)>, SavedError> {
    let shown = || path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SavedError::Io {
                path: shown(),
                source,
            });
        }
    };
    let corrupt = |why| SavedError::Corrupt { path: shown(), why };
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or_else(|| corrupt("too short"))?;
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err(corrupt("checksum"));
    }
    let mut rest = body.strip_prefix(MAGIC).ok_or_else(|| corrupt("magic"))?;
    let mut take = |n: usize| -> Result<&[u8], SavedError> {
        if rest.len() < n {
            return Err(corrupt("cut short"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
    let seed = word(take(8)?);
    let applied = word(take(8)?);
    let epoch_len = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default()) as usize;
    if epoch_len > MAX_EPOCH {
        return Err(corrupt("epoch too long"));
    }
    let epoch = std::str::from_utf8(take(epoch_len)?)
        .map_err(|_| corrupt("epoch not UTF-8"))?
        .to_owned();
    let count = usize::try_from(word(take(8)?)).map_err(|_| corrupt("count"))?;
    let digests_bytes = take(count.checked_mul(16).ok_or_else(|| corrupt("count"))?)?;
    if !rest.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    let mut digests = DigestSet::with_capacity_and_hasher(count, Default::default());
    for chunk in digests_bytes.chunks_exact(16) {
        digests.insert(u128::from_le_bytes(chunk.try_into().unwrap_or_default()));
    }
    let list = Suppressions::with_table(Table { seed, digests }, applied);
    Ok(Some((list, epoch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppression::Change;

    #[test]
    fn a_saved_copy_comes_back_whole_and_a_damaged_one_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("suppressions.bin");
        assert!(load(&path).expect("none yet").is_none());
        let list = Suppressions::new();
        list.apply(&[
            Change {
                seq: 4,
                workspace: "ws".into(),
                source: None,
                subject: "u1".into(),
                suppressed: true,
            },
            Change {
                seq: 9,
                workspace: "ws".into(),
                source: Some("web".into()),
                subject: "u2".into(),
                suppressed: true,
            },
        ]);
        save(&list, "epoch-a", &path).expect("save");
        let (back, epoch) = load(&path).expect("load").expect("saved");
        assert_eq!(epoch, "epoch-a");
        assert_eq!((back.applied(), back.len()), (9, 2));
        assert!(back.holds(Some("ws"), "ios", "u1"));
        assert!(back.holds(Some("ws"), "web", "u2"));
        assert!(!back.holds(Some("ws"), "ios", "u2"));

        // Any byte changed, or the file cut short: refused, never half read.
        let bytes = std::fs::read(&path).expect("read");
        for at in [0, MAGIC.len() + 3, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).expect("write");
            assert!(load(&path).is_err(), "byte {at} changed");
        }
        std::fs::write(&path, &bytes[..bytes.len() - 20]).expect("write");
        assert!(load(&path).is_err(), "cut short");
    }
}
