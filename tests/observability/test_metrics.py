"""Tests for observability/metrics.py: the Redis counters behind /metrics, their families, never raising."""

from __future__ import annotations

import logging
import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError

from observability import metrics

ALL_BOUNDS = ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "15.0", "30.0", "60.0", "+Inf"]


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    """No back-off or rate-limit state left over from another test."""
    monkeypatch.setattr(metrics, "_redis_down_until", 0.0)
    monkeypatch.setattr(metrics, "_next_failure_log", 0.0)
    monkeypatch.setattr(metrics, "_failures_unlogged", 0)


@pytest.fixture
def redis_down(monkeypatch):
    """Every Redis call of the module fails; ``redis_down.calls`` counts the attempts."""

    class Down:
        calls = 0

        def __call__(self):
            self.calls += 1
            raise RedisConnectionError("Redis is down")

    down = Down()
    monkeypatch.setattr(metrics, "_redis", down)
    return down


def cumulative(**per_bound: int) -> list[tuple[str, int]]:
    """The cumulative buckets for ``per_bound`` observations (keys like ``b0_25`` for "0.25")."""
    counts = {key[1:].replace("_", "."): value for key, value in per_bound.items()}
    running, out = 0, []
    for bound in ALL_BOUNDS:
        running += counts.get(bound, 0)
        out.append((bound, running))
    return out


def test_reply_sent_count_puts_latency_in_its_bucket():
    """0.12 s lands in the 0.25 bucket: cumulative 0 below it, 1 from it up; sum 0.12, count 1."""
    assert metrics.reply_sent_count(latency_s=0.12) is True

    snapshot = metrics.counters_read()

    assert snapshot.send_outcomes == {"ok": 1}
    assert snapshot.latency_buckets == cumulative(b0_25=1)
    assert snapshot.latency_count == 1
    assert math.isclose(snapshot.latency_sum, 0.12)


def test_reply_latency_on_a_bound_counts_in_that_bucket():
    """Prometheus' ``le`` is inclusive: exactly 1.0 s counts in the 1.0 bucket, 61 s only in +Inf."""
    metrics.reply_sent_count(latency_s=1.0)
    metrics.reply_sent_count(latency_s=61.0)

    snapshot = metrics.counters_read()

    assert snapshot.latency_buckets == cumulative(b1_0=1, **{"b+Inf": 1})
    assert math.isclose(snapshot.latency_sum, 62.0)


def test_reply_latency_negative_counts_as_zero_and_missing_is_not_observed():
    """Clock skew (negative) counts as 0 s; no latency (None, NaN) still counts the reply as ok."""
    metrics.reply_sent_count(latency_s=-3.0)
    metrics.reply_sent_count(latency_s=None)
    metrics.reply_sent_count(latency_s=float("nan"))

    snapshot = metrics.counters_read()

    assert snapshot.send_outcomes == {"ok": 3}
    assert snapshot.latency_buckets == cumulative(b0_05=1)
    assert snapshot.latency_sum == 0.0


def test_send_failure_count_by_error_class():
    """Each failure counts under its class; a label that is not an identifier counts as "other"."""
    metrics.send_failure_count(error_kind="auth")
    metrics.send_failure_count(error_kind="auth")
    metrics.send_failure_count(error_kind="rate_limited")
    metrics.send_failure_count(error_kind="Weird kind! {}")

    assert metrics.counters_read().send_outcomes == {"auth": 2, "rate_limited": 1, "other": 1}


def test_webhook_answer_count_by_method_and_status():
    """Answers are counted per (method, status); odd methods and statuses are folded, not kept."""
    metrics.webhook_answer_count(method="POST", status=200)
    metrics.webhook_answer_count(method="post", status=200)
    metrics.webhook_answer_count(method="GET", status=403)
    metrics.webhook_answer_count(method="BREW", status=999)

    assert metrics.counters_read().webhook_answers == {
        ("POST", "200"): 2,
        ("GET", "403"): 1,
        ("OTHER", "0"): 1,
    }


