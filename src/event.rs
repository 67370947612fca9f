//! The Segment message model: decoding request bodies and normalising messages.
//!
//! A body is first checked for nesting depth (so parsing, which recurses, can never
//! exhaust the stack), then parsed in place with simd-json into a borrowed DOM: strings
//! point into the body buffer, so nested content (properties, traits, context) is never
//! copied, only written out again. Objects keep their key order up to 32 keys (larger
//! ones are hash maps). A single-message route's body is one message; a batch route's
//! body is an envelope `{"batch":[…], "writeKey"?, "sentAt"?, "context"?, "integrations"?}`.
//! [`normalize`] turns one message into the event Sluice stores, or says why not.

mod encode;
mod normalize;
mod repeated;

use simd_json::borrowed::{Object, Value};

use crate::config::Limits;

pub use encode::{write_object, write_str};
pub use normalize::{
    Enrichment, ItemRejection, Prepared, STAMP_ALLOWANCE, format_time, normalize, prepare, write,
    write_forwarded,
};

/// The six Segment call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `identify`: who the user is.
    Identify,
    /// `track`: something the user did.
    Track,
    /// `page`: a web page view.
    Page,
    /// `screen`: a mobile screen view.
    Screen,
    /// `group`: the user's company or team.
    Group,
    /// `alias`: merge two identities.
    Alias,
}

impl Kind {
    /// The `type` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identify => "identify",
            Self::Track => "track",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }

    /// Parses a `type` field's value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "identify" => Self::Identify,
            "track" => Self::Track,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }
}

/// What a route's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One message of a type given by the route.
    Single(Kind),
    /// A batch envelope whose items carry their own `type`.
    Batch,
}

/// A decoded request body, borrowing from the body buffer.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// `writeKey` at the body's top level, if any.
    pub write_key: Option<String>,
    /// The messages, in order.
    pub items: Vec<Value<'a>>,
    /// Indices (ascending) of the items in which some object names a key twice: they
    /// are refused with `duplicate_key`, since parsers disagree on which copy counts.
    pub repeating: Vec<usize>,
    /// Batch-level fields merged into every item.
    pub defaults: Defaults<'a>,
    /// Type given by the route (single-message routes).
    pub kind: Option<Kind>,
}

/// Batch-level `context`, `integrations` and `sentAt`.
#[derive(Debug, Default)]
pub struct Defaults<'a> {
    /// Merged key by key under each item's own `context`.
    pub context: Option<Box<Object<'a>>>,
    /// Merged key by key under each item's own `integrations`.
    pub integrations: Option<Box<Object<'a>>>,
    /// Used for items without their own `sentAt`.
    pub sent_at: Option<Value<'a>>,
}

/// Why a body could not be decoded (the whole request is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Nested deeper than `limits.max_json_depth`.
    #[error("JSON is nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Not JSON (or not UTF-8).
    #[error("Invalid JSON")]
    InvalidJson,
    /// The top level is not an object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// `writeKey` is present but not a string.
    #[error("writeKey must be a string")]
    WriteKeyNotString,
    /// A batch body without `batch`.
    #[error("batch body has no \"batch\" array")]
    MissingBatch,
    /// `batch` is not an array.
    #[error("\"batch\" must be an array")]
    BatchNotArray,
    /// More items than `limits.max_batch_items`.
    #[error("batch has more than {limit} items")]
    TooManyItems {
        /// The limit.
        limit: usize,
    },
    /// An object outside a batch's items (the envelope, its `context` or
    /// `integrations`) names a key twice.
    #[error("an object in the batch envelope names the same key twice")]
    DuplicateKey,
    /// A single message over `limits.max_message_bytes`.
    #[error("message is larger than {limit} bytes")]
    MessageTooLarge {
        /// The limit.
        limit: usize,
    },
}

