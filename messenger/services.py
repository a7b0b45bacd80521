"""Every write to an inbound message or its outbound parts while it is answered, one named service each.

The pipeline (``messenger.pipeline``, ``messenger.delivery``) never writes a row itself: it calls
these. Each updates the database and the in-memory instance the pipeline holds, so the caller keeps
working on what the row says. ``inbound_finish`` (and ``inbound_park``, through it) is the one place
a row's status changes after processing starts, and logs the outcome.

Writes after the claim are fenced: an ``UPDATE`` of the named columns by id *and* the fence the claim
set (``inbound_start``), never a ``save()`` of the whole instance. A worker whose claim was taken over
(its lease lapsed: Redis restarted, the process paused) writes nothing and gets :data:`LEASE_LOST`, so
it can neither overwrite the new holder's outcome nor record a second set of parts. Rows
are created by the inbox (``messenger.inbox``), which also owns the writes of queueing them.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from django.db import connection, models, transaction
from django.utils import timezone

from messenger.models import InboundMessage, OutboundPart

# The outcome lines keep the pipeline's names (``messenger.pipeline.answered``, ``...deferred``...):
# dashboards and bench/soak.py count them.
logger = logging.getLogger("messenger.pipeline")

Status = InboundMessage.Status
# Returned instead of a status when the row no longer carries this worker's fence.
LEASE_LOST = "lease-lost"
_WARN_STATUSES = (Status.FAILED, Status.DEFERRED, Status.EXPIRED, Status.UNKNOWN_PAGE)


def inbound_start(*, inbound: InboundMessage, worker_name: str) -> bool:
    """Claim the message for ``worker_name``: one more attempt, no longer parked, a new fence.

    A conditional UPDATE that succeeds for one claimant only: it takes the row only if it is still
    open and still carries the fence this worker read, and bumps the fence. Returns ``False`` when
    another worker claimed it (or it became final) meanwhile. The new fence is kept on ``inbound``:
    every part this worker sends is conditional on the row still carrying it
    (:func:`outbound_part_begin_send`).
    """
    read_fence = inbound.fence
    updated = (
        InboundMessage.objects.filter(id=inbound.id, fence=read_fence)
        .exclude(status__in=InboundMessage.FINAL_STATUSES)
        .update(
            status=Status.PROCESSING,
            worker_name=worker_name[:255],
            processing_started_at=timezone.now(),
            attempts=models.F("attempts") + 1,
            not_before=None,
            fence=read_fence + 1,
        )
    )
    if not updated:
        return False
    inbound.attempts += 1
    inbound.fence = read_fence + 1
    inbound.status = Status.PROCESSING
    return True


def inbound_finish(
    *,
    inbound: InboundMessage,
    status: str,
    reason: str = "",
    conversation_id: int | None = None,
    not_before: datetime | None = None,
) -> str:
    """Record the outcome on the row and log it; returns ``status`` (:data:`LEASE_LOST` when fenced off).

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
    if not InboundMessage.objects.filter(id=inbound.id, fence=inbound.fence).update(**values):
        logger.warning("messenger.pipeline.fenced-off", extra=inbound.log_fields(outcome=status))
        return LEASE_LOST
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
) -> list[OutboundPart] | None:
    """Record the reply's parts before any is sent, with the reply's intent and confidence on the row;
    ``None`` (nothing written) when the row no longer carries this worker's fence.

    One transaction: a message has either all its parts and the reply that made them, or neither. A
    re-run then sends these same parts instead of asking the engine again. The row's
    ``conversation_id`` (set in memory by the caller) is stored with them.
    """
    with transaction.atomic():
        # The fenced UPDATE first: it fails for a worker whose claim was taken over, and its row lock
        # makes a concurrent claim wait until these parts are committed (and then send them).
        if not InboundMessage.objects.filter(id=inbound.id, fence=inbound.fence).update(
            intent=intent[:64], confidence=confidence, conversation_id=inbound.conversation_id
        ):
            logger.warning("messenger.pipeline.fenced-off", extra=inbound.log_fields(outcome="parts"))
            return None
        parts = OutboundPart.objects.bulk_create(
            [
                OutboundPart(inbound=inbound, position=i, body=body, token=part_token_new())
                for i, body in enumerate(bodies)
            ]
        )
    inbound.intent, inbound.confidence = intent[:64], confidence
    return parts


