"""What several messenger test modules share: the pipeline tests' webhook bodies, worker and Send API calls
(pipeline, replies, delivery), and the formatter tests' text builder.

They run the pipeline end to end in-process: signed webhook POST -> rq job (SimpleWorker, real Redis)
-> Send API. The Graph API is the only thing mocked (``responses``, the ``graph`` fixture of
``conftest.py``); the database, Redis, the queues, the rules engine, the formatter and the Send API
client are the real ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rq import SimpleWorker

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
