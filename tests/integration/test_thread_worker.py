"""The default worker class (``messenger.thread_worker.MessengerThreadWorker``) with several messages in
flight in one real ``rqworker`` process: one user's burst in order and never overlapping while other
users run in parallel, a graceful stop, a stop past its timeout, SIGKILL, and a hung model.

The shutdown, recovery and burst tests of ``test_shutdown.py`` and ``test_delivery_faults.py`` run
this class too (it is the default); these are the ones that need concurrency above 1.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from django.conf import settings
from django_rq.workers import get_worker_class

from harness.processes import wait_until
from harness.webhooks import text_body
from messenger import texts
from messenger.models import InboundMessage, OutboundPart
from messenger.queues import get_queue
from messenger.thread_worker import MessengerThreadWorker
from messenger.worker import EXIT_CODE_JOB_ABANDONED
from tests.integration.support import process_env, sigterm_and_wait

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

USERS = [f"76{n:014d}" for n in range(4)]


def thread_env(fake, concurrency: int = 4, **overrides: str) -> dict[str, str]:
    return process_env(fake, MESSENGER_WORKER_CONCURRENCY=str(concurrency), **overrides)


def statuses(mids: list[str]) -> Counter:
    return Counter(InboundMessage.objects.filter(mid__in=mids).values_list("status", flat=True))


def post_one_each(post_webhook, prefix: str) -> list[str]:
    """One message from each of :data:`USERS`; their mids."""
    mids = [f"{prefix}{n}" for n in range(len(USERS))]
    for mid, psid in zip(mids, USERS, strict=True):
        post_webhook(text_body(f"question {mid}", mid=mid, psid=psid))
    return mids


def test_default_worker_class_is_the_thread_worker(fake, workers):
    """Without RQ_WORKER_CLASS, settings and a real rqworker run MessengerThreadWorker, 16 threads."""
    assert settings.RQ["WORKER_CLASS"] == "messenger.thread_worker.MessengerThreadWorker"
    assert get_worker_class() is MessengerThreadWorker
    assert settings.MESSENGER_WORKER_CONCURRENCY == 16
    env = process_env(fake)
    env.pop("MESSENGER_WORKER_CONCURRENCY", None)
    worker = workers(env)
    wait_until(
        lambda: "messenger.worker.ready" in worker.output() and "messenger.worker.threads" in worker.output(),
        30,
        message="the worker to be ready and its threads started",
    )
    assert "worker_class=MessengerThreadWorker" in worker.output(), worker.output()
    assert "concurrency=16" in worker.output(), worker.output()


def test_one_users_burst_in_order_without_overlap_while_others_run_in_parallel(post_webhook, fake, workers):
    """One process, 4 threads, the model at 0.6 s: a user's 5 messages are answered in order, each chat
    call starting only after the previous reply went out, while 3 other users are answered meanwhile."""
    fake.chat_delay = 0.6
    workers(thread_env(fake, concurrency=4))
    burst_psid = "7700000000000001"
    base = int(time.time() * 1000)
    for i in range(5):
        post_webhook(text_body(f"burst {i}", mid=f"m_tb{i}", psid=burst_psid, ts_ms=base + i))
    others = post_one_each(post_webhook, "m_to")
    everyone = [f"m_tb{i}" for i in range(5)] + others
    wait_until(lambda: statuses(everyone) == {"answered": 9}, 60, message="all answered")

    burst_replies = [r for r in fake.messages() if r.psid == burst_psid]
    assert [r.body["message"]["text"] for r in burst_replies] == [f"echo: burst {i}" for i in range(5)]
    burst_calls = sorted((c for c in fake.chat_calls() if c[2].startswith("burst")), key=lambda c: c[0])
    assert [c[2] for c in burst_calls] == [f"burst {i}" for i in range(5)]
    for reply, next_call in zip(burst_replies[:-1], burst_calls[1:], strict=True):
        assert reply.at <= next_call[0], "a chat call for this user began before the previous reply was sent"
    # The others ran beside the burst: all three answered before its third reply.
    other_replies = [r for r in fake.messages() if r.psid in USERS]
    assert len(other_replies) == 4
    assert max(r.at for r in other_replies) < burst_replies[2].at


def test_sigterm_with_several_in_flight_finishes_them_all(post_webhook, fake, workers):
    """SIGTERM with 4 messages in flight on 4 threads: each is finished and answered once; exit 0."""
    fake.chat_delay = 2.0
    worker = workers(thread_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="15000"))
    mids = post_one_each(post_webhook, "m_tg")
    wait_until(lambda: statuses(mids) == {"processing": 4}, 30, message="4 messages in flight")
    code, took = sigterm_and_wait(worker, timeout=20)
    assert code == 0, worker.output()
    assert took < 10
    assert statuses(mids) == {"answered": 4}
    assert sorted(fake.replies()) == sorted(f"echo: question {mid}" for mid in mids)


def test_sigterm_past_timeout_puts_every_message_in_flight_back(post_webhook, fake, workers, new_worker_answers):
    """Past MESSENGER_SHUTDOWN_TIMEOUT_MS with 4 hung messages: all 4 go back on the queue, their senders
    are freed, the worker exits with EXIT_CODE_JOB_ABANDONED; the next worker answers each exactly once."""
    fake.chat_delay = 30.0
    worker = workers(thread_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="1000"))
    mids = post_one_each(post_webhook, "m_tp")
    wait_until(lambda: statuses(mids) == {"processing": 4}, 30, message="4 messages in flight")
    code, took = sigterm_and_wait(worker, timeout=20)
    assert code == EXIT_CODE_JOB_ABANDONED, worker.output()
    assert 0.9 <= took < 8, worker.output()
    assert statuses(mids) == {"queued": 4}
    assert fake.replies() == []
    assert not get_queue("messenger_fast").connection.keys("messenger:sender-lock:*")
    assert worker.output().count("messenger.worker.put-back") == 4

    fake.chat_delay = 0.0
    workers(thread_env(fake))
    wait_until(lambda: statuses(mids) == {"answered": 4}, 30, message="the next worker to answer")
    assert sorted(fake.replies()) == sorted(f"echo: question {mid}" for mid in mids)


def test_second_sigterm_puts_every_message_in_flight_back_at_once(post_webhook, fake, workers):
    """A second SIGTERM does not wait out a long shutdown timeout: the 4 messages go back at once."""
    fake.chat_delay = 30.0
    worker = workers(thread_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="30000"))
    mids = post_one_each(post_webhook, "m_t2")
    wait_until(lambda: statuses(mids) == {"processing": 4}, 30, message="4 messages in flight")
    worker.signal(signal.SIGTERM)
    time.sleep(1.2)  # rq ignores a repeat of the same signal within one second
    code, took = sigterm_and_wait(worker, timeout=20)
    assert code == EXIT_CODE_JOB_ABANDONED, worker.output()
    assert took < 5
    assert statuses(mids) == {"queued": 4}


def test_sigkill_with_several_sends_in_flight_answers_each_exactly_once(post_webhook, echoes, workers):
    """SIGKILL while 4 threads each wait on a Send API call Facebook has taken: every part is in doubt,
    its echo settles it, and the next worker sends nothing again; each user has exactly one reply."""
    fake = echoes
    fake.set_mode("late")  # Facebook takes each message at once and answers 6 s later
    fake.hang_s = 6.0
    env = thread_env(fake, MESSENGER_SEND_TIMEOUT_MS="10000", MESSENGER_ECHO_WAIT_MS="60000")
    worker = workers(env)
    mids = post_one_each(post_webhook, "m_tk")
    wait_until(lambda: fake.message_count() == 4, 30, message="4 sends taken by Facebook")
    worker.kill_hard(with_horse=False)
    assert statuses(mids) == {"processing": 4}

    assert OutboundPart.objects.filter(inbound__mid__in=mids, status=OutboundPart.Status.SENDING).count() == 4
    fake.set_mode("ok")
    workers(env)
    wait_until(lambda: statuses(mids) == {"answered": 4}, 60, message="the next worker to settle them")
    assert sorted(fake.replies()) == sorted(f"echo: question {mid}" for mid in mids)


def test_sigkill_with_several_in_flight_before_the_send_answers_each_exactly_once(post_webhook, fake, workers):
    """SIGKILL while 4 threads wait on the model: the leases lapse, the recovery sweep requeues the 4
    messages and a new worker answers each exactly once."""
    fake.chat_delay = 30.0
    env = thread_env(fake)
    worker = workers(env)
    mids = post_one_each(post_webhook, "m_tq")
    wait_until(lambda: statuses(mids) == {"processing": 4}, 30, message="4 messages in flight")
    worker.kill_hard(with_horse=False)

    fake.chat_delay = 0.0
    workers(env)
    wait_until(lambda: statuses(mids) == {"answered": 4}, 60, message="recovery of the killed messages")
    assert sorted(fake.replies()) == sorted(f"echo: question {mid}" for mid in mids)


def test_hung_model_times_out_without_holding_up_the_other_messages(post_webhook, fake, workers):
    """The model hangs on one question: that user gets the timeout fallback after the processing budget,
    and the 3 other messages in the same process are answered long before it."""
    fake.chat_delay_for["question m_th0"] = 60.0
    worker = workers(thread_env(fake, MESSENGER_PROCESSING_TIMEOUT_MS="3000", CHATBOT_API_TIMEOUT_MS="60000"))
    wait_until(lambda: "messenger.worker.threads" in worker.output(), 30, message="the worker to be ready")
    posted = time.perf_counter()
    mids = post_one_each(post_webhook, "m_th")
    wait_until(lambda: statuses(mids) == {"answered": 4}, 30, message="all answered")

    by_user = {r.psid: r for r in fake.messages()}
    assert by_user[USERS[0]].body["message"]["text"] == texts.PROCESSING_TIMEOUT
    assert by_user[USERS[0]].at - posted >= 3.0
    for psid in USERS[1:]:
        assert by_user[psid].at < by_user[USERS[0]].at - 1.0
    assert worker.alive()


def test_signals_in_a_row_while_giving_messages_back_still_exit(post_webhook, fake, workers):
    """SIGTERM, then SIGTERM and SIGINT again while the worker is giving its 4 messages back: it
    neither hangs on its own exit nor leaves one behind; each message is queued again exactly once."""
    fake.chat_delay = 30.0
    worker = workers(thread_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="1000"))
    mids = post_one_each(post_webhook, "m_ts")
    wait_until(lambda: statuses(mids) == {"processing": 4}, 30, message="4 messages in flight")
    worker.signal(signal.SIGTERM)
    time.sleep(1.05)  # the shutdown timeout is passing: the put-back is starting
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        worker.signal(sig)
        time.sleep(0.02)
    assert worker.wait(15) == EXIT_CODE_JOB_ABANDONED, worker.output()
    assert statuses(mids) == {"queued": 4}
    assert worker.output().count("messenger.worker.put-back") == 4


def test_stop_past_timeout_lets_sends_on_the_wire_land_instead_of_leaving_them_in_doubt(
    post_webhook, fake, workers
):
    """Past the shutdown timeout with 4 Send API calls on the wire (Facebook answering after 1.5 s,
    no echoes): the worker lets them land and records them before it exits, so the next worker sends
    nothing again; each user has exactly one reply."""
    fake.latency_s = 1.5
    env = thread_env(fake, MESSENGER_SHUTDOWN_TIMEOUT_MS="700", MESSENGER_ECHO_WAIT_MS="1000")
    worker = workers(env)
    mids = post_one_each(post_webhook, "m_tw")
    sending = OutboundPart.objects.filter(inbound__mid__in=mids, status=OutboundPart.Status.SENDING)
    wait_until(lambda: sending.count() == 4, 30, message="4 sends on the wire")
    code, took = sigterm_and_wait(worker, timeout=20)
    assert code == EXIT_CODE_JOB_ABANDONED, worker.output()
    assert took < 3.5, worker.output()
    assert "messenger.worker.sends-left-in-doubt" not in worker.output()
    assert statuses(mids) == {"answered": 4}

    fake.latency_s = 0.0
    workers(env)
    time.sleep(3)  # past the echo wait: a part left in doubt would have been sent again by now
    assert sorted(fake.replies()) == sorted(f"echo: question {mid}" for mid in mids)
