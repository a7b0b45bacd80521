"""Which engine answers: ``get_engine`` builds the one ``settings.CHATBOT_ENGINE`` names, once.

The engine is cached and rebuilt only when a setting it is built from changes (``override_settings``
in tests) or when a channel registers other reply limits. The limits are the one thing the engine
needs from the channel above it; it asks for them here instead of importing the channel, so the
arrows keep pointing down: the channel calls ``reply_limits_register`` when it is ready (Messenger's
``MessengerConfig.ready``), and every engine built afterwards checks its rules file against them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from engine.base import ChatEngine
from engine.types import NO_LIMITS, ReplyLimits

_limits_lock = threading.Lock()
_limits: ReplyLimits = NO_LIMITS


def reply_limits_register(*, limits: ReplyLimits) -> None:
    """Tell the engine how much a reply may carry on the channel that delivers it.

    Called once by the channel app at start-up. An engine built before (none is, in practice) is
    rebuilt at the next ``get_engine`` call, since the limits are part of what it is built from.
    """
    global _limits
    with _limits_lock:
        _limits = limits


def reply_limits() -> ReplyLimits:
    """The limits a channel registered, or ``NO_LIMITS`` when none did (the engine's structure only)."""
    return _limits


def _make_rules(limits: ReplyLimits) -> ChatEngine:
    from engine.rules import RulesEngine

    return RulesEngine(path=settings.CHATBOT_RULES_FILE, limits=limits)


def _make_openai(limits: ReplyLimits) -> ChatEngine:
    from engine.openai import OpenAIEngine

    missing = [name for name in ("CHATBOT_API_URL", "CHATBOT_MODEL") if not getattr(settings, name, "")]
    if missing:
        raise ImproperlyConfigured(
            f"CHATBOT_ENGINE='openai' needs {' and '.join(missing)}: set CHATBOT_API_URL to the server's "
            "base URL (the engine posts to {CHATBOT_API_URL}/chat/completions) and CHATBOT_MODEL to the "
            "model name, or use CHATBOT_ENGINE=rules."
        )
    return OpenAIEngine(rules_path=str(settings.CHATBOT_RULES_FILE), limits=limits)


# The engines by CHATBOT_ENGINE value; the list of valid values is derived from it.
ENGINES: dict[str, Callable[[ReplyLimits], ChatEngine]] = {"rules": _make_rules, "openai": _make_openai}

_cache_lock = threading.Lock()
_cache: tuple[tuple, ChatEngine] | None = None


def _build_key() -> tuple:
    """What an engine is built from; a change (override_settings, other limits) builds a new engine."""
    return (
        settings.CHATBOT_ENGINE,
        str(settings.CHATBOT_RULES_FILE),
        settings.CHATBOT_API_URL,
        settings.CHATBOT_MODEL,
        reply_limits(),
    )


def get_engine() -> ChatEngine:
    """The engine ``settings.CHATBOT_ENGINE`` names, built once and reused.

    The engine is rebuilt when ``CHATBOT_ENGINE``, ``CHATBOT_RULES_FILE``, ``CHATBOT_API_URL`` or
    ``CHATBOT_MODEL`` change, or when a channel registers other reply limits (other settings are read
    by the engines at call time). Raises ``ImproperlyConfigured`` for an unknown engine name, for
    ``openai`` without its URL or model, and (``RulesFileError``, a subclass) for a rules file that is
    missing or malformed or that breaks the registered limits.
    """
    global _cache
    key = _build_key()
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
        engine = factory(key[-1])
        _cache = (key, engine)
        return engine


def reset_engine_cache() -> None:
    """Forget the cached engine (tests, or after changing the environment in a shell)."""
    global _cache
    with _cache_lock:
        _cache = None
