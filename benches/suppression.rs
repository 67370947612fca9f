//! The suppression list at the edge: what one event's check costs with an empty list
//! and with a million suppressed users (a miss, the usual case, and a hit), how long a
//! million changes take to apply, and the memory they take. `cargo bench --bench
//! suppression`.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::suppression::{Change, Suppressions};

const USERS: u64 = 1_000_000;

fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A million suppressions, half workspace-wide and half in one source, with ids shaped
/// like real ones (a UUID each), applied in pages of 10,000 as a gateway gets them.
fn million() -> Suppressions {
    let list = Suppressions::new();
    let before = resident_bytes();
    let mut took = std::time::Duration::ZERO;
    for first in (1..=USERS).step_by(10_000) {
        let page: Vec<Change> = (first..first + 10_000)
            .map(|seq| Change {
                seq,
                workspace: "ws_3f9a1c".into(),
                source: (seq % 2 == 0).then(|| "web".to_owned()),
                subject: uuid::Uuid::from_u128(u128::from(seq)).to_string(),
                suppressed: true,
            })
            .collect();
        let started = Instant::now();
        list.apply(&page);
        took += started.elapsed();
    }
    eprintln!(
        "{} suppressions applied in {:.0} ms (pages of 10,000); table {:.1} MB; resident memory +{:.1} MB",
        list.len(),
        took.as_secs_f64() * 1e3,
        list.table_bytes() as f64 / 1e6,
        resident_bytes().saturating_sub(before) as f64 / 1e6
    );
    list
}

fn check(c: &mut Criterion) {
    let empty = Suppressions::new();
    c.bench_function("suppression: check, empty list", |b| {
        b.iter(|| empty.holds(Some("ws_3f9a1c"), "web", std::hint::black_box("user-42")));
    });
    let list = million();
    let absent = uuid::Uuid::from_u128(u128::from(USERS + 7)).to_string();
    c.bench_function("suppression: check, 1M list, not suppressed", |b| {
        b.iter(|| list.holds(Some("ws_3f9a1c"), "web", std::hint::black_box(&absent)));
    });
    let present = uuid::Uuid::from_u128(77).to_string();
    assert!(list.holds(Some("ws_3f9a1c"), "ios", &present));
    c.bench_function("suppression: check, 1M list, suppressed", |b| {
        b.iter(|| list.holds(Some("ws_3f9a1c"), "web", std::hint::black_box(&present)));
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
