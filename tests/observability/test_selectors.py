"""Tests for observability/selectors.py: the report's figures on a known set of events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from observability.models import Event
from observability.selectors import report_build, window_events
from tests.observability.helpers import make_event

pytestmark = pytest.mark.django_db

T = Event.Type


def test_report_latency_percentiles_computed_in_database_match_hand_values():
    """On PostgreSQL, percentile_cont over latencies 1..100 gives p50 50.5, p95 95.05, p99 99.01."""
    for latency in range(1, 101):
        make_event(T.MESSAGE_RECEIVED, latency_ms=float(latency))
    make_event(T.MESSAGE_RECEIVED, latency_ms=None)  # counted, but not a latency

    report = report_build(minutes=60)

    assert report["percentiles_computed_in"] == "database"
    assert report["counts"][T.MESSAGE_RECEIVED] == 101
    assert report["latency_ms"][T.MESSAGE_RECEIVED] == {
        "count": 100, "p50": 50.5, "p95": 95.05, "p99": 99.01,
    }


def test_report_end_to_end_percentiles_come_from_response_sent_detail():
    """End-to-end figures are the percentiles of response_sent's detail values (1..10 s, 0.1..1 s)."""
    for n in range(1, 11):
        make_event(T.RESPONSE_SENT, latency_ms=5.0,
                   detail={"end_to_end_ms": n * 1000.0, "since_receipt_ms": n * 100.0})
    make_event(T.RESPONSE_SENT, detail={"end_to_end_ms": None})  # no figure: ignored
    make_event(T.SEND_FAILED, detail={"end_to_end_ms": 99999.0})  # another type: ignored

    figures = report_build(minutes=60)["end_to_end_ms"]

    # Hand-computed: p50 rank 4.5 -> 5500; p95 rank 8.55 -> 9550; p99 rank 8.91 -> 9910.
    assert figures["from_facebook"] == {"count": 10, "p50": 5500.0, "p95": 9550.0, "p99": 9910.0}
    assert figures["since_receipt"] == {"count": 10, "p50": 550.0, "p95": 955.0, "p99": 991.0}


def test_report_python_fallback_gives_the_database_figures():
    """The Python fallback (SQLite) computes exactly what PostgreSQL's percentile_cont does."""
    for n in range(1, 38):
        make_event(T.INTENT_CLASSIFIED, latency_ms=float(n * n % 17))
        make_event(T.RESPONSE_SENT, latency_ms=float(n),
                   detail={"end_to_end_ms": float(n * 31 % 101), "since_receipt_ms": n / 3})
    now = timezone.now()

    in_database = report_build(minutes=60, now=now, in_database=True)
    in_python = report_build(minutes=60, now=now, in_database=False)

    assert in_python["percentiles_computed_in"] == "python"
    for key in ("counts", "latency_ms", "end_to_end_ms", "success", "total_events"):
        assert in_python[key] == in_database[key]


def test_report_counts_every_event_type_with_zeroes():
    """Every event type appears in counts and latency, zero or null when it has no events."""
    make_event(T.SEND_FAILED, latency_ms=10.0)

    report = report_build(minutes=60)

    assert set(report["counts"]) == set(T.values)
    assert report["counts"][T.SEND_FAILED] == 1
    assert report["counts"][T.MESSAGE_EXPIRED] == 0
    assert report["latency_ms"][T.MESSAGE_EXPIRED] == {"count": 0, "p50": None, "p95": None, "p99": None}
    assert report["total_events"] == 1


def test_report_success_rate_counts_distinct_inbound_messages():
    """Replied over needed-a-reply, per distinct inbound id: answered, failed, no-reply, expired."""
    journeys = {
        1: [T.MESSAGE_RECEIVED, T.RESPONSE_GENERATED, T.RESPONSE_SENT, T.RESPONSE_SENT],  # replied
        2: [T.MESSAGE_RECEIVED, T.RESPONSE_GENERATED, T.SEND_FAILED, T.SEND_FAILED],  # failed
        3: [T.MESSAGE_RECEIVED],  # needed no reply
        4: [T.MESSAGE_RECEIVED, T.MESSAGE_DEFERRED, T.MESSAGE_EXPIRED],  # expired: owed, not replied
        5: [T.MESSAGE_RECEIVED, T.MESSAGE_DEFERRED, T.RESPONSE_GENERATED, T.RESPONSE_SENT],  # replied
        6: [T.RESPONSE_GENERATED, T.RESPONSE_SENT],  # received before the window: not counted
    }
    for inbound_id, types in journeys.items():
        for event_type in types:
            make_event(event_type, inbound_id=inbound_id)

    assert report_build(minutes=60)["success"] == {"needed_reply": 4, "replied": 2, "rate": 0.5}


def test_report_success_rate_is_none_without_messages():
    """With nothing that needed a reply the rate is None, not a division by zero."""
    assert report_build(minutes=60)["success"] == {"needed_reply": 0, "replied": 0, "rate": None}


def test_report_window_excludes_older_events_and_zero_means_all_time():
    """The window counts events of the last N minutes; minutes=0 counts every event."""
    now = timezone.now()
    make_event(T.MESSAGE_RECEIVED, created_at=now - timedelta(minutes=5))
    make_event(T.MESSAGE_RECEIVED, created_at=now - timedelta(minutes=90))
    make_event(T.MESSAGE_RECEIVED, created_at=now - timedelta(days=40))

    assert report_build(minutes=60, now=now)["counts"][T.MESSAGE_RECEIVED] == 1
    assert report_build(minutes=120, now=now)["counts"][T.MESSAGE_RECEIVED] == 2
    all_time = report_build(minutes=0, now=now)
    assert all_time["counts"][T.MESSAGE_RECEIVED] == 3
    assert all_time["window"]["since"] is None


def test_window_events_rejects_negative_minutes():
    """A negative window is a caller's mistake, refused with ValueError."""
    with pytest.raises(ValueError, match="minutes"):
        window_events(minutes=-1)
