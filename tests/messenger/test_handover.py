"""Tests for messenger/handover.py: Conversation Routing on "talk to a person", handover webhooks,
standby messages, and the admin's give-back taking the thread back.
"""

from __future__ import annotations

import json
import time

import pytest
import responses
from django.urls import reverse

from conversations.models import Conversation, Message
from conversations.services import device_id_for
from messenger import texts
from messenger.models import InboundMessage
from messenger.queues import get_queue
from tests.conftest import load_fixture
from tests.messenger.helpers import run_worker, sent_messages, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]

BASE = "https://graph.facebook.com/v25.0/me"
PAGE, PSID = "1717527131834678", "1256217357730577"
OUR_APP, PAGE_INBOX = "1517776481860111", "263902037430900"


@pytest.fixture(autouse=True)
def our_app(settings):
    settings.MESSENGER_APP_ID = OUR_APP


@pytest.fixture
def thread_api(graph):
    """pass_thread_control and take_thread_control answer {"success": true}."""
    for path in ("pass_thread_control", "take_thread_control"):
        graph.add(responses.POST, f"{BASE}/{path}", json={"success": True})
    return graph


def thread_calls(mock, path: str) -> list[dict]:
    return [json.loads(c.request.body) for c in mock.calls if c.request.url == f"{BASE}/{path}"]


def user_text(text: str, mid: str) -> dict:
    body = text_body(text, mid=mid, psid=PSID)
    body["entry"][0]["id"] = PAGE
    return body


def fresh(name: str, **details) -> dict:
    body = load_fixture(name)
    item = body["entry"][0].get("messaging", body["entry"][0].get("standby"))[0]
    item["timestamp"] = int(time.time() * 1000)
    if details:
        item[name].update(details)
    return body


def held_conversation(owner: str) -> Conversation:
    return Conversation.objects.create(
        page_id=PAGE, psid=PSID, device_id=device_id_for(page_id=PAGE, psid=PSID),
        status=Conversation.Status.HANDED_OVER, thread_owner_app_id=owner,
    )


def test_talk_to_a_person_passes_thread_control(post_webhook, thread_api, settings):
    """The user asks for a person: the handover notice, then pass_thread_control with the exact body."""
    settings.MESSENGER_HANDOVER_APP_ID = PAGE_INBOX
    post_webhook(user_text("can I talk to a person please", "m_1"))
    run_worker()

    assert [b["message"] for b in sent_messages(thread_api)] == [{"text": texts.HANDOVER_NOTICE}]
    assert thread_calls(thread_api, "pass_thread_control") == [
        {"recipient": {"id": PSID}, "target_app_id": 263902037430900, "metadata": "The user asked for a person."}
    ]
    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.thread_owner_app_id) == ("handed_over", PAGE_INBOX)
    assert conversation.waiting_since is not None

    post_webhook(user_text("hello?", "m_2"))
    run_worker()
    row = InboundMessage.objects.get(mid="m_2")
    assert (row.status, row.status_reason) == ("handed_over", f"app {PAGE_INBOX} has the thread")
    assert len(sent_messages(thread_api)) == 1


def test_talk_to_a_person_postback_passes_thread_control(post_webhook, thread_api, settings):
    """The rules engine's "Talk to a person" button (TALK_TO_HUMAN) does the same."""
    settings.MESSENGER_HANDOVER_APP_ID = PAGE_INBOX
    body = load_fixture("postback")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = int(time.time() * 1000)
    item["postback"].update(payload="TALK_TO_HUMAN", title="Talk to a person")
    post_webhook(body)
    run_worker()
    assert [b["message"]["text"] for b in sent_messages(thread_api)] == [texts.HANDOVER_NOTICE]
    assert len(thread_calls(thread_api, "pass_thread_control")) == 1


def test_talk_to_a_person_without_handover_app_waits_for_staff(post_webhook, thread_api, settings):
    """MESSENGER_HANDOVER_APP_ID unset: no Graph call; the conversation waits for staff, bot silent."""
    settings.MESSENGER_HANDOVER_APP_ID = ""
    post_webhook(user_text("I want a human", "m_1"))
    run_worker()
    post_webhook(user_text("hello?", "m_2"))
    run_worker()

    assert thread_calls(thread_api, "pass_thread_control") == []
    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.thread_owner_app_id) == ("handed_over", "")
    assert conversation.waiting_since is not None
    assert InboundMessage.objects.get(mid="m_2").status_reason == "a human has this conversation"
    assert [b["message"]["text"] for b in sent_messages(thread_api)] == [texts.HANDOVER_NOTICE]


