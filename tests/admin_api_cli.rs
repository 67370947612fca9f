//! The subcommands that talk to a running server, as a user runs them: `sluice admin
//! sources|keys|api` calling the control plane's API with the token in `SLUICE_TOKEN`,
//! and `sluice dlq replay` asking the admin listener.

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

/// `sluice dlq replay` asks the running server's admin listener. It once panicked ("No
/// rustls crypto provider") building its HTTP client, even with no dead letters.
#[tokio::test]
async fn dlq_replay_asks_the_running_server() {
    const TOKEN: &str = "cli-admin-token-0123456789";
    let server = common::TestServer::start_with(
        "[[sources]]\nid = \"shop\"\nwrite_keys = [{ key = \"shop-key\" }]\n\n\
         [[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nsources = [\"shop\"]\n\
         settings = { url = \"https://hooks.example.com/in\" }\n",
        |c| c.server.admin_token = Some(sluice::config::Secret::new(TOKEN)),
    );
    let dlq = |token: &str, destination: &str| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["dlq", "replay", destination])
            .env("SLUICE__SERVER__ADMIN_LISTEN", server.admin.to_string())
            .env("SLUICE__SERVER__ADMIN_TOKEN", token)
            .env("SLUICE__LOG__DIR", server.dir.path().join("cli"))
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run sluice dlq replay")
    };
    let out = dlq(TOKEN, "hook");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["destination"], "hook", "{answer}");
    assert_eq!(answer["delivered"], 0, "{answer}");

    // Refusals are errors with the server's reason, never a panic.
    for (token, destination, why) in [
        ("wrong-token-wrong-token", "hook", "401"),
        (TOKEN, "nowhere", "unknown_destination"),
    ] {
        let out = dlq(token, destination);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{destination}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The review queue from a shell: a member proposes from a file, the owner reads the
/// diff, approves; a stale proposal is refused until rebased.
#[tokio::test]
async fn change_requests_from_the_command_line() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (member, _) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let url = format!("http://{}", server.control);
    let out = admin(
        &url,
        &owner,
        &[
            "api",
            "POST",
            "/tracking-plans",
            "--data",
            r#"{"name":"Web"}"#,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let plan = plan["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.json");
    std::fs::write(
        &file,
        r#"{"rules": [{"type": "TRACK", "key": "Signed Up", "version": 1, "jsonSchema":
            {"properties": {"properties": {"properties": {"plan": {"type": "string"}}, "required": ["plan"]}}}}]}"#,
    )
    .expect("rules file");
    let rules = file.to_str().expect("path");
    let propose = |who: &str| {
        admin(
            &url,
            who,
            &[
                "change-requests",
                "propose",
                &plan,
                "--rules",
                rules,
                "--description",
                "Sign-ups carry their plan",
            ],
        )
    };
    let out = propose(&member);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let id = shown.split_whitespace().next().expect("id").to_owned();
    assert!(id.starts_with("cr_"), "{shown}");
    assert!(
        shown.contains("+ TRACK \"Signed Up\" v1")
            && shown.contains("+ properties.plan: string")
            && shown.contains("+ required properties.plan"),
        "{shown}"
    );
    let second = propose(&member);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let stale = text(&second.stdout)
        .split_whitespace()
        .next()
        .expect("id")
        .to_owned();

    let out = admin(
        &url,
        &owner,
        &["change-requests", "list", "--status", "OPEN"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    // The member may not approve; the owner does.
    let out = admin(&url, &member, &["change-requests", "approve", &id]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    let out = admin(
        &url,
        &owner,
        &[
            "change-requests",
            "approve",
            &id,
            "--updated-at",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert!(!out.status.success(), "changed since that version");
    let out = admin(&url, &owner, &["change-requests", "show", &id]);
    let seen = text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("updated ").map(str::to_owned))
        .expect("updated line");
    let out = admin(
        &url,
        &owner,
        &[
            "change-requests",
            "approve",
            &id,
            "--updated-at",
            &seen,
            "--comment",
            "yes",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("published as version 1"),
        "{}",
        text(&out.stdout)
    );
    // The other one started from version 0: refused, then rebased and rejected.
    let out = admin(&url, &owner, &["change-requests", "approve", &stale]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("rebase"),
        "{}",
        text(&out.stderr)
    );
    let out = admin(&url, &member, &["change-requests", "rebase", &stale]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = admin(
        &url,
        &owner,
        &[
            "change-requests",
            "reject",
            &stale,
            "--comment",
            "already done",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = admin(&url, &owner, &["change-requests", "show", &stale]);
    assert!(
        text(&out.stdout).contains("REJECTED") && text(&out.stdout).contains("already done"),
        "{}",
        text(&out.stdout)
    );
    server.stop();
    db.finish().await;
}

/// Offboarding from a shell, by email: the plan first, then carried out with the write
/// keys rotated.
#[tokio::test]
async fn offboarding_from_the_command_line() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (leaver, _) = api
        .invited(&owner, &server, "leaver@example.com", "member")
        .await;
    api.invited(&owner, &server, "successor@example.com", "member")
        .await;
    let url = format!("http://{}", server.control);
    let args = [
        "offboard",
        "--user",
        "leaver@example.com",
        "--successor",
        "successor@example.com",
    ];
    let out = admin(&url, &owner, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("DRY RUN") && shown.contains("demo: wk_"),
        "{shown}"
    );
    assert_eq!(
        track(&server, "demo-write-key", "still-fine").await,
        StatusCode::OK
    );
    let mut execute = args.to_vec();
    execute.extend(["--execute", "--rotate-write-keys", "--overlap-hours", "0"]);
    let out = admin(&url, &owner, &execute);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("Removal record: off_"), "{shown}");
    let new_key = shown
        .lines()
        .find(|l| l.starts_with("demo\twk_"))
        .and_then(|l| l.split('\t').nth(2))
        .expect("a new key line")
        .to_owned();
    until(&server, "demo-write-key", StatusCode::UNAUTHORIZED).await;
    until(&server, &new_key, StatusCode::OK).await;
    let (status, _) = api.get(&leaver, "/api/v1/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop();
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_quotas_from_the_command_line() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin_token, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let url = format!("http://{}", server.control);
    for n in 0..3 {
        assert_eq!(
            track(&server, "demo-write-key", &format!("cli-{n}")).await,
            StatusCode::OK
        );
    }
    // The table shows the source once its events are booked (every second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = admin(&url, &owner, &["usage"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        let row = table.lines().find(|l| l.starts_with("demo "));
        if row.is_some_and(|r| r.split_whitespace().nth(1) == Some("3")) {
            assert!(table.contains(": 3 accepted, 0 refused"), "{table}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{table}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let out = admin(&url, &owner, &["usage", "--period", "2020-13"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("period"),
        "{}",
        text(&out.stderr)
    );

    // Quotas: owners only; set, then enforced at the edge; removed, admitted again.
    let out = admin(&url, &admin_token, &["quota", "--monthly-events", "3"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    let out = admin(
        &url,
        &owner,
        &["quota", "--monthly-events", "3", "--source", "demo"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "source:demo: 3 events a month");
    until(&server, "demo-write-key", StatusCode::TOO_MANY_REQUESTS).await;
    let out = admin(&url, &owner, &["quota", "--none", "--source", "demo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "source:demo: no quota");
    until(&server, "demo-write-key", StatusCode::OK).await;
    // One of --monthly-events and --none.
    let out = admin(&url, &owner, &["quota"]);
    assert!(!out.status.success());
    server.stop();
    db.finish().await;
}

#[tokio::test]
async fn a_change_kept_for_review_is_not_reported_done() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let url = format!("http://{}", server.control);
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let grant = serde_json::json!({"principal": {"type": "user", "id": member_id},
                                   "resource": {"kind": "source", "id": "demo"},
                                   "level": "full"});
    let (status, body) = api.post(&owner, "/api/v1/grants", grant).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let labels = serde_json::json!({"labels": [{"key": "environment", "value": "prod"}]});
    let (status, body) = api
        .post(&owner, "/api/v1/sources/demo/labels", labels)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &owner,
            reqwest::Method::PUT,
            "/api/v1/settings/protected-labels",
            Some(serde_json::json!({"labels": ["environment:prod"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let out = admin(&url, &member, &["keys", "add", "demo"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not applied") && err.contains("rc_"), "{err}");
    assert!(!err.contains("shown once"), "{err}");
    assert_eq!(
        track(&server, "demo-write-key", "still").await,
        StatusCode::OK
    );
    server.stop();
    db.finish().await;
}
