"""The embedded rules engine: answers a message from the intents, patterns and answers of the rules file.

The file itself (format, validation, hot reload) is ``engine/rules_file.py``'s concern; this module
only matches. How one message is answered, in this order:

1. ``context.payload`` (a postback's or quick reply's payload) found in the file's ``payloads`` map:
   that intent, confidence 1.0. Structured input always wins over text.
2. The first intent, in file order, with a pattern found in ``context.text``: confidence 0.9 when
   the pattern covers the whole message (punctuation aside), 0.7 when it is found inside a longer one.
3. Nothing matched: the ``fallback`` answer, intent ``"fallback"``, confidence 0.

An intent with a ``repeat`` block (``greeting`` has one) answers with that block instead, under the
block's intent name (``greeting_repeat``), when the conversation already had its answer: the engine
does not greet twice in one conversation. Among several answers, the engine takes the one after the
answer it gave last (read from the history), so the same answer never comes twice in a row.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from engine.base import FALLBACK_INTENT, fallback_reply
from engine.rules_file import Intent, Response, RuleSet, RulesFile
from engine.types import NO_LIMITS, ChatContext, Reply, ReplyLimits

logger = logging.getLogger("chatbot.engine.rules")  # the historical name: see engine/rules_file.py

ENGINE_NAME = "rules"

CONFIDENCE_PAYLOAD = 1.0
CONFIDENCE_FULL_MATCH = 0.9
CONFIDENCE_PARTIAL_MATCH = 0.7

_WORD = re.compile(r"\w")


def _already_answered(context: ChatContext, intent: Intent) -> bool:
    """True when this conversation's history shows the bot already gave ``intent``'s answer."""
    if context.is_new_conversation:
        return False  # whatever history there is belongs to an earlier conversation
    names = {intent.name, intent.repeat_intent}
    texts = set(intent.response.answers)
    return any(
        item.direction == "out" and (item.intent in names or item.text in texts) for item in context.history
    )


def _pick_answer(answers: tuple[str, ...], context: ChatContext) -> str:
    """The answer after the one last given (history), so none is repeated twice in a row."""
    if not answers:
        return ""
    for item in reversed(context.history):
        if item.direction == "out" and item.text in answers:
            return answers[(answers.index(item.text) + 1) % len(answers)]
    return answers[0]


def _build(
    response: Response, *, intent: str, confidence: float, context: ChatContext, **metadata: Any
) -> Reply:
    return Reply(
        text=_pick_answer(response.answers, context),
        intent=intent,
        confidence=confidence,
        quick_replies=response.quick_replies,
        buttons=response.buttons,
        cards=response.cards,
        metadata={"engine": ENGINE_NAME, **metadata},
    )


def _answer_intent(intent: Intent, *, confidence: float, context: ChatContext, **metadata: Any) -> Reply:
    if intent.repeat is not None and _already_answered(context, intent):
        return _build(
            intent.repeat, intent=intent.repeat_intent, confidence=confidence, context=context, **metadata
        )
    return _build(intent.response, intent=intent.name, confidence=confidence, context=context, **metadata)


def _match_text(rules: RuleSet, text: str) -> tuple[Intent, float, str] | None:
    for intent in rules.intents:
        for pattern in intent.patterns:
            found = pattern.search(text)
            if found:
                whole = not _WORD.search(text[: found.start()]) and not _WORD.search(text[found.end() :])
                confidence = CONFIDENCE_FULL_MATCH if whole else CONFIDENCE_PARTIAL_MATCH
                return intent, confidence, pattern.pattern
    return None


def rules_reply(*, rules: RuleSet, context: ChatContext) -> Reply:
    """Answer ``context`` from ``rules`` (payload, then text, then fallback); pure, never raises."""
    if context.payload and context.payload in rules.payloads:
        return _answer_intent(
            rules.payloads[context.payload], confidence=CONFIDENCE_PAYLOAD, context=context, matched="payload"
        )
    matched = _match_text(rules, context.text or "")
    if matched is not None:
        intent, confidence, _pattern = matched
        return _answer_intent(intent, confidence=confidence, context=context, matched="text")
    return _build(rules.fallback, intent=FALLBACK_INTENT, confidence=0.0, context=context, matched="none")


class RulesEngine:
    """The ``rules`` chat engine over one rules file, reloaded when the file changes.

    Construction loads the file and raises ``RulesFileError`` if it is broken, so a bad file stops
    ``get_engine()`` (and start-up checks) with a clear message. Later broken edits are logged and
    ignored: the last good rules keep answering (see ``RulesFile``). ``limits`` are the channel's
    (``get_engine`` passes the registered ones); without them only the file's own format is checked.
    """

    name = ENGINE_NAME

    def __init__(self, *, path: str | os.PathLike[str], limits: ReplyLimits = NO_LIMITS) -> None:
        self._file = RulesFile(path=path, limits=limits)
        self.path = self._file.path
        self.limits = limits

    @property
    def rules(self) -> RuleSet:
        """The current rules, re-read first if the file changed since the last look."""
        return self._file.rules

    def fallback_text(self, context: ChatContext | None = None) -> str:
        """The file's fallback answer (the next one in rotation when ``context`` is given)."""
        return _pick_answer(
            self.rules.fallback.answers, context or ChatContext(psid_hash="", conversation_id=None, text="")
        )

    def payload_reply(self, context: ChatContext) -> Reply | None:
        """The answer to ``context.payload`` when the file maps it, else ``None`` (no text matching)."""
        rules = self.rules
        if context.payload and context.payload in rules.payloads:
            return rules_reply(rules=rules, context=context)
        return None

    def reply(self, context: ChatContext, *, timeout_s: float | None = None) -> Reply:
        """Answer ``context``; ``timeout_s`` is accepted for the interface (no I/O here to bound)."""
        try:
            reply = rules_reply(rules=self.rules, context=context)
        except Exception as exc:  # a bug must still leave the user answered
            logger.exception(
                "chatbot.engine.rules-failed",
                extra={"psid_hash": context.psid_hash, "error_kind": type(exc).__name__},
            )
            return fallback_reply(text=self._safe_fallback_text(), engine=self.name, reason="error")
        logger.debug(
            "chatbot.engine.rules-replied",
            extra={"psid_hash": context.psid_hash, "intent": reply.intent, "confidence": reply.confidence},
        )
        return reply

    def _safe_fallback_text(self) -> str:
        answers = self._file.last_good.fallback.answers
        return answers[0] if answers else ""
