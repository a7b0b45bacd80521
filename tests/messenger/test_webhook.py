"""The V2 webhook's ingress (messenger/views.py): verification, bad input, every event kind, the inbox, enqueueing.

The signature check has its own file (test_signature.py), and so has what the parser reads out of a
body (test_parsing.py).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rq.job import Job

from harness import webhooks
from messenger.inbox import job_id_for
from messenger.models import InboundMessage
from messenger.parsing import UNREADABLE_KINDS
from messenger.queues import get_queue
from observability import metrics
from observability.models import Event
from tests.conftest import fixture_bytes, load_fixture, sign
from tests.messenger.event_fixtures import ACTIONABLE_FIXTURES, IGNORED_FIXTURES
from tests.messenger.helpers import assert_greeting_sent_to, run_worker, sent_messages

URL = "/messenger/v2/webhook"
pytestmark = pytest.mark.django_db


def queued_job_ids(name="messenger_fast"):
    return get_queue(name).get_job_ids()


# --- verification GET ------------------------------------------------------------------------------


def test_verification_with_right_token_echoes_challenge(client):
    """Facebook's subscribe call with our verify token gets the challenge back as plain text."""
    response = client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token",
                                "hub.challenge": "1158201444"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "1"},
        {},
    ],
)
def test_verification_with_wrong_or_missing_token_is_forbidden(client, params):
    """A wrong, missing or non-subscribe verification is refused with 403 and no challenge."""
    response = client.get(URL, params)
    assert response.status_code == 403
    assert b"1" not in response.content


@override_settings(MESSENGER_VERIFY_TOKEN="")
def test_verification_without_configured_token_is_forbidden(client):
    """An unset verify token never verifies anything, not even an empty token."""
    response = client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"})
    assert response.status_code == 403


def test_verification_request_fixture_is_answered(client):
    """The documented sample verification request is answered with its challenge."""
    sample = load_fixture("verification_request")
    with override_settings(MESSENGER_VERIFY_TOKEN=sample["query"]["hub.verify_token"]):
        response = client.get(URL, sample["query"])
    assert response.status_code == 200
    assert response.content.decode() == sample["query"]["hub.challenge"]


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"object": "page", "entry": [', 400),  # malformed JSON
        (b"", 400),  # empty body
        (b'["object", "page"]', 400),  # JSON, not an object
        (b'"page"', 400),
        (b'{"object": "instagram", "entry": []}', 404),  # another product
        (b'{"object": 7, "entry": []}', 400),
        (b'{"object": "page"}', 400),  # entry missing
        (b'{"object": "page", "entry": {"id": "1"}}', 400),  # entry of the wrong type
        (b'{"object": "page", "entry": [], "n": NaN}', 400),  # NaN is not JSON (and jsonb refuses it)
        (b'{"object": "page", "entry": [{"id": "1", "time": Infinity, "messaging": []}]}', 400),
    ],
)
def test_bad_body_gets_clear_4xx_and_stores_nothing(post_webhook, raw, status):
    """Each kind of malformed body gets its 4xx with a JSON error, never a 500 or a row."""
    response = post_webhook(raw)
    assert response.status_code == status
    assert "error" in response.json()
    assert InboundMessage.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"object": "page", "entry": ["x"]}', "entry[0] must be an object"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": {}}]}', "entry[0].messaging must be a list"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [7]}]}',
         "entry[0].messaging[0] must be an object"),
        (b'{"object": "page", "entry": [{"id": "1", "time": "soon", "messaging": []}]}',
         "entry[0].time must be a number"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": []}, '
         b'"message": {"mid": "m1", "text": "x"}}]}]}', "entry[0].messaging[0].sender.id must be"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": 1, '
         b'"message": {"mid": "m1", "text": 5}}]}]}', "entry[0].messaging[0].message.text must be a string"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": 1, '
         b'"message": {"mid": "m1", "attachments": {"type": "image"}}}]}]}',
         "entry[0].messaging[0].message.attachments must be a list"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": 1, '
         b'"message": {"text": "no mid"}}]}]}', "entry[0].messaging[0].message.mid must be"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": "1", '
         b'"message": {"mid": "m1", "text": "x"}}]}]}', "entry[0].messaging[0].timestamp must be a number"),
    ],
)
def test_unreadable_entry_or_item_is_kept_raw_and_answered_200(post_webhook, raw, reason):
    """A signed body whose entry or item has the wrong shape gets 200; the odd part is kept raw, final,
    with the problem as its reason, and no job is queued for it."""
    response = post_webhook(raw)
    assert response.status_code == 200
    assert response.json()["unreadable"] == 1 and response.json()["kept"] == 0
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.UNREADABLE and row.kind == InboundMessage.Kind.UNREADABLE
    assert row.status_reason.startswith(reason)
    assert row.raw == json.loads(raw)["entry"][0] or row.raw in json.loads(raw)["entry"][0]["messaging"]
    assert row.finished_at is not None
    assert queued_job_ids() == [] and queued_job_ids("messenger_slow") == []


