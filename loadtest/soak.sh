#!/usr/bin/env bash
# Memory soak: Sluice (release, durability os, server on core 0) under a steady open-loop
# load (RATE requests/s, default 10000) from the generator (core 1) for SECONDS (default
# 300); resident memory sampled every 10 s. The log it writes (~1 KB per request) is
# deleted at the end.
#   loadtest/soak.sh [SECONDS] [extra loadtest run args...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}; shift || true
cargo build --release --workspace --quiet
work=target/loadtest/soak; rm -rf "$work"; mkdir -p "$work"
. scripts/lib.sh
port=$(free_port); admin=$(free_port)
printf '[[sources]]\nid = "soak"\nwrite_keys = [{ key = "soak-key" }]\n' > "$work/catalog.toml"
write_sluice_config "$work" "$port" "$admin" 'max_bytes = 17179869184
[telemetry]
log_filter = "warn"' 
taskset -c 0 target/release/sluice --config "$work/sluice.toml" serve & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work/log"' EXIT
sleep 1
( for ((t = 0; t <= seconds; t += 10)); do
    printf '%4ds rss %6.1f MB\n' "$t" "$(awk '/VmRSS/{print $2/1024}' /proc/$pid/status)"
    sleep 10
  done ) &
sampler=$!
taskset -c 1 target/release/loadtest run --target "127.0.0.1:$port" --key soak-key \
  --connections 64 --rate "${RATE:-10000}" --requests 1000000000 --seconds "$seconds" --quiet "$@"
kill $sampler 2>/dev/null || true
echo "log: $(du -sh "$work/log" | cut -f1) (deleted now)"
