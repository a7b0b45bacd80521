"""Tests for messenger/queues.py: one rq queue per name and Redis URL, built to fail fast, and the one
way for the channel to reach Redis, built from settings."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings
from redis.backoff import NoBackoff

from messenger.queues import channel_queue_names, channel_redis, get_queue, ingress_queue

ROOT = Path(__file__).resolve().parents[2]


def test_get_queue_is_built_once_per_name():
    """The webhook enqueues on every request: the same Queue (and connection pool) is reused."""
    assert get_queue("messenger_fast") is get_queue("messenger_fast")
    assert get_queue("messenger_fast") is not get_queue("messenger_slow")
    assert get_queue("messenger_fast").name == "messenger_fast"


def test_get_queue_follows_a_repointed_url(settings):
    """The cache is keyed by URL too, so a test (or a settings change) that re-points a queue gets a new one."""
    first = get_queue("messenger_fast")
    repointed = {**settings.RQ_QUEUES["messenger_fast"], "URL": "redis://127.0.0.1:6379/13"}
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "messenger_fast": repointed}
    other = get_queue("messenger_fast")  # built, never connected: nothing is written to db 13
    assert other is not first
    assert other.connection.connection_pool.connection_kwargs["db"] == 13


def test_queue_connection_fails_fast(settings):
    """A short connect timeout: a Redis that does not answer fails the enqueue at once (the row stays pending).

    (The read timeout is not checked here: an rq worker run in this process raises it on the shared
    pool for its blocking dequeue.)
    """
    kwargs = get_queue("messenger_fast").connection.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == settings.REDIS_SOCKET_TIMEOUT


def test_default_job_timeout_comes_from_rq_queues(settings):
    """A queue's jobs get the DEFAULT_TIMEOUT configured for it."""
    expected = settings.RQ_QUEUES["messenger_slow"].get("DEFAULT_TIMEOUT", 180)
    assert get_queue("messenger_slow")._default_timeout == expected


def test_channel_queue_names_are_the_fast_and_slow_queues(settings):
    """Workers listen on the channel's two queues, as named in the settings."""
    assert channel_queue_names() == [settings.MESSENGER_FAST_QUEUE, settings.MESSENGER_SLOW_QUEUE]



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


def test_ingress_queue_has_short_timeouts_and_no_retry(settings):
    """The webhook's queue: the same queue on the same Redis, on a client whose connect and read time
    out after MESSENGER_INGRESS_REDIS_TIMEOUT_MS with no retry (a hung Redis costs one short wait)."""
    settings.MESSENGER_INGRESS_REDIS_TIMEOUT_MS = 250
    queue = ingress_queue("messenger_fast")
    assert queue is ingress_queue("messenger_fast") and queue.name == "messenger_fast"
    assert queue.connection is not get_queue("messenger_fast").connection
    kwargs = queue.connection.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == kwargs["socket_timeout"] == 0.25
    assert kwargs["retry"].get_retries() == 0
    assert queue.key == get_queue("messenger_fast").key
    assert queue.connection.ping()


def test_no_module_imports_the_settings_module():
    """Code reads django.conf.settings only, so override_settings and the test settings apply."""
    offenders = []
    for app in ("chatbot", "messenger", "conversations", "engine", "observability"):
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
