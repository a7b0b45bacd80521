"""A circuit breaker for the Send API whose state lives in Redis, shared by every process.

Why: when Facebook's Send API is down, every worker and web process would otherwise keep calling it,
each call waiting out its timeout and its retries, until the queues back up. The breaker counts
consecutive API failures across all processes; past ``MESSENGER_CIRCUIT_FAILURE_THRESHOLD`` it
*opens* and no process makes a Send API call for ``MESSENGER_CIRCUIT_COOLDOWN_MS``. After the
cooldown the circuit is *half-open*: exactly one caller, in the whole deployment, gets a probe
permit; the others keep being refused until the probe reports. A successful probe *closes* the
circuit (count back to zero), a failed one *reopens* it for another cooldown.

Why not pybreaker (1.4.1, read before writing this): its ``CircuitRedisState`` keeps the state in
Redis, but the open -> half-open move is a read-compare-write in Python (``GET opened_at``, compare
with the local clock, ``SET state half-open``), guarded only by a per-process ``threading.RLock``.
Two processes past the cooldown both read "open, timeout elapsed" and both let a call through, so
it cannot give one probe across processes. The same ``RLock`` is also held around the protected
call itself, which would serialise every Send API call of a process. Here each transition is one
Lua script, which Redis runs atomically, so concurrent callers are ordered by Redis itself.

State: one hash per breaker, ``messenger:circuit:<name>`` (one breaker per page,
``send_api:<page id>``: :func:`get_breaker`), with ``failures`` (consecutive count),
``opened_until`` (ms since the epoch; absent or 0 = closed) and ``probe_until`` (lease of the
probe in flight). The probe lease (twice the send timeout, at least one second) frees the probe
slot if the probe's process dies before reporting, so the circuit can never stay half-open forever.
Timestamps come from :func:`_now_ms` (this host's wall clock, which must be NTP-synchronised across
hosts; skew of a few ms is irrelevant against a cooldown of seconds). Tests patch ``_now_ms``.

What counts: the caller decides (see ``messenger.send_api``): transient, rate-limited and auth
failures are API failures (:meth:`CircuitBreaker.record_failure`); a success resets the count
(:meth:`CircuitBreaker.record_success`; no round trip when the circuit was clean when the call was
admitted, the usual case: ``acquire`` says so). A late success or failure of a call admitted before the
circuit opened does not move an open circuit: only the probe decides. A throttled answer that says
when access returns (``messenger.usage``) opens the circuit at once for that long, or pushes the end
of an open circuit later: ``record_failure(permit, cooldown_ms=...)``, the same one script.

Redis down: the breaker *fails open*. An unreachable Redis must not stop replies, so ``acquire``
allows the call, and nothing is recorded; the failure logs ``messenger.circuit.redis-unavailable``.
The project's client (redis-py 8 defaults) retries a refused connection ten times, about 4 s, so
after a Redis error this process skips Redis for :data:`REDIS_DOWN_BACKOFF_S` (calls allowed, no
log): one send in that window pays the retries, not every send.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

logger = logging.getLogger("messenger.circuit")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
UNKNOWN = "unknown"  # state() when Redis cannot be read
# After a Redis error, this process fails open without asking Redis for this long.
REDIS_DOWN_BACKOFF_S = 5.0

# KEYS[1] = state hash; ARGV = now_ms, probe_lease_ms.
# Returns {allowed (0/1), is_probe (0/1), retry_after_ms, clean (0/1: closed with no failure counted)}.
_ACQUIRE_LUA = """
local v = redis.call('HMGET', KEYS[1], 'opened_until', 'probe_until', 'failures')
local opened_until = tonumber(v[1]) or 0
if opened_until == 0 then
  if (tonumber(v[3]) or 0) == 0 then
    return {1, 0, 0, 1}
  end
  return {1, 0, 0, 0}
end
local now = tonumber(ARGV[1])
if now < opened_until then
  return {0, 0, opened_until - now}
end
local probe_until = tonumber(v[2]) or 0
if probe_until > now then
  return {0, 0, probe_until - now}
end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
return {1, 1, 0}
"""

# KEYS[1] = state hash; ARGV = now_ms, 'success'|'failure', is_probe (0/1), threshold, cooldown_ms,
# open_now (0/1: a failure that says how long to wait opens at once, or pushes an open circuit's end).
# Returns the transition: 'none', 'opened', 'reopened', 'extended' or 'closed'.
_RECORD_LUA = """
local now = tonumber(ARGV[1])
local is_probe = ARGV[3] == '1'
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until')) or 0
if ARGV[2] == 'success' then
  if opened_until == 0 then
    if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DEL', KEYS[1]) end
    return 'none'
  end
  if is_probe then
    redis.call('DEL', KEYS[1])
    return 'closed'
  end
  return 'none'
