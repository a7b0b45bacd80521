"""Sending a reply's recorded parts, and what to do when the Send API fails: park, expire or fail.

:func:`parts_send` sends each part not yet sent (``messenger.send_api``) and records each as it goes
(``outbound_part_mark_sent``) with its line in the transcript (``conversations``, the text and
structured record of ``messenger.outbound.part_summary``). A message put back midway therefore
sends only what is missing, and one whose reply went out is never answered again.

The failure policy, by the ``SendResult`` of the part that failed:

- **circuit open** (``deferred``): park the message until the circuit's cooldown has passed;
- **the page's token is failing** (``deferred``, ``token_failing``: ``messenger.token_health``):
  park it until the next recheck; it goes out once a working token is set;
- **the recipient's permanent error**: the part and the message fail, with the reason (a user who
  can't be reached marks the conversation unreachable; Facebook's "outside the window" expires it);
- **transient, rate-limited, auth or unknown** after the client's retries: Facebook or our token is
  failing, not this message: park it for :data:`PARKED_RETRY_MS`;
- anything else (Facebook refused this message): the part and the message fail.

Parking defers the row and schedules its job again (``messenger.inbox.inbox_schedule_retry``); a
park that would end past Facebook's 24-hour messaging window expires the message instead.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from conversations.models import Conversation
from conversations.services import conversation_mark_unreachable, message_append
from messenger import send_api, token_health
from messenger.inbox import inbox_schedule_retry
from messenger.models import InboundMessage, OutboundPart
from messenger.outbound import part_summary
from messenger.send_api import SendErrorKind, SendResult
from messenger.services import (
    inbound_finish,
    inbound_park,
    outbound_part_mark_failed,
    outbound_part_mark_sent,
    outbound_part_record_error,
)
from messenger.window import Author, Refused, send_policy
from observability import signals

# One log name for every step of a message's life (see messenger.pipeline).
logger = logging.getLogger("messenger.pipeline")

Status = InboundMessage.Status
MESSAGING_WINDOW = timedelta(hours=24)
# How long a parked send (transient failure after every retry) waits before its next try.
PARKED_RETRY_MS = 30_000
# Failures that say Facebook or our token is failing, not this message: keep it and try later.
_PARK_KINDS = (SendErrorKind.TRANSIENT, SendErrorKind.RATE_LIMITED, SendErrorKind.AUTH, SendErrorKind.UNKNOWN)


def window_closed(*, inbound: InboundMessage) -> bool:
    """Whether a bot reply now would fall outside Facebook's window (``messenger.window``'s rule)."""
    sent_at = datetime.fromtimestamp(inbound.fb_timestamp / 1000, tz=UTC)
    policy = send_policy(last_user_message_at=sent_at, now=timezone.now(), author=Author.BOT)
    return isinstance(policy, Refused)


def parts_send(*, inbound: InboundMessage, parts: list[OutboundPart]) -> str:
    """Send every part not sent yet, in order; returns the message's status (answered, parked, failed...)."""
    context = inbound.log_fields()
    conversation = Conversation.objects.filter(id=inbound.conversation_id).first()
    send_started = time.perf_counter()
    sent_count = 0
    for part in parts:
        if part.status == OutboundPart.Status.SENT:
            sent_count += 1
            continue
        result = send_api.send_message(
            psid=inbound.psid, message=part.body, log_context=context, page_id=inbound.page_id
        )
        if not result.ok:
            return _send_failed(inbound, part, result, conversation, (time.perf_counter() - send_started) * 1000)
        outbound_part_mark_sent(part=part, message_id=result.message_id)
        sent_count += 1
        if conversation is not None:
            text, structured = part_summary(part.body)
            message_append(
                conversation=conversation,
                direction="out",
                text=text,
                structured=structured,
                fb_message_id=result.message_id or None,
                intent=inbound.intent,
            )

    now_ms = time.time() * 1000
    signals.send_safely(
        signals.response_sent,
        sender=parts_send,
        inbound=inbound,
        part_count=sent_count,
        latency_ms=(time.perf_counter() - send_started) * 1000,
        end_to_end_ms=now_ms - inbound.fb_timestamp,
        since_receipt_ms=now_ms - inbound.received_at.timestamp() * 1000,
    )
    return inbound_finish(inbound=inbound, status=Status.ANSWERED)


def _send_failed(
    inbound: InboundMessage,
    part: OutboundPart,
    result: SendResult,
    conversation: Conversation | None,
    latency_ms: float,
) -> str:
    """Apply the failure policy (module docstring) to the part that failed; returns the message's status."""
    kind = result.error_kind or SendErrorKind.UNKNOWN
    outbound_part_record_error(part=part, error_kind=kind.value, error_code=result.error_code)
    if result.deferred:
        delay = max(result.retry_after_ms or settings.MESSENGER_CIRCUIT_COOLDOWN_MS, 1000)
        token = kind == SendErrorKind.TOKEN_FAILING
        return _park(inbound, delay, token_health.PARK_REASON if token else "the Send API circuit is open")

    signals.send_safely(
        signals.send_failed,
        sender=parts_send,
        inbound=inbound,
        error_kind=kind.value,
        error_code=result.error_code,
        latency_ms=latency_ms,
    )
    if result.permanent_for_recipient:
        outbound_part_mark_failed(part=part)
        if kind == SendErrorKind.RECIPIENT_UNAVAILABLE and conversation is not None:
            conversation_mark_unreachable(conversation=conversation)
        if kind == SendErrorKind.OUTSIDE_WINDOW:
            reason = "Facebook: outside the messaging window"
            return inbound_finish(inbound=inbound, status=Status.EXPIRED, reason=reason)
        reason = f"recipient: {kind.value} (code {result.error_code})"
        return inbound_finish(inbound=inbound, status=Status.FAILED, reason=reason)
    if kind in _PARK_KINDS:
        return _park(inbound, PARKED_RETRY_MS, f"send failed after retries: {kind.value}")
    outbound_part_mark_failed(part=part)
    reason = f"Facebook refused the message: {kind.value} (code {result.error_code})"
    return inbound_finish(inbound=inbound, status=Status.FAILED, reason=reason)


def _park(inbound: InboundMessage, delay_ms: int, reason: str) -> str:
    """Defer the message and schedule its job again; past the messaging window it expires instead."""
    not_before = timezone.now() + timedelta(milliseconds=delay_ms)
    window_ends = inbound.fb_timestamp / 1000 + MESSAGING_WINDOW.total_seconds()
    if not_before.timestamp() >= window_ends:
        signals.send_safely(
            signals.send_failed,
            sender=parts_send,
            inbound=inbound,
            error_kind="window_closed",
            error_code=None,
            latency_ms=None,
        )
        signals.send_safely(signals.message_expired, sender=parts_send, inbound=inbound, reason=reason)
        return inbound_finish(
            inbound=inbound, status=Status.EXPIRED, reason=f"gave up: {reason}; the messaging window closes"
        )
    status = inbound_park(inbound=inbound, not_before=not_before, reason=reason)
    signals.send_safely(
        signals.message_deferred, sender=parts_send, inbound=inbound, reason=reason, retry_in_ms=delay_ms
    )
    try:
        inbox_schedule_retry(inbound=inbound, delay_ms=delay_ms)
    except Exception as exc:  # noqa: BLE001 - the recovery sweep requeues a deferred row without a job
        logger.error("messenger.pipeline.schedule-failed", extra=inbound.log_fields(error=type(exc).__name__))
    return status
