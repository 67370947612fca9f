#!/usr/bin/env bash
# Builds the release binaries and runs the compare: baselines and Sluice configurations
# back to back, server on core 0, generator on core 1, medians of repeated runs.
#   loadtest/compare.sh                      # 3 runs of 5 s per scenario (~3 minutes)
#   loadtest/compare.sh --runs 5 --seconds 10
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --quiet
exec target/release/loadtest compare "$@"
