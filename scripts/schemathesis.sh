#!/usr/bin/env bash
# Checks the running control plane against its own OpenAPI document with schemathesis
# (PyPI), every check: no 5xx; every answer's status, content type, headers and body as
# documented; what the document allows is taken and what it refuses is refused (the
# rules a JSON Schema cannot state are named in scripts/schemathesis.toml); stateful
# runs over the document's links.
# Runs a throw-away `sluice serve` on free loopback ports with an owner token from
# `sluice admin bootstrap`. Usage: scripts/schemathesis.sh [max examples per operation]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
examples=${1:-25}
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || cargo build --quiet

venv="$root/target/venv-schemathesis"
python_tool "$venv" st 'schemathesis==4.32.5'

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(free_port); admin=$(free_port); control=$(free_port)
printf '[[sources]]\nid = "demo"\nwrite_keys = [{ key = "demo-write-key" }]\n' > "$work/catalog.toml"
write_sluice_config "$work" "$port" "$admin" "$(printf '[control]\nlisten = "127.0.0.1:%s"\nrate_limit_per_minute = 1000000\nfunctions = true\n' "$control")"
sed -i 's/^source = "file"$/source = "control"/' "$work/sluice.toml"
token=$("$bin" --config "$work/sluice.toml" admin bootstrap --email schemathesis@example.com 2>/dev/null)
RUST_LOG=warn "$bin" --config "$work/sluice.toml" serve 2>"$work/serve.log" & pid=$!
for _ in $(seq 1 200); do
  (echo > "/dev/tcp/127.0.0.1/$control") 2>/dev/null && break
  sleep 0.05
done

# DELETE …/tracking-plans/{id}/rules removes some rules of a plan that lives on; the
# stateful phase reads it as deleting the path and flags the next PATCH (which adds rules,
# as Segment's does) as a use after free. That one operation is left out (the Rust tests
# and the official client's conformance run cover it) so the check holds for the rest.
# …/sso-connections/{id}/test starts a sign-in, which fetches the identity provider's
# discovery document: with fuzzed issuers that is a connection to made-up hosts, so it is
# left out (tests/control_oidc.rs and tests/control_saml.rs test it against real ones).
# From the scratch directory: schemathesis keeps its cache (.schemathesis/) in the cwd.
# One worker: with two, hypothesis parses lambda sources from two threads at once and
# CPython 3.11 can fail that ("AST constructor recursion depth mismatch"), a flaky
# runtime error of the tool, not of the server; one worker is as fast here.
(cd "$work" && "$venv/bin/st" --config-file "$root/scripts/schemathesis.toml" \
  run "http://127.0.0.1:$control/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all --exclude-checks ensure_resource_availability \
  --max-examples "$examples" --seed 7 --workers 1 \
  --exclude-path /internal/v1/catalog \
  --exclude-path /api/v1/tokens/{id} --exclude-path /api/v1/tokens/{id}/rotate \
  --exclude-path /api/v1/users/{id} \
  --exclude-path /api/v1/identity/sso-connections/{id}/test \
  --exclude-name 'DELETE /api/v1/tracking-plans/{id}/rules' \
  --request-timeout 10) || { echo "schemathesis failed; server log:"; tail -50 "$work/serve.log"; exit 1; }
# Every change the run made is in the audit chain, unbroken.
"$bin" --config "$work/sluice.toml" admin audit verify ||
  { echo "schemathesis: the audit chain does not verify"; exit 1; }
if grep -q 'panicked' "$work/serve.log"; then
  echo "schemathesis: the server panicked"; grep -A5 panicked "$work/serve.log"; exit 1
fi