def test_talk_to_human_payload_puts_conversation_in_waiting_queue_and_silences_bot(
    post_webhook, thread_api, settings, admin_client
):
    """The TALK_TO_HUMAN button: waiting (first in the admin's list), and "hello??" gets no answer."""
    settings.MESSENGER_HANDOVER_APP_ID = ""
    Conversation.objects.create(page_id=PAGE, psid="someone-else", device_id="d-else")
    body = load_fixture("postback")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = int(time.time() * 1000)
    item["postback"].update(payload="TALK_TO_HUMAN", title="Talk to a person")
    body["entry"][0]["id"], item["sender"]["id"], item["recipient"]["id"] = PAGE, PSID, PAGE
    post_webhook(body)
    run_worker()
    post_webhook(user_text("hello?? anyone there", "m_after"))
    run_worker()

    conversation = Conversation.objects.get(psid=PSID)
    assert conversation.waiting_since is not None
    assert InboundMessage.objects.get(mid="m_after").status == InboundMessage.Status.HANDED_OVER
    assert [b["message"]["text"] for b in sent_messages(thread_api)] == [texts.HANDOVER_NOTICE]
    listing = admin_client.get(reverse("admin:conversations_conversation_changelist"))
    assert [c.psid for c in listing.context["cl"].result_list] == [PSID, "someone-else"]


def test_give_back_button_resumes_the_bot(post_webhook, thread_api, settings, admin_client):
    """After "Give back to the bot" on the conversation page, the user's next message is answered."""
    settings.MESSENGER_HANDOVER_APP_ID = ""
    post_webhook(user_text("I want a human", "m_1"))
    run_worker()
    conversation = Conversation.objects.get()
    admin_client.post(reverse("admin:conversations_conversation_give_back", args=[conversation.pk]))
    post_webhook(user_text("hello", "m_2"))
    run_worker()

    conversation.refresh_from_db()
    assert (conversation.status, conversation.waiting_since) == ("active", None)
    assert InboundMessage.objects.get(mid="m_2").status == InboundMessage.Status.ANSWERED
    assert len(sent_messages(thread_api)) == 2


def test_standby_message_is_recorded_and_not_answered(post_webhook, thread_api):
    """A message while another app owns the thread: a final row and a transcript line, no job, no send."""
    post_webhook(fresh("standby"))
    run_worker()

    row = InboundMessage.objects.get()
    assert (row.status, row.status_reason) == ("handed_over", "standby: another app has the thread")
    assert get_queue("messenger_fast").count == 0
    assert sent_messages(thread_api) == []
    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.HANDED_OVER
    assert list(conversation.messages.values_list("text", "role")) == [
        ("hello while another app owns the thread", "user")
    ]


def test_pass_thread_control_to_us_gives_the_conversation_back(post_webhook, thread_api):
    """Control passed back to our app: the bot has the conversation and answers again."""
    held_conversation(PAGE_INBOX)
    post_webhook(fresh("pass_thread_control", new_owner_app_id=OUR_APP))
    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.thread_owner_app_id) == ("active", "")
    assert conversation.messages.get().role == Message.Role.NOTE

    post_webhook(user_text("hello", "m_1"))
    run_worker()
    assert InboundMessage.objects.get().status == InboundMessage.Status.ANSWERED


def test_take_thread_control_silences_the_bot(post_webhook, thread_api):
    """Another app took the thread: the conversation is handed over and the bot does not answer."""
    post_webhook(user_text("hello", "m_1"))
    run_worker()
    post_webhook(fresh("take_thread_control"))
    post_webhook(user_text("hello again", "m_2"))
    run_worker()
    assert Conversation.objects.get().status == Conversation.Status.HANDED_OVER
    assert InboundMessage.objects.get(mid="m_2").status == InboundMessage.Status.HANDED_OVER
    assert len(sent_messages(thread_api)) == 1


def test_give_back_from_admin_takes_thread_control(admin_client, thread_api):
    """Staff give back a conversation another app holds: take_thread_control, then the bot has it."""
    conversation = held_conversation(PAGE_INBOX)
    url = reverse("admin:conversations_conversation_changelist")
    admin_client.post(url, {"action": "give_back", "_selected_action": [conversation.pk]})

    assert thread_calls(thread_api, "take_thread_control") == [
        {"recipient": {"id": PSID}, "metadata": "Staff gave the conversation back to the bot."}
    ]
    conversation.refresh_from_db()
    assert (conversation.status, conversation.thread_owner_app_id, conversation.waiting_since) == ("active", "", None)
    assert conversation.messages.get().author == "admin"


def test_standby_attachment_is_kept_with_its_attachments(post_webhook, thread_api):
    """A picture sent while another app owns the thread is kept as an attachments row, unanswered."""
    body = fresh("standby")
    message = body["entry"][0]["standby"][0]["message"]
    message.pop("text")
    message["attachments"] = [{"type": "image", "payload": {"url": "https://cdn.example/p.jpg"}}]
    post_webhook(body)
    row = InboundMessage.objects.get()
    assert (row.kind, row.status, row.attachments) == ("attachments", "handed_over", message["attachments"])
    assert Message.objects.get().attachments == message["attachments"]
    assert sent_messages(thread_api) == []