def test_redelivered_unreadable_item_is_kept_once(post_webhook):
    """Facebook's redelivery of a body with an odd item is recognised: one row, counted as a duplicate."""
    raw = (b'{"object": "page", "entry": [{"id": "1", "time": 1, "messaging": [{"sender": {"id": "2"}, '
           b'"timestamp": 1, "message": {"mid": "m1", "text": {"new": "shape"}}}]}]}')
    assert post_webhook(raw).json()["unreadable"] == 1
    assert post_webhook(raw).json()["duplicates"] == 1
    assert InboundMessage.objects.count() == 1


def test_unknown_event_is_kept_raw_as_unreadable(post_webhook):
    """An item with no event key we know (a type Facebook added) is kept raw for staff, not answered."""
    response = post_webhook("unknown_event")
    assert response.status_code == 200
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.UNREADABLE
    assert row.status_reason == "entry[0].messaging[0] has no event key we know (EVENT_TYPE_THAT_IS_UNSUPPORTED)"
    assert row.psid == "1256217357730577" and row.page_id == "1717527131834678"
    assert "EVENT_TYPE_THAT_IS_UNSUPPORTED" in row.raw
    assert queued_job_ids() == []


def test_non_utf8_body_is_refused_with_400(post_webhook):
    """Bytes that are not UTF-8 (correctly signed) get 400, not a 500."""
    raw = b'{"object": "page", "entry": [], "x": "\xff\xfe"}'
    response = post_webhook(raw)
    assert response.status_code == 400
    assert response.json()["error"] == "body is not UTF-8"


@override_settings(MESSENGER_MAX_BODY_BYTES=1000)
def test_body_over_size_limit_is_refused_with_413(post_webhook):
    """A body over MESSENGER_MAX_BODY_BYTES gets 413 before its signature or JSON is looked at."""
    raw = json.dumps({"object": "page", "entry": [], "pad": "x" * 2000}).encode()
    response = post_webhook(raw)
    assert response.status_code == 413
    assert InboundMessage.objects.count() == 0


def test_errors_and_logs_never_contain_secrets(post_webhook, client, caplog):
    """Refusals name the problem, never the app secret, verify token or the signature sent."""
    caplog.set_level(logging.DEBUG)
    body = fixture_bytes("text_message")
    bad = sign(body, "attacker")
    responses = [
        post_webhook(body, signature=bad),
        post_webhook(b"{not json"),
        client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "c"}),
    ]
    text = caplog.text + "".join(r.content.decode() for r in responses)
    for secret in ("test-app-secret", "test-verify-token", bad[7:]):
        assert secret not in text


def test_get_and_post_only(client):
    """Other methods are refused by the view, not processed."""
    assert client.put(URL, data=b"{}", content_type="application/json").status_code == 405


# --- event kinds -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("fixture", "kind"), ACTIONABLE_FIXTURES.items())
def test_actionable_event_is_kept_and_queued(post_webhook, fixture, kind):
    """A user message or postback is kept in the inbox with its kind and its job is queued."""
    response = post_webhook(fixture)
    assert response.status_code == 200
    row = InboundMessage.objects.get()
    assert row.kind == kind
    assert row.status == InboundMessage.Status.QUEUED
    queue = "messenger_slow" if kind == InboundMessage.Kind.ATTACHMENTS else "messenger_fast"
    assert row.queue_name == queue
    assert queued_job_ids(queue) == [job_id_for(row.id)]


