//! Body decoding and normalisation on arbitrary bytes: must never panic, and every
//! accepted message must serialise to a JSON record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::config::Limits;
use sluice::event::{self, Enrichment, Kind, Shape};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let shape = match selector % 7 {
        0 => Shape::Single(Kind::Identify),
        1 => Shape::Single(Kind::Track),
        2 => Shape::Single(Kind::Page),
        3 => Shape::Single(Kind::Screen),
        4 => Shape::Single(Kind::Group),
        5 => Shape::Single(Kind::Alias),
        _ => Shape::Batch,
    };
    let limits = Limits::default();
    let mut body = body.to_vec();
    let Ok(envelope) = event::decode(&mut body, shape, &limits) else {
        return;
    };
    let enrichment = Enrichment::new(chrono::Utc::now(), None, "fuzz", &limits);
    for item in envelope.items {
        let mut record = Vec::new();
        if event::normalize(item, envelope.kind, &envelope.defaults, &enrichment, &mut record).is_ok() {
            assert!(serde_json::from_slice::<serde_json::Value>(&record).is_ok());
        }
    }
});
