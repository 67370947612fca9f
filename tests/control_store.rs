//! The control-plane store, every test on SQLite and on PostgreSQL.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::databases::{self, TestDb};
use sluice::catalog::{Document, KeyRejection, Snapshot};
use sluice::control::audit::{Actor, Broken, Draft, Event};
use sluice::control::policy::{self, Level, ResourceRef, Role, Target};
use sluice::control::store::grants::{Holder, NewGrant};
use sluice::control::store::sources::{SourceRow, Viewer};
use sluice::control::store::users::NewUser;
use sluice::control::store::{
    self, StoreError, catalog, grants, groups, sources, users, workspaces,
};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("time")
}

fn draft(action: &str, id: &str) -> Draft {
    Draft {
        time: now(),
        actor: Actor::System,
        action: action.into(),
        resource_type: "test".into(),
        resource_id: id.into(),
        before: None,
        after: Some(serde_json::json!({"secret": "<redacted>"})),
        ip: None,
        user_agent: None,
    }
}

async fn workspace(db: &TestDb) -> String {
    let mut c = db.store.change().await.expect("change");
    let ws = workspaces::create(c.conn(), "Default", "default", now())
        .await
        .expect("ws");
    c.record(draft("workspace.create", &ws.id))
        .await
        .expect("audit");
    c.commit().await.expect("commit");
    ws.id
}

