//! Per-message rules and enrichment (Segment spec: common fields, timestamps).
//!
//! Rules: `userId` or `anonymousId` (JSON null and "" count as absent); `event` for
//! track; `groupId` for group; `previousId` and `userId` for alias; object-typed fields
//! must be objects; `messageId` at most `max_message_id_chars`.
//! Enrichment: `type` from the route, batch `context`/`integrations` merged under the
//! item's own keys, `sentAt` from the batch, `receivedAt`, `originalTimestamp`,
//! skew-corrected `timestamp = receivedAt − (sentAt − originalTimestamp)`, a minted
//! `messageId` when absent, `context.ip` from the peer when absent.

use std::io::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::{Defaults, Kind};
use crate::config::Limits;

/// Facts about the request that every message of it shares.
#[derive(Debug, Clone, Copy)]
pub struct Enrichment<'a> {
    /// Server clock when the request arrived.
    pub received_at: DateTime<Utc>,
    /// Client address (peer, or `X-Forwarded-For` from a trusted proxy).
    pub ip: Option<IpAddr>,
    /// The source that sent it.
    pub source_id: &'a str,
    /// Bounds.
    pub limits: &'a Limits,
}

/// A normalised message, serialised as the log record Sluice stores:
/// `{"sourceId":"…","event":{…}}`.
#[derive(Debug)]
pub struct Event {
    /// The message's `messageId` (given or minted).
    pub message_id: String,
    /// The record bytes.
    pub record: Vec<u8>,
}

/// Why one message was refused; in a batch the others still go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRejection {
    /// The item is not a JSON object.
    NotAnObject,
    /// A batch item without `type`.
    MissingType,
    /// `type` is not one of the six call types.
    InvalidType,
    /// Neither `userId` nor `anonymousId`.
    MissingUserId,
    /// A track call without `event`.
    MissingEvent,
    /// `event` is not a string.
    InvalidEvent,
    /// A group call without `groupId`.
    MissingGroupId,
    /// An alias call without `previousId`.
    MissingPreviousId,
    /// `messageId` is neither a string nor a number.
    InvalidMessageId,
    /// `messageId` longer than the limit.
    MessageIdTooLong,
    /// A field that must be an object is something else.
    FieldNotObject(&'static str),
    /// The message is larger than `max_message_bytes`.
    TooLarge,
}

impl ItemRejection {
    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotAnObject => "invalid_message",
            Self::MissingType => "missing_type",
            Self::InvalidType => "invalid_type",
            Self::MissingUserId => "missing_user_id",
            Self::MissingEvent => "missing_event",
            Self::InvalidEvent => "invalid_event",
            Self::MissingGroupId => "missing_group_id",
            Self::MissingPreviousId => "missing_previous_id",
            Self::InvalidMessageId => "invalid_message_id",
            Self::MessageIdTooLong => "message_id_too_long",
            Self::FieldNotObject(_) => "field_not_object",
            Self::TooLarge => "message_too_large",
        }
    }

    /// Human message (names the field where there is one).
    pub fn message(self) -> &'static str {
        match self {
            Self::FieldNotObject("context") => "context must be an object",
            Self::FieldNotObject("integrations") => "integrations must be an object",
            Self::FieldNotObject("properties") => "properties must be an object",
            Self::FieldNotObject("traits") => "traits must be an object",
            Self::FieldNotObject(_) => "a field that must be an object is not one",
            Self::NotAnObject => "message must be a JSON object",
            Self::MissingType => "message has no type",
            Self::InvalidType => "type must be one of identify, track, page, screen, group, alias",
            Self::MissingUserId => "Missing userId or anonymousId",
            Self::MissingEvent => "Missing event key for track call",
            Self::InvalidEvent => "Event must be a string",
            Self::MissingGroupId => "Missing groupId for group call",
            Self::MissingPreviousId => "Missing previousId for alias call",
            Self::InvalidMessageId => "messageId must be a string",
            Self::MessageIdTooLong => "messageId is longer than allowed",
            Self::TooLarge => "message is larger than allowed",
        }
    }
}

impl std::fmt::Display for ItemRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ItemRejection {}

const OBJECT_FIELDS: [&str; 4] = ["context", "integrations", "properties", "traits"];

