"""Tests for chatbot/health.py: ``/healthz`` reports the database and Redis."""

from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/15",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
}


def test_healthz_ok_when_database_and_redis_answer(client):
    """Both up: 200 with JSON saying so."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}, "pages": {}}


def test_healthz_names_redis_when_it_is_down(client):
    """Redis unreachable: 503 naming redis, the database still ok."""
    from django.core.cache import caches

    with override_settings(CACHES=DEAD_REDIS):
        caches._settings = None
        if hasattr(caches._connections, "default"):
            del caches._connections.default
        response = client.get("/healthz")
    if hasattr(caches._connections, "default"):
        del caches._connections.default
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]
    assert response.json()["checks"]["database"] == "ok"


def test_healthz_names_database_when_it_is_down(client, monkeypatch):
    """Database failing: 503 naming the database."""
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        from django.db import OperationalError

        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]


def test_healthz_names_a_page_with_a_failing_token_and_stays_200(client, settings):
    """A failing token is reported under pages, never as a 503: the web itself is healthy."""
    from messenger.token_health import token_gate, token_mark_failing

    settings.MESSENGER_PAGE_ACCESS_TOKEN = "EAAhealthztoken"
    token_gate(page_id="P-ok")
    token_mark_failing(page_id="P-dead", error_code=190)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["pages"] == {"P-dead": "token_failing", "P-ok": "ok"}
