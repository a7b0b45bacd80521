"""Graceful shutdown and no lost messages, with real ``rqworker`` processes, real signals, real Redis/PostgreSQL.

The chat engine is the ``openai`` backend talking to a fake OpenAI-compatible server on loopback
whose answer takes a time the test controls; the Send API is the same fake server.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest
from django.conf import settings

from harness.processes import start_gunicorn, wait_until
from harness.webhooks import Poster, encode, text_body
from messenger.models import InboundMessage
from messenger.queues import get_queue
from tests.integration.support import (
    assert_put_back_unanswered,
    assert_second_sigterm_puts_back,
    assert_two_workers_answer_in_order,
    process_env,
    sigterm_and_wait,
    sigterm_in_flight,
    status_of,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_shutdown_waits_for_inflight_messages(in_flight, fake):
    """SIGTERM while a reply is being generated: the worker finishes it, sends it, then exits cleanly."""
    env = process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="10000")
    worker, code, took = sigterm_in_flight(in_flight, env, "slow question", mid="m_inflight", chat_delay=2.0)
    assert code == 0
    assert status_of("m_inflight") == "answered"
    assert fake.replies() == ["echo: slow question"]
    assert took < 10, worker.output()


def test_shutdown_timeout_forces_exit(in_flight, fake, new_worker_answers):
    """Past MESSENGER_SHUTDOWN_TIMEOUT_MS the worker stops the job, puts the message back, and exits;
    the next worker answers it exactly once."""
    env = process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="1000")
    worker, _code, took = sigterm_in_flight(in_flight, env, "very slow question", mid="m_forced", chat_delay=30.0)
    assert 0.9 <= took < 6, worker.output()
    assert_put_back_unanswered(fake, "m_forced")

    new_worker_answers(process_env(fake), "m_forced")
    assert fake.replies() == ["echo: very slow question"]


def test_second_signal_stops_at_once_and_puts_message_back(in_flight, fake):
    """A second SIGTERM does not wait for the shutdown timeout: the worker exits and the message is requeued."""
    env = process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="20000")
    assert_second_sigterm_puts_back(in_flight, env, mid="m_twice")


def test_idle_worker_stops_at_once_on_sigterm(fake, workers):
    """With nothing in flight a SIGTERM stops the worker promptly with exit code 0."""
    worker = workers(process_env(fake))
    wait_until(lambda: "messenger.worker.ready" in worker.output(), 30, message="the worker to be ready")
    code, took = sigterm_and_wait(worker, timeout=10)
    assert code == 0
    assert took < 5


def test_sigkill_mid_job_then_new_worker_replies_exactly_once(in_flight, fake, new_worker_answers):
    """A worker killed outright (SIGKILL, horse included) mid-job: a new worker recovers the message by
    itself and the user gets exactly one reply."""
    worker = in_flight(process_env(fake), "are you still there?", mid="m_killed", chat_delay=30.0)
    worker.kill_hard(with_horse=True)
    assert status_of("m_killed") == "processing"

    took = new_worker_answers(process_env(fake), "m_killed", timeout=60, message="recovery of the killed message")
    assert took < 60
    assert fake.replies() == ["echo: are you still there?"]


def test_queued_messages_persisted_to_redis(fake, workers, tmp_path):
    """Every event is in the database and its job in Redis before the webhook answers: stopping the web
    process (gunicorn, SIGTERM) loses nothing, and a worker started later answers all of them."""
    env = process_env(fake)
    web, port = start_gunicorn(env, log_dir=tmp_path, workers=1, threads=1, die_with_parent=True)
    poster = Poster(port, secret=settings.MESSENGER_APP_SECRET)
    try:
        for i in range(20):
            assert poster.post(encode(text_body(f"persisted {i}", mid=f"m_p{i}", psid=f"71{i:014d}"))) == 200
        web.signal(signal.SIGTERM)
        web.wait(15)
    finally:
        poster.close()
        if web.alive():
            web.kill_hard(with_horse=False)

    rows = InboundMessage.objects.filter(mid__startswith="m_p")
    assert rows.count() == 20
    assert set(get_queue("messenger_fast").get_job_ids()) == {f"inbound-{r.id}" for r in rows}

    workers(env)
    wait_until(lambda: InboundMessage.objects.filter(mid__startswith="m_p", status="answered").count() == 20,
               60, message="all 20 answered")
    assert sorted(fake.replies()) == sorted(f"echo: persisted {i}" for i in range(20))


def test_ordering_with_two_workers_one_user_twenty_messages(post_webhook, fake, workers):
    """Twenty messages from one user, two real workers: answered strictly one after another in timestamp order."""
    assert_two_workers_answer_in_order(
        post_webhook, workers, process_env(fake), psid="7200000000000001", mid_prefix="m_o", seed=7, timeout=60
    )
    assert fake.replies() == [f"echo: msg {i:02d}" for i in range(20)]


def test_burst_with_workers_killed_at_random_answers_every_message_once(post_webhook, echoes, workers):
    """200 messages from 20 users while workers are SIGKILLed 12 times and restarted, at random (seeded)
    every few hundred milliseconds: every message is answered exactly once.

    ``kill -9`` hits the rqworker process (the default class: up to ``MESSENGER_WORKER_CONCURRENCY``
    messages in flight on its threads) and its scheduler. A message cut off before its send is put
    back by the recovery sweep; a send cut off mid-way is in doubt until Facebook's echo of it arrives
    (played by the fake Graph) or the echo wait passes: see the README's reliability guarantee.
    """
    fake = echoes
    env = process_env(fake)
    rng = random.Random(2026)
    pool = [workers(env), workers(env)]
    base = int(time.time() * 1000)
    for i in range(200):
        post_webhook(text_body(f"burst {i:03d}", mid=f"m_b{i}", psid=f"73{i % 20:014d}", ts_ms=base + i))

    # A fixed storm (the same seeded kills on a busy machine as on an idle one), then the last workers
    # finish the rest: a busy machine makes the test slower, not red.
    storm_kills = 12
    for _ in range(storm_kills):
        time.sleep(rng.uniform(0.2, 0.6))
        victim = rng.randrange(len(pool))
        pool[victim].kill_hard(with_horse=False)
        pool[victim] = workers(env)
    wait_until(
        lambda: InboundMessage.objects.filter(status="answered").count() == 200, 180, message="all 200 answered"
    )
    statuses = Counter(InboundMessage.objects.values_list("status", flat=True))
    assert statuses == {"answered": 200}, statuses
    counts = Counter(fake.replies())
    assert set(counts) == {f"echo: burst {i:03d}" for i in range(200)}
    assert max(counts.values()) == 1, [r for r, n in counts.items() if n > 1]