/// Checks and enriches one message. `kind` is the route's type (single-message
/// routes), `None` for batch items, which carry their own. `measure` asks for the
/// item's size to be checked (batch bodies larger than one message may hold one
/// too large).
pub fn normalize(
    item: Value,
    kind: Option<Kind>,
    defaults: &Defaults,
    enrichment: &Enrichment<'_>,
    measure: bool,
) -> Result<Event, ItemRejection> {
    let Value::Object(mut msg) = item else {
        return Err(ItemRejection::NotAnObject);
    };
    if measure && serialized_len(&msg) > enrichment.limits.max_message_bytes {
        return Err(ItemRejection::TooLarge);
    }
    // A key inside a batch item is a credential too: never store it.
    msg.remove("writeKey");
    let kind = match kind {
        Some(kind) => kind,
        None => match msg.get("type") {
            Some(Value::String(t)) => Kind::parse(t).ok_or(ItemRejection::InvalidType)?,
            None | Some(Value::Null) => return Err(ItemRejection::MissingType),
            Some(_) => return Err(ItemRejection::InvalidType),
        },
    };
    check_rules(&msg, kind)?;
    let message_id = message_id(&msg, enrichment.limits)?;

    msg.insert("type".to_owned(), Value::String(kind.as_str().to_owned()));
    merge_defaults(&mut msg, "context", defaults.context.as_ref());
    merge_defaults(&mut msg, "integrations", defaults.integrations.as_ref());
    if !msg.contains_key("sentAt")
        && let Some(sent_at) = &defaults.sent_at
    {
        msg.insert("sentAt".to_owned(), sent_at.clone());
    }
    stamp_times(&mut msg, enrichment.received_at);
    msg.insert("messageId".to_owned(), Value::String(message_id.clone()));
    if let Some(ip) = enrichment.ip {
        let context = msg
            .entry("context")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(context) = context {
            context
                .entry("ip")
                .or_insert_with(|| Value::String(ip.to_string()));
        }
    }

    let record = encode_record(enrichment.source_id, &msg);
    Ok(Event { message_id, record })
}

fn check_rules(msg: &Map<String, Value>, kind: Kind) -> Result<(), ItemRejection> {
    for field in OBJECT_FIELDS {
        if matches!(msg.get(field), Some(v) if !v.is_object() && !v.is_null()) {
            return Err(ItemRejection::FieldNotObject(field));
        }
    }
    let has_user = present_id(msg.get("userId"));
    match kind {
        Kind::Alias => {
            if !present_id(msg.get("previousId")) {
                return Err(ItemRejection::MissingPreviousId);
            }
            if !has_user {
                return Err(ItemRejection::MissingUserId);
            }
        }
        _ if !has_user && !present_id(msg.get("anonymousId")) => {
            return Err(ItemRejection::MissingUserId);
        }
        Kind::Track => match msg.get("event") {
            Some(Value::String(e)) if !e.is_empty() => {}
            None | Some(Value::Null) => return Err(ItemRejection::MissingEvent),
            Some(Value::String(_)) => return Err(ItemRejection::MissingEvent),
            Some(_) => return Err(ItemRejection::InvalidEvent),
        },
        Kind::Group if !present_id(msg.get("groupId")) => {
            return Err(ItemRejection::MissingGroupId);
        }
        _ => {}
    }
    Ok(())
}

/// An id field counts when it is a non-empty string or a number (Python allows numbers).
fn present_id(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    }
}

fn message_id(msg: &Map<String, Value>, limits: &Limits) -> Result<String, ItemRejection> {
    let id = match msg.get("messageId") {
        None | Some(Value::Null) => return Ok(uuid::Uuid::new_v4().to_string()),
        Some(Value::String(s)) if s.is_empty() => return Ok(uuid::Uuid::new_v4().to_string()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ItemRejection::InvalidMessageId),
    };
    if id.chars().count() > limits.max_message_id_chars {
        return Err(ItemRejection::MessageIdTooLong);
    }
    Ok(id)
}

/// Adds each key of the batch-level object that the item's own object lacks.
fn merge_defaults(
    msg: &mut Map<String, Value>,
    field: &str,
    defaults: Option<&Map<String, Value>>,
) {
    let Some(defaults) = defaults else { return };
    match msg.get_mut(field) {
        Some(Value::Object(own)) => {
            for (k, v) in defaults {
                if !own.contains_key(k) {
                    own.insert(k.clone(), v.clone());
                }
            }
        }
        _ => {
            msg.insert(field.to_owned(), Value::Object(defaults.clone()));
        }
    }
}

fn stamp_times(msg: &mut Map<String, Value>, received_at: DateTime<Utc>) {
    let original = msg.get("timestamp").filter(|v| !v.is_null()).cloned();
    let original_at = original.as_ref().and_then(parse_time);
    let sent_at = msg.get("sentAt").and_then(parse_time);
    let timestamp = match (original_at, sent_at) {
        (Some(original), Some(sent)) => received_at - (sent - original),
        (Some(original), None) => original,
        (None, _) => received_at,
    };
    msg.insert(
        "receivedAt".to_owned(),
        Value::String(format_time(received_at)),
    );
    if let Some(original) = original {
        msg.insert("originalTimestamp".to_owned(), original);
    }
    msg.insert(
        "timestamp".to_owned(),
        Value::String(format_time(timestamp)),
    );
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// RFC 3339, UTC, milliseconds: `2024-01-02T03:04:05.678Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn encode_record(source_id: &str, msg: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"sourceId\":");
    // Writing into a Vec cannot fail, and a Map of Values always serialises.
    let _ = serde_json::to_writer(&mut out, source_id);
    out.extend_from_slice(b",\"event\":");
    let _ = serde_json::to_writer(&mut out, msg);
    out.push(b'}');
    out
}

