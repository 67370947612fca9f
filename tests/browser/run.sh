#!/usr/bin/env bash
# The console in a real browser: a throw-away `sluice serve` (control plane on SQLite),
# then tests/browser/journeys.mjs in headless Debian Chromium (playwright-core), with
# axe-core on every page. Installs Chromium from Debian's packages and the two npm
# packages when missing. Screenshots land in target/console-screenshots/ (not committed).
#
#   tests/browser/run.sh        (SLUICE_BIN overrides target/debug/sluice)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${SLUICE_BIN:-$root/target/debug/sluice}
. "$here/setup.sh"
# The identity provider people sign in at: oidc-provider-mock (PyPI), as the Rust
# identity tests use it.
"$root/scripts/identity-peers.sh"

work=$(mktemp -d)
pid=""
idp=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$idp" ] && kill "$idp" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
. "$root/scripts/lib.sh"
port=$(free_port); admin=$(free_port); control=$(free_port)
printf '[[sources]]\nid = "demo"\nwrite_keys = [{ key = "demo-write-key" }]\n' > "$work/catalog.toml"
write_sluice_config "$work" "$port" "$admin" "$(printf '[control]\nlisten = "127.0.0.1:%s"\npublic_url = "http://127.0.0.1:%s"\n' "$control" "$control")"
sed -i 's/^source = "file"$/source = "control"/' "$work/sluice.toml"
issuer_port=$(free_port)
"$root/target/venv-identity/bin/oidc-provider-mock" -p "$issuer_port" >"$work/idp.log" 2>&1 & idp=$!
RUST_LOG=warn "$bin" --config "$work/sluice.toml" serve 2>"$work/serve.log" & pid=$!
link=""
for _ in $(seq 1 400); do
  link=$(grep -o 'http://[^ ]*/setup/[A-Za-z0-9]*' "$work/serve.log" | head -1 || true)
  [ -n "$link" ] && (echo > "/dev/tcp/127.0.0.1/$control") 2>/dev/null && break
  sleep 0.05
done
[ -n "$link" ] || { echo "browser: no setup link printed"; cat "$work/serve.log"; exit 1; }

for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$issuer_port/.well-known/openid-configuration" >/dev/null && break
  sleep 0.1
done
export ISSUER="http://127.0.0.1:$issuer_port"
export BASE="http://127.0.0.1:$control" GATEWAY="http://127.0.0.1:$port" CHROMIUM="$chromium"
export SETUP="${link#http://127.0.0.1:$control}" SHOTS="$root/target/console-screenshots"
(cd "$here" && node journeys.mjs) || { echo "browser: failed; server log:"; tail -40 "$work/serve.log"; exit 1; }
if grep -q 'panicked' "$work/serve.log"; then
  echo "browser: the server panicked"; grep -A5 panicked "$work/serve.log"; exit 1
fi
