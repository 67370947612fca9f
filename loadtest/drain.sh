#!/usr/bin/env bash
# Delivery cost of one engine, for before/after comparisons of two builds: a backlog built
# while a local webhook is down, then drained to it. Prints events/s and the server's own
# CPU per event delivered (utime + stime from /proc over the drain). Sluice on core 0, the
# generator and the receiver (the bare baseline server) on core 1; webhook batches of 100.
#   loadtest/drain.sh [BINARY, default target/release/sluice] [local|jetstream, default local] [BACKLOG events, default 200000]
# JetStream runs on the machine's nats-server (127.0.0.1:4222), on a stream of its own that
# expires within the hour.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/sluice}; backend=${2:-local}; backlog=${3:-200000}
[ -x target/release/loadtest ] || cargo build --release -p loadtest --quiet
[ -x "$bin" ] || cargo build --release --bin sluice --quiet
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-drain.XXXX")
. scripts/lib.sh
port=$(free_port); admin=$(free_port); hook=$(free_port)
write_hook_catalog "$work" "$hook"
extra=''
if [ "$backend" = jetstream ]; then
  name="DRAIN$(date +%s%N | tail -c 9)"
  extra="backend = \"jetstream\"
[log.jetstream]
stream = \"$name\"
subject_prefix = \"drain.$name\"
max_bytes = 1073741824
max_age_hours = 1"
fi
write_sluice_config "$work" "$port" "$admin" "$extra
[delivery]
allow_private_destinations = true
[telemetry]
log_filter = \"warn\""
metric() { curl -s "127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
delivered() { metric 'sluice_delivery_delivered_total{destination="hook"}' | sed 's/^$/0/'; }
taskset -c 0 "$bin" --config "$work/sluice.toml" serve & sluice=$!
receiver=
trap 'kill $sluice $receiver 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
sleep 1.5
taskset -c 1 target/release/loadtest run --target "127.0.0.1:$port" --key bench-key --route batch \
  --batch-size 100 --requests "$((backlog / 100))" --connections 16 --seconds 120 --quiet > /dev/null
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$sluice/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
taskset -c 1 target/release/loadtest baseline --listen "127.0.0.1:$hook" 2>/dev/null & receiver=$!
deadline=$((SECONDS + 300))
until [ "$(delivered)" -ge "$backlog" ] 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "not drained within 300 s" >&2; exit 1; }
  sleep 0.05
done
t1=$(date +%s.%N); c1=$(cpu)
python3 - "$backlog" "$t0" "$t1" "$c0" "$c1" <<'PY'
import os, sys
n, t0, t1, c0, c1 = int(sys.argv[1]), *map(float, sys.argv[2:4]), *map(int, sys.argv[4:6])
hz = os.sysconf("SC_CLK_TCK")
print(f"{n / (t1 - t0):.0f} events/s, {(c1 - c0) / hz * 1e6 / n:.2f} µs CPU per event")
PY
