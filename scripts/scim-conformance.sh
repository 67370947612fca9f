#!/usr/bin/env bash
# Checks the running control plane's SCIM 2.0 server (/scim/v2) with two independent
# peers from PyPI: scim2-tester (discovery, create, read, replace, delete of Users and
# Groups; fails on any broken MUST) and scim-sanity's live probe in strict mode
# (discovery, User and Group lifecycles, filtered search, paging, error answers).
# Runs a throw-away `sluice serve` on free loopback ports; the SCIM token comes from the
# API with the owner token of `sluice admin bootstrap`. Usage: scripts/scim-conformance.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || cargo build --quiet

venv="$root/target/venv-scim"
python_tool "$venv" scim-sanity 'scim2-tester==0.5.2' 'scim2-cli==0.6.0' 'scim-sanity==0.7.4'

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(free_port); admin=$(free_port); control=$(free_port)
printf '[[sources]]\nid = "demo"\nwrite_keys = [{ key = "demo-write-key" }]\n' > "$work/catalog.toml"
write_sluice_config "$work" "$port" "$admin" "$(printf '[control]\nlisten = "127.0.0.1:%s"\n' "$control")"
sed -i 's/^source = "file"$/source = "control"/' "$work/sluice.toml"
owner=$("$bin" --config "$work/sluice.toml" admin bootstrap --email scim-owner@example.com 2>/dev/null)
RUST_LOG=warn "$bin" --config "$work/sluice.toml" serve 2>"$work/serve.log" & pid=$!
for _ in $(seq 1 200); do
  (echo > "/dev/tcp/127.0.0.1/$control") 2>/dev/null && break
  sleep 0.05
done
api="http://127.0.0.1:$control"
scim=$(curl -sf -X POST "$api/api/v1/identity/scim-tokens" -H "Authorization: Bearer $owner" \
  -H 'content-type: application/json' -d '{"name":"conformance"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["secret"])')

fail() { echo "$1; server log:"; tail -50 "$work/serve.log"; exit 1; }
"$venv/bin/python" scripts/scim_check.py "$api/scim/v2" "$scim" || fail "scim2-tester failed"
"$venv/bin/scim-sanity" probe "$api/scim/v2" --token "$scim" --i-accept-side-effects --strict \
  >"$work/sanity.txt" 2>&1 || { cat "$work/sanity.txt"; fail "scim-sanity probe failed"; }
tail -5 "$work/sanity.txt"
if grep -q 'panicked' "$work/serve.log"; then
  echo "scim conformance: the server panicked"; grep -A5 panicked "$work/serve.log"; exit 1
fi
# Every change the run made is in the audit chain, unbroken.
"$bin" --config "$work/sluice.toml" admin audit verify || fail "the audit chain does not verify"
echo "scim conformance: scim2-tester and scim-sanity pass"
