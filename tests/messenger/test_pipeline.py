"""Tests for messenger/pipeline.py: the life of a message end to end, and the drain of one sender in order.

Signed webhook POST -> rq job (SimpleWorker, real Redis) -> Send API; only the Graph API is mocked
(see ``tests/messenger/helpers.py``).
"""

from __future__ import annotations

import json
import time

import pytest

from conversations.models import Conversation, Message
from conversations.services import conversation_give_back, conversation_hand_over
from messenger import replies
from messenger.jobs import process_inbound
from messenger.models import InboundMessage, OutboundPart
from tests.messenger.helpers import assert_greeting_sent_to, load_fixture_graph, run_worker, sent_messages, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]


def test_text_message_is_answered_through_send_api(post_webhook, graph):
    """A greeting goes webhook -> queue -> worker -> rules engine -> one exact Send API call."""
    assert post_webhook(text_body("hello there")).status_code == 200
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.ANSWERED
    [body] = sent_messages(graph)
    assert_greeting_sent_to(body, "1256217357730577")
    part = OutboundPart.objects.get()
    assert part.status == OutboundPart.Status.SENT
    assert part.fb_message_id == load_fixture_graph("send_success")["message_id"]
    directions = list(Message.objects.order_by("id").values_list("direction", flat=True))
    assert directions == ["in", "out"]


def test_job_run_twice_sends_nothing_twice(post_webhook, graph):
    """Running the job again for an answered message sends nothing and keeps one reply."""
    post_webhook(text_body("hello"))
    run_worker()
    process_inbound(InboundMessage.objects.get().id)
    assert len(sent_messages(graph)) == 1
    assert Message.objects.filter(direction="out").count() == 1


def test_handed_over_conversation_stores_message_without_reply(post_webhook, graph):
    """With a human on the conversation the message is stored in the transcript but not answered."""
    post_webhook(text_body("hello", mid="m_1"))
    run_worker()
    conversation_hand_over(conversation=Conversation.objects.get())
    post_webhook(text_body("are you there?", mid="m_2"))
    run_worker()
    assert InboundMessage.objects.get(mid="m_2").status == InboundMessage.Status.HANDED_OVER
    assert Message.objects.filter(fb_message_id="m_2").exists()
    assert len(sent_messages(graph)) == 1
    conversation_give_back(conversation=Conversation.objects.get())
    post_webhook(text_body("help", mid="m_3"))
    run_worker()
    assert InboundMessage.objects.get(mid="m_3").status == InboundMessage.Status.ANSWERED
    assert len(sent_messages(graph)) == 2


def test_message_outside_messaging_window_is_expired_not_sent(post_webhook, graph):
    """A message more than 24 hours old is recorded as expired and nothing is sent."""
    post_webhook(text_body("hello", ts=int((time.time() - 25 * 3600) * 1000)))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.EXPIRED
    assert sent_messages(graph) == []


def test_burst_from_one_user_is_answered_in_timestamp_order(post_webhook, graph):
    """Messages of one user, posted out of order, are answered in the order of their timestamps."""
    now = int(time.time() * 1000)
    for i in (3, 1, 2):
        post_webhook(text_body(f"help {i}", mid=f"m_{i}", ts=now + i))
    run_worker()
    order = list(
        InboundMessage.objects.order_by("finished_at").values_list("mid", flat=True)
    )
    assert order == ["m_1", "m_2", "m_3"]
    assert len(sent_messages(graph)) == 3


def test_failing_message_does_not_block_the_next(post_webhook, graph, monkeypatch):
    """A message whose processing crashes is recorded as failed and the sender's next one is answered."""
    real = replies.reply_decide

    def flaky(*, inbound, context):
        if inbound.mid == "m_bad":
            raise RuntimeError("boom")
        return real(inbound=inbound, context=context)

    monkeypatch.setattr("messenger.replies.reply_decide", flaky)
    now = int(time.time() * 1000)
    post_webhook(text_body("hello", mid="m_bad", ts=now))
    post_webhook(text_body("help", mid="m_good", ts=now + 1))
    run_worker()
    bad, good = InboundMessage.objects.get(mid="m_bad"), InboundMessage.objects.get(mid="m_good")
    assert bad.status == InboundMessage.Status.FAILED and "RuntimeError" in bad.status_reason
    assert good.status == InboundMessage.Status.ANSWERED


