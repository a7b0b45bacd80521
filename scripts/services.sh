# Sourced by scripts/run.sh and scripts/test.sh: make sure Redis (and, for tests, PostgreSQL) answer.
# Starts a local server when none answers and one is installed; otherwise says in one line what is missing.

redis_ping() {
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

ensure_redis() {
  local url="$1"
  if redis_ping "$url"; then return 0; fi
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p var
    echo "Redis does not answer at $url: starting a local redis-server on 127.0.0.1:6379 (no persistence)."
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir "$PWD/var" --logfile "$PWD/var/redis.log"
    for _ in $(seq 1 50); do redis_ping "$url" && return 0; sleep 0.1; done
  fi
  echo "Redis is not running at $url and redis-server is not installed: install Redis (e.g. apt-get install redis-server) or set REDIS_URL." >&2
  return 1
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL does not answer on 127.0.0.1:5432: starting the local cluster."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.1; done
  fi
  echo "PostgreSQL is not running on 127.0.0.1:5432 and no local cluster could be started: install PostgreSQL or set DATABASE_URL." >&2
  return 1
}

ensure_venv() {
  local requirements="$1"
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  local stamp=".venv/.installed-$(cat "$requirements" requirements.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r "$requirements"
    touch "$stamp"
  fi
}
