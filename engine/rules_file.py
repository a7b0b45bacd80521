"""The rules data file: its format, its validation, and re-reading it when staff edit it.

The file (``settings.CHATBOT_RULES_FILE``, ``engine/rules.json`` by default; its format is documented
in ``docs/engine.md``) is validated when it is loaded; a problem raises ``RulesFileError`` naming the
file and the exact place (``intents[2] ("help").patterns[0]: ...``). Besides its own format, the file
is checked against the channel's ``ReplyLimits`` (how many quick replies, buttons and cards one reply
may carry): the engine is given them from above (``engine/selection.py``) instead of knowing them.

``RulesFile`` re-reads the file when its modification time changes, so staff edits apply without a
restart; an edit that breaks the file is logged (``chatbot.engine.rules-reload-failed``) and the last
good version stays in use. How a validated file answers a message is ``engine/rules.py``'s concern.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from engine.base import FALLBACK_INTENT
from engine.types import NO_LIMITS, Button, Card, QuickReply, ReplyLimits

# The logger and its event names keep the engine's historical "chatbot.engine" prefix: operators'
# alerts and docs/engine.md name them, and moving the code is no reason to rename what it reports.
logger = logging.getLogger("chatbot.engine.rules")

SUPPORTED_VERSIONS = (1,)

class RulesFileError(ImproperlyConfigured):
    """The rules file is missing, is not JSON, or breaks the documented format.

    The message names the file and the place of the problem, so staff can fix it.
    """


@dataclass(frozen=True)
class Response:
    """What an intent answers: one of ``answers`` plus what the file attaches to it."""

    answers: tuple[str, ...]
    quick_replies: tuple[QuickReply, ...] = ()
    buttons: tuple[Button, ...] = ()
    cards: tuple[Card, ...] = ()


@dataclass(frozen=True)
class Intent:
    """One intent of the file. ``repeat`` answers instead of ``response`` once it was given."""

    name: str
    patterns: tuple[re.Pattern[str], ...]
    response: Response
    repeat: Response | None = None
    repeat_intent: str = ""


@dataclass(frozen=True)
class RuleSet:
    """A validated rules file."""

    source: str
    version: int
    intents: tuple[Intent, ...]
    payloads: dict[str, Intent]
    fallback: Response

    def intent(self, name: str) -> Intent | None:
        for intent in self.intents:
            if intent.name == name:
                return intent
        return None


class _Checker:
    """Walks the parsed JSON and raises ``RulesFileError`` with a path to the first problem."""

    def __init__(self, source: str, limits: ReplyLimits) -> None:
        self.source = source
        self.limits = limits

    def fail(self, where: str, problem: str) -> RulesFileError:
        place = f" at {where}" if where else ""
        return RulesFileError(f"Rules file {self.source}{place}: {problem}")

    def obj(self, value: Any, where: str, *, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        keys = {key for key in value if not key.startswith("_")}  # "_comment" keys are for staff notes
        unknown = sorted(keys - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        missing = sorted(required - keys)
        if missing:
            raise self.fail(where, f"missing key(s) {missing}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "expected a non-empty string")
        return value

    def array(self, value: Any, where: str, *, limit: int | None = None, non_empty: bool = False) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        if non_empty and not value:
            raise self.fail(where, "must not be empty")
        if limit is not None and len(value) > limit:
            channel = self.limits.channel or "the channel"
            raise self.fail(where, f"has {len(value)} items; {channel} allows at most {limit}")
        return value

    def quick_reply(self, value: Any, where: str) -> QuickReply:
        data = self.obj(value, where, allowed={"title", "payload"}, required={"title", "payload"})
        return QuickReply(
            title=self.text(data["title"], f"{where}.title"),
            payload=self.text(data["payload"], f"{where}.payload"),
        )

    def button(self, value: Any, where: str) -> Button:
        data = self.obj(value, where, allowed={"type", "title", "payload", "url"}, required={"title"})
        kind = data.get("type", "postback")
        title = self.text(data["title"], f"{where}.title")
        if kind == "postback":
            return Button(
                title=title, type="postback", payload=self.text(data.get("payload"), f"{where}.payload")
            )
        if kind == "web_url":
            url = self.text(data.get("url"), f"{where}.url")
            if not url.startswith(("https://", "http://")):
                raise self.fail(f"{where}.url", f"{url!r} is not an http(s) URL")
            return Button(title=title, type="web_url", url=url)
        raise self.fail(f"{where}.type", f"{kind!r} is not a button type; use 'postback' or 'web_url'")

    def response(self, value: dict, where: str) -> Response:
        answers = tuple(
            self.text(item, f"{where}.answers[{i}]")
            for i, item in enumerate(self.array(value.get("answers", []), f"{where}.answers"))
        )
        quick_replies = tuple(
            self.quick_reply(item, f"{where}.quick_replies[{i}]")
            for i, item in enumerate(
                self.array(value.get("quick_replies", []), f"{where}.quick_replies", limit=self.limits.quick_replies)
            )
        )
        buttons = tuple(
            self.button(item, f"{where}.buttons[{i}]")
            for i, item in enumerate(
                self.array(value.get("buttons", []), f"{where}.buttons", limit=self.limits.buttons)
            )
        )
        cards = tuple(
            self.card(item, f"{where}.cards[{i}]")
            for i, item in enumerate(self.array(value.get("cards", []), f"{where}.cards", limit=self.limits.cards))
        )
        if not answers and not cards:
            raise self.fail(where, "needs at least one entry in 'answers' (or 'cards')")
        if buttons and not answers:
            raise self.fail(where, "'buttons' need an answer text to sit under")
        return Response(answers=answers, quick_replies=quick_replies, buttons=buttons, cards=cards)

    def card(self, value: Any, where: str) -> Card:
        data = self.obj(
            value, where, allowed={"title", "subtitle", "image_url", "buttons"}, required={"title"}
        )
        for key in ("subtitle", "image_url"):
            if key in data and not isinstance(data[key], str):
                raise self.fail(f"{where}.{key}", "expected a string")
        buttons = tuple(
            self.button(item, f"{where}.buttons[{i}]")
            for i, item in enumerate(
                self.array(data.get("buttons", []), f"{where}.buttons", limit=self.limits.card_buttons)
            )
        )
        return Card(
            title=self.text(data["title"], f"{where}.title"),
            subtitle=data.get("subtitle", ""),
            image_url=data.get("image_url", ""),
            buttons=buttons,
        )

    def pattern(self, value: Any, where: str) -> re.Pattern[str]:
        raw = self.text(value, where)
        try:
            alone = re.compile(raw)  # on its own first, so an error's position is the one staff typed
            # Whole words only: the pattern may not start or end inside a word ("hi" never in "this").
            compiled = re.compile(rf"(?<!\w)(?:{raw})(?!\w)", re.IGNORECASE)
        except re.error as exc:
            raise self.fail(where, f"{raw!r} is not a valid regular expression ({exc})") from exc
        if alone.fullmatch(""):
            raise self.fail(where, f"{raw!r} matches an empty text, so it would match every message")
        return compiled


_RESPONSE_KEYS = {"answers", "quick_replies", "buttons", "cards"}


def rules_parse(*, data: Any, source: str, limits: ReplyLimits = NO_LIMITS) -> RuleSet:
    """Validate parsed JSON against the rules format and ``limits``, and build a ``RuleSet``.

    Raises ``RulesFileError`` naming ``source`` and the first problem found.
    """
    check = _Checker(source, limits)
    root = check.obj(
        data,
        "",
        allowed={"version", "intents", "payloads", "fallback"},
        required={"version", "intents", "fallback"},
    )
    version = root["version"]
    if version not in SUPPORTED_VERSIONS:
        raise check.fail(
            "version",
            f"{version!r} is not supported; this engine reads version(s) {list(SUPPORTED_VERSIONS)}",
        )

    fallback = check.response(check.obj(root["fallback"], "fallback", allowed=_RESPONSE_KEYS), "fallback")
    if not fallback.answers:
        raise check.fail("fallback.answers", "the fallback needs at least one text answer")

    intents: list[Intent] = []
    names: set[str] = set()
    for i, raw in enumerate(check.array(root["intents"], "intents", non_empty=True)):
        where = f"intents[{i}]"
        item = check.obj(
            raw, where, allowed={"name", "patterns", "repeat", *_RESPONSE_KEYS}, required={"name"}
        )
        name = check.text(item["name"], f"{where}.name")
        where = f'{where} ("{name}")'
        if name in names or name == FALLBACK_INTENT:
            raise check.fail(
                f"{where}.name", f"intent name {name!r} is used twice (or is the reserved 'fallback')"
            )
        names.add(name)
        patterns = tuple(
            check.pattern(p, f"{where}.patterns[{j}]")
            for j, p in enumerate(check.array(item.get("patterns", []), f"{where}.patterns"))
        )
        repeat, repeat_intent = None, ""
        if "repeat" in item:
            block = check.obj(item["repeat"], f"{where}.repeat", allowed={"intent", *_RESPONSE_KEYS})
            repeat = check.response(block, f"{where}.repeat")
            repeat_intent = check.text(block.get("intent", f"{name}_repeat"), f"{where}.repeat.intent")
        intents.append(
            Intent(
                name=name,
                patterns=patterns,
                response=check.response(item, where),
                repeat=repeat,
                repeat_intent=repeat_intent,
            )
        )

    by_name = {intent.name: intent for intent in intents}
    payloads: dict[str, Intent] = {}
    raw_payloads = root.get("payloads", {})
    if not isinstance(raw_payloads, dict):
        raise check.fail("payloads", "expected an object mapping payload -> intent name or answer")
    for payload, target in raw_payloads.items():
        where = f"payloads.{payload}"
        if isinstance(target, str):
            if target not in by_name:
                raise check.fail(where, f"names intent {target!r}, which the file does not define")
            payloads[payload] = by_name[target]
        else:
            block = check.obj(target, where, allowed={"intent", *_RESPONSE_KEYS}, required={"intent"})
            payloads[payload] = Intent(
                name=check.text(block["intent"], f"{where}.intent"),
                patterns=(),
                response=check.response(block, where),
            )
    return RuleSet(
        source=source, version=version, intents=tuple(intents), payloads=payloads, fallback=fallback
    )


def rules_load(*, path: str | os.PathLike[str], limits: ReplyLimits = NO_LIMITS) -> RuleSet:
    """Read and validate the rules file at ``path`` (against ``limits`` too); raises ``RulesFileError``."""
    source = str(path)
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(f"Rules file {source} cannot be read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RulesFileError(
            f"Rules file {source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    return rules_parse(data=data, source=source, limits=limits)


class RulesFile:
    """One rules file, validated, and re-read when it changes on disk.

    Construction loads the file and raises ``RulesFileError`` if it is broken, so a bad file stops
    ``get_engine()`` (and start-up checks) with a clear message. Later broken edits are logged once per
    broken version and ignored: ``rules`` keeps returning the last good version.
    """

    def __init__(self, *, path: str | os.PathLike[str], limits: ReplyLimits = NO_LIMITS) -> None:
        self.path = Path(path)
        self.limits = limits
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._rules = rules_load(path=self.path, limits=limits)
        self._bad_stamp: tuple[int, int] | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    @property
    def last_good(self) -> RuleSet:
        """The rules last loaded without error, without looking at the file again."""
        return self._rules

    @property
    def rules(self) -> RuleSet:
        """The current rules, re-read first if the file changed since the last look."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp or stamp == self._bad_stamp:
            return self._rules
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._rules = rules_load(path=self.path, limits=self.limits)
                except RulesFileError as exc:
                    # Keep answering with the last good file; log once per broken version.
                    self._bad_stamp = stamp
                    logger.error("chatbot.engine.rules-reload-failed", extra={"error": str(exc)})
                else:
                    self._stamp = stamp
                    self._bad_stamp = None
                    logger.info("chatbot.engine.rules-reloaded", extra={"path": str(self.path)})
        return self._rules
