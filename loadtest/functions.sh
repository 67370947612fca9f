#!/usr/bin/env bash
# Insert-function cost in delivery: the same backlog drained to a local webhook by a
# destination without a function, by one whose insert function returns the event, and by
# one whose function masks e-mails and phones at every depth and drops IPs (the PII
# function of `benches/functions.rs`), in the same run. Sluice (release, durability os)
# and its function host on core 0; the generator and the receiver (the bare baseline
# server) on core 1.
#   loadtest/functions.sh [BACKLOG events, default 50000] [ROUNDS, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
backlog=${1:-50000}; rounds=${2:-2}
cargo build --release --workspace --quiet
work=target/loadtest/functions; rm -rf "$work"; mkdir -p "$work"
. scripts/lib.sh

# One backlog drained: prints events/s. $1: "plain", "trivial" or "pii".
drain() {
  local mode=$1 port admin hook
  port=$(free_port); admin=$(free_port); hook=$(free_port)
  rm -rf "$work/log"
  write_hook_catalog "$work" "$hook"
  if [ "$mode" = trivial ]; then
    cat >> "$work/catalog.toml" <<'TOML'
[destinations.function]
id = "identity"
code = '''
async function onTrack(event) { return event; }
async function onIdentify(event) { return event; }
async function onPage(event) { return event; }
'''
TOML
  fi
  if [ "$mode" = pii ]; then
    cat >> "$work/catalog.toml" <<'TOML'
[destinations.function]
id = "mask-pii"
code = '''
function mask(value) {
  if (Array.isArray(value)) return value.map(mask);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === "ip") continue;
      out[k] = (k === "email" && typeof v === "string") ? v.replace(/^[^@]+/, "***")
             : (k === "phone" && typeof v === "string") ? v.replace(/\d(?=\d{2})/g, "*")
             : mask(v);
    }
    return out;
  }
  return value;
}
async function onTrack(event) { return mask(event); }
async function onIdentify(event) { return mask(event); }
async function onPage(event) { return mask(event); }
'''
TOML
  fi
  write_sluice_config "$work" "$port" "$admin" '[delivery]
allow_private_destinations = true
[telemetry]
log_filter = "warn"'
  metric() { curl -s "127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
  delivered() { metric 'sluice_delivery_delivered_total{destination="hook"}' | sed 's/^$/0/'; }
  taskset -c 0 target/release/sluice --config "$work/sluice.toml" serve & local sluice=$!
  sleep 1
  # The backlog builds while the receiver is down.
  taskset -c 1 target/release/loadtest run --target "127.0.0.1:$port" --key bench-key --route batch \
    --batch-size 100 --requests "$((backlog / 100))" --connections 16 --seconds 120 --quiet > /dev/null
  local t0 t1
  t0=$(date +%s.%N)
  taskset -c 1 target/release/loadtest baseline --listen "127.0.0.1:$hook" 2>/dev/null & local receiver=$!
  until [ "$(delivered)" -ge "$backlog" ] 2>/dev/null; do sleep 0.05; done
  t1=$(date +%s.%N)
  kill $receiver $sluice 2>/dev/null; wait $receiver $sluice 2>/dev/null || true
  python3 -c "import sys; n,t0,t1=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print(f'{n/(t1-t0):.0f}')" "$backlog" "$t0" "$t1"
}

plain=(); trivial=(); pii=()
for ((r = 1; r <= rounds; r++)); do
  p=$(drain plain); t=$(drain trivial); f=$(drain pii)
  echo "round $r: without a function $p events/s, returning the event $t events/s, PII masking $f events/s"
  plain+=("$p"); trivial+=("$t"); pii+=("$f")
done
python3 - "${plain[*]}" "${trivial[*]}" "${pii[*]}" <<'PY'
import statistics, sys
plain, trivial, pii = ([float(x) for x in a.split()] for a in sys.argv[1:4])
p, t, f = statistics.median(plain), statistics.median(trivial), statistics.median(pii)
print(f"median events/s: without a function {p:.0f}; returning the event {t:.0f} ({100 * t / p:.0f} %, {1e6 / t - 1e6 / p:.1f} µs more per event); PII masking {f:.0f} ({100 * f / p:.0f} %, {1e6 / f - 1e6 / p:.1f} µs more per event)")
PY
