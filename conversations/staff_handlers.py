"""What the admin's staff actions do in the channel, registered by the channel at start-up.

The conversation admin has the ``staff_reply`` field and the "Give back to the bot" action, but
sending to Messenger and taking thread control back are the channel's work, and this app must not
import the channel (the arrows point down). So the channel registers its handlers here from its
``AppConfig.ready`` (as it hands its reply limits to the engine). A registry, not a signal, because
the admin needs one answer back (queued, or refused and why); a signal may have no receiver or
several, and a refusal would be lost among their return values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conversations.models import Conversation


@dataclass(frozen=True)
class StaffOutcome:
    """What the admin tells the staff member: ``ok`` is success, ``message`` says what happened."""

    ok: bool
    message: str


@dataclass(frozen=True)
class TranscriptMarker:
    """What happened to one user message that was not answered normally, for the transcript.

    ``kind`` is the inbound status (failed, deferred, expired, handed_over), ``reason`` a sentence
    for staff, ``detail`` the developer text, ``url`` the inbound row's admin page.
    """

    kind: str
    label: str
    reason: str
    detail: str = ""
    fbtrace_id: str = ""
    url: str = ""


ReplyHandler = Callable[..., StaffOutcome]  # (*, conversation, text, author) -> StaffOutcome
GiveBackHandler = Callable[..., StaffOutcome]  # (*, conversation, author) -> StaffOutcome
PreviewHandler = Callable[..., StaffOutcome]  # (*, conversation) -> StaffOutcome
MarkersHandler = Callable[..., dict[str, TranscriptMarker]]  # (*, conversation) -> {mid: marker}


@dataclass
class _Handlers:
    reply: ReplyHandler | None = None
    give_back: GiveBackHandler | None = None
    preview: PreviewHandler | None = None
    markers: MarkersHandler | None = None


_handlers = _Handlers()


def staff_handlers_register(
    *,
    reply: ReplyHandler,
    give_back: GiveBackHandler,
    preview: PreviewHandler | None = None,
    markers: MarkersHandler | None = None,
) -> None:
    """Set the channel's handlers (called once from its ``ready``; a later call replaces them)."""
    _handlers.reply = reply
    _handlers.give_back = give_back
    _handlers.preview = preview
    _handlers.markers = markers


def staff_reply_preview(*, conversation: Conversation) -> StaffOutcome | None:
    """How a staff reply would go now (normal, ``HUMAN_AGENT``, or refused); ``None`` without a channel."""
    return None if _handlers.preview is None else _handlers.preview(conversation=conversation)


def staff_transcript_markers(*, conversation: Conversation) -> dict[str, TranscriptMarker]:
    """The channel's markers for the transcript, by message id; empty without a channel."""
    return {} if _handlers.markers is None else _handlers.markers(conversation=conversation)


def staff_reply_submit(*, conversation: Conversation, text: str, author: str) -> StaffOutcome:
    """Hand a staff reply to the channel; refused when no channel is installed."""
    if _handlers.reply is None:
        return StaffOutcome(False, "Staff replies are not available: no channel is installed.")
    return _handlers.reply(conversation=conversation, text=text, author=author)


def staff_give_back(*, conversation: Conversation, author: str) -> StaffOutcome | None:
    """Give the conversation back to the bot through the channel; ``None`` when none is installed."""
    if _handlers.give_back is None:
        return None
    return _handlers.give_back(conversation=conversation, author=author)
