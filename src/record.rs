//! The stored record: the one format the event log keeps for an accepted event, in a
//! local segment or as a JetStream message's payload,
//! `{"sourceId": "…", "blocked": {…}?, "event": {…}}`. `blocked` is there when a
//! tracking plan blocked the event (`{"reason", "violations"}`): such a record is kept
//! for people and never delivered. The gateway writes records with [`write()`]; delivery and the CLI
//! read them with [`Stored::read`]. The size bounds of a record are here too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::write_str;

/// Largest record the log stores (a sanity bound for reading torn lengths back).
pub const MAX_RECORD: u32 = 16 << 20;

/// Room a record needs beyond `limits.max_message_bytes`: Sluice's stamps, the source
/// id and a tracking-plan block annotation. A record past [`MAX_RECORD`] is refused
/// when written; a configuration whose messages could reach it is refused at start.
pub const RECORD_HEADROOM: usize = 64 << 10;

/// Appends the record of an event of `source_id` to `out`, the event written by
/// `event` (its JSON object, as stored), `blocked` its violations when a tracking plan
/// blocked it. Returns the record's length. On error `out` may hold a partial record:
/// the caller discards it.
///
/// # Errors
/// What `event` fails with.
pub fn write(
    out: &mut Vec<u8>,
    source_id: &str,
    blocked: Option<&[u8]>,
    event: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let start = out.len();
    out.extend_from_slice(b"{\"sourceId\":");
    write_str(source_id, out);
    if let Some(blocked) = blocked {
        out.extend_from_slice(b",\"blocked\":");
        out.extend_from_slice(blocked);
    }
    out.extend_from_slice(b",\"event\":");
    event(out);
    out.push(b'}');
    out.len() - start
}

/// A record read back: the event stays raw JSON, as stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stored {
    /// The source it was accepted for.
    #[serde(rename = "sourceId")]
    pub source_id: String,
    /// Why a tracking plan blocked it (`{"reason", "violations"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Box<RawValue>>,
    /// The event, as stored.
    pub event: Box<RawValue>,
}

impl Stored {
    /// Reads a record.
    ///
    /// # Errors
    /// The bytes are not a record (not JSON, or without `sourceId` or `event`).
    pub fn read(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Whether a tracking plan blocked the event (it is never delivered).
    #[must_use]
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// The fields of the event that routing looks at (all absent in an event that is
    /// not an object).
    #[must_use]
    pub fn head(&self) -> Head<'_> {
        self.try_head().unwrap_or_default()
    }

    /// [`Self::head`], or why the event cannot be read as one.
    ///
    /// # Errors
    /// The event is not an object, or a field it must have as a string is not one.
    pub fn try_head(&self) -> Result<Head<'_>, serde_json::Error> {
        serde_json::from_str(self.event.get())
    }
}

/// The parts of a stored event that routing looks at.
#[derive(Debug, Default, Deserialize)]
pub struct Head<'a> {
    /// Call type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Track event name (`None` when it is not a string: another call type may carry
    /// any `event` field).
    #[serde(default, deserialize_with = "lenient")]
    pub event: Option<String>,
    /// Destination switches (`None` when not an object).
    #[serde(default, deserialize_with = "lenient")]
    pub integrations: Option<Map<String, Value>>,
    /// When Sluice received it (RFC 3339).
    #[serde(rename = "receivedAt", default)]
    pub received_at: Option<String>,
    /// Its `messageId`.
    #[serde(rename = "messageId", default)]
    pub message_id: Option<String>,
    /// Its `context`, raw (consent routing reads it).
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
}

/// A field of an unexpected type reads as absent instead of making the whole head
/// unreadable (which would drop the event's other switches with it).
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

impl Head<'_> {
    /// When Sluice received it, if the event says so readably.
    #[must_use]
    pub fn received(&self) -> Option<DateTime<Utc>> {
        self.received_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_record_reads_back() {
        let mut out = b"prefix".to_vec();
        let len = write(&mut out, "web\"1", Some(b"[\"v\"]"), |o| {
            o.extend_from_slice(
                br#"{"type":"track","event":"A","receivedAt":"2026-12-07T03:00:00.000Z"}"#,
            );
        });
        assert_eq!(len, out.len() - 6);
        let stored = Stored::read(&out[6..]).expect("a record");
        assert_eq!(stored.source_id, "web\"1");
        assert!(stored.is_blocked());
        let head = stored.head();
        assert_eq!(
            (head.kind.as_str(), head.event.as_deref()),
            ("track", Some("A"))
        );
        assert!(head.received().is_some());
        let plain = write(&mut Vec::new(), "web", None, |o| o.extend_from_slice(b"{}"));
        assert_eq!(plain, br#"{"sourceId":"web","event":{}}"#.len());
        assert!(Stored::read(b"{\"event\":{}}").is_err());
        let odd_record = Stored::read(
            br#"{"sourceId":"s","event":{"type":"identify","event":{"x":1},"integrations":{"All":false}}}"#,
        )
        .expect("a record");
        let odd = odd_record.head();
        assert_eq!(
            odd.kind, "identify",
            "a non-string event leaves the rest readable"
        );
        assert!(odd.event.is_none());
        assert_eq!(odd.integrations.map(|i| i.len()), Some(1));
        assert_eq!(
            Stored::read(br#"{"sourceId":"s","event":7}"#)
                .expect("a record")
                .head()
                .kind,
            ""
        );
    }
}
