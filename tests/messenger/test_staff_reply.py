"""Tests for messenger/staff_reply.py: a staff reply from the admin change page to the Send API.

Through the real admin page (Django test client, POST with ``staff_reply``), the rq job run by a
SimpleWorker on real Redis, and the exact Send API body checked with ``responses``.
"""

from __future__ import annotations

import time

import pytest
import responses
from django.urls import reverse

from conversations.models import Conversation, Message
from conversations.services import device_id_for
from messenger import circuit
from messenger.models import InboundMessage, StaffReply
from messenger.queues import get_queue
from messenger.staff_reply import staff_reply_send
from tests.messenger.helpers import GRAPH, load_fixture_graph, run_worker, sent_messages

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]

PAGE_ID, PSID = "1717527131834678", "1256217357730577"
HOUR_MS = 3600 * 1000


def user_wrote(*, hours_ago: float, waiting: bool = False) -> Conversation:
    """A conversation whose user's last kept message is ``hours_ago`` old."""
    conversation = Conversation.objects.create(
        page_id=PAGE_ID, psid=PSID, device_id=device_id_for(page_id=PAGE_ID, psid=PSID)
    )
    if waiting:
        Conversation.objects.filter(pk=conversation.pk).update(waiting_since=conversation.started_at)
    InboundMessage.objects.create(
        mid=f"m_user_{hours_ago}",
        page_id=PAGE_ID,
        psid=PSID,
        kind=InboundMessage.Kind.TEXT,
        text="hello?",
        fb_timestamp=int(time.time() * 1000 - hours_ago * HOUR_MS),
        status=InboundMessage.Status.ANSWERED,
        conversation=conversation,
    )
    return conversation


def post_staff_reply(admin_client, django_capture_on_commit_callbacks, conversation, text):
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"staff_reply": text, "_continue": "Save and continue editing"}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_staff_reply_within_24_hours_goes_as_response(admin_client, django_capture_on_commit_callbacks, graph):
    """Inside the standard window the staff text goes untagged, and the transcript names the author."""
    conversation = user_wrote(hours_ago=2, waiting=True)

    notes = post_staff_reply(admin_client, django_capture_on_commit_callbacks, conversation, "Hi, Ana here.")
    run_worker()

    assert notes == ["Staff reply queued: it goes to the user as a reply in a moment."]
    assert sent_messages(graph) == [
        {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "Hi, Ana here."}}
    ]
    message = Message.objects.get(conversation=conversation)
    assert (message.direction, message.role, message.author) == ("out", "staff", "admin")
    assert message.text == "Hi, Ana here."
    assert message.fb_message_id == load_fixture_graph("send_success")["message_id"]
    reply = StaffReply.objects.get()
    assert (reply.status, reply.messaging_type, reply.tag) == ("sent", "RESPONSE", "")
    conversation.refresh_from_db()
    assert conversation.waiting_since is None


def test_staff_reply_between_24_hours_and_7_days_goes_with_human_agent_tag(
    admin_client, django_capture_on_commit_callbacks, graph
):
    """From 24 hours to 7 days the reply is a MESSAGE_TAG with HUMAN_AGENT, the only tag there is."""
    conversation = user_wrote(hours_ago=50)

    notes = post_staff_reply(admin_client, django_capture_on_commit_callbacks, conversation, "Sorry for the wait!")
    run_worker()

    assert notes == [
        "Staff reply queued: it goes to the user with the HUMAN_AGENT tag (24 hours to 7 days) in a moment."
    ]
    assert sent_messages(graph) == [
        {
            "recipient": {"id": PSID},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": "Sorry for the wait!"},
        }
    ]
    assert StaffReply.objects.get().status == StaffReply.Status.SENT


