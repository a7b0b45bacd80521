"""Tests for messenger/people.py: a person's echo recorded and the bot paused; too-late messages wait.

End to end: signed webhook POST -> (for user messages) the rq job on a SimpleWorker -> the mocked
Send API, as in test_pipeline.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from conversations.models import Conversation, Message
from messenger.models import InboundMessage
from messenger.people import echo_author
from tests.conftest import load_fixture
from tests.messenger.helpers import run_worker, sent_messages, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]

PAGE, PSID = "1717527131834678", "1256217357730577"
OUR_APP, PAGE_INBOX = "1517776481860111", "263902037430900"


@pytest.fixture(autouse=True)
def our_app(settings):
    settings.MESSENGER_APP_ID = OUR_APP
    settings.MESSENGER_HUMAN_PAUSE_MINUTES = 30


def echo_body(*, app_id: str | None, mid: str = "m_echo_1", text: str = "Hi, this is Ana from the shop.") -> dict:
    """The echo fixture (sender = the page) from ``app_id`` (``None``: no app_id, as some shapes)."""
    body = load_fixture("echo")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = int(time.time() * 1000)
    item["message"].update(mid=mid, text=text)
    item["message"].pop("app_id")
    if app_id is not None:
        item["message"]["app_id"] = int(app_id)
    return body


def user_text(text: str, mid: str, hours_ago: float = 0) -> dict:
    body = text_body(text, mid=mid, psid=PSID, ts=int((time.time() - hours_ago * 3600) * 1000))
    body["entry"][0]["id"] = PAGE
    return body


def test_page_inbox_echo_is_recorded_and_the_bot_paused(post_webhook, graph):
    """A Page Inbox reply is in the transcript as a person's; the user's next message is not answered."""
    post_webhook(user_text("hello", "m_1"))
    run_worker()
    assert len(sent_messages(graph)) == 1

    assert post_webhook(echo_body(app_id=PAGE_INBOX)).status_code == 200
    post_webhook(user_text("thanks Ana", "m_2"))
    run_worker()

    person = Message.objects.get(fb_message_id="m_echo_1")
    assert (person.direction, person.role, person.author) == ("out", "person", "Page Inbox")
    assert person.text == "Hi, this is Ana from the shop."
    conversation = Conversation.objects.get()
    pause_left = conversation.bot_paused_until - timezone.now()
    assert timedelta(minutes=29) < pause_left <= timedelta(minutes=30)
    row = InboundMessage.objects.get(mid="m_2")
    assert (row.status, row.status_reason) == ("handed_over", "a person answered from elsewhere; the bot is paused")
    assert Message.objects.filter(fb_message_id="m_2").exists()
    assert len(sent_messages(graph)) == 1


def test_user_message_after_the_pause_is_answered(post_webhook, graph):
    """Once MESSENGER_HUMAN_PAUSE_MINUTES have passed the bot answers again."""
    post_webhook(echo_body(app_id=PAGE_INBOX))
    Conversation.objects.update(bot_paused_until=timezone.now() - timedelta(seconds=1))
    post_webhook(user_text("hello", "m_3"))
    run_worker()
    assert InboundMessage.objects.get(mid="m_3").status == InboundMessage.Status.ANSWERED
    assert len(sent_messages(graph)) == 1


def test_echo_of_our_own_send_is_not_recorded_and_does_not_pause(post_webhook, graph):
    """Our app_id: the echo reconciliation's business, not a person; nothing recorded, no pause."""
    post_webhook(echo_body(app_id=OUR_APP))
    assert Message.objects.count() == 0
    assert Conversation.objects.count() == 0


def test_echo_of_a_message_we_recorded_is_not_recorded_twice(post_webhook, graph):
    """An echo whose mid is already in the transcript (our send) is left alone, whatever its app_id."""
    post_webhook(user_text("hello", "m_1"))
    run_worker()
    ours = Message.objects.get(direction="out")
    post_webhook(echo_body(app_id=None, mid=ours.fb_message_id))
    assert Message.objects.filter(direction="out").count() == 1
    assert Conversation.objects.get().bot_paused_until is None


def test_zero_pause_minutes_records_without_pausing(post_webhook, settings):
    """MESSENGER_HUMAN_PAUSE_MINUTES=0: the person's message is recorded, the bot is not paused."""
    settings.MESSENGER_HUMAN_PAUSE_MINUTES = 0
    post_webhook(echo_body(app_id="999"))
    assert Message.objects.get().author == "app 999"
    assert Conversation.objects.get().bot_paused_until is None


@pytest.mark.parametrize(
    ("our_id", "message", "author"),
    [
        (OUR_APP, {"app_id": int(OUR_APP)}, None),
        (OUR_APP, {"app_id": int(PAGE_INBOX)}, "Page Inbox"),
        (OUR_APP, {"app_id": 42}, "app 42"),
        (OUR_APP, {}, "Page Inbox"),
        ("", {"app_id": 42}, None),
        ("", {"app_id": int(PAGE_INBOX)}, "Page Inbox"),
        ("", {}, "Page Inbox"),
    ],
)
def test_echo_author_tells_a_person_from_this_app(settings, our_id, message, author):
    """Without MESSENGER_APP_ID only the Page Inbox (or no app_id) counts as a person."""
    settings.MESSENGER_APP_ID = our_id
    assert echo_author(raw_message=message) == author


def test_message_outside_window_is_recorded_and_the_conversation_waits(post_webhook, graph):
    """Too late for the bot: expired, unanswered, yet in the transcript and waiting for a person."""
    post_webhook(user_text("anyone there?", "m_late", hours_ago=30))
    run_worker()
    row = InboundMessage.objects.get()
    assert (row.status, row.status_reason) == ("expired", "outside the 24-hour messaging window; waiting for a person")
    assert sent_messages(graph) == []
    conversation = Conversation.objects.get()
    assert row.conversation_id == conversation.pk
    assert conversation.waiting_since == datetime.fromtimestamp(row.fb_timestamp / 1000, tz=UTC)
    assert list(conversation.messages.values_list("text", "role")) == [("anyone there?", "user")]
