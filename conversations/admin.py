"""Staff inbox: who waits for a person, the transcript as a chat, staff reply, take over and give back.

The list shows waiting conversations first (oldest wait first), with the user's last message, and
is searched by a word of a message or part of a PSID (``conversations.search``). It costs the same
few queries whatever the table's size: the last message is a correlated subquery on the
``message_recent_idx`` index, never a query per row, and there is no full ``COUNT`` or ``DISTINCT``.

The change page's one editable field is ``staff_reply``: saving it with text hands the text to the
channel (``conversations.staff_handlers``), which queues it or refuses it and says why (the window
rules, docs/people.md); the box says beforehand how the reply would go. "Take over" and "Give back"
are buttons on the page (and list actions); each change goes in the admin history (``LogEntry``)
with who and when, and in the transcript as a note. Nobody deletes a conversation here: erasing a
user's data is ``messenger_forget``'s job.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from conversations.models import Conversation, Message
from conversations.people import conversation_note_add
from conversations.search import search_q
from conversations.services import ConversationClosedError, conversation_give_back, conversation_hand_over
from conversations.staff_handlers import (
    staff_give_back,
    staff_reply_preview,
    staff_reply_submit,
    staff_transcript_markers,
)
from conversations.transcript import TRANSCRIPT_LIMIT, render_attachments, render_structured, render_transcript
from observability.display import RecentFilter, when

__all__ = ["ConversationAdmin", "MessageAdmin", "render_attachments", "render_structured", "render_transcript"]

STAFF_REPLY_MAX_CHARS = 2000  # one Messenger text message

# The admin index shows how many conversations wait for a person (one COUNT on a partial index).
admin.site.index_template = "admin/inbox_index.html"


class ConversationStaffForm(forms.ModelForm):
    """The change page's form: every model field is read-only; ``staff_reply`` is the one input."""

    staff_reply = forms.CharField(
        label="Reply as staff",
        required=False,
        max_length=STAFF_REPLY_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "style": "width:100%;max-width:1100px"}),
        help_text="Sent to the user as your message when you save: within 24 hours of their last "
        "message as a normal reply, up to 7 days with the HUMAN_AGENT tag, never later.",
    )

    class Meta:
        model = Conversation
        fields: list[str] = []


