"""Tests for messenger/queues.py: one rq queue per name and Redis URL, built to fail fast."""

from __future__ import annotations

from messenger.queues import channel_queue_names, get_queue


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
