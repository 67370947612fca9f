//! The deploy kit's monitoring files name only metrics Sluice exports: every `sluice_…`
//! series in the Grafana dashboard's queries and in the alerting rules is a declared
//! family (histograms through their `_bucket`, `_sum` and `_count` series), and every
//! alert has a unit test. (`scripts/deploy_check.sh` validates the manifests, the
//! compose file and the rules with kubernetes-validate and promtool.) And `sluice
//! check-config`, which that script runs on every container, tells good from bad.

use std::collections::BTreeSet;
use std::path::Path;

use sluice::telemetry::{FAMILIES, Kind};

/// Every `sluice_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sluice_") {
        let start = i + at;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The series names Sluice can export.
fn exported() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for f in FAMILIES {
        if f.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                all.insert(format!("{}{suffix}", f.name));
            }
        } else {
            all.insert(f.name.to_owned());
        }
    }
    all
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/sluice-dashboard.json")).expect("JSON");
    let exported = exported();
    let mut queried = BTreeSet::new();
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "query without a Sluice metric: {expr}");
            queried.extend(names);
            panels += 1;
        }
    }
    assert!(panels >= 10, "{panels} queries");
    let unknown: Vec<_> = queried.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported by Sluice: {unknown:?}");
    // What the issue asks the dashboard to show.
    for wanted in [
        "sluice_events_accepted_total",
        "sluice_events_rejected_total",
        "sluice_protocols_violations_total",
        "sluice_http_request_duration_seconds_bucket",
        "sluice_delivery_lag_events",
    ] {
        assert!(
            queried.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}

#[test]
fn the_alert_rules_use_only_exported_metrics_and_each_has_a_unit_test() {
    let rules = read("deploy/prometheus/alerts.yml");
    let exported = exported();
    let used = metric_names(&rules);
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported by Sluice: {unknown:?}");
    for wanted in [
        "sluice_log_full_rejections_total",
        "sluice_delivery_lag_events",
        "sluice_http_requests_total",
        "sluice_catalog_feed_up",
        "sluice_jetstream_connected",
    ] {
        assert!(used.contains(wanted), "no alert on {wanted}");
    }
    let tests = read("deploy/prometheus/alerts_test.yml");
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!("alertname: {name}")),
                "alert {name} has no unit test in alerts_test.yml"
            );
        }
    }
}

#[test]
fn the_name_scanner_finds_whole_names_only() {
    let names = metric_names(
        "histogram_quantile(0.9, rate(sluice_a_bucket[5m])) / x_sluice_b + sluice_c{l=\"sluice_d\"}",
    );
    let want: BTreeSet<String> = ["sluice_a_bucket", "sluice_c", "sluice_d"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want);
}

fn check_config(env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--config", "/dev/null", "check-config"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run sluice check-config")
}

#[test]
fn check_config_accepts_a_good_configuration_and_names_what_is_wrong_with_a_bad_one() {
    let good = check_config(&[
        ("SLUICE__LOG__BACKEND", "jetstream"),
        (
            "SLUICE__LOG__JETSTREAM__URL",
            "nats://a:4222,nats://b:4222,nats://c:4222",
        ),
        ("SLUICE__LOG__JETSTREAM__REPLICAS", "3"),
    ]);
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{out}");
    assert!(
        out.contains("configuration is valid") && out.contains("3 replicas"),
        "{out}"
    );

    let typo = check_config(&[("SLUICE__LOG__JETSTRAEM__URL", "nats://a:4222")]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success());
    assert!(err.contains("unknown field `jetstraem`"), "{err}");

    let bad = check_config(&[
        ("SLUICE__LOG__BACKEND", "jetstream"),
        ("SLUICE__LOG__JETSTREAM__REPLICAS", "0"),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("replicas 1..=5"), "{err}");
}

#[test]
fn the_readme_lists_every_family_with_its_kind_and_labels() {
    let readme = read("README.md");
    let mut rows = std::collections::BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `sluice_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        assert!(
            rows.insert(name.clone(), (cells[2].to_owned(), cells[3].to_owned()))
                .is_none(),
            "{name} has two rows"
        );
    }
    for f in FAMILIES {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let labels = f.labels.join(", ");
        let row = rows
            .remove(f.name)
            .unwrap_or_else(|| panic!("{} has no row in the README's metrics table", f.name));
        assert_eq!(row, (kind.to_owned(), labels), "{}", f.name);
    }
    assert!(rows.is_empty(), "rows for no family: {rows:?}");
}
