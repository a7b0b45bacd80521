"""Tests for messenger/pipeline.py: the life of a message end to end, and the drain of one sender in order.

Signed webhook POST -> rq job (SimpleWorker, real Redis) -> Send API; only the Graph API is mocked
(see ``tests/messenger/helpers.py``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conversations.models import Conversation, Message
from conversations.services import conversation_give_back, conversation_hand_over
from messenger import replies
from messenger.jobs import process_inbound
from messenger.models import InboundMessage, OutboundPart
from tests.messenger.helpers import load_fixture_graph, run_worker, sent_messages, text_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]
RULES = json.loads(Path("engine/rules.json").read_text())


def test_text_message_is_answered_through_send_api(post_webhook, graph):
    """A greeting goes webhook -> queue -> worker -> rules engine -> one exact Send API call."""
    assert post_webhook(text_body("hello there")).status_code == 200
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.ANSWERED
    [body] = sent_messages(graph)
    greeting = next(i for i in RULES["intents"] if i["name"] == "greeting")
    assert body == {
        "recipient": {"id": "1256217357730577"},
        "messaging_type": "RESPONSE",
        "message": {
            "text": body["message"]["text"],
            "quick_replies": [
                {"content_type": "text", "title": q["title"], "payload": q["payload"]}
                for q in greeting["quick_replies"]
            ],
        },
    }
    assert body["message"]["text"] in greeting["answers"]
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
