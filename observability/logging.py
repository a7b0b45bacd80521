"""Log formatting: every pipeline line carries its message id and hashed PSID.

Pipeline code logs dotted event names (``messenger.send.failed``) with ``extra=`` context. The
:class:`ContextFilter` (wired on the console handler in ``settings.LOGGING``) makes sure every
record has ``mid`` and ``psid_hash``:

1. from the record's own ``extra=``, when the caller passed them;
2. else from :func:`log_context`, which a job or view binds once per message so every line logged
   inside it (by any module, at any depth) carries the message's ids without passing them around;
3. else ``"-"``, so formats can always name them.

A raw PSID must never reach a log line. The filter removes a ``psid`` passed in ``extra=`` (after
hashing it into ``psid_hash`` when that is missing), and both formatters drop every key in
:data:`FORBIDDEN_KEYS` (PSIDs, tokens, secrets) whatever a caller passes. Code that forwards context
it was handed builds its ``extra=`` with :func:`safe_extra`, the same key filter, so one list decides
what may be logged.

:class:`JsonFormatter` (``LOG_FORMAT=json``) writes one JSON object per line for log shippers;
:class:`TextFormatter` (the default) writes ``time level logger: event key=value ...``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

# Context keys that must never be written, whatever a caller passes in ``extra=``.
FORBIDDEN_KEYS = frozenset(
    {
        "psid",
        "sender_id",
        "recipient_id",
        "access_token",
        "page_access_token",
        "token",
        "app_secret",
        "secret",
        "api_key",
        "authorization",
        "password",
        # django.request attaches the request: its repr carries the query string, where Facebook's
        # verification puts hub.verify_token.
        "request",
    }
)

_UNSET = "-"

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "observability_log_context", default=None
)


@contextlib.contextmanager
def log_context(*, mid: str = "", psid_hash: str = "") -> Iterator[None]:
    """Within the block, log records lacking ``mid``/``psid_hash`` get these values.

    Pass the hashed PSID (``hash_psid(inbound.psid)``), never the raw one. Nests: an inner block
    overrides the outer one and restores it on exit. Safe across threads and asyncio tasks
    (a ``contextvars`` variable).
    """
    token = _context.set({"mid": mid or _UNSET, "psid_hash": psid_hash or _UNSET})
    try:
        yield
    finally:
        _context.reset(token)


def _is_context_key(key: str) -> bool:
    """True for a key that may travel as log context: not a LogRecord attribute, not a secret."""
    return key not in _STANDARD_ATTRS and key not in FORBIDDEN_KEYS and not key.startswith("_")


def safe_extra(context: dict | None) -> dict:
    """``context`` ready to pass as ``extra=``: the same keys the formatters would write.

    A key that is a LogRecord attribute would make ``logging`` raise ``KeyError`` ("Attempt to
    overwrite ..."), and a forbidden key (raw PSID, token, secret) must not even sit on the record,
    where a handler other than ours could read it. Callers that build ``extra=`` from context handed
    to them (the Send API's ``log_context``) pass it through here first.
    """
    return {key: value for key, value in (context or {}).items() if _is_context_key(key)}


def record_context(record: logging.LogRecord) -> dict:
    """The ``extra=`` fields of a record, minus any key that could carry a secret or raw PSID."""
    return {key: value for key, value in vars(record).items() if _is_context_key(key)}


def _hash_or_unset(psid: object) -> str:
    """``hash_psid(psid)`` when Django is configured; ``"-"`` when hashing is not possible."""
    try:
        from observability.hashing import hash_psid

        return hash_psid(str(psid)) or _UNSET
    except Exception:  # noqa: BLE001 - a log line must never fail; the raw PSID is dropped anyway
        return _UNSET


class ContextFilter(logging.Filter):
    """Guarantee ``mid`` and ``psid_hash`` on every record and remove a raw ``psid``."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get() or {}
        raw_psid = record.__dict__.pop("psid", None)
        if not hasattr(record, "psid_hash"):
            if raw_psid:
                record.psid_hash = _hash_or_unset(raw_psid)
            else:
                record.psid_hash = bound.get("psid_hash", _UNSET)
        if not hasattr(record, "mid"):
            record.mid = bound.get("mid", _UNSET)
        return True


class TextFormatter(logging.Formatter):
    """Human-readable lines: time, level, logger, message, then ``key=value`` context."""

    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        context = record_context(record)
        if context:
            base += " " + " ".join(f"{k}={v}" for k, v in sorted(context.items()))
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``event`` and the context.

    A traceback goes into the ``exception`` string (newlines escaped), so one record is always one
    physical line.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record_context(record).items():
            payload.setdefault(key, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)
