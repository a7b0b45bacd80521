"""The project's one percentile definition, in plain Python (no Django, no database).

``percentile_cont`` is linear interpolation between the two nearest ranks, the formula of
PostgreSQL's ``percentile_cont(f) WITHIN GROUP (ORDER BY x)`` and of numpy's default
(``method="linear"``, Hyndman & Fan type 7): the value at rank ``fraction * (n - 1)`` of the sorted
values, interpolated. Latencies 1..100 give p50 50.5, p95 95.05, p99 99.01.

It lives here, at the bottom of the arrows, so that everything above can use the same formula:
``observability.selectors`` falls back to it where the database has no ``percentile_cont``
(SQLite), and the bench/test harness (``harness.stats``) imports it, so a figure printed by a bench
and one reported by ``manage.py observability_report`` mean the same thing. Importing this module
needs no Django settings (the bench process never sets Django up).
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile_cont(values: Iterable[float], fraction: float) -> float | None:
    """The ``fraction``-quantile (``0.99`` for p99, within ``[0, 1]``) of ``values``; ``None`` when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def non_negative_number(value: object) -> float | None:
    """``value`` as a finite, non-negative float (an int, float or numeric string), else ``None``.

    For figures that arrive from outside (Facebook's usage headers, a signal's latency): a bool, a
    NaN, an infinity or a negative is not a figure.
    """
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None
