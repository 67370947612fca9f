//! A single pass over JSON text that bounds its nesting depth before parsing.
//!
//! It understands just enough JSON to tell brackets inside strings (and escaped
//! quotes) from structure. It never fails on invalid JSON: the parser does that.

/// Whether `bytes` nests arrays/objects deeper than `limit` anywhere.
///
/// Inside strings it jumps from quote/backslash to quote/backslash with `memchr`, so
/// the long string values of real events cost little.
pub fn exceeds_depth(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string: find its closing quote, stepping over escapes.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                        None => return false,
                        Some(at) if bytes[i + at] == b'\\' => i += at + 2,
                        Some(at) => {
                            i += at + 1;
                            break;
                        }
                    }
                    if i >= bytes.len() {
                        return false;
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_structure_not_string_content() {
        assert!(!exceeds_depth(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(exceeds_depth(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!exceeds_depth(br#"{"a":"[[[[[[[[[["}"#, 1));
        assert!(!exceeds_depth(br#"{"a":"\"[[[[[[["}"#, 1));
        assert!(exceeds_depth(br#"{"a":"\\",  "b":[[]]}"#, 2));
    }

    proptest! {
        // Whenever serde_json parses a document, the scan agrees with the real depth.
        #[test]
        fn agrees_with_a_parser(depth in 0usize..40, key in "[a-z\\[\\]{}\"\\\\]{0,6}") {
            let mut doc = String::new();
            for _ in 0..depth { doc.push_str("{\"k\":["); }
            doc.push_str(&serde_json::to_string(&key).expect("string"));
            for _ in 0..depth { doc.push_str("]}"); }
            prop_assert!(serde_json::from_str::<serde_json::Value>(&doc).is_ok());
            prop_assert!(!exceeds_depth(doc.as_bytes(), depth * 2));
            prop_assert_eq!(exceeds_depth(doc.as_bytes(), (depth * 2).saturating_sub(1)), depth > 0);
        }
    }
}
