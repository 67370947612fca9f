//! Source functions end to end: a GitHub-style webhook posted to a source function's
//! endpoint on the data listener becomes events of its source (the control plane made,
//! deployed and attached the function), which reach the source's destination. The
//! endpoint's secret, the function's refusals and the role matrix are checked on the way.

mod common;

use std::time::{Duration, Instant};

use common::client;
use common::control::{Api, audited, server_with};
use common::databases;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const GITHUB: &str = r#"
async function onRequest(request, settings) {
  const kind = request.headers.get("X-GitHub-Event");
  if (kind === "ping") return;
  if (kind !== "push") throw new ValidationError("unsupported GitHub event " + kind);
  const body = await request.json();
  for (const commit of body.commits) {
    Segment.track({
      event: "Commit Pushed",
      messageId: "commit-" + commit.id,
      userId: commit.author.username,
      properties: { repository: body.repository.full_name, message: commit.message, team: settings.team },
    });
  }
  Segment.identify({ userId: body.pusher.name, traits: { email: body.pusher.email } });
}
"#;

fn push() -> Value {
    json!({
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/web"},
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "commits": [
            {"id": "c1", "message": "Fix the build", "author": {"username": "ada"}},
            {"id": "c2", "message": "Add a test", "author": {"username": "grace"}}
        ]
    })
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn webhook(url: &str, kind: &str, auth: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = client()
        .post(url)
        .header("x-github-event", kind)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(secret) = auth {
        request = request.bearer_auth(secret);
    }
    let response = request.send().await.expect("webhook");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_webhook_becomes_events_of_the_source() {
    let db = databases::sqlite().await;
    let exports = tempfile::tempdir().expect("tempdir");
    let dir = exports.path().to_owned();
    let (server, link) = server_with(&db, move |c| c.delivery.file_dir = dir).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (reader, _) = api
        .invited(&owner, &server, "reader@example.com", "read_only")
        .await;
    let (outsider, outsider_id) = api
        .invited(&owner, &server, "outsider@example.com", "member")
        .await;
    for (user, level) in [(&member_id, "read_write"), (&outsider_id, "no_access")] {
        let body = json!({"principal": {"type": "user", "id": user},
                          "resource": {"kind": "source", "id": "demo"}, "level": level});
        let (status, body) = api.post(&owner, "/api/v1/grants", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // The function, deployed; a destination for what it makes.
    let (status, body) = api
        .post(
            &member,
            "/api/v1/functions",
            json!({"displayName": "GitHub", "resourceType": "SOURCE", "code": GITHUB,
                   "settings": [{"name": "team", "label": "Team", "description": "",
                                 "type": "STRING", "required": true, "sensitive": false},
                                {"name": "token", "label": "Token", "description": "",
                                 "type": "STRING", "required": false, "sensitive": true}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["function"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, body) = api
        .post(
            &member,
            &format!("/api/v1/functions/{id}/deploy"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"id": "archive", "sourceId": "demo", "metadataId": "file",
                   "settings": {"path": "archive.ndjson"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Put on the source: read-only may not; a hidden source answers as a missing one.
    let path = "/api/v1/sources/demo/function";
    let put = json!({"functionId": id, "settings": {"team": "platform", "token": "gh-s3cret"}});
    let (status, _) = api
        .call(&reader, Method::PUT, path, Some(put.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, hidden) = api
        .call(&outsider, Method::PUT, path, Some(put.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{hidden}");
    let (status, body) = api
        .call(
            &member,
            Method::PUT,
            path,
            Some(json!({"functionId": id, "settings": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a required setting: {body}");
    let (status, body) = api
        .call(&member, Method::PUT, path, Some(put.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["data"]["secret"].as_str().expect("secret").to_owned();
    let endpoint = body["data"]["sourceFunction"]["path"]
        .as_str()
        .expect("path")
        .to_owned();
    let (_, again) = api.get(&member, path).await;
    assert!(
        again["data"].get("secret").is_none(),
        "the secret is shown once: {again}"
    );
    assert!(!again.to_string().contains(&secret));
    assert!(!again.to_string().contains("gh-s3cret"), "{again}");
    assert_eq!(
        again["data"]["sourceFunction"]["encryptedSettings"],
        json!({"token": "<redacted>"})
    );
    // While a source holds its value, the setting stays sensitive.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            &format!("/api/v1/functions/{id}"),
            Some(
                json!({"settings": [{"name": "team", "label": "Team", "description": "",
                                      "type": "STRING", "required": true, "sensitive": false},
                                     {"name": "token", "label": "Token", "description": "",
                                      "type": "STRING", "required": false, "sensitive": false}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let url = server.url(&endpoint);

    // The endpoint takes its secret only; it is up once the catalog has it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = webhook(&url, "ping", Some(&secret), &json!({"zen": "hi"})).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(Instant::now() < deadline, "the endpoint never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for auth in [None, Some("not-the-secret")] {
        let (status, body) = webhook(&url, "push", auth, &push()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], "invalid_function_secret", "{body}");
    }
    let (status, _) = webhook(
        &server.url("/v1/functions/sfn_nonexistent"),
        "push",
        Some(&secret),
        &push(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = webhook(&url, "issues", Some(&secret), &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "function_invalid", "{body}");
    // The failure is readable from the API (this test's control plane runs the endpoint).
    let (status, body) = api
        .get(&reader, &format!("/api/v1/functions/{id}/errors"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = &body["data"]["errors"][0];
    assert_eq!(last["kind"], "invalid", "{body}");
    assert_eq!(last["target"], "demo", "{body}");
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unsupported GitHub event issues"),
        "{body}"
    );
    let (status, body) = webhook(&format!("{url}?token={secret}"), "push", None, &push()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Its events are the source's: stored, then delivered to the source's destination.
    let out = exports.path().join("archive.ndjson");
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines(&out).len() < 3 {
        assert!(Instant::now() < deadline, "delivered: {:?}", lines(&out));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = lines(&out);
    let commits: Vec<&Value> = got
        .iter()
        .filter(|e| e["event"] == "Commit Pushed")
        .collect();
    assert_eq!(commits.len(), 2, "{got:?}");
    assert_eq!(commits[0]["userId"], "ada");
    assert_eq!(commits[0]["properties"]["repository"], "acme/web");
    assert_eq!(commits[0]["properties"]["team"], "platform");
    assert_eq!(commits[1]["messageId"], "commit-c2");
    let identify = got
        .iter()
        .find(|e| e["type"] == "identify")
        .expect("identify");
    assert_eq!(identify["traits"]["email"], "ada@example.com");
    // A redelivered webhook makes the same messageIds: stored once.
    let (status, _) = webhook(&url, "push", Some(&secret), &push()).await;
    assert_eq!(status, StatusCode::OK);

    // Rotating the secret stops the old one at once (once the catalog has the new one).
    let (status, body) = api
        .post(&member, &format!("{path}/secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated = body["data"]["secret"].as_str().expect("secret").to_owned();
    assert_ne!(rotated, secret);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = webhook(&url, "ping", Some(&rotated), &json!({})).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the new secret never worked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = webhook(&url, "ping", Some(&secret), &json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // In use, the function is not deleted; taken off, its endpoint is gone.
    let (status, _) = api
        .call(
            &member,
            Method::DELETE,
            &format!("/api/v1/functions/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = api.call(&member, Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while webhook(&url, "ping", Some(&rotated), &json!({})).await.0 != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "the endpoint stayed up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // On a protected source, a member's changes to its source function are kept for
    // review (202) and made on approval as the approver's call; an owner's are made at
    // once; what the caller may not do at all is refused, not proposed.
    api.protect(&owner, "demo").await;
    let (status, _) = api
        .call(&reader, Method::PUT, path, Some(put.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api
        .call(&member, Method::PUT, path, Some(put.clone()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request = body["data"]["resourceChangeRequest"]["id"]
        .as_str()
        .expect("a request")
        .to_owned();
    let (status, _) = api.get(&member, path).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing is put before approval"
    );
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/resource-change-requests/{request}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["result"]["secret"].is_string(), "{body}");
    for (method, at) in [
        (Method::POST, format!("{path}/secret")),
        (Method::DELETE, path.to_owned()),
    ] {
        let (status, body) = api.call(&member, method, &at, Some(json!({}))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{at}: {body}");
    }
    let (status, body) = api.call(&owner, Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    audited(
        &api,
        &owner,
        &[
            "source.function.put",
            "source.function.secret.rotate",
            "source.function.delete",
        ],
    )
    .await;
    server.stop();
    db.finish().await;
}
