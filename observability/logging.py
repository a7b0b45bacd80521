"""Log formatting: every pipeline line carries its message id and hashed PSID.

Pipeline code logs dotted event names (``messenger.send.failed``) with ``extra=`` context. The
:class:`ContextFilter` adds the fields a record lacks so both formatters can rely on them, and
:class:`JsonFormatter` (``LOG_FORMAT=json``) writes one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

# Context keys that must never be written, whatever a caller passes in ``extra=``.
_FORBIDDEN_KEYS = frozenset({"psid", "access_token", "token", "app_secret", "api_key"})


def record_context(record: logging.LogRecord) -> dict:
    """The ``extra=`` fields of a record, minus any key that could carry a secret or raw PSID."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRS and key not in _FORBIDDEN_KEYS and not key.startswith("_")
    }


class ContextFilter(logging.Filter):
    """Guarantee ``mid`` and ``psid_hash`` on every record so formats can name them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "mid"):
            record.mid = "-"
        if not hasattr(record, "psid_hash"):
            record.psid_hash = "-"
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
    """One JSON object per line: ``time``, ``level``, ``logger``, ``event`` and the context."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(record_context(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)
