#!/usr/bin/env bash
# Sets up a fresh clone and runs the whole test suite (lint, then pytest) against real PostgreSQL
# and Redis, starting either when it is down. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

ensure_venv requirements-dev.txt
# The staff inbox's browser test (tests/browser) drives Debian's Chromium; it fails, never skips,
# without it. CI runs as root with Debian's mirror at hand.
if ! command -v chromedriver >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver
fi
export DATABASE_URL="${DATABASE_URL:-postgres://root@127.0.0.1:5432/chatbot}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
ensure_postgres
ensure_redis "$REDIS_URL"

.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
