"""The life of one inbound message, from the kept row to a reply in the user's Messenger.

``sender_drain`` is what the rq job calls. It takes the sender's lock (``messenger.ordering``) and
answers that sender's open messages one after another in timestamp order, so a burst from one user
is answered in order across any number of workers; one message that fails is recorded and the next
goes on. ``inbound_process`` answers one message:

1. skip it if already final; keep it unanswered as ``unknown_page`` if no token serves its page
   (``messenger.pages``); expire it if its reply would fall outside Facebook's 24-hour window;
2. load the conversation context by PSID and store the inbound message (``messenger.replies``);
   (still recorded in the transcript, the conversation waiting for a person: ``messenger.people``);
3. stop there if a human has the conversation or the bot is paused (``conversations.people``);
4. ``mark_seen`` + ``typing_on`` only if the reply is not ready within ``MESSENGER_TYPING_DELAY_MS``
   (``messenger.sender_actions``: none at all for the rules engine);
5. decide the reply: attachments by ``messenger.attachments``, everything else by the chat engine,
   within ``MESSENGER_PROCESSING_TIMEOUT_MS`` (past it: a fallback reply, the late answer dropped);
6. format it for Messenger (``messenger.formatter``) and record the parts (``OutboundPart``) before
   sending, so a re-run re-sends the same parts rather than asking the engine again;
7. send each part not yet sent, recording each as it goes (``messenger.delivery``): a message put
   back midway sends only what is missing, one whose reply went out is never answered again, a part
   in doubt waits for its echo; nothing is sent once this worker can't prove it holds the sender;
8. on a page-wide failure park the message (``deferred``) and schedule its job again; on a failure of
   the message's own, retry it a bounded number of times, then record why and go on (``messenger.delivery``).

Claims are fenced: ``inbound_start`` takes the row in a conditional UPDATE that bumps its fence, and
every part is sent only while the row carries that fence. A drain that loses its lease stops before
its next send and puts the message back (conditional on its fence, so it never disturbs a worker
that claimed it since). A passing infrastructure error (PostgreSQL, Redis) puts the message back
with a delay instead of failing it; rq's ``JobTimeoutException`` and ``StopRequested`` propagate.
9. when the user asked for a person, the reply is the handover notice and, once it is sent, the
    thread goes to a person (``messenger.handover``).

Rows are written only through ``messenger.services`` and read through ``messenger.selectors``. Every
exit leaves the row's ``status``/``status_reason`` saying what happened; every step logs as
``messenger.pipeline.*`` (one log name for the whole life of a message, whichever module takes the
step) with the message id and hashed PSID, and sends its signal (``observability.signals``).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db import InterfaceError, OperationalError
from django.utils import timezone
from redis.exceptions import RedisError
from rq.exceptions import StopRequested
from rq.timeouts import JobTimeoutException

from conversations.models import Conversation
from conversations.people import conversation_bot_silenced
from messenger import handover, people, replies
from messenger.delivery import jittered_ms, parts_send, window_closed
from messenger.formatter import format_reply
from messenger.inbox import inbox_requeue_one, inbox_schedule_retry
from messenger.models import InboundMessage, OutboundPart
from messenger.ordering import SenderLock, drains_winding_down
from messenger.pages import page_served
from messenger.queues import channel_redis
from messenger.selectors import inbound_get, inbound_next_for_sender, inbound_parts
from messenger.services import (
    LEASE_LOST,
    inbound_finish,
    inbound_park,
    inbound_start,
    outbound_part_create_many,
)
from observability import signals
from observability.hashing import hash_psid
from observability.logging import log_context
from observability.services import events_buffered

logger = logging.getLogger("messenger.pipeline")

Status = InboundMessage.Status
# A drain hands the rest of the sender's messages to a fresh job after this share of its job timeout.
DRAIN_BUDGET_S = 60.0
# A message met by a passing database or Redis error is tried again this much later (plus jitter).
INFRA_RETRY_MS = 5_000
# A conversation read this recently (before the engine answered) is not read again before the send:
# a person taking it over in that window is seen at the next message. Slower replies read it again.
CONVERSATION_FRESH_S = 0.25
# Errors that say the infrastructure is failing for a moment, not the message.
_INFRA_ERRORS = (OperationalError, InterfaceError, RedisError)


# --- the job entry point: one sender's messages, in order -------------------------------------------


def sender_drain(*, inbound_id: int, worker_name: str = "") -> str:
    """Answer ``inbound_id`` and every earlier-or-later open message of its sender, in order.

    Returns what happened to ``inbound_id`` (its final or parked status), or ``"left-to-holder"``
    when another worker holds the sender and will answer it.
    """
    inbound = inbound_get(inbound_id=inbound_id)
    if inbound is None:
        logger.error("messenger.pipeline.missing-row", extra={"inbound_id": inbound_id})
        return "missing"
    if inbound.status in InboundMessage.FINAL_STATUSES:
        logger.info("messenger.pipeline.already-final", extra=inbound.log_fields(status=inbound.status))
        return inbound.status

    started = time.monotonic()
    processed = 0
    answered: dict[int, str] = {}  # what this drain did to each message: no query to say it at the end
    while True:
        lock = SenderLock(channel_redis(), page_id=inbound.page_id, psid=inbound.psid, owner=worker_name)
        if not lock.acquire():
            # The holder answers every open message of this sender, this one included, and looks
            # again after releasing its lock, so nothing is stranded by leaving here.
            logger.info("messenger.pipeline.left-to-holder", extra=inbound.log_fields())
            return "left-to-holder"
        hand_on = cut_off = None
        try:
            while lock.held():
                current = inbound_next_for_sender(inbound=inbound)
                if not isinstance(current, InboundMessage):
                    break
                # A long drain must not outlive its job; a stopping worker finishes only what it holds.
                if time.monotonic() - started > DRAIN_BUDGET_S or (processed and drains_winding_down()):
                    hand_on = current
                    break
                processed += 1
                lock.set_inflight(current.id)
                if inbound_process(inbound=current, worker_name=worker_name, lease_held=lock.held) == LEASE_LOST:
                    cut_off = current
                    break
                answered[current.id] = current.status
                # The in-flight key stays until the next message replaces it or the release drops it,
                # in the same round trip: the message is no longer open, so the sweep ignores it.
        finally:
            lock.release()
        # Handed on only once the lock is free, so the new job can take the sender at once.
        if hand_on is not None:
            _hand_on(hand_on)
            return _status_of(inbound, answered)
        if cut_off is not None:
            _put_back(cut_off)
            return _status_of(inbound, answered)
        # A message may have arrived between our last look and the release: look once more.
        if lock.lost or not isinstance(inbound_next_for_sender(inbound=inbound), InboundMessage):
            break
    return _status_of(inbound, answered)


def _put_back(inbound: InboundMessage) -> None:
    """This worker lost the sender midway: queue the message afresh unless another worker claimed it."""
    inbox_requeue_one(inbound=inbound, fence=inbound.fence)
    logger.warning("messenger.pipeline.put-back-lease-lost", extra=inbound.log_fields())


def _status_of(inbound: InboundMessage, answered: dict[int, str]) -> str:
    """The status this drain left ``inbound`` in, or (when another worker had it) the row's."""
    if inbound.id in answered:
        return answered[inbound.id]
    inbound.refresh_from_db(fields=["status"])
    return inbound.status


