//! The catalog as written by people (TOML) and as saved last-known-good (JSON).

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::KeyDigest;

/// The whole catalog: a list of sources with their keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Every source.
    #[serde(default)]
    pub sources: Vec<SourceDoc>,
}

/// `[[sources]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDoc {
    /// Unique id (bounded label value in metrics).
    pub id: String,
    /// Display name; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default true.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Optional request rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDoc>,
    /// Keys; several at once let a key be rotated with overlap.
    #[serde(default)]
    pub write_keys: Vec<KeyDoc>,
}

fn enabled_default() -> bool {
    true
}

/// `rate_limit = { requests_per_second = 500, burst = 1000 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDoc {
    /// Sustained requests per second, at least 1.
    pub requests_per_second: u32,
    /// Burst above the sustained rate; defaults to `requests_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// One write key: the plaintext `key` or its `sha256` digest (hex).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDoc {
    /// Plaintext key (never written to the last-known-good copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Lower-case hex SHA-256 of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A revoked key is refused with 401.
    #[serde(default)]
    pub revoked: bool,
    /// After this instant the key is refused (end of a rotation overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for KeyDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDoc")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("sha256", &self.sha256)
            .field("revoked", &self.revoked)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl KeyDoc {
    /// The key's digest, from whichever form is given.
    pub fn digest(&self) -> Option<KeyDigest> {
        match (&self.key, &self.sha256) {
            (Some(key), None) => Some(KeyDigest::of(key)),
            (None, Some(hex)) => KeyDigest::from_hex(hex),
            _ => None,
        }
    }
}

/// Why a catalog document is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// Not TOML, or not of the catalog's shape.
    #[error("{0}")]
    Syntax(String),
    /// Two sources share an id.
    #[error("source id {0:?} appears twice")]
    DuplicateSource(String),
    /// A source id is empty.
    #[error("a source has an empty id")]
    EmptySourceId,
    /// A key entry has neither or both of `key` and `sha256`, an empty key, or bad hex.
    #[error(
        "source {0:?}: each write key needs exactly one of `key` (non-empty) or `sha256` (64 hex chars)"
    )]
    BadKey(String),
    /// The same key is listed twice.
    #[error("source {0:?}: a write key is listed twice in the catalog")]
    DuplicateKey(String),
    /// The file is empty: almost always a write caught half-way.
    #[error("the catalog is empty (write `sources = []` for a catalog without sources)")]
    Empty,
    /// A rate limit of zero.
    #[error("source {0:?}: rate_limit values must be at least 1")]
    BadRateLimit(String),
}

impl Document {
    /// Parses and validates a TOML catalog.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.trim().is_empty() {
            return Err(Invalid::Empty);
        }
        let doc: Document =
            toml::from_str(text).map_err(|e| Invalid::Syntax(describe(&e, text)))?;
        doc.validate()?;
        Ok(doc)
    }

    /// Parses and validates a last-known-good JSON copy (digests only).
    pub fn parse_json(bytes: &[u8]) -> Result<Self, Invalid> {
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| Invalid::Syntax(e.to_string()))?;
        doc.validate()?;
        Ok(doc)
    }

    /// The same catalog with every plaintext key replaced by its digest.
    pub fn hashed(&self) -> Self {
        let mut doc = self.clone();
        for key in doc.sources.iter_mut().flat_map(|s| s.write_keys.iter_mut()) {
            if let Some(plain) = key.key.take() {
                key.sha256 = Some(KeyDigest::of(&plain).to_hex());
            }
        }
        doc
    }

    fn validate(&self) -> Result<(), Invalid> {
        let mut ids = HashSet::new();
        let mut digests = HashSet::new();
        for s in &self.sources {
            if s.id.is_empty() {
                return Err(Invalid::EmptySourceId);
            }
            if !ids.insert(s.id.as_str()) {
                return Err(Invalid::DuplicateSource(s.id.clone()));
            }
            if let Some(r) = s.rate_limit
                && (r.requests_per_second == 0 || r.burst == Some(0))
            {
                return Err(Invalid::BadRateLimit(s.id.clone()));
            }
            for k in &s.write_keys {
                if k.key.as_deref() == Some("") {
                    return Err(Invalid::BadKey(s.id.clone()));
                }
                let digest = k.digest().ok_or_else(|| Invalid::BadKey(s.id.clone()))?;
                if !digests.insert(digest) {
                    return Err(Invalid::DuplicateKey(s.id.clone()));
                }
            }
        }
        Ok(())
    }
}

/// The parser's message and the line it points at, without the snippet of the file
/// that `toml` would quote: that line may hold a plaintext write key, and this text
/// goes to the log.
fn describe(error: &toml::de::Error, text: &str) -> String {
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{} (line {line})", error.message().trim_end())
        }
        None => error.message().trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ambiguous_or_duplicate_entries() {
        for bad in [
            "[[sources]]\nid = \"a\"\n[[sources]]\nid = \"a\"\n",
            "[[sources]]\nid = \"\"\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"\" }]\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ sha256 = \"zz\" }]\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{}]\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"k\" }, { key = \"k\" }]\n",
            "[[sources]]\nid = \"a\"\nrate_limit = { requests_per_second = 0 }\n",
            "[[sources]]\nid = \"a\"\nunknown = 1\n",
            "not toml at all [",
            "  \n",
        ] {
            assert!(Document::parse(bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line_but_never_quote_it() {
        let text =
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"very-secret-key\", bogus = 1 }]\n";
        let message = Document::parse(text).expect_err("invalid").to_string();
        assert!(!message.contains("very-secret-key"), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn hashed_copy_holds_no_plaintext_and_round_trips() {
        let d =
            Document::parse("[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"plain-secret\" }]\n")
                .expect("valid");
        let json = serde_json::to_vec(&d.hashed()).expect("serializes");
        assert!(!String::from_utf8_lossy(&json).contains("plain-secret"));
        let back = Document::parse_json(&json).expect("parses");
        assert_eq!(
            back.sources[0].write_keys[0].digest(),
            Some(KeyDigest::of("plain-secret"))
        );
    }
}
