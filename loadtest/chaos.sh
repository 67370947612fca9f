#!/usr/bin/env bash
# Chaos run (see loadtest/chaos.py): load on a release Sluice while it is killed with
# SIGKILL, its disk (a 48 MiB tmpfs when run as root) fills up, and its webhook
# destination answers 503; then acknowledged vs stored vs delivered are counted.
#   loadtest/chaos.sh [--seconds 60] [--senders 4]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --package sluice --bin sluice
exec python3 loadtest/chaos.py "$@"
