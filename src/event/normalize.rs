//! Per-message rules and enrichment (Segment spec: common fields, timestamps).
//!
//! Rules: `userId` or `anonymousId` (JSON null and "" count as absent); `event` for
//! track; `groupId` for group; `previousId` and `userId` for alias; object-typed fields
//! must be objects; `messageId` at most `max_message_id_chars`.
//! Enrichment: `type` from the route, batch `context`/`integrations` merged under the
//! item's own keys, `sentAt` from the batch, `receivedAt`, `originalTimestamp`,
//! skew-corrected `timestamp = receivedAt − (sentAt − originalTimestamp)`, a minted
//! `messageId` when absent, `context.ip` from the peer when absent.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use simd_json::StaticNode;
use simd_json::borrowed::{Object, Value};
use simd_json::prelude::*;

use super::encode::write_object;
use super::{Defaults, Kind, take};
use crate::config::Limits;
use crate::record;

/// Facts about the request that every message of it shares.
#[derive(Debug, Clone)]
pub struct Enrichment<'e> {
    /// Server clock when the request arrived.
    pub received_at: DateTime<Utc>,
    /// `received_at` as stored (formatted once per request).
    pub received_at_text: String,
    /// Client address (peer, or `X-Forwarded-For` from a trusted proxy), as text.
    pub ip: Option<String>,
    /// The source that sent it.
    pub source_id: &'e str,
    /// Bounds.
    pub limits: &'e Limits,
}

impl<'e> Enrichment<'e> {
    /// The shared facts of one request.
    pub fn new(
        received_at: DateTime<Utc>,
        ip: Option<IpAddr>,
        source_id: &'e str,
        limits: &'e Limits,
    ) -> Self {
        Self {
            received_at,
            received_at_text: format_time(received_at),
            ip: ip.map(|ip| ip.to_string()),
            source_id,
            limits,
        }
    }
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
    MessageIdTooLong {
        /// The limit, in characters.
        limit: usize,
    },
    /// A field that must be an object is something else.
    FieldNotObject(&'static str),
    /// The message is larger than `max_message_bytes`.
    TooLarge {
        /// `limits.max_message_bytes`.
        limit: usize,
    },
    /// An object in the message names the same key twice (found by `event::decode`).
    DuplicateKey,
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
            Self::MessageIdTooLong { .. } => "message_id_too_long",
            Self::FieldNotObject(_) => "field_not_object",
            Self::TooLarge { .. } => "message_too_large",
            Self::DuplicateKey => "duplicate_key",
        }
    }

    /// Human message (names the field where there is one, and the configured limit).
    pub fn message(self) -> Cow<'static, str> {
        let text = match self {
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
            Self::MessageIdTooLong { limit } => {
                return format!("messageId is longer than {limit} characters").into();
            }
            Self::TooLarge { limit } => {
                return format!(
                    "message is larger than {limit} bytes as stored (batch context merged in)"
                )
                .into();
            }
            Self::DuplicateKey => "an object in the message names the same key twice",
        };
        text.into()
    }
}

impl std::fmt::Display for ItemRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ItemRejection {}

const OBJECT_FIELDS: [&str; 4] = ["context", "integrations", "properties", "traits"];

/// Bytes the fields Sluice adds may take beyond `max_message_bytes` (`receivedAt`,
/// `timestamp`, a minted `messageId`, `type`, `context.ip`, the record wrapper).
pub const STAMP_ALLOWANCE: usize = 512;

/// A checked, enriched message, not yet written.
#[derive(Debug)]
pub struct Prepared<'a> {
    /// Its call type.
    pub kind: Kind,
    /// Its `messageId` (given or minted).
    pub message_id: String,
    /// The message, which tracking-plan enforcement may still edit.
    pub message: Box<Object<'a>>,
}

/// Checks and enriches one message and appends the record Sluice stores,
/// `{"sourceId":"…","event":{…}}`, to `out`; returns the `messageId`: [`prepare`]
/// then [`write()`].
pub fn normalize<'a>(
    item: Value<'a>,
    kind: Option<Kind>,
    defaults: &Defaults<'a>,
    enrichment: &Enrichment<'_>,
    out: &mut Vec<u8>,
) -> Result<String, ItemRejection> {
    let prepared = prepare(item, kind, defaults, enrichment)?;
    write(&prepared, None, enrichment, out)?;
    Ok(prepared.message_id)
}