# --- faults: lost leases, infrastructure errors, rq's exceptions, the drain's hand-on (issue 13) ------


def _recorded_reply(post_webhook, texts: list[str], *, mid: str = "m_test_1", status: str = "queued"):
    """A kept message whose reply parts are recorded already (``texts``), as a re-run finds them."""
    from messenger.services import outbound_part_create_many

    post_webhook(text_body("hello", mid=mid))
    row = InboundMessage.objects.get(mid=mid)
    conversation = Conversation.objects.create(page_id=row.page_id, psid=row.psid, device_id="d")
    InboundMessage.objects.filter(id=row.id).update(status=status, conversation=conversation)
    row.refresh_from_db()
    outbound_part_create_many(inbound=row, bodies=[{"text": t} for t in texts], intent="x", confidence=None)
    return row, conversation


def test_lost_lease_stops_before_next_send(post_webhook, monkeypatch):
    """The worker is paused past its lease during the first part's send (SIGSTOP, a long GC): it sends
    nothing more, and puts the message back for whoever takes the sender now. Exactly one send."""
    import responses

    from messenger import ordering
    from messenger.ordering import sender_lock_held
    from messenger.pipeline import sender_drain
    from messenger.queues import get_queue
    from tests.messenger.helpers import GRAPH, sent_tokens

    row, _ = _recorded_reply(post_webhook, ["one", "two"])
    real_clock = ordering._monotonic
    paused = {"for": 0.0}
    monkeypatch.setattr(ordering, "_monotonic", lambda: real_clock() + paused["for"])

    def answer(request):
        if "message" in json.loads(request.body):
            paused["for"] = 3600.0  # the send came back an hour later, by the monotonic clock
        return 200, {}, json.dumps(load_fixture_graph("send_success"))

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, GRAPH, callback=answer)
        sender_drain(inbound_id=row.id, worker_name="paused")
        tokens = sent_tokens(mock)

    parts = list(OutboundPart.objects.filter(inbound=row).order_by("position"))
    assert tokens == [parts[0].token]
    assert [p.status for p in parts] == [OutboundPart.Status.SENT, OutboundPart.Status.PENDING]
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.QUEUED  # put back, fenced
    assert get_queue("messenger_fast").get_job_ids()[-1] == row.job_id
    assert not sender_lock_held(page_id=row.page_id, psid=row.psid)


def test_worker_overtaken_by_a_new_claim_sends_nothing(post_webhook, graph):
    """Another worker claimed the message since this one read it (the fence moved): not one send."""
    from messenger.delivery import parts_send
    from messenger.selectors import inbound_parts
    from messenger.services import LEASE_LOST, inbound_start

    row, _ = _recorded_reply(post_webhook, ["one", "two"])
    stale = InboundMessage.objects.get(id=row.id)
    assert inbound_start(inbound=stale, worker_name="old")
    assert inbound_start(inbound=InboundMessage.objects.get(id=row.id), worker_name="new")
    assert parts_send(inbound=stale, parts=inbound_parts(inbound=stale)) == LEASE_LOST
    assert sent_messages(graph) == []


def test_part_refused_by_an_overtaken_attempt_fails_the_message_once(post_webhook, graph):
    """A part an earlier attempt saw refused for good is not sent again, and the message ends failed:
    it is not put back over and over until the messaging window closes."""
    from messenger.pipeline import sender_drain

    row, _ = _recorded_reply(post_webhook, ["one", "two"])
    OutboundPart.objects.filter(inbound=row, position=0).update(status=OutboundPart.Status.FAILED)
    assert sender_drain(inbound_id=row.id, worker_name="w") == "failed"
    row.refresh_from_db()
    assert (row.status, row.status_reason) == ("failed", "part 0 was refused earlier")
    assert sent_messages(graph) == []


