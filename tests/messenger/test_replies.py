"""Tests for messenger/replies.py: the reply each kind of message gets, and the processing budget.

End to end through the webhook and a worker, as in test_pipeline.py: one test per message kind.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.test import override_settings

from conversations.models import Message
from engine.types import ChatContext, Reply
from messenger import replies, send_api, texts
from messenger.models import InboundMessage
from messenger.send_api import SendResult
from tests.messenger.helpers import fresh, run_worker, sent_messages, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]


class _SlowEngine:
    name = "slow"

    def __init__(self):
        self.release = threading.Event()

    def reply(self, context, *, timeout_s=None):
        self.release.wait(5)
        return Reply(text="the late answer", intent="late", confidence=1.0)


@override_settings(MESSENGER_PROCESSING_TIMEOUT_MS=50)
def test_processing_timeout_configurable(post_webhook, graph, monkeypatch):
    """Past the processing timeout the user gets the 'taking longer' fallback; the late answer is dropped."""
    engine = _SlowEngine()
    monkeypatch.setattr("messenger.replies.get_engine", lambda: engine)
    post_webhook(text_body("what is the meaning of life?"))
    started = time.monotonic()
    run_worker()
    assert time.monotonic() - started < 3
    engine.release.set()
    assert [b["message"]["text"] for b in sent_messages(graph)] == [texts.PROCESSING_TIMEOUT]
    assert InboundMessage.objects.get().intent == "timeout"


def test_image_attachment_end_to_end_is_acknowledged(post_webhook, graph):
    """An image goes to messenger_slow and is acknowledged with the image text."""
    post_webhook(fresh("image_attachment"))
    run_worker()
    assert [b["message"] for b in sent_messages(graph)] == [{"text": texts.IMAGE_RECEIVED}]


def test_sticker_like_end_to_end_gets_friendly_acknowledgement(post_webhook, graph):
    """The thumbs-up 'like' sticker gets the sticker acknowledgement."""
    post_webhook(fresh("sticker_like"))
    run_worker()
    assert [b["message"] for b in sent_messages(graph)] == [{"text": texts.STICKER_RECEIVED}]


@pytest.mark.parametrize("fixture", ["audio_attachment", "video_attachment", "file_attachment"])
def test_unsupported_attachment_end_to_end_gets_unsupported_reply(post_webhook, graph, fixture):
    """Audio, video and files get the 'unsupported' reply."""
    post_webhook(fresh(fixture))
    run_worker()
    assert [b["message"] for b in sent_messages(graph)] == [{"text": texts.ATTACHMENT_UNSUPPORTED}]


def test_location_end_to_end_gets_no_reply(post_webhook, graph):
    """A location is stored and needs no reply: nothing is sent."""
    post_webhook(fresh("location_attachment"))
    run_worker()
    assert InboundMessage.objects.get().status == InboundMessage.Status.NO_REPLY
    assert sent_messages(graph) == []


def test_shared_link_end_to_end_is_answered_by_engine(post_webhook, graph):
    """A shared link (fallback) is answered by the engine from its title and URL."""
    post_webhook(fresh("fallback_attachment"))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.ANSWERED
    assert len(sent_messages(graph)) == 1


def test_postback_end_to_end_answers_payload(post_webhook, graph):
    """A Get Started postback greets the new user, with the rules file's answer."""
    post_webhook(fresh("postback_get_started"))
    run_worker()
    [body] = sent_messages(graph)
    assert body["recipient"] == {"id": "1256217357730577"} or body["recipient"]["id"]
    assert InboundMessage.objects.get().status == InboundMessage.Status.ANSWERED


def test_quick_reply_end_to_end_is_answered(post_webhook, graph):
    """A tapped quick reply is answered and the tap is kept in the transcript."""
    post_webhook(fresh("quick_reply"))
    run_worker()
    assert InboundMessage.objects.get().status == InboundMessage.Status.ANSWERED
    assert Message.objects.get(direction="in").structured["payload"] == "MY_PAYLOAD"


# --- focused: the engine's failures, the sender actions ---------------------------------------------


def _context() -> ChatContext:
    return ChatContext(psid_hash="h", conversation_id=None, text="hello")


class _BrokenEngine:
    name = "broken"

    def reply(self, context, *, timeout_s=None):
        raise RuntimeError("engine down")


