"""Staff review of conversations: list, read-only transcript, staff reply, hand over and give back.

The change page's one editable field is ``staff_reply``: saving it with text hands the text to the
channel (``conversations.staff_handlers``), which queues it or refuses it and says why (the window
rules, docs/people.md). The list shows who is waiting for a person.

Everything user-supplied (text, titles, payloads, URLs) is escaped through ``format_html``; URLs are
shown as text, never as links, so a crafted ``javascript:`` URL can't run in a staff browser.
The list costs the same few queries whatever the table's size (no related rows are read per row).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from conversations.models import Conversation, Message
from conversations.services import (
    ConversationClosedError,
    conversation_give_back,
    conversation_hand_over,
)
from conversations.staff_handlers import staff_give_back, staff_reply_submit

STAFF_REPLY_MAX_CHARS = 2000  # one Messenger text message

# The transcript shows at most this many messages (the latest), so one page never grows unbounded.
TRANSCRIPT_LIMIT = 500

_CHIP = "display:inline-block;margin:1px 4px 1px 0;padding:1px 6px;border:1px solid #999;border-radius:10px"
_CARD = "display:inline-block;vertical-align:top;margin:2px 6px 2px 0;padding:4px 6px;border:1px solid #bbb"


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else []


def _text(value) -> str:
    return "" if value is None else str(value)


def _render_button(button) -> SafeString:
    if not isinstance(button, dict):
        return format_html('<span style="{}">{}</span>', _CHIP, _text(button))
    title = _text(button.get("title"))
    if button.get("url") or button.get("type") == "web_url":
        return format_html(
            '<span style="{}">{} &#8599; <code>{}</code></span>', _CHIP, title, _text(button.get("url"))
        )
    return format_html(
        '<span style="{}">{} &#8594; <code>{}</code></span>', _CHIP, title, _text(button.get("payload"))
    )


def _render_buttons(buttons: list) -> SafeString:
    return format_html_join("", "{}", ((_render_button(b),) for b in buttons))


def _render_card(card) -> SafeString:
    if not isinstance(card, dict):
        return format_html('<div style="{}">{}</div>', _CARD, _text(card))
    return format_html(
        '<div style="{}"><strong>{}</strong><br>{}{}<div>{}</div></div>',
        _CARD,
        _text(card.get("title")),
        _text(card.get("subtitle")),
        format_html("<br><small>image: <code>{}</code></small>", card["image_url"])
        if card.get("image_url")
        else "",
        _render_buttons(_as_list(card.get("buttons"))),
    )


def _offered(structured: dict) -> tuple[list, list, list, set]:
    """Quick replies, buttons and cards in ``structured``, and the keys that explained them.

    Reads our own shape (``conversations.structured``) and, leniently, a Send API message body
    (``quick_replies`` with ``content_type``, ``attachment.payload`` templates).
    """
    used: set = set()
    quick_replies = _as_list(structured.get("quick_replies"))
    buttons = _as_list(structured.get("buttons"))
    cards = _as_list(structured.get("cards")) or _as_list(structured.get("elements"))
    used.update(k for k in ("quick_replies", "buttons", "cards", "elements") if k in structured)
    attachment = structured.get("attachment")
    if isinstance(attachment, dict) and isinstance(attachment.get("payload"), dict):
        payload = attachment["payload"]
        buttons = buttons or _as_list(payload.get("buttons"))
        cards = cards or _as_list(payload.get("elements"))
        used.add("attachment")
    return quick_replies, buttons, cards, used


def render_structured(structured) -> SafeString:
    """Readable HTML for a message's ``structured`` value: what was offered, or what was tapped."""
    if not structured:
        return mark_safe("")
    if not isinstance(structured, dict):
        return format_html("<pre>{}</pre>", json.dumps(structured, ensure_ascii=False, indent=1))
    parts: list[SafeString] = []
    used: set = set()
    if "payload" in structured and not isinstance(structured.get("payload"), dict):
        kind = {"quick_reply": "quick reply", "postback": "button"}.get(_text(structured.get("kind")), "")
        parts.append(
            format_html(
                "<div>&#128070; Tapped{}: <strong>{}</strong> <code>{}</code></div>",
                f" {kind}" if kind else "",
                _text(structured.get("title")) or "(no title)",
                _text(structured.get("payload")),
            )
        )
        used.update({"payload", "title", "kind"})
    quick_replies, buttons, cards, offered_keys = _offered(structured)
    used |= offered_keys
    if quick_replies:
        parts.append(format_html("<div>Quick replies: {}</div>", _render_buttons(quick_replies)))
    if buttons:
        parts.append(format_html("<div>Buttons: {}</div>", _render_buttons(buttons)))
    if cards:
        parts.append(
            format_html(
                "<div>Cards:<br>{}</div>", format_html_join("", "{}", ((_render_card(c),) for c in cards))
            )
        )
    rest = {k: v for k, v in structured.items() if k not in used}
    if rest:
        parts.append(
            format_html("<pre>{}</pre>", json.dumps(rest, ensure_ascii=False, indent=1, default=str))
        )
    return format_html_join("", "{}", ((p,) for p in parts))


