//! Tracking plans through a real server: a batch mixing valid, warned and blocked
//! events, delivery never sending blocked ones, forwarding shapes, a plan changed under
//! traffic, and the metrics.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, basic, client, metric};
use serde_json::{Value, json};

const PLAN: &str = r#"
[[tracking_plans]]
id = "tp_web"
name = "Web plan"
version = 7
[[tracking_plans.rules]]
type = "TRACK"
key = "Order Completed"
jsonSchema = { type = "object", properties = { properties = { type = "object", required = ["total"], properties = { total = { type = "number" } } } } }
[[tracking_plans.rules]]
type = "COMMON"
jsonSchema = { type = "object", properties = { context = { type = "object", required = ["library"] } } }
"#;

fn catalog(source: &str, enforcement: &str, extra: &str, out: &std::path::Path) -> String {
    format!(
        "{PLAN}\n[[sources]]\nid = \"{source}\"\nwrite_keys = [{{ key = \"{source}-key\" }}]\ntracking_plan = \"tp_web\"\n\
         enforcement = \"{enforcement}\"\nprotocols = {{ forward_blocked_to = \"quarantine\", forward_violations_to = \"violations\" {extra} }}\n\
         [[sources]]\nid = \"quarantine\"\n[[sources]]\nid = \"violations\"\n\
         [[destinations]]\nid = \"disk\"\ntype = \"file\"\nsources = [\"{source}\"]\nsettings = {{ path = \"{}\" }}\n",
        out.file_name().and_then(|n| n.to_str()).unwrap_or_default()
    )
}

fn order(id: &str, props: Value) -> Value {
    json!({"type":"track","userId":"u","event":"Order Completed","messageId":id,"properties":props,
           "context":{"library":{"name":"analytics.js"}}})
}

