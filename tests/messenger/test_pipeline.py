"""The pipeline end to end in-process: signed webhook POST -> rq job (SimpleWorker, real Redis) -> Send API.

The Graph API is the only thing mocked (``responses``); the database, Redis, the queues, the rules
engine, the formatter and the Send API client are the real ones.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import responses
from django.test import override_settings
from rq import SimpleWorker

from conversations.models import Conversation, Message
from conversations.services import conversation_give_back, conversation_hand_over
from engine.types import Reply
from messenger import texts
from messenger.circuit import get_breaker
from messenger.jobs import process_inbound
from messenger.models import InboundMessage, OutboundPart
from messenger.queues import get_queue
from tests.conftest import load_fixture

GRAPH = "https://graph.facebook.com/v25.0/me/messages"
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("page_token")]
RULES = json.loads(Path("engine/rules.json").read_text())


@pytest.fixture
def page_token(settings):
    settings.MESSENGER_PAGE_ACCESS_TOKEN = "EAAtestpagetoken"
    get_breaker().reset()


@pytest.fixture
def graph():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, GRAPH, json=load_fixture_graph("send_success"))
        yield mock


def load_fixture_graph(name):
    return json.loads(Path(f"tests/fixtures/graph/{name}.json").read_text())


def sent_messages(mock) -> list[dict]:
    """The bodies of Send API calls that carried a message (sender actions left out), in order."""
    bodies = [json.loads(c.request.body) for c in mock.calls if c.request.url.startswith(GRAPH)]
    return [b for b in bodies if "message" in b]


def run_worker():
    queues = [get_queue("messenger_fast"), get_queue("messenger_slow")]
    SimpleWorker(queues, connection=queues[0].connection).work(burst=True)


def text_body(text: str, mid: str = "m_test_1", psid: str = "1256217357730577", ts: int | None = None) -> dict:
    body = load_fixture("text_message")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = psid
    item["timestamp"] = ts or int(time.time() * 1000)
    item["message"].update(mid=mid, text=text)
    return body


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


def test_message_put_back_midway_sends_only_missing_parts(post_webhook, graph):
    """A message with its first part sent and the second not: a re-run sends only the second."""
    post_webhook(text_body("hello"))
    row = InboundMessage.objects.get()
    Conversation.objects.create(page_id=row.page_id, psid=row.psid, device_id="d")
    OutboundPart.objects.create(inbound=row, position=0, body={"text": "one"}, status="sent")
    OutboundPart.objects.create(inbound=row, position=1, body={"text": "two"})
    InboundMessage.objects.filter(id=row.id).update(
        status="processing", conversation=Conversation.objects.get()
    )
    process_inbound(row.id)
    assert [b["message"] for b in sent_messages(graph)] == [{"text": "two"}]
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.ANSWERED


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


class _SlowEngine:
    name = "slow"

    def __init__(self):
        self.release = threading.Event()

    def reply(self, context, *, timeout_s=None):
        self.release.wait(5)
        return Reply(text="the late answer", intent="late", confidence=1.0)


@override_settings(MESSENGER_PROCESSING_TIMEOUT_MS=50)
def test_processing_timeout_configurable(post_webhook, graph, monkeypatch):
    """Past the processing timeout the user gets the 'taking longer' fallback; the late answer is dropped."""
    engine = _SlowEngine()
    monkeypatch.setattr("messenger.pipeline.get_engine", lambda: engine)
    post_webhook(text_body("what is the meaning of life?"))
    started = time.monotonic()
    run_worker()
    assert time.monotonic() - started < 3
    engine.release.set()
    assert [b["message"]["text"] for b in sent_messages(graph)] == [texts.PROCESSING_TIMEOUT]
    assert InboundMessage.objects.get().intent == "timeout"


def test_message_outside_messaging_window_is_expired_not_sent(post_webhook, graph):
    """A message more than 24 hours old is recorded as expired and nothing is sent."""
    post_webhook(text_body("hello", ts=int((time.time() - 25 * 3600) * 1000)))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.EXPIRED
    assert sent_messages(graph) == []


def test_recipient_unavailable_marks_conversation_unreachable(post_webhook):
    """Facebook's 'user unavailable' fails the message with its reason and marks the conversation unreachable."""
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, GRAPH, status=400, json=load_fixture_graph("send_error_user_unavailable"))
        post_webhook(text_body("hello"))
        run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.FAILED
    assert "recipient_unavailable" in row.status_reason
    assert Conversation.objects.get().status == Conversation.Status.UNREACHABLE


