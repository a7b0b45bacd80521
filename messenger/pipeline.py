"""From a kept inbound message to a reply in the user's Messenger: the heart of the channel.

``sender_drain`` is what the rq job calls. It takes the sender's lock (``messenger.ordering``) and
answers that sender's open messages one after another in timestamp order, so a burst from one user
is answered in order across any number of workers; one message that fails is recorded and the next
goes on. ``inbound_process`` answers one message:

1. skip it if already final; expire it if its reply would fall outside Facebook's 24-hour window;
2. load the conversation context by PSID and store the inbound message (``conversations``);
3. stop there if a human has the conversation;
4. ``mark_seen`` + ``typing_on`` in the background (best effort, never delaying the reply);
5. decide the reply: attachments by ``messenger.attachments``, everything else by the chat engine,
   within ``MESSENGER_PROCESSING_TIMEOUT_MS`` (past it: a fallback reply, the late answer dropped);
6. format it for Messenger (``messenger.formatter``) and record the parts (``OutboundPart``) before
   sending, so a re-run re-sends the same parts rather than asking the engine again;
7. send each part not yet sent (``messenger.send_api``), recording each as it goes: a message put
   back midway sends only what is missing, one whose reply went out is never answered again;
8. on an open circuit or an exhausted transient failure, park the message (``deferred``) and
   schedule its job again; on a recipient's permanent error, record why and stop.

Every exit leaves the row's ``status``/``status_reason`` saying what happened, and every step logs
with the message id and hashed PSID and sends its signal (``observability.signals``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatbot.engine import get_engine
from chatbot.engine.types import ChatContext, Reply
from conversations.models import Conversation
from conversations.services import context_load, conversation_mark_unreachable, message_append
from messenger import send_api, texts
from messenger.attachments import decide_for_attachments
from messenger.formatter import format_reply
from messenger.inbox import inbox_requeue_one, inbox_schedule_retry
from messenger.models import InboundMessage, OutboundPart
from messenger.ordering import SenderLock
from messenger.queues import channel_redis
from messenger.send_api import SendErrorKind, SendResult
from observability import signals
from observability.hashing import hash_psid
from observability.logging import log_context

logger = logging.getLogger("messenger.pipeline")

Status = InboundMessage.Status
MESSAGING_WINDOW = timedelta(hours=24)
# How long a parked send (transient failure after every retry) waits before its next try.
PARKED_RETRY_MS = 30_000
# A drain hands the rest of the sender's messages to a fresh job after this share of its job timeout.
DRAIN_BUDGET_S = 60.0


# --- the job entry point ---------------------------------------------------------------------------


_WAITING = "waiting"


def _next_for_sender(inbound: InboundMessage) -> InboundMessage | str | None:
    """The sender's earliest message that is not final, ``_WAITING`` when that one is parked until
    later (everything behind it waits too, to keep the order), or ``None`` when all are final.

    One query per message answered: this runs once per turn of a drain.
    """
    head = (
        InboundMessage.objects.filter(page_id=inbound.page_id, psid=inbound.psid)
        .exclude(status__in=InboundMessage.FINAL_STATUSES)
        .order_by("fb_timestamp", "id")
        .first()
    )
    if head is None:
        return None
    if head.status == Status.DEFERRED and head.not_before and head.not_before > timezone.now():
        return _WAITING
    return head


def sender_drain(*, inbound_id: int, worker_name: str = "") -> str:
    """Answer ``inbound_id`` and every earlier-or-later open message of its sender, in order.

    Returns what happened to ``inbound_id`` (its final or parked status), or ``"left-to-holder"``
    when another worker holds the sender and will answer it.
    """
    inbound = InboundMessage.objects.filter(id=inbound_id).first()
    if inbound is None:
        logger.error("messenger.pipeline.missing-row", extra={"inbound_id": inbound_id})
        return "missing"
    if inbound.status in InboundMessage.FINAL_STATUSES:
        logger.info("messenger.pipeline.already-final", extra=_log(inbound, status=inbound.status))
        return inbound.status

    started = time.monotonic()
    while True:
        lock = SenderLock(channel_redis(), page_id=inbound.page_id, psid=inbound.psid, owner=worker_name)
        if not lock.acquire():
            # The holder answers every open message of this sender, this one included, and looks
            # again after releasing its lock, so nothing is stranded by leaving here.
            logger.info("messenger.pipeline.left-to-holder", extra=_log(inbound))
            return "left-to-holder"
        try:
            while not lock.lost:
                current = _next_for_sender(inbound)
                if not isinstance(current, InboundMessage):
                    break
                if time.monotonic() - started > DRAIN_BUDGET_S:
                    _hand_on(current)
                    return _status_of(inbound)
                lock.set_inflight(current.id)
                inbound_process(inbound=current, worker_name=worker_name)
                lock.set_inflight(None)
        finally:
            lock.release()
        # A message may have arrived between our last look and the release: look once more.
        if lock.lost or not isinstance(_next_for_sender(inbound), InboundMessage):
            break
    return _status_of(inbound)


def _status_of(inbound: InboundMessage) -> str:
    inbound.refresh_from_db(fields=["status"])
    return inbound.status


def _hand_on(nxt: InboundMessage) -> None:
    """Queue the sender's next message afresh: a long drain must not outlive its job timeout."""
    inbox_requeue_one(inbound=nxt)
    logger.info("messenger.pipeline.drain-handed-on", extra=_log(nxt))


