"""Errors to Sentry, when ``SENTRY_DSN`` is set, with tokens, secrets and raw PSIDs scrubbed first.

``chatbot/settings.py`` calls :func:`sentry_init` once, when the settings are read, so the web
(gunicorn, ``runserver``) and the workers (``manage.py rqworker``) are covered by the same line:
sentry-sdk's Django integration reports unhandled view errors, its RQ integration failed jobs (and
flushes before a work horse exits), and its logging integration turns ``logger.error`` lines into
events and lower lines into breadcrumbs. ``send_default_pii=False`` keeps cookies, users and IPs
out, and request bodies are never attached (``max_request_body_size="never"``): the webhook's body
is a user's own words, already kept in the inbox.

What leaves is what :class:`Scrubber` returns. sentry-sdk serialises the event (frame variables
become ``repr`` strings) before ``before_send``, so the scrubber walks one tree of plain dicts,
lists and strings, and:

1. replaces every configured secret (:func:`configured_secrets`: the app secret, every page token,
   the verify token, ``CHATBOT_API_KEY``, ``METRICS_TOKEN``, the Django secret key and the PSID hash
   key) wherever it occurs in any string, including dict keys, with ``[Filtered]``;
2. replaces ``access_token=...``-style query parameters and ``Bearer ...`` credentials it does not
   know of (a page token not configured here) the same way;
3. replaces a PSID with its keyed hash (:func:`observability.hashing.hash_psid`, the value the
   events and logs carry, so a Sentry issue can be matched to one user's journey): the value of any
   key in :data:`PSID_KEYS`, the ``id`` under a key in :data:`PSID_PARENT_KEYS` (``sender.id``,
   ``recipient.id``), and then every other occurrence of those PSIDs in any string (an exception
   message that quotes one).

Secrets are read at each event, not at start-up, so a page token set later is scrubbed too. If the
scrubber itself fails, the event is dropped (``None``), never sent unscrubbed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger("chatbot.sentry")

FILTERED = "[Filtered]"
# Keys whose value is a PSID, wherever they appear (extra, tags, frame variables, log extras).
PSID_KEYS = frozenset({"psid", "sender_id", "recipient_id", "user_psid"})
# Keys whose ``id`` is a PSID (the Send API's and webhook's ``{"sender": {"id": ...}}``); a scalar
# value directly under them is one too.
PSID_PARENT_KEYS = frozenset({"sender", "recipient", "user"})
# Shorter values are not looked for inside strings: replacing "abc" everywhere would mangle events
# and a secret that short protects nothing anyway.
MIN_SECRET_LENGTH = 4
MIN_PSID_LENGTH = 5
_QUERY_SECRET = re.compile(
    r"(?i)\b(access_token|input_token|appsecret_proof|client_secret|hub\.verify_token)=([^&\s'\"]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_QUOTES = "'\""
_PSID_LOOKING = re.compile(r"\d+")


def page_tokens() -> list[str]:
    """Every page token this process holds, from the one place that lists the pages (``messenger.pages``).

    Without a query: a database read here would add breadcrumbs that call this again.
    """
    from messenger.pages import pages_tokens_in_memory

    return pages_tokens_in_memory()


def configured_secrets() -> list[str]:
    """Every secret this deployment holds, read from the settings at call time."""
    from django.conf import settings

    names = (
        "MESSENGER_APP_SECRET",
        "MESSENGER_VERIFY_TOKEN",
        "CHATBOT_API_KEY",
        "METRICS_TOKEN",
        "SECRET_KEY",
        "OBSERVABILITY_PSID_HASH_KEY",
    )
    return [*page_tokens(), *(getattr(settings, name, "") for name in names)]


def _unquote(value: str) -> str:
    """A frame variable's ``repr`` of a string (``"'123'"``) back to the string itself."""
    value = value.strip()
    if len(value) >= 2 and value[0] in _QUOTES and value[-1] == value[0]:
        return value[1:-1]
    return value


