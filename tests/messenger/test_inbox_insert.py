"""Tests for messenger/inbox_insert.py: a body's rows and their events kept by one statement."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messenger.inbox_insert import inbox_insert
from messenger.models import InboundMessage
from observability.hashing import hash_psid
from observability.models import Event
from observability.services import event_build

pytestmark = pytest.mark.django_db


def _row(mid: str, *, unreadable: bool = False) -> InboundMessage:
    now = timezone.now()
    status = InboundMessage.Status.UNREADABLE if unreadable else InboundMessage.Status.QUEUED
    return InboundMessage(
        mid=mid, page_id="516746941531643", psid="7000000000000001", kind=InboundMessage.Kind.TEXT,
        text="hello", raw={"message": {"mid": mid, "text": "hello"}}, fb_timestamp=1_700_000_000_000,
        received_at=now, status=status, status_reason="broken item" if unreadable else "",
        queue_name="messenger_fast",
    )


def _event(row: InboundMessage) -> Event:
    return event_build(event_type=Event.Type.MESSAGE_RECEIVED, inbound=row, detail={"kind": row.kind})


def test_rows_and_their_events_are_kept_by_one_statement():
    """Two rows: one SQL statement stores both and one event each, pointing at its row."""
    rows = [_row("m_one"), _row("m_two")]
    since = timezone.now() - timedelta(seconds=2)

    with CaptureQueriesContext(connection) as queries:
        kept = inbox_insert(rows=rows, events=[_event(r) for r in rows], since=[since, since])

    assert len(queries.captured_queries) == 1
    assert [r.mid for r in kept] == ["m_one", "m_two"]
    stored = {r.mid: r for r in InboundMessage.objects.all()}
    assert [stored["m_one"].id, stored["m_two"].id] == [kept[0].id, kept[1].id]
    assert kept[0].id < kept[1].id
    assert stored["m_one"].raw == {"message": {"mid": "m_one", "text": "hello"}}
    events = {e.mid: e for e in Event.objects.all()}
    assert sorted(events) == ["m_one", "m_two"]
    first = events["m_one"]
    assert (first.event_type, first.inbound_id, first.detail, first.psid_hash) == (
        Event.Type.MESSAGE_RECEIVED, kept[0].id, {"kind": "text"}, hash_psid("7000000000000001"),
    )
    assert 2000 <= first.latency_ms < 60_000  # measured by the statement from ``since``, 2 s ago


def test_redelivered_mid_is_skipped_without_an_error_or_an_event():
    """A mid already stored is left out of the result and gets no second event; the new one is kept."""
    inbox_insert(rows=[_row("m_old")], events=[_event(_row("m_old"))], since=[None])
    rows = [_row("m_old"), _row("m_new")]

    with CaptureQueriesContext(connection) as queries:
        kept = inbox_insert(rows=rows, events=[_event(r) for r in rows], since=[None, None])

    assert len(queries.captured_queries) == 1
    assert [r.mid for r in kept] == ["m_new"]
    assert kept[0].pk == InboundMessage.objects.get(mid="m_new").pk
    assert sorted(Event.objects.values_list("mid", flat=True)) == ["m_new", "m_old"]
    assert InboundMessage.objects.count() == 2


def test_event_without_a_start_has_no_latency():
    """``since`` None (an unreadable row): the event is kept with no latency."""
    row = _row("m_odd", unreadable=True)
    event = event_build(event_type=Event.Type.MESSAGE_UNREADABLE, inbound=row, detail={"reason": "broken item"})

    inbox_insert(rows=[row], events=[event], since=[None])

    stored = Event.objects.get()
    assert (stored.event_type, stored.latency_ms, stored.detail, stored.inbound_id) == (
        Event.Type.MESSAGE_UNREADABLE, None, {"reason": "broken item"}, row.id,
    )


def test_kept_row_is_a_saved_instance():
    """A returned row updates like one loaded from the database (not inserted a second time)."""
    row = inbox_insert(rows=[_row("m_saved")], events=[_event(_row("m_saved"))], since=[None])[0]
    row.status = InboundMessage.Status.PROCESSING
    row.save(update_fields=["status"])
    assert InboundMessage.objects.get(mid="m_saved").status == InboundMessage.Status.PROCESSING


def test_one_event_per_row_is_required():
    """Events and rows must pair up: anything else is refused before a statement is sent."""
    with pytest.raises(ValueError, match="one event per row"):
        inbox_insert(rows=[_row("m_a"), _row("m_b")], events=[_event(_row("m_a"))], since=[None])
    assert InboundMessage.objects.count() == 0


def test_other_databases_keep_the_same_rows_and_events_through_the_orm():
    """The portable path (SQLite in development): new rows kept with one event each and their latency,
    a redelivered mid skipped without an error or an event."""
    from messenger.inbox_insert import _insert_portable

    inbox_insert(rows=[_row("m_old")], events=[_event(_row("m_old"))], since=[None])
    rows = [_row("m_old"), _row("m_new")]
    since = timezone.now() - timedelta(seconds=1)
    kept = _insert_portable(rows=rows, events=[_event(r) for r in rows], since=[since, since])
    assert [r.mid for r in kept] == ["m_new"] and kept[0].pk is not None
    assert InboundMessage.objects.filter(mid__in=["m_old", "m_new"]).count() == 2
    [event] = Event.objects.filter(inbound_id=kept[0].pk)
    assert event.event_type == Event.Type.MESSAGE_RECEIVED and 1000 <= event.latency_ms < 10_000
    assert Event.objects.filter(mid="m_old").count() == 1
