//! PII controls at the edge end to end through `sluice serve` on each database: rules set
//! through the API drop, hash (with the workspace's salt) and mask paths of every event
//! before it is stored, so neither the log nor a destination ever holds the raw values;
//! hashes join across the workspace's sources; changing the rules needs `full` on the
//! source, is audited, and a hidden source answers as a missing one.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::control::{Api, audited, server_with};
use common::databases::{self, TestDb};
use common::{TestServer, basic, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

async fn identify(server: &TestServer, key: &str, id: &str, email: &str) {
    let status = client()
        .post(server.url("/v1/identify"))
        .header("authorization", basic(key))
        .json(&json!({"userId": "u1", "messageId": id,
                      "traits": {"email": email, "phone": "+1 555 010 4321", "plan": "pro"},
                      "context": {"ip": "203.0.113.7"}}))
        .send()
        .await
        .expect("identify")
        .status();
    assert_eq!(status, StatusCode::OK, "{id}");
}

/// The stored event with this messageId, once it is there.
async fn stored(server: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = server
            .stored()
            .into_iter()
            .find(|r| r["event"]["messageId"] == id)
        {
            return r["event"].clone();
        }
        assert!(Instant::now() < deadline, "{id} never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every byte under `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in walk(dir) {
        out.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry).unwrap_or_default(),
        ));
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

async fn put(api: &Api, token: &str, source: &str, rules: Value) -> (StatusCode, Value) {
    api.call(
        token,
        Method::PUT,
        &format!("/api/v1/sources/{source}/pii"),
        Some(json!({"rules": rules})),
    )
    .await
}

