"""Tests for messenger/sender_actions.py: mark_seen + typing_on only for a reply that keeps the user waiting."""

from __future__ import annotations

import contextlib
import time

import pytest
from django.test import override_settings

from engine.types import Reply
from harness.rows import inbound_text_make
from messenger import send_api
from messenger.models import InboundMessage
from messenger.pipeline import sender_drain
from messenger.send_api import SendResult
from messenger.sender_actions import sender_actions
from tests.messenger.helpers import send_api_answering

PSID = "1256217357730577"


@pytest.fixture
def send_api_calls():
    """The Send API mocked: a message gets a fresh id; yields the bodies of every call, in order."""
    bodies: list[dict] = []
    with send_api_answering(PSID, bodies=bodies):
        yield bodies


class _SlowEngine:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def reply(self, context, *, timeout_s=None):
        time.sleep(self.seconds)
        return Reply(text="Sorry for the wait.", intent="slow", confidence=1.0)


def _answer_one(mid: str = "m_1") -> str:
    row = inbound_text_make(
        mid=mid, page_id="page-1", psid=PSID, text="help", fb_timestamp=int(time.time() * 1000),
        status="queued", queue_name="messenger_fast",
    )
    return sender_drain(inbound_id=row.id, worker_name="test")


def _kinds(bodies: list[dict]) -> list[str]:
    return [body.get("sender_action") or "message" for body in bodies]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("page_token")
def test_fast_reply_sends_no_sender_action(send_api_calls):
    """The rules engine answers well within the delay: the reply is the only Send API call."""
    assert _answer_one() == InboundMessage.Status.ANSWERED
    time.sleep(0.9)  # past MESSENGER_TYPING_DELAY_MS: nothing was left scheduled either
    assert _kinds(send_api_calls) == ["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("page_token")
@override_settings(MESSENGER_TYPING_DELAY_MS=50)
def test_slow_engine_sends_mark_seen_and_typing_on_before_the_reply(send_api_calls, monkeypatch):
    """An engine slower than the delay: mark_seen, then typing_on, then the reply, in that order."""
    monkeypatch.setattr("messenger.replies.get_engine", lambda: _SlowEngine(0.4))
    assert _answer_one() == InboundMessage.Status.ANSWERED
    assert _kinds(send_api_calls) == ["mark_seen", "typing_on", "message"]


def _record_actions(monkeypatch, *, takes_s: float = 0.0) -> list[str]:
    actions: list[str] = []

    def send_sender_action(*, psid, action, log_context, page_id=""):
        time.sleep(takes_s)
        actions.append(action)
        return SendResult(ok=True)

    monkeypatch.setattr(send_api, "send_sender_action", send_sender_action)
    return actions


@override_settings(MESSENGER_TYPING_DELAY_MS=300)
def test_block_shorter_than_the_delay_sends_nothing(monkeypatch):
    """A block that ends before the delay cancels its actions: none is sent, then or later."""
    actions = _record_actions(monkeypatch)
    with sender_actions(InboundMessage(mid="m_1", psid="u", attempts=1)):
        time.sleep(0.01)
    time.sleep(0.5)
    assert actions == []


@override_settings(MESSENGER_TYPING_DELAY_MS=20)
def test_block_ending_mid_action_waits_for_it_and_skips_the_rest(monkeypatch):
    """The reply is ready while mark_seen is in its Send API call: the block waits for that call to
    land (nothing reaches the user after the reply) and typing_on, pointless now, is never sent."""
    actions = _record_actions(monkeypatch, takes_s=0.2)
    with sender_actions(InboundMessage(mid="m_1", psid="u", attempts=1)):
        time.sleep(0.1)
    assert actions == ["mark_seen"]
    time.sleep(0.4)
    assert actions == ["mark_seen"]


@override_settings(MESSENGER_TYPING_DELAY_MS=20)
def test_due_actions_of_many_messages_do_not_queue_behind_each_other(monkeypatch):
    """Eight messages of one process due at once, each action taking 0.3 s: all eight mark_seen calls
    run at the same time (a pool as large as the worker's concurrency, 16 here), not four then four."""
    actions = _record_actions(monkeypatch, takes_s=0.3)
    inbounds = [InboundMessage(mid=f"m_{i}", psid=f"u{i}", attempts=1) for i in range(8)]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        for inbound in inbounds:
            stack.enter_context(sender_actions(inbound))
        time.sleep(0.45)
    assert actions.count("mark_seen") == 8
    assert time.monotonic() - started < 1.0


@override_settings(MESSENGER_TYPING_DELAY_MS=20)
def test_many_messages_share_one_timer_thread(monkeypatch):
    """Concurrent messages schedule on one timer thread, not one thread each."""
    import threading

    actions = _record_actions(monkeypatch)
    first, second = (InboundMessage(mid=f"m_{i}", psid=f"u{i}", attempts=1) for i in (1, 2))
    with sender_actions(first), sender_actions(second):
        time.sleep(0.2)
    timers = [t for t in threading.enumerate() if t.name == "sender-actions-timer"]
    assert (len(timers), sorted(actions)) == (1, ["mark_seen", "mark_seen", "typing_on", "typing_on"])
