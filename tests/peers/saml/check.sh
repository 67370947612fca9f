#!/usr/bin/env bash
# Self-test of the SAML test IdP: installs its tools (scripts/saml-idp.sh), then starts
# idp.py and checks every case (check.py). Takes a few seconds.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
"$root/scripts/saml-idp.sh"
exec "$root/target/venv-identity/bin/python" "$root/tests/peers/saml/check.py"
