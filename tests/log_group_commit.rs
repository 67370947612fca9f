//! Group commit groups: appends that arrive together share one commit (one write, one
//! sync, one publish), in `os` mode as in `fsync` mode, even on a runtime whose
//! scheduler would otherwise run the woken writer before the other appends are made.

use std::sync::Arc;

use sluice::config;
use sluice::log::{Batch, Log};

const APPENDS: usize = 64;

fn one_record(i: usize) -> Batch {
    let mut batch = Batch::default();
    let _ = batch.record(|buf| {
        buf.extend_from_slice(format!("{{\"n\":{i}}}").as_bytes());
        Ok::<(), ()>(())
    });
    batch
}

async fn commits_for_concurrent_appends(durability: config::Durability) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config::Log {
        dir: dir.path().join("log"),
        durability,
        ..config::Log::default()
    };
    let log = Arc::new(Log::open(&cfg).expect("open"));
    let before = log.commits();
    // Started from inside a worker, as request handlers are: each append wakes the
    // writer, which the scheduler would run next (its LIFO slot), one append at a time.
    let appender = Arc::clone(&log);
    tokio::spawn(async move {
        let tasks: Vec<_> = (0..APPENDS)
            .map(|i| {
                let log = Arc::clone(&appender);
                tokio::spawn(async move { log.append(one_record(i)).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("appended");
        }
    })
    .await
    .expect("appends");
    assert_eq!(log.next_offset(), APPENDS as u64, "every append is stored");
    (log.commits() - before, APPENDS as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn appends_made_together_share_commits_in_os_mode() {
    let (commits, appends) = commits_for_concurrent_appends(config::Durability::Os).await;
    assert!(
        commits * 4 <= appends,
        "{commits} commits for {appends} appends: appends made together must share them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn appends_made_together_share_commits_in_fsync_mode() {
    let (commits, appends) = commits_for_concurrent_appends(config::Durability::Fsync).await;
    assert!(
        commits * 4 <= appends,
        "{commits} commits for {appends} appends: appends made together must share them"
    );
}
