"""Which rq queue an inbound message goes to, and with what job timeout (the seed's table 48.2).

| message                         | queue            | job timeout |
| ------------------------------- | ---------------- | ----------- |
| text (or postback) < 200 chars  | messenger_fast   | FAST        |
| text of 200 chars or more       | messenger_fast   | LONG_TEXT   |
| attachments                     | messenger_slow   | SLOW        |

Job timeouts are rq's hard limit on one job (rq kills the work horse past it). They sit well above
``MESSENGER_PROCESSING_TIMEOUT_MS`` plus the Send API's retry budget so the pipeline's own
timeouts (fallback reply, deferred send) always act first; rq's limit is only a backstop.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Route:
    queue: str
    job_timeout: int  # seconds
    reason: str


def _send_budget_s() -> float:
    """Worst case of one send with every retry: attempts x timeout + the sum of the waits."""
    retries = settings.MESSENGER_MAX_RETRIES
    waits = sum(settings.MESSENGER_RETRY_BASE_MS * 4 * 2**i for i in range(retries)) / 1000
    return (retries + 1) * settings.MESSENGER_SEND_TIMEOUT_MS / 1000 + waits


def route_for(*, kind: str, text: str, has_attachments: bool) -> Route:
    """The route of one inbound message; ``kind`` is an ``InboundMessage.Kind`` value."""
    base = settings.MESSENGER_PROCESSING_TIMEOUT_MS / 1000 + _send_budget_s()
    if has_attachments or kind == "attachments":
        return Route(settings.MESSENGER_SLOW_QUEUE, int(base * 3) + 60, "attachments")
    if len(text) >= settings.MESSENGER_LONG_TEXT_CHARS:
        return Route(settings.MESSENGER_FAST_QUEUE, int(base * 2) + 60, "long-text")
    return Route(settings.MESSENGER_FAST_QUEUE, int(base) + 30, "short-text")
