"""What every chat engine promises, and the fallback reply they all fall back to.

The contract (see ``ChatEngine``): ``reply`` never raises for an expected failure (a network error,
a timeout, a bad answer from a model server, a broken rules file) and never leaves the user without
an answer; it returns ``fallback_reply(...)`` instead, which the pipeline sends like any other reply.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from engine.types import ChatContext, Reply

# Used only when even the rules file's fallback answer cannot be read (the file is missing or broken).
DEFAULT_FALLBACK_TEXT = "Sorry, I didn't quite get that. Could you say it another way, or type 'help'?"

FALLBACK_INTENT = "fallback"


@runtime_checkable
class ChatEngine(Protocol):
    """A backend that turns a conversation context into one reply.

    ``timeout_s`` is the processing budget the caller has left, in seconds; an engine that does
    network I/O must not wait longer than it. ``None`` means "no budget given": the engine uses its
    own timeout. Implementations never raise for expected failures: they return a ``Reply`` with
    ``fallback=True`` and intent ``"fallback"``.
    """

    name: str

    def reply(self, context: ChatContext, *, timeout_s: float | None = None) -> Reply: ...


def fallback_reply(*, text: str, engine: str, reason: str, **metadata: object) -> Reply:
    """The reply given when an engine could not answer (``reason`` says why, e.g. ``timeout``).

    ``fallback=True`` lets the pipeline and the observability events count these apart from real
    answers; ``confidence`` is 0 because nothing was understood.
    """
    return Reply(
        text=text or DEFAULT_FALLBACK_TEXT,
        intent=FALLBACK_INTENT,
        confidence=0.0,
        fallback=True,
        metadata={"engine": engine, "reason": reason, **metadata},
    )