/// Checks one message against the spec's rules and enriches it. `kind` is the route's
/// type (single-message routes), `None` for batch items, which carry their own.
pub fn prepare<'a>(
    item: Value<'a>,
    kind: Option<Kind>,
    defaults: &Defaults<'a>,
    enrichment: &Enrichment<'_>,
) -> Result<Prepared<'a>, ItemRejection> {
    let Value::Object(mut msg) = item else {
        return Err(ItemRejection::NotAnObject);
    };
    // A key inside a batch item is a credential too: never store it.
    take(&mut msg, "writeKey");
    let kind = match kind {
        Some(kind) => kind,
        None => match msg.get("type") {
            Some(Value::String(t)) => Kind::parse(t).ok_or(ItemRejection::InvalidType)?,
            None | Some(Value::Static(StaticNode::Null)) => return Err(ItemRejection::MissingType),
            Some(_) => return Err(ItemRejection::InvalidType),
        },
    };
    check_rules(&msg, kind)?;
    let message_id = message_id(&msg, enrichment.limits)?;

    set(&mut msg, "type", Value::from(kind.as_str()));
    merge_defaults(&mut msg, "context", defaults.context.as_deref());
    merge_defaults(&mut msg, "integrations", defaults.integrations.as_deref());
    if msg.get("sentAt").is_none()
        && let Some(sent_at) = &defaults.sent_at
    {
        msg.insert(Cow::Borrowed("sentAt"), sent_at.clone());
    }
    stamp_times(&mut msg, enrichment);
    set(&mut msg, "messageId", Value::from(message_id.clone()));
    if let Some(ip) = &enrichment.ip {
        if !matches!(msg.get("context"), Some(Value::Object(_))) {
            set(&mut msg, "context", Value::Object(Box::default()));
        }
        if let Some(Value::Object(context)) = msg.get_mut("context")
            && context.get("ip").is_none()
        {
            context.insert(Cow::Borrowed("ip"), Value::from(ip.clone()));
        }
    }
    Ok(Prepared {
        kind,
        message_id,
        message: msg,
    })
}

/// Appends the stored record of `prepared` to `out`:
/// `{"sourceId":"…","event":{…}}`, or with `blocked` (JSON describing why a tracking
/// plan blocked it) `{"sourceId":"…","blocked":{…},"event":{…}}`, which delivery
/// never sends.
///
/// The size bound applies to the message as stored (batch `context` merged in), plus
/// [`STAMP_ALLOWANCE`] for Sluice's own fields: measuring the record Sluice writes
/// anyway costs nothing, and no request can make the log store more than
/// `max_message_bytes` per message however large its batch context. On error `out`
/// may hold a partial record: the caller discards it (see `log::Batch::record`).
pub fn write(
    prepared: &Prepared<'_>,
    blocked: Option<&[u8]>,
    enrichment: &Enrichment<'_>,
    out: &mut Vec<u8>,
) -> Result<(), ItemRejection> {
    let len = record::write(out, enrichment.source_id, blocked, |out| {
        write_object(&prepared.message, out);
    });
    let bound = enrichment.limits.max_message_bytes
        + STAMP_ALLOWANCE
        + enrichment.source_id.len()
        + blocked.map_or(0, <[u8]>::len);
    // The second bound is the log's own: a record past it could not be read back.
    if len > bound.min(record::MAX_RECORD as usize) {
        return Err(ItemRejection::TooLarge {
            limit: enrichment.limits.max_message_bytes,
        });
    }
    Ok(())
}

/// Appends a record for an event forwarded into another source (already JSON).
pub fn write_forwarded(source_id: &str, event: &[u8], out: &mut Vec<u8>) {
    record::write(out, source_id, None, |out| out.extend_from_slice(event));
}

/// Replaces `key`'s value, or adds it.
fn set<'a>(msg: &mut Object<'a>, key: &'static str, value: Value<'a>) {
    take(msg, key);
    msg.insert(Cow::Borrowed(key), value);
}

fn is_null(v: &Value<'_>) -> bool {
    matches!(v, Value::Static(StaticNode::Null))
}

