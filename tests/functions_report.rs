//! A remote node reports its functions' failed runs to its control plane: a source
//! function on a remote gateway throws, and `GET /api/v1/functions/{id}/errors` on the
//! control plane shows the run with the gateway's name. The internal endpoint takes node
//! credentials only, checks what it is sent and keeps the newest 50 runs a function.

mod common;

use std::time::{Duration, Instant};

use common::control::{Api, server};
use common::databases;
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

fn run(function: &str, n: usize) -> Value {
    json!({"function": function, "at": format!("2026-12-07T10:{:02}:{:02}Z", n / 60, n % 60),
           "messageId": format!("m-{n}"), "target": "demo", "kind": "invalid",
           "message": "ValidationError: no"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_gateways_failed_runs_reach_its_control_plane() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
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
    let path = format!("/api/v1/functions/{id}/errors");
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
    let many: Vec<Value> = (0..60).map(|n| run(&id, n)).collect();
    let (status, body) = report(&api, &node, "edge-2", &json!({ "errors": many })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["kept"], 60);
    let (_, body) = api.get(&owner, &path).await;
    let errors = body["data"]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 50, "the newest 50");
    let from_edge_2: Vec<&Value> = errors.iter().filter(|e| e["node"] == "edge-2").collect();
    assert!(
        from_edge_2.iter().all(|e| e["messageId"] != "m-0"),
        "the oldest went"
    );
    drop(edge);
}
