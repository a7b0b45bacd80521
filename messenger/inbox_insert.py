"""Keep a webhook body's rows, and their observability events, in one SQL statement.

Why one statement: the webhook must have the body committed to PostgreSQL before Facebook gets its
200, and ingress is CPU-bound (docs/performance.md, ingress). Kept through the ORM, a one-message body
cost two autocommitted INSERTs (the inbound row, then its ``message_received`` event through the
signal's receiver): two round trips, two commits, and the ORM's SQL compiler twice; a redelivery
raised ``IntegrityError`` and fell back to a savepoint per row. Here it is one statement and one
commit whatever the body holds::

    WITH kept AS (INSERT INTO messenger_inboundmessage (...) VALUES (...), ...
                  ON CONFLICT (mid) DO NOTHING RETURNING id, mid),
         recorded AS (INSERT INTO observability_event (...)
                      SELECT ..., kept.id, <ms since the request began> FROM kept JOIN (VALUES ...) v USING mid)
    SELECT id, mid FROM kept

A redelivered mid is skipped by ``ON CONFLICT`` (no error, no savepoint) and gets no event; the
statement is atomic, so a row is never kept without its event or the other way round. The cost: an
event insert that fails now fails the row with it (the webhook answers 500 and Facebook redelivers),
where the signal's receiver swallowed the error; with values built by
:func:`observability.services.event_build` only a broken database can fail it, and then the row's
own INSERT fails too.

The values go through each field's ``get_db_prep_save`` as the ORM's would, so JSON, datetimes and
defaults are stored exactly as ``Model.save`` stores them. On other databases (SQLite, the development
default) the same rows and events are kept through the ORM in one transaction instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from django.db import IntegrityError, connection, models, transaction
from django.db.models import Field, Model
from django.utils import timezone

from messenger.models import InboundMessage
from observability.models import Event

# Event columns written from SQL rather than from the built Event: the row's id and the latency.
_EVENT_SQL_COLUMNS = ("id", "inbound_id", "latency_ms")
# Fields whose Python value (str, int, float, None) is already what the database stores: their
# ``get_db_prep_save`` would only return it (validating nothing), so it is skipped, on the hot path.
_AS_IS = (models.CharField, models.TextField, models.IntegerField, models.FloatField)
_PLAIN_VALUE = (str, int, float, type(None))


def _columns(model: type[Model], skip: tuple[str, ...] = ("id",)) -> list[Field]:
    return [f for f in model._meta.concrete_fields if f.column not in skip]


def _values(obj: Model, fields: list[Field]) -> list:
    values = []
    for f in fields:
        value = f.pre_save(obj, True)
        if not (type(value) in _PLAIN_VALUE and isinstance(f, _AS_IS)):
            value = f.get_db_prep_save(value, connection)
        values.append(value)
    return values


@lru_cache(maxsize=64)
def _statement(rows: int, vendor: str) -> tuple[str, list[Field], list[Field]]:
    """The statement for ``rows`` rows (and as many events) and the fields of its parameters, in order."""
    qn = connection.ops.quote_name
    row_fields = _columns(InboundMessage)
    event_fields = _columns(Event, _EVENT_SQL_COLUMNS)
    row_placeholders = "(" + ", ".join(["%s"] * len(row_fields)) + ")"
    # VALUES outside an INSERT has no column types to infer from: cast each to its column's type.
    casts = [f"%s::{f.db_type(connection)}" for f in event_fields] + ["%s::timestamp with time zone"]
    event_placeholders = "(" + ", ".join(casts) + ")"
    event_names = [qn(f.column) for f in event_fields]
    # Identifiers come from the models' own _meta, every value is a parameter.
    sql = (
        f"WITH kept AS (INSERT INTO {qn(InboundMessage._meta.db_table)} "  # noqa: S608
        f"({', '.join(qn(f.column) for f in row_fields)}) VALUES {', '.join([row_placeholders] * rows)} "
        f"ON CONFLICT ({qn('mid')}) DO NOTHING RETURNING {qn('id')}, {qn('mid')}), "
        f"recorded AS (INSERT INTO {qn(Event._meta.db_table)} ({', '.join(event_names)}, "
        f"{qn('inbound_id')}, {qn('latency_ms')}) "
        f"SELECT {', '.join('v.' + n for n in event_names)}, kept.{qn('id')}, "
        # GREATEST ignores a NULL: the CASE keeps "no start" as no latency, not 0.
        f"(CASE WHEN v.since IS NOT NULL THEN GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - v.since) * 1000) "
        f"END)::double precision "
        f"FROM kept JOIN (VALUES {', '.join([event_placeholders] * rows)}) "
        f"AS v({', '.join(event_names)}, since) ON v.{qn('mid')} = kept.{qn('mid')}) "
        f"SELECT {qn('id')}, {qn('mid')} FROM kept"
    )
    return sql, row_fields, event_fields


def inbox_insert(
    *, rows: Sequence[InboundMessage], events: Sequence[Event], since: Sequence[datetime | None]
) -> list[InboundMessage]:
    """Insert ``rows`` (skipping mids already stored) and, for each row inserted, ``events[i]``.

    ``events[i]`` belongs to ``rows[i]`` (same mid); its ``inbound_id`` is the new row's id and its
    ``latency_ms`` the milliseconds from ``since[i]`` (the request's start; ``None``: no latency) to
    the moment the statement wrote it. Returns the rows inserted, in the order given, with their ids
    set: a row missing from the result was a duplicate. One statement, autocommitted unless the caller
    is in a transaction. The mids of ``rows`` must be distinct, and ``events`` as many as ``rows``.
    """
    if len(events) != len(rows):
        raise ValueError("one event per row")
    if not rows:
        return []
    if connection.vendor != "postgresql":
        return _insert_portable(rows=rows, events=events, since=since)
    sql, row_fields, event_fields = _statement(len(rows), connection.vendor)
    params: list = []
    for row in rows:
        params.extend(_values(row, row_fields))
    for event, start in zip(events, since, strict=True):
        params.extend(_values(event, event_fields))
        params.append(start)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = dict((mid, pk) for pk, mid in cursor.fetchall())
    kept = []
    for row in rows:
        pk = ids.get(row.mid)
        if pk is None:
            continue
        row.pk = pk
        row._state.adding = False
        row._state.db = connection.alias
        kept.append(row)
    return kept


def _insert_portable(
    *, rows: Sequence[InboundMessage], events: Sequence[Event], since: Sequence[datetime | None]
) -> list[InboundMessage]:
    """The same through the ORM, for databases other than PostgreSQL (SQLite in development): one
    transaction, a savepoint per row so a redelivered mid is skipped, then the kept rows' events."""
    kept: list[InboundMessage] = []
    recorded: list[Event] = []
    with transaction.atomic():
        for row, event, start in zip(rows, events, since, strict=True):
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
            except IntegrityError:
                continue
            kept.append(row)
            event.inbound_id = row.pk
            if start is not None:
                event.latency_ms = max(0.0, (timezone.now() - start).total_seconds() * 1000)
            recorded.append(event)
        Event.objects.bulk_create(recorded)
    return kept
