"""Tests for messenger/usage.py: Meta's usage headers parsed on every answer, kept, and the cooldown they set."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from messenger import usage
from messenger.circuit import OPEN, get_breaker
from messenger.graph import graph_request
from messenger.send_api import SendErrorKind, send_message
from messenger.usage import GraphUsage, usage_cooldown_ms, usage_last, usage_parse, usage_record
from observability.models import Event
from tests.messenger.conftest import T0
from tests.messenger.helpers import send_api_settings

TOKEN = "EAAGusagetoken0123456789"
GRAPH = "https://graph.test.invalid/v25.0"
SEND_URL = f"{GRAPH}/me/messages"
PAGE = "516746941531643"


def _business(minutes, *, calls=100) -> str:
    return json.dumps({"1234567890": [{"type": "pages", "call_count": calls, "total_cputime": 20,
                                       "total_time": 30, "estimated_time_to_regain_access": minutes}]})


def _throttled(mock, *, code: int = 613, minutes=5) -> None:
    mock.post(
        SEND_URL,
        status=400,
        json={"error": {"message": "Calls to this api have exceeded the rate limit.", "code": code}},
        headers={"X-Business-Use-Case-Usage": _business(minutes)},
    )


@pytest.fixture(autouse=True)
def send_settings(fresh_graph_client):
    with send_api_settings(token=TOKEN, graph_url=GRAPH, MESSENGER_USAGE_MAX_COOLDOWN_MS=3_600_000):
        yield


# --- parsing ----------------------------------------------------------------------------------
def test_usage_parse_reads_the_three_headers():
    parsed = usage_parse({
        "x-app-usage": '{"call_count": 28, "total_time": 25, "total_cputime": 25}',
        "X-Page-Usage": '{"call_count": "12", "total_time": 3.5, "total_cputime": 1}',
        "X-Business-Use-Case-Usage": _business(5, calls=95),
    })
    assert parsed.app == {"call_count": 28.0, "total_time": 25.0, "total_cputime": 25.0}
    assert parsed.page == {"call_count": 12.0, "total_time": 3.5, "total_cputime": 1.0}
    assert parsed.business == [{"business_id": "1234567890", "type": "pages", "call_count": 95.0,
                                "total_cputime": 20.0, "total_time": 30.0, "estimated_time_to_regain_access": 5}]
    assert parsed.regain_access_minutes == 5


@pytest.mark.parametrize(
    "headers",
    [
        {},
        None,
        {"X-App-Usage": "not json"},
        {"X-App-Usage": "[1, 2]", "X-Page-Usage": "null", "X-Business-Use-Case-Usage": "42"},
        {"X-App-Usage": '{"call_count": "lots", "total_time": -3, "total_cputime": true}'},
        {"X-App-Usage": '{"call_count": NaN}'},
        {"X-Business-Use-Case-Usage": '{"1": "not a list", "2": [7, null, "x"]}'},
        {"X-Business-Use-Case-Usage": '{"1": [{"estimated_time_to_regain_access": "soon"}]}'},
        "not a mapping",
    ],
)
def test_usage_parse_ignores_odd_values_without_error(headers):
    parsed = usage_parse(headers)
    assert parsed.app == {} and parsed.page == {}
    assert parsed.regain_access_minutes == 0
    assert all(entry["estimated_time_to_regain_access"] == 0 for entry in parsed.business)


def test_graph_parses_usage_headers_on_a_success(graph_api):
    """Every answer, not only errors: the figures of a 200 are on the response."""
    graph_api.post(SEND_URL, json={"message_id": "m.1"}, headers={"X-App-Usage": '{"call_count": 7}'})
    response = graph_request("POST", "/me/messages", json={})
    assert response.is_success
    assert response.usage.app == {"call_count": 7.0}


# --- the cooldown -----------------------------------------------------------------------------
def test_throttled_answer_opens_circuit_for_the_estimated_minutes(graph_api, clock):
    """A 613 with estimated_time_to_regain_access 5 opens the circuit for exactly 5 minutes, at once."""
    _throttled(graph_api, code=613, minutes=5)
    result = send_message(psid="1254477777772919", message={"text": "hi"}, page_id=PAGE)

    breaker = get_breaker(page_id=PAGE)  # one circuit per page
    assert result.deferred and result.error_kind == SendErrorKind.CIRCUIT_OPEN
    assert result.retry_after_ms == 300_000
    assert result.attempts == 1  # no retry: Facebook said when to come back
    assert breaker.state() == OPEN
    assert breaker.opened_until_ms() == T0 + 300_000
    clock.advance(299_999)
    assert breaker.state() == OPEN
    clock.advance(1)
    assert breaker.state() == "half_open"


def test_later_estimate_extends_an_open_circuit_never_shortens_it(graph_api, clock):
    breaker = get_breaker()
    breaker.record_failure(breaker.acquire(), cooldown_ms=600_000)
    assert breaker.record_failure(breaker.acquire(), cooldown_ms=60_000) == "none"  # refused permit: still open
    assert breaker.record_failure(breaker.acquire(), cooldown_ms=900_000) == "extended"
    assert breaker.opened_until_ms() == T0 + 900_000


@pytest.mark.parametrize(
    ("code", "minutes", "expected"),
    [
        (613, 5, 300_000),
        (4, 1, 60_000),
        (32, 600, 3_600_000),  # capped at MESSENGER_USAGE_MAX_COOLDOWN_MS
        (613, 0, None),  # no estimate: the usual count and fixed cooldown
        (17, 5, None),  # not a page/app throttle code
        (None, 5, None),
    ],
)
def test_usage_cooldown_bounds(code, minutes, expected):
    parsed = usage_parse({"X-Business-Use-Case-Usage": _business(minutes)})
    assert usage_cooldown_ms(usage=parsed, error_code=code) == expected


@override_settings(MESSENGER_CIRCUIT_COOLDOWN_MS=120_000)
def test_usage_cooldown_is_never_shorter_than_the_configured_one():
    parsed = usage_parse({"X-Business-Use-Case-Usage": _business(1)})
    assert usage_cooldown_ms(usage=parsed, error_code=613) == 120_000


def test_throttle_without_estimate_keeps_the_fixed_cooldown(graph_api, clock, monkeypatch):
    monkeypatch.setattr("messenger.send_api._sleep", lambda seconds: None)
    for _ in range(5):
        _throttled(graph_api, code=32, minutes=0)
    with override_settings(MESSENGER_MAX_RETRIES=4):
        result = send_message(psid="1254477777772919", message={"text": "hi"}, page_id=PAGE)
    assert result.deferred and result.attempts == 5
    assert get_breaker(page_id=PAGE).opened_until_ms() == T0 + 30_000


# --- keeping the figures ----------------------------------------------------------------------
@pytest.mark.django_db
def test_usage_record_keeps_last_figures_with_ttl_and_one_event_a_minute(redis_conn):
    first = usage_parse({"X-App-Usage": '{"call_count": 10}'})
    second = usage_parse({"X-App-Usage": '{"call_count": 11}', "X-Page-Usage": '{"total_time": 4}'})
    usage_record(page_id=PAGE, usage=first)
    usage_record(page_id=PAGE, usage=second)

    assert usage_last(page_id=PAGE)["app"] == {"call_count": 11.0}
    assert 0 < redis_conn.ttl(f"messenger:usage:{PAGE}") <= usage.USAGE_TTL_S
    events = Event.objects.filter(event_type=Event.Type.GRAPH_USAGE)
    assert events.count() == 1
    assert events.get().detail["page_id"] == PAGE
    assert events.get().detail["app"] == {"call_count": 10.0}


@pytest.mark.django_db
def test_usage_record_skips_empty_figures(redis_conn):
    usage_record(page_id=PAGE, usage=GraphUsage())
    assert usage_last(page_id=PAGE) is None
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_send_records_the_page_usage_of_every_answer(graph_api):
    graph_api.post(SEND_URL, json={"message_id": "m.1"}, headers={"X-Page-Usage": '{"call_count": 42}'})
    assert send_message(psid="1254477777772919", message={"text": "hi"}, page_id=PAGE).ok
    assert usage_last(page_id=PAGE)["page"] == {"call_count": 42.0}