def render_attachments(attachments) -> SafeString:
    """One line per attachment: its type and URL (as text), or its JSON when it has another shape."""
    rows = []
    for item in _as_list(attachments):
        if isinstance(item, dict):
            payload = item.get("payload") if isinstance(item.get("payload"), dict) else {}
            url = payload.get("url") or item.get("url") or ""
            rows.append(
                (_text(item.get("type")) or "attachment", _text(url) or json.dumps(item, default=str))
            )
        else:
            rows.append(("attachment", _text(item)))
    return format_html_join("", "<div>[{}] <code>{}</code></div>", rows)


def render_transcript(messages_: list[Message], *, total: int) -> SafeString:
    """The transcript table, oldest first. ``total`` is the conversation's message count."""
    if not messages_:
        return format_html("<p>{}</p>", "No messages.")
    rows = format_html_join(
        "",
        '<tr><td style="white-space:nowrap">{}</td><td>{}</td><td style="white-space:pre-wrap">{}</td>'
        "<td>{}{}</td><td>{}</td><td><code>{}</code></td></tr>",
        (
            (
                m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                m.role_label,
                m.text,
                render_structured(m.structured),
                render_attachments(m.attachments),
                m.intent,
                m.fb_message_id or "",
            )
            for m in messages_
        ),
    )
    note = (
        format_html("<p>Showing the latest {} of {} messages.</p>", len(messages_), total)
        if total > len(messages_)
        else ""
    )
    return format_html(
        '{}<table class="transcript"><thead><tr><th>Time (UTC)</th><th>From</th><th>Text</th>'
        "<th>Offered / tapped / attachments</th><th>Intent</th><th>Message id</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        note,
        rows,
    )


class ConversationStaffForm(forms.ModelForm):
    """The change page's form: every model field is read-only; ``staff_reply`` is the one input."""

    staff_reply = forms.CharField(
        label="Reply as staff",
        required=False,
        max_length=STAFF_REPLY_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Sent to the user as your message when you save: within 24 hours of their last "
        "message as a normal reply, up to 7 days with the HUMAN_AGENT tag, never later.",
    )

    class Meta:
        model = Conversation
        fields: list[str] = []


