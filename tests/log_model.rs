//! The event log against an in-memory model: random appends, reads from any offset,
//! reopen, torn tails, small segments so rolling happens often; and the same under
//! injected I/O faults (EIO/ENOSPC on write, sync, create, remove; short writes) and
//! crashes.

use std::io::Write as _;
use std::time::Duration;

use proptest::prelude::*;
use sluice::config;
use sluice::disk;
use sluice::log::{AppendError, Batch, Log, Opening, Reader, segment};

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

/// A step of the fault model: the log under injected I/O faults and crashes.
#[derive(Debug, Clone)]
enum Step {
    Append(Vec<Vec<u8>>),
    /// Arms a fault for the next operation of this kind.
    Fault(disk::Op, disk::Fault),
    /// Reads everything below the durable watermark and checks it.
    Check,
    /// Closes the log cleanly and opens it again.
    Reopen,
    /// Stops the process without closing the log (the runtime is dropped mid-flight).
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    let errno = prop_oneof![Just(disk::EIO), Just(disk::ENOSPC)];
    let fault = prop_oneof![
        (
            prop_oneof![
                Just(disk::Op::Write),
                Just(disk::Op::Sync),
                Just(disk::Op::Create),
                Just(disk::Op::Remove)
            ],
            errno
        )
            .prop_map(|(op, e)| Step::Fault(op, disk::Fault::Fail(e))),
        (0usize..700).prop_map(|n| Step::Fault(disk::Op::Write, disk::Fault::Partial(n))),
    ];
    prop_oneof![
        8 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..5).prop_map(Step::Append),
        3 => fault,
        2 => Just(Step::Check),
        1 => Just(Step::Reopen),
        1 => Just(Step::Crash),
    ]
}

/// Everything the log serves below its durable watermark.
fn visible(log: &Log) -> Vec<(u64, Vec<u8>)> {
    let mut reader = Reader::open(log.dir(), 0).expect("reader");
    reader.set_limit(log.next_offset());
    reader.map(|r| r.expect("record")).collect()
}

/// Every acknowledged record is served at the offset it was acknowledged with, in
/// order; anything else served is a record whose append was refused (a client retries
/// it: at least once). Offsets only grow.
fn check_against(
    served: &[(u64, Vec<u8>)],
    acked: &[(u64, Vec<u8>)],
    refused: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let mut want = acked.iter().peekable();
    let mut last = None;
    for (offset, payload) in served {
        prop_assert!(
            last.is_none_or(|l| *offset > l),
            "offsets grow: {offset} after {last:?}"
        );
        last = Some(*offset);
        if want.peek().is_some_and(|(o, _)| o == offset) {
            let (_, p) = want.next().expect("peeked");
            prop_assert_eq!(p, payload, "payload at offset {}", offset);
        } else {
            prop_assert!(
                refused.contains(payload),
                "offset {} serves a record nobody appended",
                offset
            );
        }
    }
    prop_assert!(want.next().is_none(), "an acknowledged record is missing");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_keeps_every_acknowledged_record_under_faults(
        fsync in any::<bool>(),
        steps in prop::collection::vec(step(), 1..48),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config::Log {
            dir: dir.path().to_owned(),
            durability: if fsync { config::Durability::Fsync } else { config::Durability::Os },
            segment_bytes: 4096,
            ..config::Log::default()
        };
        let faults = disk::Faults::armed();
        let open = |faults: &disk::Faults| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            let log = {
                let _guard = rt.enter();
                Log::open_with(&cfg, Opening { faults: faults.clone(), ..Opening::default() }).expect("open")
            };
            (rt, log)
        };
        let (mut rt, mut log) = open(&faults);
        // A reader that never reads (a destination far behind): retention, which may
        // free delivered segments when the disk is full, must keep everything.
        log.hold("behind", 0);
        let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut refused: Vec<Vec<u8>> = Vec::new();
        for step in steps {
            match step {
                Step::Append(records) => {
                    match rt.block_on(log.append(Batch::of(&records))) {
                        Ok(range) => {
                            prop_assert_eq!(range.end - range.start, records.len() as u64);
                            prop_assert!(acked.last().is_none_or(|(o, _)| range.start > *o), "offset reused");
                            acked.extend(range.zip(records));
                        }
                        Err(error) => {
                            prop_assert_eq!(error, AppendError::Io);
                            refused.extend(records);
                        }
                    }
                }
                Step::Fault(op, fault) => faults.inject(op, fault),
                Step::Check => check_against(&visible(&log), &acked, &refused)?,
                Step::Reopen => {
                    faults.clear();
                    rt.block_on(log.close(Duration::from_secs(5)));
                    drop(rt);
                    (rt, log) = open(&faults);
                    log.hold("behind", 0);
                    check_against(&visible(&log), &acked, &refused)?;
                }
                Step::Crash => {
                    faults.clear();
                    drop(rt);
                    (rt, log) = open(&faults);
                    log.hold("behind", 0);
                    check_against(&visible(&log), &acked, &refused)?;
                }
            }
        }
        faults.clear();
        // Whatever failed last, the log repairs itself and takes appends again.
        let range = rt.block_on(log.append(Batch::of([b"last".to_vec()])));
        let range = match range {
            Ok(range) => range,
            Err(_) => rt.block_on(log.append(Batch::of([b"last".to_vec()]))).expect("repaired"),
        };
        acked.push((range.start, b"last".to_vec()));
        check_against(&visible(&log), &acked, &refused)?;
        let stats = sluice::log::stats(dir.path()).expect("stats never fails");
        prop_assert!(stats.records >= acked.len() as u64);
        rt.block_on(log.close(Duration::from_secs(5)));
    }
}
