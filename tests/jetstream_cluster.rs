//! Sluice on a three-node JetStream cluster (nats-server processes on loopback ports,
//! started here) with an R=3 stream, under load from senders that retry like an SDK:
//! the gateway is SIGKILLed (a new one takes its place), then a delivery process, then
//! the stream's leader node. Every acknowledged event must be in the stream and
//! reach the webhook (at least once).
//!
//! `SLUICE_CLUSTER_SECONDS` sets the length of the load (default 8);
//! `loadtest/cluster.sh` runs the long version on release binaries.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::receiver::Receiver;
use common::{basic, client, free_port};
use futures_util::StreamExt as _;
use serde_json::json;

/// One nats-server of the cluster.
struct Node {
    name: String,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (scripts/services.sh installs it)");
        self.child = Some(child);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_cluster(dir: &Path) -> Vec<Node> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, (port, cluster))| {
            let routes: Vec<String> = ports
                .iter()
                .filter(|(_, c)| c != cluster)
                .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
                .collect();
            let name = format!("n{i}");
            let args = [
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-n",
                &name,
                "-js",
                "-sd",
                &dir.join(&name).display().to_string(),
                "--cluster_name",
                "sluice_test",
                "--cluster",
                &format!("nats://127.0.0.1:{cluster}"),
                "--routes",
                &routes.join(","),
            ]
            .map(str::to_owned)
            .to_vec();
            let mut node = Node {
                name,
                port: *port,
                args,
                child: None,
            };
            node.start();
            node
        })
        .collect()
}

