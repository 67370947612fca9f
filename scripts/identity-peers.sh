#!/usr/bin/env bash
# Installs the real identity providers the identity tests sign in against, on loopback:
# oidc-provider-mock (an OpenID Connect provider: discovery, RS256 ID tokens, any
# client). Into target/venv-identity; does nothing when it is there already.
# Usage: scripts/identity-peers.sh  (tests/control_oidc.rs finds it there)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/lib.sh"
# 0.3.4 runs on Python 3.11 (0.4 needs 3.12) with the same routes and options.
python_tool "$root/target/venv-identity" oidc-provider-mock 'oidc-provider-mock==0.3.4'
