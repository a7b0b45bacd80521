"""The opt-in in-process worker (``messenger.worker.MessengerInProcessWorker``) with real ``rqworker``
processes, real signals, real Redis/PostgreSQL: it waits for the message in flight, puts it back past
the shutdown timeout, loses nothing to a SIGKILL, keeps one user's messages in order, and survives
rq's job timeout.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from rq.job import Job

from harness.fake_graph import FakeGraph
from harness.processes import Proc, wait_until
from harness.webhooks import text_body
from messenger import texts
from messenger.models import InboundMessage
from messenger.queues import get_queue
from messenger.worker import EXIT_CODE_JOB_ABANDONED
from tests.integration.support import (
    IN_PROCESS_WORKER,
    assert_put_back_unanswered,
    assert_second_sigterm_puts_back,
    assert_two_workers_answer_in_order,
    process_env,
    sigterm_in_flight,
    status_of,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def in_process_env(fake: FakeGraph, **overrides: str) -> dict[str, str]:
    return process_env(fake, worker_class=IN_PROCESS_WORKER, **overrides)


def assert_in_process(worker: Proc) -> None:
    """The worker runs the in-process class and has forked no work horse for the job in flight."""
    wait_until(lambda: "messenger.worker.ready" in worker.output(), 30, message="the worker to be ready")
    assert "MessengerInProcessWorker" in worker.output()
    assert worker.horse_pid() is None


def test_inprocess_sigterm_waits_for_inflight_message(in_flight, fake):
    """SIGTERM while a reply is being generated in the worker process: it finishes, sends it, exits 0."""
    env = in_process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="10000")
    worker, code, took = sigterm_in_flight(
        in_flight, env, "slow question", mid="m_ip_inflight", chat_delay=2.0, running=assert_in_process
    )
    assert code == 0, worker.output()
    assert took < 10
    assert status_of("m_ip_inflight") == "answered"
    assert fake.replies() == ["echo: slow question"]


def test_inprocess_sigterm_past_timeout_puts_back_and_next_worker_answers_once(in_flight, fake, new_worker_answers):
    """Past MESSENGER_SHUTDOWN_TIMEOUT_MS the worker puts the message back, frees its sender and exits at
    once with a non-zero code; the next worker answers it exactly once."""
    env = in_process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="1000")
    worker, code, took = sigterm_in_flight(
        in_flight, env, "very slow question", mid="m_ip_forced", chat_delay=30.0, running=assert_in_process
    )
    assert code == EXIT_CODE_JOB_ABANDONED, worker.output()
    assert 0.9 <= took < 5, worker.output()
    row = assert_put_back_unanswered(fake, "m_ip_forced")
    assert row.worker_name == ""
    assert not get_queue("messenger_fast").connection.keys("messenger:sender-lock:*")
    assert "messenger.worker.put-back" in worker.output()

    new_worker_answers(in_process_env(fake), "m_ip_forced")
    assert fake.replies() == ["echo: very slow question"]


def test_inprocess_second_signal_stops_at_once_and_puts_message_back(in_flight, fake):
    """A second SIGTERM does not wait for the shutdown timeout: the message goes back and the worker exits."""
    env = in_process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="20000")
    assert assert_second_sigterm_puts_back(in_flight, env, mid="m_ip_twice") == EXIT_CODE_JOB_ABANDONED


def test_inprocess_sigkill_mid_job_then_new_worker_answers_exactly_once(in_flight, fake, new_worker_answers):
    """SIGKILL of an in-process worker takes its job down with it; the lease lapses, a new worker's
    recovery sweep requeues the message and the user gets exactly one reply."""
    worker = in_flight(in_process_env(fake), "are you still there?", mid="m_ip_killed", chat_delay=30.0)
    assert_in_process(worker)
    worker.kill_hard(with_horse=False)
    assert status_of("m_ip_killed") == "processing"

    new_worker_answers(in_process_env(fake), "m_ip_killed", message="recovery of the killed message")
    assert fake.replies() == ["echo: are you still there?"]


def test_inprocess_two_workers_answer_one_users_twenty_messages_in_order(post_webhook, fake, workers):
    """Twenty messages from one user, two in-process workers: answered one after another in timestamp order."""
    assert_two_workers_answer_in_order(
        post_webhook, workers, in_process_env(fake), psid="7400000000000001", mid_prefix="m_ipo", seed=11, timeout=30
    )
    assert fake.replies() == [f"echo: msg {i:02d}" for i in range(20)]
    # Each row names the rq worker that answered it (what put_back_inflight looks for), not a pid.
    names = Counter(InboundMessage.objects.values_list("worker_name", flat=True))
    assert names and all(name and not name.startswith("pid-") for name in names)


def test_inprocess_job_timeout_stops_the_job_and_worker_goes_on(post_webhook, fake, workers):
    """A job past rq's job timeout is interrupted in the worker process (rq's SIGALRM death penalty): the
    user gets the fallback reply, the row is final, and the same worker answers the next message."""
    fake.chat_delay = 30.0
    post_webhook(text_body("stuck question", mid="m_ip_timeout"))
    row = InboundMessage.objects.get(mid="m_ip_timeout")
    job = Job.fetch(row.job_id or f"inbound-{row.id}", connection=get_queue("messenger_fast").connection)
    job.timeout = 2  # the route's timeout is minutes; the death penalty is what is tested
    job.save()

    started = time.monotonic()
    worker = workers(in_process_env(fake))
    wait_until(lambda: status_of("m_ip_timeout") == "answered", 30, message="the timed-out job to be handled")
    assert time.monotonic() - started < 20
    assert fake.replies() == [texts.SEND_FALLBACK_ERROR]

    fake.chat_delay = 0.0
    post_webhook(text_body("next question", mid="m_ip_after", psid="7400000000000002"))
    wait_until(lambda: status_of("m_ip_after") == "answered", 30, message="the next message")
    assert fake.replies()[-1] == "echo: next question"
    assert worker.alive()
