//! The event log against an in-memory model: random appends, reads from any offset,
//! reopen, torn tails, small segments so rolling happens often.

use std::io::Write as _;
use std::time::Duration;

use proptest::prelude::*;
use sluice::config;
use sluice::log::{Batch, Log, Reader, segment};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    ReadFrom(usize),
    Reopen,
    TearTail(Vec<u8>),
    /// Read what is new through one long-lived tailing reader.
    Tail,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6).prop_map(Op::Append),
        2 => (0usize..200).prop_map(Op::ReadFrom),
        1 => Just(Op::Reopen),
        1 => prop::collection::vec(any::<u8>(), 1..24).prop_map(Op::TearTail),
        2 => Just(Op::Tail),
    ]
}

fn read_all(dir: &std::path::Path, from: u64) -> Vec<(u64, Vec<u8>)> {
    Reader::open(dir, from)
        .expect("reader")
        .map(|r| r.expect("record"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let _runtime = rt.enter();
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config::Log {
            dir: dir.path().to_owned(),
            durability: config::Durability::Os,
            segment_bytes: 4096,
            ..config::Log::default()
        };
        let mut log = Log::open(&cfg).expect("open");
        let mut model: Vec<Vec<u8>> = Vec::new();
        let mut tail: Option<Reader> = None;
        let mut tailed = 0usize;
        for op in ops {
            match op {
                Op::Append(records) => {
                    let n = records.len() as u64;
                    let range = rt.block_on(log.append(Batch::of(&records))).expect("append");
                    prop_assert_eq!(range.start, model.len() as u64);
                    prop_assert_eq!(range.end - range.start, n);
                    model.extend(records);
                }
                Op::ReadFrom(from) => {
                    let from = from.min(model.len());
                    let got = read_all(dir.path(), from as u64);
                    prop_assert_eq!(got.len(), model.len() - from);
                    for (i, (offset, payload)) in got.iter().enumerate() {
                        prop_assert_eq!(*offset, (from + i) as u64);
                        prop_assert_eq!(payload, &model[from + i]);
                    }
                }
                Op::Reopen => {
                    rt.block_on(log.close(Duration::from_secs(5)));
                    log = Log::open(&cfg).expect("reopen");
                    prop_assert_eq!(log.next_offset(), model.len() as u64);
                }
                Op::Tail => {
                    let reader = match &mut tail {
                        Some(r) => r,
                        None => tail.insert(Reader::open(dir.path(), 0).expect("reader")),
                    };
                    for item in reader.by_ref() {
                        let (offset, payload) = item.expect("record");
                        prop_assert_eq!(offset, tailed as u64);
                        prop_assert_eq!(&payload, &model[tailed]);
                        tailed += 1;
                    }
                    prop_assert_eq!(tailed, model.len(), "the tail reader caught up");
                }
                Op::TearTail(garbage) => {
                    rt.block_on(log.close(Duration::from_secs(5)));
                    let newest = segment::list(dir.path()).expect("list").into_iter().max().expect("segment");
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(segment::path(dir.path(), newest))
                        .and_then(|mut f| f.write_all(&garbage))
                        .expect("tear");
                    log = Log::open(&cfg).expect("reopen after tear");
                    prop_assert_eq!(log.next_offset(), model.len() as u64);
                }
            }
        }
        let all = read_all(dir.path(), 0);
        prop_assert_eq!(all.into_iter().map(|(_, p)| p).collect::<Vec<_>>(), model.clone());
        let stats = sluice::log::stats(dir.path()).expect("stats");
        prop_assert_eq!(stats.records, model.len() as u64);
        prop_assert_eq!(stats.torn_tail_bytes, 0);
        rt.block_on(log.close(Duration::from_secs(5)));
    }
}
