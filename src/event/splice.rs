//! The stored event spliced from the client's own text: each member of the message that
//! Sluice did not change is copied byte for byte from the body, and only the fields it
//! adds or changes (`type`, `messageId`, the times, a merged `context` or
//! `integrations`) are written from the parsed value. An IP address added to a context
//! that was otherwise kept is appended to that context's text.
//!
//! Copying is only done where the copy means what was checked: the parsed value was read
//! from exactly those bytes and has not been edited since (an edit that is not one of
//! the above drops the text, see `Prepared::edit`), a key is matched only when
//! written without escapes, text with a raw control character (a line break between
//! tokens, say) is written from the value instead, and keys written twice are refused
//! exactly as the writer refuses them. Anything the scanner does not expect falls back
//! to writing the whole event from the value.

use simd_json::borrowed::{Object, Value};

use super::encode::{DuplicateKey, check_object_keys, write_str, write_value};
use super::raw::{Member, Message, ORDERED_MEMBERS};

/// What Sluice changed in `context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextEdit {
    /// Nothing: the client's text is kept.
    Kept,
    /// Only `ip` was added (the client sent a context without one).
    IpAdded,
    /// Something else (the batch's context merged in, or a context made).
    Rewritten,
}

/// The client's text of one message and what Sluice changed in it since it was parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text<'a> {
    /// The message as sent.
    pub message: Message<'a>,
    /// What happened to `context`.
    pub context: ContextEdit,
    /// Whether the batch's `integrations` were merged in.
    pub integrations_merged: bool,
}

/// Top-level fields Sluice always writes itself.
const STAMPED: [&str; 6] = [
    "type",
    "messageId",
    "sentAt",
    "receivedAt",
    "originalTimestamp",
    "timestamp",
];

/// Appends `message` as stored, copying from `from` what Sluice did not change.
/// `Ok(false)` (with nothing appended) when the text cannot be used: the caller writes
/// the value instead.
pub(crate) fn write(
    message: &Object<'_>,
    from: &Text<'_>,
    out: &mut Vec<u8>,
) -> Result<bool, DuplicateKey> {
    let Message { text, members } = from.message;
    if members.len() > ORDERED_MEMBERS {
        return Ok(false);
    }
    check_object_keys(message)?;
    // The parsed members keep the text's order: each search starts after the last find.
    let mut next = 0;
    out.push(b'{');
    for (i, (key, value)) in message.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        let kept = match key.as_ref() {
            k if STAMPED.contains(&k) => None,
            "context" if from.context == ContextEdit::Rewritten => None,
            "integrations" if from.integrations_merged => None,
            k => kept_text(text, members, k, &mut next),
        };
        match kept {
            Some(span) if key == "context" && from.context == ContextEdit::IpAdded => {
                append_ip(span, value, out)?;
            }
            Some(span) => out.extend_from_slice(span),
            None => write_value(value, out)?,
        }
    }
    out.push(b'}');
    Ok(true)
}

/// The client's text of the member named `key` (the body holds no raw control
/// character, see `Raw`). The search starts at `next`, where the last one ended, and
/// wraps around.
fn kept_text<'t>(
    text: &'t [u8],
    members: &[Member],
    key: &str,
    next: &mut usize,
) -> Option<&'t [u8]> {
    let start = (*next).min(members.len());
    let (after, before) = members.split_at(start);
    let (at, member) = before
        .iter()
        .enumerate()
        .map(|(i, m)| (start + i, m))
        .chain(after.iter().enumerate())
        .find(|(_, m)| text.get(m.key.clone()) == Some(key.as_bytes()))?;
    *next = at + 1;
    text.get(member.value.clone())
}