end
if is_probe then
  redis.call('HSET', KEYS[1], 'opened_until', now + tonumber(ARGV[5]), 'probe_until', 0)
  return 'reopened'
end
local until_ms = now + tonumber(ARGV[5])
if opened_until > 0 then
  if ARGV[6] == '1' and until_ms > opened_until then
    redis.call('HSET', KEYS[1], 'opened_until', until_ms)
    return 'extended'
  end
  return 'none'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[4]) or ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'opened_until', now + tonumber(ARGV[5]), 'probe_until', 0)
  return 'opened'
end
return 'none'
"""


def _now_ms() -> int:
    """Wall-clock milliseconds since the epoch: shared meaning across processes and hosts."""
    return int(time.time() * 1000)


def _redis():
    """The Redis client of the ``default`` cache (django-redis), where the breaker keeps its state."""
    return get_redis_connection("default")


@dataclass(frozen=True)
class Permit:
    """The answer of :meth:`CircuitBreaker.acquire`.

    ``allowed``: the caller may make the HTTP call. ``is_probe``: this call is the single half-open
    probe; the caller must report its outcome (and should not retry it). ``retry_after_ms``: when
    refused, how long until asking again makes sense. ``degraded``: Redis was unreachable and the
    call is allowed without protection. ``clean``: the circuit was closed with no failure counted, so
    a success has nothing to reset (:meth:`CircuitBreaker.record_success` makes no round trip).
    """

    allowed: bool
    is_probe: bool = False
    retry_after_ms: int = 0
    degraded: bool = False
    clean: bool = field(default=False, compare=False)


class CircuitBreaker:
    """A named breaker; instances hold no state of their own, so one per process is enough."""

    def __init__(self, name: str = "send_api") -> None:
        self.name = name
        self.key = f"messenger:circuit:{name}"
        self._scripts_lock = threading.Lock()
        self._scripts: tuple[object, object, object] | None = None  # (client, acquire, record)
        self._redis_down_until = 0.0  # time.monotonic() before which Redis is not asked

    # --- public API -------------------------------------------------------------------------
    def acquire(self) -> Permit:
        """Ask whether a call may go out now. Never raises; fails open when Redis is down."""
        if self._redis_known_down():
            return Permit(allowed=True, degraded=True)
        try:
            client, acquire_script, _ = self._bound_scripts()
            allowed, is_probe, retry_after, *clean = acquire_script(
                keys=[self.key], args=[_now_ms(), self._probe_lease_ms()], client=client
            )
        except RedisError as exc:
            self._redis_unavailable("acquire", exc)
            return Permit(allowed=True, degraded=True)
        clean = bool(clean and clean[0])
        permit = Permit(allowed=bool(allowed), is_probe=bool(is_probe), retry_after_ms=int(retry_after), clean=clean)
        if permit.is_probe:
            logger.info("messenger.circuit.probe", extra={"circuit": self.name})
        return permit

    def record_success(self, permit: Permit) -> str:
        """Report a call that reached the API and was answered; returns the transition name.

        A permit given by a clean circuit (no failure counted) records nothing: the usual send costs
        one round trip to the breaker, not two. A failure another process counted since stays
        counted until a success admitted after it: the count errs towards opening, never closing.
        """
        if permit.clean and not permit.is_probe:
            return "none"
        return self._record(permit, "success")

    def record_failure(self, permit: Permit, *, cooldown_ms: int | None = None) -> str:
        """Report an API failure (transient, rate limit, auth); returns the transition name.

        ``"opened"``, ``"reopened"`` or ``"extended"`` tell the caller the circuit is now open: stop
        retrying. ``cooldown_ms`` (Facebook said how long to wait: ``messenger.usage``) opens the
        circuit at once for that long, whatever the count, or pushes the end of an open circuit
        later (never earlier); ``None`` is the usual count and ``MESSENGER_CIRCUIT_COOLDOWN_MS``.
        """
        return self._record(permit, "failure", cooldown_ms=cooldown_ms)

    def opened_until_ms(self) -> int:
        """When the open circuit lets a probe through (epoch ms; 0 when closed or Redis unreadable)."""
        return self._read_count("opened_until", what="opened_until")

    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``; ``"unknown"`` when Redis cannot be read."""
        if self._redis_known_down():
            return UNKNOWN
        try:
            opened_until = _redis().hget(self.key, "opened_until")
        except RedisError as exc:
            self._redis_unavailable("state", exc)
            return UNKNOWN
        opened_until = int(opened_until or 0)
        if opened_until == 0:
            return CLOSED
        return OPEN if _now_ms() < opened_until else HALF_OPEN

    def failure_count(self) -> int:
        """Consecutive API failures counted so far (0 when Redis cannot be read)."""
        return self._read_count("failures", what="failure_count")

    def _read_count(self, field: str, *, what: str) -> int:
        """A number kept in the circuit's hash, 0 when absent or when Redis cannot be read (logged as ``what``)."""
        try:
            return int(_redis().hget(self.key, field) or 0)
        except RedisError as exc:
            self._redis_unavailable(what, exc)
            return 0

    def reset(self) -> None:
        """Close the circuit and forget the count (tests; an operator after fixing the cause)."""
        self._redis_down_until = 0.0
        try:
            _redis().delete(self.key)
        except RedisError as exc:
            self._redis_unavailable("reset", exc)

    # --- internals --------------------------------------------------------------------------
    def _record(self, permit: Permit, outcome: str, *, cooldown_ms: int | None = None) -> str:
        if permit.degraded or self._redis_known_down():
            return "none"  # Redis was down when the call was admitted; nothing to keep consistent
        threshold = max(1, int(settings.MESSENGER_CIRCUIT_FAILURE_THRESHOLD))
        open_now = cooldown_ms is not None
        cooldown_ms = max(0, int(settings.MESSENGER_CIRCUIT_COOLDOWN_MS if cooldown_ms is None else cooldown_ms))
        try:
            client, _, record_script = self._bound_scripts()
            raw = record_script(
                keys=[self.key],
                args=[_now_ms(), outcome, int(permit.is_probe), threshold, cooldown_ms, int(open_now)],
                client=client,
            )
        except RedisError as exc:
            self._redis_unavailable(f"record_{outcome}", exc)
            return "none"
        transition = raw.decode() if isinstance(raw, bytes) else str(raw)
        context = {"circuit": self.name, "threshold": threshold, "cooldown_ms": cooldown_ms}
        if transition == "opened":
            logger.error("messenger.circuit.opened", extra=context)
        elif transition in ("reopened", "extended"):
            logger.warning(f"messenger.circuit.{transition}", extra=context)
        elif transition == "closed":
            logger.warning("messenger.circuit.closed", extra=context)
        return transition

    def _bound_scripts(self):
        client = _redis()
        scripts = self._scripts
        if scripts is None or scripts[0] is not client:
            with self._scripts_lock:
                # register_script only hashes the source; EVALSHA falls back to EVAL when needed.
                scripts = (client, client.register_script(_ACQUIRE_LUA), client.register_script(_RECORD_LUA))
                self._scripts = scripts
        return scripts

    @staticmethod
    def _probe_lease_ms() -> int:
        return max(1000, 2 * int(settings.MESSENGER_SEND_TIMEOUT_MS))

    def _redis_known_down(self) -> bool:
        return time.monotonic() < self._redis_down_until

    def _redis_unavailable(self, operation: str, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + REDIS_DOWN_BACKOFF_S
        logger.error(
            "messenger.circuit.redis-unavailable",
            extra={"circuit": self.name, "operation": operation, "error": type(exc).__name__},
        )


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_name(*, page_id: str = "") -> str:
    """``send_api`` for a send with no page (the one-page setup before pages), ``send_api:<page id>`` else."""
    return f"send_api:{page_id}" if page_id else "send_api"


def get_breaker(*, page_id: str = "") -> CircuitBreaker:
    """The process-wide breaker of ``page_id``'s Send API calls (state in Redis, shared by all processes).

    One circuit per page: Facebook counts rate limits per page, and one page's throttling or dead
    token must not stop the others. Each page's transitions are the same atomic Lua scripts.
    """
    name = breaker_name(page_id=page_id)
    breaker = _breakers.get(name)
    if breaker is None:
        with _breakers_lock:
            breaker = _breakers.setdefault(name, CircuitBreaker(name))
    return breaker


def circuit_pages() -> list[str]:
    """Page ids whose circuit has state in Redis now (counting failures, open or half-open), sorted.

    A closed circuit with no failure has no key, so this lists the pages worth reporting beyond the
    configured ones (``/metrics``). Raises ``RedisError`` (the caller reports Redis as down).
    """
    prefix = "messenger:circuit:send_api:"  # breaker_name() of a page, under CircuitBreaker's key
    pages = set()
    for key in _redis().scan_iter(match=prefix + "*", count=100):
        key = key.decode() if isinstance(key, bytes) else str(key)
        pages.add(key[len(prefix):])
    return sorted(pages)
