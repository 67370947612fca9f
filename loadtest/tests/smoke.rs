//! A short run of the harness against a baseline and a real Sluice: it runs, stays
//! within its bounds and counts correctly. No timing assertions.

use std::net::SocketAddr;
use std::time::Duration;

use loadtest::generator::{self, Pace, Settings};
use loadtest::payload::{RouteKind, Workload};

fn workload(route: RouteKind, key: &str) -> Workload {
    Workload {
        route,
        batch_size: 5,
        keys: vec![key.to_owned()],
        gzip: false,
        invalid_share: 0.0,
        wrong_key_share: 0.0,
        event_bytes: 600,
        fixed: false,
    }
}

fn settings(target: SocketAddr, workload: Workload, requests: u64) -> Settings {
    Settings {
        target,
        connections: 4,
        pace: Pace::Closed,
        duration: Duration::from_secs(20),
        max_requests: requests,
        http2: false,
        workload,
        progress: false,
    }
}

async fn baseline(parse: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(loadtest::baseline::serve(listener, parse));
    addr
}

#[tokio::test]
async fn counts_requests_and_events_against_the_baseline() {
    let addr = baseline(true).await;
    let report = generator::run(settings(addr, workload(RouteKind::Batch, "k"), 300))
        .await
        .expect("run");
    assert_eq!(report.requests, 300);
    assert_eq!(report.statuses.get(&200), Some(&300));
    assert_eq!(report.events_ok, 1500);
    assert_eq!(report.errors, 0);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99);

    let mut gz = workload(RouteKind::Mix, "k");
    gz.gzip = true;
    // The bare baseline reads bodies without parsing (gzip stays compressed).
    let mut s = settings(baseline(false).await, gz, 50);
    s.http2 = true;
    let report = generator::run(s).await.expect("run");
    assert_eq!(report.statuses.get(&200), Some(&50), "gzip over HTTP/2");
}

#[tokio::test]
async fn open_loop_is_bounded_by_time() {
    let addr = baseline(false).await;
    let mut s = settings(addr, workload(RouteKind::Track, "k"), 1_000_000);
    s.pace = Pace::Open { rate: 200.0 };
    s.duration = Duration::from_millis(500);
    let report = generator::run(s).await.expect("run");
    assert!(
        (50..=101).contains(&report.requests),
        "{} requests",
        report.requests
    );
}

#[tokio::test]
async fn refuses_targets_off_this_machine() {
    let target: SocketAddr = "192.0.2.1:80".parse().expect("addr");
    assert!(
        generator::run(settings(target, workload(RouteKind::Track, "k"), 1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn wrong_keys_and_invalid_events_are_counted_by_sluice_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("catalog.toml"),
        "[[sources]]\nid = \"smoke\"\nwrite_keys = [{ key = \"smoke-key\" }]\n",
    )
    .expect("catalog");
    let mut config = sluice::config::Config::default();
    config.catalog.source = sluice::config::CatalogSourceKind::File;
    config.catalog.path = dir.path().join("catalog.toml");
    config.log.dir = dir.path().join("log");
    config.log.durability = sluice::config::Durability::Os;
    let data = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = data.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(sluice::serve(
        config,
        sluice::Listeners {
            data,
            admin,
            control: None,
        },
        shutdown.clone(),
    ));

    let mut w = workload(RouteKind::Track, "smoke-key");
    w.wrong_key_share = 0.3;
    w.invalid_share = 0.3;
    let report = generator::run(settings(addr, w, 200)).await.expect("run");
    // The fixed payload repeats the same bytes: the server mints every messageId, so
    // nothing is taken for a duplicate.
    let mut fixed = workload(RouteKind::Batch, "smoke-key");
    fixed.fixed = true;
    let same = generator::run(settings(addr, fixed, 20))
        .await
        .expect("run");
    assert_eq!(same.statuses.get(&200), Some(&20), "{:?}", same.statuses);
    assert_eq!(same.events_ok, 100);
    shutdown.cancel();
    server.await.expect("join").expect("serve");

    let get = |s: u16| report.statuses.get(&s).copied().unwrap_or(0);
    assert_eq!(get(200) + get(400) + get(401), 200, "{:?}", report.statuses);
    assert!(
        get(401) > 0 && get(400) > 0 && get(200) > 0,
        "{:?}",
        report.statuses
    );
    let stored = sluice::log::stats(&dir.path().join("log"))
        .expect("stats")
        .records;
    assert_eq!(
        stored,
        get(200) + same.events_ok,
        "every event in a 200 is one stored event"
    );
}
