//! PII rules at the edge: what decoding, normalising and writing the record of an
//! identify event costs with no rules, and with three (hash `traits.email`, mask
//! `traits.phone`, drop `context.ip`) and six (those and a wildcard over a list) rules,
//! per event of a 100-event batch. `cargo bench --bench pii`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::config::Limits;
use sluice::event::{self, Enrichment, Shape};
use sluice::pii::{Action, RuleDoc, Rules};

fn identify(n: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "identify", "userId": format!("user-{n}"),
        "anonymousId": "4f9c1a2e-8b7d-4c3a-9e1f-2a6b5c8d7e90",
        "messageId": format!("ajs-next-1732700000000-{n:08}"),
        "timestamp": "2026-11-27T09:59:58.123Z",
        "traits": { "email": format!("user-{n}@example.com"), "phone": "+1 555 010 4321",
                    "name": "Ann Example", "plan": "pro", "logins": 42,
                    "addresses": [{"street": "1 Main St", "city": "Springfield"},
                                  {"street": "2 Side St", "city": "Shelbyville"}] },
        "context": {
            "ip": "203.0.113.7",
            "library": { "name": "analytics.js", "version": "next-1.84.3" },
            "page": { "path": "/account", "referrer": "https://www.google.com/",
                      "title": "Acme Store", "url": "https://shop.example.com/account" },
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "locale": "en-US", "timezone": "Europe/Berlin"
        },
        "integrations": {}
    })
}

fn rules(list: &[(&str, Action)]) -> Option<std::sync::Arc<Rules>> {
    let docs: Vec<RuleDoc> = list
        .iter()
        .map(|(path, action)| RuleDoc {
            path: (*path).to_owned(),
            action: *action,
        })
        .collect();
    Rules::compile(&docs, Some("a-workspace-salt-of-64-hex-characters"))
}

/// The gateway's per-event work on a batch body, PII rules applied where the gateway
/// applies them (after normalising, before the record is written).
fn run(body: &[u8], limits: &Limits, rules: Option<&Rules>) -> usize {
    let mut bytes = body.to_vec();
    let envelope = event::decode(&mut bytes, Shape::Batch, limits).expect("valid body");
    let enrichment = Enrichment::new(
        chrono::Utc::now(),
        Some([10, 0, 0, 1].into()),
        "web",
        limits,
    );
    let mut out = Vec::with_capacity(body.len() * 2);
    let mut stored = 0;
    for item in envelope.items {
        let Ok(mut prepared) = event::prepare(item, None, &envelope.defaults, &enrichment) else {
            continue;
        };
        if let Some(rules) = rules {
            rules.apply(&mut prepared.message);
        }
        stored += usize::from(event::write(&prepared, None, &enrichment, &mut out).is_ok());
    }
    stored
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let batch = serde_json::to_vec(&serde_json::json!({
        "batch": (0..100).map(identify).collect::<Vec<_>>(),
    }))
    .expect("json");
    let three = rules(&[
        ("traits.email", Action::Hash),
        ("traits.phone", Action::Mask),
        ("context.ip", Action::Drop),
    ]);
    let six = rules(&[
        ("traits.email", Action::Hash),
        ("traits.phone", Action::Mask),
        ("context.ip", Action::Drop),
        ("traits.name", Action::Hash),
        ("traits.addresses.*.street", Action::Drop),
        ("properties.email", Action::Hash),
    ]);
    let mut g = c.benchmark_group("pii: decode+normalize+write, batch of 100 identify");
    g.throughput(Throughput::Elements(100));
    g.bench_function("no rules", |b| {
        b.iter(|| black_box(run(&batch, &limits, None)))
    });
    g.bench_function("3 rules", |b| {
        b.iter(|| black_box(run(&batch, &limits, three.as_deref())))
    });
    g.bench_function("6 rules", |b| {
        b.iter(|| black_box(run(&batch, &limits, six.as_deref())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
