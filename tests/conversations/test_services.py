"""Tests of conversations/services.py: context loading by PSID, TTL, appends, races and status."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from conversations import cache, services
from conversations.models import Conversation, Message
from conversations.selectors import history_recent
from conversations.services import (
    ConversationClosedError,
    context_load,
    conversation_get_or_start,
    conversation_give_back,
    conversation_hand_over,
    conversation_mark_unreachable,
    device_id_for,
    message_append,
)
from observability.hashing import hash_psid
from tests.conversations.helpers import PAGE_ID, T0, at, conversation_make, messages_make

pytestmark = pytest.mark.django_db


# --- the handler's context (seed tests) ---------------------------------------------------------


def test_handler_loads_existing_conversation_by_psid():
    """A returning user's message lands in their existing conversation, which is not new."""
    first = context_load(page_id=PAGE_ID, psid="psid-1", text="hello", fb_message_id="m.1", now=T0)
    other = context_load(page_id=PAGE_ID, psid="psid-2", text="hi", fb_message_id="m.x", now=T0)

    loaded = context_load(page_id=PAGE_ID, psid="psid-1", text="again", fb_message_id="m.2", now=at(300))

    assert loaded.created is False
    assert loaded.conversation.pk == first.conversation.pk != other.conversation.pk
    assert loaded.context.conversation_id == first.conversation.pk
    assert loaded.context.is_new_conversation is False
    assert loaded.context.text == "again"
    assert loaded.context.psid_hash == hash_psid("psid-1")
    assert loaded.message.conversation_id == first.conversation.pk
    conversation = Conversation.objects.get(pk=first.conversation.pk)
    assert conversation.message_count == 2
    assert conversation.last_activity_at == at(300)


def test_handler_creates_new_conversation_if_none_exists():
    """A first message from an unknown PSID starts an active conversation holding that message."""
    loaded = context_load(page_id=PAGE_ID, psid="new-psid", text="hi there", fb_message_id="m.1", now=T0)

    assert loaded.created is True
    assert loaded.context.is_new_conversation is True
    assert loaded.context.history == ()
    conversation = Conversation.objects.get(psid="new-psid")
    assert conversation.pk == loaded.conversation.pk
    assert conversation.status == Conversation.Status.ACTIVE
    assert conversation.device_id == device_id_for(page_id=PAGE_ID, psid="new-psid")
    assert conversation.started_at == T0
    assert conversation.message_count == 1
    message = Message.objects.get(fb_message_id="m.1")
    assert (message.direction, message.text, message.conversation_id) == ("in", "hi there", conversation.pk)


@override_settings(MESSENGER_HISTORY_LIMIT=3)
def test_handler_includes_recent_history_in_context():
    """The context carries the last HISTORY_LIMIT earlier messages, oldest first, not the new one."""
    conversation = conversation_make(psid="psid-h")
    messages_make(conversation=conversation, count=5)

    loaded = context_load(page_id=PAGE_ID, psid="psid-h", text="newest", fb_message_id="m.new", now=at(60))

    assert [item.text for item in loaded.context.history] == ["message 2", "message 3", "message 4"]
    assert [item.direction for item in loaded.context.history] == ["in", "out", "in"]
    assert loaded.context.history[0].created_at == at(2).timestamp()
    assert loaded.context.text == "newest"


@override_settings(MESSENGER_CONVERSATION_TTL_SECONDS=3600)
def test_handler_respects_conversation_ttl():
    """Within the TTL the conversation continues; past it the old one expires and a new one starts empty."""
    first = context_load(page_id=PAGE_ID, psid="psid-t", text="one", fb_message_id="m.1", now=T0)
    within = context_load(page_id=PAGE_ID, psid="psid-t", text="two", fb_message_id="m.2", now=at(3599))
    assert within.conversation.pk == first.conversation.pk
    assert [item.text for item in within.context.history] == ["one"]

    later = context_load(
        page_id=PAGE_ID, psid="psid-t", text="three", fb_message_id="m.3", now=at(3599 + 3601)
    )

    assert later.created is True
    assert later.context.is_new_conversation is True
    assert later.conversation.pk != first.conversation.pk
    assert later.context.history == ()
    assert Conversation.objects.get(pk=first.conversation.pk).status == Conversation.Status.EXPIRED
    assert Conversation.objects.filter(psid="psid-t").exclude(status="expired").count() == 1


