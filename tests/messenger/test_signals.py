"""Tests for messenger/signals.py: a failing receiver never stops a message."""

from __future__ import annotations

import logging

from django.dispatch import Signal

from messenger import signals


def test_send_safely_logs_a_failing_receiver_and_still_calls_the_others(caplog):
    """A receiver that raises is logged with its name and traceback; the next receiver still runs."""
    signal = Signal()
    heard = []

    def broken(sender, **kwargs):
        raise RuntimeError("boom")

    def listening(sender, **kwargs):
        heard.append((sender, kwargs["part_count"]))

    signal.connect(broken, weak=False)
    signal.connect(listening, weak=False)
    with caplog.at_level(logging.ERROR, logger="messenger.signals"):
        signals.send_safely(signal, sender="tests", part_count=2)

    assert heard == [("tests", 2)]
    (record,) = [r for r in caplog.records if r.getMessage() == "messenger.signals.receiver-failed"]
    assert record.receiver.endswith("broken")
    assert record.exc_info[0] is RuntimeError


def test_pipeline_signals_are_distinct():
    """One signal per step, so a receiver of one step never hears another."""
    steps = [
        signals.message_received, signals.intent_classified, signals.response_generated, signals.response_sent,
        signals.send_failed, signals.message_deferred, signals.message_expired,
    ]
    assert len(set(map(id, steps))) == len(steps)
