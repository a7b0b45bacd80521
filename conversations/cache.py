"""Redis cache of a conversation's recent history, in front of the database.

One key per conversation, ``<cache prefix>:conversations:history:v1:<conversation id>``, holds a compact
JSON object ``{"limit": N, "items": [{"id", "direction", "text", "intent", "created_at"}, ...]}``: the
last ``N`` (= ``MESSENGER_HISTORY_LIMIT`` when it was written) messages, oldest first. It expires
``MESSENGER_CONVERSATION_TTL_SECONDS`` after its last write, like the conversation itself.

Contracts:

- **Read-through.** :func:`history_read_through` answers from Redis; on a miss it runs the loader (a
  database read) and stores the result.
- **Never ahead of the database.** Writers call :func:`history_push` only after their transaction
  commits (``transaction.on_commit``), so the cache never holds a message the database lost.
- **Never behind after a race.** A fill watches the key (``WATCH``) across its database read; a push
  that lands on a missing key writes a short-lived *tombstone* instead, so a fill that read the
  database before the push committed is discarded (``EXEC`` fails) rather than stored stale. A push
  whose message is already in the list (the fill saw it) is a no-op: items carry their message id.
- **Never stale after a failed push.** A push that fails drops the key (the next read fills from the
  database) rather than leaving a list without the message.
- **One round trip per push, usually.** This process remembers the last value it read or wrote per
  conversation (a bounded memo). A push computes the new list from that and writes it with one
  compare-and-set script (``SET`` only if the key still holds what was remembered, compared by
  SHA-1); when anybody changed the key since, the script refuses and the push takes the ``WATCH``
  path above. The memo is only a guess: Redis decides, so a stale memo costs a round trip, never a
  wrong list. A message's read and its two pushes (the user's line, the reply's) cost three round
  trips instead of seven.
- **Redis is optional.** Any Redis error is logged as ``conversations.cache.unavailable`` and the
  caller gets the database's answer; no exception leaves this module for a Redis failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from django.conf import settings
from django.core.cache import caches
from django_redis import get_redis_connection
from redis.exceptions import NoScriptError, RedisError, WatchError

logger = logging.getLogger("conversations.cache")

CACHE_ALIAS = "default"
KEY_TEMPLATE = "conversations:history:v1:{conversation_id}"
# Written on a push that finds no list: it makes a fill in flight fail (WATCH) and reads as a miss.
TOMBSTONE = b"-"
# Conversations whose last known value this process remembers (a few hundred bytes to a few KB each).
MEMO_SIZE = 2048

# KEYS[1] = history key; ARGV = SHA-1 of the value the writer started from, new value, TTL (s).
_CAS_LUA = """
local current = redis.call('GET', KEYS[1])
if current and redis.sha1hex(current) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_CAS_SHA = hashlib.sha1(_CAS_LUA.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

_memo: OrderedDict[int, bytes] = OrderedDict()
_memo_lock = threading.Lock()


def _remember(conversation_id: int, raw: bytes | str | None) -> None:
    """Keep ``raw`` as the key's last known value (``None``: forget it)."""
    with _memo_lock:
        if raw is None or raw == TOMBSTONE:
            _memo.pop(conversation_id, None)
            return
        _memo[conversation_id] = raw.encode() if isinstance(raw, str) else raw
        _memo.move_to_end(conversation_id)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)


def _remembered(conversation_id: int) -> bytes | None:
    with _memo_lock:
        return _memo.get(conversation_id)


def history_key(*, conversation_id: int) -> str:
    """The full Redis key (with the cache's ``KEY_PREFIX`` and version) for a conversation's history."""
    return caches[CACHE_ALIAS].make_key(KEY_TEMPLATE.format(conversation_id=conversation_id))


def _ttl() -> int:
    return max(1, int(settings.MESSENGER_CONVERSATION_TTL_SECONDS))


def _encode(items: list[dict], limit: int) -> str:
    return json.dumps({"limit": limit, "items": items[-limit:]}, ensure_ascii=False, separators=(",", ":"))


def _decode(raw: bytes | None) -> dict | None:
    """The cached object, or ``None`` for a missing key, a tombstone or anything unreadable."""
    if raw is None or raw == TOMBSTONE:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        logger.warning("conversations.cache.corrupt")
        return None
    if not isinstance(value, dict) or not isinstance(value.get("items"), list):
        return None
    return value


def _unavailable(exc: Exception, *, conversation_id: int, op: str) -> None:
    logger.warning(
        "conversations.cache.unavailable",
        extra={"conversation_id": conversation_id, "op": op, "error": type(exc).__name__},
    )


