"""Settings read from the environment: production refuses to start without its secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_check(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MESSENGER_"))}
    base.update(DJANGO_SETTINGS_MODULE="chatbot.settings", DATABASE_URL="sqlite:///:memory:", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_the_development_secret_key():
    """DJANGO_DEBUG=false without DJANGO_SECRET_KEY stops start-up with a message naming the variable."""
    result = run_check(DJANGO_DEBUG="false", MESSENGER_APP_SECRET="x")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_refuses_a_missing_app_secret():
    """DJANGO_DEBUG=false without MESSENGER_APP_SECRET stops start-up with a message naming it."""
    result = run_check(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="k" * 50)
    assert result.returncode != 0
    assert "MESSENGER_APP_SECRET is not set" in result.stderr


def test_production_starts_with_its_secrets():
    """With both secrets set, production settings load and Django's checks pass."""
    result = run_check(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="k" * 50, MESSENGER_APP_SECRET="s")
    assert result.returncode == 0, result.stderr


def test_database_pool_shares_a_bounded_set_of_connections_between_threads():
    """DATABASE_POOL_MAX_SIZE=3 on PostgreSQL: 12 threads querying at once never open more than 3
    server connections (they wait for one instead of failing on max_connections); unset, each thread
    opens its own."""
    script = (
        "import threading, django; django.setup()\n"
        "from django.db import connection, connections\n"
        "seen = set(); lock = threading.Lock()\n"
        "def work():\n"
        "    with connection.cursor() as c:\n"
        "        c.execute('SELECT pg_backend_pid(), pg_sleep(0.2)')\n"
        "        pid = c.fetchone()[0]\n"
        "    with lock: seen.add(pid)\n"
        "    connections.close_all()\n"
        "threads = [threading.Thread(target=work) for _ in range(12)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(seen))\n"
    )
    url = "postgres://root@127.0.0.1:5432/postgres"  # the server's own database: always there

    def distinct_backends(**env: str) -> int:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MESSENGER_", "DATABASE_"))}
        base.update(DJANGO_SETTINGS_MODULE="chatbot.settings", DATABASE_URL=url, **env)
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return int(result.stdout.split()[-1])

    assert 1 <= distinct_backends(DATABASE_POOL_MAX_SIZE="3") <= 3
    assert distinct_backends() == 12


def test_worker_concurrency_defaults_to_16_on_postgresql_and_1_on_sqlite():
    """The thread worker's default: 16 messages at once on PostgreSQL; 1 on SQLite (one writer at a time)."""
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.MESSENGER_WORKER_CONCURRENCY)"
    )

    def concurrency(url: str, **env: str) -> int:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MESSENGER_", "DATABASE_"))}
        base.update(DJANGO_SETTINGS_MODULE="chatbot.settings", DATABASE_URL=url, **env)
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[-1])

    assert concurrency("postgres://root@127.0.0.1:5432/postgres") == 16
    assert concurrency("sqlite:///:memory:") == 1
    assert concurrency("sqlite:///:memory:", MESSENGER_WORKER_CONCURRENCY="4") == 4
