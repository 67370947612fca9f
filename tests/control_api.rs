//! The control plane end to end, through `sluice serve` on each database: setup link,
//! owner token, a source and write key made through the API, an event sent with it,
//! the key revoked and refused within a second, a read-only user refused, a member's
//! hidden source answered exactly like a missing one, and an intact audit chain.

mod common;

use std::time::{Duration, Instant};

use common::control::{Api, error_type, replica, server, server_with, track, until};
use common::databases::{self, TestDb};
use common::{TestServer, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::config::{CatalogSourceKind, Secret};
use sluice::control::store;

async fn scenario(db: TestDb) {
    let label = db.label;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    // The imported demo key works at once.
    assert_eq!(
        track(&server, "demo-write-key", "demo-1").await,
        StatusCode::OK,
        "{label}"
    );

    // The setup link makes the first owner and their token, once.
    let (status, body) = api.accept(&link, "Owner@Example.com").await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    assert_eq!(body["data"]["user"]["role"], "owner");
    let owner = body["data"]["secret"].as_str().expect("token").to_owned();
    assert!(owner.starts_with("slc_pat_"));
    let (status, _) = api.accept(&link, "other@example.com").await;
    assert_eq!(status, StatusCode::GONE, "{label}: a used link works again");

    let (status, body) = api.get(&owner, "/api/v1/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["workspace"]["slug"], "default");

    // A source and a write key, through the API.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/sources",
            json!({"slug": "app", "enabled": true, "metadataId": "javascript"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    assert_eq!(body["data"]["source"]["id"], "app");
    let (status, body) = api
        .post(&owner, "/api/v1/sources/app/writekey", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    let key = body["data"]["writeKey"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let keys = body["data"]["source"]["writeKeys"]
        .as_array()
        .expect("keys");
    assert!(
        keys.iter().any(|k| k == &json!(key)),
        "the new key is in writeKeys: {body}"
    );
    // Shown once: later reads carry only its prefix.
    let (_, body) = api.get(&owner, "/api/v1/sources/app").await;
    assert!(
        !body.to_string().contains(&key),
        "{label}: plaintext key read back"
    );

    let live = until(&server, &key, StatusCode::OK).await;
    assert!(
        live < Duration::from_secs(1),
        "{label}: new key took {live:?}"
    );
    assert_eq!(track(&server, &key, "stored-1").await, StatusCode::OK);
    assert!(
        server
            .stored()
            .iter()
            .any(|r| r["event"]["messageId"] == "stored-1" && r["sourceId"] == "app"),
        "{label}: event not stored"
    );

    // The gateway serves the control plane's revision as its catalog version.
    let (_, body) = api.get(&owner, "/api/v1/catalog").await;
    let revision = body["data"]["catalog"]["revision"]
        .as_u64()
        .expect("revision");
    let ready: Value = client()
        .get(server.admin_url("/ready"))
        .send()
        .await
        .expect("ready")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready["catalog_version"].as_u64(),
        Some(revision),
        "{label}: {ready}"
    );

    // Revoked: the next event is refused within a second.
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/sources/app/writekey/{key}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    assert_eq!(body["data"]["status"], "SUCCESS");
    let refused = until(&server, &key, StatusCode::UNAUTHORIZED).await;
    assert!(
        refused < Duration::from_secs(1),
        "{label}: revoked key still accepted after {refused:?}"
    );

    // Invite a read-only user and a member.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [
                {"email": "reader@example.com", "role": "read_only"},
                {"email": "member@example.com", "permissions": [{"roleId": "member"}]},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    let links: Vec<String> = body["data"]["invites"]
        .as_array()
        .expect("invites")
        .iter()
        .map(|i| {
            i["link"]
                .as_str()
                .expect("link")
                .trim_start_matches(&server.config.control.public_url())
                .to_owned()
        })
        .collect();
    let (status, body) = api.accept(&links[0], "someone-else@example.com").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{label}: an invite is for its email only: {body}"
    );
    let (_, body) = api.accept(&links[0], "reader@example.com").await;
    let reader = body["data"]["secret"]
        .as_str()
        .expect("reader token")
        .to_owned();
    let (_, body) = api.accept(&links[1], "member@example.com").await;
    assert_eq!(body["data"]["user"]["role"], "member", "{body}");
    let member = body["data"]["secret"]
        .as_str()
        .expect("member token")
        .to_owned();
    let member_id = body["data"]["user"]["id"].as_str().expect("id").to_owned();

    // Read-only: sees, cannot change.
    let (status, body) = api.get(&reader, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["sources"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let (status, body) = api
        .post(&reader, "/api/v1/sources", json!({"slug": "nope"}))
        .await;
    assert_eq!(
        (status, error_type(&body)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{label}: {body}"
    );
    let (status, _) = api
        .call(
            &reader,
            Method::PATCH,
            "/api/v1/sources/app",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .post(&reader, "/api/v1/sources/app/writekey", json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.get(&reader, "/api/v1/audit-events").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Member with no_access on app: it does not exist for them.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/grants",
            json!({
                "principal": {"type": "user", "id": member_id},
                "resource": {"kind": "source", "id": "app"},
                "level": "no_access",
                "justification": "contractor: demo data only",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    let (_, body) = api.get(&member, "/api/v1/sources").await;
    let ids: Vec<&str> = body["data"]["sources"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["demo"], "{label}");
    let (hidden_status, hidden) = api.get(&member, "/api/v1/sources/app").await;
    let (missing_status, missing) = api.get(&member, "/api/v1/sources/absent").await;
    assert_eq!(hidden_status, StatusCode::NOT_FOUND);
    assert_eq!(missing_status, StatusCode::NOT_FOUND);
    assert_eq!(
        hidden.to_string().replace("app", "ID"),
        missing.to_string().replace("absent", "ID"),
        "{label}: a hidden source answers unlike a missing one"
    );
    let (status, _) = api
        .call(&member, Method::DELETE, "/api/v1/sources/app", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{label}: delete of a hidden source"
    );
    // The explain endpoint says why.
    let (status, body) = api
        .get(&owner, &format!("/api/v1/access/explain?userId={member_id}&action=view_source&resourceType=source&resourceId=app"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["allowed"], false);
    assert_eq!(body["data"]["reason"], "hidden");

    // Every step is in the audit trail, and the chain verifies.
    let (status, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let types: Vec<&str> = body["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for wanted in [
        "workspace.create",
        "catalog.import",
        "user.setup",
        "source.create",
        "source.writekey.create",
        "source.writekey.revoke",
        "invite.create",
        "user.invite",
        "access.denied.create_source",
        "access.denied.edit_source",
        "access.denied.manage_write_keys",
        "grant.create",
    ] {
        assert!(types.contains(&wanted), "{label}: no {wanted} in {types:?}");
    }
    let text = body.to_string();
    assert!(
        !text.contains(&key) && !text.contains(&owner),
        "{label}: a secret in the audit trail"
    );
    let (status, body) = api
        .get(
            &owner,
            "/api/v1/audit-events?format=csv&action=source.create",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let csv = body.as_str().expect("csv text");
    assert!(
        csv.starts_with("id,timestamp,type,actor") && csv.lines().count() == 2,
        "{csv}"
    );
    assert!(matches!(store::verify_audit(&db.store).await.expect("verify"), Ok(n) if n > 10));

    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn done_means_on_sqlite() {
    scenario(databases::sqlite().await).await;
}

#[tokio::test]
async fn done_means_on_postgres() {
    scenario(databases::postgres().await).await;
}

#[tokio::test]
async fn every_token_refusal_says_why() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;

    for bad in [
        "",
        "slc_pat_short",
        "Bearer",
        "slc_pat_000000000000000000000000000000AAAAAA",
    ] {
        let (status, body) = api.get(bad, "/api/v1/sources").await;
        assert_eq!(
            (status, error_type(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "{bad:?}"
        );
    }
    // A well-formed token that was never issued.
    let fake = sluice::control::token::issue().expect("token");
    let (status, body) = api.get(fake.plaintext.expose(), "/api/v1/").await;
    assert_eq!(
        (status, error_type(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    // Revoked.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "ci", "scopes": ["sources:read"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ci = body["data"]["secret"].as_str().expect("secret").to_owned();
    let ci_id = body["data"]["token"]["id"].as_str().expect("id").to_owned();
    assert_eq!(api.get(&ci, "/api/v1/sources").await.0, StatusCode::OK);
    // Scopes bound a token: sources:read cannot create.
    let (status, body) = api.post(&ci, "/api/v1/sources", json!({"slug": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/tokens/{ci_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.get(&ci, "/api/v1/sources").await;
    assert_eq!(
        (status, error_type(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );

    // Expired: made directly in the store (the API refuses a past expiry).
    let mut conn = db.store.read().await.expect("conn");
    let ws = store::workspaces::by_slug(&mut conn, "default")
        .await
        .expect("ws")
        .expect("default");
    let user = store::users::by_email(&mut conn, &ws.id, "owner@example.com")
        .await
        .expect("user")
        .expect("owner");
    drop(conn);
    let mut change = db.store.change().await.expect("change");
    let past = chrono::Utc::now() - chrono::Duration::days(1);
    let (_, issued) = store::tokens::issue(
        change.conn(),
        &ws.id,
        store::tokens::NewToken {
            user_id: &user.id,
            name: "old",
            scopes: &sluice::control::policy::Scope::ALL,
            expires_at: past,
        },
        past - chrono::Duration::days(1),
    )
    .await
    .expect("insert");
    change.commit().await.expect("commit");
    let (status, body) = api.get(issued.expose(), "/api/v1/").await;
    assert_eq!(
        (status, error_type(&body)),
        (StatusCode::UNAUTHORIZED, "token_expired"),
        "{body}"
    );

    // A token's expiry is required and bounded by the workspace maximum.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "x", "scopes": ["audit:read"]}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expiresAt"))
    );
    let (status, _) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "x", "scopes": ["audit:read"], "expiresInDays": 400}),
        )
        .await;
    // Past the workspace's tokenMaxDays (365): the settings refuse it, not the shape.
    assert_eq!(status, StatusCode::CONFLICT);

    // Input is validated, unknown fields refused, with the field named.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/sources",
            json!({"slug": "ok", "colour": "red"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{body}"
    );
    let (status, body) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "Bad Slug"}))
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("slug"))
    );
    let (status, body) = api.get(&owner, "/api/v1/sources?pagination[count]=0").await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("pagination[count]"))
    );
    let (status, body) = api
        .get(&owner, "/api/v1/sources?pagination[cursor]=garbage!")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "demo"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let huge = "x".repeat(2 << 20);
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": huge}))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn pages_follow_their_cursor_and_tokens_are_rate_limited() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    for i in 0..5 {
        let (status, _) = api
            .post(&owner, "/api/v1/sources", json!({"slug": format!("s{i}")}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/sources?pagination[count]=2".to_owned();
    loop {
        let (status, body) = api.get(&owner, &path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for s in body["data"]["sources"].as_array().expect("list") {
            seen.push(s["id"].as_str().expect("id").to_owned());
        }
        match body["data"]["pagination"]["next"].as_str() {
            Some(next) => {
                path = format!("/api/v1/sources?pagination[count]=2&pagination[cursor]={next}")
            }
            None => break,
        }
    }
    assert_eq!(seen, ["demo", "s0", "s1", "s2", "s3", "s4"]);

    let response = api
        .http
        .get(format!("{}/api/v1/", api.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("get");
    assert_eq!(response.headers()["x-ratelimit-limit"], "600");
    // Spend the budget (600 a minute, refilling as we go): a 429 with Retry-After comes.
    let mut sent = 0;
    let response = loop {
        let response = api
            .http
            .get(format!("{}/api/v1/", api.base))
            .bearer_auth(&owner)
            .send()
            .await
            .expect("get");
        sent += 1;
        if response.status() != StatusCode::OK || sent > 3000 {
            break response;
        }
    };
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "after {sent} requests"
    );
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn a_remote_gateway_follows_the_control_plane_and_survives_its_absence() {
    let db = databases::sqlite().await;
    let (control, link) = server(&db).await;
    let api = Api::of(&control);
    let owner = api.owner(&link).await;
    // A person's token, even the owner's, cannot fetch the catalog: nodes have
    // credentials of their own.
    let (status, _) = api.get(&owner, "/internal/v1/catalog?wait=0").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/nodes",
            json!({"name": "edge-1", "role": "gateway", "expiresInDays": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let node = body["data"]["secret"].as_str().expect("secret").to_owned();

    let remote_config = |url: String, node: String| {
        move |config: &mut sluice::config::Config| {
            config.catalog.source = CatalogSourceKind::Remote;
            config.catalog.control_url = url;
            config.catalog.node_token = Secret::new(node);
            config.catalog.node_name = "edge-1".into();
        }
    };
    let edge = TestServer::start_with("", remote_config(api.base.clone(), node.clone()));
    assert_eq!(
        track(&edge, "demo-write-key", "edge-demo").await,
        StatusCode::OK
    );

    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "edge-src"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = api
        .post(&owner, "/api/v1/sources/edge-src/writekey", json!({}))
        .await;
    let key = body["data"]["writeKey"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let live = until(&edge, &key, StatusCode::OK).await;
    assert!(
        live < Duration::from_secs(1),
        "new key reached the remote gateway after {live:?}"
    );
    let (status, _) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/sources/edge-src/writekey/{key}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let refused = until(&edge, &key, StatusCode::UNAUTHORIZED).await;
    assert!(
        refused < Duration::from_secs(1),
        "revoked key accepted by the remote gateway for {refused:?}"
    );

    // It reports the revision it applied.
    let (_, body) = api.get(&owner, "/api/v1/gateways").await;
    let revision = body["data"]["revision"].as_u64().expect("revision");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = api.get(&owner, "/api/v1/gateways").await;
        let edge1 = body["data"]["gateways"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["id"] == "edge-1"))
            .cloned();
        if edge1
            .as_ref()
            .is_some_and(|g| g["revision"].as_u64() == Some(revision))
        {
            break;
        }
        assert!(Instant::now() < deadline, "gateway report: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The control plane goes away: the gateway keeps serving, and restarts from its
    // last-known-good copy.
    drop(control);
    assert_eq!(
        track(&edge, "demo-write-key", "edge-alone").await,
        StatusCode::OK
    );
    let (dir, _) = edge.stop();
    let lkg = dir.path().join("log").join(sluice::LAST_KNOWN_GOOD);
    let text = std::fs::read_to_string(&lkg).expect("last-known-good copy");
    assert!(
        !text.contains("demo-write-key"),
        "plaintext key in the copy"
    );
    assert!(
        text.starts_with("v1:"),
        "a remote node's copy is sealed with its credential"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&lkg).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let mut config = sluice::config::Config::default();
    remote_config(api.base.clone(), node)(&mut config);
    config.log.dir = dir.path().join("log");
    config.log.durability = sluice::config::Durability::Os;
    let edge = TestServer::start_in(dir, config);
    assert_eq!(
        track(&edge, "demo-write-key", "edge-lkg").await,
        StatusCode::OK
    );
    assert_eq!(
        track(&edge, &key, "edge-revoked").await,
        StatusCode::UNAUTHORIZED
    );
    drop(edge);
    db.finish().await;
}

#[tokio::test]
async fn a_key_revoked_through_one_control_plane_is_refused_by_every_gateway_within_a_second() {
    // Two control-plane processes and two remote gateways, each gateway fed by its own
    // control plane, on one PostgreSQL database. The control planes poll the revision
    // only every 5 s: within 1 s, only the commit's notification can carry the change
    // from one to the other.
    let db = databases::postgres().await;
    let slow_poll = |config: &mut sluice::config::Config| config.catalog.poll_interval_ms = 5_000;
    let (first, link) = server_with(&db, slow_poll).await;
    let second = replica(&first, slow_poll);
    let one = Api::of(&first);
    let two = Api::of(&second);
    let owner = one.owner(&link).await;
    let (status, body) = two
        .post(
            &owner,
            "/api/v1/nodes",
            json!({"name": "edges", "role": "gateway", "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let node = body["data"]["secret"].as_str().expect("secret").to_owned();
    let gateway = |api: &Api, name: &str| {
        let (url, node, name) = (api.base.clone(), node.clone(), name.to_owned());
        TestServer::start_with("", move |config| {
            config.catalog.source = CatalogSourceKind::Remote;
            config.catalog.control_url = url;
            config.catalog.node_token = Secret::new(node);
            config.catalog.node_name = name;
            config.server.max_key_failures_per_minute = 0;
        })
    };
    let edge_one = gateway(&one, "edge-one");
    let edge_two = gateway(&two, "edge-two");

    // A key made through the second control plane reaches both gateways.
    let (status, _) = two
        .post(&owner, "/api/v1/sources", json!({"slug": "shared-src"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = two
        .post(&owner, "/api/v1/sources/shared-src/writekey", json!({}))
        .await;
    let key = body["data"]["writeKey"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let (live_one, live_two) = tokio::join!(
        until(&edge_one, &key, StatusCode::OK),
        until(&edge_two, &key, StatusCode::OK)
    );
    assert!(
        live_one.max(live_two) < Duration::from_secs(1),
        "new key live after {live_one:?} / {live_two:?}"
    );

    // Revoked through the first: both gateways refuse it within 1 s.
    let (status, _) = one
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/sources/shared-src/writekey/{key}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (refused_one, refused_two) = tokio::join!(
        until(&edge_one, &key, StatusCode::UNAUTHORIZED),
        until(&edge_two, &key, StatusCode::UNAUTHORIZED)
    );
    eprintln!(
        "revoked key refused after {refused_one:?} (same control plane) and {refused_two:?} (other control plane)"
    );
    assert!(
        refused_one < Duration::from_secs(1) && refused_two < Duration::from_secs(1),
        "revoked key accepted for {refused_one:?} / {refused_two:?}"
    );
    // The control planes' own gateways follow too.
    let own = until(&second, &key, StatusCode::UNAUTHORIZED).await;
    assert!(own < Duration::from_secs(1), "{own:?}");
    drop((edge_one, edge_two, second, first));
    db.finish().await;
}

#[tokio::test]
async fn setup_links_refuse_unknown_expired_reused_and_forged_submissions() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    // Unknown: a made-up link, or the real one with a character changed.
    let mut forged = link.clone();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == 'a' { 'b' } else { 'a' });
    for path in ["/setup/not-a-link".to_owned(), forged] {
        let (status, _) = api.accept(&path, "intruder@example.com").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let page = api
            .http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .expect("get");
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
    }
    // A form that is not the form: refused before the link is spent.
    let response = api
        .http
        .post(format!("{}{link}", api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=x%40y.z&role=owner")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = api
        .http
        .get(format!("{}{link}", api.base))
        .send()
        .await
        .expect("get");
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "a refused form spent the link"
    );
    // Expired: a link whose time has passed.
    let secret = "expired-link-secret";
    let mut change = db.store.change().await.expect("change");
    let ws = store::workspaces::by_slug(change.conn(), "default")
        .await
        .expect("ws")
        .expect("default");
    store::invites::add_link(
        change.conn(),
        &ws.id,
        &sluice::control::token::digest_of(secret).to_hex(),
        sluice::control::policy::Role::Owner,
        "",
        chrono::Utc::now() - chrono::Duration::minutes(1),
    )
    .await
    .expect("link");
    change.commit().await.expect("commit");
    let (status, _) = api
        .accept(&format!("/setup/{secret}"), "late@example.com")
        .await;
    assert_eq!(status, StatusCode::GONE);
    // The real one works once, then is spent.
    let (status, _) = api.accept(&link, "owner@example.com").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.accept(&link, "owner2@example.com").await;
    assert_eq!(status, StatusCode::GONE);
    drop(server);
    db.finish().await;
}

/// The API remembers who a token belongs to for one revision: every change, made through
/// this server or straight in the database by another process, is seen by the next
/// request (role, grant, revocation); expiry is decided at request time.
async fn remembered_callers_follow_every_change(db: TestDb) {
    let label = db.label;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (ada, ada_id) = api
        .invited(&owner, &server, "ada@example.com", "admin")
        .await;

    // Remembered as an admin: may create, again and again.
    for slug in ["one", "two"] {
        let (status, body) = api
            .post(&ada, "/api/v1/sources", json!({"slug": slug}))
            .await;
        assert_eq!(status, StatusCode::OK, "{label}: {body}");
    }
    // Demoted through the API: the very next request is a read-only user's.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            &format!("/api/v1/users/{ada_id}"),
            Some(json!({"role": "read_only"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    let (status, _) = api
        .post(&ada, "/api/v1/sources", json!({"slug": "three"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{label}: demotion not seen");
    assert_eq!(api.get(&ada, "/api/v1/sources/one").await.0, StatusCode::OK);

    // A grant hides a source: the next read answers 404.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/grants",
            json!({
                "principal": {"type": "user", "id": ada_id},
                "resource": {"kind": "source", "id": "one"},
                "level": "no_access",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    assert_eq!(
        api.get(&ada, "/api/v1/sources/one").await.0,
        StatusCode::NOT_FOUND,
        "{label}: grant not seen"
    );

    // Revoked by another process on the same database (a second store, as a second
    // control-plane replica would): refused at once, no waiting for any poll.
    let mut conn = db.store.read().await.expect("conn");
    let ws = store::workspaces::by_slug(&mut conn, "default")
        .await
        .expect("ws")
        .expect("default");
    let tokens = store::tokens::list(&mut conn, &ws.id, "", 200)
        .await
        .expect("tokens");
    drop(conn);
    let token = tokens
        .iter()
        .find(|t| t.user_id == ada_id)
        .expect("ada's token");
    let now = chrono::Utc::now();
    let mut change = db.store.change().await.expect("change");
    store::tokens::revoke(change.conn(), &token.id, now)
        .await
        .expect("revoke");
    change
        .record(sluice::control::audit::Draft {
            time: now,
            actor: sluice::control::audit::Actor::System,
            action: "token.revoke".into(),
            resource_type: "token".into(),
            resource_id: token.id.clone(),
            before: None,
            after: None,
            ip: None,
            user_agent: None,
        })
        .await
        .expect("record");
    change.commit().await.expect("commit");
    let (status, body) = api.get(&ada, "/api/v1/sources/two").await;
    assert_eq!(
        (status, error_type(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked"),
        "{label}: revocation by another process not seen"
    );
    // The owner, remembered all along, is unaffected.
    assert_eq!(
        api.get(&owner, "/api/v1/sources/two").await.0,
        StatusCode::OK
    );

    // A remembered token that expires is refused from its expiry on.
    let owner_row = tokens
        .iter()
        .find(|t| t.user_id != ada_id)
        .expect("owner's token");
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(3000);
    let mut change = db.store.change().await.expect("change");
    let (_, issued) = store::tokens::issue(
        change.conn(),
        &ws.id,
        store::tokens::NewToken {
            user_id: &owner_row.user_id,
            name: "short",
            scopes: &sluice::control::policy::Scope::ALL,
            expires_at,
        },
        chrono::Utc::now(),
    )
    .await
    .expect("insert");
    change.commit().await.expect("commit");
    let short = issued.expose();
    assert_eq!(
        api.get(short, "/api/v1/sources/two").await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(short, "/api/v1/sources/two").await.0,
        StatusCode::OK
    );
    let wait = expires_at - chrono::Utc::now() + chrono::Duration::milliseconds(50);
    tokio::time::sleep(wait.to_std().unwrap_or_default()).await;
    let (status, body) = api.get(short, "/api/v1/sources/two").await;
    assert_eq!(
        (status, error_type(&body)),
        (StatusCode::UNAUTHORIZED, "token_expired"),
        "{label}: a remembered token outlived its expiry"
    );

    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn remembered_callers_follow_every_change_on_sqlite() {
    remembered_callers_follow_every_change(databases::sqlite().await).await;
}

#[tokio::test]
async fn remembered_callers_follow_every_change_on_postgres() {
    remembered_callers_follow_every_change(databases::postgres().await).await;
}
