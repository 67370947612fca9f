//! The client's own bytes of a body, kept beside the in-place parse (which unescapes
//! strings into the buffer) so that the stored record can copy what Sluice does not
//! change instead of writing it out again (see `splice`).
//!
//! The scanner here only ever reads text that simd-json has just accepted as JSON, so it
//! never reports errors: on anything it does not expect it gives up (`None`) and the
//! record is written from the parsed value as before. It finds where values start and
//! end; it decides nothing about what they mean.

use std::ops::Range;

/// Objects with more members than this are hash maps in the parsed value (their order
/// is not the text's): a body or batch item that large is never spliced.
pub(crate) const ORDERED_MEMBERS: usize = 32;

/// The bytes of a body as the client sent them, and where each message is in them.
#[derive(Debug, Default)]
pub struct Raw {
    text: Vec<u8>,
    /// One span per message, in order; empty when they could not be found.
    items: Vec<Range<usize>>,
}

impl Raw {
    /// `text` is a single-message body: the message is the whole (trimmed) body.
    pub(crate) fn single(text: Vec<u8>) -> Self {
        let start = skip_space(&text, 0);
        let items = match value_end(&text, start) {
            Some(end) if text.get(start) == Some(&b'{') && skip_space(&text, end) == text.len() => {
                std::iter::once(start..end).collect()
            }
            _ => Vec::new(),
        };
        Self { text, items }
    }

    /// `text` is a batch envelope: the messages are the elements of its `batch` array.
    /// Any key of the envelope written with escapes, or an envelope too large to keep
    /// its order, finds none (a `b\u0061tch` key would otherwise pair the parsed items
    /// with another array's text).
    pub(crate) fn batch(text: Vec<u8>, expected: usize) -> Self {
        let items = batch_items(&text).filter(|items| items.len() == expected);
        Self {
            items: items.unwrap_or_default(),
            text,
        }
    }

    /// The text of message `index`, if it was found.
    #[must_use]
    pub fn item(&self, index: usize) -> Option<&[u8]> {
        self.items
            .get(index)
            .and_then(|span| self.text.get(span.clone()))
    }
}

fn batch_items(text: &[u8]) -> Option<Vec<Range<usize>>> {
    let (members, _) = object_members(text, skip_space(text, 0))?;
    if members.len() > ORDERED_MEMBERS || members.iter().any(|m| m.escaped) {
        return None;
    }
    let batch = members.iter().find(|m| &text[m.key.clone()] == b"batch")?;
    array_elements(text, batch.value.start)
}

/// One member of an object as the text writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The key's characters between its quotes (escapes not undone).
    pub key: Range<usize>,
    /// Whether the key holds an escape (then its text is not its value).
    pub escaped: bool,
    /// The value's text.
    pub value: Range<usize>,
}

/// The members of the object whose `{` is at `at`, and the index just past its `}`.
pub(crate) fn object_members(text: &[u8], at: usize) -> Option<(Vec<Member>, usize)> {
    if text.get(at) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = skip_space(text, at + 1);
    if text.get(i) == Some(&b'}') {
        return Some((members, i + 1));
    }
    loop {
        if text.get(i) != Some(&b'"') {
            return None;
        }
        let (key_end, escaped) = string_end(text, i)?;
        let key = i + 1..key_end - 1;
        i = skip_space(text, key_end);
        if text.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_space(text, i + 1);
        let end = value_end(text, start)?;
        members.push(Member {
            key,
            escaped,
            value: start..end,
        });
        i = skip_space(text, end);
        match text.get(i) {
            Some(b',') => i = skip_space(text, i + 1),
            Some(b'}') => return Some((members, i + 1)),
            _ => return None,
        }
    }
}

/// The spans of the elements of the array whose `[` is at `at`.
fn array_elements(text: &[u8], at: usize) -> Option<Vec<Range<usize>>> {
    if text.get(at) != Some(&b'[') {
        return None;
    }
    let mut elements = Vec::new();
    let mut i = skip_space(text, at + 1);
    if text.get(i) == Some(&b']') {
        return Some(elements);
    }
    loop {
        let end = value_end(text, i)?;
        elements.push(i..end);
        i = skip_space(text, end);
        match text.get(i) {
            Some(b',') => i = skip_space(text, i + 1),
            Some(b']') => return Some(elements),
            _ => return None,
        }
    }
}

/// The index just past the value that starts at `at`.
pub(crate) fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match *text.get(at)? {
        b'"' => string_end(text, at).map(|(end, _)| end),
        b'{' | b'[' => container_end(text, at),
        _ => {
            let len = text[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(text.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

/// The index just past the string whose opening quote is at `at`, and whether it holds
/// an escape.
fn string_end(text: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        let found = i + memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        if text[found] == b'"' {
            return Some((found + 1, escaped));
        }
        escaped = true;
        i = found + 2;
    }
}

/// The index just past the object or array that opens at `at`.
fn container_end(text: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                i = string_end(text, i)?.0;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn skip_space(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}
