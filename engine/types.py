"""The chat engine's vocabulary: what it is given (a context) and what it answers (a reply).

These are plain frozen dataclasses so they cross module boundaries (conversations -> engine ->
formatter) without carrying ORM objects or raw webhook dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class HistoryItem:
    """One earlier message of the conversation, oldest first in a context's history."""

    direction: Literal["in", "out"]
    text: str
    intent: str = ""
    created_at: float = 0.0  # seconds since the epoch


@dataclass(frozen=True)
class ChatContext:
    """Everything an engine may use to answer one inbound message.

    ``payload`` is a postback's or quick reply's payload: engines match it before any text.
    ``is_new_conversation`` is true when this message started the conversation.
    """

    psid_hash: str
    conversation_id: int | None
    text: str
    history: tuple[HistoryItem, ...] = ()
    payload: str = ""
    is_new_conversation: bool = False
    locale: str = ""


@dataclass(frozen=True)
class QuickReply:
    """A tappable suggestion under a message; ``payload`` comes back as a quick-reply payload."""

    title: str
    payload: str


@dataclass(frozen=True)
class Button:
    """A button of a button template or a card: ``postback`` (with payload) or ``web_url``."""

    title: str
    type: Literal["postback", "web_url"] = "postback"
    payload: str = ""
    url: str = ""


@dataclass(frozen=True)
class Card:
    """One element of a generic template."""

    title: str
    subtitle: str = ""
    image_url: str = ""
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class Reply:
    """The engine's answer. ``text`` may be empty only when ``cards`` carry the answer.

    ``buttons`` turns the text into a button template; ``cards`` adds a generic template after the
    text. ``fallback`` marks a reply given because the engine could not answer (error, timeout).
    """

    text: str
    intent: str = "fallback"
    confidence: float = 0.0
    quick_replies: tuple[QuickReply, ...] = ()
    buttons: tuple[Button, ...] = ()
    cards: tuple[Card, ...] = ()
    fallback: bool = False
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ReplyLimits:
    """How much one reply may carry on the channel that delivers it; ``None`` means no limit.

    The engine knows no channel, so it holds no channel's numbers: the channel app, which sits above
    the engine, hands its own over (Messenger's are ``messenger.limits.REPLY_LIMITS``, registered with
    ``engine.reply_limits_register`` when the app is ready). The rules file is checked against them
    when it is loaded, so staff hear at once about an answer the channel would otherwise have to cut.
    ``channel`` names the channel in those error messages.
    """

    channel: str = ""
    quick_replies: int | None = None
    buttons: int | None = None  # on the answer's text (a button template)
    card_buttons: int | None = None  # on each card
    cards: int | None = None


# No channel has said anything yet: only the engine's own structure is checked.
NO_LIMITS = ReplyLimits()
