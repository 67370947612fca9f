#!/usr/bin/env bash
# Validates the deploy kit (deploy/): the Kubernetes manifests against the API schemas
# (kubernetes-validate, PyPI, strict: unknown fields fail), every Sluice container's
# arguments and SLUICE__ settings against the real binary, the compose file's shape,
# the Prometheus configs and alert rules with promtool (check config, check rules, and
# the rules' unit tests). promtool comes from Debian's prometheus package, unpacked into
# target/tools (nothing is installed system-wide, no service is started).
# Usage: scripts/deploy_check.sh   (SLUICE_BIN: the sluice binary, default target/debug)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || cargo build --quiet

venv="$root/target/venv-deploy"
python_tool "$venv" kubernetes-validate 'kubernetes-validate==1.31.0' 'PyYAML==6.0.3'

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  tools="$root/target/tools"
  promtool="$tools/usr/bin/promtool"
  if [ ! -x "$promtool" ]; then
    echo "deploy check: fetching promtool (Debian package prometheus) into $tools"
    mkdir -p "$tools"
    (cd "$tools" && { apt-get download prometheus >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get download prometheus >/dev/null; }; } \
      && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb)
  fi
fi

echo "deploy check: Kubernetes manifests (schemas of Kubernetes 1.31, strict)"
manifests=$(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086
"$venv/bin/kubernetes-validate" --strict --quiet $manifests

echo "deploy check: containers, settings and the compose file against $bin"
"$venv/bin/python" scripts/deploy_check.py --bin "$bin"

echo "deploy check: Prometheus configs and alert rules (promtool)"
"$promtool" check config deploy/prometheus/prometheus.yml >/dev/null
"$promtool" check config deploy/prometheus/prometheus-kubernetes.yml >/dev/null
"$promtool" check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && "$promtool" test rules alerts_test.yml)
echo "deploy check: ok"
