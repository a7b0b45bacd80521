"""Facebook's messaging window and its one tag: the only place that decides how a message may go out.

Meta's rules (docs/people.md, "The window rules"), counted from the user's last message:

| author | up to 24 h    | 24 h to 7 days                   | beyond 7 days |
| ------ | ------------- | -------------------------------- | ------------- |
| bot    | ``RESPONSE``  | refused                          | refused       |
| staff  | ``RESPONSE``  | ``MESSAGE_TAG`` + ``HUMAN_AGENT`` | refused       |

``HUMAN_AGENT`` is only for messages a person wrote (tagging a bot reply breaks Meta's policy:
chatwoot#15887), and every other tag fails with error 100 since 27 April 2026 (chatwoot#14674), so no
other tag exists here. Bot and staff sends both ask :func:`send_policy`; the Send API client
(``messenger.send_api``) refuses any tag this module would not have given, as a second line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
HUMAN_AGENT = "HUMAN_AGENT"
ALLOWED_TAGS = frozenset({HUMAN_AGENT})


class Author(StrEnum):
    """Who wrote the message being sent: the bot, or a person (staff in the admin)."""

    BOT = "bot"
    STAFF = "staff"


@dataclass(frozen=True)
class Response:
    """Inside the standard window: an ordinary reply, never tagged."""

    messaging_type: str = "RESPONSE"
    tag: str | None = None


@dataclass(frozen=True)
class HumanAgent:
    """A person's message between 24 hours and 7 days after the user's last one."""

    messaging_type: str = "MESSAGE_TAG"
    tag: str = HUMAN_AGENT


@dataclass(frozen=True)
class Refused:
    """Nothing may be sent; ``reason`` is shown to staff as it is."""

    reason: str


Policy = Response | HumanAgent | Refused


def send_policy(*, last_user_message_at: datetime | None, now: datetime, author: Author | str) -> Policy:
    """How a message by ``author`` may be sent ``now``, given when the user last wrote (table above).

    ``last_user_message_at`` ``None`` (the user never wrote) is refused: there is no window at all.
    """
    author = Author(author)
    if last_user_message_at is None:
        return Refused("The user has never written to the page, so nothing may be sent to them.")
    age = now - last_user_message_at
    if age <= STANDARD_WINDOW:
        return Response()
    if author is Author.BOT:
        return Refused("Outside the 24-hour messaging window: the bot may not answer.")
    if age <= HUMAN_AGENT_WINDOW:
        return HumanAgent()
    return Refused(
        "Not sent: the user's last message is more than 7 days old, so Facebook allows no reply "
        "(not even with the HUMAN_AGENT tag) until they write again."
    )


def tag_problem(*, messaging_type: str, tag: str | None, author: Author | str) -> str:
    """Why a Send API body with this type and tag must not go out, or ``""`` when it may.

    The Send API client's guard: only ``HUMAN_AGENT``, only with ``MESSAGE_TAG``, never by the bot.
    """
    if tag is None and messaging_type != "MESSAGE_TAG":
        return ""
    if tag not in ALLOWED_TAGS:
        return f"tag {tag!r} is not allowed (only {HUMAN_AGENT})"
    if messaging_type != "MESSAGE_TAG":
        return f"a tag needs messaging_type MESSAGE_TAG, not {messaging_type!r}"
    if Author(author) is not Author.STAFF:
        return "a bot message never carries a tag"
    return ""
