"""Tests for observability/signals.py: the pipeline's vocabulary, and ``send_safely``."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from django.dispatch import Signal

from observability import signals

APPS_ABOVE = ("chatbot", "messenger", "conversations", "engine")


def test_send_safely_logs_a_failing_receiver_and_still_calls_the_others(caplog):
    """One receiver raising is logged as receiver-failed; the next receiver still runs; nothing raises."""
    signal = Signal()
    calls = []

    def broken(sender, **kwargs):
        raise RuntimeError("boom")

    def working(sender, **kwargs):
        calls.append(kwargs)

    signal.connect(broken, weak=False)
    signal.connect(working, weak=False)
    with caplog.at_level(logging.ERROR, logger="messenger.signals"):
        signals.send_safely(signal, sender="tests", inbound=None, reason="x")

    assert calls == [{"signal": signal, "inbound": None, "reason": "x"}]
    [record] = [r for r in caplog.records if r.name == "messenger.signals"]
    assert record.getMessage() == "messenger.signals.receiver-failed"
    assert record.receiver.endswith("broken")
    assert record.exc_info[0] is RuntimeError


def test_observability_imports_no_app_above_it():
    """The signals live here so that no module of observability imports the channel (or anything above)."""
    root = Path(signals.__file__).resolve().parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in APPS_ABOVE]
    assert offenders == []


def test_pipeline_signals_are_distinct():
    """One signal per step, so a receiver of one step never hears another."""
    steps = [
        signals.message_received, signals.intent_classified, signals.response_generated, signals.response_sent,
        signals.send_failed, signals.message_deferred, signals.message_expired,
    ]
    assert len(set(map(id, steps))) == len(steps)
