//! Just-in-time elevation end to end, on SQLite and PostgreSQL, with the control plane's
//! clock moved by the test (no sleeps): asked with a reason and a duration, approved by
//! someone who holds the level, live in its window only, named by explanations and by
//! every audit event of its holder meanwhile, ended early or denied. Every refusal path.

mod common;

use chrono::TimeDelta;
use common::control::{Api, audited, chain_holds, server_with};
use common::databases::{self, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::clock::Clock;

async fn ask(api: &Api, token: &str, body: Value) -> (StatusCode, Value) {
    api.post(token, "/api/v1/elevations", body).await
}

async fn act(api: &Api, token: &str, id: &str, verb: &str, body: Value) -> (StatusCode, Value) {
    api.post(token, &format!("/api/v1/elevations/{id}/{verb}"), body)
        .await
}

fn id_of(body: &Value) -> String {
    body["data"]["elevation"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an elevation: {body}"))
        .to_owned()
}

fn full_on_demo(minutes: u32) -> Value {
    json!({"resource": {"kind": "source", "id": "demo"}, "level": "full",
           "reason": "rotate the demo key after the incident", "durationMinutes": minutes})
}

async fn add_key(api: &Api, token: &str) -> StatusCode {
    api.post(token, "/api/v1/sources/demo/writekey", json!({}))
        .await
        .0
}

async fn scenario(db: &TestDb) {
    let clock = Clock::adjustable();
    let shared = clock.clone();
    let (server, link) = server_with(db, move |c| c.control.clock = shared).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (other, other_id) = api
        .invited(&owner, &server, "other@example.com", "member")
        .await;
    let (viewer, _) = api
        .invited(&owner, &server, "viewer@example.com", "read_only")
        .await;

    // Refused when asked: too long, owner, nothing or both, what one has, a source that
    // does not exist or is hidden (answered alike).
    let (status, body) = ask(&api, &member, full_on_demo(481)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "past elevationMaxMinutes: {body}"
    );
    assert_eq!(body["errors"][0]["field"], "durationMinutes");
    let (status, body) = ask(
        &api,
        &member,
        json!({"role": "owner", "reason": "x", "durationMinutes": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = ask(&api, &member, json!({"reason": "x", "durationMinutes": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = ask(
        &api,
        &admin,
        json!({"role": "admin", "reason": "x", "durationMinutes": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let mut missing = full_on_demo(30);
    missing["resource"]["id"] = json!("nope");
    let (status, missing_body) = ask(&api, &member, missing).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing_body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/grants",
            json!({"principal": {"type": "user", "id": other_id},
                   "resource": {"kind": "source", "id": "demo"}, "level": "no_access"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, hidden_body) = ask(&api, &other, full_on_demo(30)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{hidden_body}");
    assert_eq!(
        hidden_body["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace("demo", "nope")),
        missing_body["errors"][0]["message"]
            .as_str()
            .map(str::to_owned),
        "a hidden source answers as a missing one"
    );

    // Asked; pending gives nothing.
    let (status, body) = ask(&api, &member, full_on_demo(60)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["elevation"]["status"], "PENDING");
    let elevation = id_of(&body);
    assert_eq!(add_key(&api, &member).await, StatusCode::FORBIDDEN);

    // Who may not approve: the requester, a read-only user, another member (read_write
    // only); and a hidden one answers 404 to those who may not see it.
    let (status, body) = act(&api, &member, &elevation, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("own_request"), "{body}");
    let (status, body) = act(&api, &viewer, &elevation, "approve", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not theirs to see: {body}");
    let (status, body) = act(&api, &other, &elevation, "approve", json!({})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "demo is hidden from them: {body}"
    );
    let (status, body) = api
        .get(&viewer, &format!("/api/v1/elevations/{elevation}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The admin (full on every source) approves: live now, for an hour.
    let (status, body) = act(
        &api,
        &admin,
        &elevation,
        "approve",
        json!({"comment": "ok for the incident"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["elevation"]["status"], "ACTIVE");
    assert_eq!(add_key(&api, &member).await, StatusCode::OK);
    // The explanation names it, and so does the audit event of the use.
    let (_, body) = api
        .get(
            &member,
            "/api/v1/access/explain?action=manage_write_keys&resourceType=source&resourceId=demo",
        )
        .await;
    assert_eq!(body["data"]["allowed"], true, "{body}");
    assert!(
        body.to_string().contains(&format!("elevation:{elevation}")),
        "{body}"
    );
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?action=source.writekey.create")
        .await;
    let used = &body["data"]["events"][0];
    assert_eq!(used["actor"], member_id.as_str());
    assert_eq!(
        used["actorDetail"]["elevations"],
        json!([elevation]),
        "{used}"
    );

    // After its window it counts for nothing, by itself.
    clock.advance(TimeDelta::minutes(61));
    assert_eq!(add_key(&api, &member).await, StatusCode::FORBIDDEN);
    let (_, body) = api
        .get(&member, &format!("/api/v1/elevations/{elevation}"))
        .await;
    assert_eq!(body["data"]["elevation"]["status"], "EXPIRED");
    let (status, body) = act(&api, &member, &elevation, "end", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing left to end: {body}");

    // A role, approved by an owner only (a member holds no admin role), ended early by
    // its requester.
    let (status, body) = ask(
        &api,
        &member,
        json!({"role": "admin", "reason": "quarterly access review", "durationMinutes": 30}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let role = id_of(&body);
    let (status, body) = act(&api, &other, &role, "approve", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = api.get(&member, "/api/v1/audit-events").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = act(&api, &admin, &role, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.get(&member, "/api/v1/audit-events").await;
    assert_eq!(status, StatusCode::OK, "an admin for 30 minutes");
    let (_, body) = api
        .get(&member, "/api/v1/access/explain?action=read_audit")
        .await;
    assert!(
        body.to_string().contains("\"rule\":\"elevation\""),
        "{body}"
    );
    let (status, body) = act(&api, &member, &role, "end", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["elevation"]["status"], "ENDED");
    let (status, _) = api.get(&member, "/api/v1/audit-events").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Denied with a reason (required), and then not approvable.
    let (status, body) = ask(
        &api,
        &member,
        json!({"role": "admin", "reason": "curious", "durationMinutes": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let denied = id_of(&body);
    let (status, body) = act(&api, &admin, &denied, "deny", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = act(
        &api,
        &admin,
        &denied,
        "deny",
        json!({"comment": "not without a ticket"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["elevation"]["status"], "DENIED");
    let (status, body) = act(&api, &owner, &denied, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // An elevated admin decides access on their standing role only: they cannot pass
    // the elevation on, nor make it permanent.
    let (status, body) = ask(
        &api,
        &member,
        json!({"role": "admin", "reason": "migration", "durationMinutes": 30}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lent = id_of(&body);
    let (status, body) = act(&api, &owner, &lent, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = ask(
        &api,
        &other,
        json!({"role": "admin", "reason": "me too", "durationMinutes": 30}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = id_of(&body);
    let (status, body) = act(&api, &member, &second, "approve", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .call(
            &member,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{member_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Removed, they keep nothing: the elevation ends with their membership.
    let (status, body) = api
        .call(
            &owner,
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{other_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = act(&api, &owner, &second, "approve", json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "cancelled with their membership: {body}"
    );
    let (_, body) = api
        .get(&owner, &format!("/api/v1/elevations/{second}"))
        .await;
    assert_eq!(body["data"]["elevation"]["status"], "CANCELLED", "{body}");
    let (status, body) = act(&api, &member, &lent, "end", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A label an elevation asks for carries access: a member cannot put it on another
    // source to stretch the elevation there.
    let (status, body) = ask(
        &api,
        &member,
        json!({"resource": {"kind": "source_label", "key": "environment", "value": "staging"},
               "level": "full", "reason": "staging cleanup", "durationMinutes": 30}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            &member,
            "/api/v1/sources/demo/labels",
            json!({"labels": [{"key": "environment", "value": "staging"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a governed label: {body}");
    let (status, body) = api
        .post(
            &member,
            "/api/v1/sources/demo/labels",
            json!({"labels": [{"key": "team", "value": "growth"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "an ordinary label: {body}");

    // Lists: one's own; everything for those who manage members.
    let (_, body) = api.get(&viewer, "/api/v1/elevations").await;
    assert_eq!(body["data"]["elevations"], json!([]), "{body}");
    let (_, body) = api
        .get(&member, "/api/v1/elevations?pagination[count]=50")
        .await;
    assert_eq!(body["data"]["elevations"].as_array().map(Vec::len), Some(5));
    let (_, body) = api
        .get(&admin, &format!("/api/v1/elevations?userId={member_id}"))
        .await;
    assert_eq!(body["data"]["elevations"].as_array().map(Vec::len), Some(5));

    // Audited, and the chain holds.
    audited(
        &api,
        &owner,
        &[
            "elevation.request",
            "elevation.approve",
            "elevation.deny",
            "elevation.end",
            "access.denied.approve_elevation",
        ],
    )
    .await;
    chain_holds(db).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevations_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevations_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}
