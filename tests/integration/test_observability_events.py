"""The pipeline's observability events, end to end: signed webhook, then the job run synchronously.

A text message is posted, signed, to the real V2 webhook (views -> inbox -> ``message_received``),
then the rq job ``messenger.jobs.process_inbound`` runs in-process on the kept row (pipeline ->
rules engine -> formatter -> Send API -> signals). The only mocked boundary is Facebook's Send API
(``responses``); database and Redis are real.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
import responses
from django.conf import settings
from django.db import connection
from django.test import override_settings

from messenger.jobs import process_inbound
from messenger.models import InboundMessage
from observability.hashing import hash_psid
from observability.models import Event
from observability.selectors import report_build
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db

GRAPH_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
SECRET = "test-app-secret"


def _graph(name: str) -> dict:
    return json.loads((GRAPH_FIXTURES / f"{name}.json").read_text())


def _fresh_text_message(text: str = "hello") -> tuple[dict, str]:
    """The text_message fixture sent by Facebook 800 ms ago (inside the messaging window), and its PSID."""
    body = load_fixture("text_message")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = int(time.time() * 1000) - 800
    item["message"]["text"] = text
    return body, item["sender"]["id"]


def _join_sender_action_threads() -> None:
    """Wait for the pipeline's background mark_seen/typing_on thread before the HTTP mock goes away."""
    for thread in threading.enumerate():
        if thread.name == "sender-actions":
            thread.join(timeout=5)


@pytest.fixture
def send_api():
    """Facebook's Send API, mocked: sender actions succeed; messages get ``send_api.answer``."""
    state = {"answer": (200, _graph("send_success"))}

    def reply(request):
        body = json.loads(request.body)
        if "sender_action" in body:
            return 200, {}, json.dumps(_graph("send_success_sender_action"))
        status, answer = state["answer"]
        return status, {}, json.dumps(answer)

    with (
        override_settings(MESSENGER_PAGE_ACCESS_TOKEN="test-page-token", MESSENGER_APP_SECRET=SECRET),
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
    ):
        mock.add_callback(responses.POST, f"{settings.MESSENGER_GRAPH_API_URL}/me/messages", callback=reply,
                          content_type="application/json")
        yield state
        _join_sender_action_threads()


def _converse(post_webhook, text: str = "hello") -> InboundMessage:
    """Post one message through the webhook and run its job synchronously; the kept row."""
    body, _psid = _fresh_text_message(text)
    assert post_webhook(body).status_code == 200
    inbound = InboundMessage.objects.get()
    process_inbound(inbound.id)
    inbound.refresh_from_db()
    return inbound


def _types(inbound: InboundMessage) -> list[str]:
    journey = Event.objects.filter(inbound_id=inbound.id).order_by("id")
    return list(journey.values_list("event_type", flat=True))


def test_message_received_event_emitted(post_webhook):
    """A signed text message posted to the webhook records message_received with its references."""
    body, psid = _fresh_text_message()
    with override_settings(MESSENGER_APP_SECRET=SECRET):
        assert post_webhook(body).status_code == 200
    inbound = InboundMessage.objects.get()

    event = Event.objects.get(event_type=Event.Type.MESSAGE_RECEIVED)

    assert (event.mid, event.inbound_id) == (inbound.mid, inbound.id)
    assert event.psid_hash == hash_psid(psid)
    assert event.platform == "messenger"
    assert event.latency_ms is not None and event.latency_ms >= 0
    assert event.detail == {"kind": "text"}


def test_response_sent_event_emitted(post_webhook, send_api):
    """A message answered through the Send API records response_sent with parts and end-to-end times."""
    inbound = _converse(post_webhook)

    assert inbound.status == InboundMessage.Status.ANSWERED
    assert _types(inbound) == ["message_received", "intent_classified", "response_generated", "response_sent"]
    event = Event.objects.get(event_type=Event.Type.RESPONSE_SENT)
    assert event.mid == inbound.mid
    assert event.conversation_id == inbound.conversation_id is not None
    assert event.detail["part_count"] == inbound.parts.count() >= 1
    # Facebook stamped the message 800 ms before we received it.
    assert event.detail["end_to_end_ms"] >= event.detail["since_receipt_ms"] + 700
    generated = Event.objects.get(event_type=Event.Type.RESPONSE_GENERATED).detail
    classified = Event.objects.get(event_type=Event.Type.INTENT_CLASSIFIED).detail
    assert generated["intent"] == classified["intent"] == inbound.intent == "greeting"
    assert classified["confidence"] == inbound.confidence
    assert generated["timed_out"] is False


def test_send_api_error_event_emitted(post_webhook, send_api):
    """Facebook's 'person not available' answer records send_failed with its kind and code."""
    send_api["answer"] = (400, _graph("send_error_user_unavailable"))

    inbound = _converse(post_webhook)

    assert inbound.status == InboundMessage.Status.FAILED
    event = Event.objects.get(event_type=Event.Type.SEND_FAILED)
    assert event.detail == {"error_kind": "recipient_unavailable", "error_code": 551}
    assert event.inbound_id == inbound.id
    assert not Event.objects.filter(event_type=Event.Type.RESPONSE_SENT).exists()
    assert report_build(minutes=60)["success"] == {"needed_reply": 1, "replied": 0, "rate": 0.0}


def test_processing_latency_recorded(post_webhook, send_api):
    """Every step records its latency and the report gives the percentiles back, end to end included."""
    inbound = _converse(post_webhook)

    events = {e.event_type: e for e in Event.objects.filter(inbound_id=inbound.id)}
    report = report_build(minutes=60)

    for event_type, event in events.items():
        assert event.latency_ms is not None and event.latency_ms >= 0, event_type
        assert report["latency_ms"][event_type]["p50"] == pytest.approx(event.latency_ms, abs=1e-3)
    sent = events[Event.Type.RESPONSE_SENT].detail
    assert report["end_to_end_ms"]["from_facebook"]["p99"] == pytest.approx(sent["end_to_end_ms"], abs=1e-3)
    since_receipt = sent["since_receipt_ms"]
    assert report["end_to_end_ms"]["since_receipt"]["p50"] == pytest.approx(since_receipt, abs=1e-3)
    assert report["success"] == {"needed_reply": 1, "replied": 1, "rate": 1.0}


def test_full_conversation_leaves_no_raw_psid_in_events_or_logs(post_webhook, send_api, caplog):
    """After a whole conversation neither the events table nor any captured log record holds the PSID."""
    _body, psid = _fresh_text_message()
    with caplog.at_level(logging.DEBUG):
        _converse(post_webhook, "hi, what can you do?")
        _join_sender_action_threads()

    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(e)::text FROM observability_event e")
        rows = [row[0] for row in cursor.fetchall()]
    assert len(rows) == 4
    assert not [row for row in rows if psid in row]
    assert caplog.records  # the webhook and the pipeline did log
    assert psid not in caplog.text
    leaking = [r.getMessage() for r in caplog.records if psid in json.dumps(vars(r), default=str)]
    assert leaking == []
