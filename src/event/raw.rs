//! The client's own bytes of a body, kept beside the in-place parse (which unescapes
//! strings into the buffer) so that the stored record can copy what Sluice does not
//! change instead of writing it out again (see `splice`).
//!
//! Nothing is scanned again: the parse leaves every key where the client wrote it (a
//! borrowed key points into the body, and an unescaped one is written back where its
//! text began), so the keys of an object, in order, mark where each member's value
//! starts and ends: between one key's closing quote and the next key's opening quote
//! lie `:`, the value, and `,`. Each of those bytes is checked in the kept text; on
//! anything unexpected no span is kept and the record is written from the parsed value
//! as before. Objects larger than [`ORDERED_MEMBERS`] are hash maps in the parsed value,
//! whose order is not the text's, and are never used.

use std::ops::Range;

use simd_json::borrowed::{Object, Value};

use super::encode::has_control;

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
    /// The text and spans of a single-message body, `root` its parse (untouched yet),
    /// `base` the address the body was parsed at.
    pub(crate) fn single(text: Vec<u8>, base: usize, root: &Object<'_>) -> Self {
        let mut raw = Self {
            text,
            ..Self::default()
        };
        if !has_control(&raw.text) {
            let end = last_byte(&raw.text, raw.text.len(), b'}');
            let item = end.and_then(|end| raw.note(base, root, end));
            raw.items.push(item);
        }
        raw
    }

    /// The text and spans of a batch body, `root` its parse (untouched yet): the
    /// messages are the elements of its `batch` array.
    pub(crate) fn batch(text: Vec<u8>, base: usize, root: &Object<'_>) -> Self {
        let mut raw = Self {
            text,
            ..Self::default()
        };
        if !has_control(&raw.text) && raw.note_batch(base, root).is_none() {
            raw.items.clear();
        }
        raw
    }

    /// Notes the items of the first `batch` array of `root`.
    fn note_batch(&mut self, base: usize, root: &Object<'_>) -> Option<()> {
        if root.len() > ORDERED_MEMBERS {
            return None;
        }
        let keys: Vec<usize> = root
            .keys()
            .map(|k| self.key_at(base, k))
            .collect::<Option<_>>()?;
        let at = root.iter().position(|(k, _)| k == "batch")?;
        let Some((_, Value::Array(items))) = root.iter().nth(at) else {
            return None;
        };
        // Where the array's `]` is: before the next member's key, or the body's `}`.
        let after = match keys.get(at + 1) {
            Some(&next) => before_key(&self.text, next, b',')?,
            None => last_byte(&self.text, self.text.len(), b'}')?,
        };
        let mut end = last_byte(&self.text, after, b']')?;
        // Items from the last: each one's `}` is found from the one after it.
        let mut noted: Vec<Item> = Vec::with_capacity(items.len());
        for item in items.iter().rev() {
            let Value::Object(fields) = item else {
                noted.push(None);
                end = self.start_of_value(item, end)?;
                continue;
            };
            let close = last_byte(&self.text, end, b'}')?;
            noted.push(self.note(base, fields, close));
            end = self.object_start(base, fields, close)?;
            end = skip_back_space(&self.text, end);
            if self.text.get(end.checked_sub(1)?) == Some(&b',') {
                end -= 1;
            }
        }
        noted.reverse();
        self.items = noted;
        Some(())
    }

    /// Where the object `fields`, whose `}` is at `close`, starts (its `{`).
    fn object_start(&self, base: usize, fields: &Object<'_>, close: usize) -> Option<usize> {
        let from = match fields.keys().next() {
            Some(first) => self.key_at(base, first)?.checked_sub(1)?,
            None => close,
        };
        last_byte(&self.text, from, b'{')
    }

    /// A non-object batch item ending before `end`: where it starts. Only an item
    /// without inner keys can be walked over this way; others give up.
    fn start_of_value(&self, item: &Value<'_>, end: usize) -> Option<usize> {
        match item {
            Value::Static(_) => {
                let end = skip_back_space(&self.text, end);
                let start = self.text[..end]
                    .iter()
                    .rposition(|b| matches!(b, b',' | b'[' | b' ' | b'\t' | b'\n' | b'\r'))?
                    + 1;
                let start = skip_back_space(&self.text, start);
                Some(if self.text.get(start.checked_sub(1)?) == Some(&b',') {
                    start - 1
                } else {
                    start
                })
            }
            _ => None,
        }
    }

    /// Notes the members of the object `fields`, whose closing `}` is at `close`;
    /// returns where they are in `members`.
    fn note(&mut self, base: usize, fields: &Object<'_>, close: usize) -> Item {
        if fields.len() > ORDERED_MEMBERS {
            return None;
        }
        let first = self.members.len();
        let keys: Vec<(usize, &str)> = fields
            .keys()
            .map(|k| Some((self.key_at(base, k)?, k.as_ref())))
            .collect::<Option<_>>()?;
        for (i, &(at, key)) in keys.iter().enumerate() {
            let escaped = self.text.get(at..at + key.len()) != Some(key.as_bytes())
                || self.text.get(at + key.len()) != Some(&b'"');
            if escaped {
                // Its text is longer than its value: where the value starts is unknown.
                self.members.truncate(first);
                return None;
            }
            let colon = skip_space(&self.text, at + key.len() + 1);
            if self.text.get(colon) != Some(&b':') {
                self.members.truncate(first);
                return None;
            }
            let start = skip_space(&self.text, colon + 1);
            let end = match keys.get(i + 1) {
                Some(&(next, _)) => before_key(&self.text, next, b','),
                None => Some(skip_back_space(&self.text, close)),
            };
            let Some(end) = end.filter(|&end| end > start) else {
                self.members.truncate(first);
                return None;
            };
            self.members.push(Member {
                key: at..at + key.len(),
                value: start..end,
            });
        }
        Some(first..self.members.len())
    }

    /// Where `key`'s text begins in the body, if the parse left it there.
    fn key_at(&self, base: usize, key: &str) -> Option<usize> {
        let at = (key.as_ptr() as usize).checked_sub(base)?;
        (at >= 1 && at + key.len() <= self.text.len() && self.text[at - 1] == b'"').then_some(at)
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

/// The index of `byte`, the last byte before `end` that is not white space.
fn last_byte(text: &[u8], end: usize, byte: u8) -> Option<usize> {
    let at = skip_back_space(text, end).checked_sub(1)?;
    (text.get(at) == Some(&byte)).then_some(at)
}

/// For the key whose text begins at `key` (its opening quote just before): the end of
/// what precedes the separator `sep` before it (the previous value's end).
fn before_key(text: &[u8], key: usize, sep: u8) -> Option<usize> {
    let sep_at = last_byte(text, key.checked_sub(1)?, sep)?;
    Some(skip_back_space(text, sep_at))
}

/// `end` moved back over white space.
fn skip_back_space(text: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(text.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        end -= 1;
    }
    end
}

/// One member of an object as the text writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The key's characters between its quotes (written without escapes).
    pub key: Range<usize>,
    /// The value's text.
    pub value: Range<usize>,
}

fn skip_space(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}
