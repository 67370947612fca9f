//! The NATS destination against the real NATS server on 127.0.0.1:4222 (started by
//! `scripts/services.sh`): JetStream publish with acks and `Nats-Msg-Id`, subject
//! templates, and retries while the server or the stream is missing.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, basic, client, metric};
use serde_json::{Value, json};

const NATS: &str = "nats://127.0.0.1:4222";

fn catalog(url: &str, subject: &str) -> String {
    format!(
        "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
         [[destinations]]\nid = \"bus\"\ntype = \"nats\"\nsources = [\"web\"]\n\
         retry = {{ initial_backoff_ms = 50, max_backoff_ms = 300 }}\n\
         settings = {{ url = \"{url}\", subject = \"{subject}\", timeout_ms = 2000 }}\n"
    )
}

async fn send(server: &TestServer, ids: &[&str]) {
    let batch: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type":"track","userId":"u","event":"Bus","messageId":id}))
        .collect();
    let r = client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic("web-key"))
        .json(&json!({ "batch": batch }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

/// Message ids in the stream, in order, waiting until `n` are there.
async fn stream_ids(
    js: &async_nats::jetstream::Context,
    stream: &str,
    n: u64,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = js.get_stream(stream).await.expect("stream");
        let count = s.info().await.expect("info").state.messages;
        if count >= n {
            let mut out = Vec::new();
            for seq in 1..=count {
                let m = s.get_raw_message(seq).await.expect("message");
                let v: Value = serde_json::from_slice(&m.payload).expect("json");
                let id = m
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert_eq!(
                    v["messageId"].as_str(),
                    Some(id.as_str()),
                    "Nats-Msg-Id carries the messageId"
                );
                out.push((m.subject.to_string(), id));
            }
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} of {n} messages in the stream"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_jetstream_with_acks_and_retries_until_the_stream_exists() {
    let tag = format!("t{}", std::process::id());
    let nats = async_nats::connect(NATS)
        .await
        .expect("NATS on 127.0.0.1:4222 (scripts/services.sh)");
    let js = async_nats::jetstream::new(nats);
    let stream = format!("SLUICE_{tag}");
    let _ = js.delete_stream(&stream).await;

    let server = TestServer::start_with(
        &catalog(NATS, &format!("sluice.{tag}.{{source}}.{{type}}")),
        |_| {},
    );
    // No stream yet: publishes are refused and retried.
    send(&server, &["n-1", "n-2"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &server.metrics().await,
        "sluice_delivery_failed_total{destination=\"bus\",reason=\"no_stream\"}",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "no_stream retries not seen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("sluice.{tag}.>")],
        ..Default::default()
    })
    .await
    .expect("create stream");
    send(&server, &["n-3"]).await;
    let got = stream_ids(&js, &stream, 3).await;
    assert_eq!(
        got,
        ["n-1", "n-2", "n-3"].map(|id| (format!("sluice.{tag}.web.track"), id.to_owned()))
    );
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "sluice_delivery_delivered_total{destination=\"bus\"}"),
        3.0
    );
    let _ = js.delete_stream(&stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_retried_not_dropped() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let server = TestServer::start_with(
        &catalog(&format!("nats://127.0.0.1:{port}"), "sluice.unreachable"),
        |_| {},
    );
    send(&server, &["u-1"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = server.metrics().await;
        if metric(
            &m,
            "sluice_delivery_failed_total{destination=\"bus\",reason=\"connection\"}",
        ) >= 2.0
        {
            assert_eq!(
                metric(
                    &m,
                    "sluice_delivery_dead_lettered_total{destination=\"bus\"}"
                ),
                0.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "connection failures not retried");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
