"""``/metrics``: the bearer token, and exact samples from the database, rq, the circuit and the counters."""

from __future__ import annotations

import logging
import math

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.job import Job

from messenger import metrics as channel_metrics
from messenger.circuit import get_breaker
from messenger.models import InboundMessage
from messenger.queues import get_queue
from observability import metrics as counters
from observability import signals
from tests.conftest import sign
from tests.observability.helpers import make_inbound

URL = "/metrics"
TOKEN = "scrape-token-7f3a9c1e5b2d"
PAGE = "1122334455667788"
pytestmark = pytest.mark.django_db


def noop() -> None:
    """A job body for the queue tests; never run."""


@pytest.fixture(autouse=True)
def _token_and_fresh_state(monkeypatch):
    """The token set, and no Redis back-off left over from a test that stopped Redis."""
    monkeypatch.setattr(counters, "_redis_down_until", 0.0)
    get_breaker().reset()
    with override_settings(METRICS_TOKEN=TOKEN):
        yield


def scrape(client) -> dict[str, dict[tuple, float]]:
    """GET /metrics with the token; ``{sample name: {sorted label items: value}}``."""
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by(samples: dict[tuple, float], label: str) -> dict[str, float]:
    """One label's value -> sample value, for samples that differ only by that label."""
    return {dict(key)[label]: value for key, value in samples.items()}


# --- access -----------------------------------------------------------------------------------------


