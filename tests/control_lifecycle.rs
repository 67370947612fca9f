//! The onboarding checklist through the API, on SQLite and PostgreSQL, with the control
//! plane's clock moved (no sleeps): an invite with source access, a justification and an
//! end date; the one-time link; re-invite and withdrawal; the grant that results keeps
//! its justification and approver, shows in the evidence report, and ends by itself.

mod common;

use chrono::{TimeDelta, Utc};
use common::control::{Api, chain_holds, server_with};
use common::databases::{self, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::clock::Clock;

fn link_of(body: &Value) -> String {
    let link = body["data"]["invites"][0]["link"]
        .as_str()
        .unwrap_or_else(|| panic!("a link: {body}"));
    link[link.find("/setup/").expect("setup path")..].to_owned()
}

fn invite(expires: Option<chrono::DateTime<Utc>>, why: &str) -> Value {
    let mut one = json!({"email": "contractor@example.com",
        "permissions": [{"roleId": "source_read_only", "resources": [{"id": "demo", "type": "SOURCE"}]}],
        "justification": why});
    if let Some(at) = expires {
        one["accessExpiresAt"] = json!(at);
    }
    json!({ "invites": [one] })
}

async fn scenario(db: &TestDb) {
    let clock = Clock::adjustable();
    let shared = clock.clone();
    let (server, link) = server_with(db, move |c| c.control.clock = shared).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (viewer, _) = api
        .invited(&owner, &server, "viewer@example.com", "read_only")
        .await;
    let ends = clock.now() + TimeDelta::days(7);

    // Refused: a read-only user inviting, an end in the past, an end without grants.
    let (status, body) = api
        .post(&viewer, "/api/v1/invites", invite(Some(ends), "audit"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            invite(Some(clock.now() - TimeDelta::hours(1)), "audit"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [{"email": "x@example.com", "role": "member", "accessExpiresAt": ends}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Invited, re-invited (the first link dies), withdrawn (the second dies), invited
    // again and accepted.
    let (status, body) = api
        .post(&owner, "/api/v1/invites", invite(Some(ends), "Q1 audit"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = link_of(&body);
    let (status, body) = api
        .post(&owner, "/api/v1/invites", invite(Some(ends), "Q1 audit"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = link_of(&body);
    let (status, _) = api.accept(&first, "contractor@example.com").await;
    assert!(status.is_client_error(), "a superseded link: {status}");
    let (status, body) = api
        .call(
            &owner,
            reqwest::Method::DELETE,
            "/api/v1/invites?emails[0]=contractor@example.com",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.accept(&second, "contractor@example.com").await;
    assert!(
        status.is_client_error(),
        "a withdrawn invite's link: {status}"
    );
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            invite(Some(ends), "Q1 audit: read the demo source"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = link_of(&body);
    let (status, body) = api.accept(&third, "contractor@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let contractor = body["data"]["secret"].as_str().expect("token").to_owned();
    let contractor_id = body["data"]["user"]["id"].as_str().expect("id").to_owned();
    let (status, _) = api.accept(&third, "contractor@example.com").await;
    assert!(status.is_client_error(), "a link works once: {status}");

    // The grant keeps why and who; the evidence report says so.
    let (_, body) = api.get(&owner, "/api/v1/grants").await;
    let grant = body["data"]["grants"]
        .as_array()
        .and_then(|g| {
            g.iter()
                .find(|g| g["principal"]["id"] == contractor_id.as_str())
        })
        .unwrap_or_else(|| panic!("the contractor's grant: {body}"))
        .clone();
    assert_eq!(
        grant["justification"], "Q1 audit: read the demo source",
        "{grant}"
    );
    assert!(grant["expiresAt"].is_string(), "{grant}");
    let (_, body) = api
        .get(&owner, &format!("/api/v1/evidence/users/{contractor_id}"))
        .await;
    let demo = &body["data"]["report"]["access"][0];
    assert_eq!(demo["resource"], "source:demo", "{body}");
    assert_eq!(demo["justification"], "Q1 audit: read the demo source");
    assert_eq!(body["data"]["report"]["roleSet"]["action"], "invite.create");
    assert_eq!(
        demo["approvedBy"], body["data"]["report"]["roleSet"]["by"],
        "{body}"
    );

    // The access works, and ends by itself.
    let (status, body) = api.get(&contractor, "/api/v1/sources/demo").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    clock.advance(TimeDelta::days(8));
    let (status, body) = api.get(&contractor, "/api/v1/sources/demo").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a scoped member past their grant: {body}"
    );

    chain_holds(db).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}
