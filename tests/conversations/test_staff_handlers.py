"""Tests for conversations/staff_handlers.py: the channel's handlers reached without an upward import."""

from __future__ import annotations

import pytest

from conversations import staff_handlers
from conversations.staff_handlers import StaffOutcome, staff_give_back, staff_handlers_register, staff_reply_submit
from tests.conversations.helpers import conversation_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_channel(monkeypatch):
    monkeypatch.setattr(staff_handlers, "_handlers", staff_handlers._Handlers())


def test_messenger_registers_its_handlers_at_start_up():
    """The messenger app's ready() installed the staff reply and give-back handlers."""
    from messenger.staff_reply import staff_give_back as channel_give_back
    from messenger.staff_reply import staff_reply_queue

    assert staff_handlers._handlers.reply is staff_reply_queue
    assert staff_handlers._handlers.give_back is channel_give_back


def test_staff_reply_without_a_channel_is_refused(no_channel):
    """No channel installed: the admin says so instead of pretending it sent anything."""
    outcome = staff_reply_submit(conversation=conversation_make(psid="p1"), text="hi", author="ana")
    assert outcome == StaffOutcome(False, "Staff replies are not available: no channel is installed.")
    assert staff_give_back(conversation=conversation_make(psid="p2"), author="ana") is None


def test_registered_handlers_get_the_conversation_text_and_author(no_channel):
    """The admin's arguments reach the handler as keywords, and its outcome comes back unchanged."""
    calls = []

    def reply(**kwargs):
        calls.append(kwargs)
        return StaffOutcome(True, "queued")

    staff_handlers_register(reply=reply, give_back=lambda **kwargs: StaffOutcome(True, "back"))
    conversation = conversation_make(psid="p1")
    assert staff_reply_submit(conversation=conversation, text="hi", author="ana") == StaffOutcome(True, "queued")
    assert calls == [{"conversation": conversation, "text": "hi", "author": "ana"}]
    assert staff_give_back(conversation=conversation, author="ana") == StaffOutcome(True, "back")