/// Parses `body` (in place: simd-json unescapes strings into the buffer) for a route
/// of `shape`.
pub fn decode<'a>(
    body: &'a mut [u8],
    shape: Shape,
    limits: &Limits,
) -> Result<Envelope<'a>, DecodeError> {
    if matches!(shape, Shape::Single(_)) && body.len() > limits.max_message_bytes {
        return Err(DecodeError::MessageTooLarge {
            limit: limits.max_message_bytes,
        });
    }
    let tape = parse(body, limits.max_json_depth)?;
    let value = simd_json::value::lazy::Value::from_tape(tape.as_value()).into_value();
    let Value::Object(mut root) = value else {
        return Err(DecodeError::NotAnObject);
    };
    let write_key = match take(&mut root, "writeKey") {
        None | Some(Value::Static(simd_json::StaticNode::Null)) => None,
        Some(Value::String(key)) => Some(key.into_owned()),
        Some(_) => return Err(DecodeError::WriteKeyNotString),
    };
    match shape {
        Shape::Single(kind) => Ok(Envelope {
            write_key,
            items: vec![Value::Object(root)],
            repeating: repeating_items(&tape.0, shape)?,
            defaults: Defaults::default(),
            kind: Some(kind),
        }),
        Shape::Batch => {
            let items = match take(&mut root, "batch") {
                Some(Value::Array(items)) => *items,
                None | Some(Value::Static(simd_json::StaticNode::Null)) => {
                    return Err(DecodeError::MissingBatch);
                }
                Some(_) => return Err(DecodeError::BatchNotArray),
            };
            if items.len() > limits.max_batch_items {
                return Err(DecodeError::TooManyItems {
                    limit: limits.max_batch_items,
                });
            }
            let defaults = Defaults {
                context: take_object(&mut root, "context"),
                integrations: take_object(&mut root, "integrations"),
                sent_at: take(&mut root, "sentAt")
                    .filter(|v| !matches!(v, Value::Static(simd_json::StaticNode::Null))),
            };
            Ok(Envelope {
                write_key,
                items,
                repeating: repeating_items(&tape.0, shape)?,
                defaults,
                kind: None,
            })
        }
    }
}

thread_local! {
    /// simd-json's working buffers, reused by every parse on this thread.
    static BUFFERS: std::cell::RefCell<Option<(usize, simd_json::Buffers)>> = const { std::cell::RefCell::new(None) };
}

/// The items in which some object names a key twice, found on the tape (see
/// [`repeated`]): for a single message any repeat is the message's; in a batch, a repeat
/// inside an item is that item's, and one outside the items (the envelope, its `context`
/// or `integrations`, which every item would inherit) refuses the body.
fn repeating_items(tape: &[simd_json::Node<'_>], shape: Shape) -> Result<Vec<usize>, DecodeError> {
    let found = repeated::objects_repeating_a_key(tape);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    if matches!(shape, Shape::Single(_)) {
        return Ok(vec![0]);
    }
    // The first `batch` member's array (a second `batch` is itself a repeat at the root).
    let items = repeated::members(tape, 0)
        .find(|(key, _)| *key == "batch")
        .map(|(_, at)| at)
        .filter(|&at| matches!(tape.get(at), Some(simd_json::Node::Array { .. })));
    let Some(array) = items else {
        return Err(DecodeError::DuplicateKey);
    };
    let mut starts = Vec::new();
    let mut next = array + 1;
    let end = array + tape.get(array).map_or(1, repeated::width);
    while next < end {
        starts.push(next);
        next += tape.get(next).map_or(1, repeated::width);
    }
    let mut indices = Vec::with_capacity(found.len());
    for at in found {
        if at <= array || at >= end {
            return Err(DecodeError::DuplicateKey);
        }
        let index = starts.partition_point(|&start| start <= at) - 1;
        if indices.last() != Some(&index) {
            indices.push(index);
        }
    }
    Ok(indices)
}

/// Parses with simd-json to its tape, which also enforces the depth bound (its parser
/// keeps an explicit stack; building the DOM afterwards recurses, which the bound keeps
/// shallow).
fn parse(body: &mut [u8], max_depth: usize) -> Result<simd_json::Tape<'_>, DecodeError> {
    let result = BUFFERS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(depth, _)| *depth != max_depth) {
            *slot = Some((
                max_depth,
                simd_json::Buffers::with_max_depth(64 << 10, max_depth),
            ));
        }
        match slot.as_mut() {
            Some((_, buffers)) => simd_json::to_tape_with_buffers(body, buffers),
            None => simd_json::to_tape(body),
        }
    });
    result.map_err(|e| match e.error() {
        simd_json::ErrorType::DepthLimitExceeded => DecodeError::TooDeep { limit: max_depth },
        _ => DecodeError::InvalidJson,
    })
}

