"""Tests pinning what answering one ordinary text message costs the worker (issue 14, item 2).

One returning user's text message through ``sender_drain`` (the rq job's body) with the rules engine
and the Send API mocked (``responses``), counted by ``harness.cost`` (every thread): SQL statements,
commits, Redis round trips with their commands, and Send API calls. The figures are exact on
purpose: a change that adds a statement or a round trip to every message must say so here.
``bench/message_cost.py`` prints the same counts with the CPU time per message.

Before issue 14 (main at 4501e97) the same message cost 22 statements in 3 transactions (28 round
trips to PostgreSQL with their BEGIN and COMMIT, as ``CaptureQueriesContext`` lists them), 21 Redis
round trips and 3 Send API calls (2 when the reply beat ``typing_on``).
"""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from harness.cost import cost_counted
from harness.rows import inbound_text_make
from messenger.models import InboundMessage
from messenger.pipeline import sender_drain
from observability.models import Event
from tests.messenger.helpers import send_api_answering

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("page_token")]

PAGE, PSID = "page-cost", "1256217357730577"

# What the statements do, in order (their first words and table): the drain's look-ups, the fenced
# claim, the conversation and the inbound line, the parts with the reply, the send, the transcript
# line, the outcome, the message's events in one INSERT, and the drain's two looks for more.
STATEMENTS = [
    "SELECT messenger_inboundmessage",  # sender_drain: the job's row
    "SELECT messenger_inboundmessage",  # under the lock: the sender's earliest open message
    "UPDATE messenger_inboundmessage",  # inbound_start: the fenced claim
    "SELECT conversations_conversation",  # context_load: the open conversation (history from Redis)
    "INSERT conversations_message",  # the user's line ...
    "UPDATE conversations_conversation",  # ... and the conversation's count (one transaction)
    "UPDATE messenger_inboundmessage",  # the reply's intent, under this worker's fence ...
    "INSERT messenger_outboundpart",  # ... and the parts, recorded before any is sent (one transaction)
    "UPDATE messenger_outboundpart",  # pending -> sending, only under this worker's fence
    "UPDATE messenger_outboundpart",  # sent
    "INSERT conversations_message",  # the reply's line ...
    "UPDATE conversations_conversation",  # ... and the count (one transaction)
    "UPDATE messenger_inboundmessage",  # answered, under this worker's fence
    "INSERT observability_event",  # intent_classified, response_generated, response_sent
    "SELECT messenger_inboundmessage",  # under the lock: anything more from this sender?
    "SELECT messenger_inboundmessage",  # after the release: anything that arrived meanwhile?
]
REDIS = [
    ("SET",),  # the sender's lock
    ("MULTI", "SET", "EXEC"),  # the message in flight
    ("GET",),  # the history, from the cache
    ("EVALSHA",),  # the user's line pushed onto it (compare-and-set)
    ("SADD", "HGET"),  # the page's token gate
    ("EVALSHA",),  # the circuit's permit (a clean circuit: no second call to record the success)
    ("EVALSHA",),  # the reply's line pushed onto the history
    ("HINCRBY", "HINCRBY", "HINCRBYFLOAT"),  # /metrics: one reply sent, its latency
    ("DEL", "EVAL"),  # release: the in-flight key and the lock
]


@pytest.fixture
def send_api_mock():
    """The Send API: a message gets a fresh id (as Facebook's), a sender action an empty success."""
    with send_api_answering(PSID) as mock:
        yield mock


def _row(mid: str) -> InboundMessage:
    return inbound_text_make(
        mid=mid, page_id=PAGE, psid=PSID, text="help", fb_timestamp=int(time.time() * 1000),
        status="queued", queue_name="messenger_fast",
    )


def _statement(sql: str) -> str:
    words = sql.replace('"', "").split()
    table = words[{"SELECT": words.index("FROM") + 1 if "FROM" in words else 1, "INSERT": 2}.get(words[0], 1)]
    return f"{words[0]} {table.split('.')[0]}"


def _answer_counted(send_api_mock):
    for mid in ("m_warm_1", "m_warm_2"):  # the conversation, the cache, the connections, the scripts
        assert sender_drain(inbound_id=_row(mid).id, worker_name="cost") == InboundMessage.Status.ANSWERED
    row = _row("m_counted")
    calls_before = len(send_api_mock.calls)
    with cost_counted() as cost, CaptureQueriesContext(connection) as captured:
        assert sender_drain(inbound_id=row.id, worker_name="cost") == InboundMessage.Status.ANSWERED
    time.sleep(0.9)  # past MESSENGER_TYPING_DELAY_MS: a sender action would have gone out by now
    return row, cost, captured, [json.loads(c.request.body) for c in send_api_mock.calls[calls_before:]]


def test_text_message_costs_sixteen_statements_in_three_transactions(send_api_mock):
    """A returning user's text message: exactly these 16 statements, 3 of them groups in a transaction."""
    _, cost, captured, _calls = _answer_counted(send_api_mock)
    assert [_statement(sql) for sql in cost.sql] == STATEMENTS, cost.report()
    assert cost.commits == 3
    # Django's own count, in the job's thread: the same statements plus each transaction's BEGIN and
    # COMMIT, 22 round trips to PostgreSQL in all (28 before issue 14).
    logged = [query["sql"] for query in captured.captured_queries]
    assert [_statement(sql) for sql in logged if sql not in ("BEGIN", "COMMIT")] == STATEMENTS
    assert (logged.count("BEGIN"), logged.count("COMMIT"), len(logged)) == (3, 3, 22)


def test_text_message_costs_nine_redis_round_trips(send_api_mock):
    """Exactly these 9 round trips to Redis, every thread and client counted."""
    _, cost, _captured, _calls = _answer_counted(send_api_mock)
    assert cost.redis == REDIS, cost.report()


def test_text_message_costs_one_send_api_call(send_api_mock):
    """The rules engine answers at once: the reply is the only Send API call, no sender action."""
    _, _cost, _captured, calls = _answer_counted(send_api_mock)
    assert [sorted(body) for body in calls] == [["message", "messaging_type", "recipient"]]


def test_text_message_events_are_all_written(send_api_mock):
    """The one INSERT carries every event of the message."""
    row, _cost, _captured, _calls = _answer_counted(send_api_mock)
    kinds = list(Event.objects.filter(inbound_id=row.id).order_by("id").values_list("event_type", flat=True))
    assert kinds == ["intent_classified", "response_generated", "response_sent"]
