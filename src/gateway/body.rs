//! Reading a request body: bounded in size and time, gunzipped when gzip.

use std::io::Read as _;
use std::time::Duration;

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Larger than the limit (as sent, or once decompressed).
    TooLarge,
    /// Not sent completely within the body timeout.
    Timeout,
    /// The connection failed while sending it.
    Interrupted,
    /// A `Content-Encoding` other than gzip or identity.
    UnsupportedEncoding,
    /// Labelled or detected as gzip, but does not decompress.
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

/// Reads at most `limit` bytes within `timeout`, then gunzips (output bounded by
/// `limit` too) when the body is labelled gzip or starts with gzip's magic bytes.
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Body, Problem> {
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let labelled_gzip = match encoding.as_deref() {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(_) => return Err(Problem::UnsupportedEncoding),
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Problem::TooLarge);
    }
    let capacity = declared.map_or(8 << 10, |n| n as usize);
    let wire = tokio::time::timeout(timeout, collect(body, limit, capacity))
        .await
        .map_err(|_| Problem::Timeout)??;
    let wire_len = wire.len();
    let bytes = if labelled_gzip || wire.starts_with(&GZIP_MAGIC) {
        gunzip(&wire, limit)?
    } else {
        wire
    };
    Ok(Body { wire_len, bytes })
}

/// Gathers the body's frames into one buffer (one copy), refusing more than `limit`.
async fn collect(mut body: Incoming, limit: usize, capacity: usize) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::with_capacity(capacity.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Problem::Interrupted)?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err(Problem::TooLarge);
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// Decompresses `data`, refusing output longer than `limit`.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| Problem::InvalidGzip)?;
    if out.len() > limit {
        return Err(Problem::TooLarge);
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
        assert_eq!(gunzip(&gz(&plain), 9_999), Err(Problem::TooLarge));
        assert_eq!(gunzip(b"\x1f\x8bnot gzip", 100), Err(Problem::InvalidGzip));
    }
}
