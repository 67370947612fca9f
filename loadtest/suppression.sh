#!/usr/bin/env bash
# Suppression at the edge, at scale: `sluice serve` with its control plane (release,
# durability os, server on core 0) under /v1/track from the generator (core 1, 256
# connections), RUNS runs of SECONDS each with nothing suppressed; then USERS user ids
# suppressed through the API (workspace regulations of 5,000 ids, as a client would make
# them) and the same runs again; then all of them lifted (UNSUPPRESS) and the runs once
# more, so the machine's drift over the run shows. Prints each run's req/s, the medians
# and their ratios, and the server's resident memory. The generator's users are not among
# the suppressed, so every event pays the full check (a miss in both scopes). Loopback
# only; the log it writes is deleted at the end.
#   loadtest/suppression.sh [USERS (default 1000000)] [RUNS (3)] [SECONDS (5)]
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000000}; runs=${2:-3}; seconds=${3:-5}
cargo build --release --workspace --quiet
work=target/loadtest/suppression; rm -rf "$work"; mkdir -p "$work"
. scripts/lib.sh
port=$(free_port); admin=$(free_port); control=$(free_port)
printf '[[sources]]\nid = "bench"\nwrite_keys = [{ key = "bench-key" }]\n' > "$work/catalog.toml"
write_sluice_config "$work" "$port" "$admin" "$(printf '[control]\nlisten = "127.0.0.1:%s"\nrate_limit_per_minute = 1000000\n[telemetry]\nlog_filter = "warn"\n' "$control")"
sed -i 's/^source = "file"$/source = "control"/' "$work/sluice.toml"
token=$(target/release/sluice --config "$work/sluice.toml" admin bootstrap --email bench@example.com 2>/dev/null)
taskset -c 0 target/release/sluice --config "$work/sluice.toml" serve 2>"$work/serve.log" & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work/log"' EXIT
for _ in $(seq 1 200); do
  (echo > "/dev/tcp/127.0.0.1/$control") 2>/dev/null && break
  sleep 0.05
done
rss() { awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status"; }
# Runs the load; prints one req/s figure per run.
load() {
  for _ in $(seq 1 "$runs"); do
    taskset -c 1 target/release/loadtest run --target "127.0.0.1:$port" --key bench-key \
      --connections 256 --seconds "$seconds" --requests 1000000000 --json-out "$work/run.json" >/dev/null
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["requests_per_sec"]))' "$work/run.json"
  done
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "rss at start: $(rss) MB"
before=$(load); echo "nothing suppressed, req/s: $(echo $before)"
rss_before=$(rss)
started=$(date +%s.%N)
# regulate TYPE: USERS ids in workspace regulations of 5,000, through the API.
regulate() {
  python3 - "$control" "$token" "$users" "$1" <<'PY'
import json, sys, urllib.request
control, token, users, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
for first in range(0, users, 5000):
    ids = [f"suppressed-{n:08d}" for n in range(first, min(first + 5000, users))]
    body = json.dumps({"regulationType": kind, "subjectType": "USER_ID", "subjectIds": ids}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{control}/api/v1/regulations", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as answer:
        assert answer.status == 200, answer.status
PY
}
held() { curl -s "http://127.0.0.1:$admin/metrics" | awk '$1=="sluice_suppressed_users"{print $2}'; }
regulate SUPPRESS_ONLY
until [ "$(held)" = "$users" ]; do sleep 0.2; done
echo "$users users suppressed through the API in $(python3 -c "import time,sys; print(round(time.time()-float(sys.argv[1]),1))" "$started") s; rss $(rss) MB (was $rss_before MB)"
after=$(load); echo "$users suppressed, req/s: $(echo $after)"
echo "saved copy: $(du -h "$work/log/suppressions.bin" | cut -f1)"
regulate UNSUPPRESS
until [ "$(held)" = "0" ]; do sleep 0.2; done
lifted=$(load); echo "all lifted again, req/s: $(echo $lifted)"
b=$(echo "$before" | tr ' ' '\n' | median); a=$(echo "$after" | tr ' ' '\n' | median)
l=$(echo "$lifted" | tr ' ' '\n' | median)
echo "medians: $b req/s with nothing suppressed, $a with $users suppressed, $l after lifting them"
echo "suppressed / before: $(python3 -c "print(round(100*$a/$b,1))") %; suppressed / after lifting: $(python3 -c "print(round(100*$a/$l,1))") %"
echo "rss at the end: $(rss) MB"