@override_settings(METRICS_TOKEN="")
def test_metrics_without_configured_token_is_not_found(client):
    """METRICS_TOKEN unset: the endpoint is off, even for a caller that sends a token."""
    assert client.get(URL).status_code == 404
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", f"Basic {TOKEN}", TOKEN])
def test_metrics_without_bearer_header_is_unauthorized(client, header):
    """No header, or not a Bearer credential: 401 with a WWW-Authenticate challenge, no metrics."""
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = client.get(URL, **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"messenger_" not in response.content


@pytest.mark.parametrize("given", ["wrong-token", TOKEN[:-1], TOKEN + "x", TOKEN.upper()])
def test_metrics_with_wrong_token_is_forbidden(client, given):
    """A Bearer credential that is not the token: 403, no metrics."""
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {given}")
    assert response.status_code == 403
    assert b"messenger_" not in response.content


def test_metrics_with_token_answers_prometheus_text(client):
    """The right token (scheme in any case): 200, Prometheus' content type, text its parser reads."""
    response = client.get(URL, HTTP_AUTHORIZATION=f"bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert names == {
        "messenger_inbox_messages",
        "messenger_queue_jobs",
        "messenger_circuit_state",
        "messenger_circuit_failures",
        "messenger_send_outcomes",
        "messenger_webhook_answers",
        "messenger_reply_latency_seconds",
        "messenger_metrics_source_up",
    }


def test_metrics_post_is_not_allowed(client):
    """Only GET: a POST with the token gets 405."""
    assert client.post(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_metrics_token_is_never_logged(client, caplog):
    """Neither the token nor a wrong one sent as a Bearer credential reaches a log record."""
    caplog.set_level(logging.DEBUG)
    client.get(URL)
    client.get(URL, HTTP_AUTHORIZATION="Bearer wrong-token-5521")
    client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert caplog.records, "the refusals are logged"
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert TOKEN not in text
        assert "wrong-token-5521" not in text


# --- what it reports ----------------------------------------------------------------------------------


def test_metrics_inbox_rows_by_page_and_status_are_exact(client):
    """Two answered rows and one failed on page P: exactly those, every other status of P at 0."""
    make_inbound(page_id=PAGE, status=InboundMessage.Status.ANSWERED)
    make_inbound(page_id=PAGE, status=InboundMessage.Status.ANSWERED)
    make_inbound(page_id=PAGE, status=InboundMessage.Status.FAILED)

    inbox = scrape(client)["messenger_inbox_messages"]

    expected = {status: 0.0 for status in InboundMessage.Status.values}
    expected.update({"answered": 2.0, "failed": 1.0})
    assert {dict(key)["page"] for key in inbox} == {PAGE}
    assert by(inbox, "status") == expected


def test_metrics_inbox_rows_are_per_page(client):
    """Rows of two pages are reported under each page's label."""
    make_inbound(page_id="111111", status=InboundMessage.Status.QUEUED)
    make_inbound(page_id="222222", status=InboundMessage.Status.ANSWERED)

    inbox = scrape(client)["messenger_inbox_messages"]

    assert inbox[(("page", "111111"), ("status", "queued"))] == 1.0
    assert inbox[(("page", "111111"), ("status", "answered"))] == 0.0
    assert inbox[(("page", "222222"), ("status", "answered"))] == 1.0


def test_metrics_queue_jobs_count_queue_and_registries(client):
    """Two jobs waiting on messenger_fast and one in its failed registry; messenger_slow empty."""
    fast = get_queue("messenger_fast")
    fast.enqueue(noop)
    fast.enqueue(noop)
    failed = Job.create(noop, connection=fast.connection, origin=fast.name)
    failed.save()
    fast.failed_job_registry.add(failed, ttl=3600)

    jobs = scrape(client)["messenger_queue_jobs"]

    states = ("queued", "started", "failed", "scheduled", "deferred")
    expected = {("messenger_fast", s): 0.0 for s in states} | {("messenger_slow", s): 0.0 for s in states}
    expected[("messenger_fast", "queued")] = 2.0
    expected[("messenger_fast", "failed")] = 1.0
    assert {(dict(k)["queue"], dict(k)["state"]): v for k, v in jobs.items()} == expected


def test_metrics_circuit_closed_under_default_page(client):
    """No MESSENGER_PAGE_ID configured: the one circuit is reported as page "default", closed."""
    samples = scrape(client)
    assert by(samples["messenger_circuit_state"], "state") == {
        "closed": 1.0, "open": 0.0, "half_open": 0.0, "unknown": 0.0,
    }
    assert samples["messenger_circuit_failures"] == {(("page", "default"),): 0.0}
    assert {dict(key)["page"] for key in samples["messenger_circuit_state"]} == {"default"}


@override_settings(MESSENGER_PAGE_ID=PAGE, MESSENGER_CIRCUIT_FAILURE_THRESHOLD=2,
                   MESSENGER_CIRCUIT_COOLDOWN_MS=60_000)
def test_metrics_circuit_open_under_configured_page(client):
    """Two failures trip a threshold of 2: the configured page's circuit reads open, 2 failures."""
    breaker = get_breaker(page_id=PAGE)
    for _ in range(2):
        breaker.record_failure(breaker.acquire())

    samples = scrape(client)

    assert samples["messenger_circuit_state"][(("page", PAGE), ("state", "open"))] == 1.0
    assert samples["messenger_circuit_state"][(("page", PAGE), ("state", "closed"))] == 0.0
    assert samples["messenger_circuit_failures"] == {(("page", PAGE),): 2.0}


@override_settings(MESSENGER_PAGE_ID="", MESSENGER_CIRCUIT_FAILURE_THRESHOLD=1)
def test_metrics_circuit_per_page_each_page_its_own_state(client):
    """Two pages: one page's open circuit is reported under it; the other page's stays closed."""
    from messenger.pages import page_add

    page_add(page_id="111111", name="A", token="EAAtokenA")
    page_add(page_id="222222", name="B", token="EAAtokenB")
    breaker = get_breaker(page_id="222222")
    breaker.record_failure(breaker.acquire())

    states = scrape(client)["messenger_circuit_state"]

    assert states[(("page", "111111"), ("state", "closed"))] == 1.0
    assert states[(("page", "222222"), ("state", "open"))] == 1.0
    assert states[(("page", "default"), ("state", "closed"))] == 1.0


def test_metrics_send_outcomes_count_each_class(client):
    """One reply sent and two auth failures: ok 1, auth 2, every other class at 0."""
    inbound = make_inbound()
    signals.send_safely(signals.response_sent, sender="tests", inbound=inbound, part_count=1,
                        latency_ms=30.0, end_to_end_ms=120.0, since_receipt_ms=90.0)
    for _ in range(2):
        signals.send_safely(signals.send_failed, sender="tests", inbound=inbound, error_kind="auth",
                            error_code=190, latency_ms=10.0)

    outcomes = by(scrape(client)["messenger_send_outcomes_total"], "outcome")

    expected = dict.fromkeys(channel_metrics.KNOWN_SEND_OUTCOMES, 0.0) | {"ok": 1.0, "auth": 2.0}
    assert outcomes == expected


def test_metrics_reply_latency_histogram_counts_one_reply(client):
    """One reply with end_to_end_ms=120: 0 in the buckets up to 0.1 s, 1 from 0.25 s up; sum 0.12."""
    signals.send_safely(signals.response_sent, sender="tests", inbound=make_inbound(), part_count=1,
                        latency_ms=30.0, end_to_end_ms=120.0, since_receipt_ms=90.0)

    samples = scrape(client)

    buckets = by(samples["messenger_reply_latency_seconds_bucket"], "le")
    assert buckets == {
        "0.05": 0.0, "0.1": 0.0, "0.25": 1.0, "0.5": 1.0, "1.0": 1.0, "2.5": 1.0, "5.0": 1.0,
        "10.0": 1.0, "15.0": 1.0, "30.0": 1.0, "60.0": 1.0, "+Inf": 1.0,
    }
    assert samples["messenger_reply_latency_seconds_count"] == {(): 1.0}
    assert math.isclose(samples["messenger_reply_latency_seconds_sum"][()], 0.12)


def test_metrics_webhook_answers_count_each_status(client, post_webhook):
    """A POST with a bad signature (403) and a good one (200): exactly one of each."""
    body = b'{"object": "page", "entry": []}'
    assert post_webhook(body, signature=sign(body, "not-the-secret")).status_code == 403
    assert post_webhook(body).status_code == 200

    answers = scrape(client)["messenger_webhook_answers_total"]

    assert answers == {
        (("method", "POST"), ("status", "200")): 1.0,
        (("method", "POST"), ("status", "403")): 1.0,
    }


def test_metrics_webhook_answers_count_verification(client):
    """The verification GET is counted too: a refused one as GET 403."""
    client.get("/messenger/v2/webhook", {"hub.mode": "subscribe", "hub.verify_token": "no"})
    answers = scrape(client)["messenger_webhook_answers_total"]
    assert answers == {(("method", "GET"), ("status", "403")): 1.0}


def test_webhook_answers_when_redis_counter_fails(post_webhook, monkeypatch):
    """A counter write that fails leaves the webhook's answer unchanged."""

    def down():
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(counters, "_redis", down)
    body = b'{"object": "page", "entry": []}'
    assert post_webhook(body).status_code == 200
    assert post_webhook(body, signature="sha256=00").status_code == 403


def test_metrics_without_redis_still_report_the_database(client, monkeypatch):
    """Redis failing mid-scrape: 200, the inbox rows still there, source_up names redis as 0."""
    make_inbound(page_id=PAGE, status=InboundMessage.Status.ANSWERED)

    def down(*args, **kwargs):
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(channel_metrics, "queue_families", down)

    samples = scrape(client)

    assert samples["messenger_inbox_messages"][(("page", PAGE), ("status", "answered"))] == 1.0
    assert by(samples["messenger_metrics_source_up"], "source") == {"database": 1.0, "redis": 0.0}
    assert "messenger_queue_jobs" not in samples
    assert "messenger_send_outcomes_total" not in samples


def test_metrics_without_database_still_report_redis(client, monkeypatch):
    """The inbox query failing: 200, the Redis-backed families there, source_up names the database."""
    from django.db import OperationalError

    def down():
        raise OperationalError("connection refused")

    monkeypatch.setattr(channel_metrics, "inbox_families", down)

    samples = scrape(client)

    assert "messenger_inbox_messages" not in samples
    assert "messenger_queue_jobs" in samples
    assert by(samples["messenger_metrics_source_up"], "source") == {"database": 0.0, "redis": 1.0}


def test_django_rq_metrics_stay_staff_only(client):
    """prometheus-client also turns on django-rq's /django-rq/metrics: without staff or RQ_API_TOKEN, 401."""
    response = client.get("/django-rq/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 401
    assert b"rq_jobs" not in response.content
