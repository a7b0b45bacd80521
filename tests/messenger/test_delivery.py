"""Tests for messenger/delivery.py: parts sent one by one and recorded, and the failure policy.

End to end through the webhook and a worker, as in test_pipeline.py; the Graph API's answers decide
what happens to the message.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import responses
from django.test import override_settings
from django.utils import timezone

from conversations.models import Conversation
from messenger import send_api
from messenger.circuit import get_breaker
from messenger.delivery import MESSAGING_WINDOW, PARKED_RETRY_MS, parts_send, window_closed
from messenger.jobs import process_inbound
from messenger.models import InboundMessage, OutboundPart
from messenger.queues import get_queue
from messenger.send_api import SendErrorKind, SendResult
from messenger.services import outbound_part_create_many
from tests.messenger.helpers import GRAPH, load_fixture_graph, run_worker, sent_messages, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]


def test_message_put_back_midway_sends_only_missing_parts(post_webhook, graph):
    """A message with its first part sent and the second not: a re-run sends only the second."""
    post_webhook(text_body("hello"))
    row = InboundMessage.objects.get()
    Conversation.objects.create(page_id=row.page_id, psid=row.psid, device_id="d")
    OutboundPart.objects.create(inbound=row, position=0, body={"text": "one"}, status="sent")
    OutboundPart.objects.create(inbound=row, position=1, body={"text": "two"})
    InboundMessage.objects.filter(id=row.id).update(
        status="processing", conversation=Conversation.objects.get()
    )
    process_inbound(row.id)
    assert [b["message"] for b in sent_messages(graph)] == [{"text": "two"}]
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.ANSWERED


def test_recipient_unavailable_marks_conversation_unreachable(post_webhook):
    """Facebook's 'user unavailable' fails the message with its reason and marks the conversation unreachable."""
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, GRAPH, status=400, json=load_fixture_graph("send_error_user_unavailable"))
        post_webhook(text_body("hello"))
        run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.FAILED
    assert "recipient_unavailable" in row.status_reason
    assert Conversation.objects.get().status == Conversation.Status.UNREACHABLE


@override_settings(
    MESSENGER_CIRCUIT_FAILURE_THRESHOLD=1, MESSENGER_MAX_RETRIES=0, MESSENGER_CIRCUIT_COOLDOWN_MS=60000
)
def test_circuit_open_defers_message_and_delivers_after_close(post_webhook, graph):
    """An open circuit parks the message (deferred, scheduled); once it closes the message is delivered once."""
    graph.replace(responses.POST, GRAPH, status=500, json=load_fixture_graph("send_error_service_unavailable"))
    post_webhook(text_body("hello"))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.DEFERRED
    assert row.not_before is not None
    scheduled = get_queue("messenger_fast").scheduled_job_registry.get_job_ids()
    assert scheduled == [row.job_id]

    graph.replace(responses.POST, GRAPH, json=load_fixture_graph("send_success"))
    get_breaker(page_id=row.page_id).reset()  # one circuit per page
    InboundMessage.objects.filter(id=row.id).update(not_before=None)
    process_inbound(row.id)
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.ANSWERED
    assert len([b for b in sent_messages(graph)]) >= 1
    assert OutboundPart.objects.get().status == OutboundPart.Status.SENT


# --- the failure policy, part by part (the Send API client's answer given) ----------------------------


def _parked_message(ts_ms: int | None = None) -> tuple[InboundMessage, list[OutboundPart]]:
    inbound = InboundMessage.objects.create(
        mid="m_policy", page_id="p", psid="u", kind="text", queue_name="messenger_fast",
        fb_timestamp=ts_ms if ts_ms is not None else int(time.time() * 1000), status=InboundMessage.Status.PROCESSING,
    )
    parts = outbound_part_create_many(inbound=inbound, bodies=[{"text": "one"}, {"text": "two"}], intent="x",
                                      confidence=None)
    return inbound, parts


def _answer(monkeypatch, *results: SendResult) -> list[dict]:
    calls: list[dict] = []
    answers = iter(results)

    def send_message(*, psid, message, log_context, page_id=""):
        calls.append(message)
        return next(answers)

    monkeypatch.setattr(send_api, "send_message", send_message)
    return calls


def test_refused_message_fails_its_part_and_the_message(monkeypatch):
    """Facebook refusing the body (not the recipient) fails the part and the message, with the code."""
    inbound, parts = _parked_message()
    _answer(monkeypatch, SendResult(ok=False, error_kind=SendErrorKind.INVALID_REQUEST, error_code=100))
    assert parts_send(inbound=inbound, parts=parts) == InboundMessage.Status.FAILED
    inbound.refresh_from_db()
    assert inbound.status_reason == "Facebook refused the message: invalid_request (code 100)"
    assert list(OutboundPart.objects.values_list("status", "error_kind")) == [
        ("failed", "invalid_request"), ("pending", ""),
    ]


def test_transient_failure_after_retries_parks_and_schedules_the_job(monkeypatch):
    """The first part sent, the second failing transiently: parked for PARKED_RETRY_MS, its job scheduled."""
    inbound, parts = _parked_message()
    _answer(monkeypatch, SendResult(ok=True, message_id="m_fb_1"),
            SendResult(ok=False, error_kind=SendErrorKind.TRANSIENT, error_code=2))
    before = timezone.now()
    assert parts_send(inbound=inbound, parts=parts) == InboundMessage.Status.DEFERRED
    inbound.refresh_from_db()
    assert timedelta(milliseconds=PARKED_RETRY_MS) <= inbound.not_before - before < timedelta(seconds=35)
    assert inbound.status_reason == "send failed after retries: transient"
    assert list(OutboundPart.objects.values_list("status", flat=True)) == ["sent", "pending"]
    assert get_queue("messenger_fast").scheduled_job_registry.get_job_ids() == [inbound.job_id]


def test_park_past_the_messaging_window_expires_instead(monkeypatch):
    """A park that would end after Facebook's 24-hour window gives up: the message expires."""
    almost_a_day = int((time.time() - MESSAGING_WINDOW.total_seconds() + 10) * 1000)
    inbound, parts = _parked_message(ts_ms=almost_a_day)
    _answer(monkeypatch, SendResult(ok=False, error_kind=SendErrorKind.RATE_LIMITED, error_code=613))
    assert parts_send(inbound=inbound, parts=parts) == InboundMessage.Status.EXPIRED
    inbound.refresh_from_db()
    assert inbound.status_reason.startswith("gave up: send failed after retries: rate_limited")
    assert get_queue("messenger_fast").scheduled_job_registry.get_job_ids() == []


def test_outside_window_error_expires_the_message(monkeypatch):
    """Facebook saying the window is closed expires the message; the part fails."""
    inbound, parts = _parked_message()
    _answer(monkeypatch, SendResult(ok=False, error_kind=SendErrorKind.OUTSIDE_WINDOW, error_code=10))
    assert parts_send(inbound=inbound, parts=parts) == InboundMessage.Status.EXPIRED
    inbound.refresh_from_db()
    assert inbound.status_reason == "Facebook: outside the messaging window"
    assert OutboundPart.objects.get(position=0).status == OutboundPart.Status.FAILED


def test_window_closed_after_24_hours():
    """A reply is allowed for 24 hours after the user's message, not after."""
    inside = InboundMessage(fb_timestamp=int((time.time() - 23 * 3600) * 1000))
    outside = InboundMessage(fb_timestamp=int((time.time() - 25 * 3600) * 1000))
    assert not window_closed(inbound=inside)
    assert window_closed(inbound=outside)
