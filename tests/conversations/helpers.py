"""Shared helpers for the conversations tests: fixed clocks, rows, and a Redis that is down."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

from django.conf import settings

from conversations.models import Conversation, Message
from conversations.services import device_id_for

PAGE_ID = "105000000000001"
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``: tests move the clock through ``now=`` instead of sleeping."""
    return T0 + timedelta(seconds=seconds)


def conversation_make(
    *, psid: str, status: str = Conversation.Status.ACTIVE, last: datetime = T0
) -> Conversation:
    """An open conversation row for ``psid`` whose last activity is ``last``."""
    return Conversation.objects.create(
        page_id=PAGE_ID,
        psid=psid,
        device_id=device_id_for(page_id=PAGE_ID, psid=psid),
        status=status,
        started_at=last,
        last_activity_at=last,
    )


def messages_make(*, conversation: Conversation, count: int, start: datetime = T0) -> list[Message]:
    """``count`` alternating in/out messages one second apart, stored directly (no cache involved)."""
    rows = [
        Message(
            conversation=conversation,
            direction="in" if i % 2 == 0 else "out",
            text=f"message {i}",
            created_at=start + timedelta(seconds=i),
        )
        for i in range(count)
    ]
    Message.objects.bulk_create(rows)
    Conversation.objects.filter(pk=conversation.pk).update(
        message_count=count, last_activity_at=start + timedelta(seconds=max(count - 1, 0))
    )
    conversation.refresh_from_db()
    return rows


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def caches_with_redis_down() -> dict:
    """``CACHES`` pointing the default cache at a closed port: every Redis call fails at once."""
    default = dict(settings.CACHES["default"])
    default["LOCATION"] = f"redis://127.0.0.1:{closed_port()}/0"
    return {"default": default}
