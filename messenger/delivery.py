"""Sending a reply's recorded parts exactly once, and what to do when the Send API fails.

:func:`parts_send` sends each part not yet sent (``messenger.send_api``) and records each as it goes
(``outbound_part_mark_sent``) with its line in the transcript (:func:`part_transcribe`: the text and
structured record of ``messenger.outbound.part_summary``). A message put back midway therefore
sends only what is missing, and one whose reply went out is never answered again.

Exactly once, part by part:

- **Fenced.** A part goes ``pending -> sending`` in one conditional UPDATE, only while its message
  still carries this worker's fence (``messenger.services.outbound_part_begin_send``), and only
  while this worker can prove it still holds the sender's lease (``lease_held``, checked before
  every send): a worker that lost its lease or was overtaken stops before its next send.
- **In doubt, settled by echoes.** Each part carries its token in ``message.metadata``. A send whose
  outcome is unknown (a read timeout, a reset after the request went out, 1/1357046, a worker
  stopped or killed mid-send) leaves the part ``sending``: *in doubt*. Its echo marks it sent
  (``messenger.echoes``). The message is parked (the worker thread is free) until
  ``MESSENGER_ECHO_WAIT_MS`` after the send started; the next run finds the part settled by its
  echo, or re-sends it (at least once: the page does not subscribe to ``message_echoes``, or the
  echo was lost).
- **People first.** A reply not fully sent when staff take the conversation over, another app takes
  the thread or a person answers from elsewhere is not sent further.

The failure policy, by whom the failure concerns (``messenger.graph_errors``):

- **page-wide** (circuit open, transient, rate limit, 368): Facebook is failing, not this message:
  park it (the circuit's cooldown, or :data:`PARKED_RETRY_MS`), with jitter so parked messages don't
  all come back at once. **The page's token is failing** (``token_failing``:
  ``messenger.token_health``): park it until the next recheck; it goes out once a working token is
  set. The sender's later messages wait behind it:
  order is kept and nothing is lost, until Facebook's 24-hour window closes (then: expired).
- **the recipient's permanent error**: the part and the message fail, with the reason (a user who
  can't be reached marks the conversation unreachable; Facebook's "outside the window" expires it);
- **this message's own error that a retry may fix** (code 2 below HTTP 500, an unknown code): retried
  after :data:`MESSAGE_RETRY_DELAYS_MS`, then given up: at most :data:`MESSAGE_MAX_ATTEMPTS` sends
  within about a minute (:data:`MESSAGE_GIVE_UP_BOUND_S`), and the sender's later messages go on;
- anything else (Facebook refused this message: invalid parameter, permission): fails at once.

Parking defers the row and schedules its job again (``messenger.inbox.inbox_schedule_retry``); a
park that would end past Facebook's 24-hour messaging window expires the message instead.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from conversations.models import Conversation
from conversations.people import conversation_bot_silenced, conversation_mark_waiting
from conversations.services import conversation_mark_unreachable, message_append
from messenger import send_api, token_health
from messenger.graph_errors import API_FAILURE_KINDS, MESSAGE_RETRY_KINDS
from messenger.inbox import inbox_schedule_retry
from messenger.models import InboundMessage, OutboundPart
from messenger.ordering import send_on_the_wire
from messenger.outbound import part_summary
from messenger.send_api import SendErrorKind, SendResult
from messenger.services import (
    LEASE_LOST,
    inbound_finish,
    inbound_park,
    outbound_part_begin_send,
    outbound_part_mark_failed,
    outbound_part_mark_pending,
    outbound_part_mark_sent,
    outbound_part_record_error,
    outbound_part_uncount_attempt,
)
from messenger.window import Author, Refused, send_policy
from observability import signals

# One log name for every step of a message's life (see messenger.pipeline).
logger = logging.getLogger("messenger.pipeline")

Status = InboundMessage.Status
MESSAGING_WINDOW = timedelta(hours=24)
# How long a parked send (page-wide failure after every retry) waits before its next try.
PARKED_RETRY_MS = 30_000
# A message's own retryable failure: the waits before its 2nd, 3rd and 4th send, then it gives up.
MESSAGE_RETRY_DELAYS_MS = (5_000, 15_000, 30_000)
MESSAGE_MAX_ATTEMPTS = len(MESSAGE_RETRY_DELAYS_MS) + 1
# Parked retries come back up to this share of their delay later, at random (at least 1 s of spread).
JITTER_SHARE = 0.2
# The bound on giving up for a reason of the message's own: the waits, their jitter, and the sends.
MESSAGE_GIVE_UP_BOUND_S = int(sum(MESSAGE_RETRY_DELAYS_MS) * (1 + JITTER_SHARE) / 1000)
# :data:`LEASE_LOST` (``messenger.services``) is what :func:`parts_send` returns when this worker may
# no longer send (lease lost, claim overtaken): not a row status; the row is left to the worker that
# holds the sender now, or to the sweep.


def jittered_ms(delay_ms: int) -> int:
    """``delay_ms`` plus a random spread, so messages parked together don't all retry at once."""
    return int(delay_ms + random.uniform(0, max(1000.0, delay_ms * JITTER_SHARE)))