def test_engine_error_gives_the_error_fallback(monkeypatch):
    """An engine that raises gives the user the error fallback reply, not silence."""
    monkeypatch.setattr("messenger.replies.get_engine", lambda: _BrokenEngine())
    inbound = InboundMessage(mid="m_x", psid="u", text="hello")
    reply = replies.reply_decide(inbound=inbound, context=_context())
    assert (reply.text, reply.intent, reply.fallback) == (texts.SEND_FALLBACK_ERROR, "fallback", True)


def test_location_needs_no_reply_without_asking_the_engine(monkeypatch):
    """An attachment the rules ignore (a location) gives None and never reaches the engine."""
    monkeypatch.setattr("messenger.replies.get_engine", lambda: pytest.fail("the engine was asked"))
    attachments = [{"type": "location", "payload": {"coordinates": {"lat": 1.0, "long": 2.0}}}]
    inbound = InboundMessage(mid="m_loc", psid="u", attachments=attachments)
    assert replies.reply_decide(inbound=inbound, context=_context()) is None


def _record_actions(monkeypatch) -> list[str]:
    actions: list[str] = []

    def send_sender_action(*, psid, action, log_context, page_id=""):
        actions.append(action)
        return SendResult(ok=True)

    monkeypatch.setattr(send_api, "send_sender_action", send_sender_action)
    return actions


def test_sender_actions_mark_seen_then_typing_on_first_attempt(monkeypatch):
    """On a message's first attempt the user sees 'seen' then 'typing' while the reply is decided."""
    actions = _record_actions(monkeypatch)
    with replies.sender_actions(InboundMessage(mid="m_1", psid="u", attempts=1)):
        deadline = time.monotonic() + 5
        while len(actions) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert actions == ["mark_seen", "typing_on"]


def test_sender_actions_skipped_on_a_rerun(monkeypatch):
    """A re-run (second attempt) shows nothing again."""
    actions = _record_actions(monkeypatch)
    with replies.sender_actions(InboundMessage(mid="m_1", psid="u", attempts=2)):
        time.sleep(0.05)
    assert actions == []


class _ObservingEngine:
    """Answers after ``seconds``, noting whether the asking thread's DB connection was open meanwhile."""

    name = "observing"

    def __init__(self, seconds: float, wrapper) -> None:
        self.seconds, self.wrapper = seconds, wrapper
        self.open_while_waiting: bool | None = None

    def reply(self, context, *, timeout_s=None):
        time.sleep(self.seconds)
        self.open_while_waiting = self.wrapper.connection is not None
        return Reply(text="answer", intent="answer", confidence=1.0)


def _ask(monkeypatch, seconds: float) -> tuple[_ObservingEngine, Reply]:
    from django.db import connections

    wrapper = connections["default"]  # this thread's own (``connection`` would resolve per thread)
    wrapper.ensure_connection()
    engine = _ObservingEngine(seconds, wrapper)
    monkeypatch.setattr("messenger.replies.get_engine", lambda: engine)
    inbound = InboundMessage(mid="m_db", psid="u", text="hi", attempts=2)
    reply = replies.reply_decide(inbound=inbound, context=ChatContext(psid_hash="h", conversation_id=1, text="hi"))
    return engine, reply


@pytest.mark.django_db(transaction=True)
def test_slow_model_wait_gives_the_db_connection_back(monkeypatch):
    """A reply not ready within DB_KEPT_WHILE_WAITING_S: the waiting thread's PostgreSQL connection is
    closed during the wait (a worker's concurrency is not capped by max_connections), and reopens after."""
    from django.db import connection

    engine, reply = _ask(monkeypatch, replies.DB_KEPT_WHILE_WAITING_S + 0.3)
    assert reply.text == "answer"
    assert engine.open_while_waiting is False
    assert InboundMessage.objects.count() == 0 and connection.connection is not None


@pytest.mark.django_db(transaction=True)
def test_fast_engine_keeps_the_db_connection(monkeypatch):
    """An engine that answers at once (the rules engine): the connection stays open, no reconnect."""
    engine, reply = _ask(monkeypatch, 0.0)
    assert reply.text == "answer"
    assert engine.open_while_waiting is True