# --- context_load details -------------------------------------------------------------------------


def test_context_load_rerun_of_stored_message_appends_nothing():
    """Loading a message whose fb_message_id is stored rebuilds its first context and appends nothing."""
    context_load(page_id=PAGE_ID, psid="psid-r", text="one", fb_message_id="m.1", now=T0)
    first = context_load(page_id=PAGE_ID, psid="psid-r", text="two", fb_message_id="m.2", now=at(1))
    message_append(conversation=first.conversation, direction="out", text="reply", created_at=at(2))

    again = context_load(page_id=PAGE_ID, psid="psid-r", text="two", fb_message_id="m.2", now=at(10))

    assert again.message.pk == first.message.pk
    assert again.created is False
    assert [item.text for item in again.context.history] == ["one"]
    assert Message.objects.filter(fb_message_id="m.2").count() == 1
    assert Conversation.objects.get(pk=first.conversation.pk).message_count == 3


def test_context_load_rerun_of_first_message_is_still_new_conversation():
    """A re-run of the message that opened a conversation sees it as new, as the first run did."""
    first = context_load(page_id=PAGE_ID, psid="psid-r1", text="hi", fb_message_id="m.1", now=T0)

    again = context_load(page_id=PAGE_ID, psid="psid-r1", text="hi", fb_message_id="m.1", now=at(5))

    assert again.conversation.pk == first.conversation.pk
    assert again.context.is_new_conversation is True
    assert again.context.history == ()


def test_context_load_first_run_skips_the_message_id_look_up():
    """A first run goes straight to the conversation: one SELECT fewer than a run that may be a re-run."""
    conversation = conversation_make(psid="psid-f")
    messages_make(conversation=conversation, count=2)
    history_recent(conversation=conversation)  # fills the cache

    with CaptureQueriesContext(connection) as ctx:
        context_load(page_id=PAGE_ID, psid="psid-f", text="hi", fb_message_id="m.f", now=at(10), first_run=True)

    verbs = [query["sql"].split()[0] for query in ctx.captured_queries]
    assert verbs == ["SELECT", "SAVEPOINT", "INSERT", "UPDATE", "RELEASE"]


def test_context_load_first_run_of_a_stored_message_still_appends_nothing():
    """Told "first run" wrongly, the unique message id still finds the stored message: nothing appended."""
    first = context_load(page_id=PAGE_ID, psid="psid-w", text="one", fb_message_id="m.w1", now=T0)
    again = context_load(page_id=PAGE_ID, psid="psid-w", text="one", fb_message_id="m.w1", now=at(1), first_run=True)

    assert (again.message.pk, again.created) == (first.message.pk, False)
    assert Message.objects.filter(conversation=first.conversation).count() == 1


def test_context_load_payload_is_stored_as_tap():
    """A quick reply's payload reaches the context and is stored as what the user tapped."""
    loaded = context_load(
        page_id=PAGE_ID, psid="psid-p", text="Yes", payload="ANSWER_YES", fb_message_id="m.q"
    )

    assert loaded.context.payload == "ANSWER_YES"
    assert Message.objects.get(pk=loaded.message.pk).structured == {"payload": "ANSWER_YES", "title": "Yes"}


