//! Per-event costs of the request path: decode + normalise (single message and a
//! 100-event batch), write-key lookup, and a catalog swap under concurrent readers.
//!
//! `cargo bench --bench ingest`; compare runs with `-- --save-baseline NAME` /
//! `-- --baseline NAME`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice::catalog::{Document, Live, Snapshot};
use sluice::config::Limits;
use sluice::event::{self, Enrichment, Kind, Shape};

fn track_event(n: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "track", "event": "Product Viewed", "userId": format!("user-{n}"),
        "anonymousId": "4f9c1a2e-8b7d-4c3a-9e1f-2a6b5c8d7e90",
        "messageId": format!("ajs-next-1732700000000-{n:08}"),
        "timestamp": "2026-11-27T09:59:58.123Z",
        "properties": { "product_id": "p-123", "name": "Rain Jacket", "price": 129.95,
                        "currency": "EUR", "quantity": 1, "category": "outerwear" },
        "context": {
            "library": { "name": "analytics.js", "version": "next-1.84.3" },
            "page": { "path": "/products/42", "referrer": "https://www.google.com/",
                      "search": "?utm_source=newsletter", "title": "Acme Store",
                      "url": "https://shop.example.com/products/42" },
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "locale": "en-US", "timezone": "Europe/Berlin",
            "campaign": { "source": "newsletter", "medium": "email", "name": "autumn" }
        },
        "integrations": {}
    })
}

fn run_request(body: &[u8], shape: Shape, limits: &Limits) -> usize {
    let mut bytes = body.to_vec();
    let capacity = bytes.len() * 2;
    let envelope = event::decode(&mut bytes, shape, limits).expect("valid body");
    let enrichment = Enrichment::new(
        chrono::Utc::now(),
        Some([10, 0, 0, 1].into()),
        "web",
        limits,
    );
    let mut out = Vec::with_capacity(capacity);
    let mut stored = 0;
    for item in envelope.items {
        if event::normalize(
            item,
            envelope.kind,
            &envelope.defaults,
            &enrichment,
            &mut out,
        )
        .is_ok()
        {
            stored += 1;
        }
    }
    stored
}

fn decode_and_normalize(c: &mut Criterion) {
    let limits = Limits::default();
    let single = serde_json::to_vec(&track_event(1)).expect("json");
    let batch = serde_json::to_vec(&serde_json::json!({
        "batch": (0..100).map(track_event).collect::<Vec<_>>(),
        "sentAt": "2026-11-27T10:00:00.000Z",
    }))
    .expect("json");
    let mut g = c.benchmark_group("decode+normalize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single track (~800 B)", |b| {
        b.iter(|| black_box(run_request(&single, Shape::Single(Kind::Track), &limits)))
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch of 100", |b| {
        b.iter(|| black_box(run_request(&batch, Shape::Batch, &limits)))
    });
    g.finish();

    let mut g = c.benchmark_group("parse only (simd-json, the baseline's work)");
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch of 100", |b| {
        b.iter_batched(
            || batch.clone(),
            |mut bytes| black_box(simd_json::to_borrowed_value(&mut bytes).is_ok()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn catalog_with(sources: usize) -> Document {
    let mut text = String::new();
    for s in 0..sources {
        text.push_str(&format!(
            "[[sources]]\nid = \"s{s}\"\nwrite_keys = [{{ key = \"key-{s}-a\" }}, {{ key = \"key-{s}-b\" }}]\n"
        ));
    }
    Document::parse(&text).expect("valid catalog")
}

fn write_key_lookup(c: &mut Criterion) {
    let snapshot = Snapshot::try_build(1, &catalog_with(1000)).expect("installable");
    let now = chrono::Utc::now();
    let mut g = c.benchmark_group("write key");
    g.bench_function("lookup (hit, 2000 keys)", |b| {
        b.iter(|| black_box(snapshot.authenticate(black_box("key-500-b"), now).is_ok()))
    });
    g.bench_function("lookup (miss)", |b| {
        b.iter(|| {
            black_box(
                snapshot
                    .authenticate(black_box("not-a-key-at-all-0123456789"), now)
                    .is_err(),
            )
        })
    });
    g.finish();
}

fn catalog_swap(c: &mut Criterion) {
    let doc = catalog_with(1000);
    let store = Live::new(Snapshot::try_build(1, &doc).expect("installable"));
    let stop = Arc::new(AtomicBool::new(false));
    // Two readers load the snapshot and look a key up continuously.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let now = chrono::Utc::now();
                while !stop.load(Ordering::Relaxed) {
                    black_box(store.snapshot().authenticate("key-1-a", now).is_ok());
                }
            })
        })
        .collect();
    let mut version = 1;
    c.bench_function(
        "catalog swap under 2 readers (1000 sources, prebuilt)",
        |b| {
            b.iter_batched(
                || {
                    version += 1;
                    Snapshot::try_build(version, &doc).expect("installable")
                },
                |snapshot| store.install(snapshot),
                BatchSize::LargeInput,
            )
        },
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
}

