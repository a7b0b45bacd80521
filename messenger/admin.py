"""Admin for the durable inbox: every kept message, what happened to it, the parts of its reply; and staff
replies with their status (read-only: they are written in the conversation admin, docs/people.md).

The pages admin (write-only token) is ``messenger.page_admin``, registered by importing it here.
"""

from __future__ import annotations

from django.contrib import admin, messages

from messenger.forget_admin import forget_users
from messenger.inbox import inbox_requeue_one
from messenger.models import InboundMessage, OutboundPart, StaffReply
from messenger.page_admin import PageAdmin  # noqa: F401 - registers the Page admin


class OutboundPartInline(admin.TabularInline):
    model = OutboundPart
    extra = 0
    can_delete = False
    fields = ("position", "status", "body", "fb_message_id", "error_kind", "error_code", "sent_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the webhook and the pipeline only. Staff can requeue."""

    list_display = ("mid", "kind", "status", "status_reason", "queue_name", "attempts", "received_at", "finished_at")
    list_filter = ("status", "kind", "queue_name", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=mid", "=psid")
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    list_select_related = False
    inlines = [OutboundPartInline]
    # "Forget these users" is on the conversation list too (messenger.forget_admin adds it there).
    actions = ["requeue_selected", forget_users]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The change page is the read-only detail view; saving changes nothing (all fields read-only).
        return request.user.is_staff

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
class StaffReplyAdmin(admin.ModelAdmin):
    """Read-only: what became of each staff reply (queued, deferred, sent, failed and why)."""

    list_display = ("id", "author", "status", "status_reason", "messaging_type", "tag", "created_at", "sent_at")
    list_filter = ("status", "tag")
    search_fields = ("=psid", "=author")
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
