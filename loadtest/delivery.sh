#!/usr/bin/env bash
# Delivery figures: events/s delivered to a local webhook, lag under load, and the time
# to drain a backlog. Sluice (release, durability os) on core 0; the generator and the
# webhook receiver (the bare baseline server, which answers 200 to any POST) on core 1.
#   loadtest/delivery.sh [RATE events/s, default 20000] [SECONDS, default 10] [BACKLOG events, default 200000]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-20000}; seconds=${2:-10}; backlog=${3:-200000}
cargo build --release --workspace --quiet
work=target/loadtest/delivery; rm -rf "$work"; mkdir -p "$work"
. scripts/lib.sh
port=$(free_port); admin=$(free_port); hook=$(free_port)
write_hook_catalog "$work" "$hook" 50 500
write_sluice_config "$work" "$port" "$admin" '[delivery]
allow_private_destinations = true
[telemetry]
log_filter = "warn"' 
metric() { curl -s "127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
delivered() { metric 'sluice_delivery_delivered_total{destination="hook"}' | sed 's/^$/0/'; }
lag_events() { metric 'sluice_delivery_lag_events{destination="hook"}' | sed 's/^$/0/'; }
lag_seconds() { metric 'sluice_delivery_lag_seconds{destination="hook"}' | sed 's/^$/0/'; }

taskset -c 1 target/release/loadtest baseline --listen "127.0.0.1:$hook" 2>/dev/null & receiver=$!
taskset -c 0 target/release/sluice --config "$work/sluice.toml" serve & sluice=$!
trap 'kill $receiver $sluice 2>/dev/null; wait 2>/dev/null; rm -rf "$work/log"' EXIT
sleep 1

echo "== steady load: $rate events/s for ${seconds}s (/v1/batch of 100), webhook batches of 100"
d0=$(delivered); t0=$(date +%s.%N)
( for ((i = 0; i < seconds * 2; i++)); do sleep 0.5; lag_seconds; done ) > "$work/lag.txt" &
sampler=$!
taskset -c 1 target/release/loadtest run --target "127.0.0.1:$port" --key bench-key --route batch \
  --batch-size 100 --rate "$((rate / 100))" --connections 32 --seconds "$seconds" --quiet | sed -n '1,4p'
wait $sampler || true
until [ "$(lag_events)" = "0" ]; do sleep 0.05; done
t1=$(date +%s.%N); d1=$(delivered)
python3 - "$d0" "$d1" "$t0" "$t1" "$work/lag.txt" <<'PY'
import sys
d0, d1, t0, t1 = map(float, sys.argv[1:5])
lags = sorted(float(x) for x in open(sys.argv[5]) if x.strip())
print(f"delivered {d1 - d0:.0f} events in {t1 - t0:.1f} s = {(d1 - d0) / (t1 - t0):.0f} events/s")
if lags:
    print(f"lag (age of oldest waiting event) sampled every 0.5 s: median {lags[len(lags)//2]:.3f} s, max {lags[-1]:.3f} s")
PY

echo "== backlog: $backlog events while the receiver is down, then drain"
kill $receiver; wait $receiver 2>/dev/null || true
taskset -c 1 target/release/loadtest run --target "127.0.0.1:$port" --key bench-key --route batch \
  --batch-size 100 --requests "$((backlog / 100))" --connections 32 --seconds 120 --quiet | sed -n "1,3p;6p"
for i in 1 2 3 4 5 6; do sleep 0.5; echo "backlog: $(lag_events) log records waiting, oldest $(lag_seconds) s; failed attempts $(metric 'sluice_delivery_failed_total{destination="hook",reason="connection"}')"; done
d0=$(delivered); t0=$(date +%s.%N)
taskset -c 1 target/release/loadtest baseline --listen "127.0.0.1:$hook" 2>/dev/null & receiver=$!
until [ "$(lag_events)" = "0" ]; do sleep 0.05; done
t1=$(date +%s.%N); d1=$(delivered)
echo "in all: accepted $(metric 'sluice_events_accepted_total{source="bench"}'), delivered $(delivered)"
python3 -c "import sys; d0,d1,t0,t1=map(float,sys.argv[1:]); print(f'drained {d1-d0:.0f} events in {t1-t0:.2f} s = {(d1-d0)/(t1-t0):.0f} events/s')" "$d0" "$d1" "$t0" "$t1"
