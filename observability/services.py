"""Writing observability events.

:func:`event_record` turns one pipeline step into one :class:`Event` row. Its
contract is that recording can never break or hold up the handling of a message:

- inside a caller's transaction the insert runs in a savepoint (``transaction.atomic()``), so a
  failed insert rolls back to it and leaves the caller's transaction usable; outside one it is a
  single autocommitted INSERT (one round trip instead of BEGIN/INSERT/COMMIT: events are written
  for every step of every message);
- any error is logged as ``observability.event.record-failed`` (with the error type, ``mid`` and
  ``psid_hash``) and swallowed: the function returns ``None`` instead of raising.

The raw PSID is hashed here with :func:`observability.hashing.hash_psid` and never stored.

On the worker's hot path a round trip per event would be a third of a message's statements, so the
pipeline wraps each message in :func:`events_buffered`: events recorded by that thread in the block
are kept in memory and written with one ``bulk_create`` (one INSERT) when the block ends, however it
ends. The price, accepted: a worker killed outright (SIGKILL, OOM) loses the events of the message
it was answering, never those of a message before it. Events of other threads, and of code outside
such a block (the webhook, the admin), are written at once as before.

:func:`events_prune` (retention) and :func:`events_forget` (one user's erasure) delete events; the
Messenger channel calls them from its own prune and forget services, this app never calls up.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from django.db import transaction
from django.db.models import Q

from observability.hashing import hash_psid
from observability.models import Event
from observability.stats import non_negative_number

logger = logging.getLogger("observability.events")

PLATFORM_MESSENGER = "messenger"
# Per thread: the list of events a :func:`events_buffered` block keeps until it ends (absent: none).
_buffer = threading.local()


class InboundLike(Protocol):
    """What :func:`event_record` reads from an inbound message (messenger.models.InboundMessage)."""

    id: int | None
    mid: str
    psid: str
    conversation_id: int | None


def _json_safe(value: Any) -> Any:
    """``value`` as something JSONField stores losslessly: numbers, strings, bools, lists, dicts.

    Non-finite floats become ``None`` (JSON has no NaN), unknown objects their ``str``.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    try:
        return float(value)  # Decimal, numpy scalars and the like
    except (TypeError, ValueError):
        return str(value)


def _latency(value: Any) -> float | None:
    """A latency in milliseconds as a finite, non-negative float, or ``None`` when unknown."""
    return non_negative_number(value)


def event_build(
    *,
    event_type: str,
    inbound: InboundLike | None = None,
    latency_ms: float | None = None,
    detail: dict[str, Any] | None = None,
    platform: str = PLATFORM_MESSENGER,
) -> Event:
    """The :class:`Event` :func:`event_record` would write, unsaved: for a caller that writes it in a
    statement of its own (the inbox keeps a message and its ``message_received`` event in one INSERT,
    ``messenger.inbox_insert``). The PSID is hashed here; may raise (a caller that must not break
    catches)."""
    return Event(
        event_type=event_type,
        platform=platform,
        psid_hash=hash_psid(getattr(inbound, "psid", None)),
        conversation_id=getattr(inbound, "conversation_id", None),
        inbound_id=getattr(inbound, "id", None),
        mid=str(getattr(inbound, "mid", "") or ""),
        latency_ms=_latency(latency_ms),
        detail=_json_safe(detail or {}),
    )


def event_record(
    *,
    event_type: str,
    inbound: InboundLike | None = None,
    latency_ms: float | None = None,
    detail: dict[str, Any] | None = None,
    platform: str = PLATFORM_MESSENGER,
) -> Event | None:
    """Record one pipeline step as an :class:`Event`; return it, or ``None`` when recording failed.

    ``inbound`` supplies ``mid``, ``psid`` (hashed, never stored raw), ``id`` and
    ``conversation_id``; ``detail`` holds step-specific context (intent, error kind, ...) and must
    never contain a raw PSID. Never raises: see the module docstring. Inside :func:`events_buffered`
    the event is returned unsaved (no ``pk`` yet): it is written when the block ends.
    """
    mid = str(getattr(inbound, "mid", "") or "")
    psid_hash = ""
    try:
        event = event_build(
            event_type=event_type, inbound=inbound, latency_ms=latency_ms, detail=detail, platform=platform
        )
        psid_hash = event.psid_hash
        pending = getattr(_buffer, "events", None)
        if pending is not None:
            pending.append(event)
        elif transaction.get_connection().in_atomic_block:
            with transaction.atomic():
                event.save(force_insert=True)
        else:
            event.save(force_insert=True)
        return event
    # Any error at all: the contract is that an event never breaks a message. Logged, not raised.
    except Exception as exc:
        logger.error(
            "observability.event.record-failed",
            exc_info=True,
            extra={
                "event_type": event_type,
                "error_type": type(exc).__name__,
                "mid": mid or "-",
                "psid_hash": psid_hash or "-",
            },
        )
        return None


@contextmanager
def events_buffered() -> Iterator[None]:
    """Write the events this thread records in the block with one INSERT when it ends (module docstring).

    Nested blocks write with the outermost. Never raises for the write: a failure is logged as
    ``observability.event.record-failed`` and the events are dropped, as :func:`event_record` would.
    """
    if getattr(_buffer, "events", None) is not None:
        yield
        return
    _buffer.events = []
    try:
        yield
    finally:
        events, _buffer.events = _buffer.events, None
        _events_write(events)


def _events_write(events: list[Event]) -> None:
    if not events:
        return
    # One INSERT of every row. ``bulk_create`` would wrap it in a transaction of its own (a BEGIN and
    # a COMMIT more than the round trip saved); a single statement is atomic by itself, so the rows
    # go in as the manager's own ``_insert`` (what ``save`` and ``bulk_create`` use) writes them.
    fields = [field for field in Event._meta.concrete_fields if not field.primary_key]
    try:
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():
                Event._base_manager._insert(events, fields=fields)
        else:
            Event._base_manager._insert(events, fields=fields)
    # Any error at all: as for one event, recording never breaks a message. Logged, not raised.
    except Exception as exc:
        logger.error(
            "observability.event.record-failed",
            exc_info=True,
            extra={
                "event_type": ",".join(sorted({event.event_type for event in events})),
                "error_type": type(exc).__name__,
                "mid": events[0].mid or "-",
                "psid_hash": events[0].psid_hash or "-",
            },
        )


def events_prune(*, before: datetime, batch_size: int, dry_run: bool = False) -> int:
    """Delete events created before ``before``, ``batch_size`` at a time; return how many (would) go.

    Each batch is its own short transaction (select ids, delete by id), so the table that every
    pipeline step writes to is never locked for long. ``dry_run`` only counts.
    """
    old = Event.objects.filter(created_at__lt=before)
    if dry_run:
        return old.count()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(old.order_by().values_list("id", flat=True)[:batch_size])
            if not ids:
                return deleted
            deleted += Event.objects.filter(id__in=ids).delete()[0]


def events_forget(*, psid_hash: str, inbound_ids: list[int], conversation_ids: list[int]) -> int:
    """Delete every event about one user: carrying their ``psid_hash``, or one of their rows' ids.

    The ids catch an event recorded without a hash (none should be). Returns how many were deleted.
    """
    about = Q(inbound_id__in=inbound_ids) | Q(conversation_id__in=conversation_ids)
    if psid_hash:
        about |= Q(psid_hash=psid_hash)
    return Event.objects.filter(about).delete()[0]
