"""Tests for messenger/queues.py: one way for the channel to reach Redis, built from settings."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings
from redis.backoff import NoBackoff

from messenger.queues import channel_redis, get_queue

ROOT = Path(__file__).resolve().parents[2]


def test_channel_redis_is_the_queues_client():
    """The sender locks and the queues share one client: what the sweep sees is what the jobs wrote."""
    assert channel_redis() is get_queue(settings.MESSENGER_FAST_QUEUE).connection
    assert channel_redis() is get_queue(settings.MESSENGER_SLOW_QUEUE).connection
    assert channel_redis().ping()


def test_channel_redis_follows_the_settings_retry_and_timeouts():
    """One quick retry and a short connect timeout, from settings, as the cache's client has."""
    kwargs = channel_redis().connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == settings.REDIS_SOCKET_TIMEOUT
    retry = kwargs["retry"]
    assert retry.get_retries() == settings.REDIS_RETRY.get_retries() == 1
    assert isinstance(retry._backoff, NoBackoff)


def test_no_module_imports_the_settings_module():
    """Code reads django.conf.settings only, so override_settings and the test settings apply."""
    offenders = []
    for app in ("chatbot", "messenger", "conversations", "observability"):
        for path in (ROOT / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "chatbot" and any(
                    alias.name == "settings" for alias in node.names
                ):
                    offenders.append(str(path.relative_to(ROOT)))
                if isinstance(node, ast.ImportFrom | ast.Import) and "chatbot.settings" in (
                    [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                ):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