class WaitingFilter(admin.SimpleListFilter):
    """Conversations waiting for a person (``waiting_since`` set), oldest wait first in the docs."""

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


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    form = ConversationStaffForm
    list_display = ("psid", "page_id", "status", "waiting_since", "started_at", "last_activity_at", "message_count")
    list_filter = (WaitingFilter, "status", "last_activity_at", "started_at")
    search_fields = ("psid", "device_id")
    search_help_text = "Exact PSID or device id."
    ordering = ("-last_activity_at", "-id")
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
    )
    fieldsets = (
        (None, {"fields": (("psid", "page_id"), "device_id", "status")}),
        ("People", {"fields": ("waiting_since", "bot_paused_until", "thread_owner_app_id")}),
        ("Activity", {"fields": (("started_at", "last_activity_at"), "message_count")}),
        ("Transcript", {"fields": ("transcript",)}),
        ("Staff reply", {"fields": ("staff_reply",)}),
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Exact match on PSID or device id: both are indexed, unlike the default ``icontains``."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(psid=term) | Q(device_id=term)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations start when users write, never by hand

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Saving only sends the staff reply; status changes are the list's actions.
        extra_context = {**(extra_context or {}), "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Conversation, form, change: bool) -> None:
        """Send the staff reply, never ``obj.save()``: the row's fields are the pipeline's to write."""
        text = form.cleaned_data.get("staff_reply", "").strip()
        request._staff_outcome = (
            staff_reply_submit(conversation=obj, text=text, author=request.user.get_username()) if text else None
        )

    def response_change(self, request: HttpRequest, obj: Conversation):
        outcome = getattr(request, "_staff_outcome", None)
        if outcome is None:
            self.message_user(request, "Nothing sent: the staff reply was empty.", messages.WARNING)
        else:
            self.message_user(request, outcome.message, messages.SUCCESS if outcome.ok else messages.ERROR)
        return HttpResponseRedirect(request.path)

    @admin.display(description="Transcript")
    def transcript(self, obj: Conversation) -> SafeString:
        latest = list(obj.messages.order_by("-created_at", "-id")[:TRANSCRIPT_LIMIT])
        latest.reverse()
        return render_transcript(latest, total=max(obj.message_count, len(latest)))

    @admin.action(description="Hand over to a human", permissions=["change"])
    def hand_over(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, conversation_hand_over, "handed over to a human")

    @admin.action(description="Give back to the bot", permissions=["change"])
    def give_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Through the channel when installed (it also takes thread control back from another app)."""
        author = request.user.get_username()

        def back(*, conversation: Conversation) -> Conversation:
            outcome = staff_give_back(conversation=conversation, author=author)
            if outcome is None:
                return conversation_give_back(conversation=conversation)
            if not outcome.ok:
                self.message_user(request, outcome.message, messages.WARNING)
            conversation.refresh_from_db(fields=["status"])
            return conversation

        self._apply(request, queryset, back, "given back to the bot")

    def _apply(self, request: HttpRequest, queryset: QuerySet, service, done: str) -> None:
        changed = closed = 0
        for conversation in queryset:
            before = conversation.status
            try:
                after = service(conversation=conversation).status
            except ConversationClosedError:
                closed += 1
                continue
            changed += after != before
        self.message_user(request, f"{changed} conversation(s) {done}.", messages.SUCCESS)
        if closed:
            self.message_user(
                request,
                f"{closed} expired conversation(s) left unchanged: they are closed.",
                messages.WARNING,
            )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Read-only: find one message by Facebook's id; the transcript is the usual way to read them."""

    list_display = ("id", "conversation", "direction", "short_text", "intent", "created_at", "fb_message_id")
    list_select_related = ("conversation",)
    list_filter = ("direction", "created_at")
    search_fields = ("fb_message_id",)
    search_help_text = "Exact Facebook message id."
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
        term = search_term.strip()
        return (queryset.filter(fb_message_id=term), False) if term else (queryset, False)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Text")
    def short_text(self, obj: Message) -> str:
        return obj.text if len(obj.text) <= 80 else obj.text[:79] + "…"

    @admin.display(description="Offered / tapped")
    def offered_or_tapped(self, obj: Message) -> SafeString:
        return render_structured(obj.structured)

    @admin.display(description="Attachments")
    def attachments_display(self, obj: Message) -> SafeString:
        return render_attachments(obj.attachments)
