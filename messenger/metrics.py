"""``/metrics``: the channel's numbers in the Prometheus text format, for a scraper with the token.

Nothing is counted in this process's memory. Every scrape builds the families afresh from where the
numbers already live, so whichever gunicorn worker answers the scrape, and whatever rq's forked work
horses did, the answer is the same (docs/operating.md says why prometheus-client's multiprocess
mode does not fit a fork-per-job worker):

- the database: inbox rows by page and status, one ``GROUP BY`` query (gauges: rows come and go);
- rq's Redis keys: each channel queue's length and its started, failed, scheduled and deferred
  registries (gauges; counted with ``LLEN``/``ZCARD`` in one pipelined round trip per queue, without
  rq's registry cleanup, so a scrape never writes);
- the circuit breakers' Redis hashes (:mod:`messenger.circuit`, one circuit per page): each page's
  state as a 1/0 gauge per state, and its consecutive-failure count; the pages reported are the
  configured ones (``messenger.pages``) and any other whose circuit has state (the one-page setup
  without ``MESSENGER_PAGE_ID`` serves pages it cannot list); ``default`` is a send with no page;
- the Redis counters of :mod:`observability.metrics`: send outcomes, webhook answers, reply latency.

A source that fails (database or Redis) leaves its families out and sets
``messenger_metrics_source_up{source=...}`` to 0 instead of failing the scrape, so the other numbers
still arrive and an alert can name the source.

Access: ``Authorization: Bearer <METRICS_TOKEN>``. Unset token: 404, as if the route did not exist.
No or malformed header: 401 with ``WWW-Authenticate``. Wrong token: 403. The token is compared in
constant time and never logged, nor is the header.
"""

from __future__ import annotations

import hmac
import logging
from collections import defaultdict

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from messenger.circuit import CLOSED, HALF_OPEN, OPEN, UNKNOWN, circuit_pages, get_breaker
from messenger.models import InboundMessage
from messenger.pages import pages_configured
from messenger.queues import channel_queue_names, get_queue
from messenger.send_api import SendErrorKind
from observability.metrics import counter_families, counters_read

logger = logging.getLogger("messenger.metrics")

DEFAULT_PAGE_LABEL = "default"
CIRCUIT_STATES = (CLOSED, OPEN, HALF_OPEN, UNKNOWN)
# (label, registry attribute of rq.Queue); the queue's own length is "queued".
QUEUE_REGISTRIES = (
    ("started", "started_job_registry"),
    ("failed", "failed_job_registry"),
    ("scheduled", "scheduled_job_registry"),
    ("deferred", "deferred_job_registry"),
)
# Besides SendError's kinds, the pipeline reports ``window_closed`` when it gives up on a message
# whose 24-hour messaging window would close before the next try.
KNOWN_SEND_OUTCOMES = (*(kind.value for kind in SendErrorKind), "window_closed")


def configured_page_label() -> str:
    """The page whose token the Send API uses today (one circuit for it), or ``"default"``."""
    return getattr(settings, "MESSENGER_PAGE_ID", "") or DEFAULT_PAGE_LABEL