def echo_wait_ms() -> int:
    return max(0, int(settings.MESSENGER_ECHO_WAIT_MS))


def window_closed(*, inbound: InboundMessage) -> bool:
    """Whether a bot reply now would fall outside Facebook's window (``messenger.window``'s rule)."""
    sent_at = datetime.fromtimestamp(inbound.fb_timestamp / 1000, tz=UTC)
    policy = send_policy(last_user_message_at=sent_at, now=timezone.now(), author=Author.BOT)
    return isinstance(policy, Refused)


def parts_send(
    *,
    inbound: InboundMessage,
    parts: list[OutboundPart],
    lease_held: Callable[[], bool] | None = None,
    conversation: Conversation | None = None,
) -> str:
    """Send every part not sent yet, in order; returns the message's status (answered, parked, failed...).

    ``lease_held`` is asked before every send: when it says no, nothing more is sent and
    :data:`LEASE_LOST` is returned with the row untouched. ``conversation``: the message's
    conversation as the caller has just read it (saves reading it again); read here when not given.
    """
    context = inbound.log_fields()
    if conversation is None or conversation.id != inbound.conversation_id:
        conversation = Conversation.objects.filter(id=inbound.conversation_id).first()
    if conversation is not None and conversation_bot_silenced(conversation=conversation):
        return _handed_over(inbound, parts)
    send_started = time.perf_counter()
    sent_count = 0
    for part in parts:
        if part.status == OutboundPart.Status.SENDING and not _in_doubt_settled(part):
            waited_ms = (timezone.now() - part.send_started_at).total_seconds() * 1000
            if waited_ms < echo_wait_ms():
                return _park(
                    inbound,
                    int(echo_wait_ms() - waited_ms) + 1,
                    f"part {part.position} in doubt: waiting for its echo",
                )
            # No echo within the wait: the send most likely never arrived. Send it again (at least once).
            outbound_part_mark_pending(part=part)
            logger.warning("messenger.pipeline.resend-after-echo-wait", extra={**context, "part": part.position})
        if part.status == OutboundPart.Status.SENT:
            sent_count += 1
            continue
        if part.status == OutboundPart.Status.FAILED:
            # Refused for good by an earlier attempt that could not record the outcome (its claim was
            # overtaken meanwhile): the message fails now rather than being put back again and again.
            return _failed(inbound, conversation, f"part {part.position} was refused earlier")
        if lease_held is not None and not lease_held():
            logger.warning("messenger.pipeline.lease-lost", extra={**context, "part": part.position})
            return LEASE_LOST
        if part.status != OutboundPart.Status.PENDING or not outbound_part_begin_send(part=part, fence=inbound.fence):
            logger.warning("messenger.pipeline.fenced-off", extra={**context, "part": part.position})
            return LEASE_LOST
        with send_on_the_wire():  # a stopping worker lets this call and its record land
            result = send_api.send_message(
                psid=inbound.psid, message=part.body, log_context=context, page_id=inbound.page_id, metadata=part.token
            )
            if result.in_doubt:
                outbound_part_record_error(part=part, error_kind="in_doubt", error_code=result.error_code)
                if not _in_doubt_settled(part):
                    return _park(inbound, echo_wait_ms() + 1, f"part {part.position} in doubt: waiting for its echo")
            elif not result.ok:
                outbound_part_mark_pending(part=part)  # surely not delivered
                return _send_failed(inbound, part, result, conversation, (time.perf_counter() - send_started) * 1000)
            elif outbound_part_mark_sent(part=part, message_id=result.message_id):
                part_transcribe(inbound=inbound, part=part, message_id=result.message_id, conversation=conversation)
        sent_count += 1

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


