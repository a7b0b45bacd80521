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
        "end_to_end_ms", "graph_usage",
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


def test_observability_report_shows_the_last_graph_usage_figures_per_page():
    """The newest graph_usage event of each page is shown, whatever the window; older ones are not."""
    old = {"page_id": "P1", "app": {"call_count": 5.0}, "page": {}, "business": []}
    make_event(T.GRAPH_USAGE, detail=old, created_at=timezone.now() - timedelta(days=2))
    make_event(T.GRAPH_USAGE, detail={
        "page_id": "P1", "app": {"call_count": 61.0, "total_time": 12.0}, "page": {"call_count": 80.0},
        "business": [{"business_id": "123", "type": "pages", "call_count": 95.0,
                      "estimated_time_to_regain_access": 5}],
    })

    text = _run("--minutes", "60")
    assert "page P1" in text
    assert "app call_count=61% total_time=12%" in text
    assert "page call_count=80%" in text
    assert "business 123 (pages): call_count=95%; regain access in 5 min" in text
    assert "call_count=5%" not in text
    report = json.loads(_run("--json"))
    assert report["graph_usage"]["P1"]["app"] == {"call_count": 61.0, "total_time": 12.0}


def test_observability_report_says_when_no_usage_was_seen():
    assert "Graph API usage: no figures seen yet" in _run()
