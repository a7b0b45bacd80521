"""Deciding the reply to one inbound message: its context, the attachments rule, the chat engine.

- :func:`reply_context_load` loads the conversation by PSID and stores the inbound message in its
  transcript (``conversations``), giving the engine's context.
- :func:`reply_decide` answers attachments by ``messenger.attachments`` and everything else by the
  chat engine, within ``MESSENGER_PROCESSING_TIMEOUT_MS``: past it the user gets the "taking longer"
  fallback and the late answer is dropped; an engine error gives the error fallback. ``None`` means
  the message needs no reply (a location, say). Sends ``intent_classified``.
- :func:`sender_actions` (``messenger.sender_actions``) shows the user ``mark_seen`` then
  ``typing_on`` only when the reply is not ready within ``MESSENGER_TYPING_DELAY_MS``.

The engine runs in a per-process thread pool so the budget can be enforced from outside it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection

from conversations.services import LoadedContext, context_load
from engine import get_engine
from engine.types import ChatContext, Reply
from messenger import texts
from messenger.attachments import decide_for_attachments
from messenger.models import InboundMessage
from messenger.sender_actions import sender_actions
from observability import signals

# One log name for every step of a message's life (see messenger.pipeline).
logger = logging.getLogger("messenger.pipeline")

__all__ = ["reply_context_load", "reply_decide", "sender_actions"]


def reply_context_load(*, inbound: InboundMessage) -> LoadedContext:
    """The conversation and the engine's context, with the inbound message stored in the transcript."""
    structured = {"payload": inbound.payload, "title": inbound.title or inbound.text} if inbound.payload else None
    return context_load(
        page_id=inbound.page_id,
        psid=inbound.psid,
        text=inbound.text or inbound.title,
        payload=inbound.payload,
        fb_message_id=inbound.mid,
        attachments=inbound.attachments or None,
        structured=structured,
        # A first claim follows no run that could have stored it: no look-up for it (``context_load``).
        first_run=inbound.attempts == 1,
    )


def reply_decide(*, inbound: InboundMessage, context: ChatContext) -> Reply | None:
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
        sender=reply_decide,
        inbound=inbound,
        intent=intent,
        confidence=confidence,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


# --- the engine, within the processing budget ------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_executor_lock = threading.Lock()


def _engine_pool() -> ThreadPoolExecutor:
    """A per-process pool (rq forks a work horse per job; a pool made before the fork is unusable)."""
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            # Twice the jobs a process runs at once: a call past its budget keeps its thread until the
            # engine's own timeout ends it, and must not hold up the next message's call.
            size = 2 * max(2, settings.MESSENGER_WORKER_CONCURRENCY)
            _executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="chat-engine")
            _executor_pid = os.getpid()
        return _executor


# A reply not ready this soon comes from a remote model: the thread gives its PostgreSQL connection
# back while it waits (seconds, with a real model) instead of holding one of the server's
# max_connections idle. Reconnecting costs about a millisecond; the wait costs a connection per
# message in flight, which is what capped a worker's concurrency.
DB_KEPT_WHILE_WAITING_S = 0.2


def _db_connection_release() -> None:
    """Close this thread's database connection unless a transaction needs it (the next query reopens it)."""
    if not connection.in_atomic_block:
        connection.close()


def _engine_reply(inbound: InboundMessage, context: ChatContext) -> Reply:
    """Ask the engine within the processing budget; past it, the fallback reply (the late one is dropped)."""
    budget_s = settings.MESSENGER_PROCESSING_TIMEOUT_MS / 1000
    engine = get_engine()
    future = _engine_pool().submit(_call_engine, engine, context, budget_s)
    try:
        try:
            return future.result(timeout=min(budget_s, DB_KEPT_WHILE_WAITING_S))
        except FutureTimeout:
            _db_connection_release()
        return future.result(timeout=max(0.0, budget_s - DB_KEPT_WHILE_WAITING_S))
    except FutureTimeout:
        future.cancel()
        logger.warning("messenger.pipeline.processing-timeout", extra=inbound.log_fields(budget_ms=budget_s * 1000))
        return Reply(
            text=texts.PROCESSING_TIMEOUT,
            intent="timeout",
            confidence=0.0,
            fallback=True,
            metadata={"timed_out": True},
        )
    except Exception as exc:
        logger.exception("messenger.pipeline.engine-error", extra=inbound.log_fields(error=type(exc).__name__))
        return Reply(text=texts.SEND_FALLBACK_ERROR, intent="fallback", confidence=0.0, fallback=True)


def _call_engine(engine, context: ChatContext, budget_s: float) -> Reply:
    from django.db import close_old_connections

    try:
        return engine.reply(context, timeout_s=budget_s)
    finally:
        # The engine thread may have touched the ORM; don't leave its connection open in the pool thread.
        close_old_connections()
