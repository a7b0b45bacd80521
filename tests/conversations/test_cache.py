"""Tests of conversations/cache.py: after-commit pushes, bounds, tombstones and the fill race."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.test.utils import override_settings

from conversations.cache import TOMBSTONE, history_key, history_push, history_read_through
from conversations.selectors import history_items_from_db, history_recent
from conversations.services import context_load, message_append
from tests.conversations.helpers import PAGE_ID, at, conversation_make, messages_make


def _cached_texts(redis_conn, conversation_id: int) -> list[str] | None:
    raw = redis_conn.get(history_key(conversation_id=conversation_id))
    if raw is None or raw == TOMBSTONE:
        return None
    return [item["text"] for item in json.loads(raw)["items"]]


@pytest.mark.django_db(transaction=True)
def test_message_append_updates_cache_after_commit(redis_conn, django_assert_num_queries):
    """A committed append lands in the cached history, so the next read is a hit that includes it."""
    first = context_load(page_id=PAGE_ID, psid="psid-c", text="hello", fb_message_id="m.1", now=at(0))
    message_append(conversation=first.conversation, direction="out", text="hi!", created_at=at(1))

    assert _cached_texts(redis_conn, first.conversation.pk) == ["hello", "hi!"]
    with django_assert_num_queries(0):
        history = history_recent(conversation=first.conversation)
    assert [item.direction for item in history] == ["in", "out"]


@pytest.mark.django_db(transaction=True)
def test_message_append_rolled_back_never_reaches_cache(redis_conn):
    """A message whose transaction rolls back is in neither the database nor the cache."""
    loaded = context_load(page_id=PAGE_ID, psid="psid-rb", text="kept", fb_message_id="m.1", now=at(0))
    assert _cached_texts(redis_conn, loaded.conversation.pk) == ["kept"]

    with pytest.raises(RuntimeError), transaction.atomic():
        message_append(conversation=loaded.conversation, direction="out", text="lost", created_at=at(1))
        raise RuntimeError("send failed, roll back")

    assert _cached_texts(redis_conn, loaded.conversation.pk) == ["kept"]
    assert [item.text for item in history_recent(conversation=loaded.conversation)] == ["kept"]


@pytest.mark.django_db
@override_settings(MESSENGER_HISTORY_LIMIT=3)
def test_history_push_keeps_list_bounded_and_ordered(redis_conn, django_capture_on_commit_callbacks):
    """Pushes keep at most MESSENGER_HISTORY_LIMIT items, ordered by time, each message once."""
    conversation = conversation_make(psid="psid-b")
    messages_make(conversation=conversation, count=2)
    history_recent(conversation=conversation)  # fill

    with django_capture_on_commit_callbacks(execute=True):
        message_append(conversation=conversation, direction="in", text="late", created_at=at(30))
        message_append(conversation=conversation, direction="out", text="early", created_at=at(20))

    assert _cached_texts(redis_conn, conversation.pk) == ["message 1", "early", "late"]
    item = history_items_from_db(conversation_id=conversation.pk, limit=1)[0]
    history_push(conversation_id=conversation.pk, item=item)  # a duplicate push changes nothing
    assert _cached_texts(redis_conn, conversation.pk) == ["message 1", "early", "late"]


@pytest.mark.django_db
def test_history_push_on_missing_key_writes_tombstone(redis_conn):
    """A push with nothing cached leaves a tombstone, which reads as a miss and is replaced by a fill."""
    conversation = conversation_make(psid="psid-t")
    messages = messages_make(conversation=conversation, count=2)

    history_push(
        conversation_id=conversation.pk, item={"id": messages[1].pk, "direction": "out", "text": "x"}
    )

    assert redis_conn.get(history_key(conversation_id=conversation.pk)) == TOMBSTONE
    assert [item.text for item in history_recent(conversation=conversation)] == ["message 0", "message 1"]
    assert _cached_texts(redis_conn, conversation.pk) == ["message 0", "message 1"]


@pytest.mark.django_db
def test_history_read_through_push_during_fill_discards_stale_fill(redis_conn):
    """A message committed while a miss reads the database cancels that fill, so no stale list is kept."""
    conversation = conversation_make(psid="psid-race")
    messages_make(conversation=conversation, count=2)

    def slow_loader(n: int) -> list[dict]:
        items = history_items_from_db(conversation_id=conversation.pk, limit=n)
        # Meanwhile another worker commits a message and pushes it (onto the missing key).
        newer = message_append(conversation=conversation, direction="out", text="newer", created_at=at(9))
        history_push(
            conversation_id=conversation.pk,
            item={"id": newer.pk, "direction": "out", "text": "newer", "intent": "", "created_at": 0.0},
        )
        return items

    returned = history_read_through(conversation_id=conversation.pk, limit=10, loader=slow_loader)

    assert [item["text"] for item in returned] == ["message 0", "message 1"]
    assert _cached_texts(redis_conn, conversation.pk) is None  # not the stale two-item list
    assert [item.text for item in history_recent(conversation=conversation)][-1] == "newer"


@pytest.mark.django_db(transaction=True)
def test_failed_history_push_drops_the_stale_list(redis_conn, monkeypatch):
    """A push that fails (Redis timed out) must not leave a list without the message for the rest of
    the conversation: the list is dropped and the next read fills from the database, message included."""
    from redis.exceptions import TimeoutError as RedisTimeout

    from conversations import cache

    loaded = context_load(page_id=PAGE_ID, psid="psid-push", text="hello", fb_message_id="m.1", now=at(0))
    assert _cached_texts(redis_conn, loaded.conversation.pk) == ["hello"]
    real = cache.get_redis_connection

    class PushFails:
        def __init__(self, client):
            self.client = client

        def transaction(self, *args, **kwargs):
            raise RedisTimeout("Timeout reading from socket")

        evalsha = eval = transaction  # the one-round-trip push fails the same way

        def __getattr__(self, name):
            return getattr(self.client, name)

    monkeypatch.setattr(cache, "get_redis_connection", lambda alias: PushFails(real(alias)))
    message_append(conversation=loaded.conversation, direction="out", text="hi!", created_at=at(1))
    monkeypatch.setattr(cache, "get_redis_connection", real)

    assert redis_conn.get(history_key(conversation_id=loaded.conversation.pk)) is None
    assert [item.text for item in history_recent(conversation=loaded.conversation)] == ["hello", "hi!"]


@pytest.mark.django_db
def test_history_push_after_a_read_costs_one_round_trip(redis_conn):
    """A push onto the list this process just read is one compare-and-set, not WATCH, GET and MULTI."""
    from harness.cost import cost_counted

    conversation = conversation_make(psid="psid-cas")
    messages = messages_make(conversation=conversation, count=2)
    history_recent(conversation=conversation)  # fill
    history_recent(conversation=conversation)  # a hit, as the pipeline's read before it appends
    item = {"id": messages[1].pk + 1, "direction": "out", "text": "new", "intent": "", "created_at": 9e9}

    with cost_counted() as cost:
        history_push(conversation_id=conversation.pk, item=item)

    assert cost.redis == [("EVALSHA",)]
    assert _cached_texts(redis_conn, conversation.pk) == ["message 0", "message 1", "new"]


@pytest.mark.django_db
def test_history_push_after_another_writer_keeps_both_messages(redis_conn):
    """The remembered list is stale (another process pushed since): the compare-and-set refuses and the
    WATCH path writes onto what Redis holds, so neither message is lost."""
    conversation = conversation_make(psid="psid-stale")
    messages = messages_make(conversation=conversation, count=1)
    history_recent(conversation=conversation)  # this process remembers ["message 0"]
    key = history_key(conversation_id=conversation.pk)
    theirs = json.loads(redis_conn.get(key))
    theirs["items"].append({"id": messages[0].pk + 1, "direction": "out", "text": "theirs", "created_at": 9e9})
    redis_conn.set(key, json.dumps(theirs))

    ours = {"id": messages[0].pk + 2, "direction": "in", "text": "ours", "intent": "", "created_at": 9.5e9}
    history_push(conversation_id=conversation.pk, item=ours)

    assert _cached_texts(redis_conn, conversation.pk) == ["message 0", "theirs", "ours"]
