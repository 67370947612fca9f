//! Golden replay: requests recorded from the real SDKs (tests/sdk/run.sh record)
//! replayed against Sluice must be accepted and stored intact.

mod common;

use std::collections::HashMap;
use std::io::Read as _;

use base64::Engine as _;
use common::{TestServer, client};
use serde_json::{Map, Value, json};

const CATALOG: &str =
    "[[sources]]\nid = \"golden\"\nwrite_keys = [{ key = \"golden-write-key\" }]\n";
/// Fields Sluice sets or moves; everything else must be stored exactly as sent.
const ENRICHED: &[&str] = &[
    "timestamp",
    "sentAt",
    "writeKey",
    "context",
    "type",
    "messageId",
];

struct Recorded {
    name: String,
    path: String,
    headers: Map<String, Value>,
    body: Vec<u8>,
}

fn recordings() -> Vec<Recorded> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sdk");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/data/sdk")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
            Recorded {
                name: p.file_name().expect("name").to_string_lossy().into_owned(),
                path: v["path"].as_str().expect("path").to_owned(),
                headers: v["headers"].as_object().cloned().unwrap_or_default(),
                body: base64::engine::general_purpose::STANDARD
                    .decode(v["body_base64"].as_str().expect("body"))
                    .expect("base64"),
            }
        })
        .collect()
}

/// The messages a recorded body holds, as the SDK meant them.
fn messages(r: &Recorded) -> Vec<Map<String, Value>> {
    let mut plain = Vec::new();
    if r.body.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut plain)
            .expect("gunzip");
    } else {
        plain = r.body.clone();
    }
    let v: Value = serde_json::from_slice(&plain).expect("recorded JSON");
    match v.get("batch") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_object().cloned())
            .collect(),
        _ => vec![v.as_object().cloned().expect("object")],
    }
}

#[tokio::test]
async fn recorded_sdk_requests_are_stored_intact() {
    let recorded = recordings();
    assert!(
        recorded.len() >= 10,
        "recordings missing: run tests/sdk/run.sh record"
    );
    let server = TestServer::start_with(CATALOG, |_| {});
    let c = client();
    let mut sent: Vec<Map<String, Value>> = Vec::new();
    for r in &recorded {
        let mut req = c.post(server.url(&r.path)).body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k.as_str(), v.as_str().expect("header"));
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 200, "{}", r.name);
        assert_eq!(
            resp.json::<Value>().await.expect("json"),
            json!({"success": true}),
            "{}",
            r.name
        );
        sent.extend(messages(r));
    }
    let stored: HashMap<String, Value> = server
        .stored()
        .into_iter()
        .map(|rec| {
            let ev = rec["event"].clone();
            (ev["messageId"].as_str().expect("messageId").to_owned(), ev)
        })
        .collect();
    assert_eq!(
        stored.len(),
        sent.len(),
        "one stored event per message sent"
    );
    for msg in &sent {
        let id = msg["messageId"].as_str().expect("SDKs set messageId");
        let ev = stored.get(id).unwrap_or_else(|| panic!("{id} not stored"));
        for (k, v) in msg {
            if !ENRICHED.contains(&k.as_str()) {
                assert_eq!(&ev[k], v, "{id}: field {k}");
            }
        }
        if let Some(Value::Object(ctx)) = msg.get("context") {
            for (k, v) in ctx {
                assert_eq!(&ev["context"][k], v, "{id}: context.{k}");
            }
        }
        if let Some(ts) = msg.get("timestamp") {
            assert_eq!(&ev["originalTimestamp"], ts, "{id}: originalTimestamp");
        }
        assert!(ev.get("writeKey").is_none(), "{id}: writeKey stored");
        assert!(ev["receivedAt"].is_string() && ev["timestamp"].is_string());
        assert!(ev["context"]["ip"].is_string());
    }
}
