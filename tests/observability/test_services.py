"""Tests for observability/services.py: event_record never raises and never stores a raw PSID."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from observability.hashing import hash_psid
from observability.models import Event
from observability.services import event_record, events_buffered, events_forget, events_prune
from tests.observability.helpers import RAW_PSID

pytestmark = pytest.mark.django_db


def _inbound(**overrides):
    fields = {"id": 41, "mid": "m_service", "psid": RAW_PSID, "conversation_id": 7}
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_event_record_stores_references_and_hash_not_psid():
    """The event keeps id, mid, conversation and the keyed hash of the PSID, never the PSID."""
    event = event_record(event_type=Event.Type.MESSAGE_RECEIVED, inbound=_inbound(), latency_ms=2)

    event.refresh_from_db()
    assert (event.inbound_id, event.mid, event.conversation_id) == (41, "m_service", 7)
    assert event.psid_hash == hash_psid(RAW_PSID)
    assert RAW_PSID not in event.psid_hash
    assert event.latency_ms == 2.0


def test_event_record_failure_returns_none_and_logs_error_type(caplog):
    """An insert the database refuses returns None and logs record-failed with the error type."""
    with caplog.at_level(logging.ERROR, logger="observability.events"):
        result = event_record(event_type="x" * 40, inbound=_inbound())  # longer than the column

    assert result is None
    (record,) = caplog.records
    assert record.getMessage() == "observability.event.record-failed"
    assert record.error_type == "DataError"
    assert record.mid == "m_service"
    assert record.psid_hash == hash_psid(RAW_PSID)


def test_event_record_failure_leaves_callers_transaction_usable():
    """A failed insert inside the caller's atomic block rolls back to its savepoint only."""
    with transaction.atomic():
        assert event_record(event_type="x" * 40, inbound=_inbound()) is None
        kept = event_record(event_type=Event.Type.MESSAGE_RECEIVED, inbound=_inbound())
        assert Event.objects.count() == 1  # the transaction still answers queries

    assert Event.objects.get().pk == kept.pk


def test_event_record_makes_detail_json_safe_and_drops_bad_latency():
    """Decimals become floats, NaN becomes null and a negative latency is stored as unknown."""
    event = event_record(
        event_type=Event.Type.INTENT_CLASSIFIED,
        inbound=_inbound(),
        latency_ms=-5,
        detail={"confidence": Decimal("0.5"), "score": float("nan"), "parts": (1, 2)},
    )

    event.refresh_from_db()
    assert event.detail == {"confidence": 0.5, "score": None, "parts": [1, 2]}
    assert event.latency_ms is None


def test_event_record_without_inbound_records_blank_references():
    """A step with no inbound message still records an event with empty references."""
    event = event_record(event_type=Event.Type.MESSAGE_EXPIRED, detail={"reason": "too_old"})

    assert (event.inbound_id, event.mid, event.psid_hash) == (None, "", "")


def test_events_buffered_writes_the_block_events_in_one_insert_at_its_end():
    """Events recorded in the block are not written until it ends, then all in one INSERT."""
    with CaptureQueriesContext(connection) as captured, events_buffered():
        for event_type in (Event.Type.INTENT_CLASSIFIED, Event.Type.RESPONSE_GENERATED):
            event_record(event_type=event_type, inbound=_inbound(), latency_ms=3)
        with events_buffered():  # nested: written with the outer block
            event_record(event_type=Event.Type.RESPONSE_SENT, inbound=_inbound())
        assert Event.objects.count() == 0
    # The count, then one INSERT (in a savepoint: the test runs inside a transaction).
    assert [q["sql"].split(" ")[0] for q in captured.captured_queries] == ["SELECT", "SAVEPOINT", "INSERT", "RELEASE"]
    stored = list(Event.objects.order_by("id").values_list("event_type", "inbound_id", "psid_hash", "latency_ms"))
    assert stored == [
        ("intent_classified", 41, hash_psid(RAW_PSID), 3.0),
        ("response_generated", 41, hash_psid(RAW_PSID), 3.0),
        ("response_sent", 41, hash_psid(RAW_PSID), None),
    ]


def test_events_buffered_writes_them_when_the_block_raises():
    """A block that fails still writes what it recorded: only a killed process loses them."""
    with pytest.raises(RuntimeError), events_buffered():
        event_record(event_type=Event.Type.SEND_FAILED, inbound=_inbound())
        raise RuntimeError("the message failed")
    assert list(Event.objects.values_list("event_type", flat=True)) == ["send_failed"]


def test_events_buffered_write_failure_is_logged_not_raised(caplog, monkeypatch):
    """A failed write drops the block's events with one ERROR and never raises."""
    def broken_insert(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(Event._base_manager, "_insert", broken_insert)
    with events_buffered():
        event_record(event_type=Event.Type.RESPONSE_SENT, inbound=_inbound())
    errors = [r for r in caplog.records if r.getMessage() == "observability.event.record-failed"]
    assert [(r.event_type, r.error_type) for r in errors] == [("response_sent", "RuntimeError")]


def test_events_prune_deletes_only_older_events_in_batches():
    """Events before the cutoff go, ``batch_size`` per DELETE; later ones stay; a dry run counts."""
    cutoff = timezone.now()
    before = cutoff - timedelta(seconds=1)
    old = [Event.objects.create(event_type="response_sent", created_at=before) for _ in range(5)]
    kept = Event.objects.create(event_type="response_sent", created_at=cutoff)
    assert events_prune(before=cutoff, batch_size=2, dry_run=True) == len(old)
    with CaptureQueriesContext(connection) as captured:
        assert events_prune(before=cutoff, batch_size=2) == len(old)
    assert sum(q["sql"].startswith("DELETE") for q in captured.captured_queries) == 3
    assert list(Event.objects.values_list("id", flat=True)) == [kept.id]


def test_events_forget_deletes_by_hash_or_row_ids_only():
    """A user's events go by their hash, or by their inbound/conversation ids; others stay."""
    by_hash = event_record(event_type=Event.Type.MESSAGE_RECEIVED, inbound=_inbound(id=1, conversation_id=None))
    by_inbound = Event.objects.create(event_type="response_sent", inbound_id=2)
    by_conversation = Event.objects.create(event_type="response_sent", conversation_id=3)
    other = event_record(event_type=Event.Type.MESSAGE_RECEIVED, inbound=_inbound(id=9, psid="someone-else"))

    deleted = events_forget(psid_hash=hash_psid(RAW_PSID), inbound_ids=[2], conversation_ids=[3])

    assert deleted == 3
    assert list(Event.objects.values_list("id", flat=True)) == [other.id]
    assert {by_hash.id, by_inbound.id, by_conversation.id}.isdisjoint(Event.objects.values_list("id", flat=True))
