//! Keys written twice in one object, found on simd-json's tape before any DOM exists.
//!
//! simd-json's borrowed DOM keeps both copies of a repeated key in an object of up to 32
//! members but merges them in a larger one (the last copy wins), and an object that
//! grows past 32 members later merges them too. Once merged, nothing in the DOM shows
//! that the client sent two values, and parsers disagree on which one counts (a tracking
//! plan could check one copy while a destination reads the other). The tape keeps every
//! key as written (escapes already resolved, so `"a"` and `"\u0061"` are the same key),
//! so the check runs there, once, over every object of the body.

use simd_json::Node;

/// Objects of up to this many members are checked with a 64-bit filter and a linear
/// comparison on collision; larger ones with a hash set.
const SMALL: usize = 32;

/// The tape positions of the objects that name some key more than once, in tape order
/// (so an object comes before the objects nested in it). Empty for almost every body.
pub fn objects_repeating_a_key(tape: &[Node<'_>]) -> Vec<usize> {
    let mut found = Vec::new();
    for (at, node) in tape.iter().enumerate() {
        if let Node::Object { len, .. } = *node
            && len > 1
            && repeats_a_key(tape, at, len)
        {
            found.push(at);
        }
    }
    found
}

/// The number of tape nodes `node` spans, itself included.
pub fn width(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        Node::String(_) | Node::Static(_) => 1,
    }
}

/// The members of the object at `at` (nothing if no object is there): each key with the
/// tape position of its value.
pub fn members<'t, 'input>(tape: &'t [Node<'input>], at: usize) -> Members<'t, 'input> {
    let left = match tape.get(at) {
        Some(Node::Object { len, .. }) => *len,
        _ => 0,
    };
    Members {
        tape,
        next: at + 1,
        left,
    }
}

/// Whether the object at `at` (with `len` members) names a key twice.
fn repeats_a_key(tape: &[Node<'_>], at: usize, len: usize) -> bool {
    let mut keys = members(tape, at).map(|(key, _)| key);
    if len <= SMALL {
        let mut seen: [&str; SMALL] = [""; SMALL];
        let mut filter = 0u64;
        for (i, key) in keys.enumerate() {
            let b = key.as_bytes();
            let mix = b.len()
                ^ usize::from(b.first().copied().unwrap_or(0)) << 1
                ^ usize::from(b.last().copied().unwrap_or(0)) << 3;
            let bit = 1u64 << (mix % 64);
            if filter & bit != 0 && seen[..i].contains(&key) {
                return true;
            }
            filter |= bit;
            seen[i] = key;
        }
        false
    } else {
        let mut seen = std::collections::HashSet::with_capacity(len);
        keys.any(|key| !seen.insert(key))
    }
}

/// An object's members, read from the tape by hopping over each member's value.
pub struct Members<'t, 'input> {
    tape: &'t [Node<'input>],
    next: usize,
    left: usize,
}

impl<'input> Iterator for Members<'_, 'input> {
    type Item = (&'input str, usize);

    fn next(&mut self) -> Option<(&'input str, usize)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // simd-json's tape always holds a string key before each member's value.
        let Some(Node::String(key)) = self.tape.get(self.next) else {
            self.left = 0;
            return None;
        };
        let value = self.next + 1;
        self.next = value + self.tape.get(value).map_or(1, width);
        Some((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repeated(text: &str) -> Vec<usize> {
        let mut bytes = text.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).expect("parses");
        objects_repeating_a_key(&tape.0)
    }

    fn members(n: usize, extra: &str) -> String {
        let mut s: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        if !extra.is_empty() {
            s.push(extra.to_string());
        }
        format!("{{{}}}", s.join(","))
    }

    #[test]
    fn a_body_without_repeats_has_none() {
        assert!(
            repeated(r#"{"a":1,"b":{"a":[{"a":1,"b":2}],"c":"a"},"d":[1,{"x":{}}]}"#).is_empty()
        );
        assert!(repeated(&members(33, "")).is_empty());
        assert!(repeated(&members(500, "")).is_empty());
        assert!(repeated("[]").is_empty());
    }

    #[test]
    fn a_repeat_is_found_at_every_size_and_depth() {
        assert_eq!(repeated(r#"{"a":1,"a":2}"#), vec![0]);
        // Escapes are resolved before comparing.
        assert_eq!(repeated(r#"{"a":1,"\u0061":2}"#), vec![0]);
        // Larger objects, which the DOM would merge: the repeat first, last, anywhere.
        for n in [31, 32, 33, 64, 300] {
            assert_eq!(repeated(&members(n, "\"k0\":true")), vec![0], "{n} members");
            assert_eq!(
                repeated(&members(n, &format!("\"k{}\":true", n - 1))),
                vec![0]
            );
        }
        // Nested behind objects and arrays with containers as values, so the hop over
        // each member's value is exercised.
        let inner = members(40, "\"k7\":null");
        let body = format!(r#"{{"x":{{"y":[1,{{"z":[]}}]}},"p":[{{"q":1}},{inner}],"r":2}}"#);
        let at = repeated(&body);
        assert_eq!(at.len(), 1);
        let mut bytes = body.into_bytes();
        let tape = simd_json::to_tape(&mut bytes).expect("parses");
        assert!(matches!(tape.0[at[0]], Node::Object { len: 41, .. }));
    }

    #[test]
    fn keys_equal_to_other_members_values_are_not_repeats() {
        assert!(repeated(r#"{"a":"b","b":"a","c":{"a":"a"}}"#).is_empty());
    }

    #[test]
    fn widths_cover_the_whole_tape() {
        let mut bytes = br#"{"a":[1,{"b":2}],"c":{}}"#.to_vec();
        let tape = simd_json::to_tape(&mut bytes).expect("parses");
        assert_eq!(width(&tape.0[0]), tape.0.len());
    }
}
