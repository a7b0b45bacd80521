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

``dispatch_uid`` keeps a receiver from being connected twice if this module is imported again.
"""

from __future__ import annotations

import time
from typing import Any

from django.dispatch import receiver
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


@receiver(signals.message_received, dispatch_uid="observability.message_received")
def on_message_received(sender: object, *, inbound: Any = None, latency_ms: float | None = None,
                        **kwargs: Any) -> None:
    """The webhook kept a message; ``latency_ms`` is how long keeping it took."""
    event_record(
        event_type=Event.Type.MESSAGE_RECEIVED,
        inbound=inbound,
        latency_ms=latency_ms,
        detail={"kind": getattr(inbound, "kind", "") or ""},
    )


@receiver(signals.intent_classified, dispatch_uid="observability.intent_classified")
def on_intent_classified(sender: object, *, inbound: Any = None, intent: str = "",
                         confidence: float | None = None, latency_ms: float | None = None,
                         **kwargs: Any) -> None:
    """The engine named the message's intent, with its confidence."""
    event_record(
        event_type=Event.Type.INTENT_CLASSIFIED,
        inbound=inbound,
        latency_ms=latency_ms,
        detail={"intent": intent or "", "confidence": confidence},
    )


@receiver(signals.response_generated, dispatch_uid="observability.response_generated")
def on_response_generated(sender: object, *, inbound: Any = None, intent: str = "",
                          part_count: int | None = None, latency_ms: float | None = None,
                          timed_out: bool = False, **kwargs: Any) -> None:
    """A reply exists (``timed_out``: it is the fallback sent when generation took too long)."""
    event_record(
        event_type=Event.Type.RESPONSE_GENERATED,
        inbound=inbound,
        latency_ms=latency_ms,
        detail={"intent": intent or "", "part_count": part_count, "timed_out": bool(timed_out)},
    )


@receiver(signals.response_sent, dispatch_uid="observability.response_sent")
def on_response_sent(sender: object, *, inbound: Any = None, part_count: int | None = None,
                     latency_ms: float | None = None, end_to_end_ms: float | None = None,
                     since_receipt_ms: float | None = None, **kwargs: Any) -> None:
    """Every part of the reply went out; records both end-to-end latencies in ``detail``."""
    event_record(
        event_type=Event.Type.RESPONSE_SENT,
        inbound=inbound,
        latency_ms=latency_ms,
        detail={
            "part_count": part_count,
            "end_to_end_ms": _end_to_end_ms(inbound, end_to_end_ms),
            "since_receipt_ms": _since_receipt_ms(inbound, since_receipt_ms),
        },
    )


@receiver(signals.send_failed, dispatch_uid="observability.send_failed")
def on_send_failed(sender: object, *, inbound: Any = None, error_kind: str = "",
                   error_code: int | None = None, latency_ms: float | None = None,
                   **kwargs: Any) -> None:
    """The Send API refused or could not be reached; ``error_kind`` is SendError's kind."""
    event_record(
        event_type=Event.Type.SEND_FAILED,
        inbound=inbound,
        latency_ms=latency_ms,
        detail={"error_kind": error_kind or "", "error_code": error_code},
    )


@receiver(signals.message_deferred, dispatch_uid="observability.message_deferred")
def on_message_deferred(sender: object, *, inbound: Any = None, reason: str = "",
                        retry_in_ms: int | None = None, **kwargs: Any) -> None:
    """The message was put back for later (circuit open, Send API unavailable)."""
    event_record(
        event_type=Event.Type.MESSAGE_DEFERRED,
        inbound=inbound,
        detail={"reason": reason or "", "retry_in_ms": retry_in_ms},
    )


@receiver(signals.message_expired, dispatch_uid="observability.message_expired")
def on_message_expired(sender: object, *, inbound: Any = None, reason: str = "",
                       **kwargs: Any) -> None:
    """The message can no longer be answered (outside the messaging window, too old)."""
    event_record(
        event_type=Event.Type.MESSAGE_EXPIRED,
        inbound=inbound,
        detail={"reason": reason or ""},
    )


@receiver(signals.token_failing, dispatch_uid="observability.token_failing")
def on_token_failing(sender: object, *, page_id: str = "", error_code: int | None = None,
                     fingerprint: str = "", **kwargs: Any) -> None:
    """A page's token started failing (one event per incident, not per message)."""
    event_record(
        event_type=Event.Type.TOKEN_FAILING,
        detail={"page_id": page_id or "", "error_code": error_code, "fingerprint": fingerprint or ""},
    )


@receiver(signals.graph_usage_observed, dispatch_uid="observability.graph_usage")
def on_graph_usage_observed(sender: object, *, page_id: str = "", usage: dict | None = None,
                            **kwargs: Any) -> None:
    """Meta's usage figures for a page, as its headers gave them (sampled: one a minute a page)."""
    usage = usage if isinstance(usage, dict) else {}
    event_record(
        event_type=Event.Type.GRAPH_USAGE,
        detail={"page_id": page_id or "", **{key: usage.get(key) for key in ("app", "page", "business")}},
    )


@receiver(signals.message_unreadable, dispatch_uid="observability.message_unreadable")
def on_message_unreadable(sender: object, *, inbound: Any = None, reason: str = "",
                          **kwargs: Any) -> None:
    """The webhook kept an item it could not read (raw, status ``unreadable``): staff should look."""
    event_record(
        event_type=Event.Type.MESSAGE_UNREADABLE,
        inbound=inbound,
        detail={"reason": reason or ""},
    )
