"""Tests for messenger/echoes.py: an echo carrying a part's token settles the part as delivered.

End to end through the webhook and a worker, the Graph API mocked with ``responses``: a send that
Facebook accepted but answered too late is settled by its echo and never sent again.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import responses

from conversations.models import Conversation, Message
from messenger.jobs import process_inbound
from messenger.models import InboundMessage, OutboundPart
from messenger.queues import get_queue
from tests.messenger.helpers import GRAPH, load_fixture_graph, run_worker, sent_tokens, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]

PAGE = "516746941531643"


def echo(token: str, *, mid: str, psid: str = "1256217357730577", text: str = "an answer") -> dict:
    """Facebook's echo of a message the page sent, carrying the Send API's ``metadata``."""
    message = {"is_echo": True, "app_id": 1234567890, "mid": mid, "text": text}
    if token:
        message["metadata"] = token
    ts = int(time.time() * 1000)
    item = {"sender": {"id": PAGE}, "recipient": {"id": psid}, "timestamp": ts, "message": message}
    return {"object": "page", "entry": [{"id": PAGE, "time": ts, "messaging": [item]}]}


@pytest.fixture
def first_send_times_out():
    """The Send API: the first message send is accepted but answered after the client's timeout."""
    calls = {"messages": 0}

    def answer(request):
        if "message" in json.loads(request.body):
            calls["messages"] += 1
            if calls["messages"] == 1:
                raise requests.ReadTimeout("Read timed out. (read timeout=5.0)")
        return 200, {}, json.dumps(load_fixture_graph("send_success"))

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, GRAPH, callback=answer)
        yield mock


def test_send_accepted_after_timeout_is_not_resent(post_webhook, first_send_times_out):
    """The send timed out but Facebook delivered it: parked, its echo settles it, never sent again."""
    graph = first_send_times_out
    post_webhook(text_body("hello"))
    run_worker()
    row = InboundMessage.objects.get()
    first = OutboundPart.objects.get(inbound=row, position=0)
    assert row.status == InboundMessage.Status.DEFERRED
    assert row.status_reason == "part 0 in doubt: waiting for its echo"
    assert first.status == OutboundPart.Status.SENDING and first.error_kind == "in_doubt"
    assert get_queue("messenger_fast").scheduled_job_registry.get_job_ids() == [row.job_id]
    assert sent_tokens(graph) == [first.token]

    post_webhook(echo(first.token, mid="m_echo_first"))
    first.refresh_from_db()
    assert (first.status, first.fb_message_id) == (OutboundPart.Status.SENT, "m_echo_first")
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.QUEUED  # woken: the rest of the reply goes on now
    run_worker()

    row.refresh_from_db()
    assert row.status == InboundMessage.Status.ANSWERED
    tokens = sent_tokens(graph)
    parts = list(OutboundPart.objects.filter(inbound=row).order_by("position"))
    assert tokens == [part.token for part in parts]  # each part sent exactly once
    assert all(part.status == OutboundPart.Status.SENT for part in parts)
    outbound = Message.objects.filter(conversation__psid=row.psid, direction="out")
    assert outbound.count() == len(parts)
    assert outbound.filter(fb_message_id="m_echo_first").count() == 1


def test_echo_marks_part_delivered(post_webhook):
    """An echo whose metadata is a part's token marks that part sent with the echo's mid, and writes
    its transcript line once; echoes of other messages (no token, someone else's) change nothing."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, GRAPH, body=requests.ReadTimeout("Read timed out."))
        post_webhook(text_body("hello"))
        run_worker()
    part = OutboundPart.objects.get(position=0)
    assert part.status == OutboundPart.Status.SENDING

    post_webhook(echo("", mid="m_page_inbox"))  # typed by staff in the Page Inbox
    post_webhook(echo("cb1.not-one-of-ours", mid="m_other"))
    part.refresh_from_db()
    assert part.status == OutboundPart.Status.SENDING

    post_webhook(echo(part.token, mid="m_echo_1"))
    post_webhook(echo(part.token, mid="m_echo_1"))  # Facebook redelivers
    part.refresh_from_db()
    assert (part.status, part.fb_message_id) == (OutboundPart.Status.SENT, "m_echo_1")
    conversation = Conversation.objects.get()
    assert Message.objects.filter(conversation=conversation, direction="out", fb_message_id="m_echo_1").count() == 1
    assert InboundMessage.objects.count() == 1  # echoes are never kept as user messages


def test_in_doubt_part_without_echo_is_resent_after_the_wait(post_webhook, first_send_times_out, settings):
    """No echo within MESSENGER_ECHO_WAIT_MS (the page not subscribed to message_echoes, or the echo
    lost): the part is sent again, the same token, once: at least once."""
    settings.MESSENGER_ECHO_WAIT_MS = 200
    post_webhook(text_body("hello"))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.DEFERRED
    time.sleep(0.3)
    process_inbound(row.id)  # the scheduled job
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.ANSWERED
    first = OutboundPart.objects.get(inbound=row, position=0)
    tokens = sent_tokens(first_send_times_out)
    assert tokens.count(first.token) == 2
    assert len(tokens) == OutboundPart.objects.filter(inbound=row).count() + 1


def test_in_doubt_part_is_not_resent_before_the_wait(post_webhook, first_send_times_out, settings):
    """A run before the wait has passed (the job came early) parks again and sends nothing."""
    settings.MESSENGER_ECHO_WAIT_MS = 60_000
    post_webhook(text_body("hello"))
    run_worker()
    row = InboundMessage.objects.get()
    InboundMessage.objects.filter(id=row.id).update(not_before=None, status=InboundMessage.Status.QUEUED)
    process_inbound(row.id)
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.DEFERRED
    assert len(sent_tokens(first_send_times_out)) == 1


def test_sent_despite_error_1357046_is_in_doubt_and_not_resent(post_webhook):
    """Facebook's 1/1357046 ("sent, but an error came back"): one call, no retry, the part in doubt."""
    body = {"error": {"message": "sent despite an error", "code": 1, "error_subcode": 1357046, "fbtrace_id": "t"}}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, GRAPH, status=500, json=body)
        post_webhook(text_body("hello"))
        run_worker()
        message_calls = sent_tokens(mock)
    part = OutboundPart.objects.get(position=0)
    assert len(message_calls) == 1
    assert part.status == OutboundPart.Status.SENDING
    assert InboundMessage.objects.get().status == InboundMessage.Status.DEFERRED
