//! The committed OpenAPI document is the one the code generates (run with
//! `SLUICE_BLESS=1` to rewrite `docs/openapi.json` after an API change).

use sluice::control::api::openapi;

#[test]
fn the_committed_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let generated = format!("{}\n", openapi::json());
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: run `SLUICE_BLESS=1 cargo test --test control_openapi` and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/",
        "/api/v1/sources",
        "/api/v1/sources/{id}/writekey",
        "/api/v1/sources/{id}/writekey/{key}",
        "/api/v1/destinations",
        "/api/v1/tracking-plans/{id}/rules",
        "/api/v1/users",
        "/api/v1/invites",
        "/api/v1/groups",
        "/api/v1/roles",
        "/api/v1/labels",
        "/api/v1/audit-events",
        "/api/v1/grants",
        "/api/v1/tokens",
        "/api/v1/access/explain",
        "/api/v1/catalog",
        "/api/v1/gateways",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    // Every operation documents its refusals.
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("item") {
            for status in ["400", "401", "403", "404", "429"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path}: no {status}"
                );
            }
        }
    }
}

#[test]
fn the_documented_explain_actions_are_exactly_the_policys() {
    let doc: serde_json::Value = serde_json::from_str(&openapi::json()).expect("JSON");
    let params = doc["paths"]["/api/v1/access/explain"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let action = params
        .iter()
        .find(|p| p["name"] == "action")
        .expect("action parameter");
    let names: Vec<String> = sluice::control::policy::Action::ALL
        .iter()
        .map(|a| a.name())
        .collect();
    assert_eq!(
        action["schema"]["pattern"],
        format!("^({})$", names.join("|")),
        "the explain action pattern must list every policy action"
    );
}
