"""The ``openai`` chat engine: any OpenAI-compatible chat-completions server answers.

One call per message: ``POST {CHATBOT_API_URL}/chat/completions`` with the model, the system prompt,
the last ``MESSENGER_HISTORY_LIMIT`` messages of the conversation (inbound as ``user``, outbound as
``assistant``) and the new message as ``user``; ``Authorization: Bearer <CHATBOT_API_KEY>`` when a
key is set. The answer is ``choices[0].message.content``, given with intent ``"llm"`` and confidence
0.8 (a model's answer is plausible but unverified: above a partial rules match, below a payload).

Structured input stays deterministic: a payload that the rules file maps (``GET_STARTED``, ``HELP``,
a persistent-menu item, ...) is answered from the rules file, without calling the model.

Every failure (no budget left, timeout, connection error, non-2xx status, a body that is not JSON,
no choices, empty content) is logged as ``chatbot.engine.openai-failed`` with its ``error_kind`` and
answered with the rules file's fallback text, ``fallback=True``. The API key is never logged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from engine.base import DEFAULT_FALLBACK_TEXT, fallback_reply
from engine.rules import RulesEngine
from engine.rules_file import RulesFileError
from engine.types import NO_LIMITS, ChatContext, Reply, ReplyLimits

logger = logging.getLogger("chatbot.engine.openai")

ENGINE_NAME = "openai"
INTENT = "llm"
CONFIDENCE = 0.8
# Budgets smaller than this cannot carry an HTTP round trip: answer with the fallback at once.
MIN_TIMEOUT_S = 0.05


class CompletionError(Exception):
    """A chat-completions call that gave no usable answer; ``kind`` names what went wrong."""

    def __init__(self, kind: str, detail: str = "", *, status: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.status = status


def completion_messages(*, context: ChatContext, system_prompt: str, history_limit: int) -> list[dict]:
    """The ``messages`` array for ``context``: system prompt, recent history, then the new message.

    History items with no text (an answer made only of cards, say) are left out; a limit of 0 or
    less sends no history.
    """
    messages: list[dict] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    recent = context.history[-history_limit:] if history_limit > 0 else ()
    for item in recent:
        if item.text:
            messages.append({"role": "user" if item.direction == "in" else "assistant", "content": item.text})
    messages.append({"role": "user", "content": context.text or context.payload})
    return messages


def completion_text(*, body: Any) -> tuple[str, dict]:
    """``choices[0].message.content`` of a parsed answer, stripped, plus metadata worth keeping.

    Raises ``CompletionError`` (``bad_shape`` or ``empty_content``) when there is no usable text.
    """
    if not isinstance(body, dict):
        raise CompletionError("bad_shape", "the answer is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise CompletionError("empty_content", "no choices")
    first = choices[0] if isinstance(choices[0], dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else {}
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        raise CompletionError("empty_content", "choices[0].message.content is empty")
    metadata = {"finish_reason": first.get("finish_reason")}
    if isinstance(body.get("usage"), dict):
        metadata["usage"] = body["usage"]
    if isinstance(body.get("model"), str):
        metadata["model"] = body["model"]
    return content.strip(), metadata


class OpenAIEngine:
    """The ``openai`` engine. Settings are read at call time, so ``override_settings`` applies.

    One pooled ``requests.Session`` per engine keeps connections to the model server alive across
    messages (``get_engine`` caches the engine). ``reply`` never raises.
    """

    name = ENGINE_NAME

    def __init__(self, *, rules_path: str | None = None, limits: ReplyLimits = NO_LIMITS) -> None:
        self._session = requests.Session()
        # One connection per call a worker process can have in flight (its engine pool's size), so the
        # threads of a MESSENGER_WORKER_CONCURRENCY worker never reconnect for want of one.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(16, 2 * settings.MESSENGER_WORKER_CONCURRENCY))
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._rules_path = rules_path if rules_path is not None else str(settings.CHATBOT_RULES_FILE)
        self._limits = limits  # the channel's, for the rules file it answers payloads from
        self._rules: RulesEngine | None = None
        self._rules_lock = threading.Lock()

    # --- the rules file: structured payloads and the fallback text --------------------------------

    def _rules_engine(self) -> RulesEngine | None:
        if self._rules is None:
            with self._rules_lock:
                if self._rules is None:
                    try:
                        self._rules = RulesEngine(path=self._rules_path, limits=self._limits)
                    except RulesFileError as exc:
                        # The model can still answer; only payloads and the fallback text lose out.
                        logger.error("chatbot.engine.openai-rules-unavailable", extra={"error": str(exc)})
                        return None
        return self._rules

    def _fallback(self, context: ChatContext, *, reason: str, **metadata: object) -> Reply:
        rules = self._rules_engine()
        text = rules.fallback_text(context) if rules is not None else DEFAULT_FALLBACK_TEXT
        return fallback_reply(text=text, engine=self.name, reason=reason, **metadata)

    # --- the engine --------------------------------------------------------------------------------

    def reply(self, context: ChatContext, *, timeout_s: float | None = None) -> Reply:
        """Answer ``context`` within ``min(timeout_s, CHATBOT_API_TIMEOUT_MS)``; never raises."""
        try:
            return self._reply(context, timeout_s=timeout_s)
        except Exception as exc:  # a bug must still leave the user answered
            logger.exception(
                "chatbot.engine.openai-failed",
                extra={
                    "psid_hash": context.psid_hash,
                    "error_kind": "unexpected",
                    "error": type(exc).__name__,
                },
            )
            return fallback_reply(text=DEFAULT_FALLBACK_TEXT, engine=self.name, reason="unexpected")

    def _reply(self, context: ChatContext, *, timeout_s: float | None) -> Reply:
        rules = self._rules_engine()
        if rules is not None:
            structured = rules.payload_reply(context)
            if structured is not None:
                return structured
        if not (context.text or context.payload).strip():
            return self._fallback(context, reason="empty_message")

        own_timeout = settings.CHATBOT_API_TIMEOUT_MS / 1000
        timeout = own_timeout if timeout_s is None else min(timeout_s, own_timeout)
        if timeout < MIN_TIMEOUT_S:
            self._log_failure(context, CompletionError("no_budget", f"{timeout:.3f}s left"))
            return self._fallback(context, reason="no_budget")

        try:
            text, metadata = self._complete(context, timeout=timeout)
        except CompletionError as exc:
            self._log_failure(context, exc)
            return self._fallback(context, reason=exc.kind, status=exc.status)
        return Reply(
            text=text,
            intent=INTENT,
            confidence=CONFIDENCE,
            metadata={"engine": self.name, **metadata},
        )

    def _complete(self, context: ChatContext, *, timeout: float) -> tuple[str, dict]:
        url = f"{settings.CHATBOT_API_URL.rstrip('/')}/chat/completions"
        body = {
            "model": settings.CHATBOT_MODEL,
            "messages": completion_messages(
                context=context,
                system_prompt=settings.CHATBOT_SYSTEM_PROMPT,
                history_limit=settings.MESSENGER_HISTORY_LIMIT,
            ),
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if settings.CHATBOT_API_KEY:
            headers["Authorization"] = f"Bearer {settings.CHATBOT_API_KEY}"
        try:
            response = self._session.post(url, json=body, headers=headers, timeout=timeout)
        except requests.Timeout as exc:
            raise CompletionError("timeout", f"no answer within {timeout:.3f}s") from exc
        except requests.ConnectionError as exc:
            raise CompletionError("connection", type(exc).__name__) from exc
        except requests.RequestException as exc:
            raise CompletionError("request", type(exc).__name__) from exc
        if not 200 <= response.status_code < 300:
            raise CompletionError("http_status", f"HTTP {response.status_code}", status=response.status_code)
        try:
            parsed = response.json()
        except ValueError as exc:
            raise CompletionError("bad_json", "the answer is not JSON", status=response.status_code) from exc
        return completion_text(body=parsed)

    def _log_failure(self, context: ChatContext, exc: CompletionError) -> None:
        # Only the kind, a short detail and the status: never the key, headers or the answer's body.
        logger.warning(
            "chatbot.engine.openai-failed",
            extra={
                "psid_hash": context.psid_hash,
                "conversation_id": context.conversation_id,
                "error_kind": exc.kind,
                "error": exc.detail,
                "status": exc.status,
            },
        )
