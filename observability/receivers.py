"""Receivers that record pipeline signals as observability events (connected in apps.ready).

One receiver per signal of :mod:`observability.signals` (sent by the channel), each recording exactly
one :class:`Event` through :func:`observability.services.event_record`, which never raises. The ``detail`` written per
event type (documented in docs/observability.md):

==================== =================================================================
event type           detail keys
==================== =================================================================
message_received     ``kind``
intent_classified    ``intent``, ``confidence``
response_generated   ``intent``, ``part_count``, ``timed_out``
response_sent        ``part_count``, ``end_to_end_ms``, ``since_receipt_ms``
send_failed          ``error_kind``, ``error_code``
message_deferred     ``reason``, ``retry_in_ms``
message_expired      ``reason``
token_failing        ``page_id``, ``error_code``, ``fingerprint`` (one per incident)
graph_usage          ``page_id``, ``app``, ``page``, ``business`` (at most one a minute a page)
message_unreadable   ``reason``
==================== =================================================================

The receivers differ only in their signal, their event type and the detail they write, so one
table (:data:`RECEIVERS`) connects them all: each row's comment says what its signal means.
``dispatch_uid`` keeps a receiver from being connected twice if this module is imported again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.dispatch import Signal
from django.utils import timezone

from observability import signals
from observability.models import Event
from observability.services import event_record


def _now_ms() -> float:
    return time.time() * 1000.0


def _end_to_end_ms(inbound: Any, given: float | None) -> float | None:
    """The sender's figure, or (when it gave none) now minus Facebook's event timestamp."""
    if given is not None:
        return given
    try:
        return max(0.0, _now_ms() - float(inbound.fb_timestamp)) if inbound.fb_timestamp else None
    except (AttributeError, TypeError, ValueError):
        return None


def _since_receipt_ms(inbound: Any, given: float | None) -> float | None:
    """The sender's figure, or (when it gave none) now minus our receipt of the message."""
    if given is not None:
        return given
    try:
        return max(0.0, (timezone.now() - inbound.received_at).total_seconds() * 1000.0)
    except (AttributeError, TypeError):  # no inbound, no receipt time, or a naive datetime
        return None


def _text(value: Any) -> str:
    return value or ""


def _usage(page_id: str = "", usage: dict | None = None, **kwargs: Any) -> dict:
    usage = usage if isinstance(usage, dict) else {}
    return {"page_id": _text(page_id), **{key: usage.get(key) for key in ("app", "page", "business")}}


def _response_sent(inbound: Any = None, part_count: int | None = None, end_to_end_ms: float | None = None,
                   since_receipt_ms: float | None = None, **kwargs: Any) -> dict:
    return {
        "part_count": part_count,
        "end_to_end_ms": _end_to_end_ms(inbound, end_to_end_ms),
        "since_receipt_ms": _since_receipt_ms(inbound, since_receipt_ms),
    }


@dataclass(frozen=True)
class _Receiver:
    """One signal recorded as one event: ``inbound`` and ``timed`` say whether the event keeps the
    message and the signal's ``latency_ms``; ``detail`` builds the event's detail from the signal's
    keyword arguments."""

    signal: Signal
    uid: str
    event_type: str
    detail: Callable[..., dict]
    inbound: bool = True
    timed: bool = False

    def __call__(self, sender: object, **kwargs: Any) -> None:
        event_record(
            event_type=self.event_type,
            inbound=kwargs.get("inbound") if self.inbound else None,
            latency_ms=kwargs.get("latency_ms") if self.timed else None,
            detail=self.detail(**kwargs),
        )


RECEIVERS = (
    # The webhook kept a message; ``latency_ms`` is how long keeping it took.
    _Receiver(signals.message_received, "message_received", Event.Type.MESSAGE_RECEIVED, timed=True,
              detail=lambda inbound=None, **kw: {"kind": _text(getattr(inbound, "kind", ""))}),
    # The engine named the message's intent, with its confidence.
    _Receiver(signals.intent_classified, "intent_classified", Event.Type.INTENT_CLASSIFIED, timed=True,
              detail=lambda intent="", confidence=None, **kw: {"intent": _text(intent), "confidence": confidence}),
    # A reply exists (``timed_out``: it is the fallback sent when generation took too long).
    _Receiver(signals.response_generated, "response_generated", Event.Type.RESPONSE_GENERATED, timed=True,
              detail=lambda intent="", part_count=None, timed_out=False, **kw: {
                  "intent": _text(intent), "part_count": part_count, "timed_out": bool(timed_out)}),
    # Every part of the reply went out; records both end-to-end latencies in ``detail``.
    _Receiver(signals.response_sent, "response_sent", Event.Type.RESPONSE_SENT, timed=True,
              detail=_response_sent),
    # The Send API refused or could not be reached; ``error_kind`` is SendError's kind.
    _Receiver(signals.send_failed, "send_failed", Event.Type.SEND_FAILED, timed=True,
              detail=lambda error_kind="", error_code=None, **kw: {
                  "error_kind": _text(error_kind), "error_code": error_code}),
    # The message was put back for later (circuit open, Send API unavailable).
    _Receiver(signals.message_deferred, "message_deferred", Event.Type.MESSAGE_DEFERRED,
              detail=lambda reason="", retry_in_ms=None, **kw: {"reason": _text(reason), "retry_in_ms": retry_in_ms}),
    # The message can no longer be answered (outside the messaging window, too old).
    _Receiver(signals.message_expired, "message_expired", Event.Type.MESSAGE_EXPIRED,
              detail=lambda reason="", **kw: {"reason": _text(reason)}),
    # A page's token started failing (one event per incident, not per message).
    _Receiver(signals.token_failing, "token_failing", Event.Type.TOKEN_FAILING, inbound=False,
              detail=lambda page_id="", error_code=None, fingerprint="", **kw: {
                  "page_id": _text(page_id), "error_code": error_code, "fingerprint": _text(fingerprint)}),
    # Meta's usage figures for a page, as its headers gave them (sampled: one a minute a page).
    _Receiver(signals.graph_usage_observed, "graph_usage", Event.Type.GRAPH_USAGE, inbound=False, detail=_usage),
    # The webhook kept an item it could not read (raw, status ``unreadable``): staff should look.
    _Receiver(signals.message_unreadable, "message_unreadable", Event.Type.MESSAGE_UNREADABLE,
              detail=lambda reason="", **kw: {"reason": _text(reason)}),
)

for _row in RECEIVERS:
    _row.signal.connect(_row, dispatch_uid=f"observability.{_row.uid}", weak=False)