/// Removes `key` and returns its value (decoded objects hold each key once).
pub(crate) fn take<'a>(object: &mut Object<'a>, key: &str) -> Option<Value<'a>> {
    object.remove(key)
}

/// Removes `key` if it holds an object; anything else (analytics-go sends `null`) is dropped.
fn take_object<'a>(root: &mut Object<'a>, key: &str) -> Option<Box<Object<'a>>> {
    match take(root, key) {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    use simd_json::prelude::*;

    #[test]
    fn single_body_keeps_fields_and_lifts_write_key() {
        let mut body = br#"{"writeKey":"k","userId":"u","event":"E"}"#.to_vec();
        let env = decode(&mut body, Shape::Single(Kind::Track), &limits()).expect("decodes");
        assert_eq!(env.write_key.as_deref(), Some("k"));
        assert_eq!(env.items.len(), 1);
        assert!(env.items[0].get("writeKey").is_none(), "every copy removed");
        assert_eq!(env.kind, Some(Kind::Track));
    }

    #[test]
    fn a_key_written_twice_marks_its_item_at_any_object_size() {
        let big = |extra: &str| {
            let mut members: Vec<String> = (0..40).map(|i| format!("\"p{i}\":{i}")).collect();
            members.push(extra.to_owned());
            format!("{{{}}}", members.join(","))
        };
        // Single: a repeat anywhere is the message's, however large the object.
        for text in [
            r#"{"event":"E","event":"F"}"#.to_owned(),
            format!(r#"{{"event":"E","properties":{}}}"#, big(r#""p3":"again""#)),
        ] {
            let mut body = text.into_bytes();
            let env = decode(&mut body, Shape::Single(Kind::Track), &limits()).expect("decodes");
            assert_eq!(env.repeating, vec![0]);
        }
        // Batch: the items that hold a repeat, each once, whatever precedes them.
        let text = format!(
            r#"{{"batch":[{{"event":"A","properties":{}}},{{"event":"B","list":[1,{{"x":{{}}}}]}},{{"event":"C","a":{{"k":1,"k":2}},"b":{{"k":1,"k":2}}}}],"writeKey":"w"}}"#,
            big(r#""p39":null"#)
        );
        let mut body = text.into_bytes();
        let env = decode(&mut body, Shape::Batch, &limits()).expect("decodes");
        assert_eq!(env.repeating, vec![0, 2]);
        assert_eq!(env.items.len(), 3);
        // A repeat outside the items (which every item would inherit) refuses the body.
        for text in [
            r#"{"batch":[{"event":"A"}],"context":{"ip":"1","ip":"2"}}"#.to_owned(),
            r#"{"batch":[{"event":"A"}],"batch":[{"event":"B"}]}"#.to_owned(),
            format!(r#"{{"batch":[],"integrations":{}}}"#, big(r#""p0":true"#)),
            r#"{"context":{"a":1,"a":1},"batch":[]}"#.to_owned(),
        ] {
            let mut body = text.clone().into_bytes();
            let got = decode(&mut body, Shape::Batch, &limits()).err();
            assert_eq!(got, Some(DecodeError::DuplicateKey), "{text}");
        }
        // A body wrong in shape says so first, whatever it repeats.
        for (text, error) in [
            (r#"{"batch":{"a":1,"a":2}}"#, DecodeError::BatchNotArray),
            (r#"[{"a":1,"a":1}]"#, DecodeError::NotAnObject),
            (
                r#"{"writeKey":1,"writeKey":1,"batch":[]}"#,
                DecodeError::WriteKeyNotString,
            ),
        ] {
            let mut body = text.as_bytes().to_vec();
            let got = decode(&mut body, Shape::Batch, &limits()).err();
            assert_eq!(got, Some(error), "{text}");
        }
    }

    #[test]
    fn batch_envelope_tolerates_null_context_and_extra_keys() {
        let mut body = br#"{"batch":[{"type":"track"}],"context":null,"messageId":"go-batch","sentAt":"2024-01-01T00:00:00Z"}"#.to_vec();
        let env = decode(&mut body, Shape::Batch, &limits()).expect("decodes");
        assert_eq!(env.items.len(), 1);
        assert!(env.defaults.context.is_none());
        assert!(env.defaults.sent_at.is_some());
    }

    proptest::proptest! {
        // Arbitrary bytes (and arbitrary JSON-ish text) never panic the decoder.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                        text in "[\\[\\]{}\":,a-z0-9 \\\\]{0,200}") {
            for shape in [Shape::Batch, Shape::Single(Kind::Track)] {
                let _ = decode(&mut bytes.clone(), shape, &limits());
                let _ = decode(&mut text.clone().into_bytes(), shape, &limits());
            }
        }
    }

    #[test]
    fn depth_bound_is_exact() {
        let l = Limits {
            max_json_depth: 4,
            ..Limits::default()
        };
        let nested = |levels: usize| {
            let mut doc = String::new();
            for _ in 0..levels - 1 {
                doc.push_str("{\"a\":");
            }
            doc.push_str("{}");
            for _ in 0..levels - 1 {
                doc.push('}');
            }
            doc.into_bytes()
        };
        assert!(decode(&mut nested(4), Shape::Single(Kind::Track), &l).is_ok());
        assert_eq!(
            decode(&mut nested(5), Shape::Single(Kind::Track), &l).err(),
            Some(DecodeError::TooDeep { limit: 4 })
        );
        // Brackets inside strings are not structure.
        let mut quoted = br#"{"a":"[[[[[[[[[[{{{{{{"}"#.to_vec();
        assert!(decode(&mut quoted, Shape::Single(Kind::Track), &l).is_ok());
    }

    #[test]
    fn refusals_are_typed() {
        let l = limits();
        let cases: &[(&[u8], Shape, DecodeError)] = &[
            (b"{", Shape::Batch, DecodeError::InvalidJson),
            (b"", Shape::Batch, DecodeError::InvalidJson),
            (b"[1]", Shape::Batch, DecodeError::NotAnObject),
            (b"{}", Shape::Batch, DecodeError::MissingBatch),
            (br#"{"batch":{}}"#, Shape::Batch, DecodeError::BatchNotArray),
            (
                br#"{"writeKey":5}"#,
                Shape::Batch,
                DecodeError::WriteKeyNotString,
            ),
            (
                b"\xff\xfe",
                Shape::Single(Kind::Track),
                DecodeError::InvalidJson,
            ),
        ];
        for (body, shape, want) in cases {
            assert_eq!(decode(&mut body.to_vec(), *shape, &l).err(), Some(*want));
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            decode(&mut deep.into_bytes(), Shape::Batch, &l).err(),
            Some(DecodeError::TooDeep {
                limit: l.max_json_depth
            })
        );
        let many = format!("{{\"batch\":[{}{{}}]}}", "{},".repeat(2500));
        assert_eq!(
            decode(&mut many.into_bytes(), Shape::Batch, &l).err(),
            Some(DecodeError::TooManyItems { limit: 2500 })
        );
        let big = format!("{{\"event\":\"{}\"}}", "x".repeat(40_000));
        assert_eq!(
            decode(&mut big.into_bytes(), Shape::Single(Kind::Track), &l).err(),
            Some(DecodeError::MessageTooLarge { limit: 32 << 10 })
        );
    }
}