def test_context_load_returning_user_cache_hit_loading_costs_two_queries(django_assert_max_num_queries):
    """On a cache hit the loading part (message-id check, conversation; history free) is at most 2 SELECTs."""
    conversation = conversation_make(psid="psid-q")
    messages_make(conversation=conversation, count=4)
    history_recent(conversation=conversation)  # fills the cache

    with django_assert_max_num_queries(2):
        found, created = conversation_get_or_start(page_id=PAGE_ID, psid="psid-q", now=at(10))
        history = history_recent(conversation=found)
    assert created is False
    assert len(history) == 4

    with CaptureQueriesContext(connection) as ctx:
        loaded = context_load(page_id=PAGE_ID, psid="psid-q", text="hi", fb_message_id="m.q", now=at(11))
    verbs = [query["sql"].split()[0] for query in ctx.captured_queries]
    # Two SELECTs load; the append is one INSERT and one UPDATE inside a savepoint here (the test's
    # transaction); in production the same block is BEGIN, INSERT, UPDATE, COMMIT (bench/context.py).
    assert verbs == ["SELECT", "SELECT", "SAVEPOINT", "INSERT", "UPDATE", "RELEASE"]
    assert len(loaded.context.history) == 4


def test_context_load_cache_miss_costs_one_more_select():
    """With the cache empty, loading reads the history from the database: exactly one extra SELECT."""
    conversation = conversation_make(psid="psid-m")
    messages_make(conversation=conversation, count=4)

    with CaptureQueriesContext(connection) as ctx:
        loaded = context_load(page_id=PAGE_ID, psid="psid-m", text="hi", fb_message_id="m.m", now=at(10))

    verbs = [query["sql"].split()[0] for query in ctx.captured_queries]
    assert verbs == ["SELECT", "SELECT", "SELECT", "SAVEPOINT", "INSERT", "UPDATE", "RELEASE"]
    assert [item.text for item in loaded.context.history][-1] == "message 3"


# --- conversation_get_or_start ------------------------------------------------------------------------


def test_device_id_for_is_deterministic_and_one_to_one():
    """The same page and PSID always map to the same UUID; another PSID or page maps elsewhere."""
    device = device_id_for(page_id="p1", psid="u1")

    assert device == device_id_for(page_id="p1", psid="u1")
    assert uuid.UUID(device).version == 5
    assert len({device, device_id_for(page_id="p1", psid="u2"), device_id_for(page_id="p2", psid="u1")}) == 3


@override_settings(MESSENGER_CONVERSATION_TTL_SECONDS=60)
def test_conversation_get_or_start_handed_over_survives_ttl():
    """A handed-over conversation is returned as is however old it is: a human still has it."""
    conversation = conversation_make(psid="psid-ho", status=Conversation.Status.HANDED_OVER)

    found, created = conversation_get_or_start(page_id=PAGE_ID, psid="psid-ho", now=at(86400))

    assert (found.pk, created, found.status) == (conversation.pk, False, Conversation.Status.HANDED_OVER)


def test_conversation_get_or_start_unreachable_becomes_active():
    """A user who writes again is reachable again: their unreachable conversation turns active."""
    conversation = conversation_make(psid="psid-u", status=Conversation.Status.UNREACHABLE)

    found, created = conversation_get_or_start(page_id=PAGE_ID, psid="psid-u", now=at(10))

    assert (found.pk, created) == (conversation.pk, False)
    conversation.refresh_from_db()
    assert found.status == conversation.status == Conversation.Status.ACTIVE


@override_settings(MESSENGER_CONVERSATION_TTL_SECONDS=60)
def test_conversation_get_or_start_expired_unreachable_starts_new():
    """An unreachable conversation idle past the TTL expires like an active one."""
    old = conversation_make(psid="psid-ux", status=Conversation.Status.UNREACHABLE)

    found, created = conversation_get_or_start(page_id=PAGE_ID, psid="psid-ux", now=at(61))

    assert created is True and found.pk != old.pk
    old.refresh_from_db()
    assert old.status == Conversation.Status.EXPIRED


