"""What the bot does with the attachments of an inbound message (images, stickers, files, links ...).

The chat engines read text, so attachments are decided here, before any engine is asked:

=====================================  ==========  ====================================================
attachment (as normalised by parsing)  kind        what happens
=====================================  ==========  ====================================================
``image`` with a ``sticker_id``        sticker     friendly acknowledgement (the thumbs-up 'like' is
``sticker`` (newer payloads)                       an image with a sticker id)
``image``                              image       acknowledged: we cannot look at it, ask for words
``audio``, ``video``, ``file``         unsupported the 'unsupported' reply
any type we do not know                unsupported the 'unsupported' reply
``location``                           location    ignored: no reply at all
``fallback`` (a shared link)           link        the engine answers the user's text, the link's
                                                   title and its URL
=====================================  ==========  ====================================================

Several attachments in one message (Messenger sends an album, or a link with an image and a
location as in ``multi_attachment.json``), decided in this order:

1. any link, or any user text along with the attachments: ask the engine (``action="engine"``)
   with the user's text and every link's title and URL, one per line, since only the engine can
   answer what was said or shared;
2. otherwise one combined reply: the acknowledgements of the kinds present, each once, in the order
   they first appear (an album of three images is thanked once); the intent is the kind's
   (``attachment_image``, ``attachment_sticker``, ``attachment_unsupported``), or
   ``attachment_mixed`` when several kinds are present;
3. nothing but locations (or no attachments at all): ``action="ignore"``.

Every decision carries a ``summary`` for the transcript and the admin, such as
``"[image] https://..."``; raw URLs can be long, so each is cut to 200 characters there.
The wording lives in :mod:`messenger.texts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from engine.types import Reply
from messenger import texts

SUMMARY_URL_CHARS = 200

# Facebook wraps shared links in a redirect (https://l.facebook.com/l.php?u=<the real URL>&h=...).
_REDIRECT_HOSTS = frozenset({"l.facebook.com", "lm.facebook.com", "l.messenger.com"})

_ACKNOWLEDGEMENTS: dict[str, tuple[str, str]] = {
    # kind -> (text, intent)
    "image": (texts.IMAGE_RECEIVED, "attachment_image"),
    "sticker": (texts.STICKER_RECEIVED, "attachment_sticker"),
    "unsupported": (texts.ATTACHMENT_UNSUPPORTED, "attachment_unsupported"),
}
_UNSUPPORTED_TYPES = frozenset({"audio", "video", "file"})


@dataclass(frozen=True)
class AttachmentDecision:
    """What to do with a message's attachments.

    ``reply``: send ``reply`` as it is. ``ignore``: send nothing. ``engine``: ask the chat engine
    with ``engine_text`` as the user's message. ``summary`` describes the attachments for people.
    """

    action: Literal["reply", "ignore", "engine"]
    reply: Reply | None = None
    engine_text: str = ""
    summary: str = ""


def attachment_kind(attachment: Mapping[str, Any]) -> str:
    """One of ``image``, ``sticker``, ``unsupported``, ``location``, ``link`` for a normalised attachment."""
    kind = str(attachment.get("type") or "").lower()
    if kind == "sticker" or (kind == "image" and attachment.get("sticker_id")):
        return "sticker"
    if kind == "image":
        return "image"
    if kind == "location":
        return "location"
    if kind == "fallback":
        return "link"
    return "unsupported"  # audio, video, file, and whatever Facebook adds next


def unwrap_link(url: str) -> str:
    """The destination of a Facebook redirect link (``l.facebook.com/l.php?u=...``), else ``url``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if (parts.hostname or "").lower() in _REDIRECT_HOSTS:
        target = parse_qs(parts.query).get("u", [""])[0]
        if target.startswith(("http://", "https://")):
            return target
    return url


def _as_dict(attachment: Any) -> Mapping[str, Any]:
    # Accept parsing's Attachment dataclass as well as its dict form.
    if hasattr(attachment, "to_dict"):
        return attachment.to_dict()
    return attachment if isinstance(attachment, Mapping) else {}


def _clip(value: str, limit: int = SUMMARY_URL_CHARS) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _summary_of(attachment: Mapping[str, Any], kind: str) -> str:
    raw_type = str(attachment.get("type") or "unknown")
    url = str(attachment.get("url") or "")
    if kind == "location":
        coords = attachment.get("coordinates") or {}
        if coords:
            return f"[location] {coords.get('lat')},{coords.get('long')}"
        return "[location]"
    if kind == "link":
        title = str(attachment.get("title") or "")
        return " ".join(filter(None, ["[link]", title, _clip(unwrap_link(url))]))
    if kind == "sticker":
        sticker_id = attachment.get("sticker_id")
        label = f"[sticker {sticker_id}]" if sticker_id else "[sticker]"
        return " ".join(filter(None, [label, _clip(url)]))
    return " ".join(filter(None, [f"[{raw_type}]", _clip(url)]))


def _engine_text(text: str, links: Sequence[Mapping[str, Any]]) -> str:
    lines: list[str] = []
    text = text.strip()
    titles = [str(link.get("title") or "").strip() for link in links]
    # A shared link often arrives with the title's start as the message text: say it once.
    if text and not any(text in title for title in titles):
        lines.append(text)
    for link, title in zip(links, titles, strict=True):
        if title:
            lines.append(title)
        url = unwrap_link(str(link.get("url") or ""))
        if url:
            lines.append(url)
    return "\n".join(lines)


def decide_for_attachments(*, attachments: list[dict], text: str = "") -> AttachmentDecision:
    """Decide how to answer a message that carries ``attachments`` (normalised dicts) and ``text``.

    See the module docstring for the rules. Pure: no I/O, no logging; the caller records the
    decision with the message id.
    """
    items = [_as_dict(a) for a in attachments]
    kinds = [attachment_kind(a) for a in items]
    summary = "; ".join(_summary_of(a, k) for a, k in zip(items, kinds, strict=True))
    links = [a for a, k in zip(items, kinds, strict=True) if k == "link"]

    if links or text.strip():
        engine_text = _engine_text(text, links)
        if engine_text:
            return AttachmentDecision(action="engine", engine_text=engine_text, summary=summary)
        # A link with neither title nor URL and no text: nothing to ask about, so it is unsupported.
        kinds = ["unsupported" if k == "link" else k for k in kinds]

    answered = list(dict.fromkeys(k for k in kinds if k in _ACKNOWLEDGEMENTS))
    if not answered:
        return AttachmentDecision(action="ignore", summary=summary)
    reply_text = " ".join(_ACKNOWLEDGEMENTS[k][0] for k in answered)
    intent = _ACKNOWLEDGEMENTS[answered[0]][1] if len(answered) == 1 else "attachment_mixed"
    reply = Reply(text=reply_text, intent=intent, confidence=1.0)
    return AttachmentDecision(action="reply", reply=reply, summary=summary)
