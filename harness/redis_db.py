"""Redis for a run: one database number of the local server, never database 0 (others use it)."""

from __future__ import annotations

import os

REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def redis_url(db: int, base: str = REDIS_BASE_URL) -> str:
    """``<base>/<db>``; refuses database 0 of the shared server."""
    if db == 0 and base == REDIS_BASE_URL:
        raise ValueError("the harness never uses Redis db 0 of the shared server")
    return f"{base.rstrip('/')}/{db}"


def flush_redis(url: str) -> None:
    """Empty the Redis database ``url`` names; refuses database 0 (a URL without a number means 0)."""
    import redis

    conn = redis.Redis.from_url(url)
    try:
        if int(conn.connection_pool.connection_kwargs.get("db", 0)) == 0:
            raise ValueError(f"refusing to flush Redis database 0 ({url}); use another database number")
        conn.flushdb()
    finally:
        conn.close()