def test_staff_reply_after_7_days_is_refused_and_nothing_sent(admin_client, django_capture_on_commit_callbacks, graph):
    """Beyond 7 days the admin says why, and nothing is stored, queued or sent."""
    conversation = user_wrote(hours_ago=7 * 24 + 1)

    notes = post_staff_reply(admin_client, django_capture_on_commit_callbacks, conversation, "Still there?")
    run_worker()

    assert notes == [
        "Not sent: the user's last message is more than 7 days old, so Facebook allows no reply "
        "(not even with the HUMAN_AGENT tag) until they write again."
    ]
    assert StaffReply.objects.count() == 0
    assert get_queue("messenger_fast").count == 0
    assert sent_messages(graph) == []
    assert Message.objects.count() == 0


def test_empty_staff_reply_sends_nothing(admin_client, django_capture_on_commit_callbacks, graph):
    """Saving the page without text queues nothing and says so."""
    conversation = user_wrote(hours_ago=1)
    notes = post_staff_reply(admin_client, django_capture_on_commit_callbacks, conversation, "   ")
    assert notes == ["Nothing sent: the staff reply was empty."]
    assert StaffReply.objects.count() == 0


def test_staff_reply_on_open_circuit_is_deferred_and_sent_later(
    admin_client, django_capture_on_commit_callbacks, graph
):
    """The staff send is circuit-aware: refused while open, the job is scheduled again, then it goes."""
    conversation = user_wrote(hours_ago=1)
    post_staff_reply(admin_client, django_capture_on_commit_callbacks, conversation, "One moment")
    breaker = circuit.get_breaker(page_id=conversation.page_id)
    for _ in range(10):
        breaker.record_failure(breaker.acquire())

    run_worker()

    reply = StaffReply.objects.get()
    assert reply.status == StaffReply.Status.DEFERRED
    assert sent_messages(graph) == []
    assert f"staff-reply-{reply.pk}" in get_queue("messenger_fast").scheduled_job_registry.get_job_ids()
    breaker.reset()
    assert staff_reply_send(staff_reply_id=reply.pk) == StaffReply.Status.SENT
    assert [b["message"]["text"] for b in sent_messages(graph)] == ["One moment"]


def test_staff_reply_whose_window_closed_while_queued_fails_unsent(graph):
    """The job applies the rule again: a reply queued in time but run after 7 days is not sent."""
    conversation = user_wrote(hours_ago=7 * 24 + 2)
    reply = StaffReply.objects.create(
        conversation=conversation, page_id=PAGE_ID, psid=PSID, text="late", author="ana", messaging_type="MESSAGE_TAG"
    )
    assert staff_reply_send(staff_reply_id=reply.pk) == StaffReply.Status.FAILED
    reply.refresh_from_db()
    assert reply.status_reason.startswith("Not sent: the user's last message is more than 7 days old")
    assert sent_messages(graph) == []


def test_staff_reply_permanent_error_fails_with_the_reason(admin_client, django_capture_on_commit_callbacks):
    """Facebook refusing the recipient ends the reply as failed; nothing reaches the transcript."""
    conversation = user_wrote(hours_ago=1)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, GRAPH, status=400, json=load_fixture_graph("send_error_user_unavailable"))
        post_staff_reply(admin_client, django_capture_on_commit_callbacks, conversation, "Hello")
        run_worker()
    reply = StaffReply.objects.get()
    assert reply.status == StaffReply.Status.FAILED
    assert reply.status_reason.startswith("recipient_unavailable")
    assert Message.objects.count() == 0


def test_staff_reply_admin_lists_replies_read_only(admin_client, graph):
    """Staff see each reply's status in the admin, and can't add one there."""
    conversation = user_wrote(hours_ago=1)
    StaffReply.objects.create(conversation=conversation, page_id=PAGE_ID, psid=PSID, text="hi", author="ana")
    listing = admin_client.get(reverse("admin:messenger_staffreply_changelist"))
    add = admin_client.get(reverse("admin:messenger_staffreply_add"))
    assert listing.status_code == 200 and "ana" in listing.content.decode()
    assert add.status_code == 403