def _run_in_threads(target, count: int = 2) -> list:
    """Run ``target(i)`` in ``count`` threads, each with its own database connection; return results."""
    results: list = [None] * count
    errors: list = []

    def _worker(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=_worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    return results


@pytest.mark.django_db(transaction=True)
def test_conversation_get_or_start_concurrent_first_messages_make_one_conversation(monkeypatch, caplog):
    """Two workers that both see no conversation and both INSERT end with one row, on PostgreSQL."""
    barrier = threading.Barrier(2, timeout=10)
    waited = threading.local()
    real_find = services.conversation_find_open

    def find_then_wait(**kwargs):
        found = real_find(**kwargs)
        if not getattr(waited, "done", False):
            waited.done = True
            barrier.wait()  # both threads have now seen "no conversation": both will INSERT
        return found

    monkeypatch.setattr(services, "conversation_find_open", find_then_wait)

    results = _run_in_threads(lambda _i: conversation_get_or_start(page_id=PAGE_ID, psid="racer"))

    assert Conversation.objects.filter(psid="racer").count() == 1
    assert sorted(created for _conversation, created in results) == [False, True]
    assert results[0][0].pk == results[1][0].pk
    assert "conversations.start.race-lost" in caplog.messages  # the IntegrityError path really ran


@pytest.mark.django_db(transaction=True)
def test_context_load_concurrent_first_messages_share_one_conversation():
    """Two first messages of a new sender handled at the same moment land in one conversation."""
    barrier = threading.Barrier(2, timeout=10)

    def _load(i: int):
        barrier.wait()
        return context_load(page_id=PAGE_ID, psid="twins", text=f"msg {i}", fb_message_id=f"m.tw.{i}")

    results = _run_in_threads(_load)

    conversation = Conversation.objects.get(psid="twins")
    assert {loaded.conversation.pk for loaded in results} == {conversation.pk}
    assert conversation.message_count == 2
    assert sorted(loaded.created for loaded in results) == [False, True]


# --- message_append -----------------------------------------------------------------------------------


def test_message_append_bumps_count_and_activity():
    """Appending stores the row and moves message_count and last_activity_at forward, never back."""
    conversation = conversation_make(psid="psid-a", last=at(100))

    message_append(
        conversation=conversation, direction="out", text="reply", intent="greet", created_at=at(200)
    )
    message_append(conversation=conversation, direction="in", text="late", created_at=at(50))

    conversation.refresh_from_db()
    assert conversation.message_count == 2
    assert conversation.last_activity_at == at(200)
    assert list(conversation.messages.order_by("id").values_list("text", "intent")) == [
        ("reply", "greet"),
        ("late", ""),
    ]


def test_message_append_same_fb_message_id_returns_existing():
    """A second append with a stored fb_message_id returns that row and changes nothing."""
    conversation = conversation_make(psid="psid-i")
    first = message_append(conversation=conversation, direction="in", text="hi", fb_message_id="m.dup")

    second = message_append(conversation=conversation, direction="in", text="hi", fb_message_id="m.dup")

    assert second.pk == first.pk
    conversation.refresh_from_db()
    assert conversation.message_count == 1


def test_message_append_invalid_direction_raises():
    """A direction other than in/out is a programming error, refused before touching the database."""
    conversation = conversation_make(psid="psid-d")

    with pytest.raises(ValueError, match="direction"):
        message_append(conversation=conversation, direction="sideways", text="?")


def test_message_append_inside_rolled_back_transaction_leaves_nothing():
    """A rolled-back outer transaction takes the message and the counter bump with it."""
    conversation = conversation_make(psid="psid-rb")

    with pytest.raises(RuntimeError), transaction.atomic():
        message_append(conversation=conversation, direction="in", text="lost")
        raise RuntimeError("handler failed")

    conversation.refresh_from_db()
    assert conversation.message_count == 0
    assert not conversation.messages.exists()


# --- status transitions -----------------------------------------------------------------------------


def test_conversation_hand_over_stops_bot_and_still_stores_messages():
    """A handed-over conversation keeps its status when the user writes, and the message is stored."""
    loaded = context_load(page_id=PAGE_ID, psid="psid-s", text="hi", fb_message_id="m.1", now=T0)

    conversation = conversation_hand_over(conversation=loaded.conversation)
    assert conversation.status == Conversation.Status.HANDED_OVER

    again = context_load(page_id=PAGE_ID, psid="psid-s", text="human please", fb_message_id="m.2", now=at(5))
    assert again.conversation.pk == conversation.pk
    assert again.conversation.status == Conversation.Status.HANDED_OVER
    assert Conversation.objects.get(pk=conversation.pk).message_count == 2


def test_conversation_give_back_resumes_bot():
    """Giving back a handed-over conversation makes it active again; the next message sees it active."""
    conversation = conversation_make(psid="psid-g", status=Conversation.Status.HANDED_OVER)

    conversation = conversation_give_back(conversation=conversation)

    assert conversation.status == Conversation.Status.ACTIVE
    loaded = context_load(page_id=PAGE_ID, psid="psid-g", text="back", fb_message_id="m.g", now=at(1))
    assert loaded.conversation.status == Conversation.Status.ACTIVE


def test_conversation_give_back_of_active_is_noop():
    """Giving back a conversation the bot already has changes nothing."""
    conversation = conversation_make(psid="psid-n")

    assert conversation_give_back(conversation=conversation).status == Conversation.Status.ACTIVE


def test_conversation_hand_over_expired_raises():
    """An expired conversation is closed: handing it over is refused with a typed error."""
    conversation = conversation_make(psid="psid-e", status=Conversation.Status.EXPIRED)

    with pytest.raises(ConversationClosedError):
        conversation_hand_over(conversation=conversation)
    with pytest.raises(ConversationClosedError):
        conversation_give_back(conversation=conversation)


def test_conversation_mark_unreachable_only_changes_active():
    """Only an active conversation becomes unreachable; a handed-over one stays with its human."""
    active = conversation_make(psid="psid-m1")
    human = conversation_make(psid="psid-m2", status=Conversation.Status.HANDED_OVER)

    assert conversation_mark_unreachable(conversation=active).status == Conversation.Status.UNREACHABLE
    assert conversation_mark_unreachable(conversation=human).status == Conversation.Status.HANDED_OVER


def test_conversations_prune_deletes_inactive_conversations_and_their_messages():
    """Conversations inactive before the cutoff go with their messages; a dry run only counts."""
    old = conversation_make(psid="prune-old", status=Conversation.Status.EXPIRED, last=at(0))
    messages_make(conversation=old, count=3, start=at(-10))
    recent = conversation_make(psid="prune-new", last=at(100))
    messages_make(conversation=recent, count=2, start=at(99))

    assert services.conversations_prune(before=at(50), batch_size=2, dry_run=True) == (1, 3)
    assert services.conversations_prune(before=at(50), batch_size=2) == (1, 3)
    assert list(Conversation.objects.values_list("id", flat=True)) == [recent.id]
    assert Message.objects.filter(conversation=recent).count() == 2 and Message.objects.count() == 2


def test_conversations_forget_deletes_one_users_rows_and_cached_history(redis_conn):
    """Every conversation of the user, its messages and cache keys go; another user's stay."""
    gone = [
        conversation_make(psid="forget-me", status=Conversation.Status.EXPIRED),
        conversation_make(psid="forget-me"),
    ]
    for talk in gone:
        messages_make(conversation=talk, count=2)
        cache.history_prime_empty(conversation_id=talk.id)
    kept = conversation_make(psid="keep-me")
    cache.history_prime_empty(conversation_id=kept.id)

    assert services.conversations_forget(page_id=PAGE_ID, psid="forget-me") == (2, 4, 2)
    assert list(Conversation.objects.values_list("psid", flat=True)) == ["keep-me"]
    assert not any(redis_conn.exists(cache.history_key(conversation_id=talk.id)) for talk in gone)
    assert redis_conn.exists(cache.history_key(conversation_id=kept.id))
