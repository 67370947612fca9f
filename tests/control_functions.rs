//! Functions through the control plane: a test run executes code on a sample event in
//! the real sandbox and reports what delivery would do with it; it follows the role
//! matrix's "Create Functions" row (owner, admin, member; not read-only).

mod common;

use common::control::{Api, server_with};
use common::databases;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PATH: &str = "/api/v1/functions/test-run";

const MASK: &str = r#"
async function onTrack(event, settings) {
  console.log("masking", event.messageId);
  if (event.event === "Skip") throw new DropEvent("not for this destination");
  if (event.event === "Later") throw new RetryError("rate limited");
  if (event.event === "Bad") throw new ValidationError("no email");
  if (event.event === "Spin") for (;;) {}
  const email = event.properties.email;
  event.properties.email = email.replace(/^[^@]+/, settings.mask);
  return event;
}
"#;

fn sample(name: &str) -> Value {
    json!({"type": "track", "event": name, "messageId": "m-1", "userId": "u-1",
           "properties": {"email": "ada@example.com"}})
}

fn run(name: &str) -> Value {
    json!({"code": MASK, "event": sample(name), "settings": {"mask": "***"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_run_reports_what_the_function_does_and_follows_the_matrix() {
    let db = databases::sqlite().await;
    let (server, link) = server_with(&db, |c| {
        c.control.functions = true;
        c.control.functions_runner = env!("CARGO_BIN_EXE_sluice").into();
    })
    .await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, _) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (reader, _) = api
        .invited(&owner, &server, "reader@example.com", "read_only")
        .await;

    // The matrix row: owner, admin, member; not read-only.
    for token in [&owner, &admin, &member] {
        let (status, body) = api.post(token, PATH, run("Signed Up")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let result = &body["data"];
        assert_eq!(result["handler"], "onTrack", "{body}");
        assert_eq!(result["outcome"], "EVENT", "{body}");
        assert_eq!(result["output"]["properties"]["email"], "***@example.com");
        assert_eq!(result["logs"], json!(["log masking m-1"]), "{body}");
    }
    let (status, body) = api.post(&reader, PATH, run("Signed Up")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api.post("slc_pat_nothing", PATH, run("Signed Up")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // What delivery would make of each answer.
    for (name, outcome, kind, retryable) in [
        ("Skip", "DROPPED", None, None),
        ("Later", "FAILED", Some("retry"), Some(true)),
        ("Bad", "FAILED", Some("invalid"), Some(false)),
        ("Spin", "FAILED", Some("timeout"), Some(false)),
    ] {
        let (status, body) = api.post(&member, PATH, run(name)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let result = &body["data"];
        assert_eq!(result["outcome"], outcome, "{name}: {body}");
        assert_eq!(result["error"]["kind"].as_str(), kind, "{name}: {body}");
        assert_eq!(result["error"]["retryable"].as_bool(), retryable, "{name}");
        assert!(result.get("output").is_none(), "{body}");
    }
    // What the engine cannot stop by itself (a promise executor turns its stop signal
    // into a rejection; a built-in loop over a huge array-like never checks it) is
    // stopped with the process it runs in.
    for code in [
        "async function onTrack() { for (;;) new Promise(() => { for (;;) {} }); }",
        "async function onTrack() { [].reverse.call({ length: 2 ** 53 - 1 }); }",
    ] {
        let started = std::time::Instant::now();
        let (status, body) = api
            .post(&member, PATH, json!({"code": code, "event": sample("x")}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["error"]["kind"], "timeout", "{code}: {body}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
    let (_, body) = api
        .post(
            &member,
            PATH,
            json!({"code": MASK, "event": sample("x").as_object().map(|e| {
                let mut e = e.clone();
                e.insert("type".into(), json!("identify"));
                e
            })}),
        )
        .await;
    assert_eq!(body["data"]["outcome"], "PASSED", "no onIdentify: {body}");
    let (_, body) = api
        .post(
            &member,
            PATH,
            json!({"code": "async function onBatch(events) { return events.slice(1); }",
                   "event": [sample("a"), sample("b")]}),
        )
        .await;
    assert_eq!(body["data"]["handler"], "onBatch", "{body}");
    assert_eq!(body["data"]["output"][0]["event"], "b", "{body}");

    // Code that does not load is a result: the run says why.
    for (code, expected) in [
        ("async function onTrack( {", "SyntaxError"),
        ("throw new Error('at load')", "at load"),
        ("for (;;) {}", "time limit"),
    ] {
        let (status, body) = api
            .post(&member, PATH, json!({"code": code, "event": sample("x")}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["outcome"], "FAILED", "{body}");
        assert_eq!(body["data"]["error"]["kind"], "load", "{body}");
        let message = body["data"]["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains(expected), "{code}: {body}");
    }

    // Bad input answers 400 naming the field, never 500.
    for (body, field) in [
        (
            json!({"code": "x".repeat(65 * 1024), "event": sample("x")}),
            "code",
        ),
        (json!({"code": MASK, "event": [sample("x"), 5]}), "event"),
        (
            json!({"code": MASK, "event": {"type": "nonsense"}}),
            "event.type",
        ),
        (json!({"code": MASK, "event": 5}), "event"),
        (
            json!({"code": MASK, "event": sample("x"), "settings": [1]}),
            "settings",
        ),
    ] {
        let (status, answer) = api.post(&member, PATH, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let (status, answer) = api
        .post(
            &member,
            PATH,
            json!({"code": MASK, "event": sample("x"), "extra": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    server.stop();
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_code_runs_only_where_the_installation_allows_it() {
    let db = databases::sqlite().await;
    let (server, link) = server_with(&db, |c| c.control.functions = false).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (status, body) = api.post(&owner, PATH, run("Signed Up")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.to_string().contains("control.functions"), "{body}");
    server.stop();
    db.finish().await;
}
