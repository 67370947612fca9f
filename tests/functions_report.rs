//! A remote node reports its functions' failed runs to its control plane: a source
//! function on a remote gateway throws, and `GET /api/v1/functions/{id}/errors` on the
//! control plane shows the run with the gateway's name. The internal endpoint takes node
//! credentials only, checks what it is sent and keeps the newest 50 runs a function.

mod common;

use std::time::{Duration, Instant};

use common::control::{Api, server};
use common::databases::{self, TestDb};
use common::{TestServer, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::config::{CatalogSourceKind, Secret};

const THROWS: &str = r#"
async function onRequest(request, settings) {
  throw new ValidationError("not a payload this source takes");
}
"#;

/// Posts `body` to the internal endpoint as `token` from node `node`.
async fn report(api: &Api, token: &str, node: &str, body: &Value) -> (StatusCode, Value) {
    let response = client()
        .post(format!(
            "{}/internal/v1/function-errors?node={node}",
            api.base
        ))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("report");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A run as a node reports it, `n` seconds after midnight today (UTC).
fn run(function: &str, n: usize) -> Value {
    let midnight = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    let at = midnight + chrono::TimeDelta::seconds(i64::try_from(n).expect("n"));
    json!({"id": format!("r-{n}"), "function": function,
           "at": format!("{}Z", at.format("%Y-%m-%dT%H:%M:%S")),
           "messageId": format!("m-{n}"), "target": "demo", "kind": "invalid",
           "message": "ValidationError: no"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_gateways_failed_runs_reach_its_control_plane_sqlite() {
    scenario(&databases::sqlite().await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_nodes_report_is_kept_on_postgres_too() {
    // No gateway here: the failed runs are process-wide, and another test's gateway in
    // this binary would take them.
    scenario(&databases::postgres().await, false).await;
}

/// The control plane on `db`; `with_gateway`, a remote gateway whose function fails.
async fn scenario(db: &TestDb, with_gateway: bool) {
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;

    // A source function that refuses everything, on the demo source.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/functions",
            json!({"displayName": "Picky", "resourceType": "SOURCE", "code": THROWS}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["function"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, body) = api
        .post(&owner, &format!("/api/v1/functions/{id}/deploy"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            "/api/v1/sources/demo/function",
            Some(json!({"functionId": id, "settings": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["data"]["secret"].as_str().expect("secret").to_owned();
    let endpoint = body["data"]["sourceFunction"]["path"]
        .as_str()
        .expect("path")
        .to_owned();

    // A remote gateway following the control plane with a gateway credential.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/nodes",
            json!({"name": "edge-1", "role": "gateway", "expiresInDays": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let node = body["data"]["secret"].as_str().expect("secret").to_owned();
    let path = format!("/api/v1/functions/{id}/errors");
    if with_gateway {
        let (base, token) = (api.base.clone(), node.clone());
        let edge = TestServer::start_with("", move |config| {
            config.catalog.source = CatalogSourceKind::Remote;
            config.catalog.control_url = base;
            config.catalog.node_token = Secret::new(token);
            config.catalog.node_name = "edge-1".into();
        });

        // A webhook to the edge's endpoint: refused by the function, once the edge has it.
        let url = edge.url(&endpoint);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = client()
                .post(&url)
                .bearer_auth(&secret)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("webhook");
            if response.status() != StatusCode::NOT_FOUND {
                assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                break;
            }
            assert!(Instant::now() < deadline, "the endpoint never came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The control plane shows the run, with where it ran.
        let deadline = Instant::now() + Duration::from_secs(20);
        let reported = loop {
            let (status, body) = api.get(&owner, &path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let found = body["data"]["errors"]
                .as_array()
                .and_then(|errors| errors.iter().find(|e| e["node"] == "edge-1").cloned());
            if let Some(found) = found {
                break found;
            }
            assert!(Instant::now() < deadline, "never reported: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(reported["kind"], "invalid", "{reported}");
        assert_eq!(reported["target"], "demo");
        assert!(
            reported["message"]
                .as_str()
                .is_some_and(|m| m.contains("not a payload")),
            "{reported}"
        );
        drop(edge);
    }

    // The endpoint: node credentials only; its fields checked; unknown functions
    // dropped; the newest 50 runs a function kept.
    let one = json!({"errors": [run(&id, 0)]});
    let (status, _) = report(&api, &owner, "edge-1", &one).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a person's token");
    for (node_name, body) in [
        ("", one.clone()),
        ("edge-1", json!({"errors": [run(&id, 0)], "extra": 1})),
        ("edge-1", json!({"errors": [{"function": id, "kind": "x"}]})),
        (
            "edge-1",
            json!({"errors": (0..501).map(|n| run(&id, n)).collect::<Vec<_>>()}),
        ),
    ] {
        let (status, body) = report(&api, &node, node_name, &body).await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY].contains(&status),
            "{status}: {body}"
        );
    }
    let (status, body) = report(
        &api,
        &node,
        "edge-2",
        &json!({"errors": [run("fn_none", 1)]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["kept"], 0, "no such function");
    // A run no node makes is skipped, not the report; a long messageId and an empty
    // message are a node's; a run far in the future is dated now.
    let mut odd = run(&id, 1000);
    odd["id"] = json!("not an id!");
    let mut long = run(&id, 1001);
    long["messageId"] = json!("m".repeat(300));
    long["message"] = json!("");
    let mut ahead = run(&id, 1002);
    ahead["at"] = json!("2099-01-01T00:00:00Z");
    let (status, body) = report(
        &api,
        &node,
        "edge-2",
        &json!({"errors": [odd, long, ahead]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["kept"], 2, "{body}");
    let (_, body) = api.get(&owner, &path).await;
    let dated = body["data"]["errors"]
        .as_array()
        .and_then(|errors| errors.iter().find(|e| e["messageId"] == "m-1002").cloned())
        .expect("the run from the future");
    assert!(
        !dated["at"].as_str().unwrap_or_default().starts_with("2099"),
        "{dated}"
    );
    // Named by the credential: a node cannot speak for another one.
    assert_eq!(dated["node"], "edge-1 (edge-2)", "{dated}");

    // Sixty runs: the report's newest fifty are stored, and the table keeps the newest
    // fifty of the function.
    let many: Vec<Value> = (0..60).map(|n| run(&id, n)).collect();
    let (status, body) = report(&api, &node, "edge-2", &json!({ "errors": many })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["kept"], 50);
    // A run already stored (a report resent after a lost answer) is not stored again.
    let again = json!({"errors": [run(&id, 59)]});
    let (status, body) = report(&api, &node, "edge-2", &again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["kept"], 0, "the same id: {body}");
    let rows: i64 = {
        let mut conn = db.store.read().await.expect("connection");
        sqlx::query_scalar("SELECT COUNT(*) FROM function_errors WHERE function_id = $1")
            .bind(&id)
            .fetch_one(&mut *conn)
            .await
            .expect("count")
    };
    assert_eq!(rows, 50, "the newest fifty of the function");
    let (_, body) = api.get(&owner, &path).await;
    let errors = body["data"]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 50, "the newest 50");
}
