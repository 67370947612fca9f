//! Delivery through a real server to real receivers: the shared compliance test (on
//! the local log and on JetStream), routing, isolation, dead letters and replay, the
//! SSRF guard.

mod common;

use std::time::{Duration, Instant};

use common::receiver::{Answer, Receiver};
use common::{TestServer, basic, client, metric};
use serde_json::{Value, json};

const SECOND: Duration = Duration::from_secs(1);

fn catalog(destinations: &str) -> String {
    format!(
        "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
         [[sources]]\nid = \"app\"\nwrite_keys = [{{ key = \"app-key\" }}]\n{destinations}"
    )
}

fn webhook(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[destinations]]\nid = \"{id}\"\ntype = \"webhook\"\nsources = [\"web\"]\n\
         retry = {{ initial_backoff_ms = 50, max_backoff_ms = 1500 }}\n{extra}\n\
         [destinations.settings]\nurl = \"{url}\"\ntimeout_ms = 400\n"
    )
}

fn start(destinations: &str) -> TestServer {
    start_on(Backend::Local, destinations)
}

/// The event log a test delivers from: both engines pass the compliance tests.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// The local log (the default).
    Local,
    /// JetStream on the machine's nats-server (127.0.0.1:4222), on a stream of the
    /// test's own, delivered by workers in the server's process.
    JetStream,
}

impl Backend {
    /// A destination id of this backend's (metrics are process-wide, and both backends'
    /// tests run in one process).
    fn id(self, base: &str) -> String {
        match self {
            Self::Local => base.to_owned(),
            Self::JetStream => format!("{base}-js"),
        }
    }

    fn configure(self, c: &mut sluice::config::Config) {
        if let Self::JetStream = self {
            let name = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
            c.log.backend = sluice::config::LogBackend::Jetstream;
            c.log.jetstream = sluice::config::JetStream {
                stream: format!("SLUICE_T_{name}"),
                subject_prefix: format!("sluice_t.{name}"),
                max_bytes: 64 << 20,
                ack_timeout_ms: 1_500,
                connect_timeout_ms: 5_000,
                ..sluice::config::JetStream::default()
            };
        }
    }

    /// Waits until a catalog change reached the delivery workers (they route by the
    /// catalog they last read) and, on JetStream, the destination's consumer exists.
    async fn await_destination(self, server: &TestServer, id: &str) {
        // The catalog is read every 100 ms; workers route by what they last read.
        tokio::time::sleep(Duration::from_millis(600)).await;
        match self {
            Self::Local => {}
            Self::JetStream => {
                let stream = jetstream_of(server).await;
                let name = sluice::delivery::stream::consumer_name(id);
                eventually("the destination's consumer", 5 * SECOND, async || {
                    stream.consumer_info(&name).await.is_ok()
                })
                .await;
            }
        }
    }

    /// Deletes the test's stream (nothing for the local log, which lives in a tempdir).
    async fn clean_up(self, server: &TestServer) {
        if let Self::JetStream = self
            && let Ok(nats) = async_nats::connect(&server.config.log.jetstream.url).await
        {
            let _ = async_nats::jetstream::new(nats)
                .delete_stream(&server.config.log.jetstream.stream)
                .await;
        }
    }
}

/// The JetStream stream a server on [`Backend::JetStream`] logs to.
async fn jetstream_of(server: &TestServer) -> async_nats::jetstream::stream::Stream {
    let nats = async_nats::connect(&server.config.log.jetstream.url)
        .await
        .expect("nats");
    async_nats::jetstream::new(nats)
        .get_stream(&server.config.log.jetstream.stream)
        .await
        .expect("stream")
}

fn start_on(backend: Backend, destinations: &str) -> TestServer {
    TestServer::start_with(&catalog(destinations), |c| {
        c.delivery.allow_private_destinations = true;
        c.server.admin_token = Some(sluice::config::Secret::new(ADMIN_TOKEN));
        backend.configure(c);
    })
}