fn check_rules(msg: &Object<'_>, kind: Kind) -> Result<(), ItemRejection> {
    for field in OBJECT_FIELDS {
        if matches!(msg.get(field), Some(v) if !v.is_object() && !is_null(v)) {
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
            None | Some(Value::Static(StaticNode::Null)) | Some(Value::String(_)) => {
                return Err(ItemRejection::MissingEvent);
            }
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
fn present_id(v: Option<&Value<'_>>) -> bool {
    match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(v) => v.is_number(),
        None => false,
    }
}

fn message_id(msg: &Object<'_>, limits: &Limits) -> Result<String, ItemRejection> {
    let id = match msg.get("messageId") {
        None | Some(Value::Static(StaticNode::Null)) => return Ok(uuid::Uuid::new_v4().to_string()),
        Some(Value::String(s)) if s.is_empty() => return Ok(uuid::Uuid::new_v4().to_string()),
        Some(Value::String(s)) => s.to_string(),
        Some(v) if v.is_number() => v.encode(),
        Some(_) => return Err(ItemRejection::InvalidMessageId),
    };
    if id.len() > limits.max_message_id_chars && id.chars().count() > limits.max_message_id_chars {
        return Err(ItemRejection::MessageIdTooLong {
            limit: limits.max_message_id_chars,
        });
    }
    Ok(id)
}

/// Adds each key of the batch-level object that the item's own object lacks.
fn merge_defaults<'a>(msg: &mut Object<'a>, field: &'static str, defaults: Option<&Object<'a>>) {
    let Some(defaults) = defaults else { return };
    match msg.get_mut(field) {
        Some(Value::Object(own)) => {
            for (k, v) in defaults.iter() {
                if own.get(k.as_ref()).is_none() {
                    own.insert(k.clone(), v.clone());
                }
            }
        }
        _ => set(msg, field, Value::Object(Box::new(defaults.clone()))),
    }
}

fn stamp_times<'a>(msg: &mut Object<'a>, enrichment: &Enrichment<'_>) {
    let original = msg.get("timestamp").filter(|v| !is_null(v)).cloned();
    let original_at = original.as_ref().and_then(parse_time);
    let sent_at = msg.get("sentAt").and_then(parse_time);
    let received = enrichment.received_at;
    let corrected = match (original_at, sent_at) {
        (Some(original), Some(sent)) => {
            received.checked_sub_signed(sent.signed_duration_since(original))
        }
        (Some(original), None) => Some(original),
        (None, _) => None,
    };
    // A correction (or a client clock) that lands before 1970 or more than a day after
    // receipt is nonsense, not skew: the event happened when it arrived.
    let timestamp = corrected
        .filter(|t| t.timestamp() >= 0 && *t <= received + chrono::TimeDelta::days(1))
        .map_or_else(|| enrichment.received_at_text.clone(), format_time);
    set(
        msg,
        "receivedAt",
        Value::from(enrichment.received_at_text.clone()),
    );
    if let Some(original) = original {
        set(msg, "originalTimestamp", original);
    }
    set(msg, "timestamp", Value::from(timestamp));
}

fn parse_time(v: &Value<'_>) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// RFC 3339, UTC, milliseconds: `2024-01-02T03:04:05.678Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Runs `normalize` on `item` (given as serde_json for readability).
    fn run(
        item: serde_json::Value,
        kind: Option<Kind>,
        defaults: &Defaults<'_>,
    ) -> Result<serde_json::Value, ItemRejection> {
        let limits = Limits::default();
        let received_at = DateTime::parse_from_rfc3339("2024-05-01T12:00:10Z")
            .expect("time")
            .with_timezone(&Utc);
        let e = Enrichment::new(
            received_at,
            Some("203.0.113.9".parse().expect("ip")),
            "web",
            &limits,
        );
        let mut bytes = serde_json::to_vec(&item).expect("json");
        let item = simd_json::to_borrowed_value(&mut bytes).expect("parses");
        let mut record = Vec::new();
        let message_id = normalize(item, kind, defaults, &e, &mut record)?;
        let stored: serde_json::Value = serde_json::from_slice(&record).expect("record is JSON");
        assert_eq!(stored["sourceId"], "web");
        assert_eq!(stored["event"]["messageId"], json!(message_id));
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
    fn an_absurd_correction_falls_back_to_the_time_of_receipt() {
        for (timestamp, sent_at) in [
            // A client clock 9,999 years behind: correction would land in year −7974.
            ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
            // Corrected into the far future.
            ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
        ] {
            let out = run(
                json!({"userId":"u","event":"E","timestamp":timestamp,"sentAt":sent_at}),
                Some(Kind::Track),
                &Defaults::default(),
            )
            .expect("valid");
            assert_eq!(out["timestamp"], out["receivedAt"], "{timestamp}");
            assert_eq!(out["originalTimestamp"], timestamp, "the original is kept");
        }
    }

    #[test]
    fn batch_defaults_fill_in_under_the_items_own_fields() {
        let mut ctx = br#"{"ip":"1.2.3.4","library":{"name":"batch"}}"#.to_vec();
        let mut integrations = br#"{"All":false}"#.to_vec();
        let object = |v: Value<'static>| match v {
            Value::Object(o) => o,
            _ => panic!("object"),
        };
        let ctx = simd_json::to_borrowed_value(&mut ctx)
            .expect("ctx")
            .into_static();
        let integrations = simd_json::to_borrowed_value(&mut integrations)
            .expect("integrations")
            .into_static();
        let defaults = Defaults {
            context: Some(object(ctx)),
            integrations: Some(object(integrations)),
            sent_at: Some(Value::from("2024-05-01T12:00:10Z")),
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
                json!({"userId":"u","traits":{"big":"x".repeat(40_000)}}),
                Some(Kind::Identify),
                "message_too_large",
            ),
        ];
        for (item, kind, code) in cases {
            let got = run(item.clone(), kind, &d).err().map(ItemRejection::code);
            assert_eq!(got, Some(code));
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
