"""Tests of messenger/inbox_view.py: what the staff inbox shows about the channel (issue 17).

A failed reply's plain reason, Facebook's trace id and the inbound row's link in the transcript; a
failed reply puts the conversation in the waiting queue; the staff reply box's three answers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation
from messenger.inbox_view import reason_plain, staff_reply_preview
from messenger.models import InboundMessage, OutboundPart
from tests.messenger.helpers import GRAPH, load_fixture_graph, run_worker, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]

PSID = "1256217357730577"


@pytest.fixture
def graph_refusing_551():
    """The Send API answers 551 "This person isn't available right now", fbtrace_id G3GRmtpZiq6."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, GRAPH, json=load_fixture_graph("send_error_user_unavailable"), status=400)
        yield mock


def test_failed_reply_reason_and_trace_id_appear_in_transcript(post_webhook, graph_refusing_551, admin_client):
    """A 551: the part keeps the trace id; the transcript marks the message with a sentence and a link."""
    post_webhook(text_body("hello there", mid="m_551"))
    run_worker()

    row = InboundMessage.objects.get(mid="m_551")
    assert (row.status, row.status_reason) == ("failed", "recipient: recipient_unavailable (code 551)")
    assert OutboundPart.objects.get(inbound=row, position=0).fbtrace_id == "G3GRmtpZiq6"
    conversation = Conversation.objects.get()
    body = admin_client.get(reverse("admin:conversations_conversation_change", args=[conversation.pk])).content
    body = body.decode()

    assert (
        '<strong style="color:#d93025">Failed</strong>: The user can&#x27;t receive messages from the page '
        "(blocked it, or the account is gone)."
    ) in body
    assert "Facebook trace id <code>G3GRmtpZiq6</code>" in body
    assert f'<a href="{reverse("admin:messenger_inboundmessage_change", args=[row.id])}">inbound row</a>' in body


def test_failed_reply_puts_conversation_in_waiting_queue(post_webhook, graph_refusing_551):
    """A reply that could not be sent asks a person to answer instead: ``waiting_since`` is set."""
    post_webhook(text_body("hello there", mid="m_551_wait"))
    run_worker()

    assert Conversation.objects.get().waiting_since is not None


@pytest.mark.parametrize(
    ("status", "reason", "sentence"),
    [
        (
            "failed",
            "gave up after 3 attempts: transient (code 2)",
            "Sending kept failing, so the bot gave up on this reply.",
        ),
        (
            "deferred",
            "the Send API circuit is open",
            "Facebook is failing right now; the reply will be retried automatically.",
        ),
        (
            "expired",
            "outside the 24-hour messaging window; waiting for a person",
            "The message came too late for the bot (over 24 hours): a person must answer.",
        ),
        ("handed_over", "a human has this conversation", "Staff has this conversation, so the bot did not answer."),
        ("failed", "something new", "The reply could not be sent."),
    ],
)
def test_reason_plain_maps_developer_text_to_sentence(status, reason, sentence):
    assert reason_plain(status=status, reason=reason) == sentence


def _conversation_with_last_message(age: timedelta | None) -> Conversation:
    conversation = Conversation.objects.create(page_id="p1", psid="u1", device_id="d1")
    if age is not None:
        sent = timezone.now() - age
        InboundMessage.objects.create(
            mid=f"m_{age}",
            page_id="p1",
            psid="u1",
            kind="text",
            text="hi",
            fb_timestamp=int(sent.timestamp() * 1000),
            status="answered",
            received_at=sent,
        )
    return conversation


@pytest.mark.parametrize(
    ("age", "ok", "message"),
    [
        (timedelta(hours=1), True, "Goes as a normal reply (within 24 hours of the user's last message)."),
        (timedelta(days=3), True, "Goes with the HUMAN_AGENT tag (24 hours to 7 days since the user's last message)."),
        (timedelta(days=8), False, "Can't be sent: "),
    ],
)
def test_staff_reply_preview_follows_window_rule(age, ok, message):
    outcome = staff_reply_preview(conversation=_conversation_with_last_message(age))
    assert outcome.ok is ok
    assert outcome.message.startswith(message)
