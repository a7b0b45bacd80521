"""Whether a page's token works: the "token failing" marker that stops sends, not messages.

Why: an expired or revoked page token used to be found by users (every reply failed, one ERROR per
message, the messages failed for good). Here a token answer (a 190, or any answer
``messenger.graph_errors`` classifies as ``auth``: 102, 190, other 10s, 200-299, HTTP 401/403)
marks the page's token as failing, once; while it is marked the page's sends are not attempted and
its messages are parked (deferred), so they go out as soon as a working token is set.

The marker: a Redis hash ``messenger:token:failing:<page_id>`` on the channel's Redis
(``messenger.queues.channel_redis``) with ``fingerprint`` (an HMAC-SHA256 of the token keyed with
``SECRET_KEY``, first 16 hex digits: it tells tokens apart, it is never the token and cannot be
turned back into it), ``since`` (epoch ms) and ``error_code``. It has no TTL: it lives until a send
of that page succeeds. Pages ever seen are kept in the set ``messenger:token:pages`` for ``/healthz``.

One incident, one alarm: setting the marker is one Lua script (atomic: "set unless this fingerprint
is already marked"), so of any number of concurrent failures exactly one is the first; only it logs
``messenger.token.failing`` (ERROR) and sends ``observability.signals.token_failing`` (one
``token_failing`` event). Later failures of the same token log nothing new. A different token
failing too is a new incident.

The gate (:func:`token_gate`, asked before every send of a known page): no marker, or a marker for
another fingerprint (the token was replaced), and the send goes out. A marker for the current token
and the send is refused, except one probe per ``MESSENGER_TOKEN_RECHECK_MS`` (a ``SET NX PX`` slot,
one for the whole deployment): a permission re-granted on Facebook's side fixes the same token, and
only a call can tell. Refused sends come back deferred with that same delay, so a parked message is
retried about once a recheck period, and goes out within one period of a new token being set.

Recovery: a success of a send admitted while the page was marked deletes the marker; the one caller
whose ``DEL`` removed it logs ``messenger.token.recovered`` (INFO).

Tokens: :func:`messenger.pages.page_token` is the one place a page's token is looked up: a page
added with ``messenger_page`` (a replaced token takes effect within ``PAGES_CACHE_SECONDS``), else
``MESSENGER_PAGE_ACCESS_TOKEN`` (a new one takes effect on restart). A send with no page (a unit
test of the Send API) is not gated. Redis down: the gate fails open (a send is tried), and marking
is skipped; the Send API's own errors still park the message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from messenger.pages import page_token
from messenger.queues import channel_redis
from observability import signals

logger = logging.getLogger("messenger.token")

OK = "ok"
TOKEN_FAILING = "token_failing"
PAGES_KEY = "messenger:token:pages"
PARK_REASON = "the page's token is failing"

# KEYS[1] = marker; ARGV = fingerprint, since_ms, error_code. Returns 1 when this call began an incident.
_MARK_LUA = """
if redis.call('HGET', KEYS[1], 'fingerprint') == ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'since', ARGV[2], 'error_code', ARGV[3])
return 1
"""


def token_fingerprint(token: str) -> str:
    """An HMAC of ``token`` keyed with ``SECRET_KEY``: equal for equal tokens, never the token."""
    digest = hmac.new(settings.SECRET_KEY.encode(), token.encode(), hashlib.sha256).hexdigest()
    return digest[:16]


def _marker_key(page_id: str) -> str:
    return f"messenger:token:failing:{page_id}"


def _probe_key(page_id: str) -> str:
    return f"messenger:token:probe:{page_id}"


def _recheck_ms() -> int:
    return max(1000, int(settings.MESSENGER_TOKEN_RECHECK_MS))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


@dataclass(frozen=True)
class TokenGate:
    """The answer of :func:`token_gate` for one send.

    ``allowed``: the send may go out. ``marked``: the page was marked failing when asked (a success
    then clears the marker). ``retry_after_ms``: when refused, when to try again.
    """

    page_id: str = ""
    allowed: bool = True
    marked: bool = False
    retry_after_ms: int = 0


def token_gate(*, page_id: str) -> TokenGate:
    """Whether a send of ``page_id`` may go out now (module docstring). Never raises."""
    if not page_id:
        return TokenGate()
    key = _marker_key(page_id)
    try:
        client = channel_redis()
        pipe = client.pipeline(transaction=False)
        pipe.sadd(PAGES_KEY, page_id)
        pipe.hget(key, "fingerprint")
        _, marked_fingerprint = pipe.execute()
        if marked_fingerprint is None:
            return TokenGate(page_id=page_id)
        if _text(marked_fingerprint) != token_fingerprint(page_token(page_id=page_id)):
            return TokenGate(page_id=page_id, marked=True)  # a new token: try it
        if client.set(_probe_key(page_id), 1, nx=True, px=_recheck_ms()):
            logger.info("messenger.token.probe", extra={"page_id": page_id})
            return TokenGate(page_id=page_id, marked=True)
    except RedisError as exc:
        logger.warning("messenger.token.redis-unavailable", extra={"page_id": page_id, "error": type(exc).__name__})
        return TokenGate(page_id=page_id)
    return TokenGate(page_id=page_id, allowed=False, marked=True, retry_after_ms=_recheck_ms())


def token_mark_failing(*, page_id: str, error_code: int | None) -> bool:
    """Mark ``page_id``'s current token as failing; ``True`` when this call began the incident."""
    fingerprint = token_fingerprint(page_token(page_id=page_id))
    since_ms = int(time.time() * 1000)
    try:
        client = channel_redis()
        began = client.eval(_MARK_LUA, 1, _marker_key(page_id), fingerprint, since_ms, str(error_code or ""))
        if began:
            client.sadd(PAGES_KEY, page_id)
            # A probe slot of the previous incident must not delay the first retry of this one.
            client.set(_probe_key(page_id), 1, px=_recheck_ms())
    except RedisError as exc:
        logger.warning("messenger.token.redis-unavailable", extra={"page_id": page_id, "error": type(exc).__name__})
        return False
    if not began:
        return False
    logger.error(
        "messenger.token.failing",
        extra={"page_id": page_id, "error_code": error_code, "token_fingerprint": fingerprint},
    )
    signals.send_safely(
        signals.token_failing, sender=token_mark_failing, page_id=page_id, error_code=error_code,
        fingerprint=fingerprint,
    )
    return True


