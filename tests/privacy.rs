//! Suppression (Segment's Deletion & Suppression API, `SUPPRESS_ONLY` and `UNSUPPRESS`)
//! end to end through `sluice serve` on each database: a regulation made through the API
//! stops the user's events at the gateway within a second (acknowledged, never stored),
//! workspace-wide or in one source, for string and numeric user ids, in batches too;
//! lifting it (UNSUPPRESS, or deleting the regulation) lets them in again; who may do
//! what follows the policy; a remote gateway follows the list too.

mod common;

use std::time::{Duration, Instant};

use common::control::{Api, error_type, server};
use common::databases::{self, TestDb};
use common::{TestServer, basic, client, metric};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::config::{CatalogSourceKind, Secret};

/// Sends one track event as `user` (a JSON value: string, number or absent) with `key`.
async fn send(server: &TestServer, key: &str, user: Value, id: &str) -> StatusCode {
    let mut event = json!({"event": "Viewed", "messageId": id, "anonymousId": "anon"});
    if !user.is_null() {
        event["userId"] = user;
    }
    client()
        .post(server.url("/v1/track"))
        .header("authorization", basic(key))
        .json(&event)
        .send()
        .await
        .expect("track")
        .status()
}

/// The messageIds stored so far.
fn stored_ids(server: &TestServer) -> Vec<String> {
    server
        .stored()
        .iter()
        .filter_map(|r| r["event"]["messageId"].as_str().map(str::to_owned))
        .collect()
}

