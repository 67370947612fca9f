#!/usr/bin/env bash
# The three-node JetStream cluster scenario at length, on release binaries: three
# nats-server processes on loopback ports (an R=3 stream), a gateway, two delivery
# workers and senders that retry like the SDKs; the stream's leader node, a delivery
# worker and the gateway are SIGKILLed during the load. It fails if any acknowledged
# event is missing from the stream or never reaches the webhook, and prints the counts.
#   loadtest/cluster.sh          # 60 s of load
#   loadtest/cluster.sh 180
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh >/dev/null   # installs nats-server when missing
SLUICE_CLUSTER_SECONDS=${1:-60} exec cargo test --release --test jetstream_cluster -- --nocapture