# --- one message -----------------------------------------------------------------------------------


def _log(inbound: InboundMessage, **extra) -> dict:
    return {"mid": inbound.mid, "psid_hash": hash_psid(inbound.psid), "inbound_id": inbound.id, **extra}


def _finish(inbound: InboundMessage, status: str, reason: str = "", **fields) -> str:
    """Record the outcome on the row (the one place a row's status changes after processing starts)."""
    now = timezone.now()
    values = {"status": status, "status_reason": reason[:255], **fields}
    if status in InboundMessage.FINAL_STATUSES:
        values["finished_at"] = now
    InboundMessage.objects.filter(id=inbound.id).update(**values)
    for key, value in values.items():
        setattr(inbound, key, value)
    level = logging.WARNING if status in (Status.FAILED, Status.DEFERRED, Status.EXPIRED) else logging.INFO
    logger.log(level, f"messenger.pipeline.{status.replace('_', '-')}", extra=_log(inbound, reason=reason))
    return status


def inbound_process(*, inbound: InboundMessage, worker_name: str = "") -> str:
    """Answer one inbound message; see the module docstring. Never raises: the row says what happened."""
    try:
        with log_context(mid=inbound.mid, psid_hash=hash_psid(inbound.psid)):
            return _process(inbound, worker_name)
    except Exception as exc:
        logger.exception("messenger.pipeline.crashed", extra=_log(inbound, error=type(exc).__name__))
        return _finish(inbound, Status.FAILED, f"error: {type(exc).__name__}")


def _process(inbound: InboundMessage, worker_name: str) -> str:
    step_started = time.perf_counter()
    inbound.attempts += 1
    InboundMessage.objects.filter(id=inbound.id).update(
        status=Status.PROCESSING,
        worker_name=worker_name[:255],
        processing_started_at=timezone.now(),
        attempts=inbound.attempts,
        not_before=None,
    )
    if _window_closed(inbound):
        signals.send_safely(
            signals.message_expired,
            sender=inbound_process,
            inbound=inbound,
            reason="outside the 24-hour messaging window",
        )
        return _finish(inbound, Status.EXPIRED, "outside the 24-hour messaging window")

    parts = list(inbound.parts.order_by("position"))
    if not parts:
        parts_or_status = _generate(inbound, step_started)
        if isinstance(parts_or_status, str):
            return parts_or_status
        parts = parts_or_status
    elif inbound.conversation_id is None:
        return _finish(inbound, Status.FAILED, "parts without a conversation")
    return _send_parts(inbound, parts)


def _window_closed(inbound: InboundMessage) -> bool:
    sent_at = inbound.fb_timestamp / 1000
    return time.time() - sent_at > MESSAGING_WINDOW.total_seconds()


def _generate(inbound: InboundMessage, step_started: float) -> list[OutboundPart] | str:
    """Load the context, ask for a reply, record its parts. Returns the parts or a final status."""
    structured = {"payload": inbound.payload, "title": inbound.title or inbound.text} if inbound.payload else None
    loaded = context_load(
        page_id=inbound.page_id,
        psid=inbound.psid,
        text=inbound.text or inbound.title,
        payload=inbound.payload,
        fb_message_id=inbound.mid,
        attachments=inbound.attachments or None,
        structured=structured,
    )
    conversation = loaded.conversation
    # Stored on the row with its next write (the outcome or the parts), not in a query of its own.
    inbound.conversation_id = conversation.id
    if conversation.status == Conversation.Status.HANDED_OVER:
        return _finish(inbound, Status.HANDED_OVER, "a human has this conversation", conversation_id=conversation.id)

    typing = _Typing(inbound)
    typing.start()
    try:
        reply = _decide_reply(inbound, loaded.context)
    finally:
        typing.replied()
    if reply is None:
        return _finish(inbound, Status.NO_REPLY, "nothing to answer", conversation_id=conversation.id)

    messages = format_reply(reply)
    generated_ms = (time.perf_counter() - step_started) * 1000
    signals.send_safely(
        signals.response_generated,
        sender=inbound_process,
        inbound=inbound,
        intent=reply.intent,
        part_count=len(messages),
        latency_ms=generated_ms,
        timed_out=reply.metadata.get("timed_out", False),
    )
    if not messages:
        return _finish(inbound, Status.NO_REPLY, "the reply had nothing to send", conversation_id=conversation.id)
    with transaction.atomic():
        parts = OutboundPart.objects.bulk_create(
            [OutboundPart(inbound=inbound, position=i, body=body) for i, body in enumerate(messages)]
        )
        InboundMessage.objects.filter(id=inbound.id).update(
            intent=reply.intent[:64], confidence=reply.confidence, conversation_id=conversation.id
        )
    inbound.intent, inbound.confidence = reply.intent[:64], reply.confidence
    return parts


