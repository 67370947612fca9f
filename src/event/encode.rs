//! Writing the borrowed DOM back out as compact JSON.
//!
//! Most strings in analytics events are short (keys, ids, names), where a byte-table
//! scan followed by one copy beats SIMD set-up; profiles showed the generic writer's
//! per-character path at ~12 % of the batch route's CPU. Floats go through `ryu` and
//! integers through `itoa`, as in serde_json, so numbers read back identically.

use simd_json::StaticNode;
use simd_json::borrowed::Value;

/// Escape kind per byte: 0 = copy as is, b'u' = `\u00XX`, else the letter after `\`.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` as compact JSON. Decoded values name each key once (see
/// `event::repeated`), so objects are written as they are.
pub fn write_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Static(node) => write_static(*node, out),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(fields) => write_object(fields, out),
    }
}

/// Appends an object as compact JSON.
pub fn write_object(fields: &simd_json::borrowed::Object<'_>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, item)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        write_value(item, out);
    }
    out.push(b'}');
}

fn write_static(node: StaticNode, out: &mut Vec<u8>) {
    match node {
        StaticNode::Null => out.extend_from_slice(b"null"),
        StaticNode::Bool(true) => out.extend_from_slice(b"true"),
        StaticNode::Bool(false) => out.extend_from_slice(b"false"),
        StaticNode::I64(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        StaticNode::U64(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        // JSON has no NaN or infinity (and the parser never produces them).
        StaticNode::F64(f) if !f.is_finite() => out.extend_from_slice(b"null"),
        StaticNode::F64(f) => out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes()),
    }
}

/// Whether any of the 8 bytes in `w` needs escaping (`"`, `\\` or a control
/// character): the classic "has zero byte" test, eight bytes per step.
#[inline]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
    below_space || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// Appends `s` as a JSON string.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Skip clean 8-byte words without looking at each byte.
    let mut clean = 0;
    while clean + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[clean..clean + 8]);
        if needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        clean += 8;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(json: &serde_json::Value) -> serde_json::Value {
        let mut bytes = serde_json::to_vec(json).expect("json");
        let value = simd_json::to_borrowed_value(&mut bytes).expect("parses");
        let mut out = Vec::new();
        write_value(&value, &mut out);
        serde_json::from_slice(&out).expect("our output is JSON")
    }

    #[test]
    fn word_test_matches_the_table() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut word = [b'a'; 8];
                word[pos] = b;
                assert_eq!(
                    needs_escape(u64::from_le_bytes(word)),
                    ESCAPE[b as usize] != 0,
                    "byte {b} at {pos}"
                );
            }
        }
    }

    #[test]
    fn escapes_what_json_requires() {
        let v = serde_json::json!({"s": "quote \" backslash \\ nl \n tab \t bell \u{7} uni é ✓", "n": [1, -2, 3.5, 1e21, null, true]});
        assert_eq!(round_trip(&v), v);
        let mut out = Vec::new();
        write_str("\u{1}\"", &mut out);
        assert_eq!(out, br#""\u0001\"""#);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e15f64..1e15).prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,12}", inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        // Compared with serde_json's own write-and-read, since serde_json's float
        // reader (without `float_roundtrip`) may land one ULP off either way.
        fn round_trips_any_document(v in arb_json()) {
            let reference: serde_json::Value =
                serde_json::from_slice(&serde_json::to_vec(&v).expect("json")).expect("json");
            prop_assert_eq!(round_trip(&v), reference);
        }
    }
}
