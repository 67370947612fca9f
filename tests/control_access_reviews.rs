//! The quarterly access review end to end, on SQLite and PostgreSQL, with the control
//! plane's clock moved 100 days (no sleeps): a campaign lists every role, grant, group
//! membership and token with its flags; reviewers keep, revoke or change each line
//! (applied at once, never their own); it closes into an evidence record; per-person and
//! workspace evidence reports come from the store and the audit trail.

mod common;

use chrono::TimeDelta;
use common::control::{Api, chain_holds, server_with};
use common::databases::{self, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::clock::Clock;

async fn grant(api: &Api, owner: &str, user: &str, level: &str, why: Option<&str>) {
    let mut body = json!({"principal": {"type": "user", "id": user},
                          "resource": {"kind": "source", "id": "demo"}, "level": level});
    if let Some(why) = why {
        body["justification"] = json!(why);
    }
    let (status, body) = api.post(owner, "/api/v1/grants", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn items(api: &Api, token: &str, review: &str, query: &str) -> Vec<Value> {
    let (status, body) = api
        .get(
            token,
            &format!("/api/v1/access-reviews/{review}/items?pagination[count]=200{query}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn find<'a>(items: &'a [Value], kind: &str, subject: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["kind"] == kind && i["subjectId"] == subject)
        .unwrap_or_else(|| panic!("no {kind} item for {subject}"))
}

async fn decide(
    api: &Api,
    token: &str,
    review: &str,
    item: &Value,
    body: Value,
) -> (StatusCode, Value) {
    let id = item["id"].as_str().expect("item id");
    api.post(
        token,
        &format!("/api/v1/access-reviews/{review}/items/{id}/decision"),
        body,
    )
    .await
}

/// A year-long token for the holder of `token` (invite tokens last 30 days; the test
/// moves the clock 100).
async fn long_lived(api: &Api, token: &str, name: &str) -> String {
    let scopes = [
        "workspace:read",
        "workspace:write",
        "sources:read",
        "sources:write",
        "destinations:read",
        "members:read",
        "members:write",
        "audit:read",
    ];
    let (status, body) = api
        .post(
            token,
            "/api/v1/tokens",
            json!({"name": name, "scopes": scopes, "expiresInDays": 365}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["secret"]
        .as_str()
        .or_else(|| body["data"]["token"]["secret"].as_str())
        .unwrap_or_else(|| panic!("a secret: {body}"))
        .to_owned()
}

async fn scenario(db: &TestDb) {
    let clock = Clock::adjustable();
    let shared = clock.clone();
    let (server, link) = server_with(db, move |c| c.control.clock = shared).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, admin_id) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (alice, alice_id) = api
        .invited(&owner, &server, "alice@example.com", "member")
        .await;
    let (bob, bob_id) = api
        .invited(&owner, &server, "bob@example.com", "member")
        .await;
    grant(&api, &owner, &alice_id, "read_only", Some("support rota")).await;
    grant(&api, &owner, &bob_id, "full", None).await;
    let (status, body) = api
        .post(&owner, "/api/v1/groups", json!({"name": "analysts"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = body["data"]["userGroup"]["id"]
        .as_str()
        .expect("group")
        .to_owned();
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/groups/{group}/users"),
            json!({"emails": ["bob@example.com"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Members may neither open a campaign nor decide its items.
    let open = json!({"name": "2026 Q4"});
    let (status, body) = api
        .post(&alice, "/api/v1/access-reviews", open.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post(&admin, "/api/v1/access-reviews", json!({"name": "early"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let early = body["data"]["accessReview"]["id"]
        .as_str()
        .expect("review")
        .to_owned();
    let first = items(&api, &admin, &early, "").await;
    let (status, body) = decide(
        &api,
        &alice,
        &early,
        find(&first, "grant", &bob_id),
        json!({"decision": "keep", "note": "fine"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = decide(
        &api,
        &bob,
        &early,
        find(&first, "role", &bob_id),
        json!({"decision": "keep", "note": "me"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Tokens that outlive the quarter: the owner's and admin's own, and a CI token.
    let owner = long_lived(&api, &owner, "owner laptop").await;
    let admin = long_lived(&api, &admin, "admin laptop").await;
    let ci = long_lived(&api, &admin, "ci").await;

    // A quarter later (the members' 30-day invite tokens have expired by then).
    clock.advance(TimeDelta::days(100));

    // Reviewers must be owners or admins.
    let (status, body) = api
        .post(
            &admin,
            "/api/v1/access-reviews",
            json!({"name": "x", "reviewerIds": [alice_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["field"], "reviewerIds");

    let (status, body) = api.post(&admin, "/api/v1/access-reviews", open).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let review = body["data"]["accessReview"]["id"]
        .as_str()
        .expect("review")
        .to_owned();
    let all = items(&api, &admin, &review, "").await;
    // Four roles, two grants, one group membership, the three live tokens.
    let count = |kind: &str| all.iter().filter(|i| i["kind"] == kind).count();
    assert_eq!(
        (
            count("role"),
            count("grant"),
            count("group_membership"),
            count("token")
        ),
        (4, 2, 1, 3),
        "{all:?}"
    );
    let flags = |i: &Value| -> Vec<String> {
        i["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect()
    };
    let bob_grant = find(&all, "grant", &bob_id).clone();
    assert_eq!(
        flags(&bob_grant),
        ["past_review_date", "no_justification"],
        "{bob_grant}"
    );
    assert_eq!(flags(find(&all, "grant", &alice_id)), ["past_review_date"]);
    let ci_token = all
        .iter()
        .find(|i| i["kind"] == "token" && i["detail"]["name"] == "ci")
        .expect("the ci token")
        .clone();
    assert_eq!(
        flags(&ci_token),
        ["token_older_than_90_days", "token_unused_90_days"],
        "{ci_token}"
    );
    assert!(flags(find(&all, "role", &bob_id)).contains(&"no_sign_in_90_days".to_owned()));
    // Nobody is assigned their own line.
    assert!(all.iter().all(|i| i["reviewerId"] != i["subjectId"]));

    // Refusals: the admin deciding their own line, a change on a token, closing early.
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        find(&all, "role", &admin_id),
        json!({"decision": "keep", "note": "me"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("own_request"), "{body}");
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        &ci_token,
        json!({"decision": "change", "note": "?"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .post(
            &admin,
            &format!("/api/v1/access-reviews/{review}/close"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Decisions apply at once.
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        &bob_grant,
        json!({"decision": "revoke", "note": "no reason on record"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&owner, "/api/v1/grants").await;
    assert!(
        !body.to_string().contains(&bob_id),
        "bob's grant is gone: {body}"
    );
    let (status, body) = decide(
        &api,
        &owner,
        &review,
        &ci_token,
        json!({"decision": "revoke", "note": "unused"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.get(&ci, "/api/v1/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errors"][0]["type"], "token_revoked");
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        find(&all, "role", &bob_id),
        json!({"decision": "change", "role": "read_only", "note": "viewer is enough"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&owner, &format!("/api/v1/users/{bob_id}")).await;
    assert_eq!(body["data"]["user"]["role"], "read_only", "{body}");
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        find(&all, "group_membership", &bob_id),
        json!({"decision": "revoke", "note": "left the team"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        find(&all, "grant", &alice_id),
        json!({"decision": "keep", "note": "still on the rota"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        find(&all, "grant", &alice_id),
        json!({"decision": "keep", "note": "twice"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "decided once: {body}");
    // An owner's role or token is an ownership matter: refused to an admin (and audited,
    // at once: the refusal must not wait on the decision's own transaction).
    let (_, users) = api.get(&owner, "/api/v1/users?pagination[count]=200").await;
    let owner_id = users["data"]["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["email"] == "owner@example.com"))
        .and_then(|u| u["id"].as_str())
        .expect("owner id")
        .to_owned();
    let started = std::time::Instant::now();
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        find(&all, "role", &owner_id),
        json!({"decision": "revoke", "note": "coup"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let owner_token = all
        .iter()
        .find(|i| i["kind"] == "token" && i["detail"]["name"] == "owner laptop")
        .expect("the owner's token");
    let (status, body) = decide(
        &api,
        &admin,
        &review,
        owner_token,
        json!({"decision": "revoke", "note": "coup"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, body) = api
        .get(
            &owner,
            "/api/v1/audit-events?action=access.denied.transfer_ownership",
        )
        .await;
    assert_eq!(
        body["data"]["events"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );

    // Everything else is kept: the admin's own lines by the owner.
    for item in items(&api, &admin, &review, "&decided=false").await {
        let who = if item["subjectId"] == admin_id.as_str() {
            &owner
        } else {
            &admin
        };
        let (status, body) = decide(
            &api,
            who,
            &review,
            &item,
            json!({"decision": "keep", "note": "confirmed"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Closed: the evidence record.
    let (status, body) = api
        .post(
            &admin,
            &format!("/api/v1/access-reviews/{review}/close"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["accessReview"]["status"], "CLOSED");
    let (status, body) = api
        .get(&admin, &format!("/api/v1/access-reviews/{review}/evidence"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let summary = &body["data"]["evidence"]["summary"];
    assert_eq!(
        (&summary["items"], &summary["revoked"], &summary["changed"]),
        (&json!(10), &json!(3), &json!(1)),
        "{summary}"
    );
    let response = api
        .http
        .get(format!(
            "{}/api/v1/access-reviews/{review}/evidence?format=markdown",
            api.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("markdown");
    assert!(
        response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("text/markdown"))
    );
    let md = response.text().await.expect("text");
    assert!(
        md.contains("# Access review: 2026 Q4")
            && md.contains("| bob@example.com | grant |")
            && md.contains("no reason on record"),
        "{md}"
    );

    // Per-person evidence: level, why, justification, approver, dates, next review.
    let (status, body) = api
        .get(&admin, &format!("/api/v1/evidence/users/{alice_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["data"]["report"];
    assert_eq!(report["role"], "member");
    let demo = report["access"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["resource"] == "source:demo"))
        .expect("demo access");
    assert_eq!(demo["level"], "read_only");
    assert_eq!(demo["via"], "own_grant");
    assert_eq!(demo["justification"], "support rota");
    assert!(demo["approvedBy"].as_str().is_some_and(|a| !a.is_empty()));
    assert!(demo["nextReview"].is_string(), "{demo}");
    assert_eq!(report["lastReview"]["decision"], "keep", "{report}");
    assert_eq!(report["roleSet"]["action"], "invite.create", "{report}");
    let (_, users) = api.get(&owner, "/api/v1/users?pagination[count]=200").await;
    let owner_id = users["data"]["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["email"] == "owner@example.com"))
        .and_then(|u| u["id"].as_str())
        .expect("owner id")
        .to_owned();
    assert_eq!(
        report["roleSet"]["by"],
        owner_id.as_str(),
        "the inviter: {report}"
    );
    let md = api
        .http
        .get(format!(
            "{}/api/v1/evidence/workspace?format=markdown",
            api.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("workspace evidence")
        .text()
        .await
        .expect("text");
    for email in ["owner@example.com", "alice@example.com", "bob@example.com"] {
        assert!(md.contains(&format!("## {email}")), "{md}");
    }
    assert!(
        md.contains("| source:demo | read_only | own_grant | support rota |"),
        "{md}"
    );

    // Audited, and the chain holds.
    let (_, body) = api
        .get(
            &owner,
            "/api/v1/audit-events?action=access_review.decide&pagination[count]=200",
        )
        .await;
    assert_eq!(
        body["data"]["events"].as_array().map(Vec::len),
        Some(10),
        "{body}"
    );
    chain_holds(db).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}