def _hand_on(nxt: InboundMessage) -> None:
    """Queue the sender's next message afresh: a long drain must not outlive its job timeout."""
    inbox_requeue_one(inbound=nxt, fence=nxt.fence)  # unless another worker claimed it since
    logger.info("messenger.pipeline.drain-handed-on", extra=nxt.log_fields())


# --- one message -----------------------------------------------------------------------------------


def inbound_process(*, inbound: InboundMessage, worker_name: str = "", lease_held=None) -> str:
    """Answer one inbound message; see the module docstring. The row says what happened.

    Raises only rq's ``JobTimeoutException`` and ``StopRequested`` (the worker's to handle: the row
    stays ``processing`` and is put back). A passing infrastructure error parks the message for
    :data:`INFRA_RETRY_MS`; any other exception fails it. Returns ``LEASE_LOST`` (not a status)
    when this worker may no longer send for the sender.
    """
    # The message's events are written together when it ends (``observability.services``).
    with events_buffered():
        return _process_logged(inbound, worker_name, lease_held)


def _process_logged(inbound: InboundMessage, worker_name: str, lease_held) -> str:
    try:
        with log_context(mid=inbound.mid, psid_hash=hash_psid(inbound.psid)):
            return _process(inbound, worker_name, lease_held)
    except (JobTimeoutException, StopRequested):
        raise
    except _INFRA_ERRORS as exc:
        logger.warning("messenger.pipeline.infrastructure-error", extra=inbound.log_fields(error=type(exc).__name__))
        return _park_for_infrastructure(inbound, exc)
    except Exception as exc:
        logger.exception("messenger.pipeline.crashed", extra=inbound.log_fields(error=type(exc).__name__))
        return inbound_finish(inbound=inbound, status=Status.FAILED, reason=f"error: {type(exc).__name__}")


