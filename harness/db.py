"""PostgreSQL for a run, spoken to with psycopg directly (a bench process never sets Django up)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# Tables emptied between runs (the apps' own data; auth, contenttypes and migrations stay).
APP_TABLE_PREFIXES = ("messenger_", "conversations_", "observability_")


def connect(url: str, **kwargs):
    import psycopg

    return psycopg.connect(url, **kwargs)


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in ``url`` when it does not exist yet; ``True`` if created."""
    from psycopg import sql

    parts = urlsplit(url)
    db_name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
        return True


def recreate_database(url: str) -> None:
    """Drop the PostgreSQL database named in ``url`` (ending its sessions) and create it empty.

    A bench database outlives its run; migrated with an older migration history (a branch, a
    squash) it would refuse the current one. Starting from nothing every run costs a few seconds of
    migrations and removes that whole class of stale state.
    """
    from psycopg import sql

    parts = urlsplit(url)
    db_name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))


def truncate_app_tables(url: str) -> None:
    """Empty the messenger, conversations and observability tables (a clean slate per run)."""
    from psycopg import sql

    with connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
            if row[0].startswith(APP_TABLE_PREFIXES)
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )


class Db:
    """A small psycopg connection (autocommit) for reading the inbox from outside the project."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = connect(url, autocommit=True)

    def scalar(self, query: str, params: tuple = ()) -> object:
        row = self.conn.execute(query, params).fetchone()
        return row[0] if row else None

    def rows(self, query: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(query, params).fetchall()

    def status_counts(self) -> dict[str, int]:
        return dict(self.rows("SELECT status, count(*) FROM messenger_inboundmessage GROUP BY status"))

    def open_count(self) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM messenger_inboundmessage "
                "WHERE status IN ('pending', 'queued', 'processing', 'deferred')"
            )
            or 0
        )

    def close(self) -> None:
        self.conn.close()
