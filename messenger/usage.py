"""Meta's rate-limit usage headers: parsed on every Graph answer, kept per page, turned into a cooldown.

Why: throttling used to be hit blind (a fixed 30 s cooldown, whatever Facebook said). Every Graph
answer carries how much of its quota the app and the page have used, and a throttled one says how
long until access comes back; this module reads that, so the circuit waits as long as Facebook asks
and ops see the figures before they hit 100.

The headers, after Meta's "Rate Limiting" page of the Graph API
(https://developers.facebook.com/docs/graph-api/overview/rate-limiting), each a JSON text:

- ``X-App-Usage``: ``{"call_count": 28, "total_time": 25, "total_cputime": 25}``, percentages of the
  app's quota;
- ``X-Page-Usage``: the same three figures for the page of the token (Pages API, page tokens);
- ``X-Business-Use-Case-Usage``: ``{"<business_id>": [{"type": "pages", "call_count": 95,
  "total_cputime": 20, "total_time": 20, "estimated_time_to_regain_access": 5}]}``, one list per
  business object; ``estimated_time_to_regain_access`` is in **minutes** (0 when not throttled).

Parsing is total (:func:`usage_parse`): a missing header, a text that is not JSON, a number written
as a string or a negative one, a list where a dict was expected: each odd value is dropped, never
raised. Percentages are floats, the estimate an int of minutes.

Kept: the last figures per page in the channel's Redis (``messenger:usage:<page_id>``, one SET with
a TTL of :data:`USAGE_TTL_S`, read by :func:`usage_last`), and at most one ``graph_usage``
observability event per page per :data:`USAGE_EVENT_EVERY_S` (the signal
``observability.signals.graph_usage_observed``), which is what ``observability_report`` shows: the
report lives in the bottom app and must not read the channel's Redis keys, so the channel pushes
the figures down as an event, like every other figure of the report.

Cooldown (:func:`usage_cooldown_ms`): on a throttled answer (codes 4, 32, 613) with an estimate, the
Send API opens the circuit for the estimate, bounded below by ``MESSENGER_CIRCUIT_COOLDOWN_MS`` (an
estimate of 0 or 1 minute never makes the wait shorter than a plain failure's) and above by
``MESSENGER_USAGE_MAX_COOLDOWN_MS`` (default one hour: a wild estimate must not park the channel for
a day; after the cap a single probe asks again).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from messenger.queues import channel_redis
from observability import signals
from observability.stats import non_negative_number

logger = logging.getLogger("messenger.usage")

APP_HEADER = "X-App-Usage"
PAGE_HEADER = "X-Page-Usage"
BUSINESS_HEADER = "X-Business-Use-Case-Usage"
# The codes of a throttled app or page, whose cooldown follows Facebook's estimate.
THROTTLE_CODES = frozenset({4, 32, 613})
USAGE_TTL_S = 24 * 3600
USAGE_EVENT_EVERY_S = 60
_FIGURES = ("call_count", "total_time", "total_cputime")


@dataclass(frozen=True)
class GraphUsage:
    """The usage figures of one answer; every field empty when the header was missing or odd.

    ``app`` and ``page``: ``{"call_count", "total_time", "total_cputime"}`` (percent, only the
    figures present); ``business``: one dict per business use case entry, with ``business_id``,
    ``type``, those figures and ``estimated_time_to_regain_access`` (minutes).
    """

    app: dict[str, float] = field(default_factory=dict)
    page: dict[str, float] = field(default_factory=dict)
    business: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.app or self.page or self.business)

    @property
    def regain_access_minutes(self) -> int:
        """The longest ``estimated_time_to_regain_access`` of the answer, in minutes (0: none)."""
        return max((entry.get("estimated_time_to_regain_access", 0) for entry in self.business), default=0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- parsing ----------------------------------------------------------------------------------


def _json(text: Any) -> Any:
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _figures(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    return {name: number for name in _FIGURES if (number := non_negative_number(raw.get(name))) is not None}


def _business(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, dict):
        return []
    entries = []
    for business_id, items in raw.items():
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            entry: dict[str, Any] = {"business_id": str(business_id)[:64], "type": str(item.get("type") or "")[:64]}
            entry.update(_figures(item))
            regain = non_negative_number(item.get("estimated_time_to_regain_access"))
            entry["estimated_time_to_regain_access"] = int(regain) if regain is not None else 0
            entries.append(entry)
    return entries


def usage_parse(headers: Any) -> GraphUsage:
    """The :class:`GraphUsage` of an answer's ``headers`` (any mapping; names case-insensitive).

    Never raises: an odd value is dropped (module docstring).
    """
    try:
        lowered = {str(name).lower(): value for name, value in dict(headers or {}).items()}
    except (TypeError, ValueError):
        return GraphUsage()
    return GraphUsage(
        app=_figures(_json(lowered.get(APP_HEADER.lower()))),
        page=_figures(_json(lowered.get(PAGE_HEADER.lower()))),
        business=_business(_json(lowered.get(BUSINESS_HEADER.lower()))),
    )


# --- the cooldown -----------------------------------------------------------------------------
def usage_cooldown_ms(*, usage: GraphUsage | None, error_code: int | None) -> int | None:
    """How long the circuit should stay open after a throttled answer; ``None``: the fixed cooldown.

    Only for the throttle codes (:data:`THROTTLE_CODES`) with an estimate above zero; bounded by
    ``MESSENGER_CIRCUIT_COOLDOWN_MS`` and ``MESSENGER_USAGE_MAX_COOLDOWN_MS`` (module docstring).
    """
    if usage is None or error_code not in THROTTLE_CODES or usage.regain_access_minutes <= 0:
        return None
    floor = max(0, int(settings.MESSENGER_CIRCUIT_COOLDOWN_MS))
    ceiling = max(floor, int(settings.MESSENGER_USAGE_MAX_COOLDOWN_MS))
    return min(max(usage.regain_access_minutes * 60_000, floor), ceiling)


# --- keeping the last figures -----------------------------------------------------------------
def _key(page_id: str) -> str:
    return f"messenger:usage:{page_id or '-'}"


def usage_record(*, page_id: str, usage: GraphUsage | None) -> None:
    """Keep ``usage`` as the page's last figures, and hand it to observability once a minute.

    Best effort: a Redis error is logged as ``messenger.usage.redis-unavailable`` and the send goes on.
    """
    if usage is None or usage.is_empty:
        return
    try:
        client = channel_redis()
        pipe = client.pipeline(transaction=False)
        pipe.set(_key(page_id), json.dumps(usage.as_dict()), ex=USAGE_TTL_S)
        pipe.set(_key(page_id) + ":event", 1, nx=True, ex=USAGE_EVENT_EVERY_S)
        _, first_this_minute = pipe.execute()
    except RedisError as exc:
        logger.warning("messenger.usage.redis-unavailable", extra={"error": type(exc).__name__})
        return
    if first_this_minute:
        signals.send_safely(
            signals.graph_usage_observed, sender=usage_record, page_id=page_id or "", usage=usage.as_dict()
        )


def usage_last(*, page_id: str) -> dict[str, Any] | None:
    """The page's last figures (``GraphUsage.as_dict()``), ``None`` when none were kept or Redis fails."""
    try:
        raw = channel_redis().get(_key(page_id))
    except RedisError:
        return None
    data = _json(raw.decode() if isinstance(raw, bytes) else raw)
    return data if isinstance(data, dict) else None
