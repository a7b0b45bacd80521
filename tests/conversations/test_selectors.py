"""Tests of conversations/selectors.py: recent history through the Redis cache, and open look-ups."""

from __future__ import annotations

import json
import logging

import pytest
from django.test.utils import override_settings

from conversations.cache import history_key
from conversations.models import Conversation
from conversations.selectors import conversation_find_open, history_recent
from conversations.services import context_load
from tests.conversations.helpers import (
    PAGE_ID,
    at,
    caches_with_redis_down,
    conversation_make,
    messages_make,
)

pytestmark = pytest.mark.django_db


def test_history_recent_cache_miss_fills_from_database(redis_conn, django_assert_num_queries):
    """A miss reads the database once and stores the list; the next read costs no query."""
    conversation = conversation_make(psid="psid-f")
    messages_make(conversation=conversation, count=3)

    with django_assert_num_queries(1):
        first = history_recent(conversation=conversation)

    stored = json.loads(redis_conn.get(history_key(conversation_id=conversation.pk)))
    assert [item["text"] for item in stored["items"]] == ["message 0", "message 1", "message 2"]
    assert set(stored["items"][0]) == {"id", "direction", "text", "intent", "created_at"}
    with django_assert_num_queries(0):
        second = history_recent(conversation=conversation)
    assert second == first
    assert [item.text for item in first] == ["message 0", "message 1", "message 2"]


@override_settings(MESSENGER_HISTORY_LIMIT=4)
def test_history_recent_keeps_limit_oldest_first():
    """Only the last MESSENGER_HISTORY_LIMIT messages are returned and cached, oldest first."""
    conversation = conversation_make(psid="psid-l")
    messages_make(conversation=conversation, count=9)

    history = history_recent(conversation=conversation)

    assert [item.text for item in history] == [f"message {i}" for i in range(5, 9)]
    assert [item.text for item in history_recent(conversation=conversation, limit=2)] == [
        "message 7",
        "message 8",
    ]


def test_history_recent_cache_key_expires_with_conversation_ttl(redis_conn, settings):
    """The cache key is namespaced and expires after MESSENGER_CONVERSATION_TTL_SECONDS."""
    settings.MESSENGER_CONVERSATION_TTL_SECONDS = 1234
    conversation = conversation_make(psid="psid-ttl")
    messages_make(conversation=conversation, count=1)

    history_recent(conversation=conversation)

    key = history_key(conversation_id=conversation.pk)
    assert key.endswith(f"conversations:history:v1:{conversation.pk}")
    assert 1200 < redis_conn.ttl(key) <= 1234


def test_history_recent_redis_down_reads_database(caplog):
    """With Redis unreachable, history comes from the database, and the outage is logged, not raised."""
    conversation = conversation_make(psid="psid-down")
    messages_make(conversation=conversation, count=2)

    with override_settings(CACHES=caches_with_redis_down()), caplog.at_level(logging.WARNING):
        history = history_recent(conversation=conversation)

    assert [item.text for item in history] == ["message 0", "message 1"]
    assert "conversations.cache.unavailable" in caplog.messages


def test_context_load_redis_down_still_loads_history(caplog, django_capture_on_commit_callbacks):
    """The handler's whole load, including the after-commit cache update, goes on without Redis."""
    conversation = conversation_make(psid="psid-down2")
    messages_make(conversation=conversation, count=2)

    with (
        override_settings(CACHES=caches_with_redis_down()),
        caplog.at_level(logging.WARNING),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        loaded = context_load(page_id=PAGE_ID, psid="psid-down2", text="still there?", now=at(10))

    assert [item.text for item in loaded.context.history] == ["message 0", "message 1"]
    assert len(callbacks) == 1  # the cache push ran, and failed quietly
    assert caplog.messages.count("conversations.cache.unavailable") == 2


def test_history_recent_expired_conversation_reads_database(redis_conn):
    """A closed conversation's history is read from the database and not cached."""
    conversation = conversation_make(psid="psid-x", status=Conversation.Status.EXPIRED)
    messages_make(conversation=conversation, count=2)

    assert [item.text for item in history_recent(conversation=conversation)] == ["message 0", "message 1"]
    assert redis_conn.exists(history_key(conversation_id=conversation.pk)) == 0


def test_conversation_find_open_ignores_expired():
    """The open look-up skips expired conversations and finds the one open conversation."""
    conversation_make(psid="psid-o", status=Conversation.Status.EXPIRED)
    open_one = conversation_make(psid="psid-o", status=Conversation.Status.HANDED_OVER)

    assert conversation_find_open(page_id=PAGE_ID, psid="psid-o") == open_one
    assert conversation_find_open(page_id=PAGE_ID, psid="nobody") is None
    assert conversation_find_open(page_id="other-page", psid="psid-o") is None