async fn scenario(db: TestDb) {
    let exports = tempfile::tempdir().expect("tempdir");
    let dir = exports.path().to_owned();
    let (server, link) = server_with(&db, move |c| c.delivery.file_dir = dir).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let app = api.new_source(&owner, &server, "app").await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"id": "pii-out", "sourceId": "demo", "metadataId": "file",
                   "settings": {"path": "out.ndjson"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let rules = json!([
        {"path": "traits.email", "action": "HASH"},
        {"path": "traits.phone", "action": "MASK"},
        {"path": "context.ip", "action": "DROP"},
    ]);
    for source in ["demo", "app"] {
        let (status, body) = put(&api, &owner, source, rules.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["pii"]["rules"], rules, "{body}");
    }
    // Another edit of the source keeps them.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            "/api/v1/sources/app",
            Some(json!({"name": "App renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&owner, "/api/v1/sources/app/pii").await;
    assert_eq!(body["data"]["pii"]["rules"], rules, "{body}");

    // In force within a second at the gateway.
    let start = Instant::now();
    let mut n = 0;
    let first = loop {
        n += 1;
        let id = format!("probe-{n}");
        identify(&server, "demo-write-key", &id, "probe@example.com").await;
        let event = stored(&server, &id).await;
        if event["context"].get("ip").is_none() {
            break event;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "rules never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(first["traits"]["phone"], "***********4321", "{first}");
    assert_eq!(first["traits"]["plan"], "pro", "untouched: {first}");

    let secret = "ann.secret@example.com";
    identify(&server, "demo-write-key", "ann-web", secret).await;
    identify(&server, &app, "ann-app", secret).await;
    let (web, mobile) = (
        stored(&server, "ann-web").await,
        stored(&server, "ann-app").await,
    );
    let hashed = web["traits"]["email"].as_str().expect("hashed").to_owned();
    assert_eq!(hashed.len(), 64, "{web}");
    assert!(
        hashed
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        mobile["traits"]["email"],
        json!(hashed),
        "joins across the workspace"
    );
    let unsalted = hex::encode(Sha256::digest(secret.as_bytes()));
    assert_ne!(hashed, unsalted, "salted");
    assert_ne!(
        first["traits"]["email"], web["traits"]["email"],
        "different values hash apart"
    );
    // The destination gets what was stored; the raw value is nowhere on disk.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !all_text(exports.path()).contains("ann-web") {
        assert!(Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = all_text(exports.path());
    assert!(delivered.contains(&hashed));
    assert!(!delivered.contains(secret));
    assert!(
        !all_text(&server.config.log.dir).contains(secret),
        "not in the log"
    );

    // Suppression matches the `userId` as sent, even where a rule hashes it.
    let with_user = json!([{"path": "userId", "action": "HASH"}]);
    let (status, body) = put(&api, &owner, "app", with_user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/regulations",
            json!({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID",
                   "subjectIds": ["u-gone"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let start = Instant::now();
    for n in 0.. {
        let (kept, gone) = (format!("kept-{n}"), format!("gone-{n}"));
        for (id, user) in [(&kept, "u-kept"), (&gone, "u-gone")] {
            let status = client()
                .post(server.url("/v1/track"))
                .header("authorization", basic(&app))
                .json(&json!({"userId": user, "event": "E", "messageId": id}))
                .send()
                .await
                .expect("track")
                .status();
            assert_eq!(status, StatusCode::OK);
        }
        let kept = stored(&server, &kept).await;
        let ids: Vec<Value> = server
            .stored()
            .iter()
            .map(|r| r["event"]["messageId"].clone())
            .collect();
        if kept["userId"] != "u-kept" && !ids.contains(&json!(gone)) {
            assert_eq!(
                kept["userId"].as_str().map(str::len),
                Some(64),
                "hashed: {kept}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never suppressed while hashed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Who may change them.
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    api.grant_source(&owner, &member_id, "demo", "read_write")
        .await;
    api.grant_source(&owner, &member_id, "app", "no_access")
        .await;
    let (status, body) = put(&api, &member, "demo", json!([])).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "read_write is not full: {body}"
    );
    api.hidden_like_missing(
        &member,
        Method::PUT,
        "/api/v1/sources/{id}/pii",
        ("app", "nowhere"),
        Some(json!({"rules": []})),
    )
    .await;
    let (status, body) = api.get(&member, "/api/v1/sources/demo/pii").await;
    assert_eq!(status, StatusCode::OK, "reading needs sight only: {body}");
    for bad in [
        json!([{"path": "messageId", "action": "HASH"}]),
        json!([{"path": "traits..email", "action": "DROP"}]),
        json!([{"path": "*.email", "action": "DROP"}]),
        json!([{"path": "traits.email", "action": "ENCRYPT"}]),
    ] {
        let (status, body) = put(&api, &owner, "demo", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // Removing them lets values through again.
    let (status, body) = put(&api, &owner, "app", json!([])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let start = Instant::now();
    for n in 0.. {
        let id = format!("plain-{n}");
        identify(&server, &app, &id, "bob@example.com").await;
        if stored(&server, &id).await["traits"]["email"] == "bob@example.com" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "rules never removed"
        );
    }

    let events = audited(&api, &owner, &["source.pii.update"]).await;
    assert!(
        events.iter().any(|e| e["type"] == "source.pii.update"
            && e["before"]["rules"] == json!([])
            && e["after"]["rules"] == rules),
        "set, with the rules before and after"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "access.denied.edit_source_privacy"),
        "refusals are audited"
    );
    common::control::chain_holds(&db).await;
    server.stop();
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_rules_protect_values_before_they_are_stored_on_sqlite() {
    scenario(databases::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_rules_protect_values_before_they_are_stored_on_postgres() {
    scenario(databases::postgres().await).await;
}

/// A copy a tracking plan forwards into another source gets that source's rules too
/// (catalog file: rules and salts per source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_copies_get_the_target_sources_rules() {
    let catalog = r#"
[[tracking_plans]]
id = "tp"
[[tracking_plans.rules]]
type = "TRACK"
key = "Order Completed"
jsonSchema = { type = "object", properties = { properties = { type = "object", required = ["total"] } } }
[[sources]]
id = "shop"
write_keys = [{ key = "shop-key" }]
tracking_plan = "tp"
enforcement = "block"
protocols = { forward_blocked_to = "quarantine" }
pii = [{ path = "properties.email", action = "hash" }]
pii_salt = "shop-salt-0123456789"
[[sources]]
id = "quarantine"
pii = [{ path = "properties.coupon", action = "drop" }, { path = "properties.card", action = "mask" }]
"#;
    let server = TestServer::start_with(catalog, |_| {});
    let status = client()
        .post(server.url("/v1/track"))
        .header("authorization", basic("shop-key"))
        .json(&json!({"userId": "u", "event": "Order Completed", "messageId": "order-1",
                      "properties": {"email": "ann@example.com", "coupon": "SAVE", "card": "4111111111111111"}}))
        .send()
        .await
        .expect("track")
        .status();
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let records = server.stored();
        if records.len() >= 2 {
            break records;
        }
        assert!(Instant::now() < deadline, "stored: {records:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let hashed = hex::encode(Sha256::digest(b"shop-salt-0123456789ann@example.com"));
    let of = |source: &str| {
        records
            .iter()
            .find(|r| r["sourceId"] == source)
            .map(|r| r["event"]["properties"].clone())
            .unwrap_or_else(|| panic!("no record of {source}: {records:?}"))
    };
    let (shop, quarantine) = (of("shop"), of("quarantine"));
    assert_eq!(shop["email"], json!(hashed), "{shop}");
    assert_eq!(
        shop["coupon"], "SAVE",
        "the shop keeps what its rules keep: {shop}"
    );
    assert_eq!(quarantine["email"], json!(hashed), "{quarantine}");
    assert!(quarantine.get("coupon").is_none(), "{quarantine}");
    assert_eq!(quarantine["card"], "************1111", "{quarantine}");
    server.stop();
}
