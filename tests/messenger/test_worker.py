"""Tests for messenger/worker.py in-process: the recovery sweep, the put-back, the idle wake-up.

The shutdown paths (signals, a killed horse, an abandoned in-process job) need real ``rqworker``
processes and are tested in ``tests/integration/test_shutdown.py`` and ``test_inprocess_worker.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messenger.models import InboundMessage
from messenger.ordering import SenderLock, inflight_alive, sender_lock_held
from messenger.queues import channel_redis, get_queue
from messenger.worker import SWEEP_LOCK_KEY, MessengerInProcessWorker, MessengerWorker

# The sweep and the put-back close every DB connection (a forked horse must not inherit one), which a
# test wrapped in a transaction would not survive: these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def make_worker(cls=MessengerWorker, name: str = "worker-1"):
    queues = [get_queue("messenger_fast"), get_queue("messenger_slow")]
    return cls(queues, connection=queues[0].connection, name=name)


def make_row(**fields) -> InboundMessage:
    defaults = {
        "mid": f"m_{fields.get('status', 'x')}_{InboundMessage.objects.count()}",
        "page_id": "p",
        "psid": "u",
        "kind": InboundMessage.Kind.TEXT,
        "text": "hello",
        "fb_timestamp": int(timezone.now().timestamp() * 1000),
        "received_at": timezone.now() - timedelta(minutes=1),
        "queue_name": "messenger_fast",
    }
    return InboundMessage.objects.create(**{**defaults, **fields})


def test_dequeue_timeout_wakes_the_idle_worker_for_the_sweep(settings):
    """An idle worker blocks for at most a third of the recovery interval, not rq's 405 seconds."""
    settings.MESSENGER_RECOVERY_INTERVAL_SECONDS = 15
    assert make_worker().dequeue_timeout == 5
    settings.MESSENGER_RECOVERY_INTERVAL_SECONDS = 2
    assert make_worker().dequeue_timeout == 1


def test_recovery_sweep_requeues_a_stranded_row_once_across_workers():
    """The first worker's sweep requeues a pending row; a second worker within the interval skips."""
    row = make_row(status=InboundMessage.Status.PENDING)
    make_worker(name="w1").recovery_sweep()
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.QUEUED
    assert get_queue("messenger_fast").get_job_ids() == [row.job_id]
    assert channel_redis().get(SWEEP_LOCK_KEY) == b"w1"

    InboundMessage.objects.filter(id=row.id).update(status=InboundMessage.Status.PENDING)
    make_worker(name="w2").recovery_sweep()
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.PENDING  # w1 holds the sweep for this interval


def test_put_back_inflight_frees_the_sender_and_requeues_only_its_own_open_rows():
    """The stopping worker's processing row goes back on the queue with its lock and in-flight key freed;
    a row it already answered, and another worker's row, are left alone."""
    mine = make_row(status=InboundMessage.Status.PROCESSING, worker_name="w1")
    answered = make_row(status=InboundMessage.Status.ANSWERED, worker_name="w1")
    other = make_row(status=InboundMessage.Status.PROCESSING, worker_name="w2", psid="v")
    lock = SenderLock(page_id=mine.page_id, psid=mine.psid, owner="w1")
    assert lock.acquire()
    lock.set_inflight(mine.id)
    lock._stop.set()  # the job is frozen: no more heartbeats

    make_worker(name="w1").put_back_inflight()

    assert not sender_lock_held(page_id=mine.page_id, psid=mine.psid)
    assert not inflight_alive(inbound_id=mine.id)
    mine.refresh_from_db()
    assert (mine.status, mine.worker_name) == (InboundMessage.Status.QUEUED, "")
    assert mine.job_id in get_queue("messenger_fast").get_job_ids()
    assert InboundMessage.objects.get(id=answered.id).status == InboundMessage.Status.ANSWERED
    assert InboundMessage.objects.get(id=other.id).status == InboundMessage.Status.PROCESSING


def test_put_back_inflight_runs_once():
    """A second call (timer and signal racing) does nothing: the message is queued once."""
    row = make_row(status=InboundMessage.Status.PROCESSING, worker_name="w1")
    worker = make_worker(name="w1")
    worker.put_back_inflight()
    InboundMessage.objects.filter(id=row.id).update(status=InboundMessage.Status.PROCESSING, worker_name="w1")
    worker.put_back_inflight()
    assert InboundMessage.objects.get(id=row.id).status == InboundMessage.Status.PROCESSING
    assert len(get_queue("messenger_fast").get_job_ids()) == 1



def test_sweep_closes_db_connection_only_for_the_forking_worker():
    """The forking worker's horses must not inherit a DB connection; the in-process worker keeps its own."""
    from django.db import connection

    InboundMessage.objects.exists()  # open the connection
    make_worker(MessengerInProcessWorker, name="w-inproc").recovery_sweep()
    assert connection.connection is not None
    channel_redis().delete(SWEEP_LOCK_KEY)
    make_worker(name="w-fork").recovery_sweep()
    assert connection.connection is None


@pytest.mark.parametrize(
    ("asked", "log_level", "used"),
    [
        ("INFO", "WARNING", "WARNING"),
        ("INFO", "INFO", "INFO"),
        ("WARNING", "DEBUG", "WARNING"),
        (None, "ERROR", "ERROR"),
    ],
)
def test_rq_logging_level_is_rqworkers_unless_log_level_is_quieter(settings, asked, log_level, used):
    """rqworker asks rq for INFO (four lines a job); LOG_LEVEL=WARNING quiets rq's lines as well."""
    from messenger.worker import _rq_logging_level

    settings.LOG_LEVEL = log_level
    assert _rq_logging_level(asked) == used


def test_thread_worker_forks_its_scheduler_without_a_connection_or_job_threads():
    """rq forks the scheduler right after bootstrap: by then the thread worker has closed its
    PostgreSQL connection and started no job thread; the threads start with the first dequeue."""
    import threading

    from django.db import connection

    from messenger.thread_worker import MessengerThreadWorker

    worker = make_worker(MessengerThreadWorker, name="w-threads")
    worker.bootstrap()
    assert connection.connection is None
    assert not [t for t in threading.enumerate() if t.name.startswith("messenger-job-")]
    worker._stop_requested = True  # the first dequeue returns at once, after starting the threads
    assert worker.dequeue_job_and_maintain_ttl(1) is None
    assert len([t for t in threading.enumerate() if t.name.startswith("messenger-job-")]) == worker.concurrency
    worker.teardown()
    assert not [t for t in threading.enumerate() if t.name.startswith("messenger-job-") and t.is_alive()]
