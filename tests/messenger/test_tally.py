"""Tests for messenger/tally.py: counts per kind keep their declared order and add up kind by kind."""

from __future__ import annotations

from messenger.forget import ForgetResult
from messenger.retention import PruneResult


def test_tally_as_dict_keeps_the_declared_order():
    """The commands print the kinds in the order each result declares them."""
    assert list(ForgetResult().as_dict()) == ["inbound", "parts", "conversations", "messages", "cache_keys", "events"]
    assert list(PruneResult().as_dict()) == ["inbound", "parts", "events", "conversations", "messages"]


def test_tally_sum_adds_each_kind_and_keeps_the_type():
    """Two results add up kind by kind into a result of the same class (the admin's total over pages)."""
    total = ForgetResult(inbound=1, events=2) + ForgetResult(inbound=3, cache_keys=1)
    assert total == ForgetResult(inbound=4, cache_keys=1, events=2)
