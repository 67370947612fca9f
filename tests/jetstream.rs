//! The event log on NATS JetStream, against real nats-server processes: the gateway
//! answers 200 only after JetStream acknowledged, two delivery processes share a
//! destination (every acknowledged event delivered, none lost), a retried messageId is
//! stored once, and a JetStream that goes away gets 503 + Retry-After, then recovers.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{TestServer, basic, client, free_port, metrics_at};
use serde_json::{Value, json};
use sluice::config::{self, LogBackend};
use tokio_util::sync::CancellationToken;

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn settings(url: &str, name: &str) -> config::JetStream {
    config::JetStream {
        url: url.to_owned(),
        stream: format!("SLUICE_T_{name}"),
        subject_prefix: format!("sluice_t.{name}"),
        max_bytes: 256 << 20,
        ack_timeout_ms: 1_500,
        connect_timeout_ms: 5_000,
        ..config::JetStream::default()
    }
}

/// Source `web` (key `web-key`) and a webhook destination `destination` to `receiver`
/// (metrics are process-wide: a test that reads them names its own destination).
fn catalog(receiver: &Receiver, destination: &str) -> String {
    format!(
        "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
         [[destinations]]\nid = \"{destination}\"\ntype = \"webhook\"\nsources = [\"web\"]\n\
         retry = {{ initial_backoff_ms = 50, max_backoff_ms = 500 }}\n\
         [destinations.settings]\nurl = \"{}\"\ntimeout_ms = 2000\n",
        receiver.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_from_jetstream_honours_the_rate_cap() {
    let (name, js) = fresh();
    let receiver = Receiver::start().await;
    // 5 requests/s with no burst: 6 single-event sends take at least a second.
    let catalog = catalog(&receiver, "hook").replace(
        "sources = [\"web\"]\n",
        "sources = [\"web\"]\nrate_limit = { requests_per_second = 5, burst = 1 }\nmax_in_flight = 2\n",
    );
    assert!(catalog.contains("rate_limit"), "{catalog}");
    let server = gateway(&catalog, &js);
    let delivery = Delivery::start(&server).await;
    let ids: Vec<String> = (0..6).map(|i| format!("{name}-capped-{i}")).collect();
    assert_eq!(send(&server, &ids).await.status(), 200);
    let got = receiver.wait_for(6, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 6, "{got:?}");
    let span = receiver.span();
    assert!(
        span >= Duration::from_millis(900),
        "rate cap not applied: {span:?}"
    );
    finish(delivery, server, &js).await;
}

/// A JetStream delivery keeps a destination's `batch_bytes` as the local log's does: a
/// fetch larger than it goes out in several sends (one that kept only the count went out
/// whole, and a destination that refuses large bodies dead-lettered it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_from_jetstream_keeps_the_batch_byte_bound() {
    let (name, js) = fresh();
    let receiver = Receiver::start().await;
    let catalog = catalog(&receiver, "bytes").replace(
        "timeout_ms = 2000\n",
        "timeout_ms = 2000\nbatch_size = 100\nbatch_bytes = 1000\n",
    );
    assert!(catalog.contains("batch_bytes"), "{catalog}");
    let server = gateway(&catalog, &js);
    let ids: Vec<String> = (0..20).map(|i| format!("{name}-bytes-{i}")).collect();
    // Stored before the delivery process starts: its first fetch holds all twenty.
    assert_eq!(send(&server, &ids).await.status(), 200);
    let delivery = Delivery::start(&server).await;
    let got = receiver.wait_for(20, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 20, "{got:?}");
    // Each send holds at most 1,000 bytes of events, unless it holds one event.
    let sends = receiver.received();
    for send in &sends {
        let body: Value = serde_json::from_slice(&send.body).expect("JSON");
        if let Some(batch) = body["batch"].as_array().filter(|b| b.len() > 1) {
            let bytes: usize = batch.iter().map(|e| e.to_string().len()).sum();
            assert!(
                bytes <= 1000,
                "{} events, {bytes} bytes in one send",
                batch.len()
            );
        }
    }
    assert!(
        sends.len() >= 3,
        "20 events of ~250 bytes: {} sends",
        sends.len()
    );
    finish(delivery, server, &js).await;
}

/// While a destination fails, its lag gauges say how many events wait and how old the
/// oldest is, and the age grows at every scrape (it was never set from JetStream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_lag_gauges_tell_the_age_of_the_oldest_waiting_event() {
    let (name, js) = fresh();
    let receiver = Receiver::start().await;
    receiver.answer(common::receiver::Answer::Status(503));
    let destination = format!("lagging-{name}");
    let server = gateway(&catalog(&receiver, &destination), &js);
    let ids: Vec<String> = (0..5).map(|i| format!("{name}-lag-{i}")).collect();
    assert_eq!(send(&server, &ids).await.status(), 200);
    let delivery = Delivery::start(&server).await;
    let gauge = |text: &str, family: &str| -> Option<f64> {
        let series = format!("{family}{{destination=\"{destination}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let text = metrics_at(delivery.admin).await;
        if let (Some(events), Some(age)) = (
            gauge(&text, "sluice_delivery_lag_events"),
            gauge(&text, "sluice_delivery_lag_seconds"),
        ) && events >= 5.0
            && age >= 1.0
        {
            break age;
        }
        assert!(Instant::now() < deadline, "no lag reported: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = metrics_at(delivery.admin).await;
    let later = gauge(&text, "sluice_delivery_lag_seconds").expect("age");
    assert!(later >= first + 1.0, "the age grows: {first} then {later}");
    assert_eq!(gauge(&text, "sluice_delivery_lag_events"), Some(5.0));
    finish(delivery, server, &js).await;
}

fn circuit_gauge(text: &str, destination: &str) -> Option<f64> {
    let series = format!("sluice_delivery_circuit_state{{destination=\"{destination}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// As on the local log, five failed sends in a row open the destination's circuit:
/// each attempt then carries one event (a probe) while the others wait, the circuit
/// gauge says so, and the first success closes it and lets everything through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_delivery_opens_the_circuit_and_probes_with_one_event() {
    let (name, js) = fresh();
    let receiver = Receiver::start().await;
    receiver.answer(common::receiver::Answer::Status(503));
    let destination = format!("circuit-{name}");
    let catalog = catalog(&receiver, &destination).replace(
        "timeout_ms = 2000\n",
        "timeout_ms = 2000\nbatch_size = 100\n",
    );
    assert!(catalog.contains("batch_size"), "{catalog}");
    let server = gateway(&catalog, &js);
    let ids: Vec<String> = (0..10).map(|i| format!("{name}-circuit-{i}")).collect();
    assert_eq!(send(&server, &ids).await.status(), 200);
    let delivery = Delivery::start(&server).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut open_seen = false;
    while receiver.refused().len() < 9 {
        let gauge = circuit_gauge(&metrics_at(delivery.admin).await, &destination);
        open_seen |= gauge.is_some_and(|g| g >= 1.0);
        assert!(
            Instant::now() < deadline,
            "{} refused sends",
            receiver.refused().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sizes: Vec<usize> = receiver.refused().iter().map(|r| r.events()).collect();
    assert_eq!(sizes[0], 10, "the first send holds every event: {sizes:?}");
    assert!(
        sizes[5..].iter().all(|&n| n == 1),
        "after five failures each attempt is a probe: {sizes:?}"
    );
    let gauge = circuit_gauge(&metrics_at(delivery.admin).await, &destination);
    assert!(
        open_seen || gauge.is_some_and(|g| g >= 1.0),
        "circuit gauge {gauge:?}"
    );

    receiver.answer(common::receiver::Answer::Ok);
    let got = receiver.wait_for(10, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 10, "{got:?}");
    let text = metrics_at(delivery.admin).await;
    assert_eq!(circuit_gauge(&text, &destination), Some(0.0), "{text}");
    finish(delivery, server, &js).await;
}

/// Events held back by an open circuit reach the dead-letter store together once older
/// than `max_age_secs` (not one probe at a time), and the delivery process's admin
/// listener lists and replays them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_held_back_by_an_open_circuit_are_dead_lettered_at_max_age() {
    let (name, js) = fresh();
    let receiver = Receiver::start().await;
    receiver.answer(common::receiver::Answer::Status(503));
    let destination = format!("aged-{name}");
    let catalog = catalog(&receiver, &destination)
        .replace(
            "initial_backoff_ms = 50, max_backoff_ms = 500 }",
            "initial_backoff_ms = 20, max_backoff_ms = 100, max_age_secs = 5 }",
        )
        .replace(
            "timeout_ms = 2000\n",
            "timeout_ms = 2000\nbatch_size = 100\n",
        );
    assert!(
        catalog.contains("max_age_secs") && catalog.contains("batch_size"),
        "{catalog}"
    );
    let server = gateway(&catalog, &js);
    let ids: Vec<String> = (0..8).map(|i| format!("{name}-aged-{i}")).collect();
    assert_eq!(send(&server, &ids).await.status(), 200);
    let delivery = Delivery::start(&server).await;
    let file = sluice::delivery::dead_letter::path(
        &sluice::delivery::dead_letter_dir(&server.config.log.dir),
        &destination,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let buried = loop {
        let lines: Vec<Value> = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a dead-letter line"))
            .collect();
        if lines.len() >= 8 {
            break lines;
        }
        assert!(Instant::now() < deadline, "{} dead letters", lines.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(buried.len(), 8, "each event once: {buried:?}");
    assert!(
        buried.iter().all(|l| l["reason"] == "status_5xx"),
        "{buried:?}"
    );
    // Held events past their age went together, in one append (one `failedAt`), not
    // each as a probe of its own.
    let mut times: Vec<&str> = buried
        .iter()
        .filter_map(|l| l["failedAt"].as_str())
        .collect();
    times.sort_unstable();
    assert!(
        times.windows(2).any(|w| w[0] == w[1]),
        "every dead letter was a probe: {times:?}"
    );
    let sizes: Vec<usize> = receiver.refused().iter().map(|r| r.events()).collect();
    assert_eq!(sizes.first(), Some(&8), "{sizes:?}");
    assert!(
        sizes.len() > 5 && sizes[5..].iter().all(|&n| n == 1),
        "{sizes:?}"
    );

    // The delivery process's admin listener lists them and replays them, as a gateway's
    // does for the local log (`sluice dlq`).
    let listed: Value = client()
        .get(format!("http://{}/dlq", delivery.admin))
        .send()
        .await
        .expect("GET /dlq")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed[&destination], 8, "{listed}");
    receiver.answer(common::receiver::Answer::Ok);
    let replay = |token: &'static str| {
        client()
            .post(format!(
                "http://{}/dlq/{destination}/replay",
                delivery.admin
            ))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(replay("wrong").await.expect("replay").status(), 401);
    let replayed: Value = replay(ADMIN_TOKEN)
        .await
        .expect("replay")
        .json()
        .await
        .expect("JSON");
    assert_eq!(replayed["delivered"], 8, "{replayed}");
    assert_eq!(receiver.wait_for(8, Duration::from_secs(5)).await.len(), 8);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .is_empty()
    );
    finish(delivery, server, &js).await;
}

/// A destination out of the catalog for `remove_consumer_after_secs` loses its JetStream
/// consumer (with the events it had not delivered, as a removed destination's backlog on
/// the local log), counted, so nothing keeps piling up for it on the servers; a removal
/// undone sooner deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_removed_from_the_catalog_loses_its_consumer() {
    let url = NATS;
    let name = unique();
    let js = config::JetStream {
        remove_consumer_after_secs: 3,
        ..settings(url, &name)
    };
    let receiver = Receiver::start().await;
    let destination = format!("leaving-{name}");
    let with_destination = catalog(&receiver, &destination);
    let server = gateway(&with_destination, &js);
    let ids: Vec<String> = (0..3).map(|i| format!("{name}-leaving-{i}")).collect();
    assert_eq!(send(&server, &ids).await.status(), 200);
    let nats = async_nats::connect(url).await.expect("nats");
    let stream = async_nats::jetstream::new(nats)
        .get_stream(&js.stream)
        .await
        .expect("stream");
    let consumer = sluice::delivery::stream::consumer_name(&destination);
    let info = stream
        .consumer_info(&consumer)
        .await
        .expect("the consumer exists");
    assert_eq!(
        info.num_pending, 3,
        "no delivery process runs: the events wait"
    );

    let without = "[[sources]]\nid = \"web\"\nwrite_keys = [{ key = \"web-key\" }]\n";

    // Removed and added back within the grace: the consumer and its events stay.
    server.write_catalog(without);
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.write_catalog(&with_destination);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let info = stream
        .consumer_info(&consumer)
        .await
        .expect("the consumer stays");
    assert_eq!(info.num_pending, 3, "its events wait still");

    // Removed for good: gone after the grace, counted.
    server.write_catalog(without);
    let deadline = Instant::now() + Duration::from_secs(15);
    while stream.consumer_info(&consumer).await.is_ok() {
        assert!(Instant::now() < deadline, "the consumer stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let series =
        format!("sluice_delivery_destinations_removed_total{{destination=\"{destination}\"}}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = server.metrics().await;
        if m.contains(&series) {
            assert_eq!(common::metric(&m, &series), 1.0, "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "not counted: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    delete_stream(url, &js.stream).await;
}

/// The machine's nats-server.
const NATS: &str = "nats://127.0.0.1:4222";

/// A test's own stream on the machine's nats-server, and the unique name in it.
fn fresh() -> (String, config::JetStream) {
    let name = unique();
    let js = settings(NATS, &name);
    (name, js)
}

/// Stops the delivery process and the gateway, then deletes the test's stream.
async fn finish(delivery: Delivery, server: TestServer, js: &config::JetStream) {
    delivery.stop().await;
    drop(server);
    delete_stream(&js.url, &js.stream).await;
}

/// A delivery process on the gateway's stream, as `sluice deliver` runs it.
struct Delivery {
    /// Its admin listener (metrics, probes).
    admin: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), sluice::ServeError>>,
}

impl Delivery {
    async fn start(server: &TestServer) -> Self {
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = listener.local_addr().expect("addr");
        let task = tokio::spawn(sluice::deliver(
            server.config.clone(),
            listener,
            stop.clone(),
        ));
        Self { admin, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("join").expect("deliver ran");
    }
}

fn gateway(catalog: &str, js: &config::JetStream) -> TestServer {
    let js = js.clone();
    TestServer::start_with(catalog, move |c| {
        c.log.backend = LogBackend::Jetstream;
        c.log.jetstream = js;
        c.delivery.enabled = false;
        c.delivery.allow_private_destinations = true;
        c.server.max_key_failures_per_minute = 0;
        c.server.admin_token = Some(config::Secret::new(ADMIN_TOKEN));
    })
}

/// The admin listener's token in these tests.
const ADMIN_TOKEN: &str = "jetstream-test-admin-token";

async fn send(server: &TestServer, ids: &[String]) -> reqwest::Response {
    let batch: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "track", "userId": "u", "event": "Order Completed", "messageId": id}))
        .collect();
    client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic("web-key"))
        .json(&json!({ "batch": batch }))
        .send()
        .await
        .expect("send")
}

async fn stream_messages(url: &str, stream: &str) -> u64 {
    let client = async_nats::connect(url).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.expect("stream");
    s.info().await.expect("info").state.messages
}

async fn delete_stream(url: &str, stream: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(stream)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_are_delivered_by_two_delivery_processes() {
    let url = NATS;
    let name = unique();
    let js = settings(url, &name);
    let receiver = Receiver::start().await;
    let destination = format!("hook-{name}");
    let server = gateway(&catalog(&receiver, &destination), &js);

    // Two delivery processes on the same destination consumer.
    let stop = CancellationToken::new();
    let mut admins = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        admins.push(admin.local_addr().expect("addr"));
        workers.push(tokio::spawn(sluice::deliver(
            server.config.clone(),
            admin,
            stop.clone(),
        )));
    }

    let mut acknowledged = Vec::new();
    for round in 0..20 {
        let ids: Vec<String> = (0..25).map(|i| format!("{name}-{round}-{i}")).collect();
        let response = send(&server, &ids).await;
        assert_eq!(response.status(), 200);
        acknowledged.extend(ids);
    }
    // A client retry of a whole request: JetStream's duplicate window stores it once.
    assert_eq!(send(&server, &acknowledged[..25]).await.status(), 200);
    let stored = stream_messages(url, &js.stream).await;
    assert_eq!(stored, acknowledged.len() as u64, "duplicates stored");

    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted: HashSet<&String> = acknowledged.iter().collect();
    loop {
        let delivered: HashSet<String> = receiver
            .events()
            .iter()
            .filter_map(|e| e["messageId"].as_str().map(str::to_owned))
            .collect();
        let missing = wanted.iter().filter(|id| !delivered.contains(**id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never delivered",
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = receiver.events().len();
    assert!(
        total >= acknowledged.len(),
        "{total} deliveries for {} events",
        acknowledged.len()
    );

    // Each delivery process answers its probes and metrics on its admin listener.
    for admin in &admins {
        let ready = client()
            .get(format!("http://{admin}/ready"))
            .send()
            .await
            .expect("ready");
        assert_eq!(ready.status(), 200);
        let body: Value = ready.json().await.expect("json");
        assert_eq!(body["jetstream_connected"], true, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_at(admins[0]).await;
        if text.contains(&format!(
            "sluice_delivery_lag_events{{destination=\"{destination}\"}}"
        )) {
            break;
        }
        assert!(Instant::now() < deadline, "no lag gauge: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    stop.cancel();
    for w in workers {
        w.await.expect("join").expect("deliver ran");
    }
    drop(server);
    delete_stream(url, &js.stream).await;
}

fn nats_server(port: u16, dir: &std::path::Path) -> Child {
    nats_server_with(port, dir, &[])
}

fn nats_server_with(port: u16, dir: &std::path::Path, extra: &[&str]) -> Child {
    Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server (scripts/services.sh installs it)")
}

/// `sluice::serve` with `js`; its error if it stopped within `within`, else `None`
/// (then it is stopped).
async fn serve_outcome(js: &config::JetStream, within: Duration) -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("catalog.toml"), "sources = []\n").expect("catalog");
    let mut config = config::Config::default();
    config.catalog.source = config::CatalogSourceKind::File;
    config.catalog.path = dir.path().join("catalog.toml");
    config.log.dir = dir.path().join("log");
    config.log.backend = LogBackend::Jetstream;
    config.log.jetstream = js.clone();
    let listeners = sluice::Listeners {
        data: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        control: None,
    };
    let stop = CancellationToken::new();
    let serving = tokio::spawn(sluice::serve(config, listeners, stop.clone()));
    let deadline = Instant::now() + within;
    while !serving.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if serving.is_finished() {
        let result = serving.await.expect("join");
        return Some(result.err().map(|e| e.to_string()).unwrap_or_default());
    }
    stop.cancel();
    let _ = serving.await;
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_tls_reach_a_protected_server_and_wrong_ones_fail_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A server that wants a user and password.
    let port = free_port();
    let mut nats = nats_server_with(
        port,
        &dir.path().join("auth"),
        &["--user", "sluice", "--pass", "s3cret"],
    );
    wait_up(port).await;
    let mut js = settings(&format!("nats://127.0.0.1:{port}"), &unique());
    js.connect_timeout_ms = 20_000;
    js.user = "sluice".into();
    js.password = config::Secret::new("s3cret");
    let receiver = Receiver::start().await;
    let server = gateway(&catalog(&receiver, "hook"), &js);
    assert_eq!(send(&server, &["with-password".into()]).await.status(), 200);
    drop(server);
    // A wrong password is refused at once (not after connect_timeout), saying why.
    js.password = config::Secret::new("wrong");
    let error = serve_outcome(&js, Duration::from_secs(5))
        .await
        .expect("a wrong password must stop the start");
    assert!(error.contains("authorization violation"), "{error}");
    let _ = nats.kill();
    let _ = nats.wait();

    // A TLS server with a certificate from our own CA, verifying clients' certificates.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let write_signed = |name: &str, san: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![san.to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("sign");
        let (cert_path, key_path) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        (cert_path, key_path)
    };
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write");
    let (cert_path, key_path) = write_signed("server", "127.0.0.1");
    let (client_cert, client_key) = write_signed("client", "sluice-gateway");
    let port = free_port();
    let mut nats = nats_server_with(
        port,
        &dir.path().join("tls"),
        &[
            "--tlsverify",
            "--tlscert",
            cert_path.to_str().expect("utf8"),
            "--tlskey",
            key_path.to_str().expect("utf8"),
            "--tlscacert",
            ca_path.to_str().expect("utf8"),
        ],
    );
    wait_up(port).await;
    let mut js = settings(&format!("nats://127.0.0.1:{port}"), &unique());
    js.connect_timeout_ms = 20_000;
    js.tls_ca = Some(ca_path.clone());
    js.tls_cert = Some(client_cert);
    js.tls_key = Some(client_key);
    let server = gateway(&catalog(&receiver, "hook"), &js);
    assert_eq!(send(&server, &["over-tls".into()]).await.status(), 200);
    drop(server);
    // Without our CA the server's certificate is not trusted: refused at once.
    let mut untrusting = js.clone();
    untrusting.tls_ca = None;
    let error = serve_outcome(&untrusting, Duration::from_secs(5))
        .await
        .expect("an untrusted server must stop the start");
    assert!(error.contains("invalid peer certificate"), "{error}");
    // Without a client certificate the server refuses us: no start either.
    let mut anonymous = js.clone();
    anonymous.tls_cert = None;
    anonymous.tls_key = None;
    anonymous.connect_timeout_ms = 2_000;
    let error = serve_outcome(&anonymous, Duration::from_secs(6))
        .await
        .expect("a server that wants a client certificate must stop the start");
    assert!(error.contains("cannot reach NATS"), "{error}");
    let _ = nats.kill();
    let _ = nats.wait();
}

async fn wait_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_away_means_503_and_it_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut nats = nats_server(port, dir.path());
    wait_up(port).await;
    let url = format!("nats://127.0.0.1:{port}");
    let js = settings(&url, &unique());
    let receiver = Receiver::start().await;
    let server = gateway(&catalog(&receiver, "hook"), &js);
    assert_eq!(send(&server, &["before".into()]).await.status(), 200);

    // JetStream goes away: requests are refused with a retry hint, never acknowledged.
    nats.kill().expect("kill");
    let _ = nats.wait();
    let response = send(&server, &["during".into()]).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "log_unavailable", "{body}");
    let ready = client()
        .get(server.admin_url("/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);

    // Back on the same port and store: the gateway reconnects by itself.
    let mut nats = nats_server(port, dir.path());
    wait_up(port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let status = send(&server, &[format!("after-{n}")]).await.status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = stream_messages(&url, &js.stream).await;
    assert!(stored >= 2, "{stored}");
    drop(server);
    let _ = nats.kill();
    let _ = nats.wait();
}
