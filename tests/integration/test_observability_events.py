"""The pipeline's observability events, end to end through the signals of messenger/signals.py.

``message_received`` goes through the real signed webhook (views -> inbox -> signal -> receiver).
The job that classifies, generates and sends (messenger/jobs.py) is not in the tree yet, so the
later steps send their signals exactly as messenger/signals.py documents, on the row the webhook
kept; once the job exists these tests should run it synchronously instead.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from messenger import signals
from messenger.models import InboundMessage
from messenger.send_api import SendErrorKind
from observability.hashing import hash_psid
from observability.models import Event
from observability.selectors import report_build
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db

GRAPH_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
SENDER = "messenger.jobs"


def _psid_and_mid(fixture: str) -> tuple[str, str]:
    item = load_fixture(fixture)["entry"][0]["messaging"][0]
    return item["sender"]["id"], item["message"]["mid"]


@pytest.fixture
def received(post_webhook) -> InboundMessage:
    """The text_message fixture posted, signed, to the real V2 webhook: the kept inbound row."""
    with override_settings(MESSENGER_APP_SECRET="test-app-secret"):
        response = post_webhook("text_message")
    assert response.status_code == 200
    return InboundMessage.objects.get()


def _reply(inbound: InboundMessage) -> None:
    """The job's steps for a message that gets its reply, as messenger/signals.py documents them."""
    signals.send_safely(signals.intent_classified, sender=SENDER, inbound=inbound, intent="greeting",
                        confidence=0.87, latency_ms=11.0)
    signals.send_safely(signals.response_generated, sender=SENDER, inbound=inbound, intent="greeting",
                        part_count=2, latency_ms=42.0, timed_out=False)
    signals.send_safely(signals.response_sent, sender=SENDER, inbound=inbound, part_count=2,
                        latency_ms=180.0, end_to_end_ms=2300.0, since_receipt_ms=260.0)


def test_message_received_event_emitted(received):
    """A signed text message posted to the webhook records message_received with its references."""
    psid, mid = _psid_and_mid("text_message")

    event = Event.objects.get(event_type=Event.Type.MESSAGE_RECEIVED)

    assert event.mid == mid == received.mid
    assert event.inbound_id == received.id
    assert event.psid_hash == hash_psid(psid)
    assert event.platform == "messenger"
    assert event.latency_ms is not None and event.latency_ms >= 0
    assert event.detail == {"kind": "text"}


def test_response_sent_event_emitted(received):
    """A reply that went out records response_sent with its part count and both end-to-end times."""
    _reply(received)

    event = Event.objects.get(event_type=Event.Type.RESPONSE_SENT)

    assert (event.inbound_id, event.mid) == (received.id, received.mid)
    assert event.latency_ms == 180.0
    assert event.detail == {"part_count": 2, "end_to_end_ms": 2300.0, "since_receipt_ms": 260.0}
    journey = Event.objects.filter(inbound_id=received.id).order_by("id")
    types = list(journey.values_list("event_type", flat=True))
    assert types == ["message_received", "intent_classified", "response_generated", "response_sent"]


def test_send_api_error_event_emitted(received):
    """A Send API refusal (Facebook's page rate limit answer) records send_failed with kind and code."""
    answer = json.loads((GRAPH_FIXTURES / "send_error_page_rate_limit.json").read_text())

    signals.send_safely(signals.send_failed, sender=SENDER, inbound=received,
                        error_kind=SendErrorKind.RATE_LIMITED, error_code=answer["error"]["code"],
                        latency_ms=95.0)

    event = Event.objects.get(event_type=Event.Type.SEND_FAILED)
    assert event.detail == {"error_kind": "rate_limited", "error_code": 32}
    assert (event.inbound_id, event.latency_ms) == (received.id, 95.0)
    assert report_build(minutes=60)["success"] == {"needed_reply": 1, "replied": 0, "rate": 0.0}


def test_processing_latency_recorded(received):
    """Every step's latency is stored and the report gives it back, with the end-to-end figures."""
    _reply(received)

    latencies = dict(Event.objects.values_list("event_type", "latency_ms"))
    report = report_build(minutes=60)

    assert latencies["message_received"] >= 0
    assert (latencies["intent_classified"], latencies["response_generated"],
            latencies["response_sent"]) == (11.0, 42.0, 180.0)
    assert report["latency_ms"]["response_generated"]["p50"] == 42.0
    assert report["end_to_end_ms"]["from_facebook"]["p50"] == 2300.0
    assert report["end_to_end_ms"]["since_receipt"]["p50"] == 260.0
    assert report["success"] == {"needed_reply": 1, "replied": 1, "rate": 1.0}


def test_full_conversation_leaves_no_raw_psid_in_events_or_logs(post_webhook, caplog):
    """After a whole conversation neither the events table nor any captured log line holds the PSID."""
    psid, _mid = _psid_and_mid("text_message")
    with caplog.at_level(logging.DEBUG), override_settings(MESSENGER_APP_SECRET="test-app-secret"):
        assert post_webhook("text_message").status_code == 200
        received = InboundMessage.objects.get()
        _reply(received)
        signals.send_safely(signals.message_deferred, sender=SENDER, inbound=received,
                            reason="circuit_open", retry_in_ms=30000)
        signals.send_safely(signals.message_expired, sender=SENDER, inbound=received,
                            reason="outside_window")

    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(e)::text FROM observability_event e")
        rows = [row[0] for row in cursor.fetchall()]
    assert len(rows) == 6
    assert not [row for row in rows if psid in row]
    assert caplog.records  # the webhook and the pipeline did log
    assert psid not in caplog.text
    assert not [r for r in caplog.records if psid in json.dumps(vars(r), default=str)]
