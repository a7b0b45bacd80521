"""Fixtures shared by the whole suite: a clean Redis database per test, webhook helpers.

Signing and flushing come from the harness the benchmarks use too (``harness/``), so the suite signs
with the app's own ``messenger.signature.compute_signature``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from django.conf import settings

from harness import redis_db, webhooks

FIXTURES = Path(__file__).parent / "fixtures" / "messenger"


def load_fixture(name: str) -> dict:
    """The parsed JSON of ``tests/fixtures/messenger/<name>.json``."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def sign(body: bytes, secret: str | None = None) -> str:
    """The ``X-Hub-Signature-256`` header value Facebook would send for ``body``."""
    return webhooks.sign(body, secret if secret is not None else settings.MESSENGER_APP_SECRET)


@pytest.fixture
def redis_conn():
    """A raw connection to the test Redis database."""
    import redis

    conn = redis.Redis.from_url(settings.REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def _clean_redis():
    """Each test starts with an empty Redis test database (never database 0)."""
    import redis

    # A test that stops Redis on purpose starts it again itself; nothing to flush meanwhile.
    with contextlib.suppress(redis.exceptions.ConnectionError):
        redis_db.flush_redis(settings.REDIS_URL)  # refuses database 0
    yield


@pytest.fixture(autouse=True)
def _no_database_pages():
    """Each test starts knowing no ``Page`` rows, without a query; ``page_add`` and friends clear it.

    A test that creates ``Page`` rows through the ORM calls ``messenger.pages.pages_cache_clear()``.
    """
    from messenger.pages import pages_cache_clear, pages_cache_prime_empty

    pages_cache_prime_empty()
    yield
    pages_cache_clear()


@pytest.fixture
def post_webhook(client):
    """Sign and POST a body (bytes, dict or fixture name) to the V2 webhook with the test client."""

    def _post(body: bytes | dict | str, *, signature: str | None = None, path=webhooks.WEBHOOK_PATH):
        if isinstance(body, str):
            raw = fixture_bytes(body)
        elif isinstance(body, dict):
            raw = webhooks.encode(body)
        else:
            raw = body
        headers = {"HTTP_X_HUB_SIGNATURE_256": signature if signature is not None else sign(raw)}
        return client.post(path, data=raw, content_type="application/json", **headers)

    return _post


@pytest.fixture
def fresh_engine():
    """No engine cached before or after the test: the next ``get_engine`` builds from its settings."""
    from engine import reset_engine_cache

    reset_engine_cache()
    yield
    reset_engine_cache()
