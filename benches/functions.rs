//! The cost of an insert function per event, engine reused (loaded once, as delivery
//! runs it): a trivial one (`return event`), a realistic PII-masking one, and the
//! JSON round trip alone for comparison. Target: the trivial function ≤ 20 µs per
//! event on one core.
//!
//! `cargo bench --bench functions`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::functions::{Handler, Limits, Outcome, Sandbox};

const EVENT: &str = r#"{"type":"track","event":"Order Completed","userId":"user-1842",
"anonymousId":"4f9c1a2e-8b7d-4c3a-9e1f-2a6b5c8d7e90","messageId":"ajs-next-1732700000000-00000001",
"timestamp":"2026-11-27T09:59:58.123Z","receivedAt":"2026-11-27T09:59:58.301Z",
"properties":{"order_id":"o-5521","total":129.95,"currency":"EUR","email":"ada@example.com",
"phone":"+49 30 1234567","products":[{"product_id":"p-123","name":"Rain Jacket","price":129.95,"quantity":1}]},
"context":{"ip":"203.0.113.7","library":{"name":"analytics.js","version":"next-1.84.3"},
"page":{"path":"/checkout","url":"https://shop.example.com/checkout","title":"Checkout"},
"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
"traits":{"email":"ada@example.com","name":"Ada Lovelace"}}}"#;

const TRIVIAL: &str = "async function onTrack(event) { return event; }";

/// Masks e-mail addresses and phone numbers wherever they are, drops the IP.
const MASKING: &str = r#"
const EMAIL = /^[^@\s]+@([^@\s]+)$/;
function mask(value) {
  if (Array.isArray(value)) return value.map(mask);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value)) {
      const v = value[key];
      if (key === "email" && typeof v === "string") out[key] = v.replace(EMAIL, "***@$1");
      else if (key === "phone" && typeof v === "string") out[key] = v.slice(0, 3) + "*".repeat(Math.max(0, v.length - 5)) + v.slice(-2);
      else out[key] = mask(v);
    }
    return out;
  }
  return value;
}
async function onTrack(event, settings) {
  const masked = mask(event);
  if (masked.context) delete masked.context.ip;
  return masked;
}
"#;

fn loaded(code: &str) -> Sandbox {
    Sandbox::load(code, &serde_json::json!({}), Limits::default()).expect("loads")
}

fn functions(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_function");
    group.throughput(Throughput::Elements(1));
    for (name, code) in [
        ("trivial", TRIVIAL),
        ("trivial_sync", "function onTrack(event) { return event; }"),
        ("parse_only", "function onTrack(event) { return {}; }"),
        ("pii_masking", MASKING),
    ] {
        let mut fx = loaded(code);
        let check = fx.invoke(Handler::Track, EVENT).outcome;
        assert!(matches!(check, Outcome::Event(_)), "{name}: {check:?}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(fx.invoke(Handler::Track, black_box(EVENT))));
        });
    }
    // The floor: parsing and writing the event in Rust, as the host does around it.
    group.bench_function("serde_json_round_trip", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_str(black_box(EVENT)).expect("JSON");
            black_box(serde_json::to_string(&v).expect("JSON"))
        });
    });
    group.bench_function("load", |b| b.iter(|| black_box(loaded(TRIVIAL))));
    group.finish();
}

criterion_group!(benches, functions);
criterion_main!(benches);
