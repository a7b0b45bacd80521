"""The chat engine: turns a conversation context into a reply. See ``get_engine``.

Callers do ``get_engine().reply(context, timeout_s=budget)``; the engine is chosen by
``settings.CHATBOT_ENGINE``: ``rules`` (the default, embedded, no network; ``engine/rules.py``) or
``openai`` (any OpenAI-compatible chat-completions server; ``engine/openai.py``). Neither raises
for an expected failure: the user always gets a reply (``Reply.fallback`` says when it is a
fallback). Formats and switching are documented in ``docs/engine.md``.

The engine sits below the channel apps and imports none of them. What it needs from a channel (how
much a reply may carry) is handed to it from above: ``reply_limits_register`` (see
``engine/selection.py``). This module is the engine's public face; the work is in the modules named.
"""

from __future__ import annotations

from engine.base import DEFAULT_FALLBACK_TEXT, FALLBACK_INTENT, ChatEngine, fallback_reply
from engine.selection import ENGINES, get_engine, reply_limits, reply_limits_register, reset_engine_cache
from engine.types import NO_LIMITS, Button, Card, ChatContext, HistoryItem, QuickReply, Reply, ReplyLimits

__all__ = [
    "DEFAULT_FALLBACK_TEXT",
    "ENGINES",
    "FALLBACK_INTENT",
    "NO_LIMITS",
    "Button",
    "Card",
    "ChatContext",
    "ChatEngine",
    "HistoryItem",
    "QuickReply",
    "Reply",
    "ReplyLimits",
    "fallback_reply",
    "get_engine",
    "reply_limits",
    "reply_limits_register",
    "reset_engine_cache",
]
