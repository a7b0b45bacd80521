#!/usr/bin/env bash
# CI hook: the short fault soak (300 messages, 60 users, about two minutes; see bench/soak.py).
# Exits non-zero when any reply is lost, duplicated or blocked (soak.py exits 1), when the soak cannot run
# (2: its Redis port is taken), or when it crashes. Needs PostgreSQL on 127.0.0.1:5432 (started when
# down, as for the tests) and the redis-server binary; the soak starts its own Redis on port 6390.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

ensure_venv requirements-dev.txt
ensure_postgres
if ! command -v redis-server >/dev/null 2>&1; then
  echo "bench/soak_ci.sh: redis-server is not installed (the soak runs its own instance on port 6390)." >&2
  exit 1
fi
exec .venv/bin/python bench/soak.py --quick "$@"
