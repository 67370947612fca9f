#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
# formatting, lints, docs, unit + integration + property tests, the deploy kit's checks,
# a short chaos run, schemathesis against the control plane's OpenAPI document, SCIM
# conformance (scim2-tester, scim-sanity), the console in headless Chromium, and the
# golden test with the real SDKs (installs them from npm and PyPI on first run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "services"
scripts/services.sh
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
step "identity peers for the sign-in tests: oidc-provider-mock; the forging OIDC provider and the pysaml2 + xmlsec1 SAML IdP, each checked case by case"
scripts/identity-peers.sh
tests/peers/oidc/check.sh
tests/peers/saml/check.sh
step "cargo test"
cargo test --workspace
step "deploy kit: manifests, compose file, alert rules (kubernetes-validate, promtool)"
SLUICE_BIN="$(pwd)/target/debug/sluice" scripts/deploy_check.sh
step "chaos smoke: kill -9, full disk, destination down under load (loadtest/chaos.sh runs it longer)"
python3 loadtest/chaos.py --bin target/debug/sluice --seconds 12 --senders 2 --work target/loadtest/chaos-smoke
step "schemathesis: the control plane against its OpenAPI document (every check: no 5xx, answers as documented, the document's rules kept both ways)"
SLUICE_BIN="$(pwd)/target/debug/sluice" scripts/schemathesis.sh 25
step "SCIM 2.0 conformance: scim2-tester and scim-sanity (strict) against /scim/v2"
SLUICE_BIN="$(pwd)/target/debug/sluice" scripts/scim-conformance.sh
step "the console in headless Chromium: journeys with playwright-core, axe-core on every page"
SLUICE_BIN="$(pwd)/target/debug/sluice" tests/browser/run.sh
step "consent routing in headless Chromium: analytics-next with Segment's consent wrapper"
SLUICE_BIN="$(pwd)/target/debug/sluice" tests/browser/consent.sh
step "golden test with the real SDKs"
SLUICE_BIN="$(pwd)/target/debug/sluice" tests/sdk/run.sh
