"""Every write to an inbound message or its outbound parts while it is answered, one named service each.

The pipeline (``messenger.pipeline``, ``messenger.delivery``) never writes a row itself: it calls
these. Each updates the database and the in-memory instance the pipeline holds, so the caller keeps
working on what the row says. ``inbound_finish`` (and ``inbound_park``, through it) is the one place
a row's status changes after processing starts, and logs the outcome.

Writes are ``UPDATE``s of the named columns by id, never a ``save()`` of the whole instance. Rows
are created by the inbox (``messenger.inbox``), which also owns the writes of queueing them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from messenger.models import InboundMessage, OutboundPart

# The outcome lines keep the pipeline's names (``messenger.pipeline.answered``, ``...deferred``...):
# dashboards and bench/soak.py count them.
logger = logging.getLogger("messenger.pipeline")

Status = InboundMessage.Status
_WARN_STATUSES = (Status.FAILED, Status.DEFERRED, Status.EXPIRED, Status.UNKNOWN_PAGE)


def inbound_start(*, inbound: InboundMessage, worker_name: str) -> None:
    """Mark the message as being processed by ``worker_name``: one more attempt, no longer parked."""
    inbound.attempts += 1
    InboundMessage.objects.filter(id=inbound.id).update(
        status=Status.PROCESSING,
        worker_name=worker_name[:255],
        processing_started_at=timezone.now(),
        attempts=inbound.attempts,
        not_before=None,
    )


def inbound_finish(
    *,
    inbound: InboundMessage,
    status: str,
    reason: str = "",
    conversation_id: int | None = None,
    not_before: datetime | None = None,
) -> str:
    """Record the outcome on the row and log it; returns ``status``.

    A final status also stamps ``finished_at``. ``conversation_id`` and ``not_before`` are written
    only when given.
    """
    values: dict = {"status": status, "status_reason": reason[:255]}
    if conversation_id is not None:
        values["conversation_id"] = conversation_id
    if not_before is not None:
        values["not_before"] = not_before
    if status in InboundMessage.FINAL_STATUSES:
        values["finished_at"] = timezone.now()
    InboundMessage.objects.filter(id=inbound.id).update(**values)
    for key, value in values.items():
        setattr(inbound, key, value)
    level = logging.WARNING if status in _WARN_STATUSES else logging.INFO
    logger.log(level, f"messenger.pipeline.{status.replace('_', '-')}", extra=inbound.log_fields(reason=reason))
    return status


def inbound_park(*, inbound: InboundMessage, not_before: datetime, reason: str) -> str:
    """Defer the message until ``not_before`` (its job is scheduled again by the caller)."""
    return inbound_finish(inbound=inbound, status=Status.DEFERRED, reason=reason, not_before=not_before)


def outbound_part_create_many(
    *, inbound: InboundMessage, bodies: list[dict], intent: str, confidence: float | None
) -> list[OutboundPart]:
    """Record the reply's parts before any is sent, with the reply's intent and confidence on the row.

    One transaction: a message has either all its parts and the reply that made them, or neither. A
    re-run then sends these same parts instead of asking the engine again. The row's
    ``conversation_id`` (set in memory by the caller) is stored with them.
    """
    with transaction.atomic():
        parts = OutboundPart.objects.bulk_create(
            [OutboundPart(inbound=inbound, position=i, body=body) for i, body in enumerate(bodies)]
        )
        InboundMessage.objects.filter(id=inbound.id).update(
            intent=intent[:64], confidence=confidence, conversation_id=inbound.conversation_id
        )
    inbound.intent, inbound.confidence = intent[:64], confidence
    return parts


def outbound_part_mark_sent(*, part: OutboundPart, message_id: str) -> None:
    """The part went out as Facebook's ``message_id``: it is never sent again."""
    OutboundPart.objects.filter(id=part.id).update(
        status=OutboundPart.Status.SENT,
        fb_message_id=message_id[:255],
        sent_at=timezone.now(),
        error_kind="",
        error_code=None,
    )


def outbound_part_record_error(*, part: OutboundPart, error_kind: str, error_code: int | None) -> None:
    """The last send of the part failed this way; it stays pending (to be tried again) unless marked failed."""
    OutboundPart.objects.filter(id=part.id).update(error_kind=error_kind, error_code=error_code)


def outbound_part_mark_failed(*, part: OutboundPart) -> None:
    """The part will never be sent (Facebook refused it for good)."""
    OutboundPart.objects.filter(id=part.id).update(status=OutboundPart.Status.FAILED)
