//! Usage and monthly quotas end to end, on SQLite and PostgreSQL: events counted at the
//! edge (accepted, refused, violating) and booked in the store within a second or two;
//! quotas set by owners only, enforced at the edge with `429 quota_exceeded` and
//! `Retry-After` to the next month, kept across a restart, summed across gateways, and
//! starting over when the control plane's (injected) clock reaches the next month.

mod common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::control::{Api, audited, chain_holds, server, server_with, track, until};
use common::databases::{self, TestDb};
use common::{TestServer, basic, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::clock::Clock;
use sluice::config::{CatalogSourceKind, Secret};

const KEY: &str = "demo-write-key";

async fn usage(api: &Api, token: &str, query: &str) -> Value {
    let (status, body) = api.get(token, &format!("/api/v1/usage{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["usage"].clone()
}

/// Polls `/usage` until the workspace's total is `want` (accepted, refused, violating).
async fn booked(api: &Api, token: &str, want: (u64, u64, u64)) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = usage(api, token, "").await;
        let total = &u["total"];
        let got = (
            total["accepted"].as_u64().unwrap_or(0),
            total["refused"].as_u64().unwrap_or(0),
            total["violating"].as_u64().unwrap_or(0),
        );
        if got == want {
            return u;
        }
        assert!(
            Instant::now() < deadline,
            "usage {got:?}, want {want:?}: {u}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn quota(api: &Api, token: &str, path: &str, events: Value) -> (StatusCode, Value) {
    api.call(
        token,
        Method::PUT,
        path,
        Some(json!({"monthlyEvents": events})),
    )
    .await
}

async fn batch(server: &TestServer, items: Value) -> StatusCode {
    client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic(KEY))
        .json(&json!({ "batch": items }))
        .send()
        .await
        .expect("batch")
        .status()
}

/// A refused track call: its code and `Retry-After`.
async fn refusal(server: &TestServer) -> (String, u64) {
    let response = client()
        .post(server.url("/v1/track"))
        .header("authorization", basic(KEY))
        .json(&json!({"event": "Signed Up", "userId": "u1"}))
        .send()
        .await
        .expect("track");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    let body: Value = response.json().await.expect("json");
    (body["code"].as_str().unwrap_or_default().to_owned(), retry)
}

fn seconds_to_next_month() -> u64 {
    let now = chrono::Utc::now();
    u64::try_from((sluice::usage::next_period(now) - now).num_seconds()).unwrap_or(0)
}

/// `(accepted, refused, violating)` a batch of one order adds, from its answer: blocked
/// (its plan live) or accepted (not yet).
async fn order(server: &TestServer, total: Value) -> (u64, u64, u64) {
    let response = client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic(KEY))
        .json(
            &json!({"batch": [{"type": "track", "userId": "u", "event": "Order Completed",
                                 "properties": {"total": total}}]}),
        )
        .send()
        .await
        .expect("batch");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    match body["blocked"].as_u64().unwrap_or(0) {
        0 => (1, 0, 0),
        _ => (0, 1, 1),
    }
}

fn add(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2)
}