/// Sends events as `user` until one is (`want` true) or is not stored; how long it took.
async fn until_stored(server: &TestServer, key: &str, user: Value, want: bool) -> Duration {
    let start = Instant::now();
    for n in 0.. {
        let id = format!("probe-{n}-{}", uuid::Uuid::new_v4());
        assert_eq!(send(server, key, user.clone(), &id).await, StatusCode::OK);
        if stored_ids(server).contains(&id) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{user}: stored is still {} after 5 s",
            !want
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unreachable!()
}

/// [`until_stored`], which must take effect within a second; how long it took.
async fn within_a_second(server: &TestServer, key: &str, user: Value, want: bool) -> Duration {
    let took = until_stored(server, key, user.clone(), want).await;
    assert!(
        took < Duration::from_secs(1),
        "{user}: stored = {want} only after {took:?}"
    );
    took
}

async fn regulate(
    api: &Api,
    token: &str,
    path: &str,
    kind: &str,
    ids: Value,
) -> (StatusCode, Value) {
    api.post(
        token,
        path,
        json!({"regulationType": kind, "subjectType": "USER_ID", "subjectIds": ids}),
    )
    .await
}

/// [`regulate`], which must succeed: its answer.
async fn regulated(api: &Api, token: &str, path: &str, kind: &str, ids: Value) -> Value {
    let (status, body) = regulate(api, token, path, kind, ids).await;
    assert_eq!(status, StatusCode::OK, "{path} {kind}: {body}");
    body
}

async fn scenario(db: TestDb) {
    let label = db.label;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let demo = "demo-write-key";
    let app = api.new_source(&owner, &server, "app").await;

    // Workspace-wide: a string id and a numeric one.
    let body = regulated(
        &api,
        &owner,
        "/api/v1/regulations",
        "SUPPRESS_ONLY",
        json!(["u-gone", "42", "u-gone"]),
    )
    .await;
    let workspace_reg = body["data"]["regulateId"].as_str().expect("id").to_owned();
    let took = within_a_second(&server, demo, json!("u-gone"), false).await;
    println!("{label}: suppressed at the edge after {took:?}");
    until_stored(&server, &app, json!("u-gone"), false).await;
    until_stored(&server, demo, json!(42), false).await;
    until_stored(&server, demo, json!("u-kept"), true).await;
    // anonymousId is not a user id.
    until_stored(&server, demo, Value::Null, true).await;

    // In a batch: the suppressed items are acknowledged and left out, the others kept
    // (on a source of this test's own, whose counters no other test moves).
    let shop = format!("shop-{label}");
    let shop_key = api.new_source(&owner, &server, &shop).await;
    let response = client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic(&shop_key))
        .json(&json!({"batch": [
            {"type": "track", "event": "A", "userId": "u-gone", "messageId": "b-1"},
            {"type": "identify", "userId": "u-kept", "messageId": "b-2"},
            {"type": "page", "userId": 42, "messageId": "b-3"},
            {"type": "track", "event": "B", "userId": "42x", "messageId": "b-4"},
        ]}))
        .send()
        .await
        .expect("batch");
    assert_eq!(response.status(), StatusCode::OK, "{label}");
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer, json!({"success": true}), "{label}");
    let ids = stored_ids(&server);
    for (id, kept) in [("b-1", false), ("b-2", true), ("b-3", false), ("b-4", true)] {
        assert_eq!(ids.contains(&id.to_owned()), kept, "{label}: {id}");
    }
    let metrics = server.metrics().await;
    let series = format!(r#"sluice_events_suppressed_total{{source="{shop}"}}"#);
    assert_eq!(
        metric(&metrics, &series),
        2.0,
        "{label}: suppressed events counted"
    );

    // In one source only.
    let body = regulated(
        &api,
        &owner,
        "/api/v1/regulations/sources/app",
        "SUPPRESS_ONLY",
        json!(["u-app"]),
    )
    .await;
    let source_reg = body["data"]["regulateId"].as_str().expect("id").to_owned();
    until_stored(&server, &app, json!("u-app"), false).await;
    until_stored(&server, demo, json!("u-app"), true).await;

    // Reading them back.
    let (status, body) = api.get(&owner, "/api/v1/regulations").await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    let listed: Vec<&str> = body["data"]["regulations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        [workspace_reg.as_str(), source_reg.as_str()],
        "{label}: oldest first"
    );
    let first = &body["data"]["regulations"][0];
    assert_eq!(first["regulationType"], "SUPPRESS_ONLY");
    assert_eq!(first["status"], "FINISHED");
    assert_eq!(
        first["subjects"],
        json!(["u-gone", "42"]),
        "{label}: repeats dropped"
    );
    let (_, body) = api
        .get(
            &owner,
            "/api/v1/regulations?regulationTypes%5B0%5D=UNSUPPRESS",
        )
        .await;
    assert_eq!(body["data"]["regulations"], json!([]), "{label}");
    let (_, body) = api
        .get(
            &owner,
            "/api/v1/regulations?status=FINISHED&pagination%5Bcount%5D=1",
        )
        .await;
    assert_eq!(body["data"]["regulations"][0]["id"], json!(workspace_reg));
    let next = body["data"]["pagination"]["next"]
        .as_str()
        .expect("next page");
    let (_, body) = api
        .get(
            &owner,
            &format!("/api/v1/regulations?pagination%5Bcursor%5D={next}"),
        )
        .await;
    assert_eq!(body["data"]["regulations"][0]["id"], json!(source_reg));
    let (_, body) = api.get(&owner, "/api/v1/regulations/sources/app").await;
    assert_eq!(
        body["data"]["regulations"][0]["id"],
        json!(source_reg),
        "{label}"
    );
    assert_eq!(
        body["data"]["regulations"].as_array().map(Vec::len),
        Some(1)
    );
    let (status, body) = api
        .get(&owner, &format!("/api/v1/regulations/{source_reg}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    assert_eq!(body["data"]["regulation"]["overallStatus"], "FINISHED");
    assert_eq!(body["data"]["regulation"]["streamStatus"][0]["id"], "app");
    let (_, body) = api.get(&owner, "/api/v1/suppressions").await;
    assert_eq!(
        body["data"]["suppressed"],
        json!([{"subjectType": "USER_ID", "subjectIds": ["42", "u-app", "u-gone"]}]),
        "{label}"
    );

    // Lifting: UNSUPPRESS at the workspace, then in the source. Deleting a regulation
    // lifts nothing.
    regulated(
        &api,
        &owner,
        "/api/v1/regulations",
        "UNSUPPRESS",
        json!(["u-gone"]),
    )
    .await;
    within_a_second(&server, demo, json!("u-gone"), true).await;
    until_stored(&server, demo, json!(42), false).await;
    let (status, _) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/regulations/{source_reg}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{label}");
    let (status, _) = api
        .get(&owner, &format!("/api/v1/regulations/{source_reg}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{label}");
    let (_, body) = api.get(&owner, "/api/v1/suppressions").await;
    assert_eq!(
        body["data"]["suppressed"][0]["subjectIds"],
        json!(["42", "u-app"]),
        "{label}: deleting a regulation lifts nothing"
    );
    regulated(
        &api,
        &owner,
        "/api/v1/regulations/sources/app",
        "UNSUPPRESS",
        json!(["u-app"]),
    )
    .await;
    until_stored(&server, &app, json!("u-app"), true).await;

    // A deleted source's suppressions go with it: a new source of the same id is new.
    regulated(
        &api,
        &owner,
        "/api/v1/regulations/sources/app",
        "SUPPRESS_ONLY",
        json!(["u-app"]),
    )
    .await;
    until_stored(&server, &app, json!("u-app"), false).await;
    let (status, _) = api
        .call(&owner, Method::DELETE, "/api/v1/sources/app", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{label}");
    let app = api.new_source(&owner, &server, "app").await;
    until_stored(&server, &app, json!("u-app"), true).await;
    let (_, body) = api.get(&owner, "/api/v1/regulations/sources/app").await;
    assert_eq!(
        body["data"]["regulations"],
        json!([]),
        "{label}: the old source's regulations"
    );

    // What is refused, and how.
    for kind in ["DELETE_ONLY", "SUPPRESS_WITH_DELETE", "DELETE_INTERNAL"] {
        let (status, body) =
            regulate(&api, &owner, "/api/v1/regulations", kind, json!(["u"])).await;
        assert_eq!(
            status,
            StatusCode::NOT_IMPLEMENTED,
            "{label}: {kind}: {body}"
        );
    }
    let too_many: Vec<String> = (0..5_001).map(|i| format!("u{i}")).collect();
    for (body, field) in [
        (
            json!({"regulationType": "SUPPRESS_ONLY", "subjectType": "OBJECT_ID", "subjectIds": ["o"]}),
            "subjectType",
        ),
        (
            json!({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": []}),
            "subjectIds",
        ),
        (
            json!({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": [""]}),
            "subjectIds",
        ),
        (
            json!({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ["a\u{0}b"]}),
            "subjectIds",
        ),
        (
            json!({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": too_many}),
            "subjectIds",
        ),
    ] {
        let (status, answer) = api.post(&owner, "/api/v1/regulations", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{label}: {answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{label}: {answer}");
    }
    let (status, body) = regulate(
        &api,
        &owner,
        "/api/v1/regulations",
        "SUPPRESS",
        json!(["u"]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{label}: {body}");
    let (status, _) = api.get(&owner, "/api/v1/regulations?status=DONE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{label}");

    // The largest regulation (5,000 ids) is applied whole, at once.
    let many: Vec<String> = (0..5_000).map(|i| format!("bulk-{i:04}")).collect();
    let started = Instant::now();
    regulated(
        &api,
        &owner,
        "/api/v1/regulations",
        "SUPPRESS_ONLY",
        json!(many),
    )
    .await;
    println!(
        "{label}: a regulation of 5,000 ids took {:?}",
        started.elapsed()
    );
    let mut listed = 0;
    let mut cursor = String::new();
    loop {
        let (_, body) = api
            .get(
                &owner,
                &format!("/api/v1/suppressions?pagination%5Bcount%5D=200{cursor}"),
            )
            .await;
        listed += body["data"]["suppressed"][0]["subjectIds"]
            .as_array()
            .map_or(0, Vec::len);
        match body["data"]["pagination"]["next"].as_str() {
            Some(next) => cursor = format!("&pagination%5Bcursor%5D={next}"),
            None => break,
        }
    }
    assert_eq!(listed, 5_001, "{label}: 5,000 new and 42");
    until_stored(&server, demo, json!("bulk-4999"), false).await;

    // The audit log has every change, and never the user ids.
    let events =
        common::control::audited(&api, &owner, &["regulation.create", "regulation.delete"]).await;
    let text = serde_json::to_string(&events).expect("json");
    assert!(
        !text.contains("u-gone") && !text.contains("u-app"),
        "{label}: user ids in the audit log"
    );
    common::control::chain_holds(&db).await;
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn suppression_stops_a_users_events_at_the_edge_on_sqlite() {
    scenario(databases::sqlite().await).await;
}

#[tokio::test]
async fn suppression_stops_a_users_events_at_the_edge_on_postgres() {
    scenario(databases::postgres().await).await;
}

/// Who may regulate: owners and admins workspace-wide; a member with `full` on a source
/// in that source; nobody else, and a hidden source or regulation answers as missing.
#[tokio::test]
async fn regulations_follow_the_policy() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    api.new_source(&owner, &server, "app").await;
    api.new_source(&owner, &server, "secret").await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (reader, _) = api
        .invited(&owner, &server, "reader@example.com", "read_only")
        .await;
    for (source, level) in [("app", "full"), ("secret", "no_access")] {
        api.grant_source(&owner, &member_id, source, level).await;
    }
    let suppress = |ids: &[&str]| json!({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ids});

    // Workspace-wide: owners and admins.
    let (status, body) = api
        .post(&admin, "/api/v1/regulations", suppress(&["a"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let workspace_reg = body["data"]["regulateId"].as_str().expect("id").to_owned();
    for token in [&member, &reader] {
        let (status, body) = api
            .post(token, "/api/v1/regulations", suppress(&["b"]))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        for path in ["/api/v1/regulations", "/api/v1/suppressions"] {
            let (status, _) = api.get(token, path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        }
    }

    // In a source: `full` on it.
    let (status, body) = api
        .post(&member, "/api/v1/regulations/sources/app", suppress(&["m"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member_reg = body["data"]["regulateId"].as_str().expect("id").to_owned();
    let (status, _) = api.get(&member, "/api/v1/regulations/sources/app").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .get(&member, &format!("/api/v1/regulations/{member_reg}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // `demo` at the member's standing level (not full): refused.
    let (status, _) = api
        .post(
            &member,
            "/api/v1/regulations/sources/demo",
            suppress(&["m"]),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .post(&reader, "/api/v1/regulations/sources/app", suppress(&["m"]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A hidden source, and a regulation out of reach, answer exactly as missing ones.
    api.hidden_like_missing(
        &member,
        Method::POST,
        "/api/v1/regulations/sources/{id}",
        ("secret", "absent"),
        Some(suppress(&["m"])),
    )
    .await;
    let absent_reg = format!("reg{}", "0".repeat(28));
    for method in [Method::GET, Method::DELETE] {
        let (out_status, out) = api
            .call(
                &member,
                method.clone(),
                &format!("/api/v1/regulations/{workspace_reg}"),
                None,
            )
            .await;
        let (gone_status, gone) = api
            .call(
                &member,
                method.clone(),
                &format!("/api/v1/regulations/{absent_reg}"),
                None,
            )
            .await;
        assert_eq!(
            (out_status, gone_status),
            (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND),
            "{method}"
        );
        assert_eq!(
            out.to_string().replace(&workspace_reg, "ID"),
            gone.to_string().replace(&absent_reg, "ID"),
            "{method}"
        );
        assert_eq!(error_type(&out), error_type(&gone));
    }
    // The workspace regulation is still there; the member's refusal was audited.
    let (status, _) = api
        .get(&owner, &format!("/api/v1/regulations/{workspace_reg}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    common::control::audited(
        &api,
        &owner,
        &["access.denied.regulate", "access.denied.regulate_source"],
    )
    .await;
    // An admin sees and deletes a member's source regulation.
    let (status, _) = api
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/regulations/{member_reg}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    drop(server);
    db.finish().await;
}

/// A remote gateway follows the suppression list of its control plane, and a person's
/// token cannot read the list's feed.
#[tokio::test]
async fn a_remote_gateway_follows_the_suppression_list() {
    let db = databases::sqlite().await;
    let (control, link) = server(&db).await;
    let api = Api::of(&control);
    let owner = api.owner(&link).await;
    regulated(
        &api,
        &owner,
        "/api/v1/regulations",
        "SUPPRESS_ONLY",
        json!(["before-start"]),
    )
    .await;
    let (status, _) = api.get(&owner, "/internal/v1/suppressions?wait=0").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let node = api.node(&owner, "edge-1", "gateway").await;
    // Only gateways follow the list: a delivery node's credential may not read it.
    let delivery = api.node(&owner, "deliver-1", "delivery").await;
    let (status, _) = api.get(&delivery, "/internal/v1/suppressions?wait=0").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api.get(&node, "/internal/v1/suppressions?wait=0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changes"][0]["subject"], "before-start");
    let url = api.base.clone();
    let edge = TestServer::start_with("", move |config| {
        config.catalog.source = CatalogSourceKind::Remote;
        config.catalog.control_url = url;
        config.catalog.node_token = Secret::new(node);
        config.catalog.node_name = "edge-1".into();
    });
    let demo = "demo-write-key";
    // Loaded before the edge served its first request.
    assert_eq!(
        send(&edge, demo, json!("before-start"), "first").await,
        StatusCode::OK
    );
    assert!(
        !stored_ids(&edge).contains(&"first".to_owned()),
        "a suppressed user's event got in at start"
    );
    until_stored(&edge, demo, json!("later"), true).await;
    regulated(
        &api,
        &owner,
        "/api/v1/regulations",
        "SUPPRESS_ONLY",
        json!(["later"]),
    )
    .await;
    within_a_second(&edge, demo, json!("later"), false).await;
    let (status, _) = regulate(
        &api,
        &owner,
        "/api/v1/regulations",
        "UNSUPPRESS",
        json!(["before-start"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    until_stored(&edge, demo, json!("before-start"), true).await;

    // Restarted while the control plane is away, it keeps its saved copy (digests, not
    // ids, readable by its owner only).
    drop(control);
    let (dir, config) = edge.stop();
    let saved = dir
        .path()
        .join("log")
        .join(sluice::parts::SUPPRESSIONS_FILE);
    let bytes = std::fs::read(&saved).expect("saved copy");
    assert!(
        !bytes.windows(5).any(|w| w == b"later"),
        "a user id in the saved copy"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&saved)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let edge = TestServer::start_in(dir, config);
    assert_eq!(
        send(&edge, demo, json!("later"), "after-restart").await,
        StatusCode::OK
    );
    assert_eq!(
        send(&edge, demo, json!("free"), "free-after-restart").await,
        StatusCode::OK
    );
    let ids = stored_ids(&edge);
    assert!(
        !ids.contains(&"after-restart".to_owned()),
        "suppression lost at restart"
    );
    assert!(ids.contains(&"free-after-restart".to_owned()));
    drop(edge);
    db.finish().await;
}
