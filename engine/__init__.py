"""The chat engine: turns a conversation context into a reply. See ``get_engine``.

Callers do ``get_engine().reply(context, timeout_s=budget)``; the engine is chosen by
``settings.CHATBOT_ENGINE``: ``rules`` (the default, embedded, no network; ``engine/rules.py``) or
``openai`` (any OpenAI-compatible chat-completions server; ``engine/openai.py``). Neither raises
for an expected failure: the user always gets a reply (``Reply.fallback`` says when it is a
fallback). Formats and switching are documented in ``docs/engine.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from engine.base import DEFAULT_FALLBACK_TEXT, FALLBACK_INTENT, ChatEngine, fallback_reply
from engine.types import Button, Card, ChatContext, HistoryItem, QuickReply, Reply

__all__ = [
    "DEFAULT_FALLBACK_TEXT",
    "ENGINES",
    "FALLBACK_INTENT",
    "Button",
    "Card",
    "ChatContext",
    "ChatEngine",
    "HistoryItem",
    "QuickReply",
    "Reply",
    "fallback_reply",
    "get_engine",
    "reset_engine_cache",
]


def _make_rules() -> ChatEngine:
    from engine.rules import RulesEngine

    return RulesEngine(path=settings.CHATBOT_RULES_FILE)


def _make_openai() -> ChatEngine:
    from engine.openai import OpenAIEngine

    missing = [name for name in ("CHATBOT_API_URL", "CHATBOT_MODEL") if not getattr(settings, name, "")]
    if missing:
        raise ImproperlyConfigured(
            f"CHATBOT_ENGINE='openai' needs {' and '.join(missing)}: set CHATBOT_API_URL to the server's "
            "base URL (the engine posts to {CHATBOT_API_URL}/chat/completions) and CHATBOT_MODEL to the "
            "model name, or use CHATBOT_ENGINE=rules."
        )
    return OpenAIEngine(rules_path=str(settings.CHATBOT_RULES_FILE))


# The engines by CHATBOT_ENGINE value; the list of valid values is derived from it.
ENGINES: dict[str, Callable[[], ChatEngine]] = {"rules": _make_rules, "openai": _make_openai}

_cache_lock = threading.Lock()
_cache: tuple[tuple, ChatEngine] | None = None


def _settings_key() -> tuple:
    """The settings an engine is built from; a change (override_settings) builds a new engine."""
    return (
        settings.CHATBOT_ENGINE,
        str(settings.CHATBOT_RULES_FILE),
        settings.CHATBOT_API_URL,
        settings.CHATBOT_MODEL,
    )


def get_engine() -> ChatEngine:
    """The engine ``settings.CHATBOT_ENGINE`` names, built once and reused.

    The engine is rebuilt when ``CHATBOT_ENGINE``, ``CHATBOT_RULES_FILE``, ``CHATBOT_API_URL`` or
    ``CHATBOT_MODEL`` change (other settings are read by the engines at call time). Raises
    ``ImproperlyConfigured`` for an unknown engine name, for ``openai`` without its URL or model, and
    (``RulesFileError``, a subclass) for a rules file that is missing or malformed.
    """
    global _cache
    key = _settings_key()
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    with _cache_lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
        name = settings.CHATBOT_ENGINE
        factory = ENGINES.get(name)
        if factory is None:
            raise ImproperlyConfigured(
                f"CHATBOT_ENGINE={name!r} is not a chat engine; choose one of: {', '.join(sorted(ENGINES))}."
            )
        engine = factory()
        _cache = (key, engine)
        return engine


def reset_engine_cache() -> None:
    """Forget the cached engine (tests, or after changing the environment in a shell)."""
    global _cache
    with _cache_lock:
        _cache = None
