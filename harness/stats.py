"""Percentiles for the benches and the tests, by the project's one definition.

The formula is :func:`observability.stats.percentile_cont`: linear interpolation between the two
nearest ranks (PostgreSQL's ``percentile_cont``, numpy's default), the same the observability report
uses, so a bench's p99 and the report's p99 of the same latencies agree. This module only adapts it
to how the benches speak: percent (0-100) rather than a fraction, and NaN rather than ``None`` for no
values, so an empty run prints ``nan`` in a table instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from observability.stats import percentile_cont

__all__ = ["percentile", "percentile_cont"]


def percentile(values: Iterable[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100) of ``values``; NaN when there are none."""
    result = percentile_cont(values, pct / 100)
    return math.nan if result is None else result
