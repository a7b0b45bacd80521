"""Tests for harness/db.py: the benches' PostgreSQL databases."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from psycopg import connect

from harness import db


def _url(name: str) -> str:
    cfg = settings.DATABASES["default"]
    return f"postgres://{cfg['USER'] or 'root'}@{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}/{name}"


def test_recreate_database_starts_empty_even_with_a_session_open():
    """A bench database left with tables from an older run (and a session still on it) comes back empty."""
    url = _url("harness_recreate_probe")
    db.ensure_database(url)
    leftover = connect(url, autocommit=True)
    leftover.execute("CREATE TABLE IF NOT EXISTS stale (id int)")
    try:
        db.recreate_database(url)
        with connect(url, autocommit=True) as fresh:
            tables = fresh.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        assert tables == 0
    finally:
        leftover.close()
        admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
        with connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS harness_recreate_probe WITH (FORCE)")
