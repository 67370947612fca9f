//! The audit trail leaves the database: with `control.audit_stream` set, every event is
//! appended to a file as it commits, and `sluice admin audit verify --stream` proves the
//! database still holds exactly what was streamed. On SQLite and PostgreSQL.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::control::{Api, server_with};
use common::databases::{self, TestDb};
use common::receiver::{Answer, Receiver};
use reqwest::StatusCode;
use serde_json::json;
use sluice::control::audit_stream;

async fn scenario(db: &TestDb) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = dir.path().join("audit-stream.ndjson");
    let path = stream.clone();
    // A webhook receiver that fails the first delivery: the stream retries.
    let hook = Receiver::start().await;
    hook.script(&[Answer::Status(503)]);
    let url = hook.url();
    let (server, link) = server_with(db, move |c| {
        c.control.audit_stream = path;
        c.control.audit_webhook = url;
        c.control.audit_webhook_secret = sluice::config::Secret::new("hook-secret");
    })
    .await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    for name in ["web", "ios"] {
        let (status, body) = api
            .post(&owner, "/api/v1/sources", json!({"slug": name}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Every committed event reaches the file.
    let head = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("verify")
        .expect("intact");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let streamed = audit_stream::read(&stream).expect("read");
        if streamed.last().map(|e| e.seq) >= Some(head) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream stops at {:?}",
            streamed.last().map(|e| e.seq)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The webhook got the same chain, signed, after its first refusal.
    let deadline = Instant::now() + Duration::from_secs(10);
    let posted = loop {
        let mut events = Vec::new();
        for r in hook.received() {
            assert_eq!(
                r.signature.as_deref(),
                Some(audit_stream::signature(b"hook-secret", &r.body).as_str()),
                "signed"
            );
            for line in String::from_utf8_lossy(&r.body).lines() {
                events.push(serde_json::from_str(line).expect("an event per line"));
            }
        }
        if events.last().map(|e: &sluice::control::audit::Event| e.seq) >= Some(head) {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook got {} events",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut conn = db.raw().await;
    let stored = sluice::control::store::audit_log::all(&mut conn)
        .await
        .expect("chain");
    assert_eq!(
        audit_stream::compare(&posted, &stored, databases::key().chain_key()),
        Ok(posted.last().map_or(0, |e| e.seq))
    );

    // The operator's check, as they run it, against the same store and key.
    let log_dir = server.config.log.dir.clone();
    let verify = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["admin", "audit", "verify"])
            .args(extra)
            .env("SLUICE__LOG__DIR", &log_dir)
            .env("SLUICE__CONTROL__DATABASE_URL", &db.url)
            .env_remove("SLUICE_SECRET_KEY")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run sluice admin audit verify")
    };
    let file = stream.to_str().expect("utf8");
    let out = verify(&["--stream", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("matches the database through event"),
        "{said}"
    );

    // A streamed line edited by hand is caught by the stream's own chain.
    let text = std::fs::read_to_string(&stream).expect("stream");
    std::fs::write(&stream, text.replacen("\"web\"", "\"w3b\"", 1)).expect("edit");
    let out = verify(&["--stream", file]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MISMATCH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (The server's directory holds the key the check needs: stopped last.)
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_streamed_and_checked_sqlite() {
    let db = databases::sqlite().await;
    scenario(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_streamed_and_checked_postgres() {
    let db = databases::postgres().await;
    scenario(&db).await;
    db.finish().await;
}
