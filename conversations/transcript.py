"""The conversation's transcript as staff read it: a chat, not a table.

User messages on the left, the bot's on the right, staff, people elsewhere and notes each in their
own colour, so who said what is clear at a glance; the text is wide and wraps, ids are small and
muted at the bottom of each bubble. What was offered (quick replies, buttons, cards) and what was
tapped stays visible. A user message that was not answered normally carries a marker from the
channel (``conversations.staff_handlers.TranscriptMarker``): failed, deferred, expired or handed
over, a sentence saying why, Facebook's trace id, and a link to the inbound row.

Everything user-supplied (text, titles, payloads, URLs) is escaped through ``format_html``; URLs are
shown as text, never as links, so a crafted ``javascript:`` URL can't run in a staff browser.
"""

from __future__ import annotations

import json

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from conversations.models import Message
from conversations.staff_handlers import TranscriptMarker
from observability.display import DATE_FORMAT

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
        format_html("<br><small>image: <code>{}</code></small>", card["image_url"]) if card.get("image_url") else "",
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
            format_html("<div>Cards:<br>{}</div>", format_html_join("", "{}", ((_render_card(c),) for c in cards)))
        )
    rest = {k: v for k, v in structured.items() if k not in used}
    if rest:
        parts.append(format_html("<pre>{}</pre>", json.dumps(rest, ensure_ascii=False, indent=1, default=str)))
    return format_html_join("", "{}", ((p,) for p in parts))


def render_attachments(attachments) -> SafeString:
    """One line per attachment: its type and URL (as text), or its JSON when it has another shape."""
    rows = []
    for item in _as_list(attachments):
        if isinstance(item, dict):
            payload = item.get("payload") if isinstance(item.get("payload"), dict) else {}
            url = payload.get("url") or item.get("url") or ""
            rows.append((_text(item.get("type")) or "attachment", _text(url) or json.dumps(item, default=str)))
        else:
            rows.append(("attachment", _text(item)))
    return format_html_join("", "<div>[{}] <code>{}</code></div>", rows)


# (bubble background, border, alignment) by who wrote it.
_STYLES = {
    "user": ("#f1f3f5", "#ced4da", "flex-start"),
    "bot": ("#e7f1ff", "#9ec5fe", "flex-end"),
    "staff": ("#e6f4ea", "#81c995", "flex-end"),
    "person": ("#f3e8fd", "#c58af9", "flex-end"),
}
_MARKER_COLOURS = {
    "failed": ("#fdecea", "#d93025"),
    "deferred": ("#fff4e5", "#e37400"),
    "expired": ("#fff4e5", "#e37400"),
    "handed_over": ("#f3e8fd", "#8430ce"),
}
_MUTED = "color:#888;font-size:11px"


def _role(message: Message) -> str:
    if message.role:
        return message.role
    return Message.Role.USER if message.direction == Message.Direction.IN else Message.Role.BOT


def render_marker(marker: TranscriptMarker) -> SafeString:
    """The line under a user message saying what became of it, why, and where to look further."""
    background, colour = _MARKER_COLOURS.get(marker.kind, ("#f1f3f5", "#555"))
    trace = format_html(" &middot; Facebook trace id <code>{}</code>", marker.fbtrace_id) if marker.fbtrace_id else ""
    link = format_html(' &middot; <a href="{}">inbound row</a>', marker.url) if marker.url else ""
    return format_html(
        '<div class="marker marker-{}" style="margin-top:4px;padding:3px 8px;background:{};'
        'border-left:3px solid {};font-size:12px"><strong style="color:{}">{}</strong>: {}'
        '<span style="{}">{}{}</span></div>',
        marker.kind,
        background,
        colour,
        colour,
        marker.label,
        marker.reason,
        _MUTED,
        trace,
        link,
    )


def _render_message(message: Message, marker: TranscriptMarker | None) -> SafeString:
    role = _role(message)
    stamp = message.created_at.strftime(DATE_FORMAT)
    if role == Message.Role.NOTE:
        return format_html(
            '<div class="msg msg-note" style="text-align:center;margin:8px 0;color:#555;font-style:italic">'
            '&#8212; {} &#8212; <span style="{}">{}{}</span></div>',
            message.text,
            _MUTED,
            stamp,
            f" · {message.author}" if message.author else "",
        )
    background, border, align = _STYLES.get(role, _STYLES["bot"])
    ids = " · ".join(x for x in (message.intent and f"intent {message.intent}", message.fb_message_id or "") if x)
    return format_html(
        '<div class="msg msg-{}" style="display:flex;justify-content:{};margin:6px 0">'
        '<div style="max-width:75%;min-width:240px;padding:6px 10px;background:{};border:1px solid {};'
        'border-radius:10px"><div style="font-weight:bold;font-size:12px">{} '
        '<span style="{};font-weight:normal">{}</span></div>'
        '<div class="msg-text" style="white-space:pre-wrap;font-size:14px;margin:2px 0">{}</div>{}{}'
        '<div style="{}">{}</div>{}</div></div>',
        role,
        align,
        background,
        border,
        message.role_label,
        _MUTED,
        stamp,
        message.text,
        render_structured(message.structured),
        render_attachments(message.attachments),
        _MUTED,
        ids,
        render_marker(marker) if marker else "",
    )


def render_transcript(
    messages_: list[Message], *, total: int, markers: dict[str, TranscriptMarker] | None = None
) -> SafeString:
    """The chat, oldest first. ``total`` is the conversation's message count; ``markers`` by message id."""
    if not messages_:
        return format_html("<p>{}</p>", "No messages.")
    markers = markers or {}
    rows = format_html_join("", "{}", ((_render_message(m, markers.get(m.fb_message_id or "")),) for m in messages_))
    note = (
        format_html("<p>Showing the latest {} of {} messages.</p>", len(messages_), total)
        if total > len(messages_)
        else ""
    )
    return format_html('{}<div class="transcript" style="width:100%;max-width:1100px">{}</div>', note, rows)
