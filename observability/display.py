"""How times and latencies read in every admin list: one date format with seconds, plus "x min ago".

Lives in the lowest app so the conversation, inbox and event admins all show times the same way
(staff compare rows across those pages), and offers the fixed "received" filter those large lists
use instead of a date drill-down, whose ``DISTINCT`` over dates scans the whole table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def ago(value: datetime, *, now: datetime | None = None) -> str:
    """``"just now"``, ``"5 min ago"``, ``"3 h ago"`` or ``"2 d ago"`` (a time in the future reads "just now")."""
    seconds = int(((now or timezone.now()) - value).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def when(value: datetime | None, *, now: datetime | None = None) -> SafeString | str:
    """A time as every admin list shows it: UTC with seconds, and how long ago, muted."""
    if value is None:
        return "-"
    return format_html(
        '{} <span style="color:#888">({})</span>',
        value.astimezone(UTC).strftime(DATE_FORMAT),
        ago(value, now=now),
    )


def latency(value_ms: float | None) -> str:
    """A latency rounded to whole milliseconds (seconds with one decimal from 10 s up)."""
    if value_ms is None:
        return "-"
    if value_ms >= 10_000:
        return f"{value_ms / 1000:.1f} s"
    return f"{round(value_ms)} ms"


class RecentFilter(admin.SimpleListFilter):
    """Last hour / day / week, fixed choices: no query to list them, one indexed range to apply one.

    Subclasses set ``field_name``, the datetime field to filter on.
    """

    title = "when"
    parameter_name = "recent"
    field_name = "created_at"
    SPANS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}

    def lookups(self, request, model_admin):
        return (("hour", "Last hour"), ("day", "Last 24 hours"), ("week", "Last 7 days"))

    def queryset(self, request, queryset):
        span = self.SPANS.get(self.value() or "")
        if span is None:
            return queryset
        return queryset.filter(**{f"{self.field_name}__gte": timezone.now() - span})