async fn scenario(db: &TestDb) {
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, _) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;

    // A plan that blocks an order whose total is not a number, enforced on `demo`.
    let (status, body) = api
        .post(&owner, "/api/v1/tracking-plans", json!({"name": "Web"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan")
        .to_owned();
    let rule = json!({"type": "TRACK", "key": "Order Completed", "version": 1, "jsonSchema": {
        "type": "object",
        "properties": {"properties": {"type": "object", "properties": {"total": {"type": "number"}}}},
    }});
    // `track` sends "Signed Up": planned, so it is accepted under `block`.
    let signed_up = json!({"type": "TRACK", "key": "Signed Up", "version": 1,
                           "jsonSchema": {"type": "object"}});
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/tracking-plans/{plan}/rules"),
            Some(json!({"rules": [rule, signed_up]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"trackingPlanId": plan, "enforcement": "block"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut want = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let one = order(&server, json!("ten")).await;
        want = add(want, one);
        if one.1 == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plan never reached the gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Three accepted; a batch of one good, one invalid (no user) and one blocked item.
    for n in 0..3 {
        assert_eq!(track(&server, KEY, &format!("t-{n}")).await, StatusCode::OK);
    }
    let status = batch(
        &server,
        json!([
            {"type": "track", "userId": "u", "event": "Order Completed", "properties": {"total": 3}},
            {"type": "track", "event": "Order Completed"},
            {"type": "track", "userId": "u", "event": "Order Completed", "properties": {"total": "x"}},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    want = add(want, (4, 2, 1));
    let u = booked(&api, &owner, want).await;
    let demo = u["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sourceId"] == "demo"))
        .cloned()
        .expect("demo's row");
    assert_eq!(demo["accepted"], json!(want.0), "{u}");
    assert_eq!(demo["days"].as_array().map(Vec::len), Some(1), "{u}");
    assert_eq!(demo["days"][0]["refused"], json!(want.1), "{u}");
    assert_eq!(
        u["period"],
        json!(chrono::Utc::now().format("%Y-%m").to_string())
    );
    // The last hour, a minute at a time, holds the same counts (booked the same way):
    // 60 minutes, oldest first, this minute (or the one before) with the events.
    let (status, body) = api.get(&owner, "/api/v1/sources/demo/usage/recent").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recent = &body["data"];
    assert_eq!(
        recent["minutes"].as_array().map(Vec::len),
        Some(60),
        "{recent}"
    );
    assert_eq!(
        (
            &recent["accepted"],
            &recent["refused"],
            &recent["violating"]
        ),
        (&json!(want.0), &json!(want.1), &json!(want.2)),
        "{recent}"
    );
    let minutes: u64 = recent["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .map(|m| m["accepted"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(minutes, want.0, "the minutes add up to the hour");
    let (status, _) = api.get(&owner, "/api/v1/sources/nope/usage/recent").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Everyone in the workspace sees the totals; an earlier month is empty.
    assert_eq!(usage(&api, &member, "").await["total"], u["total"]);
    let old = usage(&api, &owner, "?period=2020-02").await;
    assert_eq!(old["total"]["accepted"], json!(0), "{old}");
    let (status, _) = api.get(&owner, "/api/v1/usage?period=2020-13").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Quotas are owners' alone; a missing source is 404; nonsense is 400.
    for token in [&admin, &member] {
        let (status, body) = quota(&api, token, "/api/v1/usage/quota", json!(10)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = quota(&api, token, "/api/v1/sources/demo/quota", json!(10)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, _) = quota(&api, &owner, "/api/v1/sources/nope/quota", json!(10)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [json!(-1), json!(2_000_000_000_000u64), json!("10")] {
        let (status, body) = quota(&api, &owner, "/api/v1/usage/quota", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, _) = api
        .call(&owner, Method::PUT, "/api/v1/usage/quota", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Room for two more events on the source: the edge refuses within a second or so.
    let (status, body) = quota(
        &api,
        &owner,
        "/api/v1/sources/demo/quota",
        json!(want.0 + 2),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["quota"]["pool"], "source:demo");
    let took = until(&server, KEY, StatusCode::TOO_MANY_REQUESTS).await;
    eprintln!("source quota enforced {took:?} after it was set");
    let (code, retry) = refusal(&server).await;
    assert_eq!(code, "quota_exceeded");
    let expected = seconds_to_next_month();
    assert!(
        retry.abs_diff(expected) <= 5,
        "Retry-After {retry}, next month in {expected}"
    );
    let u = usage(&api, &owner, "").await;
    assert_eq!(
        u["sources"][0]["monthlyEventQuota"],
        json!(want.0 + 2),
        "{u}"
    );

    // Source quota off, workspace quota at what is used: refused again, by the workspace.
    let (status, _) = quota(&api, &owner, "/api/v1/sources/demo/quota", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    until(&server, KEY, StatusCode::OK).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let used = loop {
        // Every event sent so far booked: the quota is set at exactly that.
        let total = usage(&api, &owner, "").await["total"]["accepted"]
            .as_u64()
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let again = usage(&api, &owner, "").await["total"]["accepted"]
            .as_u64()
            .unwrap_or(0);
        if total == again {
            break total;
        }
        assert!(Instant::now() < deadline, "usage never settled");
    };
    let (status, _) = quota(&api, &owner, "/api/v1/usage/quota", json!(used)).await;
    assert_eq!(status, StatusCode::OK);
    until(&server, KEY, StatusCode::TOO_MANY_REQUESTS).await;
    let u = usage(&api, &owner, "").await;
    assert_eq!(u["monthlyEventQuota"], json!(used), "{u}");

    // A restart keeps the count: the first request after it is refused.
    let (dir, config) = server.stop();
    let server = TestServer::start_in(dir, config);
    let api = Api::of(&server);
    let (code, _) = refusal(&server).await;
    assert_eq!(code, "quota_exceeded");
    let (status, _) = quota(&api, &owner, "/api/v1/usage/quota", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    until(&server, KEY, StatusCode::OK).await;

    let events = audited(&api, &owner, &["quota.update"]).await;
    let changes = events
        .iter()
        .filter(|e| e["type"] == "quota.update")
        .count();
    assert_eq!(changes, 4, "each quota change audited once");
    chain_holds(db).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_quotas_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_quotas_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}

/// A node credential of `role` named `name`.
async fn node(api: &Api, owner: &str, name: &str, role: &str) -> String {
    let (status, body) = api
        .post(
            owner,
            "/api/v1/nodes",
            json!({"name": name, "role": role, "expiresInDays": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["secret"].as_str().expect("secret").to_owned()
}

/// A gateway in its own process, following `api`'s control plane as `name`.
fn edge(api: &Api, name: &str, node: String) -> TestServer {
    let url = api.base.clone();
    let name = name.to_owned();
    TestServer::start_with("", move |config| {
        config.catalog.source = CatalogSourceKind::Remote;
        config.catalog.control_url = url;
        config.catalog.node_token = Secret::new(node);
        config.catalog.node_name = name;
    })
}

/// Only gateways report; a report resent is booked once; two remote gateways draw on
/// one workspace quota and both refuse at it; the month turning over (the control
/// plane's clock moved to the next one) starts the quota over, and the old month keeps
/// its counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_a_quota_and_the_month_turns() {
    let db = databases::sqlite().await;
    let clock = Clock::adjustable();
    let shared = clock.clone();
    let (control, link) = server_with(&db, move |c| c.control.clock = shared).await;
    let api = Api::of(&control);
    let setup = api.owner(&link).await;
    // The setup token may expire before the month turns: a year-long one.
    let (status, body) = api
        .post(
            &setup,
            "/api/v1/tokens",
            json!({"name": "usage", "scopes": ["workspace:read", "workspace:write", "sources:read"],
                   "expiresInDays": 365}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let owner = body["data"]["secret"].as_str().expect("secret").to_owned();
    let first = node(&api, &setup, "edge-1", "gateway").await;
    let second = node(&api, &setup, "edge-2", "gateway").await;
    let courier = node(&api, &setup, "courier", "delivery").await;

    // Only a gateway's credential reports usage: a person's token is not a node's, a
    // delivery worker's may not.
    let report = json!({"instance": "replayed", "seq": 1,
                        "sources": {"demo": {"accepted": 5, "refused": 1, "violating": 0}}});
    let path = "/internal/v1/usage?gateway=probe";
    let (status, _) = api
        .call(&owner, Method::POST, path, Some(report.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .call(&courier, Method::POST, path, Some(report.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .call(
            &first,
            Method::POST,
            path,
            Some(json!({"instance": "x", "seq": 1, "sources": {}, "extra": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Counts from a node are bounded: a report claiming more is refused, not summed.
    let huge = json!({"instance": "x", "seq": 1,
                      "sources": {"demo": {"accepted": 1_000_000_000_001_u64, "refused": 0,
                                           "violating": 0}}});
    let (status, body) = api.call(&first, Method::POST, path, Some(huge)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "sources.demo", "{body}");
    // The same report twice (its first answer lost): booked once.
    for _ in 0..2 {
        let (status, body) = api
            .call(&first, Method::POST, path, Some(report.clone()))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["used"]["source:demo"], json!(5), "{body}");
    }
    booked(&api, &owner, (5, 1, 0)).await;

    // Two gateways in their own processes: each one's events are booked.
    let edges = [edge(&api, "edge-1", first), edge(&api, "edge-2", second)];
    for (n, edge) in edges.iter().enumerate() {
        for m in 0..3 {
            assert_eq!(track(edge, KEY, &format!("e{n}-{m}")).await, StatusCode::OK);
        }
    }
    booked(&api, &owner, (11, 1, 0)).await;

    // A workspace quota at what is used: both refuse, with the next month in Retry-After.
    let (status, body) = quota(&api, &owner, "/api/v1/usage/quota", json!(11)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for edge in &edges {
        until(edge, KEY, StatusCode::TOO_MANY_REQUESTS).await;
        let (code, _) = refusal(edge).await;
        assert_eq!(code, "quota_exceeded");
    }

    // The next month: both admit again; the old month keeps its books.
    let old = sluice::usage::period_of(clock.now());
    let turn = sluice::usage::next_period(clock.now()) - clock.now();
    clock.advance(turn + TimeDelta::hours(1));
    for edge in &edges {
        until(edge, KEY, StatusCode::OK).await;
    }
    let before = usage(&api, &owner, &format!("?period={old}")).await;
    assert_eq!(before["total"]["accepted"], json!(11), "{before}");
    let now = usage(&api, &owner, "").await;
    assert_eq!(
        now["period"],
        json!(sluice::usage::period_of(clock.now())),
        "{now}"
    );
    assert_eq!(now["monthlyEventQuota"], json!(11), "{now}");
    for edge in edges {
        edge.stop();
    }
    control.stop();
    db.finish().await;
}
