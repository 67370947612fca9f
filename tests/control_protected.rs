//! Production protection, on SQLite and PostgreSQL: with `environment:prod` protected,
//! a member's change to the prod source (settings, keys, connections, its destinations)
//! becomes a request for review instead of applying; owners and admins change it at once;
//! a request is approved (replayed as the approver's), rejected or withdrawn, never
//! approved by its author, never applied over a newer state, hidden from who may not see
//! the source, and every step is audited.

mod common;

use common::control::{Api, audited, chain_holds, server, track, until};
use common::databases::{self, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "demo-write-key";

async fn grant(api: &Api, owner: &str, user: &str, level: &str) {
    let body = json!({"principal": {"type": "user", "id": user},
                      "resource": {"kind": "source", "id": "demo"}, "level": level});
    let (status, body) = api.post(owner, "/api/v1/grants", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A `202` request's id.
fn requested(status: StatusCode, body: &Value) -> String {
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let rc = &body["data"]["resourceChangeRequest"];
    assert_eq!(rc["status"], "OPEN", "{body}");
    rc["id"].as_str().expect("id").to_owned()
}

async fn decide(api: &Api, token: &str, id: &str, verb: &str, body: Value) -> (StatusCode, Value) {
    api.post(
        token,
        &format!("/api/v1/resource-change-requests/{id}/{verb}"),
        body,
    )
    .await
}

async fn source(api: &Api, token: &str) -> Value {
    let (status, body) = api.get(token, "/api/v1/sources/demo").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["source"].clone()
}

async fn scenario(db: &TestDb) {
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (outsider, outsider_id) = api
        .invited(&owner, &server, "outsider@example.com", "member")
        .await;
    grant(&api, &owner, &member_id, "full").await;
    grant(&api, &owner, &outsider_id, "no_access").await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/sources/demo/labels",
            json!({"labels": [{"key": "environment", "value": "prod"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Unprotected, a member's change applies at once.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"name": "Demo 2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Protection is set by owners and admins, label by label.
    let path = "/api/v1/settings/protected-labels";
    let (status, _) = api
        .call(
            &member,
            Method::PUT,
            path,
            Some(json!({"labels": ["environment:prod"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [
        json!(["prod"]),
        json!(["a:b:c"]),
        json!(["Environment:Prod"]),
        json!([""]),
        json!("environment:prod"),
    ] {
        let (status, body) = api
            .call(&owner, Method::PUT, path, Some(json!({"labels": bad})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, body) = api
        .call(
            &admin,
            Method::PUT,
            path,
            Some(json!({"labels": ["environment:prod"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&member, path).await;
    assert_eq!(body["data"]["labels"], json!(["environment:prod"]));

    // A member's change is a request now: nothing changes; the description is kept.
    let response = reqwest::Client::new()
        .patch(format!("{}/api/v1/sources/demo", api.base))
        .bearer_auth(&member)
        .header("x-change-description", "maintenance window")
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("patch");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    let first = requested(status, &body);
    let rc = &body["data"]["resourceChangeRequest"];
    assert_eq!(rc["description"], "maintenance window");
    assert_eq!(rc["protectedSources"], json!(["demo"]));
    assert_eq!(rc["path"], "/sources/demo");
    assert_eq!(source(&api, &owner).await["enabled"], json!(true));
    assert_eq!(track(&server, KEY, "still-on").await, StatusCode::OK);
    // Who may not make the change at all is refused, not queued; hidden stays hidden.
    let (status, _) = api
        .call(
            &outsider,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .get(
            &outsider,
            &format!("/api/v1/resource-change-requests/{first}"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = api.get(&outsider, "/api/v1/resource-change-requests").await;
    assert_eq!(body["data"]["resourceChangeRequests"], json!([]), "{body}");

    // An admin changes it at once; the request is then stale: refused, to be proposed again.
    let (status, body) = api
        .call(
            &admin,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"name": "Demo 3"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = decide(&api, &owner, &first, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = decide(&api, &member, &first, "withdraw", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resourceChangeRequest"]["status"], "WITHDRAWN");

    // Rotation through review: its author may not approve; an owner does, and the new key
    // (shown once, in the approval's answer) lets events in.
    let (status, body) = api
        .post(&member, "/api/v1/sources/demo/writekey", json!({}))
        .await;
    let rotation = requested(status, &body);
    let (status, body) = decide(&api, &member, &rotation, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = decide(&api, &owner, &rotation, "approve", json!({"comment": "ok"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resourceChangeRequest"]["status"], "APPLIED");
    let key = body["data"]["result"]["writeKey"]["key"]
        .as_str()
        .expect("new key")
        .to_owned();
    until(&server, &key, StatusCode::OK).await;
    let (status, _) = decide(&api, &owner, &rotation, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "applied once");

    // A key revoked by its plaintext (Segment's path): the key is never shown nor audited.
    let (status, body) = api
        .call(
            &member,
            Method::DELETE,
            &format!("/api/v1/sources/demo/writekey/{KEY}"),
            None,
        )
        .await;
    let revoke = requested(status, &body);
    assert_eq!(
        body["data"]["resourceChangeRequest"]["path"],
        "/sources/demo/writekey/[hidden]"
    );
    assert!(!body.to_string().contains(KEY), "{body}");
    let (status, _) = decide(&api, &member, &revoke, "withdraw", json!({})).await;
    assert_eq!(status, StatusCode::OK);

    // A body that is not JSON is refused, not let through (its handler reads none).
    let response = reqwest::Client::new()
        .delete(format!("{}/api/v1/sources/demo/writekey/{KEY}", api.base))
        .bearer_auth(&member)
        .body("x")
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(track(&server, KEY, "key-kept").await, StatusCode::OK);

    // Rejected with a reason; a rejected request is not approved later.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"enabled": false})),
        )
        .await;
    let disable = requested(status, &body);
    let (status, _) = decide(&api, &admin, &disable, "reject", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a reason is required");
    let (status, body) = decide(
        &api,
        &admin,
        &disable,
        "reject",
        json!({"comment": "not now"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = decide(&api, &owner, &disable, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Connections: a new destination fed by the prod source is a request; approved, it
    // exists; a change to it (it is fed by prod) is a request too, with its settings hidden.
    let (status, body) = api
        .post(
            &member,
            "/api/v1/destinations",
            json!({"id": "archive", "sourceId": "demo", "metadataId": "file",
                     "settings": {"path": "archive.ndjson"}}),
        )
        .await;
    let connect = requested(status, &body);
    assert_eq!(
        body["data"]["resourceChangeRequest"]["body"]["settings"]["path"], "archive.ndjson",
        "a file name is no secret"
    );
    let (status, _) = api.get(&owner, "/api/v1/destinations/archive").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = decide(&api, &admin, &connect, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.get(&owner, "/api/v1/destinations/archive").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/destinations/archive",
            Some(json!({"enabled": false})),
        )
        .await;
    let pause = requested(status, &body);
    assert_eq!(
        body["data"]["resourceChangeRequest"]["resourceType"],
        "destination"
    );

    // The queue, by status; then the source disabled through review stops its keys.
    let (_, body) = api
        .get(&owner, "/api/v1/resource-change-requests?status=OPEN")
        .await;
    let open: Vec<&str> = body["data"]["resourceChangeRequests"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(open, vec![pause.as_str()], "{body}");
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"enabled": false})),
        )
        .await;
    let off = requested(status, &body);
    let (status, body) = decide(&api, &admin, &off, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until(&server, KEY, StatusCode::UNAUTHORIZED).await;

    let events = audited(&api, &owner, &["resource_change.create"]).await;
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("resource_change.create"), 7);
    assert_eq!(count("resource_change.approve"), 3);
    assert_eq!(count("resource_change.reject"), 1);
    assert_eq!(count("resource_change.withdraw"), 2);
    let (_, all) = api
        .get(
            &owner,
            "/api/v1/audit-events?pagination[count]=200&format=ndjson",
        )
        .await;
    assert!(
        !all.to_string().contains(KEY),
        "a write key in the audit log"
    );
    assert_eq!(count("settings.protected_labels"), 1);
    chain_holds(db).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_changes_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_changes_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}

async fn grant_on(api: &Api, owner: &str, user: &str, kind: &str, id: &str, level: &str) {
    let body = json!({"principal": {"type": "user", "id": user},
                      "resource": {"kind": kind, "id": id}, "level": level});
    let (status, body) = api.post(owner, "/api/v1/grants", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A new LIVE tracking plan's id.
async fn new_plan(api: &Api, owner: &str, name: &str) -> String {
    let (status, body) = api
        .post(
            owner,
            "/api/v1/tracking-plans",
            json!({"name": name, "type": "LIVE"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan id")
        .to_owned()
}

async fn labelled_prod(api: &Api, owner: &str, slug: &str) {
    let (status, body) = api
        .post(owner, "/api/v1/sources", json!({"slug": slug}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            owner,
            &format!("/api/v1/sources/{slug}/labels"),
            json!({"labels": [{"key": "environment", "value": "prod"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The ways around protection an attacker's review found, each closed: a plan a
/// protected source enforces, a hidden source named in a destination's connections, a
/// request about a destination its viewer may not see, a reviewer blind to a repointed
/// webhook, a request stuck applying or about a deleted source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_is_not_bypassed_nor_leaky() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (peer, peer_id) = api
        .invited(&owner, &server, "peer@example.com", "member")
        .await;
    let (viewer, viewer_id) = api
        .invited(&owner, &server, "viewer@example.com", "member")
        .await;
    for user in [&member_id, &peer_id] {
        grant(&api, &owner, user, "full").await;
    }
    grant(&api, &owner, &viewer_id, "read_only").await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/sources/demo/labels",
            json!({"labels": [{"key": "environment", "value": "prod"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    labelled_prod(&api, &owner, "secret").await;
    grant_on(&api, &owner, &member_id, "source", "secret", "no_access").await;
    labelled_prod(&api, &owner, "gone").await;
    let (status, body) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "dev"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (id, source) in [("hook", "dev"), ("feed", "demo")] {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/destinations",
                json!({"id": id, "sourceId": source, "metadataId": "file",
                       "settings": {"path": format!("{id}.ndjson")}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    grant_on(&api, &owner, &viewer_id, "destination", "feed", "no_access").await;
    // A plan the prod source enforces, published by members too.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/settings",
            Some(json!({"membersCanPublish": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = new_plan(&api, &owner, "P").await;
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/tracking-plans/{plan}/sources"),
            json!({"sourceId": "demo"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            "/api/v1/settings/protected-labels",
            Some(json!({"labels": ["environment:prod"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 1. The plan of a protected source: members may publish other plans, not this one,
    //    nor delete it, nor approve a change request on it; an admin may.
    let rules = |event: &str| json!({"rules": [{"type": "TRACK", "key": event, "version": 1, "jsonSchema": {}}]});
    let rules_path = format!("/api/v1/tracking-plans/{plan}/rules");
    let (status, body) = api
        .call(&member, Method::PUT, &rules_path, Some(rules("A")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("protected source"), "{body}");
    let (status, body) = api
        .call(
            &member,
            Method::DELETE,
            &format!("/api/v1/tracking-plans/{plan}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post(
            &peer,
            &format!("/api/v1/tracking-plans/{plan}/change-requests"),
            json!({"description": "add B", "rules": rules("B")["rules"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cr = body["data"]["changeRequest"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("change request id: {body}"))
        .to_owned();
    let (status, body) = api
        .post(
            &member,
            &format!("/api/v1/change-requests/{cr}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post(
            &admin,
            &format!("/api/v1/change-requests/{cr}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 2. A destination change is weighed as its handler weighs it: naming a source the
    //    author may not see answers as a missing source (no 202 telling it is protected);
    //    naming a visible prod source is a request.
    let hook = "/api/v1/destinations/hook";
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            hook,
            Some(json!({"sources": ["dev", "secret"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            hook,
            Some(json!({"sources": ["dev", "nothing-here"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            hook,
            Some(
                json!({"sources": ["dev", "demo"], "settings": {"path": "x.ndjson"},
                        "unknown": 1}),
            ),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "read as its handler reads it: {body}"
    );
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            hook,
            Some(json!({"sources": ["dev", "demo"]})),
        )
        .await;
    let connect = requested(status, &body);
    // So are a source's update and labels: what the handler would refuse is refused,
    // not kept for an approver to make.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"rateLimit": {"requestsPerSecond": 0}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .post(
            &member,
            "/api/v1/sources/demo/labels",
            json!({"labels": [{"key": "Not A Slug", "value": "x"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A plan link is weighed as its handler weighs it: a plan that does not exist is
    // missing, not a request to review.
    let (status, body) = api
        .post(
            &member,
            "/api/v1/tracking-plans/tp_nothing/sources",
            json!({"sourceId": "demo"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Every other weighed body is read as its handler reads it: refused, not kept.
    for (path, body) in [
        (
            format!("/api/v1/tracking-plans/{plan}/sources"),
            json!({"sourceId": "demo", "unknown": 1}),
        ),
        (
            "/api/v1/destinations".to_owned(),
            json!({"id": "Not A Slug", "sourceId": "demo", "metadataId": "file",
                   "settings": {"path": "x.ndjson"}}),
        ),
        (
            "/api/v1/destinations".to_owned(),
            json!({"sourceId": "demo", "metadataId": "file", "maxInFlight": 0,
                   "settings": {"path": "x.ndjson"}}),
        ),
        (
            "/api/v1/sources/demo/writekey".to_owned(),
            json!({"expiresAt": "2000-01-01T00:00:00Z"}),
        ),
    ] {
        let (status, answer) = api.post(&member, &path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
    }
    for (method, path, body, expected) in [
        (
            Method::PATCH,
            "/api/v1/destinations/feed".to_owned(),
            Some(json!({"maxInFlight": 0})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            "/api/v1/destinations/feed".to_owned(),
            Some(json!({"name": "a\u{0}b"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            "/api/v1/sources/demo/writekey/wk_nothing".to_owned(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            format!("/api/v1/tracking-plans/{plan}/sources?sourceId=demo&unknown=1"),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, answer) = api.call(&member, method, &path, body).await;
        assert_eq!(status, expected, "{path}: {answer}");
    }

    // 3. A request about a destination is seen by who may see the destination; a
    //    source's write keys are not shown in it.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/destinations/feed",
            Some(json!({"name": "Feed 2"})),
        )
        .await;
    let rename = requested(status, &body);
    for id in [&rename, &connect] {
        let path = format!("/api/v1/resource-change-requests/{id}");
        assert_eq!(api.get(&owner, &path).await.0, StatusCode::OK);
    }
    let path = format!("/api/v1/resource-change-requests/{rename}");
    assert_eq!(api.get(&viewer, &path).await.0, StatusCode::NOT_FOUND);
    // Nor does the list tell it, page by page: every page ends on a request the reader
    // sees (no empty page with a cursor past a hidden one).
    let mut cursor = String::new();
    let mut listed = Vec::new();
    loop {
        let (status, body) = api
            .get(
                &viewer,
                &format!("/api/v1/resource-change-requests?pagination[count]=1{cursor}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["data"]["resourceChangeRequests"]
            .as_array()
            .expect("page")
            .clone();
        listed.extend(
            page.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned)),
        );
        let Some(next) = body["data"]["pagination"]["next"].as_str() else {
            break;
        };
        assert_eq!(
            page.len(),
            1,
            "a page with a cursor holds a request: {body}"
        );
        cursor = format!("&pagination[cursor]={next}");
    }
    assert!(!listed.contains(&rename), "{listed:?}");
    assert!(listed.contains(&connect), "{listed:?}");
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"name": "Renamed"})),
        )
        .await;
    requested(status, &body);
    let before = &body["data"]["resourceChangeRequest"]["before"];
    assert_eq!(before["name"], "demo", "{body}");
    assert!(before.get("writeKeys").is_none(), "{body}");

    // 4. A repointed webhook shows its host to reviewers, never its path's credentials.
    let (status, body) = api
        .post(
            &member,
            "/api/v1/destinations",
            json!({"id": "relay", "sourceId": "demo", "metadataId": "webhook",
                   "settings": {"url": "https://hooks.example.com/services/T0/B0/s3cr3t",
                                "headers": {"authorization": "Bearer s3cr3t"}}}),
        )
        .await;
    requested(status, &body);
    let shown = &body["data"]["resourceChangeRequest"]["body"]["settings"];
    assert_eq!(shown["url"], "https://hooks.example.com/…", "{body}");
    assert!(!body.to_string().contains("s3cr3t"), "{body}");

    // 5. A request whose prod source was deleted is still seen by its author and by
    //    reviewers, refused on approval, and rejected.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/gone",
            Some(json!({"enabled": false})),
        )
        .await;
    let orphan = requested(status, &body);
    let (status, body) = api
        .call(&owner, Method::DELETE, "/api/v1/sources/gone", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/api/v1/resource-change-requests/{orphan}");
    for token in [&member, &admin] {
        assert_eq!(api.get(token, &path).await.0, StatusCode::OK);
    }
    assert_eq!(api.get(&viewer, &path).await.0, StatusCode::NOT_FOUND);
    let (status, body) = decide(&api, &admin, &orphan, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = decide(&api, &admin, &orphan, "reject", json!({"comment": "gone"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 7. Forwarding events into a protected source is a change to it; a source that
    //    another forwards into is not deleted from under it.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/dev/settings",
            Some(json!({"forwardingBlockedEventsTo": "demo"})),
        )
        .await;
    let forward = requested(status, &body);
    let (status, body) = decide(&api, &admin, &forward, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Deleting the forwarding source ends a forwarding into a protected source: a
    // request too.
    grant_on(&api, &owner, &member_id, "source", "dev", "full").await;
    let (status, body) = api
        .call(&member, Method::DELETE, "/api/v1/sources/dev", None)
        .await;
    let drop_dev = requested(status, &body);
    let (status, body) = decide(&api, &member, &drop_dev, "withdraw", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(&owner, Method::DELETE, "/api/v1/sources/demo", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("dev"), "names the source: {body}");
    assert_eq!(source(&api, &owner).await["id"], "demo");

    // 8. Linking a plan approves the version reviewed: published since, it is stale.
    let other = new_plan(&api, &owner, "Q").await;
    let (status, body) = api
        .post(
            &member,
            &format!("/api/v1/tracking-plans/{other}/sources"),
            json!({"sourceId": "demo"}),
        )
        .await;
    let link = requested(status, &body);
    let (status, body) = api
        .call(
            &member,
            Method::PUT,
            &format!("/api/v1/tracking-plans/{other}/rules"),
            Some(rules("Unreviewed")),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "not yet a protected source's plan: {body}"
    );
    let (status, body) = decide(&api, &admin, &link, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // 9. Approved, a destination change keeps the connections hidden from its author.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/destinations/feed",
            Some(json!({"sources": ["demo", "secret"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/destinations/feed",
            Some(json!({"sources": ["demo", "dev"]})),
        )
        .await;
    let widen = requested(status, &body);
    assert!(!body.to_string().contains("secret"), "{body}");
    let (status, body) = api
        .get(
            &member,
            &format!("/api/v1/resource-change-requests/{widen}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "its author sees it: {body}");
    assert_eq!(
        body["data"]["resourceChangeRequest"]["protectedSources"],
        json!(["demo"]),
        "{body}"
    );
    let (status, body) = decide(&api, &admin, &widen, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&owner, "/api/v1/destinations/feed").await;
    let mut connected: Vec<&str> = body["data"]["destination"]["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    connected.sort_unstable();
    assert_eq!(connected, ["demo", "dev", "secret"], "{body}");

    // 6. A request left APPLYING (its approval cut short) may be closed once stuck, not
    //    before.
    let mut raw = db.raw().await;
    let mark = "UPDATE resource_changes SET status = 'APPLYING', updated_at = updated_at - $2 \
                WHERE id = $1";
    for age_ms in [0_i64, 11 * 60 * 1000] {
        sqlx::query(mark)
            .bind(&rename)
            .bind(age_ms)
            .execute(&mut raw)
            .await
            .expect("mark");
        if age_ms == 0 {
            let (status, body) = decide(&api, &member, &rename, "withdraw", json!({})).await;
            assert_eq!(status, StatusCode::CONFLICT, "not stuck yet: {body}");
        }
    }
    let (status, body) = decide(&api, &admin, &rename, "approve", json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a stuck request is never applied: {body}"
    );
    let (status, body) = decide(&api, &member, &rename, "withdraw", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resourceChangeRequest"]["status"], "WITHDRAWN");
    drop(raw);

    // 10. A reader sees a request only with the resource it changes, and not the
    //     sources hidden from them that it names (connections, forwarding targets).
    grant_on(&api, &owner, &peer_id, "source", "dev", "no_access").await;
    let rc_path = |id: &str| format!("/api/v1/resource-change-requests/{id}");
    let (status, body) = api.get(&peer, &rc_path(&forward)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "dev's request, dev hidden: {body}"
    );
    let (status, body) = api.get(&peer, &rc_path(&widen)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["resourceChangeRequest"]["body"]["sources"],
        json!(["demo"]),
        "{body}"
    );
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/demo/settings",
            Some(json!({"forwardingViolationsTo": "dev"})),
        )
        .await;
    let into_dev = requested(status, &body);
    let shown = |body: &Value| {
        body["data"]["resourceChangeRequest"]["body"]["forwardingViolationsTo"].clone()
    };
    let (_, body) = api.get(&member, &rc_path(&into_dev)).await;
    assert_eq!(shown(&body), "dev", "{body}");
    let (status, body) = api.get(&peer, &rc_path(&into_dev)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(shown(&body), "<redacted>", "{body}");
    // Nor the forwarding of a source it changes, as it is now (in the request and in
    // the source's settings).
    let (status, body) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "vault"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    grant_on(&api, &owner, &peer_id, "source", "vault", "no_access").await;
    let settings = "/api/v1/sources/demo/settings";
    let (status, body) = api
        .call(
            &admin,
            Method::PATCH,
            settings,
            Some(json!({"forwardingBlockedEventsTo": "vault"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"name": "Renamed again"})),
        )
        .await;
    let rename_again = requested(status, &body);
    let (_, body) = api.get(&peer, &rc_path(&rename_again)).await;
    let controls = &body["data"]["resourceChangeRequest"]["before"]["controls"];
    assert_eq!(controls["forward_blocked_to"], "<redacted>", "{body}");
    assert!(!body.to_string().contains("vault"), "{body}");
    let blocked_to = |body: &Value| body["data"]["settings"]["forwardingBlockedEventsTo"].clone();
    let (_, body) = api.get(&peer, settings).await;
    assert_eq!(blocked_to(&body), "<redacted>", "{body}");
    let (_, body) = api.get(&member, settings).await;
    assert_eq!(blocked_to(&body), "vault", "{body}");
    // Sent back as read, a hidden target stays.
    let (status, body) = api
        .call(
            &admin,
            Method::PATCH,
            settings,
            Some(json!({"forwardingBlockedEventsTo": "<redacted>"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(blocked_to(&body), "vault", "{body}");
    // A source's deletion names only the sources forwarding into it its caller sees.
    let (status, body) = api
        .call(&peer, Method::DELETE, "/api/v1/sources/demo", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(!body.to_string().contains("dev"), "{body}");
    // A request on dev, handed to the peer below, stays hidden from them.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/dev/settings",
            Some(json!({"forwardingViolationsTo": "demo"})),
        )
        .await;
    let on_dev = requested(status, &body);

    // 11. Offboarding hands the leaver's open requests to the successor, who may
    //     withdraw them (and never approve them), and sees only those whose resource
    //     they may see.
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/users/{member_id}/offboard"),
            json!({"successorId": peer_id, "dryRun": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains(&connect), "{body}");
    let path = format!("/api/v1/resource-change-requests/{connect}");
    let (_, body) = api.get(&owner, &path).await;
    assert_eq!(
        body["data"]["resourceChangeRequest"]["authorId"],
        json!(peer_id)
    );
    let (status, body) = decide(&api, &peer, &connect, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = decide(&api, &peer, &connect, "withdraw", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&owner, &rc_path(&on_dev)).await;
    assert_eq!(
        body["data"]["resourceChangeRequest"]["authorId"],
        json!(peer_id)
    );
    let (status, body) = api.get(&peer, &rc_path(&on_dev)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    chain_holds(&db).await;
    server.stop();
    db.finish().await;
}
