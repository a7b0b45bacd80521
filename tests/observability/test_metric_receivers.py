"""Tests for observability/metric_receivers.py: pipeline signals add to the /metrics counters."""

from __future__ import annotations

import math
import time

import pytest

from observability import metrics, signals
from tests.observability.helpers import make_inbound

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_back_off(monkeypatch):
    monkeypatch.setattr(metrics, "_redis_down_until", 0.0)


def bucket(snapshot: metrics.CounterSnapshot, bound: str) -> int:
    return dict(snapshot.latency_buckets)[bound]


def test_response_sent_counts_ok_and_its_end_to_end_latency():
    """One response_sent with end_to_end_ms=120: outcome ok once, one observation of 0.12 s."""
    signals.send_safely(signals.response_sent, sender="tests", inbound=make_inbound(), part_count=2,
                        latency_ms=40.0, end_to_end_ms=120.0, since_receipt_ms=100.0)

    snapshot = metrics.counters_read()

    assert snapshot.send_outcomes == {"ok": 1}
    assert (bucket(snapshot, "0.1"), bucket(snapshot, "0.25"), snapshot.latency_count) == (0, 1, 1)
    assert math.isclose(snapshot.latency_sum, 0.12)


def test_response_sent_without_end_to_end_uses_facebook_timestamp():
    """No end_to_end_ms: the latency is now minus the inbound's fb_timestamp (here about 3 s)."""
    inbound = make_inbound(fb_timestamp=int(time.time() * 1000) - 3000)
    signals.send_safely(signals.response_sent, sender="tests", inbound=inbound, part_count=1)

    snapshot = metrics.counters_read()

    assert (bucket(snapshot, "2.5"), bucket(snapshot, "5.0")) == (0, 1)
    assert 3.0 <= snapshot.latency_sum < 5.0


def test_send_failed_counts_its_error_kind():
    """Each send_failed counts once under its error_kind; a missing kind counts as unknown."""
    inbound = make_inbound()
    signals.send_safely(signals.send_failed, sender="tests", inbound=inbound, error_kind="rate_limited",
                        error_code=613, latency_ms=5.0)
    signals.send_safely(signals.send_failed, sender="tests", inbound=inbound, error_kind="",
                        error_code=None, latency_ms=None)

    assert metrics.counters_read().send_outcomes == {"rate_limited": 1, "unknown": 1}


def test_other_signals_count_nothing():
    """Only response_sent and send_failed are counted; the others leave the counters empty."""
    inbound = make_inbound()
    signals.send_safely(signals.message_received, sender="tests", inbound=inbound, latency_ms=3.0)
    signals.send_safely(signals.message_deferred, sender="tests", inbound=inbound, reason="circuit_open",
                        retry_in_ms=30000)

    snapshot = metrics.counters_read()

    assert snapshot.send_outcomes == {}
    assert snapshot.latency_count == 0
