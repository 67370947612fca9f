//! Reading a request body: bounded in size and time (overall, and by a minimum data
//! rate so a trickling client cannot hold a request slot for long), gunzipped when gzip.

use std::io::Read as _;
use std::time::Duration;

use tokio::time::Instant;

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a body could not be read (its text is what the client is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Larger than the limit (as sent, or once decompressed).
    #[error("request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not sent completely within the body timeout.
    #[error("request body was not received in time")]
    Timeout,
    /// The connection failed while sending it.
    #[error("the request body could not be read")]
    Interrupted,
    /// A `Content-Encoding` other than gzip or identity.
    #[error("Content-Encoding must be gzip or identity")]
    UnsupportedEncoding,
    /// Labelled or detected as gzip, but does not decompress.
    #[error("body is labelled or detected as gzip but does not decompress")]
    InvalidGzip,
}

/// A body as received and as decoded.
#[derive(Debug)]
pub struct Body {
    /// Bytes on the wire.
    pub wire_len: usize,
    /// Decoded bytes (JSON text).
    pub bytes: Vec<u8>,
}

/// Time before the minimum data rate starts to count (a connection's first frames may
/// wait on TCP slow start).
const RATE_GRACE: Duration = Duration::from_secs(2);

/// How long, and how slowly, a body may arrive.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The whole body within this.
    pub timeout: Duration,
    /// At least this many bytes a second on average after [`RATE_GRACE`]; 0: no floor.
    pub min_bytes_per_sec: u64,
}

impl Pace {
    /// When more than `received` bytes must have arrived.
    fn deadline(&self, started: Instant, received: usize) -> Instant {
        let overall = started + self.timeout;
        if self.min_bytes_per_sec == 0 {
            return overall;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_bytes_per_sec as f64);
        (started + RATE_GRACE + earned).min(overall)
    }
}

/// Reads at most `limit` bytes at `pace`, then gunzips (output bounded by `limit` too)
/// when the body is labelled gzip or starts with gzip's magic bytes.
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    pace: Pace,
) -> Result<Body, Problem> {
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let labelled_gzip = match encoding.as_deref() {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(_) => return Err(Problem::UnsupportedEncoding),
    };
    let capacity = declared_length(headers, limit)?.map_or(8 << 10, |n| n as usize);
    let mut wire = Vec::with_capacity(capacity.min(limit));
    frames(body, limit, pace, |data| wire.extend_from_slice(data)).await?;
    let wire_len = wire.len();
    let bytes = if labelled_gzip || wire.starts_with(&GZIP_MAGIC) {
        gunzip(&wire, limit)?
    } else {
        wire
    };
    Ok(Body { wire_len, bytes })
}

/// Reads and drops a body of at most `limit` bytes at `pace` (nothing is buffered).
pub async fn discard(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    pace: Pace,
) -> Result<usize, Problem> {
    declared_length(headers, limit)?;
    frames(body, limit, pace, |_| {}).await
}

/// The `Content-Length` the client declared, refused at once when over `limit`.
fn declared_length(headers: &HeaderMap, limit: usize) -> Result<Option<u64>, Problem> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(Problem::TooLarge { limit }),
        _ => Ok(declared),
    }
}

/// Hands the body's data frames to `take`, refusing more than `limit` bytes and a body
/// slower than `pace`; returns the bytes received.
async fn frames(
    mut body: Incoming,
    limit: usize,
    pace: Pace,
    mut take: impl FnMut(&[u8]),
) -> Result<usize, Problem> {
    let started = Instant::now();
    let mut received = 0usize;
    loop {
        let deadline = pace.deadline(started, received);
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| Problem::Timeout)?;
        let Some(frame) = frame else {
            return Ok(received);
        };
        let frame = frame.map_err(|_| Problem::Interrupted)?;
        if let Some(data) = frame.data_ref() {
            if received + data.len() > limit {
                return Err(Problem::TooLarge { limit });
            }
            received += data.len();
            take(data);
        }
    }
}

/// Decompresses `data`, refusing output longer than `limit`.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| Problem::InvalidGzip)?;
    if out.len() > limit {
        return Err(Problem::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("compress");
        e.finish().expect("compress")
    }

    #[test]
    fn gunzip_is_bounded() {
        let plain = vec![b'a'; 10_000];
        assert_eq!(gunzip(&gz(&plain), 10_000).as_deref(), Ok(&plain[..]));
        assert_eq!(
            gunzip(&gz(&plain), 9_999),
            Err(Problem::TooLarge { limit: 9_999 })
        );
        assert_eq!(gunzip(b"\x1f\x8bnot gzip", 100), Err(Problem::InvalidGzip));
    }
}