def _park_for_infrastructure(inbound: InboundMessage, exc: Exception) -> str:
    """Put the message back for a later try; if even that fails, the row stays open for the sweep."""
    delay_ms = jittered_ms(INFRA_RETRY_MS)
    reason = f"infrastructure error, retried: {type(exc).__name__}"
    try:
        status = inbound_park(
            inbound=inbound, not_before=timezone.now() + timedelta(milliseconds=delay_ms), reason=reason
        )
        if status != LEASE_LOST:
            inbox_schedule_retry(inbound=inbound, delay_ms=delay_ms)
        return status
    except Exception as again:  # noqa: BLE001 - the recovery sweep requeues an open row without a job
        logger.error("messenger.pipeline.put-back-failed", extra=inbound.log_fields(error=type(again).__name__))
        return inbound.status


def _process(inbound: InboundMessage, worker_name: str, lease_held=None) -> str:
    step_started = time.perf_counter()
    if not inbound_start(inbound=inbound, worker_name=worker_name):
        logger.warning("messenger.pipeline.claimed-elsewhere", extra=inbound.log_fields())
        return LEASE_LOST
    if not page_served(page_id=inbound.page_id):
        # Decided here, not at ingress: the webhook keeps every event without a query for pages.
        reason = f"no token serves page {inbound.page_id or '(none)'}"
        return inbound_finish(inbound=inbound, status=Status.UNKNOWN_PAGE, reason=reason)
    if window_closed(inbound=inbound):
        reason = "outside the 24-hour messaging window; waiting for a person"
        signals.send_safely(signals.message_expired, sender=inbound_process, inbound=inbound, reason=reason)
        conversation = people.inbound_record_too_late(inbound=inbound)
        return inbound_finish(inbound=inbound, status=Status.EXPIRED, reason=reason, conversation_id=conversation.id)

    # Parts are recorded with the row's conversation, by a claim before this one: a first claim of a
    # row without a conversation has none, and needs no query to know it.
    first_claim = inbound.attempts == 1 and inbound.conversation_id is None
    parts = [] if first_claim else inbound_parts(inbound=inbound)
    conversation = None
    if not parts:
        parts_or_status = _reply_parts(inbound, step_started)
        if isinstance(parts_or_status, str):
            return parts_or_status
        parts, conversation = parts_or_status
    elif inbound.conversation_id is None:
        return inbound_finish(inbound=inbound, status=Status.FAILED, reason="parts without a conversation")
    status = parts_send(inbound=inbound, parts=parts, lease_held=lease_held, conversation=conversation)
    if status == Status.ANSWERED and inbound.intent in handover.HUMAN_INTENTS:
        handover.user_asked_for_person(inbound=inbound)
    return status


def _reply_parts(inbound: InboundMessage, step_started: float) -> tuple[list[OutboundPart], Conversation | None] | str:
    """Steps 2 to 6: the recorded parts of the reply, or the final status when there is none to send.

    With the parts comes the conversation when it was read recently enough to stand for the row
    (:data:`CONVERSATION_FRESH_S`): the send then asks it whether the bot is silenced instead of
    reading it again.
    """
    loaded = replies.reply_context_load(inbound=inbound)
    loaded_at = time.monotonic()
    conversation = loaded.conversation
    # Stored on the row with its next write (the outcome or the parts), not in a query of its own.
    inbound.conversation_id = conversation.id
    silenced = conversation_bot_silenced(conversation=conversation)
    if silenced:
        return inbound_finish(
            inbound=inbound, status=Status.HANDED_OVER, reason=silenced, conversation_id=conversation.id
        )

    with replies.sender_actions(inbound):
        reply = replies.reply_decide(inbound=inbound, context=loaded.context)
    if reply is not None:
        reply = handover.handover_reply(reply)
    if reply is None:
        return inbound_finish(
            inbound=inbound, status=Status.NO_REPLY, reason="nothing to answer", conversation_id=conversation.id
        )

    bodies = format_reply(reply)
    signals.send_safely(
        signals.response_generated,
        sender=inbound_process,
        inbound=inbound,
        intent=reply.intent,
        part_count=len(bodies),
        latency_ms=(time.perf_counter() - step_started) * 1000,
        timed_out=reply.metadata.get("timed_out", False),
    )
    if not bodies:
        return inbound_finish(
            inbound=inbound,
            status=Status.NO_REPLY,
            reason="the reply had nothing to send",
            conversation_id=conversation.id,
        )
    parts = outbound_part_create_many(inbound=inbound, bodies=bodies, intent=reply.intent, confidence=reply.confidence)
    if parts is None:
        return LEASE_LOST  # another worker claimed the message meanwhile: its reply stands
    return parts, (conversation if time.monotonic() - loaded_at < CONVERSATION_FRESH_S else None)
