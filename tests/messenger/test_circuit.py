"""The Send API circuit breaker against the real Redis: opening, one probe, closing, failing open."""

from __future__ import annotations

import logging
import multiprocessing
import threading

import pytest
import redis
from django.test import override_settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from messenger import circuit
from messenger.circuit import CircuitBreaker, Permit, circuit_pages, get_breaker


@pytest.fixture
def breaker():
    """A fresh breaker with the contract defaults: threshold 5, cooldown 30 s."""
    with override_settings(
        MESSENGER_CIRCUIT_FAILURE_THRESHOLD=5,
        MESSENGER_CIRCUIT_COOLDOWN_MS=30_000,
        MESSENGER_SEND_TIMEOUT_MS=5000,
    ):
        yield CircuitBreaker("test")


def trip(breaker: CircuitBreaker, failures: int = 5) -> list[str]:
    """Record ``failures`` failures of ordinary (non-probe) calls; return the transitions."""
    return [breaker.record_failure(breaker.acquire()) for _ in range(failures)]


def test_circuit_breaker_opens_after_5_failures(breaker, clock):
    """Four consecutive failures leave the circuit closed; the fifth opens it and refuses calls."""
    assert trip(breaker, 4) == ["none"] * 4
    assert breaker.state() == "closed"
    assert breaker.acquire().allowed

    assert breaker.record_failure(breaker.acquire()) == "opened"
    assert breaker.state() == "open"
    permit = breaker.acquire()
    assert permit == Permit(allowed=False, is_probe=False, retry_after_ms=30_000)


def test_circuit_breaker_allows_probe_after_cooldown(breaker, clock):
    """After the cooldown exactly one probe goes through, and its success closes the circuit."""
    trip(breaker)
    clock.advance(29_999)
    assert not breaker.acquire().allowed

    clock.advance(1)
    assert breaker.state() == "half_open"
    probe = breaker.acquire()
    assert probe.allowed and probe.is_probe
    other = breaker.acquire()
    assert not other.allowed and other.retry_after_ms > 0

    assert breaker.record_success(probe) == "closed"
    assert breaker.state() == "closed"
    assert breaker.failure_count() == 0
    after = breaker.acquire()
    assert after.allowed and not after.is_probe


def test_circuit_probe_failure_reopens_for_another_cooldown(breaker, clock):
    """A failed probe reopens the circuit, counting the cooldown from the probe's failure."""
    trip(breaker)
    clock.advance(30_000)
    probe = breaker.acquire()
    clock.advance(500)
    assert breaker.record_failure(probe) == "reopened"
    assert breaker.state() == "open"
    assert breaker.acquire().retry_after_ms == 30_000
    clock.advance(30_000)
    assert breaker.acquire().is_probe


def test_circuit_success_resets_failure_count(breaker, clock):
    """A success between failures resets the count: only consecutive failures open the circuit."""
    trip(breaker, 4)
    assert breaker.failure_count() == 4
    assert breaker.record_success(breaker.acquire()) == "none"
    assert breaker.failure_count() == 0
    assert trip(breaker, 4) == ["none"] * 4
    assert breaker.state() == "closed"


def test_circuit_late_outcomes_do_not_move_an_open_circuit(breaker, clock):
    """Calls admitted before the circuit opened neither close it (success) nor extend it (failure)."""
    early = breaker.acquire()
    late_success = breaker.acquire()
    trip(breaker)
    assert breaker.record_failure(early) == "none"
    assert breaker.record_success(late_success) == "none"
    assert breaker.state() == "open"
    assert breaker.acquire().retry_after_ms == 30_000


def test_circuit_probe_lease_expiry_lets_another_probe_through(breaker, clock):
    """A probe whose process died (never reported) frees the slot after its lease (2 x send timeout)."""
    trip(breaker)
    clock.advance(30_000)
    assert breaker.acquire().is_probe
    clock.advance(9_999)
    assert not breaker.acquire().allowed
    clock.advance(1)
    assert breaker.acquire().is_probe


def test_circuit_state_is_shared_between_instances(breaker, clock):
    """Two breakers with the same name (two processes) see one state: it lives in Redis."""
    trip(breaker)
    other_process = CircuitBreaker("test")
    assert other_process.state() == "open"
    assert not other_process.acquire().allowed
    assert CircuitBreaker("another").acquire().allowed


def test_circuit_settings_are_read_at_call_time(clock):
    """Threshold and cooldown follow override_settings without a new breaker."""
    breaker = CircuitBreaker("lazy")
    with override_settings(MESSENGER_CIRCUIT_FAILURE_THRESHOLD=2, MESSENGER_CIRCUIT_COOLDOWN_MS=1000):
        assert trip(breaker, 2) == ["none", "opened"]
        assert breaker.acquire().retry_after_ms == 1000


def test_circuit_reset_closes_and_forgets(breaker, clock, redis_conn):
    """reset() closes the circuit and removes its Redis key."""
    trip(breaker)
    assert redis_conn.exists(breaker.key)
    breaker.reset()
    assert not redis_conn.exists(breaker.key)
    assert breaker.state() == "closed"


