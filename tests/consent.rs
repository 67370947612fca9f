//! Consent-aware forwarding end to end through `sluice serve` on the control plane:
//! destinations' consent categories and sources' defaults set through the API decide, for
//! a matrix of consent preferences, exactly which file destinations each event reaches;
//! `Segment Consent Preference Updated` reaches all of them; withheld events are counted
//! per destination and category; the CDN settings carry `consentSettings`; changing
//! either needs `full` and is audited, and a hidden destination answers as a missing one.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::control::{Api, audited, error_type, server_with};
use common::databases;
use common::{TestServer, basic, client, metric};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The messageIds a file destination has written.
fn delivered(dir: &Path, destination: &str) -> BTreeSet<String> {
    std::fs::read_to_string(dir.join(format!("{destination}.ndjson")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["messageId"].as_str().map(str::to_owned))
        .collect()
}

/// Sends a track event `name` with `context` through `key`.
async fn track(server: &TestServer, key: &str, id: &str, name: &str, context: Value) {
    let status = client()
        .post(server.url("/v1/track"))
        .header("authorization", basic(key))
        .json(&json!({"event": name, "messageId": id, "userId": "u1", "context": context}))
        .send()
        .await
        .expect("track")
        .status();
    assert_eq!(status, StatusCode::OK, "{id}");
}

fn preferences(p: Value) -> Value {
    json!({"consent": {"categoryPreferences": p}})
}

async fn put(api: &Api, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    api.call(token, Method::PUT, path, Some(body)).await
}

const DESTINATIONS: [(&str, &[&str]); 3] = [
    ("consent-analytics", &["Analytics"]),
    ("consent-ads", &["Advertising", "Analytics"]),
    ("consent-plain", &[]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_decides_which_destinations_get_each_event() {
    let db = databases::sqlite().await;
    let exports = tempfile::tempdir().expect("tempdir");
    let dir = exports.path().to_owned();
    let (server, link) = server_with(&db, move |c| c.delivery.file_dir = dir).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;

    // A second source whose events without preferences are withheld.
    let strict = api.new_source(&owner, &server, "strict").await;
    let (status, body) = api.get(&owner, "/api/v1/sources/strict/consent").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["consent"]["withoutConsent"], "DELIVER",
        "{body}"
    );
    let (status, body) = put(
        &api,
        &owner,
        "/api/v1/sources/strict/consent",
        json!({"withoutConsent": "WITHHOLD"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["consent"]["withoutConsent"], "WITHHOLD",
        "{body}"
    );

    for (id, categories) in DESTINATIONS {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/destinations",
                json!({"id": id, "sourceId": "demo", "metadataId": "file",
                       "settings": {"path": format!("{id}.ndjson")}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let path = format!("/api/v1/destinations/{id}/consent");
        let (status, body) = put(&api, &owner, &path, json!({"categories": categories})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Connecting a second source keeps the categories.
        let (status, body) = api
            .call(
                &owner,
                Method::PATCH,
                &format!("/api/v1/destinations/{id}"),
                Some(json!({"sources": ["demo", "strict"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = api.get(&owner, &path).await;
        assert_eq!(
            body["data"]["consent"]["categories"],
            json!(categories),
            "{body}"
        );
    }

    // Deliveries start once the destinations are in the catalog: send fully consented
    // probes from both sources until every destination has one of each.
    let everything = preferences(json!({"Analytics": true, "Advertising": true}));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        for (key, source) in [("demo-write-key", "demo"), (strict.as_str(), "strict")] {
            track(
                &server,
                key,
                &format!("probe-{source}-{n}"),
                "Probe",
                everything.clone(),
            )
            .await;
        }
        let all = DESTINATIONS.iter().all(|(d, _)| {
            let got = delivered(exports.path(), d);
            ["demo", "strict"]
                .iter()
                .all(|s| got.iter().any(|id| id.starts_with(&format!("probe-{s}-"))))
        });
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "destinations never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What was withheld before the matrix (the key's first event, from `strict`, may
    // have reached the new destinations).
    let before = server.metrics().await;

    // The matrix: every kind of preferences from a `deliver` and a `withhold` source.
    let cases: Vec<(&str, &str, Value)> = vec![
        ("none", "Viewed", json!({})),
        ("empty", "Viewed", preferences(json!({}))),
        (
            "analytics",
            "Viewed",
            preferences(json!({"Analytics": true})),
        ),
        (
            "advertising",
            "Viewed",
            preferences(json!({"Advertising": true})),
        ),
        (
            "both",
            "Viewed",
            preferences(json!({"Analytics": true, "Advertising": true})),
        ),
        (
            "denied",
            "Viewed",
            preferences(json!({"Analytics": false, "Advertising": false})),
        ),
        ("not-object", "Viewed", preferences(json!("all"))),
        (
            "string-true",
            "Viewed",
            preferences(json!({"Analytics": "true"})),
        ),
        (
            "update",
            "Segment Consent Preference Updated",
            preferences(json!({"Analytics": false})),
        ),
    ];
    for (key, source) in [("demo-write-key", "demo"), (strict.as_str(), "strict")] {
        for (case, name, context) in &cases {
            track(
                &server,
                key,
                &format!("{source}-{case}"),
                name,
                context.clone(),
            )
            .await;
        }
        // Sent last, taken by every destination: once each has it, each has seen all.
        track(
            &server,
            key,
            &format!("fence-{source}"),
            "Fence",
            everything.clone(),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !DESTINATIONS.iter().all(|(d, _)| {
        let got = delivered(exports.path(), d);
        got.contains("fence-demo") && got.contains("fence-strict")
    }) {
        assert!(Instant::now() < deadline, "fences never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let expect =
        |cases: &[&str]| -> BTreeSet<String> { cases.iter().map(|c| (*c).to_owned()).collect() };
    let wanted = [
        (
            "consent-analytics",
            expect(&[
                "demo-none",
                "demo-analytics",
                "demo-both",
                "demo-update",
                "strict-analytics",
                "strict-both",
                "strict-update",
            ]),
        ),
        (
            "consent-ads",
            expect(&[
                "demo-none",
                "demo-both",
                "demo-update",
                "strict-both",
                "strict-update",
            ]),
        ),
        (
            "consent-plain",
            cases
                .iter()
                .flat_map(|(c, _, _)| [format!("demo-{c}"), format!("strict-{c}")])
                .collect(),
        ),
    ];
    for (destination, want) in &wanted {
        let got: BTreeSet<String> = delivered(exports.path(), destination)
            .into_iter()
            .filter(|id| {
                !["probe-", "fence-", "poll-"]
                    .iter()
                    .any(|p| id.starts_with(p))
            })
            .collect();
        assert_eq!(&got, want, "{destination}");
    }

    // Withheld events, per destination and category, during the matrix.
    let after = server.metrics().await;
    let withheld = |d: &str, c: &str| {
        let series =
            format!("sluice_delivery_withheld_total{{destination=\"{d}\",category=\"{c}\"}}");
        metric(&after, &series) - metric(&before, &series)
    };
    assert_eq!(withheld("consent-analytics", "Analytics"), 11.0);
    // consent-ads misses Advertising in: empty, analytics, denied, not-object,
    // string-true (×2 sources) and none (strict): 11; Analytics in: empty, advertising,
    // denied, not-object, string-true (×2) and none (strict): 11.
    assert_eq!(withheld("consent-ads", "Advertising"), 11.0);
    assert_eq!(withheld("consent-ads", "Analytics"), 11.0);

    // The CDN settings name the categories for analytics.js's consent wrapper.
    let settings: Value = client()
        .get(server.url("/v1/projects/demo-write-key/settings"))
        .send()
        .await
        .expect("settings")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        settings["consentSettings"],
        json!({"allCategories": ["Advertising", "Analytics"], "hasUnmappedDestinations": true}),
        "{settings}"
    );

    // Who may change what.
    let (member, member_id) = api
        .invited(&owner, &server, "member@example.com", "member")
        .await;
    api.grant_source(&owner, &member_id, "strict", "read_write")
        .await;
    for (id, level) in [
        ("consent-ads", "read_write"),
        ("consent-plain", "no_access"),
    ] {
        let body = json!({"principal": {"type": "user", "id": member_id},
                          "resource": {"kind": "destination", "id": id}, "level": level});
        let (status, body) = api.post(&owner, "/api/v1/grants", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = put(
        &api,
        &member,
        "/api/v1/sources/strict/consent",
        json!({"withoutConsent": "DELIVER"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "read_write is not full: {body}"
    );
    let (status, body) = put(
        &api,
        &member,
        "/api/v1/destinations/consent-ads/consent",
        json!({"categories": []}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "read_write is not full: {body}"
    );
    api.hidden_like_missing(
        &member,
        Method::PUT,
        "/api/v1/destinations/{id}/consent",
        ("consent-plain", "nowhere"),
        Some(json!({"categories": []})),
    )
    .await;
    let (status, _) = api
        .get(&member, "/api/v1/destinations/consent-plain/consent")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .get(&member, "/api/v1/destinations/consent-ads/consent")
        .await;
    assert_eq!(status, StatusCode::OK, "reading needs sight only: {body}");
    // Categories are checked.
    for bad in [json!([""]), json!(["A", "A"]), json!(["x".repeat(101)])] {
        let (status, body) = put(
            &api,
            &owner,
            "/api/v1/destinations/consent-ads/consent",
            json!({"categories": bad}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["errors"][0]["field"], "categories", "{body}");
    }
    let (status, body) = put(
        &api,
        &owner,
        "/api/v1/sources/strict/consent",
        json!({"withoutConsent": "sometimes"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_type(&body), "validation", "{body}");

    // On a production source, a member with `full` proposes; an owner's approval applies.
    api.grant_source(&owner, &member_id, "strict", "full").await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/sources/strict/labels",
            json!({"labels": [{"key": "environment", "value": "prod"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = put(
        &api,
        &owner,
        "/api/v1/settings/protected-labels",
        json!({"labels": ["environment:prod"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = put(
        &api,
        &member,
        "/api/v1/sources/strict/consent",
        json!({"withoutConsent": "DELIVER"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request = body["data"]["resourceChangeRequest"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, body) = api.get(&owner, "/api/v1/sources/strict/consent").await;
    assert_eq!(
        body["data"]["consent"]["withoutConsent"], "WITHHOLD",
        "not yet"
    );
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/resource-change-requests/{request}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get(&owner, "/api/v1/sources/strict/consent").await;
    assert_eq!(
        body["data"]["consent"]["withoutConsent"], "DELIVER",
        "{body}"
    );

    let events = audited(
        &api,
        &owner,
        &["source.consent.update", "destination.consent.update"],
    )
    .await;
    for (before, after) in [("DELIVER", "WITHHOLD"), ("WITHHOLD", "DELIVER")] {
        assert!(
            events.iter().any(|e| e["type"] == "source.consent.update"
                && e["before"]["withoutConsent"] == before
                && e["after"]["withoutConsent"] == after),
            "{before} → {after} audited"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "access.denied.edit_destination_privacy"),
        "refusals are audited"
    );
    server.stop();
    db.finish().await;
}