/// A typical plan: 20 track events with 10–20 typed properties (enums, required)
/// and a COMMON rule; reviews a planned event with a few violations
/// and a clean one.
fn typical_plan() -> (sluice::catalog::Document, String) {
    let mut text = String::from("[[tracking_plans]]\nid = \"tp\"\n");
    for e in 0..20 {
        let mut props = Vec::new();
        let mut required = Vec::new();
        for p in 0..(10 + e % 11) {
            let schema = match p % 4 {
                0 => "{ type = \"string\" }".to_owned(),
                1 => "{ type = \"number\", minimum = 0 }".to_owned(),
                2 => "{ type = \"string\", enum = [\"EUR\", \"USD\", \"GBP\"] }".to_owned(),
                _ => "{ type = \"boolean\" }".to_owned(),
            };
            props.push(format!("p{p} = {schema}"));
            if p < 3 {
                required.push(format!("\"p{p}\""));
            }
        }
        text.push_str(&format!(
            "[[tracking_plans.rules]]\ntype = \"TRACK\"\nkey = \"Event {e}\"\njsonSchema = {{ type = \"object\", properties = {{ properties = {{ type = \"object\", required = [{}], properties = {{ {} }} }} }} }}\n",
            required.join(", "),
            props.join(", ")
        ));
    }
    text.push_str("[[tracking_plans.rules]]\ntype = \"COMMON\"\njsonSchema = { type = \"object\", required = [\"type\"] }\n");
    text.push_str("[[sources]]\nid = \"web\"\ntracking_plan = \"tp\"\nenforcement = \"warn\"\n");
    (sluice::catalog::Document::parse(&text).expect("plan"), text)
}

fn tracking_plan_review(c: &mut Criterion) {
    let (doc, _) = typical_plan();
    let snapshot = Snapshot::try_build(1, &doc).expect("installable");
    let source = std::sync::Arc::clone(&snapshot.sources()[0]);
    let sp = source.protocols.clone().expect("plan attached");
    let limits = Limits::default();
    let event = |props: serde_json::Value| {
        let mut e = track_event(1);
        e["event"] = "Event 10".into();
        e["properties"] = props;
        serde_json::to_vec(&e).expect("json")
    };
    let clean = event(
        serde_json::json!({"p0": "a", "p1": 1.5, "p2": "EUR", "p3": true, "p4": "b", "p5": 2, "p6": "USD", "p7": false, "p8": "c", "p9": 3, "p10": "GBP", "p11": true}),
    );
    let dirty =
        event(serde_json::json!({"p0": 1, "p2": "JPY", "p3": true, "extra": "x", "p5": -1}));
    let mut g = c.benchmark_group("tracking plan (20 events, 10-20 properties)");
    g.throughput(Throughput::Elements(1));
    for (name, body) in [("clean event", &clean), ("event with 5 violations", &dirty)] {
        g.bench_function(format!("review, {name}"), |b| {
            b.iter_batched(
                || body.clone(),
                |mut bytes| {
                    let envelope = event::decode(&mut bytes, Shape::Single(Kind::Track), &limits)
                        .expect("decodes");
                    let enrichment = Enrichment::new(chrono::Utc::now(), None, "web", &limits);
                    let mut prepared = envelope
                        .items
                        .into_iter()
                        .map(|i| {
                            event::prepare(i, envelope.kind, &envelope.defaults, &enrichment)
                                .expect("valid")
                        })
                        .next()
                        .expect("one");
                    black_box(
                        sluice::protocols::review(&sp, "web", prepared.kind, &mut prepared.message)
                            .violations
                            .len(),
                    )
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("decode + prepare only (the baseline for the above)", |b| {
        b.iter_batched(
            || clean.clone(),
            |mut bytes| {
                let envelope = event::decode(&mut bytes, Shape::Single(Kind::Track), &limits)
                    .expect("decodes");
                let enrichment = Enrichment::new(chrono::Utc::now(), None, "web", &limits);
                let mut prepared = 0;
                for item in envelope.items {
                    if event::prepare(item, envelope.kind, &envelope.defaults, &enrichment).is_ok()
                    {
                        prepared += 1;
                    }
                }
                black_box(prepared)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    decode_and_normalize,
    write_key_lookup,
    catalog_swap,
    tracking_plan_review
);
criterion_main!(benches);