fn serialized_len(msg: &Map<String, Value>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, msg);
    let _ = counter.flush();
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(item: Value, kind: Option<Kind>, defaults: &Defaults) -> Result<Value, ItemRejection> {
        let limits = Limits::default();
        let e = Enrichment {
            received_at: DateTime::parse_from_rfc3339("2024-05-01T12:00:10Z")
                .expect("time")
                .with_timezone(&Utc),
            ip: Some("203.0.113.9".parse().expect("ip")),
            source_id: "web",
            limits: &limits,
        };
        let ev = normalize(item, kind, defaults, &e, true)?;
        let stored: Value = serde_json::from_slice(&ev.record).expect("record is JSON");
        assert_eq!(stored["sourceId"], "web");
        assert_eq!(stored["event"]["messageId"], json!(ev.message_id));
        Ok(stored["event"].clone())
    }

    #[test]
    fn corrects_clock_skew_and_keeps_the_original() {
        let out = run(
            json!({"userId":"u","event":"E","timestamp":"2024-05-01T11:00:00Z","sentAt":"2024-05-01T11:00:05.000+00:00"}),
            Some(Kind::Track),
            &Defaults::default(),
        )
        .expect("valid");
        assert_eq!(out["originalTimestamp"], "2024-05-01T11:00:00Z");
        assert_eq!(out["timestamp"], "2024-05-01T12:00:05.000Z");
        assert_eq!(out["receivedAt"], "2024-05-01T12:00:10.000Z");
        assert_eq!(out["type"], "track");
        assert_eq!(out["context"]["ip"], "203.0.113.9");
        assert_eq!(out["messageId"].as_str().map(str::len), Some(36));
    }

    #[test]
    fn batch_defaults_fill_in_under_the_items_own_fields() {
        let defaults = Defaults {
            context: json!({"ip":"1.2.3.4","library":{"name":"batch"}})
                .as_object()
                .cloned(),
            integrations: json!({"All":false}).as_object().cloned(),
            sent_at: Some(json!("2024-05-01T12:00:10Z")),
        };
        let out = run(
            json!({"type":"identify","anonymousId":"a","context":{"library":{"name":"own"}},"writeKey":"secret","messageId":"m1"}),
            None,
            &defaults,
        )
        .expect("valid");
        assert_eq!(out["context"]["library"]["name"], "own");
        assert_eq!(out["context"]["ip"], "1.2.3.4");
        assert_eq!(out["integrations"]["All"], false);
        assert_eq!(out["sentAt"], "2024-05-01T12:00:10Z");
        assert_eq!(out["messageId"], "m1");
        assert!(out.get("writeKey").is_none());
        assert_eq!(out["timestamp"], out["receivedAt"]);
    }

    #[test]
    fn each_rule_has_its_code() {
        let d = Defaults::default();
        let cases = [
            (json!([]), None, "invalid_message"),
            (json!({"userId":"u"}), None, "missing_type"),
            (json!({"type":"bogus","userId":"u"}), None, "invalid_type"),
            (
                json!({"type":"track","event":"E","userId":null,"anonymousId":""}),
                None,
                "missing_user_id",
            ),
            (json!({"userId":"u"}), Some(Kind::Track), "missing_event"),
            (
                json!({"userId":"u","event":7}),
                Some(Kind::Track),
                "invalid_event",
            ),
            (json!({"userId":"u"}), Some(Kind::Group), "missing_group_id"),
            (
                json!({"userId":"u"}),
                Some(Kind::Alias),
                "missing_previous_id",
            ),
            (
                json!({"previousId":"p","anonymousId":"a"}),
                Some(Kind::Alias),
                "missing_user_id",
            ),
            (
                json!({"userId":"u","messageId":"x".repeat(101)}),
                Some(Kind::Page),
                "message_id_too_long",
            ),
            (
                json!({"userId":"u","messageId":{}}),
                Some(Kind::Page),
                "invalid_message_id",
            ),
            (
                json!({"userId":"u","properties":[1]}),
                Some(Kind::Page),
                "field_not_object",
            ),
            (
                json!({"userId":"u","traits":"x".repeat(40_000)}),
                Some(Kind::Identify),
                "message_too_large",
            ),
        ];
        for (item, kind, code) in cases {
            let got = run(item.clone(), kind, &d).err().map(ItemRejection::code);
            assert_eq!(got, Some(code), "{item}");
        }
        assert!(run(json!({"userId":42,"groupId":7}), Some(Kind::Group), &d).is_ok());
        assert!(
            run(
                json!({"previousId":"p","userId":"u"}),
                Some(Kind::Alias),
                &d
            )
            .is_ok()
        );
    }
}
