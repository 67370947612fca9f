//! Consent routing in delivery: what deciding one stored event for one destination costs
//! (`route::pick`: read the record, consent, `integrations`, filters) for a destination
//! without consent categories, and for one with two categories when the event consents
//! and when it does not. The event is a browser track event of about 1.3 KB with its
//! `context`. `cargo bench --bench consent`.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sluice::catalog::{Document, Snapshot};
use sluice::delivery::route;

fn record(preferences: serde_json::Value) -> Vec<u8> {
    let event = json!({
        "type": "track", "event": "Product Viewed", "userId": "user-5081",
        "anonymousId": "6f8e4a52-1b7d-4a8e-9d0c-6f1e2a3b4c5d",
        "messageId": "ajs-next-1733630000000-9f1c2d3e-4b5a-6c7d-8e9f-0a1b2c3d4e5f",
        "timestamp": "2026-12-08T03:00:00.000Z", "receivedAt": "2026-12-08T03:00:00.120Z",
        "properties": {"product_id": "507f1f77", "sku": "G-32", "category": "Games",
                       "name": "Monopoly: 3rd Edition", "brand": "Hasbro", "price": 18.99,
                       "currency": "USD", "quantity": 1, "position": 3,
                       "url": "https://shop.example/products/monopoly"},
        "context": {
            "ip": "203.0.113.7", "locale": "en-US", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
            "library": {"name": "analytics.js", "version": "next-1.84.3"},
            "page": {"path": "/products/monopoly", "referrer": "https://shop.example/", "search": "",
                     "title": "Monopoly", "url": "https://shop.example/products/monopoly"},
            "campaign": {"source": "newsletter", "medium": "email", "name": "december"},
            "consent": {"categoryPreferences": preferences}
        },
        "integrations": {}
    });
    serde_json::to_vec(&json!({"sourceId": "web", "event": event})).expect("json")
}

fn bench(c: &mut Criterion) {
    let text = "[[sources]]\nid = \"web\"\n\
        [[destinations]]\nid = \"plain\"\nsources = [\"web\"]\ntype = \"file\"\nsettings = { path = \"p\" }\n\
        [[destinations]]\nid = \"ads\"\nsources = [\"web\"]\ntype = \"file\"\n\
        consent_categories = [\"Advertising\", \"Analytics\"]\nsettings = { path = \"a\" }\n";
    let snapshot = Snapshot::try_build(1, &Document::parse(text).expect("valid")).expect("ok");
    let (plain, ads) = (&snapshot.destinations()[0], &snapshot.destinations()[1]);
    let yes = record(json!({"Analytics": true, "Advertising": true, "Functional": true}));
    let no = record(json!({"Analytics": true, "Advertising": false, "Functional": true}));
    eprintln!("record: {} bytes", yes.len());
    c.bench_function("consent: pick, destination without categories", |b| {
        b.iter(|| route::pick(plain, 0, std::hint::black_box(&yes)).is_ok());
    });
    c.bench_function("consent: pick, two categories, consented", |b| {
        b.iter(|| route::pick(ads, 0, std::hint::black_box(&yes)).is_ok());
    });
    c.bench_function("consent: pick, two categories, withheld", |b| {
        b.iter(|| route::pick(ads, 0, std::hint::black_box(&no)).is_err());
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
