//! Tracking-plan change requests end to end through the API, on SQLite and PostgreSQL:
//! members propose (through the rules API too), reviewers approve or reject, authors
//! rebase or withdraw; a stale proposal is never merged, nobody approves their own unless
//! the workspace allows it, and an approval reaches the gateway within a second.

mod common;

use std::time::{Duration, Instant};

use common::control::{Api, audited, chain_holds, server};
use common::databases::{self, TestDb};
use common::{TestServer, basic, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn order_rule(total: Value, required: &[&str]) -> Value {
    json!({"type": "TRACK", "key": "Order Completed", "version": 1, "jsonSchema": {
        "type": "object",
        "properties": {"properties": {"type": "object", "properties": {"total": total}, "required": required}},
    }})
}

fn signed_up_rule() -> Value {
    json!({"type": "TRACK", "key": "Signed Up", "version": 1, "jsonSchema": {"type": "object"}})
}

/// `POST /tracking-plans/{plan}/change-requests`.
async fn propose(api: &Api, token: &str, plan: &str, rules: Value) -> (StatusCode, Value) {
    api.post(
        token,
        &format!("/api/v1/tracking-plans/{plan}/change-requests"),
        json!({"description": "Orders need a total\nasked by finance", "rules": rules}),
    )
    .await
}

fn cr_id(body: &Value) -> String {
    body["data"]["changeRequest"]["id"]
        .as_str()
        .expect("change request id")
        .to_owned()
}

/// `POST /change-requests/{id}/{verb}`.
async fn act(api: &Api, token: &str, id: &str, verb: &str, body: Value) -> (StatusCode, Value) {
    api.post(token, &format!("/api/v1/change-requests/{id}/{verb}"), body)
        .await
}

async fn published_version(api: &Api, token: &str, plan: &str) -> u64 {
    let (status, body) = api
        .get(token, &format!("/api/v1/tracking-plans/{plan}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["trackingPlan"]["version"]
        .as_u64()
        .expect("version")
}

/// How many of the events the demo source's gateway blocked.
async fn blocked(server: &TestServer, batch: Value) -> u64 {
    let r = client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic("demo-write-key"))
        .json(&json!({ "batch": batch }))
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    body["blocked"].as_u64().unwrap_or(0)
}

async fn scenario(db: &TestDb) {
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, admin_id) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (viewer, _) = api
        .invited(&owner, &server, "viewer@example.com", "read_only")
        .await;

    // A plan at version 1, enforced on the demo source (violations blocked).
    let (status, body) = api
        .post(&owner, "/api/v1/tracking-plans", json!({"name": "Web"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan")
        .to_owned();
    let rules_path = format!("/api/v1/tracking-plans/{plan}/rules");
    let v1 = json!([order_rule(json!({"type": "number"}), &[])]);
    let (status, body) = api
        .call(&owner, Method::PUT, &rules_path, Some(json!({"rules": v1})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"], 1);
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"trackingPlanId": plan, "enforcement": "block"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let no_total =
        json!([{"type": "track", "userId": "u", "event": "Order Completed", "properties": {}}]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while blocked(
        &server,
        json!([{"type": "track", "userId": "u", "event": "Order Completed",
        "properties": {"total": "ten"}}]),
    )
    .await
        != 1
    {
        assert!(Instant::now() < deadline, "version 1 never enforced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(blocked(&server, no_total.clone()).await, 0);

    // A member's edit through the rules API becomes their proposal, not the plan.
    let wanted = json!([order_rule(json!({"type": "number"}), &["total"])]);
    let (status, body) = api
        .call(
            &member,
            Method::PUT,
            &rules_path,
            Some(json!({"rules": wanted})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["published"], false, "{body}");
    let member_cr = body["data"]["changeRequestId"]
        .as_str()
        .unwrap_or_else(|| panic!("a change request: {body}"))
        .to_owned();
    assert_eq!(published_version(&api, &owner, &plan).await, 1);
    let (_, body) = api.get(&owner, &rules_path).await;
    assert_eq!(body["data"]["rules"], v1, "the plan's rules are unchanged");
    // Another edit amends the same proposal.
    let (status, body) = api
        .call(
            &member,
            Method::PUT,
            &rules_path,
            Some(json!({"rules": wanted})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequestId"], member_cr.as_str());

    // Refused when proposed: an invalid schema (with the schema's error), no change,
    // a read-only user.
    let (status, body) = propose(
        &api,
        &member,
        &plan,
        json!([order_rule(json!({"type": "numbr"}), &[])]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "rules", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Order Completed")),
        "the error names the rule: {body}"
    );
    let (status, body) = propose(&api, &member, &plan, v1.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Two rules of one type, key and version: gateways would enforce the first while a
    // diff shows the second, so it is refused.
    let (status, body) = propose(
        &api,
        &member,
        &plan,
        json!([
            order_rule(json!({"type": "string"}), &[]),
            order_rule(json!({"type": "number"}), &["total"])
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "rules[1]", "{body}");
    let (status, body) = propose(&api, &viewer, &plan, wanted.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The queue, filtered; one request with its diff in JSON and text.
    let (status, body) = api
        .get(
            &viewer,
            &format!("/api/v1/change-requests?status=OPEN&author={member_id}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["data"]["changeRequests"].as_array().expect("list");
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["id"], member_cr.as_str());
    let (status, body) = api
        .get(
            &viewer,
            &format!("/api/v1/change-requests?author={admin_id}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequests"], json!([]));
    let (status, body) = api
        .get(&viewer, "/api/v1/change-requests?status=MERGED")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .get(&viewer, &format!("/api/v1/change-requests/{member_cr}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rule = &body["data"]["diff"]["rules"][0];
    assert_eq!(rule["change"], "changed", "{body}");
    assert_eq!(rule["requiredAdded"], json!(["properties.total"]), "{body}");
    let text = body["data"]["diffText"].as_str().expect("text");
    assert!(
        text.contains("~ TRACK \"Order Completed\" v1\n    + required properties.total"),
        "{text}"
    );

    // Who may not decide: the viewer, a member (no publish right), the admin withdrawing
    // someone else's request.
    let (status, body) = act(&api, &viewer, &member_cr, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = act(&api, &member, &member_cr, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = act(&api, &admin, &member_cr, "withdraw", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not_author")),
        "{body}"
    );
    let (status, body) = act(&api, &owner, "cr_missing", "approve", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The admin's own proposal: not approvable by the admin.
    let (status, body) = propose(
        &api,
        &admin,
        &plan,
        json!([order_rule(json!({"type": "number"}), &[]), signed_up_rule()]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin_cr = cr_id(&body);
    let (status, body) = act(&api, &admin, &admin_cr, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("own_request")),
        "{body}"
    );
    // Approving what changed since it was read is refused.
    let (status, body) = act(
        &api,
        &owner,
        &admin_cr,
        "approve",
        json!({"updatedAt": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The owner approves it: version 2.
    let (status, body) = act(&api, &owner, &admin_cr, "approve", json!({"comment": "ok"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequest"]["status"], "PUBLISHED");
    assert_eq!(body["data"]["changeRequest"]["publishedVersion"], 2);
    assert_eq!(published_version(&api, &owner, &plan).await, 2);

    // The member's proposal now starts from a stale version: never merged silently.
    let (_, body) = api
        .get(&owner, &format!("/api/v1/change-requests/{member_cr}"))
        .await;
    assert_eq!(body["data"]["changeRequest"]["stale"], true, "{body}");
    let (status, body) = act(&api, &owner, &member_cr, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rebase")),
        "{body}"
    );
    assert_eq!(published_version(&api, &owner, &plan).await, 2);
    // Only its author rebases; the changes carry over rule by rule.
    let (status, body) = act(&api, &owner, &member_cr, "rebase", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = act(&api, &member, &member_cr, "rebase", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequest"]["baseVersion"], 2);
    assert_eq!(body["data"]["changeRequest"]["stale"], false);
    assert_eq!(
        body["data"]["rules"],
        json!([
            order_rule(json!({"type": "number"}), &["total"]),
            signed_up_rule()
        ])
    );
    // Approved: version 3, enforced by the gateway within a second.
    let (status, body) = act(&api, &owner, &member_cr, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequest"]["publishedVersion"], 3);
    let approved = Instant::now();
    while blocked(&server, no_total.clone()).await != 1 {
        assert!(
            approved.elapsed() < Duration::from_secs(1),
            "version 3 not enforced within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A decided request stays decided.
    let (status, body) = act(
        &api,
        &owner,
        &member_cr,
        "reject",
        json!({"comment": "late"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Both sides changed the same rule: the rebase names it and merges nothing, until the
    // author says which rules they want.
    let v3 = json!([
        order_rule(json!({"type": "number"}), &["total"]),
        signed_up_rule()
    ]);
    let as_string = json!([
        order_rule(json!({"type": "string"}), &["total"]),
        signed_up_rule()
    ]);
    let as_integer = json!([
        order_rule(json!({"type": "integer"}), &["total"]),
        signed_up_rule()
    ]);
    let (status, body) = propose(&api, &member, &plan, as_string.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let conflicting = cr_id(&body);
    let (status, body) = propose(&api, &admin, &plan, as_integer.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = cr_id(&body);
    let (status, body) = act(&api, &owner, &first, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = act(&api, &member, &conflicting, "rebase", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("TRACK \"Order Completed\" v1")),
        "{body}"
    );
    let (_, body) = api
        .get(&owner, &format!("/api/v1/change-requests/{conflicting}"))
        .await;
    assert_eq!(body["data"]["changeRequest"]["baseVersion"], 3);
    assert_eq!(body["data"]["rules"], as_string);
    let (status, body) = act(
        &api,
        &member,
        &conflicting,
        "rebase",
        json!({"rules": v3, "description": "Back to numbers"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequest"]["baseVersion"], 4);

    // Rejected with a reason (a reason is required); withdrawn by its author.
    let (status, body) = act(&api, &owner, &conflicting, "reject", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = act(
        &api,
        &owner,
        &conflicting,
        "reject",
        json!({"comment": "numbers are fine as they are"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequest"]["status"], "REJECTED");
    assert_eq!(
        body["data"]["changeRequest"]["comment"],
        "numbers are fine as they are"
    );
    let (status, body) = propose(&api, &member, &plan, as_string.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let withdrawn = cr_id(&body);
    let (status, body) = act(&api, &member, &withdrawn, "withdraw", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["changeRequest"]["status"], "WITHDRAWN");

    // A workspace that allows self-approval lets the admin approve their own.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/settings",
            Some(json!({"allowSelfApproval": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["settings"]["allowSelfApproval"], true);
    let (status, body) = propose(&api, &admin, &plan, as_string).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let own = cr_id(&body);
    let (status, body) = act(&api, &admin, &own, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(published_version(&api, &owner, &plan).await, 5);
    let (status, body) = api
        .get(
            &owner,
            &format!("/api/v1/change-requests?status=PUBLISHED&trackingPlanId={plan}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["changeRequests"].as_array().map(Vec::len),
        Some(4),
        "{body}"
    );

    // Every step is in the audit trail, and the chain holds.
    let events = audited(
        &api,
        &owner,
        &[
            "change_request.create",
            "change_request.update",
            "change_request.approve",
            "change_request.reject",
            "change_request.withdraw",
            "access.denied.review_change_request",
            "access.denied.amend_change_request",
        ],
    )
    .await;
    let publish = events
        .iter()
        .find(|e| e["type"] == "tracking_plan.publish")
        .expect("a publish");
    assert_eq!(
        publish["after"]["changeRequestId"],
        own.as_str(),
        "{publish}"
    );
    chain_holds(db).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_requests_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_requests_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}