@override_settings(
    MESSENGER_CIRCUIT_FAILURE_THRESHOLD=1, MESSENGER_MAX_RETRIES=0, MESSENGER_CIRCUIT_COOLDOWN_MS=60000
)
def test_circuit_open_defers_message_and_delivers_after_close(post_webhook, graph):
    """An open circuit parks the message (deferred, scheduled); once it closes the message is delivered once."""
    graph.replace(responses.POST, GRAPH, status=500, json=load_fixture_graph("send_error_service_unavailable"))
    post_webhook(text_body("hello"))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.DEFERRED
    assert row.not_before is not None
    scheduled = get_queue("messenger_fast").scheduled_job_registry.get_job_ids()
    assert scheduled == [row.job_id]

    graph.replace(responses.POST, GRAPH, json=load_fixture_graph("send_success"))
    get_breaker().reset()
    InboundMessage.objects.filter(id=row.id).update(not_before=None)
    process_inbound(row.id)
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.ANSWERED
    assert len([b for b in sent_messages(graph)]) >= 1
    assert OutboundPart.objects.get().status == OutboundPart.Status.SENT


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
    real = __import__("messenger.pipeline", fromlist=["_decide_reply"])._decide_reply

    def flaky(inbound, context):
        if inbound.mid == "m_bad":
            raise RuntimeError("boom")
        return real(inbound, context)

    monkeypatch.setattr("messenger.pipeline._decide_reply", flaky)
    now = int(time.time() * 1000)
    post_webhook(text_body("hello", mid="m_bad", ts=now))
    post_webhook(text_body("help", mid="m_good", ts=now + 1))
    run_worker()
    bad, good = InboundMessage.objects.get(mid="m_bad"), InboundMessage.objects.get(mid="m_good")
    assert bad.status == InboundMessage.Status.FAILED and "RuntimeError" in bad.status_reason
    assert good.status == InboundMessage.Status.ANSWERED


# --- one end-to-end test per message kind ------------------------------------------------------------


def _fresh(fixture: str) -> dict:
    body = load_fixture(fixture)
    for entry in body["entry"]:
        for item in entry["messaging"]:
            item["timestamp"] = int(time.time() * 1000)
    return body


def test_image_attachment_end_to_end_is_acknowledged(post_webhook, graph):
    """An image goes to messenger_slow and is acknowledged with the image text."""
    post_webhook(_fresh("image_attachment"))
    run_worker()
    assert [b["message"] for b in sent_messages(graph)] == [{"text": texts.IMAGE_RECEIVED}]


def test_sticker_like_end_to_end_gets_friendly_acknowledgement(post_webhook, graph):
    """The thumbs-up 'like' sticker gets the sticker acknowledgement."""
    post_webhook(_fresh("sticker_like"))
    run_worker()
    assert [b["message"] for b in sent_messages(graph)] == [{"text": texts.STICKER_RECEIVED}]


@pytest.mark.parametrize("fixture", ["audio_attachment", "video_attachment", "file_attachment"])
def test_unsupported_attachment_end_to_end_gets_unsupported_reply(post_webhook, graph, fixture):
    """Audio, video and files get the 'unsupported' reply."""
    post_webhook(_fresh(fixture))
    run_worker()
    assert [b["message"] for b in sent_messages(graph)] == [{"text": texts.ATTACHMENT_UNSUPPORTED}]


def test_location_end_to_end_gets_no_reply(post_webhook, graph):
    """A location is stored and needs no reply: nothing is sent."""
    post_webhook(_fresh("location_attachment"))
    run_worker()
    assert InboundMessage.objects.get().status == InboundMessage.Status.NO_REPLY
    assert sent_messages(graph) == []


def test_shared_link_end_to_end_is_answered_by_engine(post_webhook, graph):
    """A shared link (fallback) is answered by the engine from its title and URL."""
    post_webhook(_fresh("fallback_attachment"))
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.ANSWERED
    assert len(sent_messages(graph)) == 1


def test_postback_end_to_end_answers_payload(post_webhook, graph):
    """A Get Started postback greets the new user, with the rules file's answer."""
    post_webhook(_fresh("postback_get_started"))
    run_worker()
    [body] = sent_messages(graph)
    assert body["recipient"] == {"id": "1256217357730577"} or body["recipient"]["id"]
    assert InboundMessage.objects.get().status == InboundMessage.Status.ANSWERED


def test_quick_reply_end_to_end_is_answered(post_webhook, graph):
    """A tapped quick reply is answered and the tap is kept in the transcript."""
    post_webhook(_fresh("quick_reply"))
    run_worker()
    assert InboundMessage.objects.get().status == InboundMessage.Status.ANSWERED
    assert Message.objects.get(direction="in").structured["payload"] == "MY_PAYLOAD"
