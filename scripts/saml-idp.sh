#!/usr/bin/env bash
# Installs what the SAML test IdP (tests/peers/saml/idp.py) needs: Debian's xmlsec1 CLI
# (it signs the test responses; pysaml2 calls it too) and pysaml2 + lxml (build and
# mutate the responses) in target/venv-identity, the venv of scripts/identity-peers.sh.
# Does nothing when they are there already. Usage: scripts/saml-idp.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/venv-identity"
if ! command -v xmlsec1 >/dev/null; then
  echo "installing xmlsec1"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq xmlsec1 >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq xmlsec1 >/dev/null; }
fi
# lib.sh's python_tool keys on an executable; this venv may exist without pysaml2.
if ! "$venv/bin/python" -c 'import saml2, lxml' 2>/dev/null; then
  echo "installing pysaml2, lxml into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'pysaml2==7.5.5' 'lxml==6.2.0'
fi
