"""The channel's Redis and its rq queues: the one way a channel module reaches Redis.

:func:`channel_redis` is the client every channel module uses for its own keys (the sender locks and
in-flight keys of ``messenger.ordering``, the recovery sweep's lock, rq's job registries read by the
inbox); :func:`get_queue` gives the rq queue a job goes on, on that same client. Both are built once
per process and Redis URL, here, from settings: ``RQ_QUEUES`` (the URL), ``REDIS_SOCKET_TIMEOUT`` and
``REDIS_RETRY``.

django-rq's ``get_queue`` opens a new Redis connection pool on every call; the webhook enqueues on
every request, so clients and queues are cached here, with short socket timeouts: a Redis that does
not answer must fail the enqueue fast, and the row stays pending for recovery.

The webhook enqueues on :func:`ingress_queue` instead: the same queues on a client of their own with
one short socket timeout (``MESSENGER_INGRESS_REDIS_TIMEOUT_MS``, 500 ms by default) and no retry,
because a Redis that accepts connections but never answers must not hold Facebook's request for the
five seconds (twice, with the retry) the workers' client may wait.

The history cache (``conversations.cache``), the Send API circuit breaker and the health view use
django-redis's ``default`` cache client instead: ``CACHES``, built in settings from the same
``REDIS_URL``, ``REDIS_SOCKET_TIMEOUT`` and ``REDIS_RETRY`` (its read timeout is the plain socket
timeout, not the queues' five seconds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue

T = TypeVar("T")

_lock = threading.RLock()  # re-entrant: building a queue builds its client under the same lock
# Clients and queues by what they are built from: one per process, rebuilt when a test re-points a URL.
_built: dict[tuple, object] = {}


def _once(key: tuple, build: Callable[[], T]) -> T:
    """The object built for ``key``, built once per process even when threads ask at the same time."""
    found = _built.get(key)
    if found is None:
        with _lock:
            found = _built.get(key)
            if found is None:
                found = _built[key] = build()
    return found  # type: ignore[return-value]


def queue_url(name: str) -> str:
    return settings.RQ_QUEUES[name]["URL"]


def _client(url: str) -> redis.Redis:
    """The workers' Redis client for ``url``: short connect timeout, reads up to 5 s, one quick retry."""
    timeout = settings.REDIS_SOCKET_TIMEOUT
    return _once(
        ("client", url),
        lambda: redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=max(timeout, 5.0), retry=settings.REDIS_RETRY
        ),
    )


def _ingress_client(url: str, timeout_ms: int) -> redis.Redis:
    """The webhook's client for ``url``: connect and read time out after ``timeout_ms``, no retry."""
    timeout = timeout_ms / 1000.0
    return _once(
        ("ingress-client", url, timeout_ms),
        lambda: redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        ),
    )


def _queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, default_timeout=settings.RQ_QUEUES[name].get("DEFAULT_TIMEOUT", 180))


def channel_redis() -> redis.Redis:
    """The channel's Redis: the client of its queues (both queues live on one Redis)."""
    return _client(queue_url(settings.MESSENGER_FAST_QUEUE))


def get_queue(name: str) -> Queue:
    """The rq queue ``name`` as configured in ``RQ_QUEUES`` (cached per URL, so tests can re-point it)."""
    url = queue_url(name)
    return _once(("queue", name, url), lambda: _queue(name, _client(url)))


def ingress_queue(name: str) -> Queue:
    """The rq queue ``name`` on the webhook's short-timeout client (cached per URL and timeout)."""
    url = queue_url(name)
    timeout_ms = int(settings.MESSENGER_INGRESS_REDIS_TIMEOUT_MS)
    return _once(("ingress-queue", name, url, timeout_ms), lambda: _queue(name, _ingress_client(url, timeout_ms)))


def channel_queue_names() -> list[str]:
    return [settings.MESSENGER_FAST_QUEUE, settings.MESSENGER_SLOW_QUEUE]
