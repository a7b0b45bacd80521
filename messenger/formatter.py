"""Turn an engine :class:`~engine.types.Reply` into the Send API ``message`` objects Facebook accepts.

Three steps, each a public function in the module named for its concern, so callers and tests can
use them alone:

1. :func:`messenger.markdown.strip_markdown` renders markdown (what chat models write) as plain text.
2. :func:`messenger.splitting.split_text` cuts a long text into messages within Facebook's limit,
   never tearing a grapheme cluster apart.
3. :func:`format_reply` (here) assembles the messages: text parts, then a button template, then a
   generic template (carousel), with the quick replies on the last message. Every structured part is
   checked against Facebook's documented limits (``messenger/limits.py``, each with its source) and
   degraded rather than sent to be refused.

How each limit degrades (the contract the tests pin down):

* Text: split into at most :data:`messenger.splitting.MAX_PARTS` messages; past that, the last
  message is cut at a sentence end (else a word, else a grapheme cluster) and ends with ``…``, still
  within the limit.
* Quick replies: invalid ones (empty title, empty payload or payload over 1,000) are dropped; titles
  over 20 are shortened with ``…``; past 13, the rest are dropped.
* Button template: buttons with an empty title, a postback without payload or with one over 1,000,
  or a ``web_url`` whose URL is not absolute http(s) are dropped; titles are shortened to 20. Past
  three buttons, extra postback buttons become quick replies (still tappable) and extra URL buttons
  become "title: url" lines of the text. A text over 640 characters is sent as ordinary text
  messages and the buttons follow in a template whose text is :data:`messenger.texts.BUTTONS_PROMPT`
  (also used when the reply has no text but has cards). No valid button left: plain text.
* Generic template: titles and subtitles are shortened to 80; a card without title takes its
  subtitle as title; an ``image_url`` that is not http(s) is omitted; buttons are checked as above and
  past three are dropped. A card left with only a title (Facebook refuses it) and cards past ten
  become "• title: subtitle (url)" lines of a text message after the carousel.
* A reply with neither text nor cards gives ``[]``: quick replies and buttons need something to hang on.

Every degradation is logged (``messenger.format.*`` with the reply's intent): it points at an engine
answer or a data-file entry to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from engine.types import Button, Card, QuickReply, Reply
from messenger import texts
from messenger.limits import (
    BUTTON_TEMPLATE_TEXT_CHARS,
    BUTTON_TITLE_CHARS,
    CARD_SUBTITLE_CHARS,
    CARD_TITLE_CHARS,
    MAX_BUTTONS,
    MAX_CARD_BUTTONS,
    MAX_CARDS,
    MAX_QUICK_REPLIES,
    PAYLOAD_CHARS,
    QUICK_REPLY_TITLE_CHARS,
)
from messenger.markdown import strip_markdown
from messenger.splitting import shorten, split_text

logger = logging.getLogger("messenger.format")


def _one_line(value: str) -> str:
    return " ".join((value or "").split())


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host and no whitespace or control characters."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


def _degraded(event: str, *, intent: str, **context: object) -> None:
    logger.warning(f"messenger.format.{event}", extra={"intent": intent, **context})


def _button(button: Button, *, intent: str) -> dict | None:
    """A Send API button object, or ``None`` (logged) when Facebook would refuse it."""
    title = shorten(_one_line(button.title), BUTTON_TITLE_CHARS)
    if not title:
        _degraded("button_dropped", intent=intent, reason="empty_title")
        return None
    if title != _one_line(button.title):
        _degraded("button_title_shortened", intent=intent, limit=BUTTON_TITLE_CHARS)
    if button.type == "web_url":
        if not is_http_url(button.url):
            _degraded("button_dropped", intent=intent, reason="invalid_url")
            return None
        return {"type": "web_url", "url": button.url, "title": title}
    if button.type == "postback":
        if not button.payload or len(button.payload) > PAYLOAD_CHARS:
            _degraded("button_dropped", intent=intent, reason="invalid_payload")
            return None
        return {"type": "postback", "title": title, "payload": button.payload}
    _degraded("button_dropped", intent=intent, reason="unknown_type", button_type=str(button.type))
    return None


def _quick_replies(items: Sequence[QuickReply], *, intent: str) -> list[dict]:
    out: list[dict] = []
    for item in items:
        title = _one_line(item.title)
        payload = item.payload if isinstance(item.payload, str) else str(item.payload)
        if not title or not payload or len(payload) > PAYLOAD_CHARS:
            _degraded("quick_reply_dropped", intent=intent, reason="invalid_title_or_payload")
            continue
        short = shorten(title, QUICK_REPLY_TITLE_CHARS)
        if short != title:
            _degraded("quick_reply_title_shortened", intent=intent, limit=QUICK_REPLY_TITLE_CHARS)
        out.append({"content_type": "text", "title": short, "payload": payload})
    if len(out) > MAX_QUICK_REPLIES:
        _degraded("quick_replies_truncated", intent=intent, count=len(out), limit=MAX_QUICK_REPLIES)
        out = out[:MAX_QUICK_REPLIES]
    return out


def _card_line(card: Card) -> str:
    line = "• " + (_one_line(card.title) or _one_line(card.subtitle))
    if card.title.strip() and card.subtitle.strip():
        line += ": " + _one_line(card.subtitle)
    url = next((b.url for b in card.buttons if b.type == "web_url" and is_http_url(b.url)), "")
    return f"{line} ({url})" if url else line


def _card_element(card: Card, *, intent: str) -> dict | None:
    """A generic-template element, or ``None`` when the card can only be said as text."""
    title = _one_line(card.title)
    subtitle = _one_line(card.subtitle)
    if not title:
        title, subtitle = subtitle, ""
    if not title:
        _degraded("card_dropped", intent=intent, reason="empty")
        return None
    if len(title) > CARD_TITLE_CHARS or len(subtitle) > CARD_SUBTITLE_CHARS:
        _degraded("card_text_shortened", intent=intent, limit=CARD_TITLE_CHARS)
    element: dict = {"title": shorten(title, CARD_TITLE_CHARS)}
    if subtitle:
        element["subtitle"] = shorten(subtitle, CARD_SUBTITLE_CHARS)
    if card.image_url:
        if is_http_url(card.image_url):
            element["image_url"] = card.image_url
        else:
            _degraded("card_image_dropped", intent=intent, reason="invalid_url")
    buttons = [b for b in (_button(button, intent=intent) for button in card.buttons) if b]
    if len(buttons) > MAX_CARD_BUTTONS:
        _degraded("card_buttons_truncated", intent=intent, count=len(buttons), limit=MAX_CARD_BUTTONS)
        buttons = buttons[:MAX_CARD_BUTTONS]
    if buttons:
        element["buttons"] = buttons
    if len(element) == 1:
        # Facebook: "At least one property must be set in addition to title".
        _degraded("card_as_text", intent=intent, reason="title_only")
        return None
    return element


def _text_messages(text: str) -> list[dict]:
    return [{"text": part} for part in split_text(text)]


def _button_template(text: str, buttons: list[dict]) -> dict:
    return {
        "attachment": {
            "type": "template",
            "payload": {"template_type": "button", "text": text, "buttons": buttons},
        }
    }


def format_reply(reply: Reply) -> list[dict]:
    """The ordered Send API ``message`` objects for one reply (see the module docstring for limits).

    Order: the text (as text messages, or as the text of a button template when it has buttons and
    fits), the button template, the generic template, text lines for cards that could not be cards;
    quick replies ride on the last message. Returns ``[]`` for a reply with neither text nor cards.
    Never raises for content: whatever Facebook would refuse is shortened, moved or dropped (logged).
    """
    intent = reply.intent
    text = strip_markdown(reply.text or "")
    if not text and not reply.cards:
        return []

    # Buttons: the first three valid ones stay; extra postbacks become quick replies, extra URLs text.
    template_buttons: list[dict] = []
    extra_quick: list[QuickReply] = []
    extra_lines: list[str] = []
    for button in reply.buttons:
        rendered = _button(button, intent=intent)
        if rendered is None:
            continue
        if len(template_buttons) < MAX_BUTTONS:
            template_buttons.append(rendered)
        elif button.type == "postback":
            extra_quick.append(QuickReply(title=button.title, payload=button.payload))
        else:
            extra_lines.append(f"{_one_line(button.title)}: {button.url}")
    if extra_quick or extra_lines:
        _degraded("buttons_overflow", intent=intent, count=len(reply.buttons), limit=MAX_BUTTONS)
    if extra_lines:
        text = "\n\n".join(filter(None, [text, "\n".join(extra_lines)]))

    # Cards: the first ten valid ones make the carousel; the rest are said as lines of text.
    elements: list[dict] = []
    card_lines: list[str] = []
    for card in reply.cards:
        element = _card_element(card, intent=intent)
        if element is not None and len(elements) < MAX_CARDS:
            elements.append(element)
        elif element is not None or card.title.strip() or card.subtitle.strip():
            if element is not None:
                _degraded("card_as_text", intent=intent, reason="over_limit", limit=MAX_CARDS)
            card_lines.append(_card_line(card))

    messages: list[dict] = []
    if template_buttons:
        if text and len(text) <= BUTTON_TEMPLATE_TEXT_CHARS:
            messages.append(_button_template(text, template_buttons))
        else:
            if text:
                _degraded("button_text_too_long", intent=intent, limit=BUTTON_TEMPLATE_TEXT_CHARS)
            messages.extend(_text_messages(text))
            messages.append(_button_template(texts.BUTTONS_PROMPT, template_buttons))
    else:
        messages.extend(_text_messages(text))
    if elements:
        generic = {"template_type": "generic", "elements": elements}
        messages.append({"attachment": {"type": "template", "payload": generic}})
    if card_lines:
        messages.extend(_text_messages("\n".join(card_lines)))

    quick = _quick_replies([*reply.quick_replies, *extra_quick], intent=intent)
    if quick and messages:
        messages[-1]["quick_replies"] = quick
    return messages
