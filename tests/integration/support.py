"""What the tests that run real processes need beyond the harness: their environment and a status.

The processes themselves (``manage.py rqworker``, gunicorn), the fake Graph/chat server and the
webhook bodies come from the harness the benchmarks use too (``harness/``); the fixtures that start
them are in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from harness.fake_graph import FakeGraph
from harness.processes import Proc, wait_until
from harness.webhooks import text_body

IN_PROCESS_WORKER = "messenger.worker.MessengerInProcessWorker"


def process_env(fake: FakeGraph, *, worker_class: str | None = None, **overrides: str) -> dict[str, str]:
    """Environment for a subprocess that uses the test database, the test Redis and the fake server.

    ``worker_class`` selects the rq worker class (``RQ_WORKER_CLASS``); unset, the settings' default.
    """
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": (
            f"postgres://{db['USER'] or 'root'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "MESSENGER_GRAPH_API_URL": fake.base_url,
        "MESSENGER_PAGE_ACCESS_TOKEN": "EAAintegrationtoken",
        "MESSENGER_APP_SECRET": settings.MESSENGER_APP_SECRET,
        "CHATBOT_ENGINE": "openai",
        "CHATBOT_API_URL": fake.url,
        "CHATBOT_MODEL": "fake-model",
        "MESSENGER_PROCESSING_TIMEOUT_MS": "60000",
        "CHATBOT_API_TIMEOUT_MS": "60000",
        "MESSENGER_RECOVERY_INTERVAL_SECONDS": "2",
        "MESSENGER_LEASE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_TEST_NAME", None)
    env.pop("RQ_WORKER_CLASS", None)
    if worker_class:
        env["RQ_WORKER_CLASS"] = worker_class
    env.update(overrides)
    return env


def status_of(mid: str) -> str | None:
    """The inbox status of the message with Facebook id ``mid``."""
    from messenger.models import InboundMessage

    return InboundMessage.objects.filter(mid=mid).values_list("status", flat=True).first()


def answered_count() -> int:
    """How many inbox rows are answered."""
    from messenger.models import InboundMessage

    return InboundMessage.objects.filter(status="answered").count()


def post_out_of_order(post_webhook: Callable, texts: list[str], *, psid: str, mid_prefix: str, seed: int) -> None:
    """Post one user's ``texts`` in a shuffled (seeded) order, stamped in list order, so that only
    Facebook's timestamps can put them right. Message ``i`` has mid ``<mid_prefix><i>``."""
    base = int(time.time() * 1000)
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    for i in order:
        post_webhook(text_body(texts[i], mid=f"{mid_prefix}{i}", psid=psid, ts_ms=base + i))


def sigterm_and_wait(worker: Proc, timeout: float = 15) -> tuple[int, float]:
    """SIGTERM ``worker`` and wait for it to exit: its exit code and the seconds it took."""
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(timeout)
    return code, time.monotonic() - signalled


def sigterm_twice(worker: Proc) -> tuple[int, float]:
    """SIGTERM ``worker``, then again once rq heeds a repeat (it ignores one within a second).

    Returns the exit code and the seconds from the second signal to the exit.
    """
    worker.signal(signal.SIGTERM)
    time.sleep(1.2)  # rq ignores a repeat of the same signal within one second
    return sigterm_and_wait(worker)


# --- scenarios both worker classes go through (tests/integration/test_shutdown.py and
# test_inprocess_worker.py): one place for the steps and the assertions they share ---------------


def sigterm_in_flight(in_flight: Callable, env: dict[str, str], text: str, *, mid: str, chat_delay: float,
                      running: Callable[[Proc], None] | None = None, twice: bool = False) -> tuple[Proc, int, float]:
    """Start a worker with ``text`` in flight, check it with ``running``, then SIGTERM it (``twice``:
    a second SIGTERM too): the worker, its exit code and the seconds its exit took."""
    worker = in_flight(env, text, mid=mid, chat_delay=chat_delay)
    if running is not None:
        running(worker)
    code, took = sigterm_twice(worker) if twice else sigterm_and_wait(worker)
    return worker, code, took


def assert_put_back_unanswered(fake: FakeGraph, mid: str):
    """The message ``mid`` is queued again with a fresh job, the only one in the queue, and unanswered."""
    from messenger.models import InboundMessage
    from messenger.queues import get_queue

    row = InboundMessage.objects.get(mid=mid)
    assert row.status == "queued" and row.job_id  # put back with a fresh job
    assert get_queue("messenger_fast").get_job_ids() == [row.job_id]
    assert fake.replies() == []
    return row


def assert_second_sigterm_puts_back(in_flight: Callable, env: dict[str, str], *, mid: str) -> int:
    """A second SIGTERM does not wait for the shutdown timeout: the worker exits within 5 s and the
    message ``mid`` is queued again; the worker's exit code."""
    _worker, code, took = sigterm_in_flight(in_flight, env, "another slow one", mid=mid, chat_delay=30.0, twice=True)
    assert took < 5
    assert status_of(mid) == "queued"
    return code


def assert_two_workers_answer_in_order(post_webhook: Callable, workers: Callable, env: dict[str, str], *, psid: str,
                                       mid_prefix: str, seed: int, timeout: float) -> None:
    """Two workers, twenty messages from one user posted out of order: answered one after another,
    in timestamp order, within ``timeout`` seconds."""
    workers(env)
    workers(env)
    said = [f"msg {i:02d}" for i in range(20)]
    post_out_of_order(post_webhook, said, psid=psid, mid_prefix=mid_prefix, seed=seed)
    wait_until(lambda: answered_count() == 20, timeout, message="all answered")
