"""Exactly one reply under ambiguous sends and lost leases (issue 13), with real ``rqworker`` processes.

The Send API is the harness's fake Graph on loopback. Facebook's echoes are played by the fake too:
it posts each accepted message back, signed, to the app's webhook served by ``live_server`` (same
test database), as the ``message_echoes`` subscription does.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness.processes import wait_until
from harness.webhooks import text_body
from messenger.models import InboundMessage, OutboundPart
from tests.integration.support import process_env, sigterm_and_wait, status_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_send_accepted_after_timeout_is_not_resent(post_webhook, echoes, workers):
    """Facebook takes the send but answers after the client's timeout: the worker parks the message,
    the echo settles the part, and the user gets the reply exactly once."""
    fake = echoes
    fake.set_mode("late")
    fake.hang_s = 1.5
    workers(process_env(fake, MESSENGER_SEND_TIMEOUT_MS="500", MESSENGER_ECHO_WAIT_MS="30000"))
    post_webhook(text_body("late question", mid="m_late"))
    wait_until(lambda: fake.message_count() == 1, 30, message="the send accepted")
    accepted = time.monotonic()
    fake.set_mode("ok")

    wait_until(lambda: status_of("m_late") == "answered", 30, message="answered after the echo")
    settled_s = time.monotonic() - accepted
    print(f"in doubt -> answered by its echo in {settled_s:.2f} s (echo wait 30 s)")
    assert settled_s < 10  # the echo wakes the parked message: it does not wait out the 30 s
    assert fake.replies() == ["echo: late question"]
    part = OutboundPart.objects.get(inbound__mid="m_late")
    assert part.status == OutboundPart.Status.SENT and part.fb_message_id.startswith("m_fake_")
    assert part.attempts == 1


def test_stop_during_a_send_is_not_resent(post_webhook, echoes, workers):
    """SIGTERM while a send Facebook accepted is still unanswered, and the shutdown timeout kills the
    work horse mid-send: the part is in doubt, its echo settles it, the next worker sends nothing again."""
    fake = echoes
    fake.set_mode("late")
    fake.hang_s = 6.0
    fake.echo_delay_s = 4.0  # the echo comes after the stop: the part is in doubt meanwhile
    env = process_env(fake, MESSENGER_SEND_TIMEOUT_MS="10000", MESSENGER_SHUTDOWN_TIMEOUT_MS="500",
                      MESSENGER_ECHO_WAIT_MS="30000")
    worker = workers(env)
    post_webhook(text_body("stopped mid-send", mid="m_stop"))
    wait_until(lambda: fake.message_count() == 1, 30, message="the send accepted")
    sigterm_and_wait(worker)
    assert OutboundPart.objects.get(inbound__mid="m_stop").status == OutboundPart.Status.SENDING
    fake.set_mode("ok")

    workers(env)
    wait_until(lambda: status_of("m_stop") == "answered", 40, message="answered by the next worker")
    assert fake.replies() == ["echo: stopped mid-send"]


def test_lost_lease_stops_before_next_send(post_webhook, echoes, workers):
    """A worker (and its work horse) paused by SIGSTOP past its lease while sending the first part of a
    long reply: another worker takes the sender, and on SIGCONT the paused one sends nothing more.
    Every part reaches the user exactly once, in order."""
    fake = echoes
    fake.latency_s = 1.0  # each send takes a second: time to pause the worker in the middle of one
    env = process_env(fake, MESSENGER_LEASE_SECONDS="2", MESSENGER_ECHO_WAIT_MS="20000",
                      MESSENGER_SEND_TIMEOUT_MS="5000")
    paused = workers(env)
    text = " ".join(f"Sentence number {i} of a long question that needs a long answer." for i in range(80))
    post_webhook(text_body(text, mid="m_long"))
    wait_until(lambda: OutboundPart.objects.filter(inbound__mid="m_long", status="sending").exists(), 30,
               message="the first part being sent")
    parts = OutboundPart.objects.filter(inbound__mid="m_long").count()
    assert parts >= 2
    horse = paused.horse_pid()
    os.killpg(paused.pid, signal.SIGSTOP)
    if horse:
        os.kill(horse, signal.SIGSTOP)
    try:
        workers(env)  # takes the sender once the paused worker's lease has run out
        time.sleep(6)  # three leases
    finally:
        os.killpg(paused.pid, signal.SIGCONT)
        if horse:
            os.kill(horse, signal.SIGCONT)
    fake.latency_s = 0.0

    wait_until(lambda: status_of("m_long") == "answered", 60, message="the long reply answered")
    sent = [r.body["message"]["metadata"] for r in fake.messages()]
    parts_in_order = OutboundPart.objects.filter(inbound__mid="m_long").order_by("position")
    tokens = list(parts_in_order.values_list("token", flat=True))
    assert sent == tokens  # each part once, in order
    assert InboundMessage.objects.get(mid="m_long").fence >= 2  # claimed again by the second worker