@pytest.mark.parametrize(
    ("fixture", "kind"), [(f, k) for f, k in IGNORED_FIXTURES.items() if k not in UNREADABLE_KINDS]
)
def test_non_actionable_event_is_acknowledged_and_ignored(post_webhook, fixture, kind):
    """Echoes, receipts, reactions, handover and standby events get 200 and no job.

    A standby message is kept as a final row (never answered; tests/messenger/test_handover.py)."""
    response = post_webhook(fixture)
    assert response.status_code == 200
    assert response.json()["received"] == 1
    expected = [InboundMessage.Status.HANDED_OVER] if fixture == "standby" else []
    assert list(InboundMessage.objects.values_list("status", flat=True)) == expected
    assert queued_job_ids() == [] and queued_job_ids("messenger_slow") == []


def test_text_message_row_holds_the_message(post_webhook):
    """The kept row has the sender, page, text, Facebook's mid and timestamp, and the raw item."""
    post_webhook("text_message")
    row = InboundMessage.objects.get()
    assert (row.psid, row.page_id, row.text) == ("29089347883997073", "516746941531643", "+")
    assert row.mid.startswith("m_ldDGcj2W5w5M")
    assert row.fb_timestamp == 1741510337765
    assert row.raw["message"]["text"] == "+"


def test_postback_without_mid_gets_stable_derived_id(post_webhook):
    """A postback has no mid of its own: the derived id is stable, so a redelivery is recognised."""
    post_webhook("postback")
    post_webhook("postback")
    row = InboundMessage.objects.get()
    assert row.mid.startswith("pb.")
    assert row.payload == "MY_PAYLOAD"


def test_quick_reply_keeps_payload_and_text(post_webhook):
    """A tapped quick reply keeps both its payload and the text shown."""
    post_webhook("quick_reply")
    row = InboundMessage.objects.get()
    assert (row.kind, row.payload, row.text) == ("quick_reply", "MY_PAYLOAD", "Red")


def test_batched_body_is_kept_whole_in_timestamp_order(post_webhook):
    """Several entries and items, out of time order: all kept, ids ascending by Facebook's timestamps."""
    response = post_webhook("batched_multi_entry")
    assert response.status_code == 200
    rows = list(InboundMessage.objects.order_by("id"))
    assert len(rows) == 5
    stamps = [r.fb_timestamp for r in rows]
    assert stamps == sorted(stamps)
    assert rows[0].text == "hey" and rows[-1].text == "carbon"
    assert queued_job_ids() == [job_id_for(r.id) for r in rows]


def test_mixed_body_keeps_messages_and_ignores_the_rest(post_webhook):
    """One body with a message, a delivery and an echo keeps just the message."""
    body = load_fixture("text_message")
    body["entry"].append(load_fixture("delivery")["entry"][0])
    body["entry"].append(load_fixture("echo")["entry"][0])
    response = post_webhook(body)
    assert response.json() == {"received": 3, "kept": 1, "unreadable": 0, "duplicates": 0}


# --- durability ------------------------------------------------------------------------------------


def test_redelivered_body_makes_one_row_and_one_job(post_webhook):
    """Facebook redelivers what it thinks we missed: the same body twice is kept and queued once."""
    first = post_webhook("text_message")
    second = post_webhook("text_message")
    assert first.status_code == second.status_code == 200
    assert second.json()["duplicates"] == 1
    row = InboundMessage.objects.get()
    assert queued_job_ids() == [job_id_for(row.id)]
    job = Job.fetch(job_id_for(row.id), connection=get_queue("messenger_fast").connection)
    assert job.args == (row.id,)
    assert job.func_name == "messenger.jobs.process_inbound"


@pytest.fixture
def redis_round_trips(monkeypatch):
    """Every command or pipeline redis-py sends (one write each: one round trip), as sent."""
    from redis.connection import Connection

    sent: list = []
    original = Connection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    return sent


def test_one_message_costs_one_sql_statement_and_one_redis_round_trip(post_webhook, redis_round_trips):
    """The ingress budget: the row and its event in one INSERT statement; the job and the answer's
    count in one Redis transaction."""
    post_webhook(webhooks.text_body("warm-up", mid="m_warm"))  # connections and cached clients
    redis_round_trips.clear()

    with CaptureQueriesContext(connection) as queries:
        response = post_webhook(webhooks.text_body("hello", mid="m_budget"))

    assert response.status_code == 200
    assert len(queries.captured_queries) == 1
    assert len(redis_round_trips) == 1
    row = InboundMessage.objects.get(mid="m_budget")
    assert queued_job_ids() == [job_id_for(InboundMessage.objects.get(mid="m_warm").id), job_id_for(row.id)]
    assert Event.objects.get(mid="m_budget").inbound_id == row.id
    assert metrics.counters_read().webhook_answers == {("POST", "200"): 2}