fn source(id: &str, labels: &[(&str, &str)]) -> SourceRow {
    SourceRow {
        id: id.into(),
        name: id.into(),
        metadata_id: String::new(),
        enabled: true,
        rate_per_second: None,
        rate_burst: None,
        tracking_plan_id: None,
        enforcement: "off".into(),
        controls: serde_json::json!({}),
        without_consent: sluice::consent::WithoutConsent::Deliver,
        pii: Vec::new(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        created_at: now(),
        updated_at: now(),
    }
}

#[tokio::test]
async fn the_audit_chain_verifies_and_finds_edits_and_deletions() {
    for db in databases::both().await {
        workspace(&db).await;
        for i in 0..5 {
            let mut c = db.store.change().await.expect("change");
            c.record(draft("thing.update", &format!("t{i}")))
                .await
                .expect("record");
            c.commit().await.expect("commit");
        }
        assert_eq!(
            store::verify_audit(&db.store).await.expect("read"),
            Ok(6),
            "{}",
            db.label
        );
        assert_eq!(db.store.revision().await.expect("revision"), 6);

        // The tables refuse UPDATE and DELETE.
        let mut raw = db.raw().await;
        let refused = sqlx::query("UPDATE audit_events SET action = 'x' WHERE seq = 2")
            .execute(&mut raw)
            .await;
        assert!(refused.is_err(), "{}: update allowed", db.label);
        let refused = sqlx::query("DELETE FROM audit_events WHERE seq = 6")
            .execute(&mut raw)
            .await;
        assert!(refused.is_err(), "{}: delete allowed", db.label);

        // Someone with the database's owner rights removes the guard and edits a row …
        let unguard = match db.label {
            "sqlite" => vec![
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
            ],
            _ => vec!["ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"],
        };
        for statement in unguard {
            sqlx::query(statement)
                .execute(&mut raw)
                .await
                .expect("unguard");
        }
        sqlx::query("UPDATE audit_events SET body = REPLACE(body, 't2', 'tX') WHERE seq = 4")
            .execute(&mut raw)
            .await
            .expect("edit");
        assert_eq!(
            store::verify_audit(&db.store).await.expect("read"),
            Err(Broken::Altered { seq: 4 }),
            "{}",
            db.label
        );
        sqlx::query("UPDATE audit_events SET body = REPLACE(body, 'tX', 't2') WHERE seq = 4")
            .execute(&mut raw)
            .await
            .expect("restore");
        // … or deletes the newest events: the head remembers the chain's length.
        sqlx::query("DELETE FROM audit_events WHERE seq >= 5")
            .execute(&mut raw)
            .await
            .expect("delete");
        assert_eq!(
            store::verify_audit(&db.store).await.expect("read"),
            Err(Broken::Truncated {
                expected: 6,
                found: 4
            }),
            "{}",
            db.label
        );
        // … or one in the middle.
        sqlx::query("DELETE FROM audit_events WHERE seq = 2")
            .execute(&mut raw)
            .await
            .expect("delete");
        assert_eq!(
            store::verify_audit(&db.store).await.expect("read"),
            Err(Broken::Unlinked { seq: 3 }),
            "{}",
            db.label
        );
        drop(raw);
        db.finish().await;
    }
}

#[tokio::test]
async fn concurrent_writers_keep_one_unbroken_chain() {
    for db in databases::both().await {
        workspace(&db).await;
        // Two processes' worth of writers: the second store has its own pool.
        let other = store::Store::open(&db.url, databases::key())
            .await
            .expect("second store");
        let mut tasks = Vec::new();
        for t in 0..6 {
            let store = if t % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let mut c = store.change().await.expect("change");
                    c.record(draft("thing.update", &format!("{t}-{i}")))
                        .await
                        .expect("record");
                    c.commit().await.expect("commit");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            store::verify_audit(&db.store).await.expect("read"),
            Ok(61),
            "{}",
            db.label
        );
        other.close().await;
        db.finish().await;
    }
}

#[tokio::test]
async fn a_change_not_committed_leaves_nothing() {
    for db in databases::both().await {
        let ws = workspace(&db).await;
        {
            let mut c = db.store.change().await.expect("change");
            sources::insert(c.conn(), &ws, &source("gone", &[]))
                .await
                .expect("insert");
            c.record(draft("source.create", "gone"))
                .await
                .expect("record");
            // dropped: rolled back
        }
        let mut conn = db.store.read().await.expect("conn");
        assert!(
            sources::get(&mut conn, &ws, "gone")
                .await
                .expect("get")
                .is_none()
        );
        drop(conn);
        assert_eq!(store::verify_audit(&db.store).await.expect("read"), Ok(1));
        db.finish().await;
    }
}

#[tokio::test]
async fn emails_are_unique_case_insensitively_and_ids_stay_in_their_workspace() {
    for db in databases::both().await {
        let ws = workspace(&db).await;
        let mut c = db.store.change().await.expect("change");
        let other = workspaces::create(c.conn(), "Other", "other", now())
            .await
            .expect("ws");
        let new = |email| NewUser {
            email,
            first_name: "A",
            last_name: "B",
            role: Role::Member,
            origin: "invite",
        };
        let alice = users::create(c.conn(), &ws, new("Alice@Example.com"), now())
            .await
            .expect("user");
        assert_eq!(alice.email, "alice@example.com");
        let again = users::create(c.conn(), &ws, new("alice@EXAMPLE.com"), now()).await;
        assert!(
            matches!(again, Err(StoreError::Conflict(_))),
            "{}: {again:?}",
            db.label
        );
        drop(c);
        let mut c = db.store.change().await.expect("change");
        let alice = users::create(c.conn(), &ws, new("alice@example.com"), now())
            .await
            .expect("user");
        sources::insert(c.conn(), &ws, &source("web", &[]))
            .await
            .expect("source");
        c.commit().await.expect("commit");
        let mut conn = db.store.read().await.expect("conn");
        assert!(
            users::get(&mut conn, &other.id, &alice.id)
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            sources::get(&mut conn, &other.id, "web")
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            sources::get(&mut conn, &ws, "web")
                .await
                .expect("get")
                .is_some()
        );
        drop(conn);
        db.finish().await;
    }
}

/// The SQL filter of list endpoints and `policy::level` agree on who sees what.
#[tokio::test]
async fn hidden_sources_never_leave_sql_and_the_filter_matches_the_policy() {
    for db in databases::both().await {
        let ws = workspace(&db).await;
        let mut c = db.store.change().await.expect("change");
        for (id, labels) in [
            ("a", vec![("environment", "prod")]),
            ("b", vec![("environment", "dev")]),
            ("c", vec![]),
            ("d", vec![("environment", "prod"), ("team", "x")]),
            ("e", vec![("team", "x")]),
        ] {
            sources::insert(c.conn(), &ws, &source(id, &labels))
                .await
                .expect("source");
        }
        let mk = |email, role| NewUser {
            email,
            first_name: "",
            last_name: "",
            role,
            origin: "invite",
        };
        let member = users::create(c.conn(), &ws, mk("m@x.io", Role::Member), now())
            .await
            .expect("user");
        let reader = users::create(c.conn(), &ws, mk("r@x.io", Role::ReadOnly), now())
            .await
            .expect("user");
        let admin = users::create(c.conn(), &ws, mk("a@x.io", Role::Admin), now())
            .await
            .expect("user");
        let group = groups::create(c.conn(), &ws, "analysts", None, "local", now())
            .await
            .expect("group");
        groups::add_member(c.conn(), &group.id, &reader.id)
            .await
            .expect("member");
        groups::add_member(c.conn(), &group.id, &member.id)
            .await
            .expect("member");
        let grant = |holder: Holder, target: Target, level, expires_at| NewGrant {
            principal: holder,
            resource: target,
            level,
            justification: "test".into(),
            approved_by: String::new(),
            expires_at,
        };
        let label = |k: &str, v: &str| Target::SourceLabel {
            key: k.into(),
            value: v.into(),
        };
        let src = |id: &str| Target::Source { id: id.into() };
        let u = |row: &users::UserRow| Holder::User(row.id.clone());
        let g = Holder::Group(group.id.clone());
        for new in [
            // member: prod hidden by label, but own grant on d wins over the label; e hidden by the group.
            grant(
                u(&member),
                label("environment", "prod"),
                Level::NoAccess,
                None,
            ),
            grant(u(&member), src("d"), Level::ReadOnly, None),
            // member: c hidden by an own grant; a group grant cannot lift it.
            grant(u(&member), src("c"), Level::NoAccess, None),
            grant(g.clone(), src("c"), Level::Full, None),
            // reader: everything visible by default; e hidden through the group's label grant.
            grant(g.clone(), label("team", "x"), Level::NoAccess, None),
            // … but an own grant on d wins over the group.
            grant(u(&reader), src("d"), Level::ReadWrite, None),
            // an expired own grant counts as absent.
            grant(
                u(&reader),
                src("b"),
                Level::NoAccess,
                Some(now() - Duration::hours(1)),
            ),
            // admin: grants never restrict.
            grant(u(&admin), src("a"), Level::NoAccess, None),
        ] {
            grants::put(c.conn(), &ws, new, now()).await.expect("grant");
        }
        c.commit().await.expect("commit");

        let mut conn = db.store.read().await.expect("conn");
        let all = sources::all(&mut conn, &ws).await.expect("all");
        for (who, expected) in [
            (&member, "b d"),
            (&reader, "a b c d"),
            (&admin, "a b c d e"),
        ] {
            let principal = users::principal(&mut conn, &ws, &who.id)
                .await
                .expect("load")
                .expect("member");
            let viewer = Viewer {
                user: &principal,
                now: now(),
            };
            let seen: Vec<String> = sources::list_visible(&mut conn, &ws, viewer, "", 100)
                .await
                .expect("list")
                .into_iter()
                .map(|s| s.id)
                .collect();
            assert_eq!(seen.join(" "), expected, "{}: {}", db.label, who.email);
            let by_policy: Vec<&str> = all
                .iter()
                .filter(|s| {
                    let decision = policy::authorize(
                        policy::Principal {
                            user: &principal,
                            token: None,
                        },
                        policy::Action::ViewSource,
                        ResourceRef::Source(s.as_ref()),
                        policy::Settings::default(),
                        now(),
                    );
                    decision.allowed
                })
                .map(|s| s.id.as_str())
                .collect();
            assert_eq!(
                by_policy.join(" "),
                expected,
                "{}: policy for {}",
                db.label,
                who.email
            );
        }
        // Pagination: after a cursor, at most `limit`.
        let principal = users::principal(&mut conn, &ws, &admin.id)
            .await
            .expect("load")
            .expect("member");
        let page = sources::list_visible(
            &mut conn,
            &ws,
            Viewer {
                user: &principal,
                now: now(),
            },
            "b",
            2,
        )
        .await
        .expect("page");
        assert_eq!(
            page.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["c", "d"]
        );
        drop(conn);
        db.finish().await;
    }
}

#[tokio::test]
async fn the_export_is_what_the_gateway_installs_and_carries_only_digests() {
    let text = std::fs::read_to_string("config/catalog.toml").expect("catalog");
    let file = Document::parse(&text).expect("parse");
    let extra = Document::parse(
        r#"
[[tracking_plans]]
id = "plan"
version = 3
rules = [{ type = "TRACK", key = "Signed Up", jsonSchema = { type = "object" } }]

[[sources]]
id = "app"
tracking_plan = "plan"
enforcement = "block"
write_keys = [{ key = "app-key" }, { key = "app-old", revoked = true }]

[[destinations]]
id = "hook"
type = "webhook"
sources = ["app", "demo"]
settings = { url = "https://hooks.example.com/T0/B0/SECRETPATH", secret = "hmac-secret" }
"#,
    )
    .expect("parse");
    for db in databases::both().await {
        let ws = workspace(&db).await;
        let mut c = db.store.change().await.expect("change");
        let done = catalog::import(c.conn(), db.store.key(), &ws, &file, now())
            .await
            .expect("import");
        assert_eq!((done.sources, done.keys), (1, 1));
        let done = catalog::import(c.conn(), db.store.key(), &ws, &extra, now())
            .await
            .expect("import");
        assert_eq!(
            (done.sources, done.keys, done.destinations, done.plans),
            (1, 2, 1, 1)
        );
        c.record(draft("catalog.import", "file"))
            .await
            .expect("record");
        c.commit().await.expect("commit");

        let mut conn = db.store.read().await.expect("conn");
        let doc = catalog::export(&mut conn, db.store.key(), &ws)
            .await
            .expect("export");
        let json = serde_json::to_string(&doc).expect("json");
        assert!(
            !json.contains("demo-write-key") && !json.contains("app-key"),
            "plaintext key exported"
        );
        let snapshot = Snapshot::try_build(1, &doc).expect("installable");
        assert!(snapshot.authenticate("demo-write-key", now()).is_ok());
        assert!(snapshot.authenticate("app-key", now()).is_ok());
        assert_eq!(
            snapshot.authenticate("app-old", now()).err(),
            Some(KeyRejection::Revoked)
        );
        let hook = snapshot.destination("hook").expect("destination");
        assert!(hook.takes_from("app") && hook.takes_from("demo"));
        assert_eq!(doc.tracking_plans[0].version, 3);

        // Destination settings are sealed at rest: the raw row shows no credential.
        let raw: String =
            sqlx::query_scalar("SELECT sealed_doc FROM destinations WHERE id = 'hook'")
                .fetch_one(&mut *conn)
                .await
                .expect("raw");
        assert!(
            !raw.contains("SECRETPATH")
                && !raw.contains("hmac-secret")
                && !raw.contains("hooks.example.com")
        );
        // A sealed document moved onto another row does not open.
        drop(conn);
        let mut raw_conn = db.raw().await;
        sqlx::query(
            "INSERT INTO destinations (id, workspace_id, name, metadata_id, enabled, sealed_doc, created_at, updated_at)
             SELECT 'copy', workspace_id, name, metadata_id, enabled, sealed_doc, created_at, updated_at FROM destinations WHERE id = 'hook'",
        )
        .execute(&mut raw_conn)
        .await
        .expect("copy");
        let mut conn = db.store.read().await.expect("conn");
        let moved = store::destinations::get(&mut conn, db.store.key(), &ws, "copy").await;
        assert!(
            matches!(moved, Err(StoreError::Secret(_))),
            "{}: {moved:?}",
            db.label
        );
        drop(conn);
        db.finish().await;
    }
}

/// Waits up to `within` for `rx` to announce at least `seq`.
async fn announced(rx: &mut tokio::sync::watch::Receiver<u64>, seq: u64, within: Duration) -> bool {
    let wait = within.to_std().expect("duration");
    tokio::time::timeout(wait, rx.wait_for(|r| *r >= seq))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn other_processes_changes_wake_a_store_by_notification_and_by_poll() {
    let db = databases::postgres().await;
    workspace(&db).await;
    // Polls too slowly to matter: only the notification can wake it in time.
    let listening = store::Store::open_following(
        &db.url,
        databases::key(),
        std::time::Duration::from_secs(600),
    )
    .await
    .expect("listening store");
    // Polls quickly: finds what no notification announced.
    let polling = store::Store::open_following(
        &db.url,
        databases::key(),
        std::time::Duration::from_millis(200),
    )
    .await
    .expect("polling store");
    let mut heard = listening.watch_revision();
    let mut polled = polling.watch_revision();
    let before = *heard.borrow();

    let mut c = db.store.change().await.expect("change");
    c.record(draft("thing.update", "notified"))
        .await
        .expect("record");
    let seq = c.commit().await.expect("commit");
    assert!(seq > before);
    assert!(
        announced(&mut heard, seq, Duration::seconds(1)).await,
        "no notification within 1 s"
    );
    assert!(announced(&mut polled, seq, Duration::seconds(1)).await);

    // A change whose notification was lost (as across a reconnect): the poll finds it.
    let mut raw = db.raw().await;
    sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1")
        .execute(&mut raw)
        .await
        .expect("silent change");
    assert!(
        announced(&mut polled, seq + 1, Duration::seconds(2)).await,
        "the poll did not find the unannounced change"
    );
    assert!(
        !announced(&mut heard, seq + 1, Duration::milliseconds(300)).await,
        "the slow poller saw an unannounced change: the test proves nothing"
    );
    drop(raw);
    listening.close().await;
    polling.close().await;
    db.finish().await;
}

#[tokio::test]
async fn a_chain_rewritten_without_the_key_or_behind_the_checkpoint_fails_verify() {
    for db in databases::both().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = db
            .store
            .clone()
            .with_checkpoint(dir.path().join(store::CHECKPOINT_FILE));
        let mut c = store.change().await.expect("change");
        workspaces::create(c.conn(), "W", "w", now())
            .await
            .expect("workspace");
        c.record(draft("workspace.create", "w"))
            .await
            .expect("record");
        c.commit().await.expect("commit");
        for i in 0..4 {
            let mut c = store.change().await.expect("change");
            c.record(draft("thing.update", &format!("t{i}")))
                .await
                .expect("record");
            c.commit().await.expect("commit");
        }
        assert_eq!(
            store::verify_audit(&store).await.expect("read"),
            Ok(5),
            "{}",
            db.label
        );

        // Someone with the database (not the key) rewrites event 2's actor and re-links
        // the rest with plain SHA-256, marking them unkeyed, and moves the head.
        let mut raw = db.raw().await;
        let unguard = match db.label {
            "sqlite" => vec![
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
            ],
            _ => vec!["ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"],
        };
        for statement in unguard {
            sqlx::query(statement)
                .execute(&mut raw)
                .await
                .expect("unguard");
        }
        let mut events = Vec::new();
        for seq in 1..=5i64 {
            let body: String = sqlx::Row::get(
                &sqlx::query("SELECT body FROM audit_events WHERE seq = $1")
                    .bind(seq)
                    .fetch_one(&mut raw)
                    .await
                    .expect("row"),
                0,
            );
            events.push(serde_json::from_str::<Event>(&body).expect("event"));
        }
        events[1].what.actor = Actor::System;
        let mut prev = sluice::control::audit::GENESIS;
        for e in &mut events {
            e.keyed = false;
            e.prev_hash = prev;
            e.hash = sluice::control::audit::hash(e);
            prev = e.hash;
        }
        for e in &events {
            sqlx::query(
                "UPDATE audit_events SET body = $2, prev_hash = $3, hash = $4 WHERE seq = $1",
            )
            .bind(i64::try_from(e.seq).expect("seq"))
            .bind(serde_json::to_string(e).expect("json"))
            .bind(store::hex32(&e.prev_hash))
            .bind(store::hex32(&e.hash))
            .execute(&mut raw)
            .await
            .expect("rewrite");
        }
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(store::hex32(&prev))
            .execute(&mut raw)
            .await
            .expect("head");
        // The chain alone no longer tells (every event unkeyed and linked): the
        // checkpoint outside the database does, which knows events were keyed from 1 …
        assert_eq!(
            store::verify_audit(&store).await.expect("read"),
            Err(Broken::Downgraded { seq: 1 }),
            "{}",
            db.label
        );
        // … and which head it saw: without the first-keyed mark, the hash still differs.
        let file = dir.path().join(store::CHECKPOINT_FILE);
        let text = std::fs::read_to_string(&file).expect("checkpoint");
        let head: Vec<&str> = text.split_whitespace().take(2).collect();
        std::fs::write(&file, head.join(" ")).expect("rewrite checkpoint");
        let store = store.clone().with_checkpoint(file);
        assert_eq!(
            store::verify_audit(&store).await.expect("read"),
            Err(Broken::Checkpoint { seq: 5 }),
            "{}",
            db.label
        );
        drop(raw);
        db.finish().await;
    }
}
