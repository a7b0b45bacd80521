"""Tests for the observability_report management command: table and --json output."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from observability.models import Event
from tests.observability.helpers import make_event

pytestmark = pytest.mark.django_db

T = Event.Type


def _run(*args: str) -> str:
    out = StringIO()
    call_command("observability_report", *args, stdout=out)
    return out.getvalue()


def _sample_events() -> None:
    make_event(T.MESSAGE_RECEIVED, inbound_id=1, latency_ms=4.0)
    make_event(T.RESPONSE_GENERATED, inbound_id=1, latency_ms=30.0)
    make_event(T.RESPONSE_SENT, inbound_id=1, latency_ms=200.0,
               detail={"end_to_end_ms": 1500.0, "since_receipt_ms": 700.0})
    make_event(T.MESSAGE_RECEIVED, inbound_id=2, created_at=timezone.now() - timedelta(hours=3))


def test_observability_report_json_output_parses_with_stable_keys():
    """--json prints one JSON object with the documented keys and the window's figures."""
    _sample_events()

    report = json.loads(_run("--json", "--minutes", "30"))

    assert list(report) == [
        "window", "percentiles_computed_in", "total_events", "counts", "success", "latency_ms",
        "end_to_end_ms",
    ]
    assert report["window"]["minutes"] == 30
    assert report["total_events"] == 3
    assert report["success"] == {"needed_reply": 1, "replied": 1, "rate": 1.0}
    assert report["latency_ms"]["response_sent"]["p50"] == 200.0
    assert report["end_to_end_ms"]["from_facebook"]["p99"] == 1500.0


def test_observability_report_minutes_zero_reports_all_time():
    """--minutes 0 covers every event, including those older than the default hour."""
    _sample_events()

    report = json.loads(_run("--json", "--minutes", "0"))

    assert report["total_events"] == 4
    assert report["window"]["since"] is None


def test_observability_report_text_output_lists_every_event_type():
    """The table names every event type, the success rate and the end-to-end percentiles."""
    _sample_events()

    text = _run()

    assert text.startswith("Observability report: last 60 minutes")
    for event_type in T.values:
        assert event_type in text
    assert "success rate" in text and "100.0% (1 replied of 1" in text
    assert "p50=1500.0" in text


def test_observability_report_counts_unreadable_items():
    """Items the webhook kept raw as unreadable are counted in the JSON and on a line of their own."""
    _sample_events()
    make_event(T.MESSAGE_UNREADABLE, inbound_id=7, detail={"reason": "entry[0] must be an object"})
    make_event(T.MESSAGE_UNREADABLE, inbound_id=8, detail={"reason": "entry[0] must be an object"})

    report = json.loads(_run("--json"))
    text = _run()

    assert report["counts"]["message_unreadable"] == 2
    assert report["success"] == {"needed_reply": 1, "replied": 1, "rate": 1.0}  # never owed a reply
    assert "unreadable items kept                2 (kept raw, not answered" in text


def test_observability_report_negative_minutes_is_an_error():
    """A negative window is refused with a CommandError."""
    with pytest.raises(CommandError, match="minutes"):
        _run("--minutes", "-5")