def test_batched_body_costs_one_statement_and_one_round_trip_whatever_it_holds(post_webhook, redis_round_trips):
    """Three messages from two senders: still one SQL statement and one Redis round trip."""
    post_webhook(webhooks.text_body("warm-up", mid="m_warm"))
    redis_round_trips.clear()
    body = webhooks.text_body("one", mid="m_b1")
    for mid, psid in (("m_b2", "7000000000000002"), ("m_b3", "7000000000000001")):
        item = webhooks.text_body("more", mid=mid, psid=psid)["entry"][0]["messaging"][0]
        body["entry"][0]["messaging"].append(item)

    with CaptureQueriesContext(connection) as queries:
        assert post_webhook(body).json()["kept"] == 3

    assert len(queries.captured_queries) == 1
    assert len(redis_round_trips) == 1
    assert len(queued_job_ids()) == 4
    assert Event.objects.filter(event_type=Event.Type.MESSAGE_RECEIVED).count() == 4


def test_answer_without_jobs_is_counted_once_on_its_own(post_webhook, redis_round_trips):
    """A redelivery queues nothing: its 200 is counted by a round trip of its own, once."""
    post_webhook(webhooks.text_body("hello", mid="m_again"))
    redis_round_trips.clear()

    with CaptureQueriesContext(connection) as queries:
        assert post_webhook(webhooks.text_body("hello", mid="m_again")).json()["duplicates"] == 1

    assert len(queries.captured_queries) == 1
    assert len(redis_round_trips) == 1
    assert metrics.counters_read().webhook_answers == {("POST", "200"): 2}
    assert Event.objects.filter(mid="m_again").count() == 1


def test_same_message_twice_in_one_body_is_kept_once(post_webhook):
    """A body that repeats an item keeps it once."""
    body = load_fixture("text_message")
    body["entry"].append(body["entry"][0])
    assert post_webhook(body).json()["kept"] == 1
    assert InboundMessage.objects.count() == 1


def test_long_text_goes_to_fast_queue_with_longer_timeout(post_webhook):
    """A text of 200 characters or more is routed to messenger_fast with a longer job timeout."""
    short, long = load_fixture("text_message"), load_fixture("text_message")
    long["entry"][0]["messaging"][0]["message"].update(mid="m_long", text="x" * 200)
    post_webhook(short)
    post_webhook(long)
    connection = get_queue("messenger_fast").connection
    jobs = {r.text[:1]: Job.fetch(job_id_for(r.id), connection=connection) for r in InboundMessage.objects.all()}
    assert jobs["x"].origin == jobs["+"].origin == "messenger_fast"
    assert jobs["x"].timeout > jobs["+"].timeout


@pytest.mark.django_db(transaction=True)
def test_redelivery_outside_a_transaction_is_recognised(post_webhook):
    """With real commits (as in production, one autocommitted INSERT per message) a redelivery is a duplicate."""
    assert post_webhook("text_message").json()["kept"] == 1
    assert post_webhook("text_message").json() == {"received": 1, "kept": 0, "unreadable": 0, "duplicates": 1}
    assert InboundMessage.objects.count() == 1
    assert len(queued_job_ids()) == 1


# --- every signed body is kept: odd items, unstorable strings, a hung Redis (issue 13) --------------

PAGE = "1717527131834678"


def _item(psid: str, mid: str, text, ts: int) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": ts,
            "message": {"mid": mid, "text": text}}


def _body(*items: dict) -> dict:
    return {"object": "page", "entry": [{"id": PAGE, "time": items[0]["timestamp"], "messaging": list(items)}]}


