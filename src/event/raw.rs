//! The client's own bytes of a body, kept beside the in-place parse (which unescapes
//! strings into the buffer) so that the stored record can copy what Sluice does not
//! change instead of writing it out again (see `splice`).
//!
//! The scanner here only ever reads text that simd-json has just accepted as JSON, so it
//! never reports errors: on anything it does not expect it gives up (`None`) and the
//! record is written from the parsed value as before. It finds where values start and
//! end; it decides nothing about what they mean.

use std::ops::Range;

use super::encode::ends_string;

/// Objects with more members than this are hash maps in the parsed value (their order
/// is not the text's): a body or batch item that large is never spliced.
pub(crate) const ORDERED_MEMBERS: usize = 32;

/// The bytes of a body as the client sent them, and where each message and its
/// members are in them (found in one pass over the text).
#[derive(Debug, Default)]
pub struct Raw {
    text: Vec<u8>,
    /// One entry per message, in order; empty when they could not be found.
    items: Vec<Item>,
    /// The top-level members of every message, `items` pointing into it.
    members: Vec<Member>,
}

/// Where one message's members are in [`Raw::members`]; `None` for an item that is not
/// an object (refused anyway).
type Item = Option<Range<usize>>;

/// The client's text of one message: the body and the message's top-level members.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The whole body; the members' spans index into it.
    pub(crate) text: &'a [u8],
    /// The message's top-level members, in the text's order.
    pub(crate) members: &'a [Member],
}

impl Raw {
    /// `text` is a single-message body: the message is the whole body.
    pub(crate) fn single(text: Vec<u8>) -> Self {
        let mut members = Vec::new();
        let found = object_members(&text, skip_space(&text, 0), &mut members);
        let items = match found {
            Some(end) if skip_space(&text, end) == text.len() => vec![Some(0..members.len())],
            _ => Vec::new(),
        };
        Self {
            text,
            items,
            members,
        }
    }

    /// `text` is a batch envelope: the messages are the elements of its `batch` array
    /// (of the first, as the parse takes it). Any key of the envelope written with
    /// escapes, or an envelope too large to keep its order, finds none (a `b\u0061tch`
    /// key would otherwise pair the parsed items with another array's text); so does
    /// a count that differs from the parse's.
    pub(crate) fn batch(text: Vec<u8>, expected: usize) -> Self {
        let mut raw = Self {
            text,
            ..Self::default()
        };
        if raw.find_batch().is_none() || raw.items.len() != expected {
            raw.items.clear();
        }
        raw
    }

    fn find_batch(&mut self) -> Option<()> {
        let text = &self.text;
        let mut i = skip_space(text, 0);
        if text.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_space(text, i + 1);
        let mut found = false;
        for count in 0.. {
            if count > ORDERED_MEMBERS || text.get(i) != Some(&b'"') {
                return None;
            }
            let (key_end, escaped) = string_end(text, i)?;
            if escaped {
                return None;
            }
            let is_batch = &text[i + 1..key_end - 1] == b"batch" && !found;
            i = skip_space(text, key_end);
            if text.get(i) != Some(&b':') {
                return None;
            }
            i = skip_space(text, i + 1);
            i = if is_batch {
                found = true;
                elements(text, i, &mut self.items, &mut self.members)?
            } else {
                value_end(text, i)?
            };
            i = skip_space(text, i);
            match text.get(i) {
                Some(b',') => i = skip_space(text, i + 1),
                Some(b'}') => break,
                _ => return None,
            }
        }
        found.then_some(())
    }

    /// The client's text of message `index`, if it was found.
    #[must_use]
    pub fn item(&self, index: usize) -> Option<Message<'_>> {
        let members = self.items.get(index)?.clone()?;
        Some(Message {
            text: &self.text,
            members: self.members.get(members)?,
        })
    }
}

/// Scans the elements of the array whose `[` is at `at`, noting each object's members;
/// returns the index just past the `]`.
fn elements(
    text: &[u8],
    at: usize,
    items: &mut Vec<Item>,
    members: &mut Vec<Member>,
) -> Option<usize> {
    if text.get(at) != Some(&b'[') {
        return None;
    }
    let mut i = skip_space(text, at + 1);
    if text.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        let first = members.len();
        let end = if text.get(i) == Some(&b'{') {
            let end = object_members(text, i, members)?;
            items.push(Some(first..members.len()));
            end
        } else {
            items.push(None);
            value_end(text, i)?
        };
        i = skip_space(text, end);
        match text.get(i) {
            Some(b',') => i = skip_space(text, i + 1),
            Some(b']') => return Some(i + 1),
            _ => return None,
        }
    }
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

/// Appends the members of the object whose `{` is at `at` to `members`; returns the
/// index just past its `}`.
pub(crate) fn object_members(text: &[u8], at: usize, members: &mut Vec<Member>) -> Option<usize> {
    if text.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = skip_space(text, at + 1);
    if text.get(i) == Some(&b'}') {
        return Some(i + 1);
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
            Some(b'}') => return Some(i + 1),
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
/// an escape. Most strings of an event are short: eight bytes are tested at a time, and
/// a long run (or the last few bytes) goes to `memchr`.
fn string_end(text: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        let found = next_quote_or_backslash(text, i)?;
        if text[found] == b'"' {
            return Some((found + 1, escaped));
        }
        escaped = true;
        i = found + 2;
    }
}

/// The index of the first `"` or `\\` at or after `i`.
fn next_quote_or_backslash(text: &[u8], mut i: usize) -> Option<usize> {
    for _ in 0..4 {
        let Some(chunk) = text.get(i..i + 8) else {
            break;
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if ends_string(u64::from_le_bytes(word)) {
            return chunk
                .iter()
                .position(|&b| b == b'"' || b == b'\\')
                .map(|at| i + at);
        }
        i += 8;
    }
    Some(i + memchr::memchr2(b'"', b'\\', text.get(i..)?)?)
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
