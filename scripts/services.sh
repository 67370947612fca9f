#!/usr/bin/env bash
# Makes sure the services the test suite talks to are up: NATS with JetStream on
# 127.0.0.1:4222 and PostgreSQL on 127.0.0.1:5432, installing them from Debian's packages
# when missing.
set -euo pipefail

up() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The binary is needed even when a server already listens: the JetStream tests start
# servers of their own (a three-node cluster, a server they kill).
if ! command -v nats-server >/dev/null 2>&1; then
  echo "services: installing nats-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi
if ! up 4222; then
  echo "services: starting nats-server (JetStream) on 127.0.0.1:4222"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 100); do up 4222 && break; sleep 0.1; done
  up 4222 || { echo "services: NATS did not come up" >&2; exit 1; }
fi
echo "services: NATS up on 127.0.0.1:4222"

# PostgreSQL on 127.0.0.1:5432 (trust auth) for the control-plane store tests: each test
# makes its own throw-away database (sluice_t_<unix time>_<random>) and drops it; ones
# left by an interrupted run over an hour ago are dropped here.
if ! up 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  echo "services: starting PostgreSQL $version on 127.0.0.1:5432"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 100); do up 5432 && break; sleep 0.1; done
  up 5432 || { echo "services: PostgreSQL did not come up" >&2; exit 1; }
fi
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -Atq "$@"; }
if ! psql_admin -c 'select 1' >/dev/null 2>&1; then
  echo "services: PostgreSQL on 127.0.0.1:5432 does not let user postgres in without a password (trust auth expected; set SLUICE_TEST_POSTGRES to another admin URL)" >&2
  [ -n "${SLUICE_TEST_POSTGRES:-}" ] || exit 1
else
  cutoff=$(( $(date +%s) - 3600 ))
  for db in $(psql_admin -c "select datname from pg_database where datname like 'sluice_t_%'"); do
    stamp=$(echo "$db" | cut -d_ -f3)
    if [[ "$stamp" =~ ^[0-9]+$ ]] && [ "$stamp" -lt "$cutoff" ]; then
      psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null && echo "services: dropped stale test database $db"
    fi
  done
fi
echo "services: PostgreSQL up on 127.0.0.1:5432"
