"""Tests for observability/receivers.py: one Event per pipeline signal, with the right detail."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from observability import signals
from observability.hashing import hash_psid
from observability.models import Event
from tests.observability.helpers import RAW_PSID, make_inbound, send_journey

pytestmark = pytest.mark.django_db

CASES = [
    (signals.message_received, {"latency_ms": 4.0}, Event.Type.MESSAGE_RECEIVED, 4.0,
     {"kind": "text"}),
    (signals.intent_classified, {"intent": "greeting", "confidence": 0.92, "latency_ms": 12.5},
     Event.Type.INTENT_CLASSIFIED, 12.5, {"intent": "greeting", "confidence": 0.92}),
    (signals.response_generated,
     {"intent": "faq_hours", "part_count": 3, "latency_ms": 30.0, "timed_out": True},
     Event.Type.RESPONSE_GENERATED, 30.0, {"intent": "faq_hours", "part_count": 3, "timed_out": True}),
    (signals.response_sent,
     {"part_count": 3, "latency_ms": 210.0, "end_to_end_ms": 1500.0, "since_receipt_ms": 700.0},
     Event.Type.RESPONSE_SENT, 210.0,
     {"part_count": 3, "end_to_end_ms": 1500.0, "since_receipt_ms": 700.0}),
    (signals.send_failed, {"error_kind": "rate_limited", "error_code": 613, "latency_ms": 140.0},
     Event.Type.SEND_FAILED, 140.0, {"error_kind": "rate_limited", "error_code": 613}),
    (signals.message_deferred, {"reason": "circuit_open", "retry_in_ms": 30000},
     Event.Type.MESSAGE_DEFERRED, None, {"reason": "circuit_open", "retry_in_ms": 30000}),
    (signals.message_expired, {"reason": "outside_window"}, Event.Type.MESSAGE_EXPIRED, None,
     {"reason": "outside_window"}),
    (signals.message_unreadable, {"reason": "entry[0].messaging[0].message.text must be a string"},
     Event.Type.MESSAGE_UNREADABLE, None, {"reason": "entry[0].messaging[0].message.text must be a string"}),
]


@pytest.mark.parametrize(("signal", "kwargs", "event_type", "latency", "detail"), CASES,
                         ids=[case[2] for case in CASES])
def test_signal_records_one_event_with_its_detail(signal, kwargs, event_type, latency, detail):
    """Each pipeline signal becomes exactly one Event with its type, latency and detail."""
    inbound = make_inbound()

    signals.send_safely(signal, sender="tests", inbound=inbound, **kwargs)

    event = Event.objects.get()
    assert event.event_type == event_type
    assert event.latency_ms == latency
    assert event.detail == detail


def test_signal_event_carries_message_references_and_hashed_psid():
    """An event names its inbound message, mid and conversation, and the hashed (not raw) PSID."""
    from conversations.models import Conversation

    conversation = Conversation.objects.create(page_id="1", psid=RAW_PSID, device_id="dev-1")
    inbound = make_inbound(conversation=conversation)

    signals.send_safely(signals.message_received, sender="tests", inbound=inbound, latency_ms=None)

    event = Event.objects.get()
    assert event.platform == "messenger"
    assert event.inbound_id == inbound.id
    assert event.mid == inbound.mid
    assert event.conversation_id == conversation.id
    assert event.psid_hash == hash_psid(RAW_PSID)
    assert event.latency_ms is None


def test_response_sent_without_latencies_computes_them_from_timestamps():
    """When the sender gives no end-to-end figures they are computed from Facebook's and our times."""
    received_at = timezone.now() - timedelta(seconds=2)
    inbound = make_inbound(received_at=received_at)

    signals.send_safely(signals.response_sent, sender="tests", inbound=inbound, part_count=1,
                        latency_ms=5.0, end_to_end_ms=None, since_receipt_ms=None)

    detail = Event.objects.get().detail
    assert 2000 <= detail["since_receipt_ms"] < 60_000
    assert detail["end_to_end_ms"] >= detail["since_receipt_ms"] + 800 - 1


def test_failing_receiver_does_not_stop_event_recording(caplog):
    """A receiver that raises is logged by send_safely while ours still records the event."""

    def broken(sender, **kwargs):
        raise RuntimeError("boom")

    signals.message_received.connect(broken, dispatch_uid="tests.broken")
    try:
        inbound = make_inbound()
        with caplog.at_level(logging.ERROR, logger="messenger.signals"):
            signals.send_safely(signals.message_received, sender="tests", inbound=inbound,
                                latency_ms=3.0)
    finally:
        signals.message_received.disconnect(dispatch_uid="tests.broken")

    assert Event.objects.filter(event_type=Event.Type.MESSAGE_RECEIVED, inbound_id=inbound.id).exists()
    ours = [r.getMessage() for r in caplog.records if r.name == "messenger.signals"]
    assert ours == ["messenger.signals.receiver-failed"]


def test_failed_event_insert_does_not_raise_to_the_sender(caplog):
    """An insert that the database refuses is logged as record-failed and the sender goes on."""
    inbound = make_inbound()
    inbound.mid = "m_" + "x" * 300  # longer than Event.mid's 255 characters: PostgreSQL refuses it

    with caplog.at_level(logging.ERROR, logger="observability.events"):
        signals.send_safely(signals.message_received, sender="tests", inbound=inbound, latency_ms=1.0)

    assert not Event.objects.exists()
    failures = [r for r in caplog.records if r.getMessage() == "observability.event.record-failed"]
    assert len(failures) == 1
    assert failures[0].error_type == "DataError"
    # send_safely saw no exception: our receiver swallowed and logged it.
    assert not [r for r in caplog.records if r.getMessage() == "messenger.signals.receiver-failed"]


def test_events_table_holds_no_raw_psid_after_a_conversation():
    """After a full journey (sent and failed), no column of any event row contains the raw PSID."""
    send_journey(make_inbound())
    send_journey(make_inbound(), failed=True)
    signals.send_safely(signals.message_deferred, sender="tests", inbound=make_inbound(),
                        reason="circuit_open", retry_in_ms=1000)
    signals.send_safely(signals.message_expired, sender="tests", inbound=make_inbound(),
                        reason="outside_window")

    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(e)::text FROM observability_event e")
        rows = [row[0] for row in cursor.fetchall()]

    assert len(rows) == 10
    assert all(RAW_PSID not in row for row in rows)
    assert all(hash_psid(RAW_PSID) in row for row in rows)