# Every part token starts so: an echo whose metadata does not is not ours (``messenger.echoes``).
TOKEN_PREFIX = "cb1."


def part_token_new() -> str:
    """The token a part carries in the Send API's ``metadata`` (at most 1,000 characters): unguessable,
    so an echo of another app's message can't settle one of ours."""
    return f"{TOKEN_PREFIX}{secrets.token_hex(12)}"


# The tables are the models' default ``messenger_<model>`` (tests/messenger/test_services.py checks).
_BEGIN_SEND_SQL = """
UPDATE messenger_outboundpart AS part
   SET status = %s, send_started_at = %s, attempts = part.attempts + 1, token = %s
 WHERE part.id = %s AND part.status = %s
   AND EXISTS (SELECT 1 FROM messenger_inboundmessage AS inbound
                WHERE inbound.id = part.inbound_id AND inbound.fence = %s)
"""


def outbound_part_begin_send(*, part: OutboundPart, fence: int) -> bool:
    """Move the part ``pending -> sending`` before its Send API call; ``False`` means don't send.

    One conditional UPDATE: it succeeds only while the part is pending and its message still carries
    ``fence`` (no other worker claimed it since), so two workers can never both send one part. From
    here until it is settled the part is *in doubt* should this worker vanish.
    """
    if not part.token:
        part.token = part_token_new()
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _BEGIN_SEND_SQL,
            [OutboundPart.Status.SENDING, now, part.token, part.id, OutboundPart.Status.PENDING, fence],
        )
        began = cursor.rowcount == 1
    if began:
        part.status, part.send_started_at, part.attempts = OutboundPart.Status.SENDING, now, part.attempts + 1
    return began


def outbound_part_mark_sent(*, part: OutboundPart, message_id: str) -> bool:
    """The part went out as Facebook's ``message_id``: it is never sent again.

    Conditional on the part not being sent already (its echo may have settled it first); returns
    whether this call settled it, so exactly one settler writes its transcript line.
    """
    updated = (
        OutboundPart.objects.filter(id=part.id)
        .exclude(status=OutboundPart.Status.SENT)
        .update(
            status=OutboundPart.Status.SENT,
            fb_message_id=message_id[:255],
            sent_at=timezone.now(),
            error_kind="",
            error_code=None,
        )
    )
    part.status = OutboundPart.Status.SENT
    return bool(updated)


def outbound_part_mark_pending(*, part: OutboundPart) -> bool:
    """Put the part back to pending: its send surely did not go out, or the echo wait ran out."""
    rows = OutboundPart.objects.filter(id=part.id, status=OutboundPart.Status.SENDING)
    updated = rows.update(status=OutboundPart.Status.PENDING)
    if updated:
        part.status = OutboundPart.Status.PENDING
    return bool(updated)


def outbound_part_uncount_attempt(*, part: OutboundPart) -> None:
    """The last send met a page-wide failure (circuit open, token failing, Facebook down): it is not
    one of the message's own attempts, so an outage never uses up the give-up bound of a message."""
    OutboundPart.objects.filter(id=part.id, attempts__gt=0).update(attempts=models.F("attempts") - 1)
    part.attempts = max(0, part.attempts - 1)


def outbound_part_record_error(
    *, part: OutboundPart, error_kind: str, error_code: int | None, fbtrace_id: str = ""
) -> None:
    """The last send of the part failed this way; it stays pending (to be tried again) unless marked failed.

    ``fbtrace_id`` is Facebook's trace id of that answer: the transcript shows it, so staff can quote
    it to Meta without searching the logs.
    """
    OutboundPart.objects.filter(id=part.id).update(
        error_kind=error_kind, error_code=error_code, fbtrace_id=(fbtrace_id or "")[:64]
    )
    part.fbtrace_id = (fbtrace_id or "")[:64]


def outbound_part_mark_failed(*, part: OutboundPart, fence: int) -> bool:
    """The part will never be sent (Facebook refused it for good, or staff took the conversation).

    Only while the message carries ``fence``: a worker overtaken mid-send leaves the part to the new
    holder. Returns whether the part was marked.
    """
    updated = (
        OutboundPart.objects.filter(id=part.id, inbound__fence=fence)
        .exclude(status=OutboundPart.Status.SENT)
        .update(status=OutboundPart.Status.FAILED)
    )
    if updated:
        part.status = OutboundPart.Status.FAILED
    return bool(updated)