def history_read_through(
    *, conversation_id: int, limit: int, loader: Callable[[int], list[dict]]
) -> list[dict]:
    """The last ``limit`` cached items of a conversation, oldest first, filling the cache on a miss.

    ``loader(n)`` must return the last ``n`` messages from the database as item dicts, oldest first;
    it is called at most once. A cached list written for a smaller limit than asked for (the setting
    grew) counts as a miss. With Redis down, this is ``loader(limit)``.
    """
    key = history_key(conversation_id=conversation_id)
    loaded: list[dict] | None = None
    try:
        conn = get_redis_connection(CACHE_ALIAS)
        # Plain GET first: a hit costs one round trip and holds no connection across a DB read.
        raw = conn.get(key)
        cached = _decode(raw)
        if cached is not None and _serves(cached, limit):
            _remember(conversation_id, raw)
            return cached["items"][-limit:]
        with conn.pipeline() as pipe:
            pipe.watch(key)
            cached = _decode(pipe.get(key))
            if cached is not None and _serves(cached, limit):
                return cached["items"][-limit:]
            loaded = loader(limit)
            encoded = _encode(loaded, limit)
            pipe.multi()
            pipe.set(key, encoded, ex=_ttl())
            try:
                pipe.execute()
                _remember(conversation_id, encoded)
            except WatchError:
                # A message was committed while we read the database: our copy may lack it.
                logger.info("conversations.cache.fill-skipped", extra={"conversation_id": conversation_id})
        return loaded
    except RedisError as exc:
        _unavailable(exc, conversation_id=conversation_id, op="read")
        return loaded if loaded is not None else loader(limit)


def _serves(cached: dict, limit: int) -> bool:
    """Whether a cached list can answer a request for ``limit`` items."""
    items = cached["items"]
    return len(items) >= limit or len(items) < int(cached.get("limit", 0))


def history_prime_empty(*, conversation_id: int) -> None:
    """Store an empty history for a conversation just created, so its first reads are hits.

    Call it on commit of the creating transaction. Uses ``SET NX``: never overwrites a list.
    """
    limit = int(settings.MESSENGER_HISTORY_LIMIT)
    encoded = _encode([], limit)
    try:
        if get_redis_connection(CACHE_ALIAS).set(
            history_key(conversation_id=conversation_id), encoded, ex=_ttl(), nx=True
        ):
            _remember(conversation_id, encoded)
    except RedisError as exc:
        _unavailable(exc, conversation_id=conversation_id, op="prime")


def history_push(*, conversation_id: int, item: dict) -> None:
    """Add one committed message to the cached history (call it from ``transaction.on_commit``).

    Keeps the list ordered by ``(created_at, id)`` and bounded to ``MESSENGER_HISTORY_LIMIT``, and
    resets the key's expiry to the conversation TTL. On a missing key it writes a tombstone (see the
    module docstring) rather than a partial list. Safe against concurrent pushes (optimistic
    ``WATCH``/``MULTI`` with retries).
    """
    key = history_key(conversation_id=conversation_id)
    limit = int(settings.MESSENGER_HISTORY_LIMIT)
    ttl = _ttl()
    written: list[str | None] = [None]

    def _with_item(cached: dict) -> str | None:
        """The new value with ``item`` in place, or ``None`` when it is there already."""
        items = cached["items"]
        if any(existing.get("id") == item["id"] for existing in items):
            return None
        items.append(item)
        items.sort(key=lambda i: (i.get("created_at", 0.0), i.get("id", 0)))
        return _encode(items, limit)

    def _apply(pipe) -> None:
        cached = _decode(pipe.get(key))
        if cached is None:
            pipe.multi()
            pipe.set(key, TOMBSTONE, ex=ttl)
            return
        written[0] = _with_item(cached)
        if written[0] is not None:
            pipe.multi()
            pipe.set(key, written[0], ex=ttl)

    try:
        conn = get_redis_connection(CACHE_ALIAS)
        known = _remembered(conversation_id)
        cached = _decode(known) if known is not None else None
        new = _with_item(cached) if cached is not None else None
        if new is not None and _compare_and_set(conn, key, known, new, ttl):
            _remember(conversation_id, new)
            return
        _remember(conversation_id, None)
        conn.transaction(_apply, key)
        _remember(conversation_id, written[0])
    except RedisError as exc:
        _remember(conversation_id, None)
        _unavailable(exc, conversation_id=conversation_id, op="push")
        # A list that missed this message would serve a stale history for the rest of the
        # conversation: drop it, so the next read fills from the database. (Redis down: the delete
        # fails too, already logged, and the list, if Redis kept it, expires with its TTL.)
        with contextlib.suppress(RedisError):
            get_redis_connection(CACHE_ALIAS).delete(key)


def _compare_and_set(conn, key: str, known: bytes, new: str, ttl: int) -> bool:
    """Write ``new`` if the key still holds ``known``: one round trip (``EVALSHA``, loaded on first use)."""
    args = (1, key, hashlib.sha1(known).hexdigest(), new, ttl)  # noqa: S324 - matched by Redis's sha1hex
    try:
        return bool(conn.evalsha(_CAS_SHA, *args))
    except NoScriptError:
        return bool(conn.eval(_CAS_LUA, *args))


def history_forget(*, conversation_id: int) -> int:
    """Drop a conversation's cached history (it expired, or its user is forgotten).

    Returns how many keys were deleted (0 or 1; 0 with Redis down, logged).
    """
    _remember(conversation_id, None)
    try:
        return int(get_redis_connection(CACHE_ALIAS).delete(history_key(conversation_id=conversation_id)))
    except RedisError as exc:
        _unavailable(exc, conversation_id=conversation_id, op="forget")
        return 0