def test_circuit_half_open_probe_taken_by_exactly_one_of_eight_threads(breaker, clock):
    """Eight threads asking at the same instant after the cooldown get exactly one probe permit."""
    trip(breaker)
    clock.advance(30_000)
    barrier = threading.Barrier(8)
    permits: list[Permit] = []
    lock = threading.Lock()

    def worker():
        barrier.wait()
        permit = breaker.acquire()
        with lock:
            permits.append(permit)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(permits) == 8
    assert sum(p.is_probe for p in permits) == 1
    assert sum(p.allowed for p in permits) == 1
    assert all(p.retry_after_ms > 0 for p in permits if not p.allowed)


def _acquire_in_child(barrier, results) -> None:
    barrier.wait(timeout=10)
    permit = CircuitBreaker("test").acquire()
    results.put((permit.allowed, permit.is_probe))


def test_circuit_half_open_probe_taken_by_exactly_one_of_four_processes(breaker, clock):
    """Four forked processes (each its own Redis connection) get exactly one probe between them."""
    trip(breaker)
    clock.advance(30_000)  # the patched clock is inherited by the forked children
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    children = [ctx.Process(target=_acquire_in_child, args=(barrier, results)) for _ in range(4)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=20) for _ in children]
    for child in children:
        child.join(timeout=10)
        assert child.exitcode == 0

    assert sorted(outcomes) == [(False, False)] * 3 + [(True, True)]


def dead_redis() -> redis.Redis:
    """A real client pointed at a closed port, without redis-py's default ten retries."""
    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def test_circuit_redis_unavailable_fails_open_and_logs(breaker, monkeypatch, caplog):
    """With Redis unreachable the call is allowed and the outage logged, never raised."""
    monkeypatch.setattr(circuit, "_redis", dead_redis)
    caplog.set_level(logging.WARNING, logger="messenger.circuit")

    permit = breaker.acquire()
    assert permit.allowed and permit.degraded and not permit.is_probe
    assert breaker.record_failure(permit) == "none"
    assert [r.getMessage() for r in caplog.records] == ["messenger.circuit.redis-unavailable"]
    assert caplog.records[0].operation == "acquire"


def test_circuit_redis_down_is_not_asked_again_for_a_while(breaker, monkeypatch):
    """After a Redis error the process fails open without asking Redis, until the backoff ends."""
    calls = []

    def counting_dead_redis():
        calls.append(1)
        return dead_redis()

    monkeypatch.setattr(circuit, "_redis", counting_dead_redis)
    assert breaker.acquire().degraded
    assert len(calls) == 1
    assert all(breaker.acquire().allowed for _ in range(5))
    assert breaker.state() == "unknown"
    assert len(calls) == 1

    monkeypatch.setattr(circuit, "REDIS_DOWN_BACKOFF_S", 0.0)
    breaker.reset()  # an explicit reset asks Redis again at once
    assert len(calls) == 2


def test_circuit_redis_error_while_recording_is_logged(breaker, monkeypatch, caplog):
    """A Redis failure between acquire and record is logged, and the caller goes on."""
    breaker.record_failure(breaker.acquire())  # a count to reset: a clean circuit's success records nothing
    permit = breaker.acquire()
    monkeypatch.setattr(circuit, "_redis", dead_redis)
    caplog.set_level(logging.WARNING, logger="messenger.circuit")
    assert breaker.record_success(permit) == "none"
    assert [r.getMessage() for r in caplog.records] == ["messenger.circuit.redis-unavailable"]
    assert caplog.records[0].operation == "record_success"


def test_success_on_a_clean_circuit_costs_no_round_trip(breaker, monkeypatch):
    """A success admitted by a closed circuit with no failure counted has nothing to reset: no Redis call."""
    permit = breaker.acquire()
    monkeypatch.setattr(circuit, "_redis", dead_redis)
    assert (permit.clean, breaker.record_success(permit)) == (True, "none")


def test_success_after_a_counted_failure_resets_the_count(breaker):
    """A failure counted before the call was admitted is reset by its success."""
    breaker.record_failure(breaker.acquire())
    permit = breaker.acquire()
    assert (permit.clean, breaker.failure_count()) == (False, 1)
    breaker.record_success(permit)
    assert breaker.failure_count() == 0


def test_get_breaker_returns_the_send_api_singleton():
    """get_breaker() is one process-wide breaker named send_api."""
    assert get_breaker() is get_breaker()
    assert get_breaker().name == "send_api"


@override_settings(MESSENGER_CIRCUIT_FAILURE_THRESHOLD=1)
def test_get_breaker_one_circuit_per_page():
    """One page's open circuit leaves another page's (and the page-less one) closed."""
    assert get_breaker(page_id="111") is get_breaker(page_id="111")
    assert get_breaker(page_id="111").name == "send_api:111"
    throttled = get_breaker(page_id="222")
    assert throttled.record_failure(throttled.acquire()) == "opened"
    assert get_breaker(page_id="222").state() == "open"
    assert get_breaker(page_id="111").state() == "closed" and get_breaker().state() == "closed"
    assert circuit_pages() == ["222"]