async fn send(server: &TestServer, key: &str, events: &[Value]) {
    let batch: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["type"] = e.get("type").cloned().unwrap_or_else(|| "track".into());
            e
        })
        .collect();
    let r = client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic(key))
        .json(&json!({ "batch": batch }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

fn track(id: &str) -> Value {
    json!({"userId": "u", "event": "Order Completed", "messageId": id})
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn dead_letters(server: &TestServer) -> Value {
    client()
        .get(server.admin_url("/dlq"))
        .send()
        .await
        .expect("dlq")
        .json()
        .await
        .expect("json")
}

async fn replay(server: &TestServer, id: &str) -> Value {
    let url = server.admin_url(&format!("/dlq/{id}/replay"));
    // Changing admin routes need the admin token.
    let r = client().post(&url).send().await.expect("replay");
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .expect("replay");
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("replay");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A test on each delivery engine: `$local` runs `$body` on the local log, `$jetstream`
/// on JetStream.
macro_rules! on_both_engines {
    ($body:ident: $local:ident, $jetstream:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $local() {
            $body(Backend::Local).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $jetstream() {
            $body(Backend::JetStream).await;
        }
    };
}

async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_engines!(webhook_compliance_on: webhook_compliance, webhook_compliance_on_jetstream);

/// The compliance test every destination passes, here for `webhook`: 2xx; 429 with
/// Retry-After; 500; timeout; connection refused; 400 → dead letter; replay.
async fn webhook_compliance_on(backend: Backend) {
    let hook = backend.id("hook");
    // Connection refused first: the port is free until the receiver binds it later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let server = start_on(backend, &webhook(&hook, &url, ""));
    send(&server, "web-key", &[track("refused-1")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receiver = Receiver::start_on(port).await;
    assert_eq!(ids(&receiver.wait_for(1, 10 * SECOND).await), ["refused-1"]);

    // 2xx, in order, with the original messageId.
    send(&server, "web-key", &[track("ok-1"), track("ok-2")]).await;
    assert_eq!(
        ids(&receiver.wait_for(3, 5 * SECOND).await)[1..],
        ["ok-1", "ok-2"]
    );

    // 429 with Retry-After: 1 (below max_backoff_ms) → delivered after at least a second.
    receiver.script(&[Answer::RateLimited(1)]);
    let sent = Instant::now();
    send(&server, "web-key", &[track("limited-1")]).await;
    receiver.wait_for(4, 10 * SECOND).await;
    let arrived = receiver.received().last().expect("arrived").at;
    assert!(
        arrived.duration_since(sent) >= Duration::from_millis(950),
        "Retry-After ignored"
    );

    // 500 twice, then a timeout, then success.
    receiver.script(&[Answer::Status(500), Answer::Status(503), Answer::Hang]);
    send(&server, "web-key", &[track("flaky-1")]).await;
    assert_eq!(ids(&receiver.wait_for(5, 10 * SECOND).await)[4], "flaky-1");

    // 400 → dead letter; the next event is not held up.
    receiver.script(&[Answer::Status(400)]);
    send(&server, "web-key", &[track("bad-1")]).await;
    send(&server, "web-key", &[track("after-bad")]).await;
    let events = receiver.wait_for(6, 5 * SECOND).await;
    assert_eq!(ids(&events)[5], "after-bad");
    assert_eq!(dead_letters(&server).await, json!({ &hook: 1 }));
    // The entry says why and who is to blame: the destination refused the event itself.
    let file = sluice::delivery::dead_letter::path(
        &sluice::delivery::dead_letter_dir(&server.config.log.dir),
        &hook,
    );
    let text = std::fs::read_to_string(&file).expect("dead letters");
    let entry: Value = serde_json::from_str(text.trim()).expect("one entry");
    assert_eq!(
        (&entry["reason"], &entry["blame"]),
        (&json!("status_4xx"), &json!("events")),
        "{entry}"
    );

    // Replay sends it again and empties the store.
    assert_eq!(replay(&server, &hook).await["delivered"], 1);
    assert_eq!(ids(&receiver.wait_for(7, 5 * SECOND).await)[6], "bad-1");
    assert_eq!(dead_letters(&server).await, json!({ &hook: 0 }));

    // The lag gauges are read every two seconds on JetStream, at each scrape locally.
    let lag = format!("sluice_delivery_lag_events{{destination=\"{hook}\"}}");
    eventually("lag reported", 5 * SECOND, async || {
        server.metrics().await.contains(&lag)
    })
    .await;
    let m = server.metrics().await;
    for reason in [
        "connection",
        "rate_limited",
        "status_5xx",
        "timeout",
        "status_4xx",
    ] {
        let series =
            format!("sluice_delivery_failed_total{{destination=\"{hook}\",reason=\"{reason}\"}}");
        assert!(metric(&m, &series) >= 1.0, "{series}");
    }
    let series = |family: &str| format!("{family}{{destination=\"{hook}\"}}");
    assert_eq!(
        metric(&m, &series("sluice_delivery_dead_lettered_total")),
        1.0
    );
    assert!(metric(&m, &series("sluice_delivery_delivered_total")) >= 6.0);
    assert!(m.contains(&format!(
        "sluice_delivery_latency_seconds_bucket{{destination=\"{hook}\""
    )));
    assert!(m.contains(&series("sluice_delivery_circuit_state")));
    backend.clean_up(&server).await;
}

on_both_engines!(file_compliance_on: file_compliance, file_compliance_on_jetstream);

/// The same compliance for `file`: success, a failing path retried until it works,
/// past max age → dead letter, replay.
async fn file_compliance_on(backend: Backend) {
    let disk = backend.id("disk");
    let out = tempfile::tempdir().expect("tempdir");
    let path = out.path().join("events.ndjson");
    let server = TestServer::start_with(
        &catalog(&format!(
            "[[destinations]]\nid = \"{disk}\"\ntype = \"file\"\nsources = [\"web\"]\n\
             retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200, max_age_secs = 2 }}\n\
             settings = {{ path = \"events.ndjson\" }}\n",
        )),
        |c| {
            c.delivery.file_dir = out.path().to_owned();
            c.server.admin_token = Some(sluice::config::Secret::new(ADMIN_TOKEN));
            backend.configure(c);
        },
    );
    let lines = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("ndjson")["messageId"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    // The path is a directory: appends fail, are retried, then dead-lettered at max age.
    std::fs::create_dir(&path).expect("mkdir");
    send(&server, "web-key", &[track("f-1")]).await;
    eventually("dead-lettered after max age", 10 * SECOND, async || {
        dead_letters(&server).await == json!({ &disk: 1 })
    })
    .await;
    std::fs::remove_dir(&path).expect("rmdir");
    // Later events flow; the dead letter comes back by replay.
    send(&server, "web-key", &[track("f-2"), track("f-3")]).await;
    eventually("file written", 5 * SECOND, async || lines(&path).len() == 2).await;
    assert_eq!(replay(&server, &disk).await["delivered"], 1);
    assert_eq!(lines(&path), ["f-2", "f-3", "f-1"]);
    let m = server.metrics().await;
    let series = format!("sluice_delivery_failed_total{{destination=\"{disk}\",reason=\"io\"}}");
    assert!(metric(&m, &series) >= 1.0);
    backend.clean_up(&server).await;
}

on_both_engines!(routing_on:
    routing_follows_sources_integrations_filters_and_catalog_changes,
    routing_follows_sources_integrations_filters_and_catalog_changes_on_jetstream);

async fn routing_on(backend: Backend) {
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let destinations = |b_enabled: bool, b_sources: &str| {
        format!(
            "{}{}",
            webhook(
                "a",
                &a.url(),
                "name = \"Alpha\"\nfilter = { event_names_deny = [\"Noise\"] }"
            ),
            webhook(
                "b",
                &b.url(),
                &format!("name = \"Beta\"\nenabled = {b_enabled}")
            )
            .replace("sources = [\"web\"]", b_sources)
        )
    };
    let server = start_on(backend, &destinations(false, "sources = [\"web\"]"));
    send(&server, "web-key", &[
        track("to-a-only"), // b disabled
        json!({"userId":"u","event":"Noise","messageId":"filtered"}),
        json!({"userId":"u","event":"E","messageId":"all-off","integrations":{"All":false}}),
        json!({"userId":"u","event":"E","messageId":"alpha-on","integrations":{"All":false,"Alpha":true}}),
    ]).await;
    send(&server, "app-key", &[track("app-not-connected")]).await;
    send(&server, "web-key", &[track("marker-1")]).await;
    assert_eq!(
        ids(&a.wait_for(3, 5 * SECOND).await),
        ["to-a-only", "alpha-on", "marker-1"]
    );

    // Enable b and connect it to both sources while traffic flows.
    server.write_catalog(&catalog(&destinations(
        true,
        "sources = [\"web\", \"app\"]",
    )));
    backend.await_destination(&server, "b").await;
    send(&server, "app-key", &[track("app-after-change")]).await;
    send(
        &server,
        "web-key",
        &[json!({"userId":"u","event":"E","messageId":"beta-off","integrations":{"Beta":false}})],
    )
    .await;
    send(&server, "web-key", &[track("marker-2")]).await;
    assert_eq!(
        ids(&b.wait_for(2, 5 * SECOND).await),
        ["app-after-change", "marker-2"]
    );
    assert_eq!(
        ids(&a.wait_for(5, 5 * SECOND).await)[3..],
        ["beta-off", "marker-2"]
    );
    assert!(b.events().is_empty() || !ids(&b.events()).contains(&"to-a-only".to_owned()));
    backend.clean_up(&server).await;
}

on_both_engines!(new_destination_on:
    a_new_destination_gets_every_event_accepted_once_it_is_in_the_catalog,
    a_new_destination_gets_every_event_accepted_once_it_is_in_the_catalog_on_jetstream);

/// A source and a destination added together: the first events the gateway accepts for
/// the new source (it refuses its key until the new catalog is in) reach the new
/// destination, though its worker or consumer starts a moment later.
async fn new_destination_on(backend: Backend) {
    let receiver = Receiver::start().await;
    let server = start_on(backend, "");
    let late = backend.id("late");
    server.write_catalog(&format!(
        "{}[[sources]]\nid = \"late-src\"\nwrite_keys = [{{ key = \"late-key\" }}]\n{}",
        catalog(""),
        webhook(&late, &receiver.url(), "")
            .replace("sources = [\"web\"]", "sources = [\"late-src\"]")
    ));
    let deadline = Instant::now() + 10 * SECOND;
    let mut accepted = Vec::new();
    while accepted.len() < 3 {
        let id = format!("late-{}", accepted.len());
        let r = client()
            .post(server.url("/v1/track"))
            .header("authorization", basic("late-key"))
            .json(&json!({"userId": "u", "event": "E", "messageId": id}))
            .send()
            .await
            .expect("send");
        match r.status().as_u16() {
            200 => accepted.push(id),
            401 => assert!(Instant::now() < deadline, "the new catalog never came in"),
            other => panic!("unexpected status {other}"),
        }
    }
    let mut got = ids(&receiver.wait_for(3, 10 * SECOND).await);
    got.sort();
    assert_eq!(got, accepted);
    backend.clean_up(&server).await;
}

on_both_engines!(isolation_on:
    a_dead_destination_does_not_slow_the_others_and_catches_up,
    a_dead_destination_does_not_slow_the_others_and_catches_up_on_jetstream);

async fn isolation_on(backend: Backend) {
    let down = Receiver::start().await;
    let up = Receiver::start().await;
    down.answer(Answer::Status(503));
    let (down_id, up_id) = (backend.id("down"), backend.id("up"));
    let server = start_on(
        backend,
        &format!(
            "{}{}",
            webhook(&down_id, &down.url(), ""),
            webhook(&up_id, &up.url(), "")
        ),
    );
    let n = 50;
    let started = Instant::now();
    for i in 0..n {
        send(&server, "web-key", &[track(&format!("e-{i}"))]).await;
    }
    up.wait_for(n, 5 * SECOND).await;
    let healthy = started.elapsed();
    assert!(healthy < 5 * SECOND, "healthy destination took {healthy:?}");
    assert!(down.events().is_empty());
    let lag = format!("sluice_delivery_lag_events{{destination=\"{down_id}\"}}");
    eventually("lag reported", 5 * SECOND, async || {
        metric(&server.metrics().await, &lag) >= 1.0
    })
    .await;

    // Recovery: everything arrives, nothing lost; in order from the local log (JetStream
    // gives failed events back one by one, so they may come back in another order).
    down.answer(Answer::Ok);
    let events = down.wait_for(n, 10 * SECOND).await;
    let want: Vec<String> = (0..n).map(|i| format!("e-{i}")).collect();
    let mut got = ids(&events);
    if let Backend::JetStream = backend {
        got.sort_by_key(|id| id[2..].parse::<usize>().unwrap_or(usize::MAX));
        assert_eq!(got, want);
        // Both consumers end with nothing waiting and nothing handed out unacknowledged.
        let stream = jetstream_of(&server).await;
        for id in [&down_id, &up_id] {
            let name = sluice::delivery::stream::consumer_name(id);
            eventually("every event acknowledged", 5 * SECOND, async || {
                stream
                    .consumer_info(&name)
                    .await
                    .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
            })
            .await;
        }
        backend.clean_up(&server).await;
        return;
    }
    assert_eq!(got, want);
    // Both cursors end past the last event once idle.
    let dir = sluice::log::reading::local::cursor_dir(&server.config.log.dir);
    eventually("cursors saved", 5 * SECOND, async || {
        ["up", "down"].iter().all(
            |d| matches!(sluice::log::reading::cursor::load(&dir, d), Ok(Some(c)) if c == n as u64),
        )
    })
    .await;
}

on_both_engines!(circuit_on:
    an_open_circuit_probes_with_one_event_and_the_rest_follow_its_success,
    an_open_circuit_probes_with_one_event_and_the_rest_follow_its_success_on_jetstream);

/// Five failed rounds in a row open the circuit (sends made together count once): each
/// attempt then carries one event (a probe) while the others wait; the first success
/// closes it. On the local log a failed round comes back whole, and the others follow a
/// passing probe at once (JetStream cannot recall events it was given back: they come
/// when their delay ends).
async fn circuit_on(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(503));
    let id = backend.id("circuit");
    let hook = webhook(&id, &receiver.url(), "max_in_flight = 4")
        .replace("timeout_ms = 400\n", "timeout_ms = 400\nbatch_size = 2\n");
    assert!(hook.contains("batch_size = 2"), "{hook}");
    let server = start_on(backend, &hook);
    backend.await_destination(&server, &id).await;
    let sent: Vec<Value> = (0..10).map(|i| track(&format!("c-{i}"))).collect();
    send(&server, "web-key", &sent).await;
    eventually("two probes refused", 20 * SECOND, async || {
        receiver.refused().len() >= 22
    })
    .await;
    let sizes: Vec<usize> = receiver.refused().iter().map(|r| r.events()).collect();
    assert!(
        sizes.ends_with(&[1, 1]),
        "once open, each attempt is a probe: {sizes:?}"
    );
    if let Backend::Local = backend {
        assert_eq!(
            sizes[..22],
            [[2; 20].as_slice(), &[1, 1]].concat(),
            "five rounds of four sends of two fail before the circuit opens: {sizes:?}"
        );
    }
    receiver.answer(Answer::Ok);
    let events = receiver.wait_for(10, 20 * SECOND).await;
    let mut got = ids(&events);
    if let Backend::Local = backend {
        let delivered = receiver.received();
        let (probe, last) = (delivered[0].at, delivered[delivered.len() - 1].at);
        assert_eq!(got[0], "c-0", "the oldest event is the probe");
        assert!(
            last - probe < Duration::from_millis(500),
            "the others followed the probe's success {:?} later, not at once",
            last - probe
        );
    }
    got.sort_by_key(|id| id[2..].parse::<usize>().unwrap_or(usize::MAX));
    let want: Vec<String> = (0..10).map(|i| format!("c-{i}")).collect();
    assert_eq!(got, want);
    backend.clean_up(&server).await;
}

on_both_engines!(partial_on:
    a_send_that_fails_beside_one_that_passes_still_waits_for_its_retry_after,
    a_send_that_fails_beside_one_that_passes_still_waits_for_its_retry_after_on_jetstream);

/// Two sends made together, one passing and one rate limited: the limited one still
/// waits for its `Retry-After` before it goes again.
async fn partial_on(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.script(&[Answer::Ok, Answer::RateLimited(1)]);
    receiver.answer(Answer::Ok);
    let id = backend.id("partial");
    let server = start_on(backend, &webhook(&id, &receiver.url(), "max_in_flight = 2"));
    backend.await_destination(&server, &id).await;
    send(&server, "web-key", &[track("p-0"), track("p-1")]).await;
    let events = receiver.wait_for(2, 10 * SECOND).await;
    assert_eq!(events.len(), 2);
    let refused = receiver.refused();
    assert_eq!(refused.len(), 1, "one send was rate limited");
    let again = receiver.received().last().expect("delivered").at;
    assert!(
        again - refused[0].at >= Duration::from_millis(900),
        "sent again {:?} after its 429 with Retry-After: 1",
        again - refused[0].at
    );
    backend.clean_up(&server).await;
}

on_both_engines!(signed_and_guarded_on:
    batches_are_signed_and_private_addresses_are_refused_by_default,
    batches_are_signed_and_private_addresses_are_refused_by_default_on_jetstream);

async fn signed_and_guarded_on(backend: Backend) {
    let receiver = Receiver::start().await;
    let server = start_on(
        backend,
        &webhook(&backend.id("signed"), &receiver.url(), "").replace(
            "timeout_ms = 400",
            "timeout_ms = 400\nbatch_size = 10\nbatch_ms = 100\nsecret = \"s3cret\"",
        ),
    );
    send(
        &server,
        "web-key",
        &[track("s-1"), track("s-2"), track("s-3")],
    )
    .await;
    receiver.wait_for(3, 5 * SECOND).await;
    for r in receiver.received() {
        let want = sluice::delivery::sink::WebhookSink::signature_of(b"s3cret", &r.body);
        assert_eq!(r.signature.as_deref(), Some(want.as_str()));
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert!(body["batch"].is_array(), "batched body");
    }

    // Default settings: loopback is off limits.
    let local = backend.id("local");
    let guarded = TestServer::start_with(&catalog(&webhook(&local, &receiver.url(), "")), |c| {
        backend.configure(c)
    });
    send(&guarded, "web-key", &[track("ssrf-1")]).await;
    eventually(
        "refused into the dead-letter store",
        5 * SECOND,
        async || dead_letters(&guarded).await == json!({ &local: 1 }),
    )
    .await;
    let m = guarded.metrics().await;
    let series = format!(
        "sluice_delivery_failed_total{{destination=\"{local}\",reason=\"private_address\"}}"
    );
    assert!(metric(&m, &series) >= 1.0);
    backend.clean_up(&server).await;
    backend.clean_up(&guarded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_and_concurrency_are_honoured() {
    let receiver = Receiver::start().await;
    // 5 requests/s with no burst: 6 single-event batches take at least a second.
    let server = start(&webhook(
        "capped",
        &receiver.url(),
        "rate_limit = { requests_per_second = 5, burst = 1 }\nmax_in_flight = 2",
    ));
    let ids_sent: Vec<String> = (0..6).map(|i| format!("c-{i}")).collect();
    let events: Vec<Value> = ids_sent.iter().map(|id| track(id)).collect();
    send(&server, "web-key", &events).await;
    let got = receiver.wait_for(6, 10 * SECOND).await;
    let mut got_ids = ids(&got);
    got_ids.sort();
    assert_eq!(
        got_ids, ids_sent,
        "all delivered (two in flight may swap order)"
    );
    let span = receiver.span();
    assert!(
        span >= Duration::from_millis(900),
        "rate cap not applied: {span:?}"
    );
}

/// A destination in back-off: at every scrape the lag gauges are the true backlog and the
/// age of its oldest waiting event, not what they were at the last retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_gauges_move_while_a_destination_backs_off() {
    let down = Receiver::start().await;
    down.answer(Answer::Status(503));
    let server = start(&format!(
        "[[destinations]]\nid = \"slow\"\ntype = \"webhook\"\nsources = [\"web\"]\n\
         retry = {{ initial_backoff_ms = 30000, max_backoff_ms = 30000 }}\n\
         [destinations.settings]\nurl = \"{}\"\ntimeout_ms = 400\n",
        down.url()
    ));
    send(&server, "web-key", &[track("first"), track("second")]).await;
    let retried = "sluice_delivery_retried_total{destination=\"slow\"}";
    eventually("the first retry is scheduled", 5 * SECOND, async || {
        metric(&server.metrics().await, retried) >= 1.0
    })
    .await;
    let events = "sluice_delivery_lag_events{destination=\"slow\"}";
    let age = "sluice_delivery_lag_seconds{destination=\"slow\"}";
    let before = server.metrics().await;
    assert_eq!(metric(&before, events), 2.0, "{before}");

    // A new event while the worker sleeps: the next scrape counts it, without a retry.
    // (How the age follows the clock is `Backlog::lag`'s unit test, on injected times.)
    send(&server, "web-key", &[track("third")]).await;
    let after = server.metrics().await;
    assert_eq!(metric(&after, retried), 1.0, "still in its 30 s back-off");
    assert_eq!(metric(&after, events), 3.0, "{after}");
    assert!(metric(&before, age) > 0.0, "{before}");
    assert!(metric(&after, age) >= metric(&before, age), "{after}");
}