fn urls(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("nats://127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until the cluster has a JetStream meta leader (an R=3 stream can be made).
async fn wait_for_cluster(urls: &str) {
    // Generous: on two busy cores a meta leader has taken over 30 s to be elected.
    let deadline = Instant::now() + Duration::from_secs(90);
    let seeds: Vec<&str> = urls.split(',').collect();
    loop {
        let ready = async {
            let client = async_nats::connect(seeds.as_slice()).await.ok()?;
            let js = jetstream::new(client);
            js.create_stream(jetstream::stream::Config {
                name: "PROBE".into(),
                subjects: vec!["probe.>".into()],
                num_replicas: 3,
                storage: jetstream::stream::StorageType::Memory,
                ..Default::default()
            })
            .await
            .ok()?;
            js.delete_stream("PROBE").await.ok()
        };
        if tokio::time::timeout(Duration::from_secs(5), ready)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the JetStream cluster did not form"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A `sluice` process (gateway or delivery) on its own directory and ports.
struct Process {
    child: Child,
    port: u16,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sluice(dir: &Path, urls: &str, stream: &str, args: &[&str]) -> Process {
    let (port, admin) = (free_port(), free_port());
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.join("sluice.toml");
    std::fs::write(&config, "").expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .current_dir(dir)
        .env("SLUICE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("SLUICE__SERVER__ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("SLUICE__SERVER__MAX_KEY_FAILURES_PER_MINUTE", "0")
        .env("SLUICE__LOG__DIR", dir.join("log"))
        .env("SLUICE__LOG__BACKEND", "jetstream")
        .env("SLUICE__LOG__JETSTREAM__URL", urls)
        .env("SLUICE__LOG__JETSTREAM__STREAM", stream)
        .env(
            "SLUICE__LOG__JETSTREAM__SUBJECT_PREFIX",
            "sluice_cluster.events",
        )
        .env("SLUICE__LOG__JETSTREAM__REPLICAS", "3")
        .env("SLUICE__LOG__JETSTREAM__ACK_TIMEOUT_MS", "2000")
        .env("SLUICE__LOG__JETSTREAM__REDELIVER_AFTER_MS", "2000")
        .env("SLUICE__LOG__JETSTREAM__CONNECT_TIMEOUT_MS", "20000")
        .env("SLUICE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("SLUICE__CATALOG__SOURCE", "file")
        .env("SLUICE__CATALOG__PATH", dir.join("../catalog.toml"))
        .env(
            "RUST_LOG",
            std::env::var("SLUICE_CLUSTER_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sluice");
    let mut process = Process { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("sluice {args:?} exited: {status}");
        }
        assert!(Instant::now() < deadline, "sluice {args:?} did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
    process
}

/// What the senders saw.
#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<String>>,
    /// When each batch was acknowledged.
    times: Mutex<Vec<Instant>>,
    refused: AtomicU64,
    unreachable: AtomicU64,
}

/// A sender: batches of 10 new events to whichever gateway `target` names; a batch not
/// answered 200 is sent again (same messageIds) until it is, as the SDKs do.
async fn sender(n: usize, target: Arc<Mutex<String>>, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let http = client();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let ids: Vec<String> = (0..10).map(|i| format!("s{n}-r{round}-e{i}")).collect();
        let batch: Vec<_> = ids
            .iter()
            .map(|id| json!({"type": "track", "userId": "u", "event": "Order Completed", "messageId": id}))
            .collect();
        let body = json!({ "batch": batch });
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            let url = target.lock().expect("lock").clone();
            let sent = http
                .post(format!("{url}/v1/batch"))
                .header("authorization", basic("web-key"))
                .timeout(Duration::from_secs(10))
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => {
                    tally.acked.lock().expect("lock").extend(ids);
                    tally.times.lock().expect("lock").push(Instant::now());
                    break;
                }
                Ok(r) => {
                    assert_eq!(r.status(), 503, "only 503 may refuse a valid batch");
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    tally.unreachable.fetch_add(1, Ordering::Relaxed);
                }
            }
            assert!(Instant::now() < give_up, "a batch was refused for 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every message id in the stream, with how often it is there.
async fn stored_ids(urls: &str, stream: &str) -> HashMap<String, u32> {
    let seeds: Vec<&str> = urls.split(',').collect();
    let client = async_nats::connect(seeds.as_slice()).await.expect("nats");
    let js = jetstream::new(client);
    let mut s = js.get_stream(stream).await.expect("stream");
    let total = s.info().await.expect("info").state.messages;
    // Right after a node loss the cluster may still be moving leaders: ask again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let consumer = loop {
        match s
            .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
            .await
        {
            Ok(consumer) => break consumer,
            Err(error) => {
                assert!(Instant::now() < deadline, "ordered consumer: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let mut messages = consumer.messages().await.expect("messages");
    let mut ids = HashMap::new();
    let mut seen = 0;
    while seen < total {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("stream read stalled")
            .expect("stream ended")
            .expect("message");
        seen += 1;
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

async fn stream_leader(urls: &str, stream: &str) -> Option<String> {
    let seeds: Vec<&str> = urls.split(',').collect();
    let client = async_nats::connect(seeds.as_slice()).await.ok()?;
    let mut s = jetstream::new(client).get_stream(stream).await.ok()?;
    s.info().await.ok()?.cluster.as_ref()?.leader.clone()
}

fn catalog(dir: &Path, receiver: &Receiver) -> PathBuf {
    let path = dir.join("catalog.toml");
    std::fs::write(
        &path,
        format!(
            "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
             [[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nsources = [\"web\"]\n\
             [destinations.settings]\nurl = \"{}\"\ntimeout_ms = 2000\nbatch_size = 100\n",
            receiver.url()
        ),
    )
    .expect("catalog");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_gateway_and_worker_kills_lose_nothing_acknowledged() {
    let seconds: f64 = std::env::var("SLUICE_CLUSTER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8.0);
    let senders = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(dir.path());
    let urls = urls(&nodes);
    wait_for_cluster(&urls).await;
    let receiver = Receiver::start().await;
    catalog(dir.path(), &receiver);
    let stream = "SLUICE_CLUSTER";

    let mut gateway = sluice(
        &dir.path().join("g1"),
        &urls,
        stream,
        &["serve", "--role", "gateway"],
    );
    let mut worker = Some(sluice(&dir.path().join("d1"), &urls, stream, &["deliver"]));
    let _spare = sluice(&dir.path().join("d2"), &urls, stream, &["deliver"]);

    // A new cluster places the stream's and the consumer's replicas over its first
    // seconds (publishes wait meanwhile): the load starts once one event went through.
    let warm_up = Instant::now();
    let http = client();
    loop {
        let sent = http
            .post(format!("http://127.0.0.1:{}/v1/track", gateway.port))
            .header("authorization", basic("web-key"))
            .json(&json!({"userId": "u", "event": "Warm Up", "messageId": "warm-up"}))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) && !receiver.events().is_empty() {
            break;
        }
        assert!(
            warm_up.elapsed() < Duration::from_secs(60),
            "the cluster never took an event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "cluster took its first event after {:.1} s",
        warm_up.elapsed().as_secs_f64()
    );

    let target = Arc::new(Mutex::new(format!("http://127.0.0.1:{}", gateway.port)));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = (0..senders)
        .map(|n| {
            tokio::spawn(sender(
                n,
                Arc::clone(&target),
                Arc::clone(&stop),
                Arc::clone(&tally),
            ))
        })
        .collect();
    let started = Instant::now();
    let at = |fraction: f64| started + Duration::from_secs_f64(seconds * fraction);

    // 1. The gateway dies mid-load; a new one takes over (as a load balancer would send
    // the clients' retries to another replica).
    tokio::time::sleep_until(at(0.2).into()).await;
    gateway.child.kill().expect("SIGKILL gateway");
    let _ = gateway.child.wait();
    eprintln!(
        "{:.1} s: SIGKILL gateway g1, {} events acknowledged so far",
        started.elapsed().as_secs_f64(),
        tally.acked.lock().expect("lock").len()
    );
    gateway = sluice(
        &dir.path().join("g2"),
        &urls,
        stream,
        &["serve", "--role", "gateway"],
    );
    *target.lock().expect("lock") = format!("http://127.0.0.1:{}", gateway.port);

    // 2. A delivery process dies: the other one goes on, and gets what it held.
    tokio::time::sleep_until(at(0.4).into()).await;
    drop(worker.take());
    eprintln!(
        "{:.1} s: SIGKILL delivery process d1",
        started.elapsed().as_secs_f64()
    );

    // 3. The stream's leader node dies (JetStream elects another; meanwhile 503s).
    tokio::time::sleep_until(at(0.6).into()).await;
    let leader = stream_leader(&urls, stream).await.expect("a stream leader");
    let node = nodes
        .iter_mut()
        .find(|n| n.name == leader)
        .expect("leader is one of ours");
    if let Some(mut child) = node.child.take() {
        child.kill().expect("SIGKILL node");
        let _ = child.wait();
    }
    eprintln!(
        "{:.1} s: SIGKILL nats node {leader} (stream leader), {} events acknowledged so far",
        started.elapsed().as_secs_f64(),
        tally.acked.lock().expect("lock").len()
    );

    tokio::time::sleep_until(at(1.0).into()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("sender");
    }
    let load_ended = Instant::now();
    // The dead node comes back and catches up (reading the stream back needs a healthy
    // cluster: a consumer may be placed on any of its nodes).
    for node in nodes.iter_mut().filter(|n| n.child.is_none()) {
        node.start();
    }
    let mut times = tally.times.lock().expect("lock").clone();
    times.sort();
    let (gap, gap_at) = times
        .windows(2)
        .map(|w| (w[1] - w[0], w[0] - started))
        .max()
        .unwrap_or_default();
    let acked: Vec<String> = tally.acked.lock().expect("lock").clone();
    assert!(!acked.is_empty(), "nothing was acknowledged");

    // Every acknowledged event is in the stream, once.
    let stored = stored_ids(&urls, stream).await;
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(&format!("web:{id}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events are not in the stream, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let twice = stored.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "events stored more than once");

    // Every acknowledged event reaches the webhook.
    let wanted: HashSet<&String> = acked.iter().collect();
    let deadline = Instant::now() + Duration::from_secs_f64((seconds * 2.0).max(60.0));
    let delivered = loop {
        let events = receiver.events();
        let got: HashSet<String> = events
            .iter()
            .filter_map(|e| e["messageId"].as_str().map(str::to_owned))
            .collect();
        let missing = wanted.iter().filter(|id| !got.contains(**id)).count();
        if missing == 0 {
            break events.len();
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never delivered",
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "load {seconds} s, {senders} senders: {} events acknowledged (longest pause between acknowledgements {:.1} s, from {:.1} s), {} answers 503 and {} connection failures (all retried), {} stored (each once), {} deliveries ({} repeats) complete {:.1} s after the load",
        acked.len(),
        gap.as_secs_f64(),
        gap_at.as_secs_f64(),
        tally.refused.load(Ordering::Relaxed),
        tally.unreachable.load(Ordering::Relaxed),
        stored.len(),
        delivered,
        delivered - wanted.len(),
        load_ended.elapsed().as_secs_f64()
    );
}
