//! Functions through the control plane: a test run executes code on a sample event in
//! the real sandbox and reports what delivery would do with it; it follows the role
//! matrix's "Create Functions" row (owner, admin, member; not read-only).

mod common;

use common::control::{Api, audited, chain_holds, server_with, track};
use common::databases;
use reqwest::{Method, StatusCode};
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
        c.functions.program = env!("CARGO_BIN_EXE_sluice").into();
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

const TAG: &str = r#"
async function onTrack(event, settings) {
  event.properties = Object.assign({}, event.properties, { team: settings.team, v: VERSION });
  return event;
}
"#;

fn tag(version: u32) -> String {
    format!("const VERSION = {version};\n{TAG}")
}

async fn grant_destination(api: &Api, owner: &str, user: &str, id: &str, level: &str) {
    let body = json!({"principal": {"type": "user", "id": user},
                      "resource": {"kind": "destination", "id": id}, "level": level});
    let (status, body) = api.post(owner, "/api/v1/grants", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Lines of a file destination's output, as JSON.
fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_versioned_deployed_attached_and_governed() {
    for db in databases::both().await {
        lifecycle(db).await;
    }
}

async fn lifecycle(db: databases::TestDb) {
    let exports = tempfile::tempdir().expect("tempdir");
    let dir = exports.path().to_owned();
    let (server, link) = server_with(&db, move |c| {
        c.delivery.file_dir = dir;
        c.functions.program = env!("CARGO_BIN_EXE_sluice").into();
    })
    .await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    let (outsider, outsider_id) = api
        .invited(&owner, &server, "outsider@example.com", "member")
        .await;
    let (reader, _) = api
        .invited(&owner, &server, "reader@example.com", "read_only")
        .await;

    // Create: the matrix row (not read-only); everyone in the workspace reads functions.
    let create = json!({"displayName": "Tag team", "resourceType": "INSERT_DESTINATION",
                        "code": tag(1), "description": "adds the team",
                        "settings": [
                            {"name": "team", "label": "Team", "description": "", "type": "STRING",
                             "required": true, "sensitive": false},
                            {"name": "apiKey", "label": "API key", "description": "", "type": "STRING",
                             "required": false, "sensitive": true}]});
    let (status, body) = api.post(&reader, "/api/v1/functions", create.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api.post(&member, "/api/v1/functions", create.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let f = &body["data"]["function"];
    let id = f["id"].as_str().expect("id").to_owned();
    assert_eq!(f["version"], 1);
    assert_eq!(f["deployedAt"], Value::Null);
    assert_eq!(f["isLatestVersion"], false);
    let (status, body) = api.post(&member, "/api/v1/functions", create).await;
    assert_eq!(status, StatusCode::CONFLICT, "names are unique: {body}");
    let (status, body) = api
        .get(&reader, "/api/v1/functions?resourceType=INSERT_DESTINATION")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["functions"][0]["id"], json!(id));
    assert!(body["data"]["functions"][0].get("code").is_none());
    let (_, body) = api
        .get(&reader, "/api/v1/functions?resourceType=SOURCE")
        .await;
    assert_eq!(body["data"]["functions"], json!([]));

    // New code is a new version; the same code is not.
    let path = format!("/api/v1/functions/{id}");
    for (code, version) in [(tag(2), 2), (tag(2), 2)] {
        let (status, body) = api
            .call(&member, Method::PATCH, &path, Some(json!({"code": code})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["function"]["version"], version, "{body}");
    }
    let (status, _) = api
        .call(&reader, Method::PATCH, &path, Some(json!({"code": tag(9)})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = api.get(&reader, &format!("{path}/versions")).await;
    let versions: Vec<&str> = body["data"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert_eq!(versions, ["2", "1"], "{body}");
    let (status, body) = api.get(&reader, &format!("{path}/versions/1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"]["code"], json!(tag(1)));
    for missing in ["9", "0", "01", "x"] {
        let (status, _) = api
            .get(&reader, &format!("{path}/versions/{missing}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }

    // Deploy (nothing attached yet: the matrix row decides), then roll back by restoring
    // version 1 as version 3 and deploying it.
    let (status, _) = api
        .post(&reader, &format!("{path}/deploy"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api
        .post(&member, &format!("{path}/deploy"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["functionDeployment"]["status"], "SUCCESS");
    let (_, body) = api.get(&member, &path).await;
    assert_eq!(body["data"]["function"]["deployedVersion"], 2, "{body}");
    assert_eq!(body["data"]["function"]["isLatestVersion"], true);
    // An edit never touches the deployment.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            &path,
            Some(json!({"description": "edited"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["function"]["deployedVersion"], 2, "{body}");
    let (status, body) = api
        .post(
            &member,
            &format!("{path}/versions"),
            json!({"versionId": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"]["id"], "3");
    assert_eq!(body["data"]["version"]["isDeployed"], false);
    assert_eq!(body["data"]["version"]["code"], json!(tag(1)));

    // Attach it to a destination of the demo source.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/destinations",
            json!({"id": "tagged", "sourceId": "demo", "metadataId": "file",
                   "settings": {"path": "tagged.ndjson"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    grant_destination(&api, &owner, &outsider_id, "tagged", "no_access").await;
    grant_destination(&api, &owner, &member_id, "tagged", "read_write").await;
    let instance = |settings: Value| json!({"functionId": id, "integrationId": "tagged", "name": "Tag", "settings": settings});
    // The destination hidden from the caller answers as a missing one.
    let (status, hidden) = api
        .post(
            &outsider,
            "/api/v1/insert-function-instances",
            instance(json!({"team": "a"})),
        )
        .await;
    let (_, missing) = api
        .post(
            &outsider,
            "/api/v1/insert-function-instances",
            json!({"functionId": id, "integrationId": "nowhere", "name": "Tag",
                   "settings": {"team": "a"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{hidden}");
    assert_eq!(
        hidden.to_string().replace("tagged", "X"),
        missing.to_string().replace("nowhere", "X")
    );
    // Settings follow the declaration.
    for settings in [
        json!({}),
        json!({"team": 5}),
        json!({"team": "a", "other": "b"}),
    ] {
        let (status, body) = api
            .post(
                &member,
                "/api/v1/insert-function-instances",
                instance(settings),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["errors"][0]["field"], "settings", "{body}");
    }
    let (status, body) = api
        .post(
            &member,
            "/api/v1/insert-function-instances",
            instance(json!({"team": "growth", "apiKey": "s3cret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let made = &body["data"]["insertFunctionInstance"];
    let instance_id = made["id"].as_str().expect("id").to_owned();
    assert_eq!(made["settings"], json!({"team": "growth"}));
    assert_eq!(made["encryptedSettings"], json!({"apiKey": "<redacted>"}));
    assert!(!body.to_string().contains("s3cret"));
    let (status, _) = api
        .post(
            &member,
            "/api/v1/insert-function-instances",
            instance(json!({"team": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "one function per destination");
    // A redacted secret sent back keeps its value (seen only by the code).
    let ipath = format!("/api/v1/insert-function-instances/{instance_id}");
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            &ipath,
            Some(json!({"settings": {"team": "core", "apiKey": "<redacted>"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["insertFunctionInstance"]["encryptedSettings"],
        json!({"apiKey": "<redacted>"})
    );
    // Left out, settings stay as they are.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            &ipath,
            Some(json!({"name": "Tag 2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["insertFunctionInstance"]["settings"],
        json!({"team": "core"})
    );
    let (status, _) = api.get(&outsider, &ipath).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "hidden destination, hidden instance"
    );
    let (_, body) = api
        .get(
            &outsider,
            &format!("/api/v1/insert-function-instances?functionId={id}"),
        )
        .await;
    assert_eq!(body["data"]["instances"], json!([]), "{body}");
    let (_, body) = api
        .get(
            &member,
            &format!("/api/v1/insert-function-instances?functionId={id}"),
        )
        .await;
    assert_eq!(body["data"]["instances"][0]["id"], json!(instance_id));
    // A sensitive setting stays sensitive while instances hold values.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            &path,
            Some(
                json!({"settings": [{"name": "team", "label": "Team", "description": "",
                                      "type": "STRING", "required": true, "sensitive": false},
                                     {"name": "apiKey", "label": "API key", "description": "",
                                      "type": "STRING", "required": false, "sensitive": false}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The deployed version runs in delivery with the instance's settings: version 2
    // (tagging v: 2), then version 3 (v: 1) once deployed.
    let out = exports.path().join("tagged.ndjson");
    // A new destination takes the events that arrive once its delivery has started:
    // send until one arrives.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut n = 0;
    while lines(&out).is_empty() {
        n += 1;
        let id = format!("e-{n}");
        assert_eq!(track(&server, "demo-write-key", &id).await, StatusCode::OK);
        assert!(std::time::Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let first = &lines(&out)[0];
    assert_eq!(first["properties"]["team"], "core", "{first}");
    assert_eq!(first["properties"]["v"], 2, "{first}");
    let (status, body) = api
        .post(&member, &format!("{path}/deploy"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("after-deploy-{n}");
        assert_eq!(track(&server, "demo-write-key", &id).await, StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if lines(&out)
            .iter()
            .any(|e| e["properties"]["v"] == 1 && e["properties"]["team"] == "core")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "version 3 never ran");
    }

    // Production protection: once the demo source is protected, only owners and admins
    // change what its destinations run.
    api.protect(&owner, "demo").await;
    // Deploying new code where a protected source's events go is kept for review (202)
    // and made on approval as the approver's call; a version written since the proposal
    // makes it stale (the reviewer never saw that code).
    let deployed = |body: &Value| body["data"]["function"]["deployedVersion"].clone();
    let (_, before) = api.get(&member, &path).await;
    let (status, body) = api
        .call(&member, Method::PATCH, &path, Some(json!({"code": tag(5)})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let newest = body["data"]["function"]["version"].clone();
    let (status, body) = api
        .post(&member, &format!("{path}/deploy"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let proposal = &body["data"]["resourceChangeRequest"];
    assert_eq!(
        (&proposal["resourceType"], &proposal["resourceId"]),
        (&json!("function"), &json!(id)),
        "{body}"
    );
    let proposal = proposal["id"].as_str().expect("a request").to_owned();
    let (_, now) = api.get(&member, &path).await;
    assert_eq!(deployed(&now), deployed(&before), "not deployed yet: {now}");
    let approve_at = |id: &str| format!("/api/v1/resource-change-requests/{id}/approve");
    let (status, body) = api.post(&admin, &approve_at(&proposal), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, now) = api.get(&member, &path).await;
    assert_eq!(deployed(&now), newest, "{now}");
    let (status, body) = api
        .post(&member, &format!("{path}/deploy"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let outdated = body["data"]["resourceChangeRequest"]["id"]
        .as_str()
        .expect("a request")
        .to_owned();
    let (status, body) = api
        .call(&member, Method::PATCH, &path, Some(json!({"code": tag(6)})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.post(&admin, &approve_at(&outdated), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, now) = api.get(&member, &path).await;
    assert_eq!(
        deployed(&now),
        newest,
        "the newer version was never reviewed"
    );
    // What an approval sends: the version reviewed, deployed only while it is the newest.
    let (status, body) = api
        .post(
            &admin,
            &format!("{path}/deploy"),
            json!({"version": newest}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("no longer the newest"), "{body}");
    // A change to the instance is kept for review (202), applied on approval as the
    // approver's call, and refused on approval when the instance changed meanwhile.
    let change = |team: &'static str| Some(json!({"settings": {"team": team}}));
    let (status, body) = api.call(&member, Method::PATCH, &ipath, change("x")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The reviewer reads the settings by the function's declarations.
    assert_eq!(
        body["data"]["resourceChangeRequest"]["body"]["settings"],
        json!({"team": "x"}),
        "{body}"
    );
    let request = body["data"]["resourceChangeRequest"]["id"]
        .as_str()
        .expect("a request")
        .to_owned();
    let (_, now) = api.get(&member, &ipath).await;
    assert_ne!(
        now["data"]["insertFunctionInstance"]["settings"]["team"],
        "x"
    );
    let approve = |id: &str| format!("/api/v1/resource-change-requests/{id}/approve");
    let (status, body) = api.post(&admin, &approve(&request), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, now) = api.get(&member, &ipath).await;
    assert_eq!(
        now["data"]["insertFunctionInstance"]["settings"]["team"], "x",
        "{now}"
    );
    let (status, body) = api.call(&member, Method::PATCH, &ipath, change("y")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let stale = body["data"]["resourceChangeRequest"]["id"]
        .as_str()
        .expect("a request")
        .to_owned();
    let (status, body) = api.call(&admin, Method::PATCH, &ipath, change("z")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an admin changes it at once: {body}"
    );
    let (status, body) = api.post(&admin, &approve(&stale), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, now) = api.get(&member, &ipath).await;
    assert_eq!(
        now["data"]["insertFunctionInstance"]["settings"]["team"],
        "z"
    );
    // A new version deployed after the proposal makes it stale: the reviewer never saw
    // that code run there.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            &ipath,
            Some(json!({"settings": {"team": "w", "apiKey": "k-secret-9"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let shown = &body["data"]["resourceChangeRequest"]["body"]["settings"];
    assert_eq!(
        shown,
        &json!({"team": "w", "apiKey": "<redacted>"}),
        "{body}"
    );
    assert!(!body.to_string().contains("k-secret-9"), "{body}");
    let redeployed = body["data"]["resourceChangeRequest"]["id"]
        .as_str()
        .expect("a request")
        .to_owned();
    let (status, body) = api
        .call(&member, Method::PATCH, &path, Some(json!({"code": tag(7)})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.post(&admin, &format!("{path}/deploy"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.post(&admin, &approve(&redeployed), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Attaching: a destination that has an insert function is refused at once (not
    // kept for a review that could only fail); one hidden from the caller answers as
    // a missing one; read-only may not.
    let attach = json!({"functionId": id, "integrationId": "tagged", "name": "Again",
                        "settings": {"team": "q"}});
    let (status, body) = api
        .post(&member, "/api/v1/insert-function-instances", attach.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .post(
            &outsider,
            "/api/v1/insert-function-instances",
            attach.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .post(&reader, "/api/v1/insert-function-instances", attach)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api.call(&outsider, Method::DELETE, &ipath, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // A body the handler would refuse is refused, not proposed.
    let (status, body) = api
        .call(
            &member,
            Method::PATCH,
            &ipath,
            Some(json!({"settings": {"nope": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api.post(&admin, &format!("{path}/deploy"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Deploying reaches every destination it runs on: one the caller may not edit is
    // refused (alike whether they see it or not).
    let (status, body) = api
        .post(&outsider, &format!("{path}/deploy"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("may not edit"), "{body}");

    // Deleting: not while attached.
    let (status, body) = api.call(&admin, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api.call(&admin, Method::DELETE, &ipath, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.call(&reader, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api.call(&member, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.get(&member, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    audited(
        &api,
        &owner,
        &[
            "function.create",
            "function.update",
            "function.deploy",
            "function.version.restore",
            "function_instance.create",
            "function_instance.update",
            "function_instance.delete",
            "function.delete",
        ],
    )
    .await;
    chain_holds(&db).await;
    server.stop();
    db.finish().await;
}
