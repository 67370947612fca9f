//! Segment's official Public API client (`@segment/public-api-sdk-typescript`, npm) against
//! Sluice's control plane: `tests/public_api/scenario.mjs` creates a source, adds and
//! rotates write keys, creates a destination, lists sources as three users and reads the
//! audit trail, checking every answer. Needs Node.js; installs the client on first run.

mod common;

use std::path::Path;
use std::process::Command;

use common::control::{Api, server};
use common::databases;
use reqwest::StatusCode;
use serde_json::json;

fn npm_install(dir: &Path) {
    if dir
        .join("node_modules/@segment/public-api-sdk-typescript")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(dir)
        .status()
        .expect("npm (Node.js) is needed for the Public API client scenario");
    assert!(status.success(), "npm ci in {}", dir.display());
}

#[tokio::test]
async fn the_official_public_api_client_works_against_sluice() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/public_api");
    npm_install(&scenario);

    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (_, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [
                {"email": "reader@example.com", "role": "read_only"},
                {"email": "member@example.com", "role": "member"},
            ]}),
        )
        .await;
    let mut tokens = Vec::new();
    for (i, email) in ["reader@example.com", "member@example.com"]
        .iter()
        .enumerate()
    {
        let link = body["data"]["invites"][i]["link"].as_str().expect("link");
        let path = link
            .trim_start_matches(&server.config.control.public_url())
            .to_owned();
        let (status, accepted) = api.accept(&path, email).await;
        assert_eq!(status, StatusCode::OK, "{accepted}");
        tokens.push((
            accepted["data"]["secret"]
                .as_str()
                .expect("token")
                .to_owned(),
            accepted["data"]["user"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        ));
    }
    let (status, _) = api
        .post(&owner, "/api/v1/sources", json!({"slug": "hidden"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/grants",
            json!({
                "principal": {"type": "user", "id": tokens[1].1},
                "resource": {"kind": "source", "id": "hidden"},
                "level": "no_access",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let out = Command::new("node")
        .arg("scenario.mjs")
        .current_dir(&scenario)
        .env("SLUICE_API", format!("{}/api/v1", api.base))
        .env("SLUICE_TRACK", format!("http://{}", server.addr))
        .env("OWNER_TOKEN", &owner)
        .env("READER_TOKEN", &tokens[0].0)
        .env("MEMBER_TOKEN", &tokens[1].0)
        .output()
        .expect("node (Node.js) is needed for the Public API client scenario");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scenario failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("public-api scenario: ok"), "{stdout}");
    eprintln!("{stdout}");
    drop(server);
    db.finish().await;
}
