#!/usr/bin/env bash
# Self-test of the forging OIDC provider: installs its libraries (scripts/oidc-forge.sh),
# then starts forge.py and checks every case (check.py). Takes a few seconds.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
"$root/scripts/oidc-forge.sh"
exec "$root/target/venv-identity/bin/python" "$root/tests/peers/oidc/check.py"