async fn send(server: &TestServer, source: &str, batch: Vec<Value>) -> Value {
    let r = client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic(&format!("{source}-key")))
        .json(&json!({ "batch": batch }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn delivered(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_keeps_blocked_events_out_of_delivery() {
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("delivered.ndjson");
    let server = TestServer::start_with(&catalog("shop", "block", "", &file), |c| {
        c.delivery.file_dir = out.path().to_owned();
    });
    let reply = send(
        &server,
        "shop",
        vec![
            order("valid", json!({"total": 10})),
            order("extra-prop", json!({"total": 10, "coupon": "X"})), // unplanned property: allowed
            order("missing-total", json!({"coupon": "X"})),           // violation: blocked
            json!({"type":"track","userId":"u","event":"Mystery","messageId":"unplanned","context":{"library":{}}}),
            json!({"type":"identify","userId":"u","messageId":"no-library","context":{}}), // COMMON: blocked
        ],
    )
    .await;
    assert_eq!(reply, json!({"success": true, "blocked": 3}));

    // Only the passing events reach the destination; the warned one is annotated.
    let deadline = Instant::now() + Duration::from_secs(5);
    while delivered(&file).len() < 2 {
        assert!(Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = delivered(&file);
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["messageId"].as_str())
        .collect();
    assert_eq!(ids, ["valid", "extra-prop"]);
    assert!(events[0]["context"]["protocols"].is_null());
    let p = &events[1]["context"]["protocols"];
    assert_eq!(p["trackingPlanId"], "tp_web");
    assert_eq!(p["trackingPlanVersion"], 7);
    assert_eq!(p["violations"][0]["type"], "Unplanned Property");
    assert_eq!(p["violations"][0]["field"], "properties.coupon");

    // The blocked ones are in the log, marked, with their reason.
    let stored = server.stored();
    let blocked: Vec<(&str, &str)> = stored
        .iter()
        .filter(|r| r["sourceId"] == "shop" && r.get("blocked").is_some())
        .map(|r| {
            (
                r["event"]["messageId"].as_str().unwrap_or(""),
                r["blocked"]["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        blocked,
        [
            ("missing-total", "violation"),
            ("unplanned", "unplanned_event"),
            ("no-library", "common_violation")
        ]
    );

    // Forwarding: the blocked events into "quarantine", one Violation Generated per violation.
    let quarantined: Vec<&str> = stored
        .iter()
        .filter(|r| r["sourceId"] == "quarantine")
        .filter_map(|r| r["event"]["messageId"].as_str())
        .collect();
    assert_eq!(quarantined, ["missing-total", "unplanned", "no-library"]);
    let violations: Vec<&Value> = stored
        .iter()
        .filter(|r| r["sourceId"] == "violations")
        .map(|r| &r["event"])
        .collect();
    assert_eq!(
        violations.len(),
        5,
        "unplanned property ×2, required, unplanned event, common"
    );
    let v = violations
        .iter()
        .find(|v| {
            v["properties"]["eventMessageID"] == "missing-total"
                && v["properties"]["violationType"] == "Required"
        })
        .expect("the Required violation of missing-total");
    assert_eq!(v["event"], "Violation Generated");
    assert_eq!(v["type"], "track");
    assert_eq!(v["userId"], "schema-violations");
    assert_eq!(v["forwardedFromProject"], "shop");
    assert!(
        v["messageId"]
            .as_str()
            .is_some_and(|id| id.starts_with("sch-"))
    );
    let props = &v["properties"];
    assert_eq!(props["violationType"], "Required");
    assert_eq!(props["violationField"], "properties.total");
    assert_eq!(
        props["violationDescription"],
        "properties.total is required"
    );
    assert_eq!(props["eventName"], "Order Completed");
    assert_eq!(props["eventType"], "track");
    assert_eq!(props["sourceID"], "shop");
    assert_eq!(props["trackingPlanID"], "tp_web");
    assert_eq!(props["trackingPlanName"], "Web plan");
    assert_eq!(v["context"]["library"]["name"], "analytics.js");

    let m = server.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_protocols_blocked_total{source=\"shop\",reason=\"violation\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "sluice_protocols_blocked_total{source=\"shop\",reason=\"unplanned_event\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "sluice_protocols_violations_total{source=\"shop\",type=\"Required\",event=\"Order Completed\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "sluice_protocols_violations_total{source=\"shop\",type=\"Unplanned Event\",event=\"unplanned\"}"
        ),
        1.0,
        "unplanned names share one label value"
    );
    assert!(m.contains("sluice_protocols_validation_duration_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_passes_everything_and_a_plan_change_applies_to_the_next_request() {
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("delivered.ndjson");
    let server = TestServer::start_with(&catalog("web", "warn", "", &file), |c| {
        c.delivery.file_dir = out.path().to_owned();
    });
    let reply = send(&server, "web", vec![order("w-1", json!({"coupon": "X"}))]).await;
    assert_eq!(reply, json!({"success": true}), "warn never blocks");
    let stored = server.stored();
    let last = stored
        .iter()
        .rfind(|r| r["sourceId"] == "web")
        .expect("stored");
    assert!(last.get("blocked").is_none());
    let types: Vec<&str> = last["event"]["context"]["protocols"]["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["type"].as_str())
        .collect();
    assert_eq!(types, ["Unplanned Property", "Required"]);

    // Switch the source to block while requests keep coming: the change applies atomically.
    server.write_catalog(&catalog("web", "block", "", &file));
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let reply = send(
            &server,
            "web",
            vec![order(&format!("probe-{n}"), json!({"coupon": "X"}))],
        )
        .await;
        if reply.get("blocked").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "plan change never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And `off` does no validation work at all.
    server.write_catalog(&catalog("web", "off", "", &file));
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let reply = send(
            &server,
            "web",
            vec![order(&format!("off-probe-{n}"), json!({"coupon": "X"}))],
        )
        .await;
        let last = server
            .stored()
            .into_iter()
            .rfind(|r| r["sourceId"] == "web")
            .expect("stored");
        if reply == json!({"success": true}) && last["event"]["context"]["protocols"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "off never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
