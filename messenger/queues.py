"""The rq queues of the channel, one cached ``Queue`` per name and Redis URL per process.

django-rq's ``get_queue`` opens a new Redis connection pool on every call; the webhook enqueues on
every request, so queues are built once here (with short socket timeouts: a Redis that does not
answer must fail the enqueue fast, and the row stays pending for recovery).
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from rq import Queue

from chatbot import settings as settings_module

_lock = threading.Lock()
_queues: dict[tuple[str, str], Queue] = {}


def queue_url(name: str) -> str:
    return settings.RQ_QUEUES[name]["URL"]


def get_queue(name: str) -> Queue:
    """The rq queue ``name`` as configured in ``RQ_QUEUES`` (cached per URL, so tests can re-point it)."""
    url = queue_url(name)
    key = (name, url)
    queue = _queues.get(key)
    if queue is None:
        with _lock:
            queue = _queues.get(key)
            if queue is None:
                timeout = settings.REDIS_SOCKET_TIMEOUT
                connection = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=timeout,
                    socket_timeout=max(timeout, 5.0),
                    retry=settings_module.redis_retry(),
                )
                queue = Queue(
                    name,
                    connection=connection,
                    default_timeout=settings.RQ_QUEUES[name].get("DEFAULT_TIMEOUT", 180),
                )
                _queues[key] = queue
    return queue


def channel_queue_names() -> list[str]:
    return [settings.MESSENGER_FAST_QUEUE, settings.MESSENGER_SLOW_QUEUE]
