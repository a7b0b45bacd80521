"""Reading observability events: the figures of ``manage.py observability_report``.

:func:`report_build` returns one plain dict (the ``--json`` output, keys documented in
docs/observability.md) for the events created in the last ``minutes`` minutes (``0``: all time):

- ``counts``: events per event type (every type present, zero when none);
- ``success``: the success rate, defined on *distinct inbound messages* (``inbound_id``) of the
  window. A message **needed a reply** when its ``message_received`` event is in the window and it
  also has a ``response_generated``, ``send_failed`` or ``message_expired`` event in the window (the
  pipeline decided a reply was owed: it made one, tried to send one, or ran out of time to). It was
  **replied** when it also has a ``response_sent`` event. ``rate = replied / needed_reply``
  (``None`` when nothing needed a reply). Messages that need no reply (no event past
  ``message_received``) are left out; messages still in flight at the end of the window count as
  not yet replied, so the rate of a very short, busy window is a slight underestimate;
- ``latency_ms``: per event type, the number of events with a latency and its p50, p95 and p99;
- ``end_to_end_ms``: the same percentiles over ``response_sent`` events' ``detail.end_to_end_ms``
  (from Facebook's event timestamp) and ``detail.since_receipt_ms`` (from our receipt);
- ``graph_usage``: per page, the last usage figures Meta's headers gave (:func:`graph_usage_last`),
  whatever the window: the latest known figures are what an operator needs, however old (``at``
  says when they were seen).

Percentiles are ``percentile_cont`` (linear interpolation between the two nearest ranks, as
PostgreSQL's ``percentile_cont(f) WITHIN GROUP (ORDER BY x)``: latencies 1..100 give p50 50.5).
On PostgreSQL they are computed **in the database** (no rows travel to Python, which is what keeps
the report under a second on 100,000 events); on other databases (SQLite in development) they
fall back to the same formula in Python (:func:`observability.stats.percentile_cont`, the project's
one percentile definition, which the bench harness uses too) over ``values_list``, which is fine for a
dev database.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from observability.models import Event
from observability.stats import percentile_cont

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))

# Event types showing the pipeline owed the message a reply (see the module docstring).
NEEDS_REPLY_TYPES: tuple[str, ...] = (
    Event.Type.RESPONSE_GENERATED,
    Event.Type.SEND_FAILED,
    Event.Type.MESSAGE_EXPIRED,
)

END_TO_END_KEYS: tuple[tuple[str, str], ...] = (
    ("from_facebook", "end_to_end_ms"),
    ("since_receipt", "since_receipt_ms"),
)


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expr)``.

    ``fraction`` is written into the SQL as a float literal (it is validated as a float in
    ``[0, 1]``, never user text). NULLs are ignored, as by every SQL aggregate.
    """

    function = "percentile_cont"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, *, fraction: float, **extra: Any) -> None:
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {fraction}")
        super().__init__(expression, fraction=repr(fraction), **extra)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _empty_latency() -> dict[str, Any]:
    return {"count": 0, **{name: None for name, _ in PERCENTILES}}


def _python_latency(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        **{name: _round(percentile_cont(values, fraction)) for name, fraction in PERCENTILES},
    }


def _detail_float(key: str) -> Cast:
    """``(detail ->> key)::float`` in SQL: a number kept in the JSON detail, NULL when absent."""
    return Cast(KeyTextTransform(key, "detail"), FloatField())


def window_events(*, minutes: int, now: datetime | None = None) -> QuerySet[Event]:
    """Events created in the last ``minutes`` minutes up to ``now``; ``minutes=0`` means all time."""
    if minutes < 0:
        raise ValueError("minutes must be 0 (all time) or positive")
    until = now or timezone.now()
    events = Event.objects.filter(created_at__lte=until)
    if minutes:
        events = events.filter(created_at__gte=until - timedelta(minutes=minutes))
    return events


def _counts_and_latency_in_database(events: QuerySet[Event]) -> tuple[dict, dict]:
    rows = events.values("event_type").annotate(
        total=Count("pk"),
        with_latency=Count("latency_ms"),
        **{
            name: PercentileCont("latency_ms", fraction=fraction)
            for name, fraction in PERCENTILES
        },
    ).order_by()
    counts, latency = {}, {}
    for row in rows:
        counts[row["event_type"]] = row["total"]
        latency[row["event_type"]] = {
            "count": row["with_latency"],
            **{name: _round(row[name]) for name, _ in PERCENTILES},
        }
    return counts, latency


def _end_to_end_in_database(events: QuerySet[Event]) -> dict:
    aggregates: dict[str, Any] = {}
    for label, key in END_TO_END_KEYS:
        aggregates[f"{label}__count"] = Count(_detail_float(key))
        for name, fraction in PERCENTILES:
            aggregates[f"{label}__{name}"] = PercentileCont(_detail_float(key), fraction=fraction)
    row = events.filter(event_type=Event.Type.RESPONSE_SENT).aggregate(**aggregates)
    return {
        label: {
            "count": row[f"{label}__count"],
            **{name: _round(row[f"{label}__{name}"]) for name, _ in PERCENTILES},
        }
        for label, _ in END_TO_END_KEYS
    }


