#!/usr/bin/env bash
# Installs what the forging OIDC provider (tests/peers/oidc/forge.py) needs: PyJWT and
# cryptography (sign the good and the forged ID tokens) in target/venv-identity, the
# venv of scripts/identity-peers.sh. Does nothing when they are there already.
# Usage: scripts/oidc-forge.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/venv-identity"
# lib.sh's python_tool keys on an executable; these are libraries, so ask Python.
if ! "$venv/bin/python" - 2>/dev/null <<'PY'
from importlib.metadata import version
assert version("PyJWT") == "2.15.1" and version("cryptography") == "50.0.2"
PY
then
  echo "installing PyJWT, cryptography into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'PyJWT==2.15.1' 'cryptography==50.0.2'
fi
