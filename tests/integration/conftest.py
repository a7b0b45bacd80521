"""Fixtures of the tests that run real processes: the fake Graph/chat server and rqworker processes."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from harness import processes
from harness.fake_graph import FakeGraph
from harness.processes import Proc, wait_until
from harness.webhooks import WEBHOOK_PATH, text_body
from tests.integration.support import status_of


@pytest.fixture
def fake():
    """The harness's fake Send API and OpenAI-compatible chat server on loopback, for one test."""
    with FakeGraph() as server:
        yield server


@pytest.fixture
def echoes(fake, live_server):
    """The fake Graph echoes every message it accepts to the live webhook, 0.2 s later (Facebook's
    ``message_echoes`` subscription): what settles a send cut off mid-way."""
    fake.echo_to(f"{live_server.url}{WEBHOOK_PATH}", settings.MESSENGER_APP_SECRET, delay_s=0.2)
    return fake


@pytest.fixture
def workers(tmp_path):
    """Start ``manage.py rqworker`` processes with ``workers(env)``; all are killed after the test.

    Each dies with the test process too (``PR_SET_PDEATHSIG``), so a killed test run never leaves a
    worker behind to sweep the next run's database.
    """
    started: list[Proc] = []

    def start(env) -> Proc:
        worker = processes.start_worker(env, name=f"worker-{len(started)}", log_dir=tmp_path, die_with_parent=True)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive():
            worker.kill_hard()


@pytest.fixture
def in_flight(post_webhook, fake, workers):
    """``in_flight(env, text, mid=..., chat_delay=...)``: a worker with one message in hand.

    Starts a worker in ``env``, posts ``text`` as message ``mid`` while the chat engine takes
    ``chat_delay`` s to answer, and returns the worker once the message is being processed.
    """

    def start(env, text: str, *, mid: str, chat_delay: float) -> Proc:
        fake.chat_delay = chat_delay
        worker = workers(env)
        post_webhook(text_body(text, mid=mid))
        wait_until(lambda: status_of(mid) == "processing", 30, message="the message in flight")
        return worker

    return start


@pytest.fixture
def new_worker_answers(fake, workers):
    """``new_worker_answers(env, mid, timeout=30)``: with the chat engine fast again, a new worker in
    ``env`` answers message ``mid`` (put back or left behind by the last one); the seconds it took."""

    def run(env, mid: str, *, timeout: float = 30, message: str = "the next worker to answer") -> float:
        fake.chat_delay = 0.0
        started = time.monotonic()
        workers(env)
        wait_until(lambda: status_of(mid) == "answered", timeout, message=message)
        return time.monotonic() - started

    return run
