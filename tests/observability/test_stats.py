"""Tests for observability/stats.py: the project's one percentile definition."""

from __future__ import annotations

import pytest

from observability import selectors
from observability.stats import non_negative_number, percentile_cont


def test_percentile_cont_matches_hand_computed_values():
    """Linear interpolation at rank f*(n-1): 1..100 gives 50.5, 95.05 and 99.01."""
    values = list(range(100, 0, -1))

    assert percentile_cont(values, 0.5) == pytest.approx(50.5)
    assert percentile_cont(values, 0.95) == pytest.approx(95.05)
    assert percentile_cont(values, 0.99) == pytest.approx(99.01)
    assert percentile_cont([7.0], 0.99) == 7.0
    assert percentile_cont([], 0.5) is None


def test_percentile_cont_interpolates_between_two_values():
    """Between two values the quantile moves linearly: p25 of [10, 20] is 12.5, p0 and p100 the ends."""
    assert percentile_cont([20.0, 10.0], 0.25) == pytest.approx(12.5)
    assert percentile_cont([20.0, 10.0], 0.0) == 10.0
    assert percentile_cont([20.0, 10.0], 1.0) == 20.0


def test_percentile_cont_accepts_any_iterable():
    """A generator works as well as a list (the values are sorted once, here)."""
    assert percentile_cont((v for v in (3.0, 1.0, 2.0)), 0.5) == 2.0


def test_selectors_python_fallback_uses_this_definition():
    """The report's SQLite fallback is this very function, not a copy of the formula."""
    assert selectors.percentile_cont is percentile_cont


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (2.5, 2.5), ("7", 7.0), (0, 0.0), (True, None), (None, None), (-1, None), ("nan", None),
     (float("inf"), None), ("fast", None), ([], None)],
)
def test_non_negative_number_accepts_only_finite_non_negative_figures(value, expected):
    """Figures from outside (usage headers, latencies): bools, NaN, infinities and negatives are no figure."""
    assert non_negative_number(value) == expected
