//! Crash safety: SIGKILL the real binary while requests are being acknowledged,
//! restart it, and check that every acknowledged event is in the log.

mod common;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{basic, client, free_port, metric, metrics_at};
use serde_json::json;

const CATALOG: &str = "[[sources]]\nid = \"crash\"\nwrite_keys = [{ key = \"crash-key\" }]\n";

struct Sluice {
    child: Child,
    port: u16,
    admin: u16,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, durability: &str) -> Sluice {
    start_with(dir, durability, &[])
}

fn start_with(dir: &Path, durability: &str, env: &[(&str, &str)]) -> Sluice {
    let (port, admin) = (free_port(), free_port());
    let config = dir.join("sluice.toml");
    std::fs::write(&config, "").expect("config");
    let sluice = Sluice {
        child: Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--config", config.to_str().expect("utf8"), "serve"])
            .current_dir(dir)
            .env("SLUICE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("SLUICE__SERVER__ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("SLUICE__LOG__DIR", dir.join("log"))
            .env("SLUICE__LOG__DURABILITY", durability)
            .env("SLUICE__CATALOG__SOURCE", "file")
            .env("SLUICE__CATALOG__PATH", dir.join("catalog.toml"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sluice"),
        port,
        admin,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if ready {
            return sluice;
        }
        assert!(Instant::now() < deadline, "sluice did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
}

type Acked = Arc<Mutex<Vec<String>>>;

/// `workers` clients sending batches of 5 uniquely named events to `url` until the
/// server goes away; every acknowledged messageId is recorded.
fn spawn_senders(
    url: &str,
    workers: usize,
    prefix: &str,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let senders = (0..workers)
        .map(|worker| {
            let (url, acked, prefix) = (url.to_owned(), Arc::clone(&acked), prefix.to_owned());
            tokio::spawn(async move {
                let c = client();
                for n in 0.. {
                    let ids: Vec<String> = (0..5).map(|i| format!("{prefix}{worker}-r{n}-e{i}")).collect();
                    let batch: Vec<_> = ids
                        .iter()
                        .map(|id| json!({"type":"track","userId":"u","event":"Crash","messageId":id}))
                        .collect();
                    let sent = c
                        .post(&url)
                        .header("authorization", basic("crash-key"))
                        .json(&json!({ "batch": batch }))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => acked.lock().expect("lock").extend(ids),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    (acked, senders)
}

/// SIGKILLs the server, lets the senders notice, and returns what was acknowledged.
async fn kill_and_collect(
    sluice: &mut Sluice,
    senders: Vec<tokio::task::JoinHandle<()>>,
    acked: &Acked,
) -> Vec<String> {
    sluice.child.kill().expect("SIGKILL");
    sluice.child.wait().expect("reap");
    for s in senders {
        s.await.expect("sender");
    }
    acked.lock().expect("lock").clone()
}

async fn kill_while_acknowledging(durability: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("catalog.toml"), CATALOG).expect("catalog");
    let mut sluice = start(dir.path(), durability);
    let url = format!("http://127.0.0.1:{}/v1/batch", sluice.port);
    let (acked, senders) = spawn_senders(&url, 8, "w");
    // Kill once a good number of acknowledgements are in, with requests in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().expect("lock").len() < 2_000 {
        assert!(Instant::now() < deadline, "too few acknowledgements");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked = kill_and_collect(&mut sluice, senders, &acked).await;

    // A crash mid-write leaves a partial record: make sure there is one.
    let log_dir = dir.path().join("log");
    let newest = sluice::log::segment::list(&log_dir)
        .expect("list")
        .into_iter()
        .max()
        .expect("a segment");
    std::fs::OpenOptions::new()
        .append(true)
        .open(sluice::log::segment::path(&log_dir, newest))
        .and_then(|mut f| f.write_all(&[200, 0, 0, 0, 1, 2]))
        .expect("tear the tail");

    let mut sluice = start(dir.path(), durability);
    let r = client()
        .post(format!("http://127.0.0.1:{}/v1/track", sluice.port))
        .header("authorization", basic("crash-key"))
        .body(r#"{"userId":"u","event":"After Restart","messageId":"after"}"#)
        .send()
        .await
        .expect("send after restart");
    assert_eq!(r.status(), 200);
    let metrics = metrics_at(format!("127.0.0.1:{}", sluice.admin)).await;
    assert_eq!(
        metric(&metrics, "sluice_log_torn_tail_truncations_total"),
        1.0
    );
    sluice.child.kill().expect("kill");
    sluice.child.wait().expect("reap");

    let stored: HashSet<String> = common::stored_in(&log_dir)
        .iter()
        .filter_map(|r| r["event"]["messageId"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{durability}: {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        stored.contains("after"),
        "the log accepts appends after recovery"
    );
    eprintln!(
        "{durability}: {} acknowledged, {} stored (unacknowledged in-flight ones may be stored too)",
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_event_with_fsync() {
    kill_while_acknowledging("fsync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_event_with_os() {
    kill_while_acknowledging("os").await;
}

/// SIGKILL while events are acknowledged and delivered to a webhook receiver run by
/// the test; after a restart every acknowledged event reaches the receiver at least
/// once, and duplicates are the same event (same messageId).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_loses_nothing() {
    let receiver = common::receiver::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("catalog.toml"),
        format!(
            "{CATALOG}[[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nsources = [\"crash\"]\n\
             retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200 }}\n\
             settings = {{ url = \"{}\", batch_size = 20, batch_ms = 20 }}\n",
            receiver.url()
        ),
    )
    .expect("catalog");
    let private = [("SLUICE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")];
    let mut sluice = start_with(dir.path(), "fsync", &private);
    let url = format!("http://127.0.0.1:{}/v1/batch", sluice.port);
    let (acked, senders) = spawn_senders(&url, 4, "d");
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.events().len() < 500 {
        assert!(Instant::now() < deadline, "delivery did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked = kill_and_collect(&mut sluice, senders, &acked).await;
    let before_restart = receiver.events().len();

    let _sluice = start_with(dir.path(), "fsync", &private);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: HashSet<String> = receiver
            .events()
            .iter()
            .filter_map(|e| e["messageId"].as_str().map(str::to_owned))
            .collect();
        let missing = acked.iter().filter(|id| !got.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never delivered",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = receiver.events();
    let mut by_id: std::collections::HashMap<String, &serde_json::Value> =
        std::collections::HashMap::new();
    let mut duplicates = 0;
    for e in &events {
        let id = e["messageId"].as_str().unwrap_or_default().to_owned();
        if let Some(first) = by_id.insert(id, e) {
            duplicates += 1;
            assert_eq!(first, e, "a duplicate is the same event");
        }
    }
    eprintln!(
        "delivery crash: {} acknowledged, {} delivered before the kill, {} deliveries in all, {duplicates} duplicates",
        acked.len(),
        before_restart,
        events.len()
    );
}
