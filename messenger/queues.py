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

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
_queues: dict[tuple[str, str], Queue] = {}
_ingress_clients: dict[tuple[str, int], redis.Redis] = {}
_ingress_queues: dict[tuple[str, str, int], Queue] = {}


def queue_url(name: str) -> str:
    return settings.RQ_QUEUES[name]["URL"]


def _client(url: str) -> redis.Redis:
    """The Redis client for ``url``, one per process (cached per URL, so tests can re-point it)."""
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                timeout = settings.REDIS_SOCKET_TIMEOUT
                client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=timeout,
                    socket_timeout=max(timeout, 5.0),
                    retry=settings.REDIS_RETRY,
                )
                _clients[url] = client
    return client


def channel_redis() -> redis.Redis:
    """The channel's Redis: the client of its queues (both queues live on one Redis)."""
    return _client(queue_url(settings.MESSENGER_FAST_QUEUE))


def get_queue(name: str) -> Queue:
    """The rq queue ``name`` as configured in ``RQ_QUEUES`` (cached per URL, so tests can re-point it)."""
    url = queue_url(name)
    key = (name, url)
    queue = _queues.get(key)
    if queue is None:
        connection = _client(url)
        with _lock:
            queue = _queues.get(key)
            if queue is None:
                queue = Queue(
                    name,
                    connection=connection,
                    default_timeout=settings.RQ_QUEUES[name].get("DEFAULT_TIMEOUT", 180),
                )
                _queues[key] = queue
    return queue


def _ingress_client(url: str, timeout_ms: int) -> redis.Redis:
    """The webhook's client for ``url``: connect and read time out after ``timeout_ms``, no retry."""
    key = (url, timeout_ms)
    client = _ingress_clients.get(key)
    if client is None:
        with _lock:
            client = _ingress_clients.get(key)
            if client is None:
                timeout = timeout_ms / 1000.0
                client = redis.Redis.from_url(
                    url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
                )
                _ingress_clients[key] = client
    return client


def ingress_queue(name: str) -> Queue:
    """The rq queue ``name`` on the webhook's short-timeout client (cached per URL and timeout)."""
    url = queue_url(name)
    timeout_ms = int(settings.MESSENGER_INGRESS_REDIS_TIMEOUT_MS)
    key = (name, url, timeout_ms)
    queue = _ingress_queues.get(key)
    if queue is None:
        connection = _ingress_client(url, timeout_ms)
        with _lock:
            queue = _ingress_queues.get(key)
            if queue is None:
                queue = Queue(
                    name,
                    connection=connection,
                    default_timeout=settings.RQ_QUEUES[name].get("DEFAULT_TIMEOUT", 180),
                )
                _ingress_queues[key] = queue
    return queue


def channel_queue_names() -> list[str]:
    return [settings.MESSENGER_FAST_QUEUE, settings.MESSENGER_SLOW_QUEUE]
