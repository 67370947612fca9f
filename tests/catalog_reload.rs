//! Hot reload of the catalog under traffic: add, rotate and revoke keys without a
//! restart and without one failed request that should have succeeded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, basic, client, metric};

fn catalog(keys: &str) -> String {
    format!("[[sources]]\nid = \"app\"\nwrite_keys = [{keys}]\n")
}

/// Sends with `key` until `stop`; counts 200s and anything else.
fn traffic(
    server: &TestServer,
    key: &'static str,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let url = server.url("/v1/track");
    let handle = tokio::spawn({
        let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
        async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .post(&url)
                    .header("authorization", basic(key))
                    .body(r#"{"userId":"u","event":"Reload"}"#)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    (handle, ok, failed)
}

async fn status_of(server: &TestServer, key: &str) -> u16 {
    client()
        .post(server.url("/v1/track"))
        .header("authorization", basic(key))
        .body(r#"{"userId":"u","event":"Probe"}"#)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

async fn wait_for(server: &TestServer, key: &str, status: u16) -> Duration {
    let started = Instant::now();
    while status_of(server, key).await != status {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{key} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_rotate_revoke_under_traffic_without_failures() {
    let server = TestServer::start_with(&catalog(r#"{ key = "old" }"#), |c| {
        c.catalog.poll_interval_ms = 5_000; // change notifications must do the work
    });
    let stop_old = Arc::new(AtomicBool::new(false));
    let (old_task, old_ok, old_failed) = traffic(&server, "old", Arc::clone(&stop_old));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Add a second key (rotation overlap): both work.
    assert_eq!(status_of(&server, "new").await, 401);
    server.write_catalog(&catalog(r#"{ key = "old" }, { key = "new" }"#));
    let took = wait_for(&server, "new", 200).await;
    assert!(took < Duration::from_secs(3), "reload took {took:?}");

    // Clients move to the new key; then the old one is revoked.
    let stop_new = Arc::new(AtomicBool::new(false));
    let (new_task, new_ok, new_failed) = traffic(&server, "new", Arc::clone(&stop_new));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_old.store(true, Ordering::Relaxed);
    old_task.await.expect("old traffic");
    server.write_catalog(&catalog(
        r#"{ key = "old", revoked = true }, { key = "new" }"#,
    ));
    wait_for(&server, "old", 401).await;

    // An invalid edit keeps the last good catalog.
    let errors_before = metric(
        &server.metrics().await,
        "sluice_catalog_reload_errors_total",
    );
    server.write_catalog("[[sources]]\nid = \"app\"\nwrite_keys = [ { key = \"\" } ]\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(
        &server.metrics().await,
        "sluice_catalog_reload_errors_total",
    ) <= errors_before
    {
        assert!(Instant::now() < deadline, "invalid catalog not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_new.store(true, Ordering::Relaxed);
    new_task.await.expect("new traffic");

    assert_eq!(
        status_of(&server, "new").await,
        200,
        "last good catalog still served"
    );
    assert_eq!(status_of(&server, "old").await, 401);
    assert_eq!(
        old_failed.load(Ordering::Relaxed),
        0,
        "old-key requests before revocation"
    );
    assert_eq!(new_failed.load(Ordering::Relaxed), 0, "new-key requests");
    assert!(old_ok.load(Ordering::Relaxed) > 0 && new_ok.load(Ordering::Relaxed) > 0);
    let stored = server.stored().len() as u64;
    // Every 200 (traffic + probes that succeeded) is in the log.
    assert!(stored >= old_ok.load(Ordering::Relaxed) + new_ok.load(Ordering::Relaxed));
}

#[tokio::test]
async fn restart_with_an_unreadable_catalog_serves_the_last_known_good() {
    let server = TestServer::start_with(&catalog(r#"{ key = "kept" }"#), |_| {});
    assert_eq!(status_of(&server, "kept").await, 200);
    let (dir, config) = server.stop();
    let lkg = std::fs::read_to_string(config.log.dir.join(sluice::LAST_KNOWN_GOOD)).expect("lkg");
    assert!(!lkg.contains("kept"), "no plaintext key in the saved copy");

    std::fs::write(&config.catalog.path, "this is [ not toml").expect("break catalog");
    let server = TestServer::start_in(dir, config);
    assert_eq!(status_of(&server, "kept").await, 200);
    assert_eq!(status_of(&server, "other").await, 401);
}
