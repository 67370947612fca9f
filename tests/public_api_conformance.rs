//! Segment's official Public API client (`@segment/public-api-sdk-typescript`, npm), method
//! by method, against Sluice's control plane: `tests/public_api/conformance.mjs` calls every
//! method of the client's Workspaces, Sources, Destinations, TrackingPlans, Labels, IAM
//! (users, roles, groups), AuditTrail and Functions APIs (and the source/destination Catalog methods)
//! in a fresh workspace and checks each raw answer against the client's own response model.
//! Every method listed in `tests/public_api/expected.txt` must still work; methods that
//! newly work are printed (add them to the list). Needs Node.js; installs the client on
//! first run.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::control::{Api, server_with};
use common::databases;
use serde_json::Value;

/// How long the whole client run may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(240);

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
        .expect("npm (Node.js) is needed for the Public API client conformance test");
    assert!(status.success(), "npm ci in {}", dir.display());
}

/// `Class.method` per line; `#` starts a comment.
fn expected(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_public_api_client_method_that_worked_still_works() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/public_api");
    npm_install(&dir);
    let listed = expected(
        &std::fs::read_to_string(dir.join("expected.txt")).expect("tests/public_api/expected.txt"),
    );

    let db = databases::sqlite().await;
    let (server, link) = server_with(&db, |c| {
        c.control.rate_limit_per_minute = 100_000;
    })
    .await;
    let api = Api::of(&server);
    assert!(
        api.base.starts_with("http://127.0.0.1:"),
        "control plane on {}",
        api.base
    );
    let owner = api.owner(&link).await;

    let out_dir = tempfile::tempdir().expect("tempdir");
    let result_path = out_dir.path().join("conformance.json");
    let run = tokio::process::Command::new("node")
        .arg("conformance.mjs")
        .current_dir(&dir)
        .env("SLUICE_API", format!("{}/api/v1", api.base))
        .env("OWNER_TOKEN", &owner)
        .env("RESULT", &result_path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(NODE_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("conformance.mjs still running after {NODE_TIMEOUT:?}"))
        .expect("node (Node.js) is needed for the Public API client conformance test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "conformance.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");

    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(&result_path).expect("conformance.mjs wrote no result"),
    )
    .expect("result JSON");
    assert_eq!(
        result["complete"], true,
        "incomplete run: {}",
        result["error"]
    );
    let methods: BTreeMap<&str, (bool, &str)> = result["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| {
            (
                m["method"].as_str().expect("method name"),
                (
                    m["works"].as_bool().expect("works"),
                    m["reason"].as_str().unwrap_or_default(),
                ),
            )
        })
        .collect();

    let mut broken = Vec::new();
    for name in &listed {
        match methods.get(name.as_str()) {
            Some((true, _)) => {}
            Some((false, reason)) => broken.push(format!("  {name}: {reason}")),
            None => broken.push(format!(
                "  {name}: not a method conformance.mjs checks (typo in expected.txt, or gone from the client?)"
            )),
        }
    }
    let new: Vec<&str> = methods
        .iter()
        .filter(|(name, (works, _))| *works && !listed.iter().any(|l| l == *name))
        .map(|(name, _)| *name)
        .collect();
    if !new.is_empty() {
        eprintln!(
            "{} method(s) work now but are not in tests/public_api/expected.txt; add them to expected.txt:\n  {}",
            new.len(),
            new.join("\n  ")
        );
    }
    drop(server);
    db.finish().await;
    assert!(
        broken.is_empty(),
        "{} of the {} methods in tests/public_api/expected.txt no longer work through the official client:\n{}",
        broken.len(),
        listed.len(),
        broken.join("\n")
    );
}