def _decide_reply(inbound: InboundMessage, context: ChatContext) -> Reply | None:
    """The reply to send, or ``None`` when the message needs none (a location, say)."""
    started = time.perf_counter()
    if inbound.attachments:
        decision = decide_for_attachments(attachments=inbound.attachments, text=inbound.text)
        if decision.action == "ignore":
            _classified(inbound, "attachment_ignored", 1.0, started)
            return None
        if decision.action == "reply" and decision.reply is not None:
            _classified(inbound, decision.reply.intent, decision.reply.confidence, started)
            return decision.reply
        context = ChatContext(
            psid_hash=context.psid_hash,
            conversation_id=context.conversation_id,
            text=decision.engine_text,
            history=context.history,
            payload=context.payload,
            is_new_conversation=context.is_new_conversation,
            locale=context.locale,
        )
    reply = _engine_reply(inbound, context)
    _classified(inbound, reply.intent, reply.confidence, started)
    return reply


def _classified(inbound: InboundMessage, intent: str, confidence: float, started: float) -> None:
    signals.send_safely(
        signals.intent_classified,
        sender=inbound_process,
        inbound=inbound,
        intent=intent,
        confidence=confidence,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_executor_lock = threading.Lock()


def _engine_pool() -> ThreadPoolExecutor:
    """A per-process pool (rq forks a work horse per job; a pool made before the fork is unusable)."""
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chat-engine")
            _executor_pid = os.getpid()
        return _executor


def _engine_reply(inbound: InboundMessage, context: ChatContext) -> Reply:
    """Ask the engine within the processing budget; past it, the fallback reply (the late one is dropped)."""
    budget_s = settings.MESSENGER_PROCESSING_TIMEOUT_MS / 1000
    engine = get_engine()
    future = _engine_pool().submit(_call_engine, engine, context, budget_s)
    try:
        return future.result(timeout=budget_s)
    except FutureTimeout:
        future.cancel()
        logger.warning("messenger.pipeline.processing-timeout", extra=_log(inbound, budget_ms=budget_s * 1000))
        return Reply(
            text=texts.PROCESSING_TIMEOUT,
            intent="timeout",
            confidence=0.0,
            fallback=True,
            metadata={"timed_out": True},
        )
    except Exception as exc:
        logger.exception("messenger.pipeline.engine-error", extra=_log(inbound, error=type(exc).__name__))
        return Reply(text=texts.SEND_FALLBACK_ERROR, intent="fallback", confidence=0.0, fallback=True)


def _call_engine(engine, context: ChatContext, budget_s: float) -> Reply:
    from django.db import close_old_connections

    try:
        return engine.reply(context, timeout_s=budget_s)
    finally:
        # The engine thread may have touched the ORM; don't leave its connection open in the pool thread.
        close_old_connections()


class _Typing:
    """``mark_seen`` then ``typing_on`` in a background thread, skipped once the reply is on its way."""

    def __init__(self, inbound: InboundMessage) -> None:
        self.inbound = inbound
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sender-actions", daemon=True)

    def start(self) -> None:
        if self.inbound.attempts <= 1:
            self._thread.start()

    def replied(self) -> None:
        self._done.set()

    def _run(self) -> None:
        context = _log(self.inbound)
        for action in ("mark_seen", "typing_on"):
            if self._done.is_set():
                return
            result = send_api.send_sender_action(psid=self.inbound.psid, action=action, log_context=context)
            if not result.ok:
                return


# --- sending ---------------------------------------------------------------------------------------


def _summary(body: dict) -> tuple[str, dict]:
    """The transcript text and structured record of one Send API message body."""
    structured: dict = {}
    if body.get("quick_replies"):
        structured["quick_replies"] = body["quick_replies"]
    attachment = body.get("attachment") or {}
    payload = attachment.get("payload") or {}
    if payload.get("template_type") == "button":
        structured["buttons"] = payload.get("buttons", [])
        return payload.get("text", ""), structured
    if payload.get("template_type") == "generic":
        structured["cards"] = payload.get("elements", [])
        return "", structured
    return body.get("text", ""), structured


def _send_parts(inbound: InboundMessage, parts: list[OutboundPart]) -> str:
    context = _log(inbound)
    conversation = Conversation.objects.filter(id=inbound.conversation_id).first()
    send_started = time.perf_counter()
    sent_count = 0
    for part in parts:
        if part.status == OutboundPart.Status.SENT:
            sent_count += 1
            continue
        result = send_api.send_message(psid=inbound.psid, message=part.body, log_context=context)
        if result.ok:
            now = timezone.now()
            OutboundPart.objects.filter(id=part.id).update(
                status=OutboundPart.Status.SENT,
                fb_message_id=result.message_id[:255],
                sent_at=now,
                error_kind="",
                error_code=None,
            )
            sent_count += 1
            if conversation is not None:
                text, structured = _summary(part.body)
                message_append(
                    conversation=conversation,
                    direction="out",
                    text=text,
                    structured=structured,
                    fb_message_id=result.message_id or None,
                    intent=inbound.intent,
                )
            continue
        return _send_failed(inbound, part, result, conversation, (time.perf_counter() - send_started) * 1000)

    now_ms = time.time() * 1000
    signals.send_safely(
        signals.response_sent,
        sender=inbound_process,
        inbound=inbound,
        part_count=sent_count,
        latency_ms=(time.perf_counter() - send_started) * 1000,
        end_to_end_ms=now_ms - inbound.fb_timestamp,
        since_receipt_ms=now_ms - inbound.received_at.timestamp() * 1000,
    )
    return _finish(inbound, Status.ANSWERED, "")


def _send_failed(
    inbound: InboundMessage,
    part: OutboundPart,
    result: SendResult,
    conversation: Conversation | None,
    latency_ms: float,
) -> str:
    kind = result.error_kind or SendErrorKind.UNKNOWN
    OutboundPart.objects.filter(id=part.id).update(error_kind=kind.value, error_code=result.error_code)
    if result.deferred:
        delay = max(result.retry_after_ms or settings.MESSENGER_CIRCUIT_COOLDOWN_MS, 1000)
        return _park(inbound, delay, "the Send API circuit is open")

    signals.send_safely(
        signals.send_failed,
        sender=inbound_process,
        inbound=inbound,
        error_kind=kind.value,
        error_code=result.error_code,
        latency_ms=latency_ms,
    )
    if result.permanent_for_recipient:
        OutboundPart.objects.filter(id=part.id).update(status=OutboundPart.Status.FAILED)
        if kind == SendErrorKind.RECIPIENT_UNAVAILABLE and conversation is not None:
            conversation_mark_unreachable(conversation=conversation)
        if kind == SendErrorKind.OUTSIDE_WINDOW:
            return _finish(inbound, Status.EXPIRED, "Facebook: outside the messaging window")
        return _finish(inbound, Status.FAILED, f"recipient: {kind.value} (code {result.error_code})")
    if kind in (
        SendErrorKind.TRANSIENT,
        SendErrorKind.RATE_LIMITED,
        SendErrorKind.AUTH,
        SendErrorKind.UNKNOWN,
    ):
        # Facebook or our token is failing, not this message: keep it and try again later.
        return _park(inbound, PARKED_RETRY_MS, f"send failed after retries: {kind.value}")
    OutboundPart.objects.filter(id=part.id).update(status=OutboundPart.Status.FAILED)
    return _finish(inbound, Status.FAILED, f"Facebook refused the message: {kind.value} (code {result.error_code})")


def _park(inbound: InboundMessage, delay_ms: int, reason: str) -> str:
    """Defer the message and schedule its job again; past the messaging window it expires instead."""
    not_before = timezone.now() + timedelta(milliseconds=delay_ms)
    window_ends = inbound.fb_timestamp / 1000 + MESSAGING_WINDOW.total_seconds()
    if not_before.timestamp() >= window_ends:
        signals.send_safely(
            signals.send_failed,
            sender=inbound_process,
            inbound=inbound,
            error_kind="window_closed",
            error_code=None,
            latency_ms=None,
        )
        signals.send_safely(signals.message_expired, sender=inbound_process, inbound=inbound, reason=reason)
        return _finish(inbound, Status.EXPIRED, f"gave up: {reason}; the messaging window closes")
    status = _finish(inbound, Status.DEFERRED, reason, not_before=not_before)
    signals.send_safely(
        signals.message_deferred, sender=inbound_process, inbound=inbound, reason=reason, retry_in_ms=delay_ms
    )
    try:
        inbox_schedule_retry(inbound=inbound, delay_ms=delay_ms)
    except Exception as exc:  # noqa: BLE001 - the recovery sweep requeues a deferred row without a job
        logger.error("messenger.pipeline.schedule-failed", extra=_log(inbound, error=type(exc).__name__))
    return status
