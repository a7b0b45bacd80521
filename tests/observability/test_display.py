"""Tests of observability/display.py: one date format with seconds and "ago", rounded latencies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from observability.display import ago, latency, when

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=5), "just now"),
        (timedelta(minutes=7, seconds=59), "7 min ago"),
        (timedelta(hours=3, minutes=1), "3 h ago"),
        (timedelta(days=2, hours=5), "2 d ago"),
        (timedelta(seconds=-30), "just now"),
    ],
)
def test_ago_reads_coarse_units(delta, text):
    assert ago(NOW - delta, now=NOW) == text


def test_when_shows_utc_with_seconds_and_ago():
    assert str(when(NOW - timedelta(minutes=5, seconds=3), now=NOW)) == (
        '2026-03-01 11:54:57 <span style="color:#888">(5 min ago)</span>'
    )


def test_when_none_is_a_dash():
    assert when(None) == "-"


@pytest.mark.parametrize(
    ("value", "text"), [(None, "-"), (12.4567, "12 ms"), (999.5, "1000 ms"), (12_345.0, "12.3 s")]
)
def test_latency_rounded(value, text):
    assert latency(value) == text
