//! Regression tests for the control plane's privilege holes (each failed before its fix):
//! tokens acting as someone else, setup and invite links outliving their reason, labels
//! as an access path, file destinations reaching Sluice's own files, the locked-out
//! owner, and owners unmade by admins.

mod common;

use common::control::{Api, error_type, server};
use common::databases::{self, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::control::bootstrap;

/// The path of a link the API answered with (`http://…/setup/…` → `/setup/…`).
fn link_path(body: &Value, index: usize) -> String {
    let link = body["data"]["invites"][index]["link"]
        .as_str()
        .expect("link");
    link[link.find("/setup/").expect("setup path")..].to_owned()
}

/// Invites `email` as `role`; returns the link's path.
async fn invite(api: &Api, token: &str, email: &str, role: &str) -> String {
    let (status, body) = api
        .post(
            token,
            "/api/v1/invites",
            json!({"invites": [{"email": email, "role": role}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    link_path(&body, 0)
}

/// A new person of `role`; returns their token and user id.
async fn person(api: &Api, owner: &str, email: &str, role: &str) -> (String, String) {
    let link = invite(api, owner, email, role).await;
    let (status, body) = api.accept(&link, email).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["data"]["secret"].as_str().expect("token").to_owned(),
        body["data"]["user"]["id"].as_str().expect("id").to_owned(),
    )
}

async fn own_token_id(api: &Api, token: &str, user: &str) -> String {
    let (status, body) = api.get(token, "/api/v1/tokens?pagination[count]=200").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["userId"] == user && t["revokedAt"].is_null())
        .and_then(|t| t["id"].as_str())
        .expect("a live token of the user")
        .to_owned()
}

async fn owner_id(api: &Api, owner: &str) -> String {
    let (_, body) = api.get(owner, "/api/v1/users").await;
    body["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == "owner@example.com")
        .and_then(|u| u["id"].as_str())
        .expect("owner")
        .to_owned()
}

async fn sqlite() -> (TestDb, common::TestServer, Api, String) {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    (db, server, api, owner)
}

#[tokio::test]
async fn nobody_rotates_mints_or_revokes_a_token_that_acts_as_someone_else() {
    let (_db, _server, api, owner) = sqlite().await;
    let owner_user = owner_id(&api, &owner).await;
    let (admin, admin_user) = person(&api, &owner, "admin@example.com", "admin").await;
    let owner_token = own_token_id(&api, &admin, &owner_user).await;

    // Rotating the owner's token would hand the admin a secret acting as the owner.
    let (status, body) = api
        .post(
            &admin,
            &format!("/api/v1/tokens/{owner_token}/rotate"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Minting one for the owner likewise (owners included: nobody holds another's).
    for who in [&admin, &owner] {
        let (status, body) = api
            .post(
                who,
                "/api/v1/tokens",
                json!({"name": "x", "scopes": ["workspace:read"], "expiresInDays": 1,
                       "userId": if *who == owner { &admin_user } else { &owner_user }}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // Revoking an owner's token is for owners only (else an admin locks owners out).
    let (status, body) = api
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/tokens/{owner_token}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api.get(&owner, "/api/v1/").await;
    assert_eq!(status, StatusCode::OK, "the owner's token still works");

    // An admin's own token rotates; the audit actor is the caller.
    let admin_token = own_token_id(&api, &admin, &admin_user).await;
    let (status, body) = api
        .post(
            &admin,
            &format!("/api/v1/tokens/{admin_token}/rotate"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated = body["data"]["secret"].as_str().expect("secret").to_owned();
    let wide = body["data"]["token"]["id"].as_str().expect("id").to_owned();
    assert_eq!(body["data"]["token"]["userId"], admin_user);
    let (status, body) = api.get(&admin, "/api/v1/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_type(&body), "token_revoked");
    let (status, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["data"]["events"].as_array().expect("events");
    let rotation = events
        .iter()
        .find(|e| e["type"] == "token.rotate")
        .expect("a token.rotate event");
    assert_eq!(
        rotation["actor"], admin_user,
        "actor is the caller: {rotation}"
    );

    // A narrow token cannot mint a broader one, nor rotate its way to one.
    let (status, body) = api
        .post(
            &rotated,
            "/api/v1/tokens",
            json!({"name": "narrow", "scopes": ["members:write", "workspace:read"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let narrow = body["data"]["secret"].as_str().expect("secret").to_owned();
    let (status, body) = api
        .post(
            &narrow,
            "/api/v1/tokens",
            json!({"name": "wide", "scopes": ["sources:write"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post(&narrow, &format!("/api/v1/tokens/{wide}/rotate"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Absurd lifetimes are a 400, not a crash.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "x", "scopes": ["workspace:read"], "expiresInDays": 4_000_000_000u64}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_setup_link_dies_once_an_owner_exists_by_any_path() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    bootstrap::owner(&db.store, "ops@example.com", chrono::Utc::now())
        .await
        .expect("bootstrap");
    let page = common::client()
        .get(format!("{}{link}", api.base))
        .send()
        .await
        .expect("form");
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let (status, body) = api.accept(&link, "late@example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn withdrawn_and_superseded_invites_are_dead() {
    let (_db, _server, api, owner) = sqlite().await;
    // Re-inviting with another role kills the first link.
    let first = invite(&api, &owner, "a@example.com", "admin").await;
    let second = invite(&api, &owner, "a@example.com", "member").await;
    let (status, body) = api.accept(&first, "a@example.com").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "superseded admin link: {body}"
    );
    // Withdrawing kills the link.
    let withdrawn = invite(&api, &owner, "b@example.com", "admin").await;
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            "/api/v1/invites?emails[0]=b@example.com",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.accept(&withdrawn, "b@example.com").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "withdrawn admin link: {body}"
    );
    // The live one works, with its role.
    let (status, body) = api.accept(&second, "a@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["user"]["role"], "member");

    // A removed person can be invited again; their old token stays dead.
    let old = body["data"]["secret"].as_str().expect("token").to_owned();
    let id = body["data"]["user"]["id"].as_str().expect("id").to_owned();
    let (status, body) = api
        .call(&owner, Method::DELETE, &format!("/api/v1/users/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = invite(&api, &owner, "a@example.com", "read_only").await;
    let (status, body) = api.accept(&again, "a@example.com").await;
    assert_eq!(status, StatusCode::OK, "re-invited: {body}");
    assert_eq!(body["data"]["user"]["role"], "read_only");
    let (status, _) = api.get(&old, "/api/v1/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old token came back");
}

async fn grant(api: &Api, owner: &str, user: &str, label: (&str, &str), level: &str) {
    let target = json!({"kind": "source_label", "key": label.0, "value": label.1});
    grant_on(api, owner, user, target, level).await;
}

/// Gives `user` a level on one source.
async fn grant_source(api: &Api, owner: &str, user: &str, source: &str, level: &str) {
    grant_on(
        api,
        owner,
        user,
        json!({"kind": "source", "id": source}),
        level,
    )
    .await;
}

async fn grant_on(api: &Api, owner: &str, user: &str, target: Value, level: &str) {
    let (status, body) = api
        .post(
            owner,
            "/api/v1/grants",
            json!({"principal": {"type": "user", "id": user}, "resource": target, "level": level}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn labels(api: &Api, token: &str, method: Method, source: &str, labels: Value) -> StatusCode {
    let (status, _) = api
        .call(
            token,
            method,
            &format!("/api/v1/sources/{source}/labels"),
            Some(json!({ "labels": labels })),
        )
        .await;
    status
}

#[tokio::test]
async fn labels_that_carry_grants_are_changed_by_owners_and_admins_only() {
    let (_db, _server, api, owner) = sqlite().await;
    for (slug, env) in [("dev-src", "dev"), ("prod-src", "prod")] {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/sources",
                json!({"slug": slug, "labels": [{"key": "environment", "value": env}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (member, member_id) = person(&api, &owner, "m@example.com", "member").await;
    let (other, other_id) = person(&api, &owner, "o@example.com", "member").await;
    grant(&api, &owner, &member_id, ("environment", "dev"), "full").await;
    grant(
        &api,
        &owner,
        &other_id,
        ("environment", "prod"),
        "no_access",
    )
    .await;
    let (status, _) = api.get(&other, "/api/v1/sources/prod-src").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "prod is hidden from o@");

    // Relabelling prod as dev would give the member `full` on it: refused.
    let dev = json!([{"key": "environment", "value": "dev"}]);
    assert_eq!(
        labels(&api, &member, Method::POST, "prod-src", dev.clone()).await,
        StatusCode::FORBIDDEN
    );
    // Taking prod's label off would lift o@'s restriction: refused.
    assert_eq!(
        labels(&api, &member, Method::PUT, "prod-src", json!([])).await,
        StatusCode::FORBIDDEN
    );
    let (status, _) = api.get(&other, "/api/v1/sources/prod-src").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "still hidden");
    // Nor can a new source start out with a governed label.
    let (status, body) = api
        .post(
            &member,
            "/api/v1/sources",
            json!({"slug": "mine", "labels": [{"key": "environment", "value": "dev"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Labels no grant names are the member's to change.
    let team = json!([{"key": "team", "value": "web"}]);
    assert_eq!(
        labels(&api, &member, Method::POST, "prod-src", team.clone()).await,
        StatusCode::OK
    );
    // Owners may move governed labels.
    assert_eq!(
        labels(&api, &owner, Method::POST, "prod-src", dev).await,
        StatusCode::OK
    );

    // The label limit holds across repeated adds.
    let many = |from: usize| -> Value {
        (from..from + 30)
            .map(|n| json!({"key": "k", "value": format!("v{n}")}))
            .collect()
    };
    assert_eq!(
        labels(&api, &owner, Method::POST, "dev-src", many(0)).await,
        StatusCode::OK
    );
    assert_eq!(
        labels(&api, &owner, Method::POST, "dev-src", many(30)).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn file_destinations_take_a_bare_file_name_only() {
    let (_db, _server, api, owner) = sqlite().await;
    for path in [
        "../control.db",
        "/etc/passwd",
        "data/secret.key",
        ".hidden",
        "a\\b",
        "",
    ] {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/destinations",
                json!({"sourceId": "demo", "metadataId": "file", "settings": {"path": path}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path:?}: {body}");
        assert_eq!(body["errors"][0]["field"], "settings.path", "{body}");
    }
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"sourceId": "demo", "metadataId": "file", "settings": {"path": "events.ndjson"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_locked_out_owner_comes_back_through_the_host_only() {
    let (db, _server, api, owner) = sqlite().await;
    let owner_user = owner_id(&api, &owner).await;
    let token = own_token_id(&api, &owner, &owner_user).await;
    let (status, _) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/tokens/{token}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.get(&owner, "/api/v1/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "locked out");
    // Bootstrap refuses (there is an owner); recovery on the store works.
    assert!(
        bootstrap::owner(&db.store, "owner@example.com", chrono::Utc::now())
            .await
            .is_err()
    );
    let (user, fresh) = bootstrap::recover_owner(
        &db.store,
        "default",
        "owner@example.com",
        chrono::Utc::now(),
    )
    .await
    .expect("recover");
    assert_eq!(user.id, owner_user);
    let fresh = fresh.expose().to_owned();
    let (status, body) = api.get(&fresh, "/api/v1/audit-events").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.to_string().contains("owner.recover"),
        "recovery is audited: {body}"
    );
    // An unknown workspace is refused.
    assert!(
        bootstrap::recover_owner(&db.store, "nope", "x@example.com", chrono::Utc::now())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_admin_cannot_unmake_an_owner_through_an_owner_group() {
    let (_db, _server, api, owner) = sqlite().await;
    let (admin, _) = person(&api, &owner, "admin@example.com", "admin").await;
    let (_, member_id) = person(&api, &owner, "m@example.com", "member").await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/groups",
            json!({"name": "owners", "role": "owner"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = body["data"]["userGroup"]["id"]
        .as_str()
        .expect("group id")
        .to_owned();
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/groups/{group}/users"),
            json!({"emails": ["m@example.com"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/groups/{group}/users/{member_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/groups/{group}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

async fn catalog_revision(api: &Api, token: &str) -> u64 {
    let (status, body) = api.get(token, "/api/v1/catalog").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["catalog"]["revision"]
        .as_u64()
        .expect("revision")
}

#[tokio::test]
async fn only_catalog_changes_move_the_catalog_revision() {
    let (_db, server, api, owner) = sqlite().await;
    let (reader, reader_id) = person(&api, &owner, "r@example.com", "read_only").await;
    let before = catalog_revision(&api, &owner).await;
    // Refused writes (audited), tokens and grants are no catalog change.
    for _ in 0..3 {
        let (status, _) = api
            .post(&reader, "/api/v1/sources", json!({"slug": "nope"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "ci", "scopes": ["sources:read"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    grant(
        &api,
        &owner,
        &reader_id,
        ("environment", "dev"),
        "read_only",
    )
    .await;
    let node = node_credential(&api, &owner, "gateway").await;
    assert_eq!(catalog_revision(&api, &owner).await, before);
    // A remote gateway's long poll sees nothing new.
    let poll = common::client()
        .get(format!(
            "{}/internal/v1/catalog?after={before}&wait=1",
            api.base
        ))
        .bearer_auth(&node)
        .send()
        .await
        .expect("long poll");
    assert_eq!(poll.status(), StatusCode::NOT_MODIFIED);
    // A source is a catalog change: the revision moves and the poll answers at once.
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "fresh"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let after = catalog_revision(&api, &owner).await;
    assert!(after > before, "{after} > {before}");
    let poll = common::client()
        .get(format!(
            "{}/internal/v1/catalog?after={before}&wait=5",
            api.base
        ))
        .bearer_auth(&node)
        .send()
        .await
        .expect("long poll");
    assert_eq!(poll.status(), StatusCode::OK);
    let body: Value = poll.json().await.expect("json");
    assert_eq!(body["data"]["revision"], after);
    drop(server);
}

#[tokio::test]
async fn made_up_tokens_and_guessed_links_share_their_address_budget() {
    let db = databases::sqlite().await;
    let (server, link) = common::control::server_with(&db, |c| {
        c.control.rate_limit_per_minute = 5;
    })
    .await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    // Each made-up token is well formed (its checksum holds) and unknown.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let fake = sluice::control::token::issue().expect("random");
        let (status, _) = api.get(fake.plaintext.expose(), "/api/v1/").await;
        statuses.push(status);
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "fresh made-up tokens each got a budget: {statuses:?}"
    );
    // Guessing setup links and fetching the OpenAPI document count there too.
    let guess = common::client()
        .get(format!("{}/setup/not-a-link", api.base))
        .send()
        .await
        .expect("guess");
    assert_eq!(guess.status(), StatusCode::TOO_MANY_REQUESTS);
    // A real token keeps a budget of its own.
    let (status, body) = api.get(&owner, "/api/v1/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn node_credential(api: &Api, owner: &str, role: &str) -> String {
    let (status, body) = api
        .post(
            owner,
            "/api/v1/nodes",
            json!({"name": format!("edge-{role}"), "role": role}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["data"]["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("slc_node_"));
    secret
}

async fn feed(api: &Api, credential: &str) -> (StatusCode, Value) {
    let response = common::client()
        .get(format!("{}/internal/v1/catalog?wait=0", api.base))
        .bearer_auth(credential)
        .send()
        .await
        .expect("catalog");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn only_delivery_nodes_receive_destination_credentials() {
    let (_db, _server, api, owner) = sqlite().await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"sourceId": "demo", "metadataId": "webhook",
                   "settings": {"url": "https://hooks.example.com/T0/B0/path-secret?token=query-secret",
                                "secret": "signing-secret", "headers": {"X-Key": "header-secret"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secrets = [
        "path-secret",
        "query-secret",
        "signing-secret",
        "header-secret",
    ];

    // No person's token reads the feed, the owner's included, nor can one be made for it.
    let (status, _) = feed(&api, &owner).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "edge", "scopes": ["catalog:read"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let gateway = node_credential(&api, &owner, "gateway").await;
    let (status, body) = feed(&api, &gateway).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.to_string();
    assert!(text.contains("hooks.example.com"), "{text}");
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a gateway node got {secret}: {text}"
        );
    }
    let delivery = node_credential(&api, &owner, "delivery").await;
    let (status, body) = feed(&api, &delivery).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.to_string();
    for secret in secrets {
        assert!(text.contains(secret), "a delivery node lacks {secret}");
    }
    // A node credential is good for nothing else, and dies when revoked.
    let (status, _) = api.get(&delivery, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, body) = api.get(&owner, "/api/v1/nodes").await;
    let id = body["data"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["role"] == "delivery")
        .and_then(|n| n["id"].as_str())
        .expect("delivery node")
        .to_owned();
    let (status, _) = api
        .call(&owner, Method::DELETE, &format!("/api/v1/nodes/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = feed(&api, &delivery).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_type(&body), "token_revoked");
    // Revoking is its DELETE: it is no longer read, listed or revoked again.
    let (status, _) = api.get(&owner, &format!("/api/v1/nodes/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = api.get(&owner, "/api/v1/nodes").await;
    let listed = body["data"]["nodes"].as_array().expect("nodes");
    assert!(listed.iter().all(|n| n["id"] != id.as_str()), "{body}");
    assert_eq!(listed.len(), 1, "the gateway credential stays: {body}");
    let (status, _) = api
        .call(&owner, Method::DELETE, &format!("/api/v1/nodes/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_refusal_has_the_envelope_and_the_first_cursor_comes_back() {
    let (_db, _server, api, owner) = sqlite().await;
    for (method, path) in [
        (Method::PATCH, "/api/v1/labels"),
        (Method::DELETE, "/api/v1/sources"),
        (Method::PUT, "/api/v1/roles"),
    ] {
        let (status, body) = api.call(&owner, method.clone(), path, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(
            error_type(&body),
            "method_not_allowed",
            "{method} {path}: {body}"
        );
    }
    let (status, body) = api.get(&owner, "/api/v1/sources?pagination[count]=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let current = body["data"]["pagination"]["current"]
        .as_str()
        .expect("current")
        .to_owned();
    let (status, again) = api
        .get(
            &owner,
            &format!("/api/v1/sources?pagination[count]=1&pagination[cursor]={current}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["data"]["sources"], body["data"]["sources"]);
}

#[tokio::test]
async fn a_hidden_source_id_never_shows_through_a_visible_destination() {
    let (_db, _server, api, owner) = sqlite().await;
    let (status, body) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "secret-src"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"id": "shared", "sourceId": "demo", "metadataId": "file", "settings": {"path": "x.ndjson"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/destinations/shared",
            Some(json!({"sources": ["demo", "secret-src"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (member, member_id) = person(&api, &owner, "m@example.com", "member").await;
    grant_source(&api, &owner, &member_id, "secret-src", "no_access").await;
    for path in [
        "/api/v1/destinations/shared",
        "/api/v1/destinations",
        "/api/v1/sources/demo/connected-destinations",
    ] {
        let (status, body) = api.get(&member, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.to_string().contains("shared"), "{path}: {body}");
        assert!(!body.to_string().contains("secret-src"), "{path}: {body}");
    }
    // Editing the connections keeps the hidden one (it is not the member's to cut).
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/destinations/shared",
            Some(json!({"sources": ["demo"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&owner, "/api/v1/destinations/shared").await;
    assert_eq!(
        body["data"]["destination"]["sources"],
        json!(["demo", "secret-src"])
    );
}

#[tokio::test]
async fn plan_saves_audit_a_digest_and_exports_stream_every_page() {
    let (db, _server, api, owner) = sqlite().await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/tracking-plans",
            json!({"name": "Big", "type": "LIVE"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan id")
        .to_owned();
    let padding = "x".repeat(1_000);
    let rules = |n: usize| -> Value {
        (0..n)
            .map(|i| {
                json!({"type": "TRACK", "key": format!("Event {i}"), "version": 1,
                            "jsonSchema": {"type": "object", "description": padding}})
            })
            .collect()
    };
    for n in [300, 301] {
        let (status, body) = api
            .call(
                &owner,
                Method::PUT,
                &format!("/api/v1/tracking-plans/{plan}/rules"),
                Some(json!({ "rules": rules(n) })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?action=tracking_plan.publish")
        .await;
    let events = body["data"]["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    let newest = &events[0];
    assert!(
        newest.to_string().len() < 8_000,
        "a 300 kB plan's save is {} bytes of audit log",
        newest.to_string().len()
    );
    assert_eq!(newest["after"]["ruleCount"], 301);
    assert_eq!(
        newest["after"]["changes"]["added"]["names"],
        json!(["TRACK Event 300 v1"])
    );
    assert_ne!(
        newest["after"]["rulesSha256"],
        newest["before"]["rulesSha256"]
    );

    // More events than one export page, all of them, newest first, once each.
    for i in 0..1_100 {
        let mut c = db.store.change().await.expect("change");
        c.record(sluice::control::audit::Draft {
            time: chrono::Utc::now(),
            actor: sluice::control::audit::Actor::System,
            action: "test.fill".into(),
            resource_type: "test".into(),
            resource_id: format!("t{i}"),
            before: None,
            after: None,
            ip: None,
            user_agent: None,
        })
        .await
        .expect("record");
        c.commit().await.expect("commit");
    }
    let export = common::client()
        .get(format!(
            "{}/api/v1/audit-events?format=ndjson&action=test.fill",
            api.base
        ))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("export");
    assert_eq!(export.status(), StatusCode::OK);
    let text = export.text().await.expect("body");
    let ids: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("ndjson")["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("id")
        })
        .collect();
    assert_eq!(ids.len(), 1_100);
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    let csv = common::client()
        .get(format!(
            "{}/api/v1/audit-events?format=csv&action=test.fill",
            api.base
        ))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("body");
    assert_eq!(csv.lines().count(), 1_101, "header and every event");
}

#[tokio::test]
async fn destinations_the_guard_would_refuse_are_refused_when_made() {
    let (_db, _server, api, owner) = sqlite().await;
    for (settings, field) in [
        (
            json!({"url": "http://127.0.0.1:9090/metrics"}),
            "settings.url",
        ),
        (json!({"url": "http://localhost/x"}), "settings.url"),
        (json!({"url": "http://[::1]/x"}), "settings.url"),
        (
            json!({"url": "http://169.254.169.254/latest"}),
            "settings.url",
        ),
        (json!({"url": "ftp://example.com/x"}), "settings.url"),
        (
            json!({"url": "https://example.com/x", "headers": {"X-A": "ok\r\nX-Injected: 1"}}),
            "settings.headers.X-A",
        ),
        (
            json!({"url": "https://example.com/x", "headers": {"Bad Name": "v"}}),
            "settings.headers.Bad Name",
        ),
    ] {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/destinations",
                json!({"sourceId": "demo", "metadataId": "webhook", "settings": settings}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{settings}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    // A NATS server is reached like a webhook: private servers (the default one too),
    // anywhere in a server list, and other schemes are refused.
    for settings in [
        json!({"subject": "s"}),
        json!({"subject": "s", "url": "nats://10.0.0.5:4222"}),
        json!({"subject": "s", "url": "nats://nats.example.com:4222, 127.0.0.1:6379"}),
        json!({"subject": "s", "url": "redis://nats.example.com:6379"}),
    ] {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/destinations",
                json!({"sourceId": "demo", "metadataId": "nats", "settings": settings}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{settings}: {body}");
        assert_eq!(body["errors"][0]["field"], "settings.url", "{body}");
    }
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"sourceId": "demo", "metadataId": "nats",
                   "settings": {"subject": "s", "url": "tls://nats.example.com:4222"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn refused_changes_on_hidden_or_missing_resources_and_bad_links_are_audited() {
    let (_db, _server, api, owner) = sqlite().await;
    let (member, member_id) = person(&api, &owner, "m@example.com", "member").await;
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "hid"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    grant_source(&api, &owner, &member_id, "hid", "no_access").await;
    let hidden = api
        .call(&member, Method::DELETE, "/api/v1/sources/hid", None)
        .await;
    let missing = api
        .call(
            &member,
            Method::DELETE,
            "/api/v1/sources/nothing-here",
            None,
        )
        .await;
    assert_eq!(hidden.0, StatusCode::NOT_FOUND);
    assert_eq!(missing.0, hidden.0);
    assert_eq!(
        hidden.1.to_string().replace("hid", "X"),
        missing.1.to_string().replace("nothing-here", "X"),
        "a hidden source answers exactly like a missing one"
    );
    let (status, _) = api.accept("/setup/forged-link", "x@example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=50")
        .await;
    let events = body["data"]["events"].as_array().expect("events");
    let denied: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "access.denied.delete_source")
        .filter_map(|e| e["resourceId"].as_str())
        .collect();
    assert!(denied.contains(&"hid"), "{denied:?}");
    assert!(denied.contains(&"nothing-here"), "{denied:?}");
    assert!(
        events.iter().any(|e| e["type"] == "setup_link.refused"),
        "the forged link attempt is audited"
    );
    // Guessing on: every attempt is refused, but the address's further failures within
    // the minute are counted into its next event, not written one by one.
    for i in 0..15 {
        let (status, _) = api
            .accept(&format!("/setup/guess-{i}"), "x@example.com")
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    let refused = body["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "setup_link.refused")
        .count();
    assert_eq!(refused, 1, "one event per address per minute: {body}");
}

#[tokio::test]
async fn a_member_who_may_publish_never_reaches_a_hidden_source_through_its_plan() {
    let (db, server, api, owner) = sqlite().await;
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/settings",
            Some(json!({"membersCanPublish": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (member, member_id) = person(&api, &owner, "m@example.com", "member").await;
    let (_, body) = api
        .post(
            &owner,
            "/api/v1/tracking-plans",
            json!({"name": "P", "type": "LIVE"}),
        )
        .await;
    let plan = body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "hid"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/tracking-plans/{plan}/sources"),
            json!({"sourceId": "hid"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    grant_source(&api, &owner, &member_id, "hid", "no_access").await;
    let rules = json!({"rules": [{"type": "TRACK", "key": "E", "version": 1, "jsonSchema": {}}]});
    let (status, body) = api
        .call(
            &member,
            Method::PUT,
            &format!("/api/v1/tracking-plans/{plan}/rules"),
            Some(rules.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .call(
            &member,
            Method::DELETE,
            &format!("/api/v1/tracking-plans/{plan}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The owner publishes it.
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/tracking-plans/{plan}/rules"),
            Some(rules),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The store's files are the owner's alone.
    use std::os::unix::fs::PermissionsExt as _;
    if db.label == "sqlite" {
        for suffix in ["", "-wal"] {
            let path = std::path::Path::new(&db.url.trim_start_matches("sqlite://"))
                .with_file_name(format!("control.db{suffix}"));
            if let Ok(meta) = std::fs::metadata(&path) {
                assert_eq!(meta.permissions().mode() & 0o077, 0, "{}", path.display());
            }
        }
    }
    let served = server.config.log.dir.join("control.db");
    if let Ok(meta) = std::fs::metadata(&served) {
        assert_eq!(meta.permissions().mode() & 0o077, 0, "{}", served.display());
    }
}

#[tokio::test]
async fn a_source_scoped_invite_reaches_that_source_only_and_unknown_roles_are_refused() {
    let (_db, _server, api, owner) = sqlite().await;
    for slug in ["one", "other"] {
        let (status, _) = api
            .post(&owner, "/api/v1/sources", json!({"slug": slug}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [{"email": "s@example.com",
                "permissions": [{"roleId": "wizard", "resources": [{"id": "default", "type": "WORKSPACE"}]}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown role: {body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [{"email": "s@example.com",
                "permissions": [{"roleId": "source_admin", "resources": [{"id": "one", "type": "SOURCE"}]}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.accept(&link_path(&body, 0), "s@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let scoped = body["data"]["secret"].as_str().expect("token").to_owned();
    let id = body["data"]["user"]["id"].as_str().expect("id").to_owned();
    let (_, body) = api
        .get(&scoped, "/api/v1/sources?pagination[count]=50")
        .await;
    let seen: Vec<&str> = body["data"]["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(
        seen,
        vec!["one"],
        "an invite for one source widened: {body}"
    );
    let (status, _) = api.get(&scoped, "/api/v1/sources/other").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .post(&scoped, "/api/v1/sources/one/writekey", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "source_admin manages its keys");
    // getUser says it the same way.
    let (_, body) = api.get(&owner, &format!("/api/v1/users/{id}")).await;
    assert_eq!(
        body["data"]["user"]["permissions"],
        json!([{"roleId": "source_admin", "roleName": "Source Admin",
                "resources": [{"id": "one", "type": "SOURCE"}]}])
    );
    // Replacing with a workspace role makes them an ordinary member again.
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/users/{id}/permissions"),
            Some(json!({"permissions": [{"roleId": "read_only",
                "resources": [{"id": "default", "type": "WORKSPACE"}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api
        .get(&scoped, "/api/v1/sources?pagination[count]=50")
        .await;
    assert!(body.to_string().contains("other"), "{body}");
    // An admin may not make someone owner through permissions.
    let (admin, _) = person(&api, &owner, "a@example.com", "admin").await;
    let (status, body) = api
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{id}/permissions"),
            Some(json!({"permissions": [{"roleId": "owner",
                "resources": [{"id": "default", "type": "WORKSPACE"}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn the_matrix_cells_members_destinations_credentials_and_explain() {
    let (_db, _server, api, owner) = sqlite().await;
    let (member, member_id) = person(&api, &owner, "m@example.com", "member").await;
    let (reader, reader_id) = person(&api, &owner, "r@example.com", "read_only").await;
    // Members create destinations (create + connect, write on the source).
    let (status, body) = api
        .post(
            &member,
            "/api/v1/destinations",
            json!({"id": "mine", "sourceId": "demo", "metadataId": "webhook",
                   "settings": {"url": "https://hooks.example.com/p", "secret": "s3cr3t"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // But delete only with full on the destination, or on every source it serves.
    let (status, _) = api
        .call(&member, Method::DELETE, "/api/v1/destinations/mine", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    grant_source(&api, &owner, &member_id, "demo", "full").await;
    // explain says what the API will do, first.
    let (status, body) = api
        .get(
            &member,
            "/api/v1/access/explain?action=delete_destination&resourceType=destination&resourceId=mine",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["allowed"], true, "{body}");
    assert!(
        body.to_string().contains("full_on_connected_sources"),
        "{body}"
    );

    // Credentials: read_write reveals them (audited); read-only does not; reads redact.
    let (status, body) = api
        .get(&member, "/api/v1/destinations/mine/credentials")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["settings"]["secret"], "s3cr3t");
    let (status, body) = api
        .get(&reader, "/api/v1/destinations/mine/credentials")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, body) = api.get(&reader, "/api/v1/destinations/mine").await;
    assert!(!body.to_string().contains("s3cr3t"), "{body}");
    let (_, body) = api
        .get(
            &owner,
            "/api/v1/audit-events?action=destination.credentials.reveal",
        )
        .await;
    assert_eq!(body["data"]["events"][0]["actor"], member_id, "{body}");

    // explain: the compound create-and-connect decision, and your token's scopes.
    let (_, body) = api
        .get(
            &owner,
            &format!(
                "/api/v1/access/explain?userId={reader_id}&action=create_destination&sourceId=demo"
            ),
        )
        .await;
    assert_eq!(body["data"]["allowed"], false, "{body}");
    let (admin, _) = person(&api, &owner, "a@example.com", "admin").await;
    let (status, body) = api
        .post(
            &admin,
            "/api/v1/tokens",
            json!({"name": "ro", "scopes": ["workspace:read", "sources:read", "destinations:read"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let narrow = body["data"]["secret"].as_str().expect("secret").to_owned();
    let (_, body) = api
        .get(
            &narrow,
            "/api/v1/access/explain?action=create_destination&sourceId=demo",
        )
        .await;
    assert_eq!(body["data"]["allowed"], false, "{body}");
    assert_eq!(body["data"]["reason"], "scope_missing", "{body}");
    let (status, _) = api
        .post(
            &narrow,
            "/api/v1/destinations",
            json!({"sourceId": "demo", "metadataId": "file", "settings": {"path": "n.ndjson"}}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the API agrees with explain");
    // With full on the destination's every source, the member deletes it.
    let (status, body) = api
        .call(&member, Method::DELETE, "/api/v1/destinations/mine", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn review_findings_stay_closed() {
    let (_db, _server, api, owner) = sqlite().await;
    let (member, member_id) = person(&api, &owner, "m@example.com", "member").await;
    for slug in ["mine", "theirs", "hidden"] {
        let (status, _) = api
            .post(&owner, "/api/v1/sources", json!({"slug": slug}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    for (source, level) in [("mine", "full"), ("hidden", "no_access")] {
        grant_source(&api, &owner, &member_id, source, level).await;
    }
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"id": "shared", "sourceId": "mine", "metadataId": "file", "settings": {"path": "s.ndjson"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/destinations/shared",
            Some(json!({"sources": ["mine", "theirs"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // H1: cutting another source's connection takes full on it.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/destinations/shared",
            Some(json!({"sources": ["mine"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api
        .call(&member, Method::DELETE, "/api/v1/destinations/shared", None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a shared destination is not theirs"
    );
    // H2: forwarding into a hidden source answers as into a missing one.
    let hidden = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/mine/settings",
            Some(json!({"forwardingBlockedEventsTo": "hidden"})),
        )
        .await;
    let missing = api
        .call(
            &member,
            Method::PATCH,
            "/api/v1/sources/mine/settings",
            Some(json!({"forwardingBlockedEventsTo": "nowhere"})),
        )
        .await;
    assert_eq!(hidden.0, missing.0);
    assert_eq!(
        hidden.1.to_string().replace("hidden", "X"),
        missing.1.to_string().replace("nowhere", "X")
    );
    // M2: a member reading someone's permissions never sees hidden sources.
    let (_, body) = api
        .get(&member, &format!("/api/v1/users/{member_id}"))
        .await;
    assert!(!body.to_string().contains("\"hidden\""), "{body}");
    // M1: an admin cannot remove an owner whose ownership comes from a group.
    let (admin, _) = person(&api, &owner, "a@example.com", "admin").await;
    let (_, o2) = person(&api, &owner, "o2@example.com", "member").await;
    let (_, body) = api
        .post(
            &owner,
            "/api/v1/groups",
            json!({"name": "owners", "role": "owner"}),
        )
        .await;
    let group = body["data"]["userGroup"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = api
        .post(
            &owner,
            &format!("/api/v1/groups/{group}/users"),
            json!({"emails": ["o2@example.com"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call(&admin, Method::DELETE, &format!("/api/v1/users/{o2}"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // L2: a read-only destinations token reveals no credentials.
    let (_, body) = api
        .post(
            &admin,
            "/api/v1/tokens",
            json!({"name": "ro", "scopes": ["destinations:read"], "expiresInDays": 1}),
        )
        .await;
    let ro = body["data"]["secret"].as_str().expect("secret").to_owned();
    let (status, _) = api
        .get(&ro, "/api/v1/destinations/shared/credentials")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // L6: no two file destinations share a file or its rotations.
    for path in ["s.ndjson", "s.ndjson.1"] {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/destinations",
                json!({"sourceId": "mine", "metadataId": "file", "settings": {"path": path}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    // L3: node credentials go with the person who made them.
    let node = node_credential(&api, &admin, "delivery").await;
    let (status, _) = feed(&api, &node).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = api.get(&owner, "/api/v1/users").await;
    let admin_id = body["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == "a@example.com")
        .and_then(|u| u["id"].as_str())
        .expect("admin")
        .to_owned();
    let (status, _) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/users/{admin_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = feed(&api, &node).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn label_and_permission_changes_leave_a_full_trace() {
    let (_db, _server, api, owner) = sqlite().await;
    let (member, member_id) = person(&api, &owner, "m@example.com", "member").await;
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "hid"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    grant_source(&api, &owner, &member_id, "hid", "no_access").await;
    // A hidden source's labels: answered as missing, audited as the edit it was.
    assert_eq!(
        labels(
            &api,
            &member,
            Method::POST,
            "hid",
            json!([{"key": "team", "value": "x"}])
        )
        .await,
        StatusCode::NOT_FOUND
    );
    // Replacing permissions lifts the no_access grant: the audit shows it went.
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/users/{member_id}/permissions"),
            Some(json!({"permissions": [{"roleId": "member"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=50")
        .await;
    let events = body["data"]["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "access.denied.edit_source" && e["resourceId"] == "hid"),
        "{body}"
    );
    let replace = events
        .iter()
        .find(|e| e["type"] == "user.permissions.replace")
        .expect("replace event");
    assert!(
        replace["before"]
            .to_string()
            .contains("\"level\":\"no_access\""),
        "{replace}"
    );
    assert_eq!(replace["after"]["grants"], json!([]), "{replace}");
}

#[tokio::test]
async fn a_page_cursor_never_names_a_row_the_token_may_not_see() {
    let (_db, _server, api, owner) = sqlite().await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "ws", "scopes": ["workspace:read"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let narrow = body["data"]["secret"].as_str().expect("secret").to_owned();
    for path in [
        "/api/v1/sources?pagination[count]=1",
        "/api/v1/destinations?pagination[count]=1",
    ] {
        let (status, body) = api.get(&narrow, path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body["data"]["pagination"]["next"].is_null(),
            "{path}: a cursor past rows the token may not see: {body}"
        );
        assert!(!body.to_string().contains("demo"), "{body}");
    }
    // The owner's own token pages on.
    let (_, body) = api.get(&owner, "/api/v1/sources?pagination[count]=1").await;
    assert!(body["data"]["pagination"]["next"].is_string(), "{body}");
}

#[tokio::test]
async fn a_rate_limit_the_catalog_could_not_install_is_refused_at_the_api() {
    let (_db, _server, api, owner) = sqlite().await;
    for (rate, field) in [
        (
            json!({"requestsPerSecond": 0}),
            "rateLimit.requestsPerSecond",
        ),
        (
            json!({"requestsPerSecond": 5, "burst": 0}),
            "rateLimit.burst",
        ),
    ] {
        let (status, body) = api
            .call(
                &owner,
                Method::PATCH,
                "/api/v1/sources/demo",
                Some(json!({ "rateLimit": rate })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rate}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/demo",
            Some(json!({"rateLimit": {"requestsPerSecond": 5, "burst": 10}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// What the OpenAPI document allows, the server takes; what it cannot state is answered
/// with the status that says why (schemathesis with every check runs in CI; these are
/// the cases it found, kept as regressions).
#[tokio::test]
async fn the_api_answers_as_its_document_says() {
    let (_db, _server, api, owner) = sqlite().await;
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "docs-src"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // JSON has one number type: 5.0 is the integer 5.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/docs-src",
            Some(json!({"rateLimit": {"requestsPerSecond": 5.0, "burst": 10.0}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["source"]["rateLimit"]["burst"], 10, "{body}");
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/docs-src",
            Some(json!({"rateLimit": {"requestsPerSecond": 5.5}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // An object is an object: not an array, at the top or inside.
    for (path, payload) in [
        ("/api/v1/settings", json!([null, null])),
        (
            "/api/v1/sources/docs-src/settings",
            json!({"group": [null, null]}),
        ),
        ("/api/v1/sources/docs-src", json!({"rateLimit": [5, 10]})),
    ] {
        let (status, body) = api.call(&owner, Method::PATCH, path, Some(payload)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }

    // A slug is the id in stored events: changing it conflicts with what exists.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/docs-src",
            Some(json!({"slug": "renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["field"], "slug", "{body}");

    // A plan's rules compile when written, connected to a source or not.
    let (_, body) = api
        .post(
            &owner,
            "/api/v1/tracking-plans",
            json!({"name": "Docs", "type": "LIVE"}),
        )
        .await;
    let plan = body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan id")
        .to_owned();
    for rules in [
        json!([{"type": "TRACK", "jsonSchema": {}}]),
        json!([{"type": "TRACK", "key": "Signed Up", "jsonSchema": {"type": 5}}]),
    ] {
        let (status, body) = api
            .call(
                &owner,
                Method::PUT,
                &format!("/api/v1/tracking-plans/{plan}/rules"),
                Some(json!({"rules": rules})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rules}: {body}");
        assert_eq!(body["errors"][0]["field"], "rules", "{body}");
    }
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/tracking-plans/{plan}/rules"),
            Some(json!({"rules": [{"type": "TRACK", "key": "Signed Up", "jsonSchema": false}]})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a boolean schema is a schema: {body}"
    );

    // A body naming what does not exist: 404, as a path would.
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/tracking-plans/{plan}/sources"),
            json!({"sourceId": "no-such-source"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/tracking-plans/{plan}/sources?sourceId=docs-src"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not connected: {body}");
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/docs-src",
            Some(json!({"trackingPlanId": "tp_missing"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/grants",
            json!({
                "principal": {"type": "user", "id": "usr_missing"},
                "resource": {"kind": "source", "id": "docs-src"},
                "level": "read_only",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The document states the rules a schema can: these are in it.
    let (_, doc) = api.get(&owner, "/api/v1/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["PermissionIn"]["oneOf"].is_array(),
        "role decides resources"
    );
    assert!(schemas["CreateToken"]["oneOf"].is_array(), "one expiry");
    assert_eq!(schemas["RetryDoc"]["additionalProperties"], false);
    assert_eq!(
        schemas["RateWire"]["properties"]["burst"]["maximum"],
        u32::MAX
    );
    assert_eq!(
        doc["paths"]["/api/v1/settings"]["patch"]["requestBody"]["required"],
        false
    );
}

/// A body is read only for those who may make the change: someone who may not is refused
/// as such (`403`), whatever they sent, and learns nothing of what a valid body is.
#[tokio::test]
async fn a_change_is_authorized_before_its_body_is_read() {
    let (_db, _server, api, owner) = sqlite().await;
    let (reader, _) = person(&api, &owner, "reader@example.com", "read_only").await;
    let (member, _) = person(&api, &owner, "member@example.com", "member").await;
    for (token, path, body) in [
        (
            &reader,
            "/api/v1/destinations",
            json!({"sourceId": "demo", "metadataId": "nope"}),
        ),
        (
            &reader,
            "/api/v1/destinations",
            json!({"sourceId": "demo", "metadataId": "file", "settings": {"path": "../x"}}),
        ),
        (
            &member,
            "/api/v1/identity/sso-connections",
            json!({"kind": "nope"}),
        ),
        (
            &member,
            "/api/v1/identity/sso-connections",
            json!({"name": "x", "kind": "oidc"}),
        ),
    ] {
        let (status, answer) = api.post(token, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    // Who may, is told what is wrong.
    let (status, _) = api
        .post(
            &owner,
            "/api/v1/identity/sso-connections",
            json!({"kind": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