/// Writes the client's context object `span` with the `ip` of `context` (the parsed
/// context) added at its end.
fn append_ip(span: &[u8], context: &Value<'_>, out: &mut Vec<u8>) -> Result<(), DuplicateKey> {
    let ip = match context {
        Value::Object(fields) => fields.get("ip"),
        _ => None,
    };
    let (Some(ip), Some(body)) = (ip, span.strip_suffix(b"}")) else {
        return write_value(context, out);
    };
    let body = body.trim_ascii_end();
    out.extend_from_slice(body);
    if body != b"{" {
        out.push(b',');
    }
    out.extend_from_slice(b"\"ip\":");
    write_value(ip, out)?;
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The spliced record against the record written from the value: on generated
    //! Segment events, in several text styles, both must be refused alike or parse to
    //! the same value.

    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    use crate::config::Limits;
    use crate::event::{self, Enrichment, ItemRejection, Kind, Shape};

    /// How the test writes a document as text.
    #[derive(Debug, Clone, Copy)]
    enum Style {
        /// `{"a":1}`.
        Compact,
        /// `{"a": 1, "b": 2}`, as Python's `json.dumps` writes it.
        Spaced,
        /// Line breaks and indentation between tokens.
        Pretty,
        /// Every non-ASCII character and `/` escaped, keys included.
        Escaped,
    }

    fn write_text(v: &Json, style: Style, depth: usize, out: &mut String) {
        let (colon, comma) = match style {
            Style::Spaced => (": ", ", "),
            _ => (":", ","),
        };
        let newline = |out: &mut String, depth: usize| {
            if matches!(style, Style::Pretty) {
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
        };
        match v {
            Json::Object(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    newline(out, depth + 1);
                    write_string(k, style, out);
                    out.push_str(colon);
                    write_text(v, style, depth + 1, out);
                }
                if !map.is_empty() {
                    newline(out, depth);
                }
                out.push('}');
            }
            Json::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    newline(out, depth + 1);
                    write_text(v, style, depth + 1, out);
                }
                out.push(']');
            }
            Json::String(s) => write_string(s, style, out),
            other => out.push_str(&other.to_string()),
        }
    }

    fn write_string(s: &str, style: Style, out: &mut String) {
        if !matches!(style, Style::Escaped) {
            out.push_str(&Json::from(s).to_string());
            return;
        }
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' => out.push_str("\\/"),
                c if (c as u32) < 0x20 || !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn received() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    /// Stores every item of `body` both ways: the records, or why each was refused.
    fn both_ways(
        body: &[u8],
        shape: Shape,
    ) -> Vec<(Result<Json, ItemRejection>, Result<Json, ItemRejection>)> {
        let limits = Limits::default();
        let enrichment = Enrichment::new(received(), Some([10, 1, 2, 3].into()), "web", &limits);
        let mut bytes = body.to_vec();
        let Ok(envelope) = event::decode(&mut bytes, shape, &limits) else {
            return Vec::new();
        };
        let mut plain_bytes = body.to_vec();
        let plain = event::decode(&mut plain_bytes, shape, &limits).expect("decodes twice");
        let mut out = Vec::new();
        for (index, (item, same)) in envelope.items.into_iter().zip(plain.items).enumerate() {
            let run = |item, text| {
                let mut record = Vec::new();
                event::normalize(
                    (item, text),
                    envelope.kind,
                    &envelope.defaults,
                    &enrichment,
                    &mut record,
                )
                .map(|_| {
                    let text = std::str::from_utf8(&record).expect("UTF-8");
                    assert!(!text.contains('\n'), "one line: {text}");
                    let mut bytes = record.clone();
                    let value: simd_json::OwnedValue =
                        simd_json::to_owned_value(&mut bytes).expect("the record is JSON");
                    serde_json::to_value(value).expect("as serde")
                })
            };
            let spliced = run(item, envelope.raw.item(index));
            let written = run(same, None);
            out.push((spliced, written));
        }
        out
    }

    fn assert_same(body: &[u8], shape: Shape) -> Result<(), TestCaseError> {
        for (spliced, written) in both_ways(body, shape) {
            match (spliced, written) {
                (Ok(mut a), Ok(mut b)) => {
                    // A minted messageId differs run to run.
                    if a["event"]["messageId"] != b["event"]["messageId"] {
                        a["event"]["messageId"] = Json::Null;
                        b["event"]["messageId"] = Json::Null;
                    }
                    prop_assert_eq!(a, b, "body {}", String::from_utf8_lossy(body));
                }
                (a, b) => prop_assert_eq!(a.err(), b.err()),
            }
        }
        Ok(())
    }

    /// Numbers as clients write them, edges included.
    fn number() -> impl Strategy<Value = Json> {
        prop_oneof![
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Json::from),
            Just(json!(i64::MIN)),
            Just(json!(u64::MAX)),
            Just(json!(f64::MAX)),
            Just(json!(f64::MIN_POSITIVE)),
            Just(json!(5e-324)),
            Just(json!(-0.0)),
            Just(json!(1e21)),
            Just(json!(0.1)),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,8}",
            "\\PC{0,12}",
            Just("\u{1F600} é ✓ \u{2028}".to_owned()),
            Just("quote \" backslash \\ slash / tab \t nl \n nul \u{0}".to_owned()),
        ]
    }

    fn json_value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            number(),
            text().prop_map(Json::from),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Json::from),
                prop::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A Segment message of some type, with the fields Sluice reads or changes present
    /// or not.
    fn message() -> impl Strategy<Value = Json> {
        (
            prop::sample::select(vec!["track", "identify", "page", "screen", "group", "alias"]),
            prop::option::of(text()),
            prop::option::of(json_value()),
            prop::option::of(prop::collection::btree_map(text(), json_value(), 0..5)),
            prop::option::of(prop::sample::select(vec![
                json!({}),
                json!({"ip": "192.0.2.1"}),
                json!({"library": {"name": "analytics.js", "version": "1.0"}, "locale": "en-US"}),
                json!(null),
                json!({"traits": {"email": "a@example.com"}, "page": {"url": "https://e.com/a?b=c"}}),
            ])),
            prop::option::of(prop::sample::select(vec![
                json!({}),
                json!({"All": false, "Mixpanel": true}),
                json!(null),
            ])),
            prop::option::of(prop::sample::select(vec![
                json!("2026-12-07T09:59:58.123Z"),
                json!("not a time"),
                json!(null),
                json!(17),
            ])),
            any::<bool>(),
        )
            .prop_map(
                |(kind, message_id, extra, properties, context, integrations, timestamp, user)| {
                    let mut m = serde_json::Map::new();
                    m.insert("type".into(), json!(kind));
                    m.insert(if user { "userId" } else { "anonymousId" }.into(), json!("u-1"));
                    m.insert("event".into(), json!("Order Completed"));
                    m.insert("groupId".into(), json!("g"));
                    m.insert("previousId".into(), json!("p"));
                    m.insert("userId".into(), json!("u-2"));
                    if let Some(id) = message_id {
                        m.insert("messageId".into(), json!(id));
                    }
                    if let Some(extra) = extra {
                        m.insert("extra".into(), extra);
                    }
                    if let Some(p) = properties {
                        let field = if matches!(kind, "identify" | "group") { "traits" } else { "properties" };
                        m.insert(field.into(), Json::Object(p.into_iter().collect()));
                    }
                    if let Some(c) = context {
                        m.insert("context".into(), c);
                    }
                    if let Some(i) = integrations {
                        m.insert("integrations".into(), i);
                    }
                    if let Some(t) = timestamp {
                        m.insert("timestamp".into(), t);
                    }
                    Json::Object(m)
                },
            )
    }

    fn style() -> impl Strategy<Value = Style> {
        prop::sample::select(vec![
            Style::Compact,
            Style::Spaced,
            Style::Pretty,
            Style::Escaped,
        ])
    }

    fn text_of(v: &Json, style: Style) -> String {
        let mut out = String::new();
        write_text(v, style, 0, &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_single_message_stores_the_same_either_way(m in message(), style in style()) {
            let kind = Kind::parse(m["type"].as_str().unwrap_or_default()).unwrap_or(Kind::Track);
            assert_same(text_of(&m, style).as_bytes(), Shape::Single(kind))?;
        }

        #[test]
        fn a_batch_stores_the_same_either_way(
            items in prop::collection::vec(message(), 1..6),
            context in prop::option::of(Just(json!({"library": {"name": "analytics-python"}, "ip": "198.51.100.7"}))),
            integrations in prop::option::of(Just(json!({"All": true}))),
            sent_at in prop::option::of(Just(json!("2026-12-07T10:00:01Z"))),
            style in style(),
        ) {
            let mut body = serde_json::Map::new();
            body.insert("batch".into(), Json::Array(items));
            for (key, value) in [("context", context), ("integrations", integrations), ("sentAt", sent_at)] {
                if let Some(value) = value {
                    body.insert(key.into(), value);
                }
            }
            assert_same(text_of(&Json::Object(body), style).as_bytes(), Shape::Batch)?;
        }

        /// A key written twice anywhere is refused by both, however it is written.
        #[test]
        fn a_key_written_twice_is_refused_either_way(m in message(), style in style(), depth in 0usize..3) {
            let mut text = text_of(&m, style);
            let mut twice = String::from("{\"k\":1,\"k\":2}");
            for _ in 0..depth {
                twice = format!("{{\"nest\":{twice}}}");
            }
            let at = text.rfind('}').expect("an object");
            let comma = if m.as_object().is_some_and(|o| !o.is_empty()) { "," } else { "" };
            text.insert_str(at, &format!("{comma}\"dup\":{twice}"));
            let results = both_ways(text.as_bytes(), Shape::Single(Kind::Track));
            for (spliced, written) in results {
                prop_assert_eq!(spliced.err(), Some(ItemRejection::DuplicateKey));
                prop_assert_eq!(written.err(), Some(ItemRejection::DuplicateKey));
            }
        }
    }

    #[test]
    fn what_the_parser_accepts_at_the_edges() {
        // Numbers past f64, control characters in strings, lone surrogates: whatever
        // the parser accepts, both ways store the same (or refuse alike).
        for body in [
            r#"{"userId":"u","event":"E","properties":{"n":1e400}}"#,
            r#"{"userId":"u","event":"E","properties":{"n":-1e400}}"#,
            r#"{"userId":"u","event":"E","properties":{"n":123456789012345678901234567890}}"#,
            r#"{"userId":"u","event":"E","properties":{"n":-0,"m":1E2,"o":0.1000000000000000055511151231257827}}"#,
            "{\"userId\":\"u\",\"event\":\"E\",\"properties\":{\"s\":\"a\u{1}b\"}}",
            "{\"userId\":\"u\",\"event\":\"E\",\"properties\":{\"s\":\"tab\there\"}}",
            r#"{"userId":"u","event":"E","properties":{"s":"\ud800"}}"#,
            r#"{"userId":"u","event":"E","properties":{"s":"\udc00\ud800"}}"#,
            r#"{"userId":"u","event":"E","context":{"ip":null}}"#,
            r#"{"userId":"u","event":"E","cont\u0065xt":{"a":1}}"#,
            r#"{"userId":"u","event":"E","context":{"a":1},"cont\u0065xt":{"b":2}}"#,
            r#"{"userId":"u","event":"E","\u0074ype":"identify","type":"page"}"#,
            r#"{"userId":"u","event":"E","messageId":"m","messageId":"n"}"#,
            r#"{"userId":"u","event":"E","writeKey":"secret","properties":{"writeKey":"kept"}}"#,
        ] {
            let results = both_ways(body.as_bytes(), Shape::Single(Kind::Track));
            for (spliced, written) in results {
                match (spliced, written) {
                    (Ok(mut a), Ok(mut b)) => {
                        a["event"]["messageId"] = Json::Null;
                        b["event"]["messageId"] = Json::Null;
                        assert_eq!(a, b, "{body}");
                        assert!(a["event"].get("writeKey").is_none(), "{body}");
                    }
                    (a, b) => assert_eq!(a.err(), b.err(), "{body}"),
                }
            }
        }
    }

    #[test]
    fn a_batchs_items_are_spliced_too() {
        let body = br#"{"sentAt": "2026-12-07T10:00:00Z", "batch": [ {"type": "track", "userId": "u", "event": "E", "properties": {"n": 1.50}} , 7, {"type": "page", "userId": "u", "properties": {"p": "caf\u00e9"}, "context": {}} ], "writeKey": "k"}"#;
        let limits = Limits::default();
        let enrichment = Enrichment::new(received(), Some([10, 1, 2, 3].into()), "web", &limits);
        let mut bytes = body.to_vec();
        let envelope = event::decode(&mut bytes, Shape::Batch, &limits).expect("decodes");
        let mut stored = Vec::new();
        for (index, item) in envelope.items.into_iter().enumerate() {
            let mut record = Vec::new();
            let text = envelope.raw.item(index);
            assert_eq!(text.is_some(), index != 1, "item {index}");
            if event::normalize(
                (item, text),
                None,
                &envelope.defaults,
                &enrichment,
                &mut record,
            )
            .is_ok()
            {
                stored.push(String::from_utf8(record).expect("UTF-8"));
            }
        }
        assert_eq!(stored.len(), 2, "{stored:?}");
        assert!(
            stored[0].contains(r#""properties":{"n": 1.50}"#),
            "{}",
            stored[0]
        );
        assert!(
            stored[1].contains(r#""properties":{"p": "caf\u00e9"}"#),
            "{}",
            stored[1]
        );
        assert!(
            stored[1].contains(r#""context":{"ip":"10.1.2.3"}"#),
            "{}",
            stored[1]
        );
        assert!(
            stored[1].contains(r#""sentAt":"2026-12-07T10:00:00Z""#),
            "{}",
            stored[1]
        );
    }

    #[test]
    fn the_clients_text_is_what_is_stored() {
        // The point of it all: properties and context are the client's bytes.
        let body = br#"{"userId": "u", "event": "E", "properties": {"price": 1.50, "sku": "caf\u00e9"}, "context": {"library": {"name": "x"}}}"#;
        let limits = Limits::default();
        let enrichment = Enrichment::new(received(), Some([10, 1, 2, 3].into()), "web", &limits);
        let mut bytes = body.to_vec();
        let envelope =
            event::decode(&mut bytes, Shape::Single(Kind::Track), &limits).expect("decodes");
        let mut record = Vec::new();
        let item = envelope.items.into_iter().next().expect("one");
        event::normalize(
            (item, envelope.raw.item(0)),
            envelope.kind,
            &envelope.defaults,
            &enrichment,
            &mut record,
        )
        .expect("stored");
        let text = String::from_utf8(record).expect("UTF-8");
        assert!(
            text.contains(r#""properties":{"price": 1.50, "sku": "caf\u00e9"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""context":{"library": {"name": "x"},"ip":"10.1.2.3"}"#),
            "{text}"
        );
    }
}