def token_mark_working(*, gate: TokenGate) -> None:
    """A send admitted by ``gate`` succeeded: clear the page's marker (logged once) if it had one."""
    if not (gate.page_id and gate.marked):
        return
    try:
        client = channel_redis()
        removed = client.delete(_marker_key(gate.page_id))
        client.delete(_probe_key(gate.page_id))
    except RedisError as exc:
        logger.warning(
            "messenger.token.redis-unavailable", extra={"page_id": gate.page_id, "error": type(exc).__name__}
        )
        return
    if removed:
        logger.info("messenger.token.recovered", extra={"page_id": gate.page_id})


def token_failed(*, gate: TokenGate, ok: bool, kind: str | None, error_code: int | None) -> bool:
    """Report a send's outcome; ``True`` when it failed on the page's token (the caller parks it).

    The one hook the Send API calls after a send of a known page: a success clears the marker, an
    ``auth`` failure sets it (:func:`token_mark_failing`); anything else changes nothing.
    """
    if not gate.page_id:
        return False
    if ok:
        token_mark_working(gate=gate)
        return False
    if kind != "auth":
        return False
    token_mark_failing(page_id=gate.page_id, error_code=error_code)
    return True


def token_pages_status() -> dict[str, str]:
    """``{page_id: "ok" | "token_failing"}`` for every page seen; raises ``RedisError`` (healthz reports it)."""
    client = channel_redis()
    pages = sorted(_text(page) for page in client.smembers(PAGES_KEY))
    if not pages:
        return {}
    pipe = client.pipeline(transaction=False)
    for page in pages:
        pipe.exists(_marker_key(page))
    return {page: (TOKEN_FAILING if marked else OK) for page, marked in zip(pages, pipe.execute(), strict=True)}


def token_reset(*, page_id: str) -> None:
    """Forget ``page_id``'s marker and probe slot (tests; an operator who knows the token works)."""
    channel_redis().delete(_marker_key(page_id), _probe_key(page_id))