def test_webhook_answer_goes_in_a_pipeline_of_the_counters_redis():
    """A pipeline on the counters' own Redis carries the count; it is counted when that pipeline runs."""
    pipeline = metrics._redis().pipeline()

    assert metrics.webhook_answer_count_on(pipeline, method="POST", status=200) is True
    assert metrics.counters_read().webhook_answers == {}
    pipeline.execute()
    assert metrics.counters_read().webhook_answers == {("POST", "200"): 1}


def test_webhook_answer_stays_out_of_a_pipeline_of_another_redis_database():
    """Another database (or server) would count in the wrong place: the caller counts on its own."""
    import redis

    kwargs = metrics._redis().connection_pool.connection_kwargs
    other = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=(int(kwargs["db"]) + 1) % 16 or 1)

    assert metrics.webhook_answer_count_on(other.pipeline(), method="POST", status=200) is False
    other.close()


def test_counter_families_parse_with_known_outcomes_at_zero():
    """The families render as Prometheus text whose parser gives back the exact counts."""
    metrics.reply_sent_count(latency_s=0.12)
    metrics.send_failure_count(error_kind="transient")
    metrics.webhook_answer_count(method="POST", status=200)

    class Snapshot:
        def collect(self):
            return metrics.counter_families(metrics.counters_read(), known_outcomes=["auth", "transient"])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }

    assert samples[("messenger_send_outcomes_total", (("outcome", "ok"),))] == 1
    assert samples[("messenger_send_outcomes_total", (("outcome", "transient"),))] == 1
    assert samples[("messenger_send_outcomes_total", (("outcome", "auth"),))] == 0
    assert samples[("messenger_webhook_answers_total", (("method", "POST"), ("status", "200")))] == 1
    assert samples[("messenger_reply_latency_seconds_bucket", (("le", "0.1"),))] == 0
    assert samples[("messenger_reply_latency_seconds_bucket", (("le", "0.25"),))] == 1
    assert samples[("messenger_reply_latency_seconds_count", ())] == 1


def test_counter_writes_with_redis_down_never_raise(redis_down):
    """Redis down: every write returns False instead of raising."""
    assert metrics.reply_sent_count(latency_s=0.1) is False
    assert metrics.send_failure_count(error_kind="auth") is False
    assert metrics.webhook_answer_count(method="POST", status=200) is False


def test_counter_writes_with_redis_down_back_off_and_log_once(redis_down, caplog):
    """After one failure Redis is left alone for a while, and the failure is logged once, at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="observability.metrics")
    for _ in range(5):
        metrics.webhook_answer_count(method="POST", status=200)

    assert redis_down.calls == 1
    failures = [r for r in caplog.records if r.getMessage() == "observability.metrics.write-failed"]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG
    assert failures[0].error == "ConnectionError"


def test_counter_write_failures_are_rate_limited_past_the_back_off(redis_down, caplog, monkeypatch):
    """Failures after the back-off, within a minute of the last log, are counted into the next log."""
    caplog.set_level(logging.DEBUG, logger="observability.metrics")
    metrics.send_failure_count(error_kind="auth")
    monkeypatch.setattr(metrics, "_redis_down_until", 0.0)
    metrics.send_failure_count(error_kind="auth")
    monkeypatch.setattr(metrics, "_redis_down_until", 0.0)
    monkeypatch.setattr(metrics, "_next_failure_log", 0.0)
    metrics.send_failure_count(error_kind="auth")

    failures = [r for r in caplog.records if r.getMessage() == "observability.metrics.write-failed"]
    assert redis_down.calls == 3
    assert [r.failures for r in failures] == [1, 2]


def test_counters_read_with_redis_down_raises(redis_down):
    """Reading is the scrape's business: it raises, and the collector reports the source down."""
    with pytest.raises(RedisConnectionError):
        metrics.counters_read()
