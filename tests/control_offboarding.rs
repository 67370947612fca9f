//! Offboarding end to end through the API, on SQLite and PostgreSQL: the dry run changes
//! nothing; carried out, what the leaver owned goes to the successor, their access ends
//! with the machine credentials they made, a removal record stays, and the write keys they
//! could read are rotated in one call. Every refusal is tested.

mod common;

use common::control::{Api, chain_holds, server, track, until};
use common::databases::{self, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn offboard(api: &Api, token: &str, user: &str, body: Value) -> (StatusCode, Value) {
    api.post(token, &format!("/api/v1/users/{user}/offboard"), body)
        .await
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().or_else(|| v["id"].as_str()))
        .collect()
}

async fn scenario(db: &TestDb) {
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (leaver, leaver_id) = api
        .invited(&owner, &server, "leaver@example.com", "admin")
        .await;
    let (successor, successor_id) = api
        .invited(&owner, &server, "successor@example.com", "member")
        .await;
    let (viewer, viewer_id) = api
        .invited(&owner, &server, "viewer@example.com", "read_only")
        .await;

    // What the leaver owns and holds: a plan, an open change request, a gateway's node
    // credential, a local group.
    let (status, body) = api
        .post(
            &leaver,
            "/api/v1/tracking-plans",
            json!({"name": "Checkout"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan")
        .to_owned();
    let (status, body) = api
        .post(
            &leaver,
            &format!("/api/v1/tracking-plans/{plan}/change-requests"),
            json!({"description": "first rules", "rules": [
                {"type": "TRACK", "key": "Paid", "version": 1, "jsonSchema": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let proposal = body["data"]["changeRequest"]["id"]
        .as_str()
        .expect("cr")
        .to_owned();
    let (status, body) = api
        .post(
            &leaver,
            "/api/v1/nodes",
            json!({"name": "edge-1", "role": "gateway"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let node = body["data"]["secret"].as_str().expect("secret").to_owned();
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
            json!({"emails": ["leaver@example.com"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Refusals: who may not offboard, themselves, a missing or the same successor.
    let plan_of = |who: &str| json!({"successorId": who});
    let (status, body) = offboard(&api, &viewer, &leaver_id, plan_of(&successor_id)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = offboard(&api, &successor, &leaver_id, plan_of(&viewer_id)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = offboard(&api, &leaver, &leaver_id, plan_of(&successor_id)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = offboard(&api, &admin, &leaver_id, plan_of("usr_nobody")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = offboard(&api, &admin, &leaver_id, plan_of(&leaver_id)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = offboard(&api, &admin, "usr_nobody", plan_of(&successor_id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // An admin may not offboard an owner: that is an ownership transfer.
    let (_, body) = api.get(&owner, "/api/v1/users?pagination[count]=200").await;
    let owner_id = body["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == "owner@example.com")
        .and_then(|u| u["id"].as_str())
        .expect("owner id")
        .to_owned();
    let (status, body) = offboard(&api, &admin, &owner_id, plan_of(&successor_id)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The dry run (the default) lists everything and changes nothing.
    let (status, body) = offboard(&api, &admin, &leaver_id, plan_of(&successor_id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["data"]["offboarding"];
    assert_eq!(report["dryRun"], true);
    assert!(report["recordId"].is_null());
    assert_eq!(
        ids(&report["transferred"]["trackingPlans"]),
        [plan.as_str()]
    );
    assert_eq!(
        ids(&report["transferred"]["changeRequests"]),
        [proposal.as_str()]
    );
    assert_eq!(report["revoked"]["nodeCredentials"][0]["name"], "edge-1");
    assert_eq!(report["revoked"]["localGroups"], json!(["analysts"]));
    assert_eq!(
        report["revoked"]["tokens"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        report["rotateIfShared"][0]["sourceId"], "demo",
        "an admin could read every source: {report}"
    );
    let (status, _) = api.get(&leaver, "/api/v1/").await;
    assert_eq!(status, StatusCode::OK, "the dry run changed nothing");

    // Carried out.
    let (status, body) = offboard(
        &api,
        &admin,
        &leaver_id,
        json!({"successorId": successor_id, "dryRun": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = body["data"]["offboarding"].clone();
    let record = report["recordId"].as_str().expect("record").to_owned();
    assert_eq!(report["dryRun"], false);
    // Their access ends, and so does the node credential they made (they saw its secret).
    let (status, _) = api.get(&leaver, "/api/v1/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.get(&node, "/internal/v1/catalog?wait=0").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // What they owned is the successor's.
    let (_, body) = api
        .get(&admin, &format!("/api/v1/change-requests/{proposal}"))
        .await;
    assert_eq!(
        body["data"]["changeRequest"]["authorId"],
        successor_id.as_str()
    );
    let (_, body) = offboard(&api, &admin, &successor_id, plan_of(&viewer_id)).await;
    let theirs = &body["data"]["offboarding"]["transferred"];
    assert_eq!(ids(&theirs["trackingPlans"]), [plan.as_str()], "{body}");
    let (_, body) = api
        .get(&owner, &format!("/api/v1/groups/{group}/users"))
        .await;
    assert!(
        !body.to_string().contains("leaver@example.com"),
        "still in the group: {body}"
    );
    // The removal record.
    let (status, body) = api
        .get(&admin, &format!("/api/v1/offboardings/{record}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["removal"]["email"], "leaver@example.com");
    assert_eq!(body["data"]["removal"]["report"], report);
    let (status, body) = api
        .get(&viewer, &format!("/api/v1/offboardings/{record}"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, body) = api.get(&admin, "/api/v1/offboardings").await;
    assert_eq!(ids(&body["data"]["removals"]), [record.as_str()]);

    // The write keys they could read, rotated in one call; the old one ends at once
    // (overlap 0), the new one works; once only.
    let rotate = format!("/api/v1/offboardings/{record}/rotate-write-keys");
    let (status, body) = api.post(&viewer, &rotate, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api.post(&admin, &rotate, json!({"overlapHours": 0})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated = &body["data"]["rotated"][0];
    assert_eq!(rotated["sourceId"], "demo");
    let fresh = rotated["writeKey"].as_str().expect("new key").to_owned();
    until(&server, "demo-write-key", StatusCode::UNAUTHORIZED).await;
    until(&server, &fresh, StatusCode::OK).await;
    assert_eq!(
        track(&server, &fresh, "after-rotation").await,
        StatusCode::OK
    );
    let (status, body) = api.post(&admin, &rotate, json!({"overlapHours": 0})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // An owner who leaves hands ownership on: the successor becomes an owner, and only
    // an owner may do it.
    let (co_owner, co_owner_id) = api
        .invited(&owner, &server, "co-owner@example.com", "admin")
        .await;
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/users/{co_owner_id}/permissions"),
            Some(json!({"permissions": [{"roleId": "owner",
                "resources": [{"id": "default", "type": "WORKSPACE"}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = offboard(
        &api,
        &admin,
        &co_owner_id,
        json!({"successorId": viewer_id, "dryRun": false}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = offboard(
        &api,
        &owner,
        &co_owner_id,
        json!({"successorId": viewer_id, "dryRun": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["offboarding"]["transferred"]["ownership"],
        true
    );
    let (_, body) = api.get(&owner, &format!("/api/v1/users/{viewer_id}")).await;
    assert_eq!(body["data"]["user"]["role"], "owner", "{body}");
    let (status, _) = api.get(&co_owner, "/api/v1/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Audited, and the chain holds.
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?action=user.offboard")
        .await;
    assert_eq!(
        body["data"]["events"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let (_, body) = api
        .get(
            &owner,
            "/api/v1/audit-events?action=offboarding.rotate_write_keys",
        )
        .await;
    assert_eq!(
        body["data"]["events"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    chain_holds(db).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}
