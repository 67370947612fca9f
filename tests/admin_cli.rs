//! `sluice admin` as an operator runs it: the real binary on a data directory.

use std::path::Path;
use std::process::{Command, Output};

use sqlx::Connection as _;

fn admin(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("admin")
        .args(args)
        .current_dir(dir)
        .env("SLUICE__LOG__DIR", dir.join("data"))
        .env("SLUICE__CATALOG__PATH", dir.join("catalog.toml"))
        .env_remove("SLUICE_SECRET_KEY")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run sluice admin")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn bootstrap_import_export_explain_and_a_tampered_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[[sources]]\nid = \"shop\"\nwrite_keys = [{ key = \"shop-key\" }]\n\n[[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nsources = [\"shop\"]\nsettings = { url = \"https://example.com/hook/SECRET\" }\n",
    )
    .expect("catalog");

    let out = admin(dir.path(), &["bootstrap", "--email", "Ops@Example.com"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    assert!(token.trim().starts_with("slc_pat_"), "{token}");
    // Only once: the workspace has an owner now.
    let again = admin(dir.path(), &["bootstrap", "--email", "other@example.com"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("has an owner already"),
        "{}",
        text(&again.stderr)
    );

    let out = admin(dir.path(), &["import", catalog.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("imported 1 sources, 1 write keys, 1 destinations"));
    // Importing again conflicts instead of replacing.
    let out = admin(dir.path(), &["import", catalog.to_str().expect("utf8")]);
    assert!(!out.status.success());

    let out = admin(dir.path(), &["export"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported = text(&out.stdout);
    assert!(
        exported.contains("id = \"shop\"") && !exported.contains("shop-key"),
        "{exported}"
    );
    // The export is a catalog file the gateway accepts.
    let doc = sluice::catalog::Document::parse(&exported).expect("parses");
    sluice::catalog::Snapshot::try_build(1, &doc).expect("installable");

    let out = admin(
        dir.path(),
        &[
            "explain",
            "--email",
            "ops@example.com",
            "--action",
            "delete_source",
            "--source",
            "shop",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(decision["allowed"], true);

    let out = admin(dir.path(), &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("intact"));

    // Someone with write access to the database file edits history.
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", dir.path().join("data/control.db").display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("open db");
    sqlx::query("DROP TRIGGER audit_events_no_update")
        .execute(&mut conn)
        .await
        .expect("drop");
    sqlx::query("UPDATE audit_events SET body = REPLACE(body, 'ops@example.com', 'nobody@example.com') WHERE action = 'user.bootstrap'")
        .execute(&mut conn)
        .await
        .expect("tamper");
    drop(conn);
    let out = admin(dir.path(), &["audit", "verify"]);
    assert!(!out.status.success(), "a tampered chain verified");
    assert!(
        text(&out.stderr).contains("BROKEN"),
        "{}",
        text(&out.stderr)
    );
}
