"""Receivers that add the pipeline's signals to the ``/metrics`` counters (connected in apps.ready).

Separate from :mod:`observability.receivers` (which writes Event rows) because the two answer
different questions and fail differently: an Event row is the per-message record that retention
prunes; these are monotonic totals in Redis that a scraper turns into rates. Each receiver costs one
Redis round trip and never raises (:mod:`observability.metrics`).

==================== ======================================================================
signal               counted as
==================== ======================================================================
response_sent        outcome ``ok``, and ``end_to_end_ms`` in the reply-latency histogram
send_failed          outcome ``<error_kind>``
==================== ======================================================================
"""

from __future__ import annotations

import time
from typing import Any

from django.dispatch import receiver

from observability import metrics, signals


def _reply_latency_s(inbound: Any, end_to_end_ms: float | None) -> float | None:
    """The sender's end-to-end figure, or now minus Facebook's event timestamp, in seconds."""
    try:
        if end_to_end_ms is not None:
            return float(end_to_end_ms) / 1000.0
        fb_timestamp = getattr(inbound, "fb_timestamp", None)
        if not fb_timestamp:
            return None
        return (time.time() * 1000.0 - float(fb_timestamp)) / 1000.0
    except (TypeError, ValueError):
        return None


@receiver(signals.response_sent, dispatch_uid="observability.metrics.response_sent")
def count_response_sent(sender: object, *, inbound: Any = None, end_to_end_ms: float | None = None,
                        **kwargs: Any) -> None:
    """Every part of a reply went out: one ``ok`` and one latency observation."""
    metrics.reply_sent_count(latency_s=_reply_latency_s(inbound, end_to_end_ms))


@receiver(signals.send_failed, dispatch_uid="observability.metrics.send_failed")
def count_send_failed(sender: object, *, error_kind: str = "", **kwargs: Any) -> None:
    """A send failed for good (or for now, before a retry): one count under its error class."""
    metrics.send_failure_count(error_kind=error_kind or "unknown")
