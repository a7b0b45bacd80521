"""Reads of conversations and their history (HackSoft-style selectors: no writes to the database).

``history_recent`` may write to the Redis cache (filling it on a miss); it never writes rows.
"""

from __future__ import annotations

from django.conf import settings

from conversations import cache
from conversations.models import Conversation, Message
from engine.types import HistoryItem

_HISTORY_FIELDS = ("id", "direction", "text", "intent", "created_at")


def conversation_find_open(*, page_id: str, psid: str) -> Conversation | None:
    """The sender's open conversation (any status but ``expired``), or ``None``. One query.

    The partial unique constraint guarantees at most one; the lookup uses its index.
    """
    return (
        Conversation.objects.filter(page_id=page_id, psid=psid)
        .exclude(status=Conversation.Status.EXPIRED)
        .first()
    )


def message_history_item(*, message: Message) -> dict:
    """The cached (JSON) form of one message: the :class:`HistoryItem` fields plus the message id."""
    return {
        "id": message.pk,
        "direction": message.direction,
        "text": message.text,
        "intent": message.intent,
        "created_at": message.created_at.timestamp(),
    }


def history_item_from_cached(item: dict) -> HistoryItem:
    """A :class:`HistoryItem` from the cached (JSON) form of a message."""
    return HistoryItem(
        direction=item["direction"],
        text=item.get("text", ""),
        intent=item.get("intent", ""),
        created_at=float(item.get("created_at", 0.0)),
    )


def history_items_from_db(*, conversation_id: int, limit: int, before_id: int | None = None) -> list[dict]:
    """The last ``limit`` messages of a conversation as cached-form dicts, oldest first. One query.

    ``before_id`` keeps only messages stored before that one (a re-run rebuilding the context its
    first run saw). Ordered by ``(created_at, id)``, the order of the ``message_recent_idx`` index.
    """
    if limit <= 0:
        return []
    # Notes on thread control (conversations.people) are for staff, not the engine's history.
    qs = Message.objects.filter(conversation_id=conversation_id).exclude(role=Message.Role.NOTE)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    rows = qs.order_by("-created_at", "-id").values(*_HISTORY_FIELDS)[:limit]
    items = [
        {
            "id": row["id"],
            "direction": row["direction"],
            "text": row["text"],
            "intent": row["intent"],
            "created_at": row["created_at"].timestamp(),
        }
        for row in rows
    ]
    items.reverse()
    return items


def history_recent(*, conversation: Conversation, limit: int | None = None) -> list[HistoryItem]:
    """The last ``limit`` (default ``MESSENGER_HISTORY_LIMIT``) messages, oldest first.

    For an open conversation, answered from Redis (no query on a hit; one query and a cache fill on a
    miss, or when Redis is down). An expired conversation, or a ``limit`` above the setting (more
    than the cache keeps), is read from the database directly.
    """
    bound = int(settings.MESSENGER_HISTORY_LIMIT)
    limit = bound if limit is None else limit
    if limit <= 0:
        return []

    def _load(n: int) -> list[dict]:
        return history_items_from_db(conversation_id=conversation.pk, limit=n)

    if conversation.status == Conversation.Status.EXPIRED or limit > bound:
        items = _load(limit)
    else:
        items = cache.history_read_through(conversation_id=conversation.pk, limit=bound, loader=_load)
    return [history_item_from_cached(item) for item in items[-limit:]]
