#!/usr/bin/env bash
# Makes sure the services the test suite talks to are up: NATS with JetStream on
# 127.0.0.1:4222. Installs nats-server from Debian's packages if it is missing.
set -euo pipefail

up() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! up 4222; then
  if ! command -v nats-server >/dev/null 2>&1; then
    echo "services: installing nats-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  fi
  echo "services: starting nats-server (JetStream) on 127.0.0.1:4222"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 100); do up 4222 && break; sleep 0.1; done
  up 4222 || { echo "services: NATS did not come up" >&2; exit 1; }
fi
echo "services: NATS up on 127.0.0.1:4222"
