"""Search that finds people: a word of a message, or part of a PSID, in the admin's lists.

One query for both databases: ``icontains``. On PostgreSQL it is served by the trigram GIN indexes
the migrations make on ``UPPER(column)`` (the expression Django's ``icontains`` compares), so a
substring of a long table is an index scan, not a sequential one; on SQLite (``connection.vendor``
is not ``postgresql``: no ``pg_trgm``) the same filter is a plain scan, fine for a development
database. Terms shorter than three characters can't use a trigram index, so there they match whole
ids only instead of scanning the table.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Q

MIN_SUBSTRING = 3  # a trigram index needs at least one full trigram


def search_q(*, term: str, substring_fields: tuple[str, ...], exact_fields: tuple[str, ...] = ()) -> Q | None:
    """The filter for ``term``: exact on ``exact_fields``, substring on ``substring_fields``; ``None`` when empty."""
    term = term.strip()
    if not term:
        return None
    query = Q()
    for field in exact_fields:
        query |= Q(**{field: term})
    if len(term) >= MIN_SUBSTRING or connection.vendor != "postgresql":
        for field in substring_fields:
            query |= Q(**{f"{field}__icontains": term})
    else:
        for field in substring_fields:
            query |= Q(**{field: term})
    return query
