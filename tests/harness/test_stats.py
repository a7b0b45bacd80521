"""Tests for harness/stats.py: the benches' percentiles are the observability report's."""

from __future__ import annotations

import math

from harness import stats
from observability import stats as observability_stats


def test_percentile_is_percentile_cont_in_percent():
    """p50/p95/p99 in percent give what the report's percentile_cont gives for 0.5/0.95/0.99."""
    values = [float(v) for v in range(1, 101)]
    assert [stats.percentile(values, p) for p in (50, 95, 99)] == [
        observability_stats.percentile_cont(values, f) for f in (0.5, 0.95, 0.99)
    ]
    assert stats.percentile(values, 50) == 50.5


def test_percentile_of_nothing_is_nan():
    """No values print as ``nan`` in a bench table instead of failing the run."""
    assert math.isnan(stats.percentile([], 99))


def test_there_is_one_definition():
    """The harness re-exports observability's function; it does not carry a formula of its own."""
    assert stats.percentile_cont is observability_stats.percentile_cont