@pytest.mark.usefixtures("page_token")
def test_odd_item_kept_and_rest_answered(post_webhook, graph):
    """Two users' messages and one odd item (the 2026 sticker shape, attachments as an object) in one
    body: 200, both users answered exactly once, the odd item kept raw as unreadable with its reason."""
    now = int(time.time() * 1000)
    odd = {"sender": {"id": "3333"}, "recipient": {"id": PAGE}, "timestamp": now,
           "message": {"mid": "m.sticker", "attachments": {"type": "sticker", "sticker_id": 767226160478561}}}
    raw = webhooks.encode(_body(_item("1111", "m.a", "hello", now), odd, _item("2222", "m.b", "hi", now + 1)))
    response = post_webhook(raw)
    assert response.status_code == 200
    assert response.json() == {"received": 3, "kept": 2, "unreadable": 1, "duplicates": 0}
    assert post_webhook(raw).json()["duplicates"] == 3  # Facebook's redelivery changes nothing
    run_worker()
    sent = sent_messages(graph)
    assert sorted(b["recipient"]["id"] for b in sent) == ["1111", "2222"]
    for body in sent:
        assert_greeting_sent_to(body, body["recipient"]["id"])
    statuses = dict(InboundMessage.objects.values_list("mid", "status"))
    assert statuses.pop("m.a") == statuses.pop("m.b") == InboundMessage.Status.ANSWERED
    [(odd_mid, odd_status)] = statuses.items()
    row = InboundMessage.objects.get(mid=odd_mid)
    assert odd_status == InboundMessage.Status.UNREADABLE and row.psid == "3333" and row.raw == odd
    assert row.status_reason == "entry[0].messaging[1].message.attachments must be a list"
    assert Event.objects.filter(event_type=Event.Type.MESSAGE_UNREADABLE, inbound_id=row.id).count() == 1


@pytest.mark.usefixtures("page_token")
def test_nul_in_text_answered(post_webhook, graph):
    """A NUL in a user's text (PostgreSQL refuses it) is stored as U+FFFD and the message is answered:
    webhook -> queue -> worker -> exactly one Send API call with the greeting."""
    now = int(time.time() * 1000)
    response = post_webhook(_body(_item("1111", "m.nul", "hello \u0000there", now)))
    assert response.status_code == 200 and response.json()["kept"] == 1
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.ANSWERED
    assert row.text == "hello \ufffdthere" and row.raw["message"]["text"] == "hello \ufffdthere"
    [body] = sent_messages(graph)
    assert_greeting_sent_to(body, "1111")


@pytest.mark.usefixtures("page_token")
def test_lone_surrogate_in_text_and_in_a_key_answered(post_webhook, graph):
    """Lone surrogates (not encodable to UTF-8), in a text and in an object key, are stored as U+FFFD."""
    now = int(time.time() * 1000)
    item = _item("1111", "m.sur", "hello \ud800there", now)
    item["message"]["x\udc00y"] = 1
    raw = webhooks.encode(_body(item))  # json.dumps writes each lone surrogate as a \\uXXXX escape
    assert b"\\ud800" in raw and b"\\udc00" in raw  # in the signed bytes, as a client would send them
    assert post_webhook(raw).status_code == 200
    run_worker()
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.ANSWERED
    assert row.text == "hello \ufffdthere" and row.raw["message"]["x\ufffdy"] == 1
    [body] = sent_messages(graph)
    assert_greeting_sent_to(body, "1111")


class HungRedis:
    """A TCP server that accepts connections and never answers: a Redis hung mid-way (DEBUG SLEEP)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections.append(conn)  # read nothing, answer nothing

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        for conn in self.connections:
            conn.close()
        self.server.close()


@pytest.fixture
def hung_redis(settings, monkeypatch):
    """The channel's queues and the cache (the /metrics counters) on a Redis that accepts connections
    and never answers, as when one Redis serves both and hangs."""
    hung = HungRedis()
    url = f"redis://127.0.0.1:{hung.port}/0"
    settings.RQ_QUEUES = {name: {**conf, "URL": url} for name, conf in settings.RQ_QUEUES.items()}
    settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"], "LOCATION": url}}
    monkeypatch.setattr(metrics, "_redis_down_until", 0.0)  # restored after: later tests count again
    yield hung
    hung.close()


def test_hung_redis_webhook_answers_fast_with_rows_pending(post_webhook, hung_redis):
    """Against a hung Redis the webhook answers 200 within ~1.5 s (one ingress timeout for the whole
    body and one short counter timeout, not ~10 s per row), and every row is kept pending for the
    requeue and the sweep."""
    now = int(time.time() * 1000)
    body = _body(*(_item(f"{i}000", f"m.hung{i}", "hello", now + i) for i in range(3)))
    started = time.monotonic()
    response = post_webhook(body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["kept"] == 3
    assert elapsed < 1.5, f"the webhook waited {elapsed:.2f} s on a hung Redis"
    # One connection for the first enqueue (no retry, nothing tried after it fails), one for the counter.
    assert len(hung_redis.connections) == 2
    rows = InboundMessage.objects.all()
    assert {(r.status, r.status_reason) for r in rows} == {
        (InboundMessage.Status.PENDING, "queue unavailable when received")
    }