class WaitingFilter(admin.SimpleListFilter):
    """Conversations waiting for a person (``waiting_since`` set): served by the partial index."""

    title = "waiting for a person"
    parameter_name = "waiting"

    def lookups(self, request, model_admin):
        return (("yes", "Waiting"), ("no", "Not waiting"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(waiting_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(waiting_since__isnull=True)
        return queryset


class MessageTimeFilter(RecentFilter):
    field_name = "created_at"


def _last_user_message(field: str) -> Subquery:
    newest = Message.objects.filter(conversation=OuterRef("pk"), direction=Message.Direction.IN)
    return Subquery(newest.order_by("-created_at", "-id").values(field)[:1])


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    form = ConversationStaffForm
    # Fits 1400 px with the sidebar and filters: the message count and the device id are on the page.
    list_display = ("psid", "page_id", "status", "waiting", "last_user_message", "last_activity")
    list_filter = (WaitingFilter, "status")
    search_fields = ("psid",)  # shows the box; get_search_results does the matching
    search_help_text = "A word of a message, part of a PSID, or an exact device id."
    # Waiting first, the longest wait on top; then the most recent activity.
    ordering = (F("waiting_since").asc(nulls_last=True), "-last_activity_at", "-id")
    show_full_result_count = False  # avoids a second COUNT(*) over the whole table on filtered lists
    actions = ("hand_over", "give_back")
    readonly_fields = (
        "psid",
        "page_id",
        "device_id",
        "status",
        "started_at",
        "last_activity_at",
        "message_count",
        "waiting_since",
        "bot_paused_until",
        "thread_owner_app_id",
        "transcript",
        "reply_policy",
        "waiting",
        "last_activity",
    )
    fieldsets = (
        (None, {"fields": (("psid", "page_id", "status"), ("waiting", "last_activity", "message_count"))}),
        ("Transcript", {"fields": ("transcript",)}),
        ("Staff reply", {"fields": ("reply_policy", "staff_reply")}),
        (
            "Details",
            {
                "classes": ("collapse",),
                "fields": ("device_id", "started_at", "bot_paused_until", "thread_owner_app_id"),
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "conversations_conversation_changelist":
            queryset = queryset.annotate(
                last_user_text=_last_user_message("text"), last_user_at=_last_user_message("created_at")
            )
        return queryset

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Part of a PSID, an exact device id, or a word of any message (a subquery: no DISTINCT)."""
        query = search_q(term=search_term, substring_fields=("psid",), exact_fields=("device_id",))
        if query is None:
            return queryset, False
        texts = search_q(term=search_term, substring_fields=("text",))
        query |= Q(pk__in=Message.objects.filter(texts).values("conversation_id"))  # IN, not a join
        return queryset.filter(query), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations start when users write, never by hand

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the transcript is the record; messenger_forget erases a user's data

    def has_forget_permission(self, request: HttpRequest) -> bool:
        """The "Forget these users" action (``messenger.forget_admin``): Django's delete permission."""
        return super().has_delete_permission(request)

    def get_urls(self):
        own = [
            path(
                "<int:object_id>/take-over/",
                self.admin_site.admin_view(self.take_over_view),
                name="conversations_conversation_take_over",
            ),
            path(
                "<int:object_id>/give-back/",
                self.admin_site.admin_view(self.give_back_view),
                name="conversations_conversation_give_back",
            ),
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save_and_add_another": False, "show_delete_link": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Conversation, form, change: bool) -> None:
        """Send the staff reply, never ``obj.save()``: the row's fields are the pipeline's to write."""
        text = form.cleaned_data.get("staff_reply", "").strip()
        request._staff_outcome = (
            staff_reply_submit(conversation=obj, text=text, author=request.user.get_username()) if text else None
        )

    def construct_change_message(self, request, form, formsets, add=False):
        """The history says what the save did (a reply queued or refused), never "No fields changed"."""
        outcome = getattr(request, "_staff_outcome", None)
        return f"Staff reply: {outcome.message}" if outcome is not None else "Opened and saved; nothing sent."

    def response_change(self, request: HttpRequest, obj: Conversation):
        outcome = getattr(request, "_staff_outcome", None)
        if outcome is None:
            self.message_user(request, "Nothing sent: the staff reply was empty.", messages.WARNING)
        else:
            self.message_user(request, outcome.message, messages.SUCCESS if outcome.ok else messages.ERROR)
        return HttpResponseRedirect(request.path)

    # --- list columns -------------------------------------------------------------------------------

    @admin.display(description="Waiting since", ordering="waiting_since")
    def waiting(self, obj: Conversation):
        return when(obj.waiting_since) if obj.waiting_since else ""

    @admin.display(description="Last user message")
    def last_user_message(self, obj: Conversation):
        text = getattr(obj, "last_user_text", None) or ""
        if len(text) > 90:
            text = text[:89] + "…"
        at = getattr(obj, "last_user_at", None)
        return format_html(
            '<div style="min-width:220px;max-width:420px">{}<div style="color:#888;font-size:11px">{}</div></div>',
            text,
            when(at) if at else "",
        )

    @admin.display(description="Last activity", ordering="last_activity_at")
    def last_activity(self, obj: Conversation):
        return when(obj.last_activity_at)

    # --- change page --------------------------------------------------------------------------------

    @admin.display(description="Transcript")
    def transcript(self, obj: Conversation) -> SafeString:
        latest = list(obj.messages.order_by("-created_at", "-id")[:TRANSCRIPT_LIMIT])
        latest.reverse()
        markers = staff_transcript_markers(conversation=obj)
        return render_transcript(latest, total=max(obj.message_count, len(latest)), markers=markers)

    @admin.display(description="How your reply will go")
    def reply_policy(self, obj: Conversation) -> SafeString:
        outcome = staff_reply_preview(conversation=obj)
        if outcome is None:
            return format_html("{}", "Staff replies are not available: no channel is installed.")
        colour = "#137333" if outcome.ok else "#d93025"
        return format_html('<strong class="reply-policy" style="color:{}">{}</strong>', colour, outcome.message)

    # --- take over / give back: buttons on the page and list actions ---------------------------------

    def take_over_view(self, request: HttpRequest, object_id: int):
        return self._button(request, object_id, self._take_over)

    def give_back_view(self, request: HttpRequest, object_id: int):
        return self._button(request, object_id, self._give_back)

    def _button(self, request: HttpRequest, object_id: int, act):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conversation = get_object_or_404(Conversation, pk=object_id)
        if not self.has_change_permission(request, conversation):
            return HttpResponseRedirect(reverse("admin:conversations_conversation_changelist"))
        try:
            message, level = act(request, conversation)
        except ConversationClosedError:
            message, level = "The conversation is expired (closed): nothing changed.", messages.WARNING
        self.message_user(request, message, level)
        return HttpResponseRedirect(reverse("admin:conversations_conversation_change", args=[object_id]))

    def _take_over(self, request: HttpRequest, conversation: Conversation) -> tuple[str, int]:
        """Staff has the conversation: the bot stops answering; history and transcript say who, when."""
        before = conversation.status
        conversation = conversation_hand_over(conversation=conversation)
        if before == conversation.status:
            return "Already with a person: nothing changed.", messages.INFO
        username = request.user.get_username()
        conversation_note_add(conversation=conversation, text=f"Taken over by staff ({username}).", author=username)
        self.log_change(request, conversation, "Taken over by staff: the bot stops answering.")
        return "Taken over: the bot stays silent until you give it back.", messages.SUCCESS

    def _give_back(self, request: HttpRequest, conversation: Conversation) -> tuple[str, int]:
        """The bot answers again; through the channel when installed (it takes thread control back)."""
        username = request.user.get_username()
        outcome = staff_give_back(conversation=conversation, author=username)
        if outcome is None:
            conversation_give_back(conversation=conversation)
            conversation_note_add(conversation=conversation, text="Given back to the bot.", author=username)
            message, level = "Given back to the bot.", messages.SUCCESS
        else:
            message, level = outcome.message, messages.SUCCESS if outcome.ok else messages.WARNING
        self.log_change(request, conversation, "Given back to the bot: it answers again.")
        return message, level

    @admin.action(description="Take over (the bot stops answering)", permissions=["change"])
    def hand_over(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, self._take_over, "taken over")

    @admin.action(description="Give back to the bot", permissions=["change"])
    def give_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, self._give_back, "given back to the bot")

    def _apply(self, request: HttpRequest, queryset: QuerySet, act, done: str) -> None:
        changed = closed = 0
        for conversation in queryset:
            before = conversation.status
            try:
                act(request, conversation)
            except ConversationClosedError:
                closed += 1
                continue
            conversation.refresh_from_db(fields=["status"])
            changed += conversation.status != before
        self.message_user(request, f"{changed} conversation(s) {done}.", messages.SUCCESS)
        if closed:
            self.message_user(
                request,
                f"{closed} expired conversation(s) left unchanged: they are closed.",
                messages.WARNING,
            )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Read-only: find a message by a word of it or Facebook's id; the transcript is the usual way to read."""

    list_display = ("id", "conversation", "direction", "short_text", "intent", "created", "fb_message_id")
    list_select_related = ("conversation",)
    list_filter = ("direction", MessageTimeFilter)
    search_fields = ("text",)
    search_help_text = "A word of the message, or an exact Facebook message id."
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    fields = (
        "conversation",
        "direction",
        "text",
        "offered_or_tapped",
        "attachments_display",
        "intent",
        "fb_message_id",
        "created_at",
    )
    readonly_fields = fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        query = search_q(term=search_term, substring_fields=("text",), exact_fields=("fb_message_id",))
        return (queryset, False) if query is None else (queryset.filter(query), False)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Text")
    def short_text(self, obj: Message) -> str:
        return obj.text if len(obj.text) <= 80 else obj.text[:79] + "…"

    @admin.display(description="Time (UTC)", ordering="created_at")
    def created(self, obj: Message):
        return when(obj.created_at)

    @admin.display(description="Offered / tapped")
    def offered_or_tapped(self, obj: Message) -> SafeString:
        return render_structured(obj.structured)

    @admin.display(description="Attachments")
    def attachments_display(self, obj: Message) -> SafeString:
        return render_attachments(obj.attachments)
