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


ReplyHandler = Callable[..., StaffOutcome]  # (*, conversation, text, author) -> StaffOutcome
GiveBackHandler = Callable[..., StaffOutcome]  # (*, conversation, author) -> StaffOutcome


@dataclass
class _Handlers:
    reply: ReplyHandler | None = None
    give_back: GiveBackHandler | None = None


_handlers = _Handlers()


def staff_handlers_register(*, reply: ReplyHandler, give_back: GiveBackHandler) -> None:
    """Set the channel's handlers (called once from its ``ready``; a later call replaces them)."""
    _handlers.reply = reply
    _handlers.give_back = give_back


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