def part_transcribe(
    *, inbound: InboundMessage, part: OutboundPart, message_id: str, conversation: Conversation | None = None
) -> None:
    """The sent part's line in the transcript; written once, by whoever settled the part as sent."""
    if conversation is None:
        conversation = Conversation.objects.filter(id=inbound.conversation_id).first()
    if conversation is None:
        return
    text, structured = part_summary(part.body)
    message_append(
        conversation=conversation,
        direction="out",
        text=text,
        structured=structured,
        fb_message_id=message_id or None,
        intent=inbound.intent,
    )


def _in_doubt_settled(part: OutboundPart) -> bool:
    """Re-read an in-doubt part: its echo may have marked it sent meanwhile."""
    part.refresh_from_db(fields=["status", "fb_message_id", "send_started_at"])
    return part.status == OutboundPart.Status.SENT


def _handed_over(inbound: InboundMessage, parts: list[OutboundPart]) -> str:
    """Staff took the conversation before the reply was sent: what is left of it is never sent."""
    for part in parts:
        if part.status == OutboundPart.Status.PENDING:
            outbound_part_mark_failed(part=part, fence=inbound.fence)
    return inbound_finish(
        inbound=inbound, status=Status.HANDED_OVER, reason="a human took the conversation before the reply went out"
    )


def _send_failed(
    inbound: InboundMessage,
    part: OutboundPart,
    result: SendResult,
    conversation: Conversation | None,
    latency_ms: float,
) -> str:
    """Apply the failure policy (module docstring) to the part that failed; returns the message's status."""
    kind = result.error_kind or SendErrorKind.UNKNOWN
    outbound_part_record_error(
        part=part, error_kind=kind.value, error_code=result.error_code, fbtrace_id=result.fbtrace_id
    )
    if result.deferred or kind in API_FAILURE_KINDS:
        outbound_part_uncount_attempt(part=part)
    if result.deferred:
        delay = max(result.retry_after_ms or settings.MESSENGER_CIRCUIT_COOLDOWN_MS, 1000)
        token = kind == SendErrorKind.TOKEN_FAILING
        reason = token_health.PARK_REASON if token else "the Send API circuit is open"
        return _park(inbound, jittered_ms(delay), reason)

    signals.send_safely(
        signals.send_failed,
        sender=parts_send,
        inbound=inbound,
        error_kind=kind.value,
        error_code=result.error_code,
        latency_ms=latency_ms,
    )
    if result.permanent_for_recipient:
        outbound_part_mark_failed(part=part, fence=inbound.fence)
        if kind == SendErrorKind.RECIPIENT_UNAVAILABLE and conversation is not None:
            conversation_mark_unreachable(conversation=conversation)
        if kind == SendErrorKind.OUTSIDE_WINDOW:
            reason = "Facebook: outside the messaging window"
            return inbound_finish(inbound=inbound, status=Status.EXPIRED, reason=reason)
        reason = f"recipient: {kind.value} (code {result.error_code})"
        return _failed(inbound, conversation, reason)
    if kind in API_FAILURE_KINDS:
        return _park(inbound, jittered_ms(PARKED_RETRY_MS), f"send failed after retries: {kind.value}")
    if kind in MESSAGE_RETRY_KINDS and part.attempts < MESSAGE_MAX_ATTEMPTS:
        delay = MESSAGE_RETRY_DELAYS_MS[max(0, part.attempts - 1)]
        return _park(
            inbound,
            jittered_ms(delay),
            f"send failed: {kind.value} (code {result.error_code}); attempt {part.attempts} of {MESSAGE_MAX_ATTEMPTS}",
        )
    outbound_part_mark_failed(part=part, fence=inbound.fence)
    if kind in MESSAGE_RETRY_KINDS:
        reason = f"gave up after {part.attempts} attempts: {kind.value} (code {result.error_code})"
    else:
        reason = f"Facebook refused the message: {kind.value} (code {result.error_code})"
    return _failed(inbound, conversation, reason)


def _failed(inbound: InboundMessage, conversation: Conversation | None, reason: str) -> str:
    """The reply could not be sent: the message ends ``failed`` and a person is asked to answer instead."""
    if conversation is not None:
        conversation_mark_waiting(conversation=conversation)
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
    if status == LEASE_LOST:
        return status  # another worker holds the message now: its job, not ours, says what comes next
    signals.send_safely(
        signals.message_deferred, sender=parts_send, inbound=inbound, reason=reason, retry_in_ms=delay_ms
    )
    try:
        inbox_schedule_retry(inbound=inbound, delay_ms=delay_ms)
    except Exception as exc:  # noqa: BLE001 - the recovery sweep requeues a deferred row without a job
        logger.error("messenger.pipeline.schedule-failed", extra=inbound.log_fields(error=type(exc).__name__))
    return status
