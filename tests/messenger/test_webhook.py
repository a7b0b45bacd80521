"""The V2 webhook's ingress (messenger/views.py): verification, bad input, every event kind, the inbox, enqueueing.

The signature check has its own file (test_signature.py), and so has what the parser reads out of a
body (test_parsing.py).
"""

from __future__ import annotations

import json
import logging

import pytest
from django.test import override_settings
from rq.job import Job

from messenger.inbox import job_id_for
from messenger.models import InboundMessage
from messenger.queues import get_queue
from tests.conftest import fixture_bytes, load_fixture, sign
from tests.messenger.event_fixtures import ACTIONABLE_FIXTURES, IGNORED_FIXTURES

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
        (b'{"object": "page", "entry": ["x"]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": {}}]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [7]}]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "time": "soon", "messaging": []}]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": []}, '
         b'"message": {"mid": "m1", "text": "x"}}]}]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": 1, '
         b'"message": {"mid": "m1", "text": 5}}]}]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": 1, '
         b'"message": {"mid": "m1", "attachments": {"type": "image"}}}]}]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": 1, '
         b'"message": {"text": "no mid"}}]}]}', 400),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "timestamp": "1", '
         b'"message": {"mid": "m1", "text": "x"}}]}]}', 400),
    ],
)
def test_bad_body_gets_clear_4xx_and_stores_nothing(post_webhook, raw, status):
    """Each kind of malformed or mistyped body gets its 4xx with a JSON error, never a 500 or a row."""
    response = post_webhook(raw)
    assert response.status_code == status
    assert "error" in response.json()
    assert InboundMessage.objects.count() == 0


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


@pytest.mark.parametrize(("fixture", "kind"), IGNORED_FIXTURES.items())
def test_non_actionable_event_is_acknowledged_and_ignored(post_webhook, fixture, kind):
    """Echoes, receipts, reactions, handover, standby and unknown events get 200 and no job.

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
    assert response.json() == {"received": 3, "kept": 1, "duplicates": 0}


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
    assert post_webhook("text_message").json() == {"received": 1, "kept": 0, "duplicates": 1}
    assert InboundMessage.objects.count() == 1
    assert len(queued_job_ids()) == 1