def _counts_and_latency_in_python(events: QuerySet[Event]) -> tuple[dict, dict]:
    counts: dict[str, int] = defaultdict(int)
    values: dict[str, list[float]] = defaultdict(list)
    for event_type, latency_ms in events.values_list("event_type", "latency_ms").iterator():
        counts[event_type] += 1
        if latency_ms is not None:
            values[event_type].append(latency_ms)
    return dict(counts), {event_type: _python_latency(values[event_type]) for event_type in counts}


def _end_to_end_in_python(events: QuerySet[Event]) -> dict:
    values: dict[str, list[float]] = {label: [] for label, _ in END_TO_END_KEYS}
    details = events.filter(event_type=Event.Type.RESPONSE_SENT).values_list("detail", flat=True)
    for detail in details.iterator():
        for label, key in END_TO_END_KEYS:
            value = detail.get(key) if isinstance(detail, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[label].append(float(value))
    return {label: _python_latency(values[label]) for label, _ in END_TO_END_KEYS}


def success_rate(*, events: QuerySet[Event]) -> dict[str, Any]:
    """``needed_reply``, ``replied`` and ``rate`` over distinct inbound messages of ``events``.

    One grouped query in the database on any backend; definition in the module docstring.
    """
    per_message = (
        events.filter(inbound_id__isnull=False)
        .values("inbound_id")
        .annotate(
            received=Count("pk", filter=Q(event_type=Event.Type.MESSAGE_RECEIVED)),
            owed=Count("pk", filter=Q(event_type__in=NEEDS_REPLY_TYPES)),
            sent=Count("pk", filter=Q(event_type=Event.Type.RESPONSE_SENT)),
        )
        .filter(received__gt=0, owed__gt=0)
        .order_by()
    )
    totals = per_message.aggregate(
        needed_reply=Count("inbound_id"),
        replied=Count("inbound_id", filter=Q(sent__gt=0)),
    )
    needed, replied = totals["needed_reply"] or 0, totals["replied"] or 0
    return {
        "needed_reply": needed,
        "replied": replied,
        "rate": round(replied / needed, 4) if needed else None,
    }


def graph_usage_last(*, limit: int = 200) -> dict[str, dict[str, Any]]:
    """The newest ``graph_usage`` event's figures per page: ``{page_id: {"at", "app", "page", "business"}}``.

    Reads the newest ``limit`` such events (the channel writes at most one a minute a page, so this
    covers every active page) through the ``event_type, created_at`` index.
    """
    newest: dict[str, dict[str, Any]] = {}
    rows = Event.objects.filter(event_type=Event.Type.GRAPH_USAGE).order_by("-created_at", "-id")
    for created_at, detail in rows.values_list("created_at", "detail")[:limit]:
        detail = detail if isinstance(detail, dict) else {}
        page_id = str(detail.get("page_id") or "-")
        if page_id not in newest:
            newest[page_id] = {
                "at": created_at.isoformat(),
                **{key: detail.get(key) or ({} if key != "business" else []) for key in ("app", "page", "business")},
            }
    return newest


def report_build(
    *, minutes: int = 60, now: datetime | None = None, in_database: bool | None = None
) -> dict[str, Any]:
    """The report's figures for the last ``minutes`` minutes (``0``: all time) up to ``now``.

    ``in_database`` forces where percentiles are computed (``None``: in the database on
    PostgreSQL, in Python elsewhere). The returned dict's keys are stable (docs/observability.md).
    """
    until = now or timezone.now()
    events = window_events(minutes=minutes, now=until)
    if in_database is None:
        in_database = connection.vendor == "postgresql"
    if in_database:
        counts, latency = _counts_and_latency_in_database(events)
        end_to_end = _end_to_end_in_database(events)
    else:
        counts, latency = _counts_and_latency_in_python(events)
        end_to_end = _end_to_end_in_python(events)
    types = [value for value, _ in Event.Type.choices]
    # Types outside the choices (an older or newer code version wrote them) are still reported.
    types += sorted(set(counts) - set(types))
    return {
        "window": {
            "minutes": minutes,
            "since": (until - timedelta(minutes=minutes)).isoformat() if minutes else None,
            "until": until.isoformat(),
        },
        "percentiles_computed_in": "database" if in_database else "python",
        "total_events": sum(counts.values()),
        "counts": {event_type: counts.get(event_type, 0) for event_type in types},
        "success": success_rate(events=events),
        "latency_ms": {event_type: latency.get(event_type, _empty_latency()) for event_type in types},
        "end_to_end_ms": end_to_end,
        "graph_usage": graph_usage_last(),
    }
