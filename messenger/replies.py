"""Deciding the reply to one inbound message: its context, the attachments rule, the chat engine.

- :func:`reply_context_load` loads the conversation by PSID and stores the inbound message in its
  transcript (``conversations``), giving the engine's context.
- :func:`reply_decide` answers attachments by ``messenger.attachments`` and everything else by the
  chat engine, within ``MESSENGER_PROCESSING_TIMEOUT_MS``: past it the user gets the "taking longer"
  fallback and the late answer is dropped; an engine error gives the error fallback. ``None`` means
  the message needs no reply (a location, say). Sends ``intent_classified``.
- :func:`sender_actions` shows the user ``mark_seen`` then ``typing_on`` from a background thread
  while the reply is decided: best effort, never delaying the reply, skipped on a re-run.

The engine runs in a per-process thread pool so the budget can be enforced from outside it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

from django.conf import settings

from conversations.services import LoadedContext, context_load
from engine import get_engine
from engine.types import ChatContext, Reply
from messenger import send_api, texts
from messenger.attachments import decide_for_attachments
from messenger.models import InboundMessage
from observability import signals

# One log name for every step of a message's life (see messenger.pipeline).
logger = logging.getLogger("messenger.pipeline")


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


def _engine_reply(inbound: InboundMessage, context: ChatContext) -> Reply:
    """Ask the engine within the processing budget; past it, the fallback reply (the late one is dropped)."""
    budget_s = settings.MESSENGER_PROCESSING_TIMEOUT_MS / 1000
    engine = get_engine()
    future = _engine_pool().submit(_call_engine, engine, context, budget_s)
    try:
        return future.result(timeout=budget_s)
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


# --- mark_seen / typing_on while the reply is decided -----------------------------------------------


@contextmanager
def sender_actions(inbound: InboundMessage) -> Iterator[None]:
    """``mark_seen`` then ``typing_on`` in the background for the length of the block.

    Only on a message's first attempt (a re-run has shown them already); an action not yet sent when
    the block ends is skipped, and a failed one stops the rest.
    """
    typing = _Typing(inbound)
    typing.start()
    try:
        yield
    finally:
        typing.replied()


class _Typing:
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
        context = self.inbound.log_fields()
        for action in ("mark_seen", "typing_on"):
            if self._done.is_set():
                return
            result = send_api.send_sender_action(
                psid=self.inbound.psid, action=action, log_context=context, page_id=self.inbound.page_id
            )
            if not result.ok:
                return
