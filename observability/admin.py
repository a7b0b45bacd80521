"""Staff review of observability events: read-only, filterable, searchable by hashed PSID.

Events are a record of what happened, so nobody adds, edits or deletes one in the admin (erasing a
user's events is ``messenger_forget``'s job, pruning old ones the retention command's); staff with
the view permission can browse. The table is large: no date drill-down and no ``DISTINCT`` filter,
only fixed choices (``observability.display.RecentFilter``) that each read one indexed range.
A search term is matched against ``mid`` and the hashed PSID, and also hashed with
:func:`hash_psid` so staff holding a user's PSID can follow that user's journey without the PSID
ever being stored.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from observability.display import RecentFilter, latency, when
from observability.hashing import hash_psid
from observability.models import Event


class EventTimeFilter(RecentFilter):
    field_name = "created_at"


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = (
        "created_display",
        "event_type",
        "platform",
        "psid_hash",
        "mid",
        "inbound_id",
        "conversation_id",
        "latency_display",
    )
    list_filter = ("event_type", EventTimeFilter)  # event_type has fixed choices: no DISTINCT
    search_fields = ("=psid_hash", "=mid")
    search_help_text = "An exact hashed PSID, raw PSID (hashed before searching) or message id (mid)."
    ordering = ("-created_at", "-id")
    # Counting every row of a large events table on each page is the slow part of a changelist.
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = [field.name for field in Event._meta.fields]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        """Match exact ``psid_hash`` or ``mid``, or the hash of the term taken as a raw PSID."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(psid_hash=term) | Q(mid=term) | Q(psid_hash=hash_psid(term))), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    @admin.display(description="Time (UTC)", ordering="created_at")
    def created_display(self, obj: Event):
        return when(obj.created_at)

    @admin.display(description="Latency", ordering="latency_ms")
    def latency_display(self, obj: Event) -> str:
        return latency(obj.latency_ms)
