"""Graceful shutdown and no lost messages, with real ``rqworker`` processes, real signals, real Redis/PostgreSQL.

The chat engine is the ``openai`` backend talking to a fake OpenAI-compatible server on loopback
whose answer takes a time the test controls; the Send API is the same fake server.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from messenger.models import InboundMessage
from messenger.queues import get_queue
from tests.conftest import sign
from tests.integration.support import ROOT, body_for, die_with_parent, process_env, status_of, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_shutdown_waits_for_inflight_messages(post_webhook, fake, workers):
    """SIGTERM while a reply is being generated: the worker finishes it, sends it, then exits cleanly."""
    fake.chat_delay = 2.0
    worker = workers(process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="10000"))
    post_webhook(body_for("slow question", mid="m_inflight"))
    wait_until(lambda: status_of("m_inflight") == "processing", 30, message="the message in flight")

    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    took = time.monotonic() - signalled
    assert status_of("m_inflight") == "answered"
    assert fake.replies() == ["echo: slow question"]
    assert took < 10, worker.output()


def test_shutdown_timeout_forces_exit(post_webhook, fake, workers):
    """Past MESSENGER_SHUTDOWN_TIMEOUT_MS the worker stops the job, puts the message back, and exits;
    the next worker answers it exactly once."""
    fake.chat_delay = 30.0
    worker = workers(process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="1000"))
    post_webhook(body_for("very slow question", mid="m_forced"))
    wait_until(lambda: status_of("m_forced") == "processing", 30, message="the message in flight")

    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.wait(15)
    took = time.monotonic() - signalled
    assert 0.9 <= took < 6, worker.output()
    row = InboundMessage.objects.get(mid="m_forced")
    assert row.status == "queued" and row.job_id  # put back with a fresh job
    assert get_queue("messenger_fast").get_job_ids() == [row.job_id]
    assert fake.replies() == []

    fake.chat_delay = 0.0
    workers(process_env(fake))
    wait_until(lambda: status_of("m_forced") == "answered", 30, message="the next worker to answer")
    assert fake.replies() == ["echo: very slow question"]


def test_second_signal_stops_at_once_and_puts_message_back(post_webhook, fake, workers):
    """A second SIGTERM does not wait for the shutdown timeout: the worker exits and the message is requeued."""
    fake.chat_delay = 30.0
    worker = workers(process_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="20000"))
    post_webhook(body_for("another slow one", mid="m_twice"))
    wait_until(lambda: status_of("m_twice") == "processing", 30, message="the message in flight")
    worker.signal(signal.SIGTERM)
    time.sleep(1.2)  # rq ignores a repeat of the same signal within one second
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.wait(15)
    assert time.monotonic() - signalled < 5
    assert status_of("m_twice") == "queued"


def test_idle_worker_stops_at_once_on_sigterm(fake, workers):
    """With nothing in flight a SIGTERM stops the worker promptly with exit code 0."""
    worker = workers(process_env(fake))
    wait_until(lambda: "messenger.worker.ready" in worker.output(), 30, message="the worker to be ready")
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert time.monotonic() - signalled < 5


def test_sigkill_mid_job_then_new_worker_replies_exactly_once(post_webhook, fake, workers):
    """A worker killed outright (SIGKILL, horse included) mid-job: a new worker recovers the message by
    itself and the user gets exactly one reply."""
    fake.chat_delay = 30.0
    worker = workers(process_env(fake))
    post_webhook(body_for("are you still there?", mid="m_killed"))
    wait_until(lambda: status_of("m_killed") == "processing", 30, message="the message in flight")
    worker.kill_hard(with_horse=True)
    assert status_of("m_killed") == "processing"

    fake.chat_delay = 0.0
    recovered_from = time.monotonic()
    workers(process_env(fake))
    wait_until(lambda: status_of("m_killed") == "answered", 60, message="recovery of the killed message")
    assert time.monotonic() - recovered_from < 60
    assert fake.replies() == ["echo: are you still there?"]


def test_queued_messages_persisted_to_redis(fake, workers, tmp_path):
    """Every event is in the database and its job in Redis before the webhook answers: stopping the web
    process (gunicorn, SIGTERM) loses nothing, and a worker started later answers all of them."""
    import http.client
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = process_env(fake)
    log = (tmp_path / "gunicorn.log").open("wb")
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "chatbot.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )
    try:
        def up():
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
                return True
            except OSError:
                return False

        wait_until(up, 30, message="gunicorn to listen")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(20):
            raw = json.dumps(body_for(f"persisted {i}", mid=f"m_p{i}", psid=f"71{i:014d}")).encode()
            conn.request("POST", "/messenger/v2/webhook", body=raw,
                         headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw)})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        web.send_signal(signal.SIGTERM)
        web.wait(15)
    finally:
        if web.poll() is None:
            web.kill()
        log.close()

    rows = InboundMessage.objects.filter(mid__startswith="m_p")
    assert rows.count() == 20
    assert set(get_queue("messenger_fast").get_job_ids()) == {f"inbound-{r.id}" for r in rows}

    workers(env)
    wait_until(lambda: InboundMessage.objects.filter(mid__startswith="m_p", status="answered").count() == 20,
               60, message="all 20 answered")
    assert sorted(fake.replies()) == sorted(f"echo: persisted {i}" for i in range(20))


def test_ordering_with_two_workers_one_user_twenty_messages(post_webhook, fake, workers):
    """Twenty messages from one user, two real workers: answered strictly one after another in timestamp order."""
    env = process_env(fake)
    workers(env)
    workers(env)
    base = int(time.time() * 1000)
    order = list(range(20))
    random.Random(7).shuffle(order)  # posted out of order; Facebook's timestamps decide
    for i in order:
        post_webhook(body_for(f"msg {i:02d}", mid=f"m_o{i}", psid="7200000000000001", ts=base + i))
    wait_until(lambda: InboundMessage.objects.filter(status="answered").count() == 20, 60, message="all answered")
    assert fake.replies() == [f"echo: msg {i:02d}" for i in range(20)]


def test_burst_with_workers_killed_at_random_answers_every_message_once(post_webhook, fake, workers):
    """200 messages from 20 users while workers are SIGKILLed and restarted at random (seeded) every few
    hundred milliseconds: every message is answered exactly once.

    ``kill -9`` hits the rqworker process and its scheduler (its process group); rq runs each job in a
    work horse of its own process group, which finishes the message in hand. A horse killed mid-send is
    the one case that can repeat a part (Facebook's Send API has no idempotency key): see the README.
    """
    env = process_env(fake)
    rng = random.Random(2026)
    pool = [workers(env), workers(env)]
    base = int(time.time() * 1000)
    for i in range(200):
        post_webhook(body_for(f"burst {i:03d}", mid=f"m_b{i}", psid=f"73{i % 20:014d}", ts=base + i))

    deadline = time.monotonic() + 90
    kills = 0
    while time.monotonic() < deadline:
        if InboundMessage.objects.filter(status="answered").count() == 200:
            break
        time.sleep(rng.uniform(0.2, 0.6))
        victim = rng.randrange(len(pool))
        pool[victim].kill_hard(with_horse=False)
        kills += 1
        pool[victim] = workers(env)
    statuses = Counter(InboundMessage.objects.values_list("status", flat=True))
    assert statuses == {"answered": 200}, statuses
    counts = Counter(fake.replies())
    assert set(counts) == {f"echo: burst {i:03d}" for i in range(200)}
    assert max(counts.values()) == 1, [r for r, n in counts.items() if n > 1]
    assert kills >= 3
