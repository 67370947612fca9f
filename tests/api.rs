//! The Tracking API through a real server: routes, auth forms, errors, limits.

mod common;

use common::{TestServer, basic, client, gzip, metric};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(
    server: &TestServer,
    path: &str,
    auth: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut req = client()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = auth {
        req = req.header("authorization", basic(key));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// POSTs `body` to `path` with extra headers (no auth unless given).
async fn post_with(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = client().post(server.url(path)).body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("send")
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("json")
}

#[tokio::test]
async fn every_route_stores_events_of_its_type() {
    let server = TestServer::start();
    let singles = [
        (
            "/v1/identify",
            "identify",
            json!({"userId":"u","traits":{"plan":"pro"}}),
        ),
        (
            "/v1/track",
            "track",
            json!({"userId":"u","event":"Clicked"}),
        ),
        ("/v1/page", "page", json!({"anonymousId":"a","name":"Home"})),
        (
            "/v1/screen",
            "screen",
            json!({"anonymousId":"a","name":"Main"}),
        ),
        ("/v1/group", "group", json!({"userId":"u","groupId":"g"})),
        ("/v1/alias", "alias", json!({"userId":"u","previousId":"p"})),
        ("/v1/i", "identify", json!({"userId":"u"})),
        ("/v1/t", "track", json!({"userId":"u","event":"E"})),
        ("/v1/p", "page", json!({"userId":"u"})),
        ("/v1/s", "screen", json!({"userId":"u"})),
        ("/v1/g", "group", json!({"userId":"u","groupId":"g"})),
        ("/v1/a", "alias", json!({"userId":"u","previousId":"p"})),
    ];
    for (path, _, msg) in &singles {
        let (status, reply) = post(&server, path, Some("web-key"), body(msg.clone())).await;
        assert_eq!(status, 200, "{path}: {reply}");
        assert_eq!(reply, json!({"success": true}), "{path}");
    }
    for path in ["/v1/batch", "/v1/import", "/v1/b"] {
        let batch = json!({"writeKey":"web-key","batch":[
            {"type":"track","userId":"u","event":"In Batch"},
            {"type":"identify","userId":"u"}]});
        let (status, reply) = post(&server, path, None, body(batch)).await;
        assert_eq!(
            (status, reply),
            (StatusCode::OK, json!({"success": true})),
            "{path}"
        );
    }
    let stored = server.stored();
    assert_eq!(stored.len(), singles.len() + 6);
    for (record, (path, kind, _)) in stored.iter().zip(&singles) {
        assert_eq!(record["event"]["type"], *kind, "{path}");
        assert_eq!(record["sourceId"], "web");
    }
}

#[tokio::test]
async fn every_auth_form_is_accepted_and_never_stored() {
    let server = TestServer::start();
    let c = client();
    let msg = || json!({"userId":"u","event":"E"});
    // Basic with the colon, without it, body key on a single message, body key on a batch.
    let (s, _) = post(&server, "/v1/track", Some("web-key"), body(msg())).await;
    assert_eq!(s, 200);
    let no_colon = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "web-key")
    );
    let r = c
        .post(server.url("/v1/track"))
        .header("authorization", no_colon)
        .body(body(msg()))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let (s, _) = post(
        &server,
        "/v1/t",
        None,
        body(json!({"writeKey":"web-key","userId":"u","event":"E"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post(&server, "/v1/batch", None, body(json!({"writeKey":"server-key","batch":[msg().as_object().cloned().map(|mut m| {m.insert("type".into(), "track".into()); m})]}))).await;
    assert_eq!(s, 200);
    // Header and body agreeing is fine.
    let (s, _) = post(
        &server,
        "/v1/t",
        Some("web-key"),
        body(json!({"writeKey":"web-key","userId":"u","event":"E"})),
    )
    .await;
    assert_eq!(s, 200);
    let stored = server.stored();
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[3]["sourceId"], "server");
    for r in &stored {
        assert!(!r.to_string().contains("web-key") && !r.to_string().contains("server-key"));
    }
}

#[tokio::test]
async fn bad_keys_get_401_with_their_code_and_store_nothing() {
    let server = TestServer::start();
    // Auth failures carry no source label, so the series is shared with every test in
    // this process: compare with the value before, never with an absolute count.
    let before = server.metrics().await;
    let revoked = "sluice_auth_failures_total{reason=\"key_revoked\"}";
    let unknown = "sluice_auth_failures_total{reason=\"unknown_key\"}";
    let msg = || body(json!({"userId":"u","event":"E"}));
    let cases: Vec<(Option<&str>, Vec<u8>, &str)> = vec![
        (None, msg(), "missing_write_key"),
        (Some("nope"), msg(), "invalid_write_key"),
        (Some("web-revoked"), msg(), "invalid_write_key"),
        (Some("web-expired"), msg(), "invalid_write_key"),
        (Some("off-key"), msg(), "invalid_write_key"),
        (
            None,
            body(json!({"writeKey":"nope","userId":"u","event":"E"})),
            "invalid_write_key",
        ),
        (
            None,
            body(json!({"writeKey":"","userId":"u","event":"E"})),
            "missing_write_key",
        ),
        (
            None,
            body(json!({"writeKey":7,"userId":"u","event":"E"})),
            "invalid_write_key",
        ),
        (
            Some("web-key"),
            body(json!({"writeKey":"server-key","userId":"u","event":"E"})),
            "write_key_mismatch",
        ),
    ];
    for (auth, b, code) in cases {
        let (status, reply) = post(&server, "/v1/track", auth, b).await;
        assert_eq!(status, 401, "{code}");
        assert_eq!(reply["code"], code);
        assert_eq!(reply["success"], false);
        assert!(reply["message"].is_string() && reply["error"] == reply["message"]);
    }
    let r = client()
        .post(server.url("/v1/track"))
        .header("authorization", "Basic !!notbase64")
        .body(msg())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "invalid_authorization"
    );
    assert!(server.stored().is_empty());
    let m = server.metrics().await;
    assert!(metric(&m, unknown) - metric(&before, unknown) >= 2.0);
    assert!(metric(&m, revoked) - metric(&before, revoked) >= 1.0);
}

#[tokio::test]
async fn malformed_bodies_get_clear_4xx_errors() {
    let server = TestServer::start_with(common::CATALOG, |c| {
        c.limits.max_batch_items = 3;
        c.limits.max_request_bytes = 40_000;
    });
    let big = "x".repeat(33_000);
    let deep = format!("{}{}", "[".repeat(80), "]".repeat(80));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v1/batch", b"{not json".to_vec(), 400, "invalid_json"),
        ("/v1/batch", Vec::new(), 400, "invalid_json"),
        ("/v1/batch", b"[1,2]".to_vec(), 400, "invalid_body"),
        (
            "/v1/batch",
            format!("{{\"batch\":{deep}}}").into_bytes(),
            400,
            "json_too_deep",
        ),
        (
            "/v1/batch",
            body(json!({"writeKey":"web-key"})),
            400,
            "missing_batch",
        ),
        ("/v1/batch", body(json!({"batch":{}})), 400, "invalid_batch"),
        (
            "/v1/batch",
            body(json!({"batch":[{},{},{},{}]})),
            400,
            "batch_too_many_items",
        ),
        (
            "/v1/batch",
            format!("{{\"batch\":[],\"pad\":\"{}\"}}", "y".repeat(41_000)).into_bytes(),
            413,
            "request_too_large",
        ),
        (
            "/v1/track",
            body(json!({"userId":"u","event":big})),
            413,
            "message_too_large",
        ),
        (
            "/v1/track",
            body(json!({"event":"E"})),
            400,
            "missing_user_id",
        ),
        (
            "/v1/track",
            body(json!({"userId":"u"})),
            400,
            "missing_event",
        ),
        (
            "/v1/group",
            body(json!({"userId":"u"})),
            400,
            "missing_group_id",
        ),
        (
            "/v1/alias",
            body(json!({"userId":"u"})),
            400,
            "missing_previous_id",
        ),
        (
            "/v1/page",
            body(json!({"userId":"u","messageId":"m".repeat(101)})),
            400,
            "message_id_too_long",
        ),
        (
            "/v1/identify",
            body(json!({"userId":"u","traits":"no"})),
            400,
            "field_not_object",
        ),
    ];
    for (path, b, status, code) in cases {
        let (s, reply) = post(&server, path, Some("web-key"), b).await;
        assert_eq!(
            (s.as_u16(), reply["code"].as_str()),
            (status, Some(code)),
            "{path} {code}"
        );
    }
    assert!(server.stored().is_empty());

    let c = client();
    let auth = basic("web-key");
    let encoded = |encoding| {
        [
            ("authorization", auth.as_str()),
            ("content-encoding", encoding),
        ]
    };
    let r = post_with(&server, "/v1/track", &encoded("br"), "x").await;
    assert_eq!(r.status(), 415);
    let r = post_with(&server, "/v1/track", &encoded("gzip"), "not gzip").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "invalid_gzip"
    );
    // A gzip bomb: tiny on the wire, over the limit once inflated.
    let bomb = gzip(&vec![b' '; 5_000_000]);
    let r = post_with(&server, "/v1/batch", &encoded("gzip"), bomb).await;
    assert_eq!(r.status(), 413);

    let r = c.get(server.url("/v1/track")).send().await.expect("send");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST, OPTIONS");
    let r = c
        .post(server.url("/v2/nothing"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "not_found");
}

#[tokio::test]
async fn a_batch_keeps_its_valid_items_and_lists_the_rest() {
    let server = TestServer::start_with(&common::catalog_with("batchy"), |_| {});
    let batch = json!({"batch":[
        {"type":"track","userId":"u","event":"Good"},
        {"type":"track","userId":"u"},
        {"type":"weird","userId":"u"},
        {"userId":"u"},
        "not an object",
        {"type":"identify","anonymousId":"a","traits":{"x":1}},
    ]});
    let (status, reply) = post(&server, "/v1/batch", Some("batchy-key"), body(batch)).await;
    assert_eq!(status, 200);
    assert_eq!(reply["success"], true);
    let codes: Vec<(u64, &str)> = reply["rejected"]
        .as_array()
        .expect("rejected list")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap_or(99),
                r["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (1, "missing_event"),
            (2, "invalid_type"),
            (3, "missing_type"),
            (4, "invalid_message")
        ]
    );
    let stored = server.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["event"]["event"], "Good");
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "sluice_events_accepted_total{source=\"batchy\"}"),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "sluice_events_rejected_total{source=\"batchy\",reason=\"missing_event\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn gzip_by_header_or_by_magic_bytes() {
    let server = TestServer::start();
    let batch = body(
        json!({"writeKey":"web-key","batch":[{"type":"track","userId":"u","event":"Zipped"}]}),
    );
    let r = post_with(
        &server,
        "/v1/batch",
        &[("content-encoding", "gzip")],
        gzip(&batch),
    )
    .await;
    assert_eq!(r.status(), 200);
    // RudderStack's node SDK labels gzip'd JSON as form data: found by its magic bytes.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = post_with(&server, "/v1/batch", &form, gzip(&batch)).await;
    assert_eq!(r.status(), 200);
    // Browsers send text/plain.
    let plain = body(json!({"writeKey":"web-key","userId":"u","event":"Plain"}));
    let r = post_with(&server, "/v1/t", &[("content-type", "text/plain")], plain).await;
    assert_eq!(r.status(), 200);
    let events: Vec<String> = server
        .stored()
        .iter()
        .map(|r| r["event"]["event"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(events, ["Zipped", "Zipped", "Plain"]);
}

#[tokio::test]
async fn cors_preflight_and_origin_echo() {
    let server = TestServer::start();
    let c = client();
    let r = c
        .request(reqwest::Method::OPTIONS, server.url("/v1/t"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, x-retry-count",
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    for needed in ["content-type", "authorization", "x-retry-count"] {
        assert!(allowed.contains(needed), "{allowed}");
    }
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    let r = c
        .post(server.url("/v1/t"))
        .header("origin", "https://shop.example")
        .body(body(json!({"writeKey":"nope","userId":"u","event":"E"})))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_headers() {
    let server = TestServer::start();
    let msg = || body(json!({"userId":"u","event":"E"}));
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..5 {
        let r = client()
            .post(server.url("/v1/track"))
            .header("authorization", basic("limited-key"))
            .body(msg())
            .send()
            .await
            .expect("send");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            limited = Some(r);
        }
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    let r = limited.expect("a 429");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!((1..=2).contains(&retry));
    assert_eq!(r.headers()["x-ratelimit-reset"], r.headers()["retry-after"]);
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "rate_limited"
    );
    // Other sources are not affected.
    let (s, _) = post(&server, "/v1/track", Some("web-key"), msg()).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn client_metrics_health_ready_and_metrics() {
    let server = TestServer::start();
    let c = client();
    let r = c
        .post(server.url("/v1/m"))
        .header("content-type", "text/plain")
        .body(
            r#"{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,"tags":{}}]}"#,
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    for url in [server.url("/health"), server.admin_url("/health")] {
        assert_eq!(c.get(&url).send().await.expect("send").status(), 200);
    }
    for url in [server.url("/ready"), server.admin_url("/ready")] {
        let r = c.get(&url).send().await.expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.expect("json")["ready"], true);
    }
    let (s, _) = post(
        &server,
        "/v1/track",
        Some("web-key"),
        body(json!({"userId":"u","event":"E"})),
    )
    .await;
    assert_eq!(s, 200);
    let m = server.metrics().await;
    // Process-wide series: at least this test's payload (other tests may add theirs).
    assert!(metric(&m, "sluice_client_metrics_total") >= 1.0);
    for family in [
        "sluice_http_requests_total",
        "sluice_http_request_duration_seconds_bucket",
        "sluice_log_append_duration_seconds_bucket",
        "sluice_log_appended_bytes_total",
        "sluice_catalog_version",
        "sluice_events_received_total",
        "sluice_http_request_body_bytes_total",
    ] {
        assert!(m.contains(family), "missing {family}");
    }
    assert!(
        metric(
            &m,
            "sluice_http_requests_total{route=\"/v1/track\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(server.stored().iter().all(|r| r.get("writeKey").is_none()));
}

#[tokio::test]
async fn duplicates_by_message_id_are_acknowledged_but_stored_once() {
    let server = TestServer::start_with(&common::catalog_with("dedupy"), |_| {});
    let msg = json!({"userId":"u","event":"E","messageId":"dup-1"});
    for _ in 0..3 {
        let (s, _) = post(&server, "/v1/track", Some("dedupy-key"), body(msg.clone())).await;
        assert_eq!(s, 200);
    }
    // The same id from another source is another event.
    let (s, _) = post(&server, "/v1/track", Some("server-key"), body(msg.clone())).await;
    assert_eq!(s, 200);
    // Twice inside one batch.
    let batch = json!({"batch":[
        {"type":"track","userId":"u","event":"E","messageId":"dup-2"},
        {"type":"track","userId":"u","event":"E","messageId":"dup-2"}]});
    let (s, _) = post(&server, "/v1/batch", Some("dedupy-key"), body(batch)).await;
    assert_eq!(s, 200);
    let ids: Vec<(String, String)> = server
        .stored()
        .iter()
        .map(|r| {
            (
                r["sourceId"].as_str().unwrap_or("").to_owned(),
                r["event"]["messageId"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("dedupy", "dup-1"),
            ("server", "dup-1"),
            ("dedupy", "dup-2")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "sluice_events_deduplicated_total{source=\"dedupy\"}"),
        3.0
    );
}

#[tokio::test]
async fn client_ip_from_peer_or_trusted_proxy() {
    let server = TestServer::start_with(common::CATALOG, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    });
    let r = client()
        .post(server.url("/v1/track"))
        .header("authorization", basic("web-key"))
        .header("x-forwarded-for", "198.51.100.7, 127.0.0.1")
        .body(body(json!({"userId":"u","event":"E"})))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let (s, _) = post(
        &server,
        "/v1/track",
        Some("web-key"),
        body(json!({"userId":"u","event":"E","context":{"ip":"192.0.2.1"}})),
    )
    .await;
    assert_eq!(s, 200);
    let stored = server.stored();
    assert_eq!(stored[0]["event"]["context"]["ip"], "198.51.100.7");
    assert_eq!(
        stored[1]["event"]["context"]["ip"], "192.0.2.1",
        "client's own ip is kept"
    );

    let untrusting = TestServer::start();
    let r = client()
        .post(untrusting.url("/v1/track"))
        .header("authorization", basic("web-key"))
        .header("x-forwarded-for", "198.51.100.7")
        .body(body(json!({"userId":"u","event":"E"})))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        untrusting.stored()[0]["event"]["context"]["ip"],
        "127.0.0.1"
    );
}

#[tokio::test]
async fn a_full_log_answers_503_and_keeps_what_it_has() {
    let server = TestServer::start_with(common::CATALOG, |c| {
        c.log.max_bytes = 4_000;
        c.log.segment_bytes = 4_096;
    });
    let msg = || body(json!({"userId":"u","event":"E","properties":{"pad":"p".repeat(500)}}));
    let mut accepted = 0;
    let mut full = None;
    for _ in 0..20 {
        let r = client()
            .post(server.url("/v1/track"))
            .header("authorization", basic("web-key"))
            .body(msg())
            .send()
            .await
            .expect("send");
        match r.status().as_u16() {
            200 => accepted += 1,
            503 => {
                full = Some(r);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let r = full.expect("the log filled up");
    assert_eq!(r.headers()["retry-after"], "30");
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "log_full");
    assert!(accepted > 0);
    assert_eq!(server.stored().len(), accepted);
    let ready = client()
        .get(server.admin_url("/ready"))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), 503, "not ready above the high-water mark");
}

#[tokio::test]
async fn a_slow_body_times_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(common::CATALOG, |c| c.server.body_timeout_ms = 300);
    let mut s = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    s.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nAuthorization: Basic d2ViLWtleTo=\r\n\r\n{\"userId\":")
        .await
        .expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"));
}

#[tokio::test]
async fn cdn_settings_point_the_browser_sdk_back_here() {
    let server = TestServer::start();
    let r = client()
        .get(server.url("/v1/projects/web-key/settings"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let body: Value = r.json().await.expect("json");
    let segment = &body["integrations"]["Segment.io"];
    assert_eq!(segment["apiKey"], "web-key");
    assert_eq!(segment["apiHost"], format!("{}/v1", server.addr));
    assert_eq!(segment["protocol"], "http");
    for key in ["nope", "web-revoked", "off-key"] {
        let r = client()
            .get(server.url(&format!("/v1/projects/{key}/settings")))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401, "{key}");
    }
}
