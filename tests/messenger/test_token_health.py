"""Tests for messenger/token_health.py: a dead token stops sends, not messages.

End to end through the webhook, a worker and the (mocked) Graph API on the real test Redis: a 190
parks the page's messages with one ERROR and one event, and they go out once the token is replaced.
"""

from __future__ import annotations

import logging

import pytest
import responses
from django.test import override_settings

from messenger import pages, send_api
from messenger.jobs import process_inbound
from messenger.models import InboundMessage
from messenger.token_health import (
    PARK_REASON,
    TokenGate,
    token_failed,
    token_fingerprint,
    token_gate,
    token_mark_failing,
    token_pages_status,
)
from observability.models import Event
from tests.messenger.helpers import GRAPH, load_fixture_graph, run_worker, sent_messages, text_body

pytestmark = pytest.mark.django_db

PAGE = "516746941531643"  # the page of tests/fixtures/messenger/text_message.json
OLD_TOKEN = "EAAold-dead-token-0123456789"
NEW_TOKEN = "EAAnew-working-token-9876543210"


@pytest.fixture
def dead_token(settings, graph, monkeypatch):
    """The configured token is dead: every Graph call answers 190.

    Typing indicators are off (a delay the reply always beats): they run in a thread with its own
    database connection, which would race the reply for the first 190 and commit its event outside
    the test's transaction.
    """
    settings.MESSENGER_TYPING_DELAY_MS = 600_000
    settings.MESSENGER_PAGE_ACCESS_TOKEN = OLD_TOKEN
    graph.replace(responses.POST, GRAPH, status=400, json=load_fixture_graph("send_error_invalid_token"))
    return graph


def _errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.usefixtures("page_token")
def test_dead_token_parks_messages_with_one_error_and_one_event_then_sends_after_replacement(
    dead_token, post_webhook, client, settings, caplog
):
    """Three messages in a row on a dead token: all parked, one ERROR, one event; a new token sends them all."""
    caplog.set_level(logging.INFO)
    for n, psid in enumerate(("1111", "2222", "3333")):
        post_webhook(text_body(f"hello {n}", mid=f"m_tok_{n}", psid=psid))
    run_worker()

    rows = list(InboundMessage.objects.order_by("id"))
    assert [row.status for row in rows] == [InboundMessage.Status.DEFERRED] * 3
    assert all(PARK_REASON in row.status_reason for row in rows)
    assert _errors(caplog) == ["messenger.token.failing"]
    assert Event.objects.filter(event_type=Event.Type.TOKEN_FAILING).count() == 1
    assert not Event.objects.filter(event_type=Event.Type.SEND_FAILED).exists()
    event = Event.objects.get(event_type=Event.Type.TOKEN_FAILING)
    assert event.detail["page_id"] == PAGE and event.detail["error_code"] == 190
    assert OLD_TOKEN not in str(event.detail) and OLD_TOKEN not in caplog.text
    # Only the first reply was tried: the others were parked without a call.
    assert len(sent_messages(dead_token)) == 1
    assert client.get("/healthz").json()["pages"] == {PAGE: "token_failing"}
    assert client.get("/healthz").status_code == 200  # a dead token is not the web's health

    # A new token is set (a restart with a new MESSENGER_PAGE_ACCESS_TOKEN): the parked messages go out.
    settings.MESSENGER_PAGE_ACCESS_TOKEN = NEW_TOKEN
    dead_token.replace(responses.POST, GRAPH, json=load_fixture_graph("send_success"))
    caplog.clear()
    InboundMessage.objects.update(not_before=None)
    for row in rows:
        process_inbound(row.id)

    assert set(InboundMessage.objects.values_list("status", flat=True)) == {InboundMessage.Status.ANSWERED}
    assert len(sent_messages(dead_token)) == 1 + 3
    assert [r.getMessage() for r in caplog.records if r.name == "messenger.token"] == ["messenger.token.recovered"]
    assert client.get("/healthz").json()["pages"] == {PAGE: "ok"}


@pytest.mark.usefixtures("page_token")
def test_same_dead_token_stays_parked_without_new_alarms(dead_token, post_webhook, caplog):
    """A parked message retried on the same dead token is parked again: nothing new is logged at ERROR."""
    post_webhook(text_body("hello", mid="m_tok_a", psid="1111"))
    run_worker()
    caplog.clear()
    row = InboundMessage.objects.get()
    InboundMessage.objects.update(not_before=None)
    process_inbound(row.id)
    row.refresh_from_db()
    assert row.status == InboundMessage.Status.DEFERRED
    assert _errors(caplog) == []
    assert Event.objects.filter(event_type=Event.Type.TOKEN_FAILING).count() == 1