@pytest.mark.parametrize("error", ["OperationalError", "InterfaceError", "RedisError"])
def test_infrastructure_error_puts_the_message_back_instead_of_failing(post_webhook, graph, monkeypatch, error):
    """A passing database or Redis error is not the message's fault: parked for a retry, not failed."""
    import django.db
    import redis.exceptions

    from messenger.queues import get_queue

    exc = getattr(django.db, error, None) or getattr(redis.exceptions, error)

    def broken(*, inbound, context):
        raise exc("server closed the connection unexpectedly")

    monkeypatch.setattr("messenger.replies.reply_decide", broken)
    post_webhook(text_body("hello"))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.DEFERRED
    assert row.status_reason == f"infrastructure error, retried: {error}"
    assert get_queue("messenger_fast").scheduled_job_registry.get_job_ids() == [row.job_id]
    assert sent_messages(graph) == []


@pytest.mark.parametrize("name", ["JobTimeoutException", "StopRequested"])
def test_rq_timeout_and_stop_requested_propagate(post_webhook, graph, monkeypatch, name):
    """rq's job timeout and stop request reach the worker (not swallowed as a failed message): the row
    stays open for the put-back or the sweep, and the sender's lock is free."""
    from rq.exceptions import StopRequested
    from rq.timeouts import JobTimeoutException

    from messenger.ordering import sender_lock_held
    from messenger.pipeline import sender_drain

    exc = {"JobTimeoutException": JobTimeoutException, "StopRequested": StopRequested}[name]

    def interrupted(*, inbound, context):
        raise exc("stop")

    monkeypatch.setattr("messenger.replies.reply_decide", interrupted)
    post_webhook(text_body("hello"))
    row = InboundMessage.objects.get()
    with pytest.raises(exc):
        sender_drain(inbound_id=row.id, worker_name="w")
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.PROCESSING
    assert not sender_lock_held(page_id=row.page_id, psid=row.psid)


def test_drain_releases_its_lock_before_handing_on(post_webhook, graph, monkeypatch):
    """Past its budget the drain hands the sender's next message to a fresh job only once its lock is
    free, so that job takes the sender at once instead of leaving the message to the sweep."""
    from messenger import pipeline
    from messenger.ordering import sender_lock_held

    held_at_hand_on = []
    real = pipeline.inbox_requeue_one

    def spy(*, inbound, **kwargs):
        held_at_hand_on.append(sender_lock_held(page_id=inbound.page_id, psid=inbound.psid))
        return real(inbound=inbound, **kwargs)

    monkeypatch.setattr(pipeline, "inbox_requeue_one", spy)
    monkeypatch.setattr(pipeline, "DRAIN_BUDGET_S", -1.0)
    post_webhook(text_body("hello"))
    row = InboundMessage.objects.get()
    pipeline.sender_drain(inbound_id=row.id, worker_name="w")
    assert held_at_hand_on == [False]

    monkeypatch.setattr(pipeline, "DRAIN_BUDGET_S", 60.0)
    run_worker()  # the handed-on job
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.ANSWERED


def test_parked_reply_not_sent_after_staff_took_over(post_webhook, graph):
    """A reply parked (circuit open, say) when staff take the conversation: its job runs later and sends
    nothing; the message ends handed over and its parts never go out."""
    row, conversation = _recorded_reply(post_webhook, ["one", "two"], status="deferred")
    conversation_hand_over(conversation=conversation)
    process_inbound(row.id)
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.HANDED_OVER
    assert sent_messages(graph) == []
    assert set(OutboundPart.objects.filter(inbound=row).values_list("status", flat=True)) == {"failed"}
