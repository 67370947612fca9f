//! `sluice admin sources|keys|api` as a user runs them: the real binary calling the API of
//! a running server with the token in `SLUICE_TOKEN`.

mod common;

use std::process::{Command, Output};

use common::control::{Api, server, track, until};
use common::databases;
use reqwest::StatusCode;

fn admin(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("admin")
        .args(args)
        .env("SLUICE_URL", url)
        .env("SLUICE_TOKEN", token)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run sluice admin")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn sources_and_keys_from_the_command_line() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let owner = Api::of(&server).owner(&link).await;
    let url = format!("http://{}", server.control);

    let out = admin(
        &url,
        &owner,
        &[
            "sources",
            "create",
            "web",
            "--name",
            "Web",
            "--label",
            "environment:prod",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "web");
    let out = admin(&url, &owner, &["sources", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("web\tenabled\tenvironment:prod") && listed.contains("demo\tenabled"),
        "{listed}"
    );
    // A bad label is refused before any call.
    let out = admin(&url, &owner, &["sources", "create", "x", "--label", "prod"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not key:value"),
        "{}",
        text(&out.stderr)
    );

    // A key made from the shell lets events in; revoked from the shell, it is refused.
    let out = admin(
        &url,
        &owner,
        &["keys", "add", "web", "--expires-in-days", "30"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_owned();
    assert_eq!(key.len(), 32, "{key}");
    until(&server, &key, StatusCode::OK).await;
    let out = admin(&url, &owner, &["keys", "list", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let id = listed
        .lines()
        .find(|l| l.contains("expires"))
        .and_then(|l| l.split('\t').next())
        .expect("the new key listed")
        .to_owned();
    let out = admin(&url, &owner, &["keys", "revoke", "web", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    until(&server, &key, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        track(&server, &key, "after-revoke").await,
        StatusCode::UNAUTHORIZED
    );

    // Refusals carry the API's words and a failing exit status.
    let out = admin(&url, &owner, &["keys", "add", "absent"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    let out = admin(&url, "slc_pat_bogus", &["sources", "list"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    // The generic verb for everything else.
    let out = admin(&url, &owner, &["api", "GET", "/sources/web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["data"]["source"]["name"], "Web");
    let out = admin(&url, &owner, &["sources", "delete", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = admin(&url, &owner, &["api", "GET", "/sources/web"]);
    assert!(!out.status.success());

    drop(server);
    db.finish().await;
}
