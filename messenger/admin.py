"""Admin for the durable inbox: every kept message, what happened to it, the parts of its reply; and staff
replies with their status (read-only: they are written in the conversation admin, docs/people.md).

All read-only: no Save, no Delete (deleting a user's data is ``messenger_forget``'s job). The inbound
table is large, so its list has no date drill-down and no ``DISTINCT`` filter: fixed choices only,
each served by an index (migration 0004), and no full COUNT.

The pages admin (write-only token) is ``messenger.page_admin``, registered by importing it here.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from conversations.search import search_q
from messenger.forget_admin import forget_users
from messenger.inbox import inbox_requeue_one
from messenger.models import InboundMessage, OutboundPart, StaffReply
from messenger.page_admin import PageAdmin  # noqa: F401 - registers the Page admin
from observability.display import RecentFilter, when


class ReceivedFilter(RecentFilter):
    title = "received"
    field_name = "received_at"


class _NoWrites:
    """No Save, no Delete, no Add for anyone: these rows are written by the channel only."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_forget_permission(self, request) -> bool:
        """The "Forget these users" action: Django's delete permission, though no Delete is offered."""
        return super().has_delete_permission(request)


class _ReadOnly(_NoWrites):
    """A list and a read-only page of rows written by the channel only."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]



class OutboundPartInline(_NoWrites, admin.TabularInline):
    model = OutboundPart
    extra = 0
    can_delete = False
    fields = ("position", "status", "body", "fb_message_id", "error_kind", "error_code", "fbtrace_id", "sent_at")
    readonly_fields = fields


@admin.register(InboundMessage)
class InboundMessageAdmin(_ReadOnly, admin.ModelAdmin):
    """Read-only: rows are written by the webhook and the pipeline only. Staff can requeue."""

    list_display = (
        "received", "psid", "short_text", "kind", "status", "status_reason", "conversation_link", "attempts"
    )
    list_filter = ("status", "kind", ReceivedFilter)
    search_fields = ("psid",)  # the search box; get_search_results does the matching
    search_help_text = "A word of the message, part of a PSID, or an exact message id (mid)."
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    list_select_related = False
    inlines = [OutboundPartInline]
    # "Forget these users" is on the conversation list too (messenger.forget_admin adds it there).
    actions = ["requeue_selected", forget_users]

    def get_search_results(self, request, queryset, search_term):
        query = search_q(term=search_term, substring_fields=("text", "psid"), exact_fields=("mid",))
        return (queryset, False) if query is None else (queryset.filter(query), False)

    @admin.display(description="Received (UTC)", ordering="received_at")
    def received(self, obj: InboundMessage):
        return when(obj.received_at)

    @admin.display(description="Text")
    def short_text(self, obj: InboundMessage) -> str:
        text = obj.text or obj.title or obj.payload
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="Conversation")
    def conversation_link(self, obj: InboundMessage):
        if obj.conversation_id is None:
            return "-"
        url = reverse("admin:conversations_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">#{}</a>', url, obj.conversation_id)

    @admin.action(description="Put back on the queue (messages not answered yet)")
    def requeue_selected(self, request, queryset):
        requeued = skipped = 0
        for row in queryset:
            if row.status in InboundMessage.FINAL_STATUSES:
                skipped += 1
                continue
            inbox_requeue_one(inbound=row)
            requeued += 1
        self.message_user(request, f"Requeued {requeued}; left {skipped} that are already final.", messages.INFO)


@admin.register(StaffReply)
class StaffReplyAdmin(_ReadOnly, admin.ModelAdmin):
    """Read-only: what became of each staff reply (queued, deferred, sent, failed and why)."""

    list_display = ("id", "author", "status", "status_reason", "messaging_type", "tag", "created", "sent")
    list_filter = ("status", "tag")
    search_fields = ("=psid", "=author")
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created(self, obj: StaffReply):
        return when(obj.created_at)

    @admin.display(description="Sent (UTC)", ordering="sent_at")
    def sent(self, obj: StaffReply):
        return when(obj.sent_at)
