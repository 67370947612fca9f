#!/usr/bin/env bash
# Consent routing in a real browser: a throw-away `sluice serve` on a file catalog with
# three file destinations (consent categories Analytics; Advertising and Analytics;
# none), then tests/browser/consent.mjs drives analytics-next with Segment's consent
# wrapper in headless Debian Chromium against it. Installs what it needs like run.sh.
#
#   tests/browser/consent.sh        (SLUICE_BIN overrides target/debug/sluice)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${SLUICE_BIN:-$root/target/debug/sluice}
. "$here/setup.sh"

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
. "$root/scripts/lib.sh"
port=$(free_port); admin=$(free_port)
key=consent-write-key
cat > "$work/catalog.toml" <<TOML
[[sources]]
id = "shop"
write_keys = [{ key = "$key" }]
[[destinations]]
id = "analytics"
type = "file"
sources = ["shop"]
consent_categories = ["Analytics"]
settings = { path = "analytics.ndjson" }
[[destinations]]
id = "ads"
type = "file"
sources = ["shop"]
consent_categories = ["Advertising", "Analytics"]
settings = { path = "ads.ndjson" }
[[destinations]]
id = "plain"
type = "file"
sources = ["shop"]
settings = { path = "plain.ndjson" }
TOML
mkdir -p "$work/exports"
write_sluice_config "$work" "$port" "$admin" "$(printf '[delivery]\nfile_dir = "%s/exports"\n' "$work")"
RUST_LOG=warn "$bin" --config "$work/sluice.toml" serve 2>"$work/serve.log" & pid=$!
for _ in $(seq 1 200); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
export GATEWAY="http://127.0.0.1:$port" KEY=$key EXPORTS="$work/exports" CHROMIUM="$chromium"
(cd "$here" && node consent.mjs) || { echo "consent: failed; server log:"; tail -40 "$work/serve.log"; exit 1; }
if grep -q 'panicked' "$work/serve.log"; then
  echo "consent: the server panicked"; grep -A5 panicked "$work/serve.log"; exit 1
fi
