#!/usr/bin/env bash
# Golden test with the real SDKs: @segment/analytics-node, @segment/analytics-next
# (in jsdom, standard and batching delivery), segment-analytics-python (plain and gzip)
# and @rudderstack/rudder-sdk-node (gzip, labelled as form data) send the same
# fixture to a real Sluice; verify.py checks every event is stored intact.
#
#   tests/sdk/run.sh          verify against target/debug/sluice (SLUICE_BIN overrides)
#   tests/sdk/run.sh record   capture the raw requests into tests/data/sdk/ instead
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${1:-verify}
bin=${SLUICE_BIN:-$root/target/debug/sluice}
venv="$root/target/sdk-venv"
key=golden-write-key

echo "sdk: installing SDKs (npm ci, pip)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"

work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
. "$root/scripts/lib.sh"
port=$(free_port); admin=$(free_port)

if [ "$mode" = record ]; then
  rm -rf "$root/tests/data/sdk"
  python3 "$here/recorder.py" "$port" "$root/tests/data/sdk" & pid=$!
else
  [ -x "$bin" ] || (cd "$root" && cargo build --quiet)
  printf '[[sources]]\nid = "golden"\nwrite_keys = [{ key = "%s" }]\n' "$key" > "$work/catalog.toml"
  write_sluice_config "$work" "$port" "$admin"
  RUST_LOG=warn "$bin" --config "$work/sluice.toml" serve & pid=$!
fi
for _ in $(seq 1 200); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done

export SLUICE_URL="http://127.0.0.1:$port" WRITE_KEY=$key
(cd "$here" && node send_node.mjs && node send_browser.mjs && node send_browser.mjs batching)
"$venv/bin/python" "$here/send_python.py"

if [ "$mode" = record ]; then
  echo "sdk: recorded $(ls "$root/tests/data/sdk" | wc -l) requests into tests/data/sdk"
else
  "$bin" --config "$work/sluice.toml" log tail --ndjson -n 1000000 | python3 "$here/verify.py"
fi