class Scrubber:
    """``before_send`` and ``before_breadcrumb`` for sentry-sdk; see the module docstring."""

    def __init__(self, secrets: Callable[[], Iterable[str]] = configured_secrets) -> None:
        self._secrets = secrets

    def before_send(self, event: dict, hint: dict | None = None) -> dict | None:
        return self._scrub_or_drop(event, "event")

    def before_breadcrumb(self, crumb: dict, hint: dict | None = None) -> dict | None:
        return self._scrub_or_drop(crumb, "breadcrumb")

    def scrub(self, tree: Any) -> Any:
        """``tree`` with secrets filtered and PSIDs hashed (a new tree; the input is not changed)."""
        from observability.hashing import hash_psid

        secrets = sorted({s for s in self._secrets() if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        psids: set[str] = set()
        self._collect_psids(tree, None, psids)
        hashes = {psid: hash_psid(psid) for psid in sorted(psids, key=len, reverse=True)}
        return _Pass(secrets, hashes).value(tree, None, None)

    def _scrub_or_drop(self, tree: dict, what: str) -> dict | None:
        try:
            return self.scrub(tree)
        except Exception as exc:  # noqa: BLE001 - an unscrubbed event must not leave; it is dropped
            logger.warning("chatbot.sentry.scrub-failed", extra={"what": what, "error": type(exc).__name__})
            return None

    def _collect_psids(self, node: Any, key: str | None, found: set[str]) -> None:
        if isinstance(node, dict):
            for child_key, child in node.items():
                name = str(child_key).lower()
                psid = _psid_in(name, key, child)
                if psid is not None:
                    found.add(psid)
                self._collect_psids(child, name, found)
        elif isinstance(node, list | tuple):
            for child in node:
                self._collect_psids(child, key, found)


def _psid_in(name: str, parent: str | None, value: Any) -> str | None:
    """The PSID that ``value`` (under key ``name``, itself under ``parent``) holds, if any.

    Any value of a :data:`PSID_KEYS` key is one. Under ``sender``/``recipient``/``user`` only a
    PSID-looking value (digits) is: a frame variable ``sender`` is usually a function's repr, and
    ``user`` a Django user.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = _unquote(str(value))
    if len(text) < MIN_PSID_LENGTH:
        return None
    if name in PSID_KEYS:
        return text
    if (name in PSID_PARENT_KEYS or (name == "id" and parent in PSID_PARENT_KEYS)) and _PSID_LOOKING.fullmatch(text):
        return text
    return None


class _Pass:
    """One rewrite of a tree with a fixed list of secrets and PSID hashes."""

    def __init__(self, secrets: list[str], hashes: dict[str, str]) -> None:
        self.secrets = secrets
        self.hashes = hashes

    def value(self, node: Any, key: str | None, parent: str | None) -> Any:
        if isinstance(node, dict):
            out = {}
            for child_key, child in node.items():
                name = str(child_key).lower()
                new_key = self.text(child_key) if isinstance(child_key, str) else child_key
                out[new_key] = self.value(child, name, key)
            return out
        if isinstance(node, list | tuple):
            return [self.value(child, key, parent) for child in node]
        psid = _psid_in(key, parent, node) if key is not None else None
        if psid is not None:
            return self.hashes[psid]
        if isinstance(node, str):
            return self.text(node)
        return node

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, FILTERED)
        text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={FILTERED}", text)
        text = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)
        for psid, hashed in self.hashes.items():
            if psid in text:
                text = text.replace(psid, hashed)
        return text


def sentry_init(*, dsn: str, environment: str, transport: Any = None) -> bool:
    """Start sentry-sdk for this process with the Django and RQ integrations and the scrubber.

    Returns False (and starts nothing) when ``dsn`` is empty. ``transport`` is for tests, which
    must never reach the network.
    """
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.rq import RqIntegration

    scrubber = Scrubber()
    options: dict[str, Any] = {
        "dsn": dsn,
        "environment": environment,
        "integrations": [DjangoIntegration(), RqIntegration()],
        "send_default_pii": False,
        "max_request_body_size": "never",
        "before_send": scrubber.before_send,
        "before_breadcrumb": scrubber.before_breadcrumb,
    }
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    return True