# --- the marker, unit by unit ----------------------------------------------------------------------
@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=OLD_TOKEN, MESSENGER_TOKEN_RECHECK_MS=60_000)
def test_marker_holds_a_fingerprint_never_the_token(redis_conn):
    assert token_mark_failing(page_id=PAGE, error_code=190) is True
    stored = redis_conn.hgetall(f"messenger:token:failing:{PAGE}")
    assert stored[b"fingerprint"].decode() == token_fingerprint(OLD_TOKEN)
    assert OLD_TOKEN.encode() not in b"".join(stored.values())
    assert int(stored[b"since"]) > 0 and stored[b"error_code"] == b"190"


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=OLD_TOKEN)
def test_only_the_first_failure_of_an_incident_begins_it():
    assert token_mark_failing(page_id=PAGE, error_code=190) is True
    assert token_mark_failing(page_id=PAGE, error_code=190) is False
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=NEW_TOKEN):
        assert token_mark_failing(page_id=PAGE, error_code=190) is True  # another token: another incident
    assert Event.objects.filter(event_type=Event.Type.TOKEN_FAILING).count() == 2


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=OLD_TOKEN, MESSENGER_TOKEN_RECHECK_MS=60_000)
def test_gate_refuses_the_failing_token_but_lets_one_probe_through_per_recheck(redis_conn):
    token_mark_failing(page_id=PAGE, error_code=190)
    refused = token_gate(page_id=PAGE)
    assert (refused.allowed, refused.marked, refused.retry_after_ms) == (False, True, 60_000)
    redis_conn.delete(f"messenger:token:probe:{PAGE}")  # the recheck period has passed
    assert token_gate(page_id=PAGE).allowed is True
    assert token_gate(page_id=PAGE).allowed is False


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=OLD_TOKEN)
def test_gate_tries_a_replaced_token_and_a_success_clears_the_marker(caplog):
    caplog.set_level(logging.INFO, logger="messenger.token")
    token_mark_failing(page_id=PAGE, error_code=190)
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=NEW_TOKEN):
        gate = token_gate(page_id=PAGE)
        assert gate.allowed and gate.marked
        assert token_failed(gate=gate, ok=True, kind=None, error_code=None) is False
        assert token_failed(gate=gate, ok=True, kind=None, error_code=None) is False
    assert token_pages_status() == {PAGE: "ok"}
    assert [r.getMessage() for r in caplog.records].count("messenger.token.recovered") == 1


def test_a_send_with_no_page_is_not_gated():
    assert token_gate(page_id="") == TokenGate()
    assert token_failed(gate=TokenGate(), ok=False, kind="auth", error_code=190) is False


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=OLD_TOKEN)
def test_only_auth_failures_mark_the_token():
    gate = token_gate(page_id=PAGE)
    assert token_failed(gate=gate, ok=False, kind="transient", error_code=2) is False
    assert token_pages_status() == {PAGE: "ok"}
    assert token_failed(gate=gate, ok=False, kind="auth", error_code=190) is True
    assert token_pages_status() == {PAGE: "token_failing"}


def test_page_token_is_the_configured_token_for_every_page(settings):
    settings.MESSENGER_PAGE_ACCESS_TOKEN = NEW_TOKEN
    assert pages.page_token(page_id="any") == NEW_TOKEN


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=OLD_TOKEN)
def test_sender_action_on_a_dead_token_marks_it_and_is_then_skipped(graph):
    """A typing indicator can be the first to meet the dead token: it marks it; later ones make no call."""
    graph.replace(responses.POST, GRAPH, status=400, json=load_fixture_graph("send_error_invalid_token"))
    first = send_api.send_sender_action(psid="1111", action="typing_on", page_id=PAGE)
    second = send_api.send_sender_action(psid="1111", action="typing_on", page_id=PAGE)
    assert first.deferred and first.error_kind == send_api.SendErrorKind.TOKEN_FAILING and first.attempts == 1
    assert second.deferred and second.attempts == 0
    assert len(graph.calls) == 1
    assert token_pages_status() == {PAGE: "token_failing"}
