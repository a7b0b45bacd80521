"""Counters for ``/metrics`` that many processes add to: kept in Redis, turned into metric families at
scrape time.

Why Redis and not prometheus-client's own ``Counter``/``Histogram`` objects: those live in the memory
of the process that increments them. Here the events happen in several gunicorn workers and in rq
work horses, and rq's default worker forks one horse per job, so a horse's counts die with it when
the job ends. prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) answers that with
one mmap file per process id, which a fork-per-job worker turns into one new file per job: the
directory grows without bound, every scrape reads all of it, ``mark_process_dead`` must be called
from a hook rq does not have, and the files are per host while our processes are not. Redis is
already shared by every process on every host, and one ``HINCRBY`` is atomic, so the counters here
are exact and monotonic whatever process increments them.

Keys (raw Redis keys in the ``default`` cache's Redis database, on a client of their own, no expiry;
only a ``FLUSHDB`` resets them, which a Prometheus ``rate()`` treats as a counter reset):

- :data:`SEND_OUTCOMES_KEY`: hash ``outcome -> count``; ``ok`` per reply sent, else the error class;
- :data:`WEBHOOK_ANSWERS_KEY`: hash ``"<METHOD> <status>" -> count``;
- :data:`REPLY_LATENCY_KEY`: hash of per-bucket (not cumulative) counts keyed by the bucket's upper
  bound (``"0.25"``, ..., ``"+Inf"``) plus ``sum`` (seconds, ``HINCRBYFLOAT``). The cumulative
  buckets and the count are derived at read time, so a scrape that lands between two writes can
  never show a count that disagrees with its ``+Inf`` bucket.

Writing (:func:`reply_sent_count`, :func:`send_failure_count`, :func:`webhook_answer_count`) costs
one round trip (the webhook's 200 none: :func:`webhook_answer_count_on` adds it to the transaction
that queues the message's job) (one ``HINCRBY``; a pipeline of three for a reply) and never raises: a counter must
not fail or hold up a request or a job. A failure is logged at DEBUG, at most once a minute per
process (a Redis outage is already loud in ``/healthz`` and the circuit breaker's logs), and Redis
is then left alone for :data:`REDIS_DOWN_BACKOFF_S`, so a dead Redis costs the webhook one failed
round trip in five seconds, not one per request. Counts made in that window are lost; the counters
undercount, never overcount.

Reading (:func:`counters_read`) raises ``RedisError``; the ``/metrics`` collector reports the source
as down instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from django.conf import settings
from django_redis import get_redis_connection
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("observability.metrics")

SEND_OUTCOMES_KEY = "observability:metrics:send_outcomes"
WEBHOOK_ANSWERS_KEY = "observability:metrics:webhook_answers"
REPLY_LATENCY_KEY = "observability:metrics:reply_latency"

OUTCOME_OK = "ok"
OUTCOME_OTHER = "other"
# Upper bounds, in seconds, of the reply-latency buckets. Replies normally take well under a
# second; 15 s is the processing timeout; past 60 s a reply waited for a retry or a closed circuit.
REPLY_LATENCY_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)
_INF = "+Inf"
_SUM = "sum"
_BUCKET_FIELDS = [floatToGoString(bound) for bound in REPLY_LATENCY_BUCKETS_S] + [_INF]
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Label values come from code (SendErrorKind and the like), but a label is a time series in
# Prometheus: anything that does not look like an identifier is counted as "other".
_LABEL_VALUE = re.compile(r"[a-z0-9_]{1,32}")

REDIS_DOWN_BACKOFF_S = 5.0
FAILURE_LOG_INTERVAL_S = 60.0

_state_lock = threading.Lock()
_redis_down_until = 0.0  # time.monotonic() before which writes skip Redis
_next_failure_log = 0.0  # time.monotonic() before which failures are counted, not logged
_failures_unlogged = 0


# Seconds a counter may wait on Redis (connect and each read), with no retry: a Redis that accepts
# connections but never answers must not hold the webhook's answer (issue 13) for the cache client's
# timeout twice over. A count that misses it is lost, as in an outage.
REDIS_TIMEOUT_S = 0.3
_clients: dict[str, redis.Redis] = {}


def _redis():
    """A client of the ``default`` cache's Redis (same URL and database; the keys are raw, unprefixed)
    with :data:`REDIS_TIMEOUT_S` timeouts and no retry; django-redis's own client when the cache's
    location is not one URL."""
    location = settings.CACHES["default"].get("LOCATION")
    if not isinstance(location, str) or "," in location:
        return get_redis_connection("default")
    client = _clients.get(location)
    if client is None:
        with _state_lock:
            client = _clients.setdefault(location, redis.Redis.from_url(
                location, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            ))
    return client


def _outcome_label(value: str) -> str:
    value = (value or "").strip().lower()
    return value if _LABEL_VALUE.fullmatch(value) else OUTCOME_OTHER


def _latency_field(seconds: float) -> str:
    """The bucket an observation falls in: the first bound it does not exceed (``le`` is inclusive)."""
    for bound, field in zip(REPLY_LATENCY_BUCKETS_S, _BUCKET_FIELDS, strict=False):
        if seconds <= bound:
            return field
    return _INF


def _write(operation: str, action: Callable[[object], object]) -> bool:
    """Run ``action`` on the Redis client (one round trip); False (never raises) on failure."""
    global _redis_down_until
    if time.monotonic() < _redis_down_until:
        return False
    try:
        action(_redis())
    except Exception as exc:  # noqa: BLE001 - a counter must never break a request or a job
        with _state_lock:
            _redis_down_until = time.monotonic() + REDIS_DOWN_BACKOFF_S
        _log_failure(operation, exc)
        return False
    return True


def _log_failure(operation: str, exc: Exception) -> None:
    """Log a failed write at DEBUG, at most once per :data:`FAILURE_LOG_INTERVAL_S` per process."""
    global _next_failure_log, _failures_unlogged
    now = time.monotonic()
    with _state_lock:
        _failures_unlogged += 1
        if now < _next_failure_log:
            return
        failures, _failures_unlogged = _failures_unlogged, 0
        _next_failure_log = now + FAILURE_LOG_INTERVAL_S
    logger.debug(
        "observability.metrics.write-failed",
        extra={"operation": operation, "error": type(exc).__name__, "failures": failures},
    )


def reply_sent_count(*, latency_s: float | None) -> bool:
    """Count one reply sent (outcome ``ok``) and, when known, its latency in the histogram.

    ``latency_s`` is the time from Facebook's event to the last part sent; negative values (clock
    skew between Facebook and us) count as 0. Returns whether Redis took the write.
    """
    seconds = None
    if latency_s is not None:
        try:
            seconds = float(latency_s)
        except (TypeError, ValueError):
            seconds = None
        # Checked before clamping: max(0.0, nan) is 0.0, which would count a bogus 0 s reply.
        seconds = max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None

    def write(client) -> None:
        if seconds is None:
            client.hincrby(SEND_OUTCOMES_KEY, OUTCOME_OK, 1)
            return
        # One round trip, no MULTI/EXEC: a histogram's count is derived from its buckets when read,
        # so a scrape between these commands can at worst see this reply's sum a moment early.
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(SEND_OUTCOMES_KEY, OUTCOME_OK, 1)
        pipe.hincrby(REPLY_LATENCY_KEY, _latency_field(seconds), 1)
        pipe.hincrbyfloat(REPLY_LATENCY_KEY, _SUM, seconds)
        pipe.execute()

    return _write("reply_sent", write)


def send_failure_count(*, error_kind: str) -> bool:
    """Count one send that failed, under its error class (``SendError``'s kind). Never raises."""
    label = _outcome_label(error_kind)
    return _write("send_failed", lambda client: client.hincrby(SEND_OUTCOMES_KEY, label, 1))


def _answer_field(method: str, status: int) -> str:
    method = (method or "").upper()
    method = method if method in HTTP_METHODS else "OTHER"
    try:
        code = int(status)
    except (TypeError, ValueError):
        code = 0
    code = code if 100 <= code <= 599 else 0
    return f"{method} {code}"


def webhook_answer_count(*, method: str, status: int) -> bool:
    """Count one answer of the webhook view, by HTTP method and status code. Never raises."""
    field = _answer_field(method, status)
    return _write("webhook_answer", lambda client: client.hincrby(WEBHOOK_ANSWERS_KEY, field, 1))


_SAME_SERVER_KEYS = ("host", "port", "path", "db", "username")


def webhook_answer_count_on(pipeline: redis.client.Pipeline, *, method: str, status: int) -> bool:
    """Add the count of one webhook answer to ``pipeline``, a Redis transaction the webhook sends
    anyway (its jobs' enqueue), so the count costs no round trip of its own. Only when ``pipeline``
    talks to the counters' own Redis server and database; returns whether the count was added (the
    caller counts with :func:`webhook_answer_count` otherwise, or when the pipeline fails). Never
    raises."""
    try:
        ours = _redis().connection_pool.connection_kwargs
        theirs = pipeline.connection_pool.connection_kwargs
        if any(ours.get(key) != theirs.get(key) for key in _SAME_SERVER_KEYS):
            return False
        pipeline.hincrby(WEBHOOK_ANSWERS_KEY, _answer_field(method, status), 1)
    except Exception as exc:  # noqa: BLE001 - a counter must never break a request
        _log_failure("webhook_answer", exc)
        return False
    return True


@dataclass(frozen=True)
class CounterSnapshot:
    """The Redis counters as read by one scrape."""

    send_outcomes: dict[str, int]
    webhook_answers: dict[tuple[str, str], int]  # (method, status) -> count
    latency_buckets: list[tuple[str, int]]  # cumulative, ``(upper bound, count)``, ending with +Inf
    latency_sum: float

    @property
    def latency_count(self) -> int:
        return self.latency_buckets[-1][1]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def counters_read() -> CounterSnapshot:
    """Read every counter in one round trip. Raises ``RedisError`` when Redis does not answer."""
    pipe = _redis().pipeline(transaction=True)
    pipe.hgetall(SEND_OUTCOMES_KEY)
    pipe.hgetall(WEBHOOK_ANSWERS_KEY)
    pipe.hgetall(REPLY_LATENCY_KEY)
    outcomes_raw, answers_raw, latency_raw = pipe.execute()

    outcomes = {_text(key): int(value) for key, value in outcomes_raw.items()}
    answers: dict[tuple[str, str], int] = {}
    for key, value in answers_raw.items():
        method, _, status = _text(key).partition(" ")
        answers[(method, status)] = int(value)
    latency = {_text(key): value for key, value in latency_raw.items()}
    buckets, running = [], 0
    for field in _BUCKET_FIELDS:
        running += int(latency.get(field, 0))
        buckets.append((field, running))
    return CounterSnapshot(
        send_outcomes=outcomes,
        webhook_answers=answers,
        latency_buckets=buckets,
        latency_sum=float(latency.get(_SUM, 0) or 0),
    )


def counter_families(snapshot: CounterSnapshot, *, known_outcomes: Iterable[str] = ()) -> list[Metric]:
    """The Prometheus families of ``snapshot``.

    ``known_outcomes`` are exposed at 0 until they first happen, so an alert on
    ``rate(...{outcome="auth"}[5m])`` has a series to work on from the start.
    """
    outcomes = CounterMetricFamily(
        "messenger_send_outcomes",
        "Replies sent (outcome=ok) and sends that failed, by error class.",
        labels=["outcome"],
    )
    counts = dict.fromkeys([OUTCOME_OK, *known_outcomes], 0)
    counts.update(snapshot.send_outcomes)
    for outcome in sorted(counts):
        outcomes.add_metric([outcome], counts[outcome])

    answers = CounterMetricFamily(
        "messenger_webhook_answers",
        "Answers of the V2 webhook (/messenger/v2/webhook), by HTTP method and status code.",
        labels=["method", "status"],
    )
    for (method, status), count in sorted(snapshot.webhook_answers.items()):
        answers.add_metric([method, status], count)

    latency = HistogramMetricFamily(
        "messenger_reply_latency_seconds",
        "Time from Facebook's event to the last part of its reply sent.",
        buckets=snapshot.latency_buckets,
        sum_value=snapshot.latency_sum,
    )
    return [outcomes, answers, latency]
