#!/usr/bin/env bash
# Start the local PostgreSQL cluster if it is not accepting connections.
set -euo pipefail
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
  echo "PostgreSQL did not start" >&2
  exit 1
fi
