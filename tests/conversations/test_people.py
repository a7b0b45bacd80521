"""Tests for conversations/people.py: waiting for a person, the bot's pause, who holds the thread."""

from __future__ import annotations

import pytest

from conversations.models import Conversation
from conversations.people import (
    conversation_bot_silenced,
    conversation_clear_waiting,
    conversation_mark_waiting,
    conversation_note_add,
    conversation_pause_bot,
    conversation_thread_passed,
    conversation_thread_returned,
)
from conversations.selectors import history_items_from_db
from conversations.services import message_append
from tests.conversations.helpers import at, conversation_make

pytestmark = pytest.mark.django_db


def test_mark_waiting_keeps_the_earliest_wait_and_clear_ends_it():
    """The list sorts by how long someone waits: a second mark does not reset the wait."""
    conversation = conversation_make(psid="p1")
    conversation_mark_waiting(conversation=conversation, since=at(10))
    conversation_mark_waiting(conversation=conversation, since=at(20))
    assert Conversation.objects.get().waiting_since == at(10)
    conversation_clear_waiting(conversation=conversation)
    assert Conversation.objects.get().waiting_since is None


def test_pause_bot_keeps_the_later_pause_and_silences_until_then():
    """Two people answering: the bot stays silent until the later pause ends, then may answer."""
    conversation = conversation_make(psid="p1")
    conversation_pause_bot(conversation=conversation, until=at(600))
    conversation_pause_bot(conversation=conversation, until=at(300))
    assert conversation.bot_paused_until == at(600)
    assert conversation_bot_silenced(conversation=conversation, now=at(599)) == (
        "a person answered from elsewhere; the bot is paused"
    )
    assert conversation_bot_silenced(conversation=conversation, now=at(601)) == ""


def test_thread_passed_hands_over_and_waits_then_returned_gives_back():
    """Passing the thread silences the bot and marks the wait; returning it clears all of that."""
    conversation = conversation_make(psid="p1")
    conversation_thread_passed(conversation=conversation, app_id="263902037430900", now=at(5))
    assert (conversation.status, conversation.thread_owner_app_id, conversation.waiting_since) == (
        "handed_over",
        "263902037430900",
        at(5),
    )
    assert conversation_bot_silenced(conversation=conversation) == "app 263902037430900 has the thread"
    conversation_pause_bot(conversation=conversation, until=at(10**6))
    conversation_thread_returned(conversation=conversation)
    assert (conversation.status, conversation.thread_owner_app_id) == ("active", "")
    assert (conversation.waiting_since, conversation.bot_paused_until) == (None, None)
    assert conversation_bot_silenced(conversation=conversation) == ""


def test_thread_passed_leaves_an_expired_conversation_closed():
    """An expired conversation never reopens; the user's next message starts a new one."""
    conversation = conversation_make(psid="p1", status=Conversation.Status.EXPIRED)
    conversation_thread_passed(conversation=conversation, app_id="1")
    assert conversation.status == Conversation.Status.EXPIRED


def test_note_is_in_the_transcript_but_not_the_history_or_activity():
    """A thread-control note is counted and shown, never given to the engine, and keeps the TTL clock."""
    conversation = conversation_make(psid="p1", last=at(0))
    message_append(conversation=conversation, direction="in", text="hi", created_at=at(0))
    note = conversation_note_add(conversation=conversation, text="Given back to the bot.", author="ana")

    assert (note.role, note.author) == ("note", "ana")
    assert [item["text"] for item in history_items_from_db(conversation_id=conversation.pk, limit=10)] == ["hi"]
    conversation.refresh_from_db()
    assert (conversation.message_count, conversation.last_activity_at) == (2, at(0))
