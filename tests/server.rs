//! Transport: TLS with HTTP/2 and HTTP/1.1, keep-alive, graceful shutdown.

mod common;

use std::time::Duration;

use common::{CATALOG, TestServer, basic};

fn tls_client(ca_pem: &str, http2: bool) -> reqwest::Client {
    sluice::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("add root");
    }
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client")
}

#[tokio::test]
async fn tls_serves_http2_and_http1() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write");
    let server = TestServer::start_with(CATALOG, |c| {
        c.server.tls_cert = Some(cert_path.clone());
        c.server.tls_key = Some(key_path.clone());
    });
    let url = format!("https://localhost:{}/v1/track", server.addr.port());
    for (http2, version) in [
        (true, reqwest::Version::HTTP_2),
        (false, reqwest::Version::HTTP_11),
    ] {
        let c = tls_client(&cert.cert.pem(), http2);
        for _ in 0..3 {
            let r = c
                .post(&url)
                .header("authorization", basic("web-key"))
                .body(r#"{"userId":"u","event":"Secure"}"#)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            assert_eq!(r.version(), version);
        }
    }
    assert_eq!(server.stored().len(), 6);
}

#[tokio::test]
async fn plain_http2_with_prior_knowledge() {
    let server = TestServer::start();
    sluice::tls::install_crypto_provider();
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = c
        .post(server.url("/v1/track"))
        .header("authorization", basic("web-key"))
        .body(r#"{"userId":"u","event":"H2C"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    // Stop while this runtime still runs the client, so it can answer the server's
    // GOAWAY/PING and the connection closes at once rather than at the grace period.
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "HTTP/2 shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_keeps_their_events() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start();
    // A request whose body is still arriving when shutdown starts.
    let mut s = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let body = br#"{"userId":"u","event":"In Flight"}"#;
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        basic("web-key"),
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&body[..5]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopper = std::thread::spawn(move || server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(&body[5..]).await.expect("write rest");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut reply))
        .await
        .expect("answered")
        .expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (_dir, config) = stopper.join().expect("stopped");
    let stored = common::stored_in(&config.log.dir);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["event"]["event"], "In Flight");
    drop(_dir);
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(CATALOG, |c| {
        c.server.header_timeout_ms = 300;
        c.server.idle_timeout_ms = 400;
    });
    // Slowloris: headers that never finish.
    let mut slow = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    slow.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a connection with unfinished headers stays open"
    );

    // An idle keep-alive connection after one request.
    let mut idle = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf))
        .await
        .expect("idle connection closed")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed too early: {:?}",
        started.elapsed()
    );
}

/// A refusal for a limit names the limit as configured, not the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_configured_limits() {
    let server = TestServer::start_with(CATALOG, |c| {
        c.limits.max_batch_items = 3;
        c.limits.max_message_id_chars = 8;
        c.limits.max_json_depth = 6;
    });
    let client = common::client();
    let post = |path: &'static str, body: serde_json::Value| {
        client
            .post(server.url(path))
            .header("authorization", basic("web-key"))
            .json(&body)
            .send()
    };
    let item = serde_json::json!({"type": "track", "userId": "u", "event": "E"});
    let r = post(
        "/v1/batch",
        serde_json::json!({"batch": [item, item, item, item]}),
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["code"], "batch_too_many_items");
    assert_eq!(body["message"], "batch has more than 3 items", "{body}");
    let r = post(
        "/v1/track",
        serde_json::json!({"userId": "u", "event": "E", "messageId": "123456789"}),
    )
    .await
    .expect("send");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body["message"], "messageId is longer than 8 characters",
        "{body}"
    );
    let r = post(
        "/v1/track",
        serde_json::json!({"userId": "u", "event": "E", "properties": {"a": {"b": {"c": {"d": {"e": {}}}}}}}),
    )
    .await
    .expect("send");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["code"], "json_too_deep", "{body}");
    assert_eq!(
        body["message"], "JSON is nested deeper than 6 levels",
        "{body}"
    );
    server.stop();
}
