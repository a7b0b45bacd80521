"""The opt-in in-process worker (``messenger.worker.MessengerInProcessWorker``) with real ``rqworker``
processes, real signals, real Redis/PostgreSQL: it waits for the message in flight, puts it back past
the shutdown timeout, loses nothing to a SIGKILL, keeps one user's messages in order, and survives
rq's job timeout. The default class stays the forking ``MessengerWorker``.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest
from django.conf import settings
from django_rq.workers import get_worker_class
from rq.job import Job

from messenger import texts
from messenger.models import InboundMessage
from messenger.queues import get_queue
from messenger.worker import EXIT_CODE_JOB_ABANDONED, MessengerWorker
from tests.integration.support import (
    IN_PROCESS_WORKER,
    FakeServer,
    Worker,
    body_for,
    process_env,
    status_of,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def in_process_env(fake: FakeServer, **overrides: str) -> dict[str, str]:
    return process_env(fake, worker_class=IN_PROCESS_WORKER, **overrides)


def assert_in_process(worker: Worker) -> None:
    """The worker runs the in-process class and has forked no work horse for the job in flight."""
    wait_until(lambda: "messenger.worker.ready" in worker.output(), 30, message="the worker to be ready")
    assert "MessengerInProcessWorker" in worker.output()
    assert worker.horse_pid() is None


def test_inprocess_sigterm_waits_for_inflight_message(post_webhook, fake, workers):
    """SIGTERM while a reply is being generated in the worker process: it finishes, sends it, exits 0."""
    fake.chat_delay = 2.0
    worker = workers(in_process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="10000"))
    post_webhook(body_for("slow question", mid="m_ip_inflight"))
    wait_until(lambda: status_of("m_ip_inflight") == "processing", 30, message="the message in flight")
    assert_in_process(worker)

    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.output()
    assert time.monotonic() - signalled < 10
    assert status_of("m_ip_inflight") == "answered"
    assert fake.replies() == ["echo: slow question"]


def test_inprocess_sigterm_past_timeout_puts_back_and_next_worker_answers_once(post_webhook, fake, workers):
    """Past MESSENGER_SHUTDOWN_TIMEOUT_MS the worker puts the message back, frees its sender and exits at
    once with a non-zero code; the next worker answers it exactly once."""
    fake.chat_delay = 30.0
    worker = workers(in_process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="1000"))
    post_webhook(body_for("very slow question", mid="m_ip_forced"))
    wait_until(lambda: status_of("m_ip_forced") == "processing", 30, message="the message in flight")
    assert_in_process(worker)

    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(15)
    took = time.monotonic() - signalled
    assert code == EXIT_CODE_JOB_ABANDONED, worker.output()
    assert 0.9 <= took < 5, worker.output()
    row = InboundMessage.objects.get(mid="m_ip_forced")
    assert row.status == "queued" and row.job_id and row.worker_name == ""
    assert get_queue("messenger_fast").get_job_ids() == [row.job_id]
    assert not get_queue("messenger_fast").connection.keys("messenger:sender-lock:*")
    assert "messenger.worker.put-back" in worker.output()
    assert fake.replies() == []

    fake.chat_delay = 0.0
    workers(in_process_env(fake))
    wait_until(lambda: status_of("m_ip_forced") == "answered", 30, message="the next worker to answer")
    assert fake.replies() == ["echo: very slow question"]


def test_inprocess_second_signal_stops_at_once_and_puts_message_back(post_webhook, fake, workers):
    """A second SIGTERM does not wait for the shutdown timeout: the message goes back and the worker exits."""
    fake.chat_delay = 30.0
    worker = workers(in_process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="20000"))
    post_webhook(body_for("another slow one", mid="m_ip_twice"))
    wait_until(lambda: status_of("m_ip_twice") == "processing", 30, message="the message in flight")
    worker.signal(signal.SIGTERM)
    time.sleep(1.2)  # rq ignores a repeat of the same signal within one second
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == EXIT_CODE_JOB_ABANDONED
    assert time.monotonic() - signalled < 5
    assert status_of("m_ip_twice") == "queued"


def test_inprocess_sigkill_mid_job_then_new_worker_answers_exactly_once(post_webhook, fake, workers):
    """SIGKILL of an in-process worker takes its job down with it; the lease lapses, a new worker's
    recovery sweep requeues the message and the user gets exactly one reply."""
    fake.chat_delay = 30.0
    worker = workers(in_process_env(fake))
    post_webhook(body_for("are you still there?", mid="m_ip_killed"))
    wait_until(lambda: status_of("m_ip_killed") == "processing", 30, message="the message in flight")
    assert_in_process(worker)
    worker.kill_hard(with_horse=False)
    assert status_of("m_ip_killed") == "processing"

    fake.chat_delay = 0.0
    workers(in_process_env(fake))
    wait_until(lambda: status_of("m_ip_killed") == "answered", 30, message="recovery of the killed message")
    assert fake.replies() == ["echo: are you still there?"]


def test_inprocess_two_workers_answer_one_users_twenty_messages_in_order(post_webhook, fake, workers):
    """Twenty messages from one user, two in-process workers: answered one after another in timestamp order."""
    env = in_process_env(fake)
    workers(env)
    workers(env)
    base = int(time.time() * 1000)
    order = list(range(20))
    random.Random(11).shuffle(order)  # posted out of order; Facebook's timestamps decide
    for i in order:
        post_webhook(body_for(f"msg {i:02d}", mid=f"m_ipo{i}", psid="7400000000000001", ts=base + i))
    wait_until(lambda: InboundMessage.objects.filter(status="answered").count() == 20, 30, message="all answered")
    assert fake.replies() == [f"echo: msg {i:02d}" for i in range(20)]
    # Each row names the rq worker that answered it (what put_back_inflight looks for), not a pid.
    names = Counter(InboundMessage.objects.values_list("worker_name", flat=True))
    assert names and all(name and not name.startswith("pid-") for name in names)


def test_inprocess_job_timeout_stops_the_job_and_worker_goes_on(post_webhook, fake, workers):
    """A job past rq's job timeout is interrupted in the worker process (rq's SIGALRM death penalty): the
    user gets the fallback reply, the row is final, and the same worker answers the next message."""
    fake.chat_delay = 30.0
    post_webhook(body_for("stuck question", mid="m_ip_timeout"))
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
    post_webhook(body_for("next question", mid="m_ip_after", psid="7400000000000002"))
    wait_until(lambda: status_of("m_ip_after") == "answered", 30, message="the next message")
    assert fake.replies()[-1] == "echo: next question"
    assert worker.proc.poll() is None


def test_default_worker_class_is_the_forking_messenger_worker(fake, workers):
    """Without RQ_WORKER_CLASS the settings and a real rqworker use the forking MessengerWorker."""
    assert settings.RQ["WORKER_CLASS"] == "messenger.worker.MessengerWorker"
    assert get_worker_class() is MessengerWorker
    worker = workers(process_env(fake))
    wait_until(lambda: "messenger.worker.ready" in worker.output(), 30, message="the worker to be ready")
    assert "MessengerWorker" in worker.output() and "MessengerInProcessWorker" not in worker.output()
