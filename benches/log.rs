//! Event log append latency and throughput: `os` and `fsync` durability at several
//! concurrency levels (appenders waiting at once; group commit shares one sync).
//!
//! `cargo bench --bench log`. Runs in `target/bench-log` (the disk under test).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::config::{self, Durability};
use sluice::log::{Batch, Log};

const RECORD: usize = 800;

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = vec![b'x'; RECORD];
    for durability in [Durability::Os, Durability::Fsync] {
        let dir = std::path::Path::new("target/bench-log").join(format!("{durability:?}"));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = config::Log {
            dir: dir.clone(),
            durability,
            ..config::Log::default()
        };
        let log = {
            let _guard = rt.enter();
            Log::open(&cfg).expect("open log")
        };
        let mut g = c.benchmark_group(format!("log append ({durability:?})"));
        for concurrency in [1usize, 16, 256] {
            g.throughput(Throughput::Elements(concurrency as u64));
            g.bench_function(
                format!("{concurrency} concurrent appends of one {RECORD} B record"),
                |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let started = Instant::now();
                            for _ in 0..iters {
                                let tasks: Vec<_> = (0..concurrency)
                                    .map(|_| {
                                        let (log, payload) = (log.clone(), payload.clone());
                                        tokio::spawn(async move {
                                            log.append(Batch::of([payload])).await
                                        })
                                    })
                                    .collect();
                                for t in tasks {
                                    let _ = t.await;
                                }
                            }
                            started.elapsed()
                        })
                    })
                },
            );
        }
        g.finish();
        rt.block_on(log.close(Duration::from_secs(5)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = append
}
criterion_main!(benches);