def inbox_families() -> list[Metric]:
    """Inbox rows by page and status, every status listed (0 when none) for every page seen."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    rows = InboundMessage.objects.values_list("page_id", "status").annotate(n=Count("id")).order_by()
    for page_id, status, n in rows:
        counts[page_id or DEFAULT_PAGE_LABEL][status] = n
    if not counts:
        counts[configured_page_label()] = {}
    family = GaugeMetricFamily(
        "messenger_inbox_messages",
        "Inbound messages kept in the inbox, by page and status (retention prunes old rows).",
        labels=["page", "status"],
    )
    for page in sorted(counts):
        for status in InboundMessage.Status.values:
            family.add_metric([page, status], counts[page].get(status, 0))
    return [family]


def queue_families() -> list[Metric]:
    """Each channel queue's length and its rq registries, read without rq's cleanup (no writes)."""
    family = GaugeMetricFamily(
        "messenger_queue_jobs",
        "Jobs of each channel rq queue: waiting (queued) and in each registry.",
        labels=["queue", "state"],
    )
    for name in channel_queue_names():
        queue = get_queue(name)
        pipe = queue.connection.pipeline(transaction=False)
        pipe.llen(queue.key)
        for _label, attribute in QUEUE_REGISTRIES:
            pipe.zcard(getattr(queue, attribute).key)
        queued, *registered = pipe.execute()
        family.add_metric([name, "queued"], queued)
        for (label, _attribute), count in zip(QUEUE_REGISTRIES, registered, strict=True):
            family.add_metric([name, label], count)
    return [family]


def _circuit_page_ids() -> list[str]:
    """The pages whose circuit is reported: configured ones, and any other with a circuit in Redis."""
    try:
        configured = {page.page_id for page in pages_configured()}
    except DatabaseError:
        configured = set()  # the database's own family reports it down; report the env page at least
    configured.add(getattr(settings, "MESSENGER_PAGE_ID", ""))
    return sorted(configured | set(circuit_pages()))


def circuit_families() -> list[Metric]:
    """Each page's Send API circuit: 1 for its current state, 0 for the others; its failure count."""
    state = GaugeMetricFamily(
        "messenger_circuit_state",
        "State of the Send API circuit breaker per page (1 = current; unknown = Redis unreadable).",
        labels=["page", "state"],
    )
    failures = GaugeMetricFamily(
        "messenger_circuit_failures",
        "Consecutive Send API failures counted by the circuit breaker per page.",
        labels=["page"],
    )
    for page_id in _circuit_page_ids():
        breaker = get_breaker(page_id=page_id)
        page = page_id or DEFAULT_PAGE_LABEL
        current = breaker.state()
        for name in CIRCUIT_STATES:
            state.add_metric([page, name], 1 if name == current else 0)
        failures.add_metric([page], breaker.failure_count())
    return [state, failures]


class ChannelCollector(Collector):
    """Builds every family at scrape time from the database, rq's keys and the Redis counters."""

    def collect(self):
        families: list[Metric] = []
        up = {"database": 1, "redis": 1}
        try:
            families += inbox_families()
        except DatabaseError as exc:
            up["database"] = 0
            logger.warning("messenger.metrics.source-down", extra={"source": "database",
                                                                    "error": type(exc).__name__})
        try:
            families += queue_families()
            families += circuit_families()
            families += counter_families(counters_read(), known_outcomes=KNOWN_SEND_OUTCOMES)
        except RedisError as exc:
            up["redis"] = 0
            logger.warning("messenger.metrics.source-down", extra={"source": "redis",
                                                                    "error": type(exc).__name__})
        source_up = GaugeMetricFamily(
            "messenger_metrics_source_up",
            "1 when the source answered this scrape, 0 when its metrics are missing from it.",
            labels=["source"],
        )
        for source, value in up.items():
            source_up.add_metric([source], value)
        yield from families
        yield source_up


# A registry of its own: the default one would add this gunicorn worker's process and GC metrics,
# which describe whichever worker answered the scrape, not the service.
registry = CollectorRegistry(auto_describe=False)
registry.register(ChannelCollector())


def _plain(status: int, text: str, **headers: str) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name] = value
    return response


def _bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), or None."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


@require_GET
def metrics_view(request):
    """The Prometheus text exposition, for a caller with the bearer token (contract: /metrics)."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return _plain(404, "not found")
    given = _bearer(request.headers.get("Authorization", ""))
    if given is None:
        logger.warning("messenger.metrics.unauthenticated")
        return _plain(401, "bearer token required", **{"WWW-Authenticate": 'Bearer realm="metrics"'})
    if not hmac.compare_digest(given.encode(), expected.encode()):
        logger.warning("messenger.metrics.forbidden")
        return _plain(403, "forbidden")
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
