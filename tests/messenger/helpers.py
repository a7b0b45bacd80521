"""What several messenger test modules share: the pipeline tests' webhook bodies, worker and Send API calls
(pipeline, replies, delivery), and the formatter tests' text builder.

They run the pipeline end to end in-process: signed webhook POST -> rq job (SimpleWorker, real Redis)
-> Send API. The Graph API is the only thing mocked (``responses``, the ``graph`` fixture of
``conftest.py``); the database, Redis, the queues, the rules engine, the formatter and the Send API
client are the real ones.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import responses
from rq import SimpleWorker

from harness.rows import inbound_text_make
from messenger.queues import get_queue
from tests.conftest import load_fixture

GRAPH = "https://graph.facebook.com/v25.0/me/messages"


def load_fixture_graph(name: str) -> dict:
    return json.loads(Path(f"tests/fixtures/graph/{name}.json").read_text())


def sent_messages(mock) -> list[dict]:
    """The bodies of Send API calls that carried a message (sender actions left out), in order.

    Each part's token (``message.metadata``, for its echo) is left out: the tests compare replies;
    :func:`sent_tokens` gives the tokens.
    """
    bodies = [json.loads(c.request.body) for c in mock.calls if c.request.url.startswith(GRAPH)]
    messages = [b for b in bodies if "message" in b]
    for body in messages:
        body["message"].pop("metadata", None)
    return messages


def sent_tokens(mock) -> list[str]:
    """The ``message.metadata`` token of every Send API call that carried a message, in order."""
    bodies = [json.loads(c.request.body) for c in mock.calls if c.request.url.startswith(GRAPH)]
    return [b["message"].get("metadata", "") for b in bodies if "message" in b]


def run_worker() -> None:
    queues = [get_queue("messenger_fast"), get_queue("messenger_slow")]
    SimpleWorker(queues, connection=queues[0].connection).work(burst=True)


def text_body(text: str, mid: str = "m_test_1", psid: str = "1256217357730577", ts: int | None = None) -> dict:
    body = load_fixture("text_message")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = psid
    item["timestamp"] = ts or int(time.time() * 1000)
    item["message"].update(mid=mid, text=text)
    return body


def fresh(fixture: str) -> dict:
    """A webhook fixture with its timestamps set to now (inside the messaging window)."""
    body = load_fixture(fixture)
    for entry in body["entry"]:
        for item in entry["messaging"]:
            item["timestamp"] = int(time.time() * 1000)
    return body


def sentences(count: int, *, words: int = 12) -> str:
    """``count`` distinct numbered sentences of ``words`` words each, separated by spaces."""
    return " ".join(f"Sentence {i} " + " ".join(["word"] * (words - 2)) + "." for i in range(count))


def user_footprint(*, page_id: str, psid: str, conversations: int = 1) -> dict:
    """Everything the channel stores about one user: inbox rows with parts, conversations with
    messages and a cached history, and observability events. Returns the ids made, per kind."""
    from django.utils import timezone

    from conversations import cache
    from conversations.models import Conversation, Message
    from conversations.services import device_id_for
    from messenger.models import OutboundPart
    from observability.services import event_record

    made: dict = {"inbound": [], "conversations": [], "cache_keys": []}
    for number in range(conversations):
        talk = Conversation.objects.create(
            page_id=page_id,
            psid=psid,
            device_id=device_id_for(page_id=page_id, psid=psid),
            status="expired" if number < conversations - 1 else "active",
        )
        Message.objects.bulk_create(
            [
                Message(conversation=talk, direction="in", text="hi"),
                Message(conversation=talk, direction="out", text="yo"),
            ]
        )
        cache.history_prime_empty(conversation_id=talk.id)
        made["conversations"].append(talk.id)
        made["cache_keys"].append(cache.history_key(conversation_id=talk.id))
        row = inbound_text_make(
            mid=f"m_{page_id}_{psid}_{number}", page_id=page_id, psid=psid, text="hi", fb_timestamp=number,
            status="answered", raw={"sender": {"id": psid}, "message": {"text": "hi"}},
            received_at=timezone.now(), conversation=talk,
        )
        OutboundPart.objects.create(inbound=row, position=0, body={"text": "yo"}, status="sent")
        made["inbound"].append(row.id)
        event_record(event_type="message_received", inbound=row)
        event_record(event_type="response_sent", inbound=row, latency_ms=5)
    return made


def stored_everywhere() -> str:
    """Every row of the channel's apps, serialised: a PSID or hash in here is still stored somewhere."""
    from django.apps import apps
    from django.core import serializers

    models = [
        model
        for label in ("messenger", "conversations", "observability")
        for model in apps.get_app_config(label).get_models()
    ]
    return "".join(serializers.serialize("json", model.objects.all()) for model in models)


def send_api_settings(*, token: str, graph_url: str, **more):
    """``override_settings`` for the Send API tests: a page token, the Graph URL and the contract's
    defaults they count on (3 retries, a circuit of 5 failures and 30 s), plus ``more``."""
    from django.test import override_settings

    return override_settings(
        MESSENGER_PAGE_ACCESS_TOKEN=token, MESSENGER_GRAPH_API_URL=graph_url, MESSENGER_MAX_RETRIES=3,
        MESSENGER_CIRCUIT_FAILURE_THRESHOLD=5, MESSENGER_CIRCUIT_COOLDOWN_MS=30_000, **more,
    )


GREETING = next(i for i in json.loads(Path("engine/rules.json").read_text())["intents"] if i["name"] == "greeting")


def assert_greeting_sent_to(body: dict, psid: str) -> None:
    """``body`` is exactly the Send API call answering a greeting from ``psid`` (one of the rules'
    greeting answers, with their quick replies)."""
    assert body == {
        "recipient": {"id": psid},
        "messaging_type": "RESPONSE",
        "message": {
            "text": body["message"]["text"],
            "quick_replies": [
                {"content_type": "text", "title": q["title"], "payload": q["payload"]}
                for q in GREETING["quick_replies"]
            ],
        },
    }
    assert body["message"]["text"] in GREETING["answers"]


@contextmanager
def send_api_answering(psid: str, *, bodies: list[dict] | None = None) -> Iterator[responses.RequestsMock]:
    """The Send API mocked as Facebook answers: a message gets a fresh id, a sender action an empty
    success; each request body is appended to ``bodies`` when given."""
    numbers = itertools.count(1)

    def answer(request):
        body = json.loads(request.body)
        if bodies is not None:
            bodies.append(body)
        if "sender_action" in body:
            return 200, {}, json.dumps({"recipient_id": psid})
        return 200, {}, json.dumps({"recipient_id": psid, "message_id": f"m_out_{next(numbers)}"})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, GRAPH, callback=answer, content_type="application/json")
        yield mock
